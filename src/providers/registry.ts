/**
 * The provider kinds switchboard knows: which channels each serves, its settings and secrets, and a lazy
 * factory. Adapters (and their SDKs) are imported only when a message is about to be sent or verified, so a
 * command that sends nothing loads none of them (DESIGN §5).
 */
import type { AdapterConfig, Provider, SettingValue } from './types.js';

/**
 * A setting's type: `string`, `int`, `decimal` (a number such as 0.0079), `bool`, one of `values` (`enum`), an
 * e-mail address, a file/folder path, or an ISO 4217 `currency` code (USD).
 */
export type SettingType = 'string' | 'int' | 'decimal' | 'bool' | 'enum' | 'email' | 'path' | 'currency';

/** How one setting is checked and documented. */
export interface SettingSpec {
  type: SettingType;
  required?: boolean;
  values?: readonly string[];
  default?: SettingValue;
  /** Inclusive range for `int` and `decimal`. */
  min?: number;
  max?: number;
  doc: string;
  /** Set with `--set` only: the interactive `provider add` does not ask for it (e.g. delivery-event settings). */
  advanced?: boolean;
}

/** A provider kind. */
export interface KindSpec {
  kind: string;
  channels: readonly string[];
  summary: string;
  settings: Readonly<Record<string, SettingSpec>>;
  /** Secret names; `required` ones must be given when the config is added; `advanced` ones are not prompted for. */
  secrets: Readonly<Record<string, { required: boolean; doc: string; advanced?: boolean }>>;
  /**
   * Secrets a config needs because of its settings, beyond the `required` ones (smtp: a `user` needs a
   * `password`). Used to mark configs whose secrets are missing (e.g. dropped by `key reset`).
   */
  neededSecrets?(settings: Readonly<Record<string, SettingValue>>): string[];
  /**
   * What `provider verify` checks for this kind, in a few words (it never sends a message). Absent: the kind has
   * no check of its own beyond its settings (`provider kinds` shows it cannot verify).
   */
  verifies?: string;
  /**
   * Bulk sends: the most messages the adapter puts in one request (its `sendMany`, the BatchSender capability).
   * Absent: one request per message. `test/unit/kinds.test.ts` holds each adapter to it.
   */
  batchSize?: number;
  /**
   * Cross-setting checks run when a config is added or updated (after defaults); returns a one-line problem
   * naming the setting, or undefined when the settings are fine.
   */
  check?(settings: Readonly<Record<string, SettingValue>>): string | undefined;
  /** Builds an adapter; imports the module (and SDK) on first use. */
  create(config: AdapterConfig): Promise<Provider>;
}

/**
 * Settings of kinds whose delivery events `events serve` receives: how many soft bounces (SendGrid `blocked`,
 * SES Transient/Undetermined, Twilio 30003/30004, Meta 131026) within a window suppress an address, and for how
 * long (Postal and listmonk keep such suppressions for a while, then send again). Defaults (3, 7 days, 30 days)
 * live in `SOFT_BOUNCE_DEFAULTS` of src/core/events.ts, so configs added before these settings existed get them too.
 */
export const SOFT_BOUNCE_SETTINGS: Readonly<Record<string, SettingSpec>> = {
  softBounceLimit: { type: 'int', min: 1, max: 100, advanced: true, doc: 'delivery events: this many soft bounces within softBounceWindowDays suppress the address (default 3)' },
  softBounceWindowDays: { type: 'int', min: 1, max: 365, advanced: true, doc: 'delivery events: the window for softBounceLimit, in days (default 7)' },
  softBounceSuppressDays: { type: 'int', min: 1, max: 3650, advanced: true, doc: 'delivery events: how long a soft-bounce suppression lasts, in days (default 30; a delivery lifts it sooner)' },
};

/** The `unsubscribeMailto` setting of e-mail kinds (RFC 2369 `List-Unsubscribe: <mailto:…>` on bulk e-mails). */
const UNSUBSCRIBE_MAILTO: Readonly<Record<string, SettingSpec>> = {
  unsubscribeMailto: { type: 'email', advanced: true, doc: 'bulk e-mails: also offer List-Unsubscribe by mail to this address (the one-click https link needs a public URL: `events serve --public-url`)' },
};

const smtp: KindSpec = {
  kind: 'smtp',
  channels: ['email'],
  summary: 'any SMTP server (nodemailer)',
  settings: {
    host: { type: 'string', required: true, doc: 'server host name or IP' },
    port: { type: 'int', min: 1, max: 65535, doc: 'server port (default 587, or 465 with tls=tls, 25 with tls=none)' },
    tls: {
      type: 'enum',
      values: ['starttls', 'tls', 'none'],
      default: 'starttls',
      doc: 'starttls: upgrade with STARTTLS (required); tls: implicit TLS; none: plain text',
    },
    user: { type: 'string', doc: 'AUTH user name; with it the password secret is required (sends fail, before connecting, without it); without it, no AUTH' },
    from: { type: 'email', required: true, doc: 'sender address' },
    fromName: { type: 'string', doc: 'sender display name' },
    ca: { type: 'path', doc: 'PEM file of a CA to trust (for servers with a private or self-signed certificate)' },
    timeout: { type: 'int', min: 100, max: 600_000, default: 30_000, doc: 'connection and socket timeout in ms' },
    ...UNSUBSCRIBE_MAILTO,
  },
  secrets: { password: { required: false, doc: 'AUTH password' } },
  neededSecrets: (settings) => (settings.user ? ['password'] : []),
  verifies: 'connects (TLS as set) and authenticates with AUTH when a user is set',
  create: async (config) => (await import('./smtp.js')).createSmtpProvider(config),
};

const outbox: KindSpec = {
  kind: 'outbox',
  channels: ['email', 'sms', 'whatsapp'],
  summary: 'writes each message as a file into a folder (.eml for e-mail, .json for sms/whatsapp; no network)',
  settings: {
    dir: { type: 'path', required: true, doc: 'folder for the message files (created if missing)' },
    from: { type: 'string', doc: 'sender: an e-mail address (default switchboard@localhost) or a phone number / sender id' },
    fromName: { type: 'string', doc: 'sender display name (e-mail)' },
    ...UNSUBSCRIBE_MAILTO,
  },
  secrets: {},
  verifies: 'the folder exists (or can be created) and is writable',
  create: async (config) => (await import('./outbox.js')).createOutboxProvider(config),
};

const sendgrid: KindSpec = {
  kind: 'sendgrid',
  channels: ['email'],
  summary: 'SendGrid Mail Send API v3 (@sendgrid/client)',
  settings: {
    from: { type: 'email', required: true, doc: 'sender address (a verified Sender Identity or authenticated domain)' },
    fromName: { type: 'string', doc: 'sender display name' },
    endpoint: { type: 'string', doc: 'API base URL (default https://api.sendgrid.com; EU region: https://api.eu.sendgrid.com)' },
    sandbox: { type: 'bool', default: false, doc: 'sandbox mode: SendGrid validates each message and delivers nothing' },
    batchSize: { type: 'int', min: 1, max: 1000, doc: 'bulk sends: most rows per mail send request, as personalizations (default 1000; 1 sends one request per row)' },
    eventWebhookPublicKey: {
      type: 'string',
      advanced: true,
      doc: 'delivery events: the Signed Event Webhook verification key (base64, from Mail Settings); without it `events serve` refuses this config\'s events',
    },
    ...UNSUBSCRIBE_MAILTO,
    ...SOFT_BOUNCE_SETTINGS,
  },
  secrets: { apiKey: { required: true, doc: 'API key with the Mail Send permission' } },
  verifies: 'GET /v3/scopes: the API key works and has mail.send',
  batchSize: 1000,
  create: async (config) => (await import('./sendgrid.js')).createSendGridProvider(config),
};

const ses: KindSpec = {
  kind: 'ses',
  channels: ['email'],
  summary: 'Amazon SES API v2 (@aws-sdk/client-sesv2)',
  settings: {
    region: { type: 'string', required: true, doc: 'AWS region, e.g. eu-west-1' },
    from: { type: 'email', required: true, doc: 'sender address (a verified SES identity)' },
    fromName: { type: 'string', doc: 'sender display name' },
    accessKeyId: { type: 'string', required: true, doc: 'IAM access key id of a user allowed ses:SendEmail and ses:GetAccount' },
    configurationSet: { type: 'string', doc: 'SES configuration set for event publishing' },
    endpoint: { type: 'string', doc: 'API base URL (default https://email.<region>.amazonaws.com)' },
    snsTopicArn: {
      type: 'string',
      advanced: true,
      doc: 'delivery events: the SNS topic ARN(s), comma-separated, whose bounce/complaint/delivery notifications `events serve` accepts at /hooks/<ref>',
    },
    snsEndpoint: { type: 'string', advanced: true, doc: 'delivery events: base URL for confirming SNS subscriptions (default: the SubscribeURL\'s own https://sns.<region>.amazonaws.com)' },
    ...UNSUBSCRIBE_MAILTO,
    ...SOFT_BOUNCE_SETTINGS,
  },
  secrets: { secretAccessKey: { required: true, doc: 'IAM secret access key' } },
  verifies: 'GetAccount: the credentials work and sending is enabled (quota, sandbox)',
  create: async (config) => (await import('./ses.js')).createSesProvider(config),
};

/** Settings shared by `twilio` and `twilio-whatsapp` (https://www.twilio.com/docs/messaging/api/message-resource). */
function twilioKind(kind: string, channel: 'sms' | 'whatsapp'): KindSpec {
  const wa = channel === 'whatsapp';
  return {
    kind,
    channels: [channel],
    summary: wa ? 'Twilio WhatsApp (twilio SDK; templates by Content SID HX…)' : 'Twilio Programmable Messaging SMS (twilio SDK)',
    settings: {
      accountSid: { type: 'string', required: true, doc: 'account SID: AC followed by 32 hex digits' },
      from: { type: 'string', doc: wa ? 'WhatsApp sender number in E.164 (the whatsapp: prefix is added)' : 'sender: an E.164 number or an alphanumeric sender id' },
      messagingServiceSid: { type: 'string', doc: 'messaging service SID (MG + 32 hex digits), instead of from' },
      endpoint: { type: 'string', doc: 'API base URL (default https://api.twilio.com), e.g. an edge such as https://api.dublin.ie1.twilio.com' },
      ...SOFT_BOUNCE_SETTINGS,
    },
    secrets: { authToken: { required: true, doc: 'auth token of the account (also verifies status callbacks and inbound messages: X-Twilio-Signature)' } },
    verifies: 'GET /2010-04-01/Accounts/{sid}.json: the credentials work and the account is active',
    check(s) {
      if (!/^AC[0-9a-fA-F]{32}$/.test(String(s.accountSid))) return `--set accountSid: "${String(s.accountSid)}" is not AC followed by 32 hex digits`;
      if ((s.from === undefined) === (s.messagingServiceSid === undefined)) return `kind ${kind} needs exactly one of --set from=… and --set messagingServiceSid=…`;
      if (s.messagingServiceSid !== undefined && !/^MG[0-9a-fA-F]{32}$/.test(String(s.messagingServiceSid))) {
        return `--set messagingServiceSid: "${String(s.messagingServiceSid)}" is not MG followed by 32 hex digits`;
      }
      return undefined;
    },
    create: async (config) => (await import('./twilio.js')).createTwilioProvider(config),
  };
}

const sns: KindSpec = {
  kind: 'sns',
  channels: ['sms'],
  summary: 'Amazon SNS SMS (@aws-sdk/client-sns Publish); no delivery events: SNS reports SMS delivery to CloudWatch Logs only, with no HTTP callback',
  settings: {
    region: { type: 'string', required: true, doc: 'AWS region, e.g. eu-west-1' },
    accessKeyId: { type: 'string', required: true, doc: 'access key id of an IAM user allowed sns:Publish and sns:GetSMSAttributes' },
    senderId: { type: 'string', doc: 'alphanumeric sender id (AWS.SNS.SMS.SenderID), where the destination country supports it' },
    originationNumber: { type: 'string', doc: 'origination number in E.164 (AWS.MM.SMS.OriginationNumber)' },
    endpoint: { type: 'string', doc: 'API base URL (default: the region\'s SNS endpoint)' },
  },
  secrets: { secretAccessKey: { required: true, doc: 'secret access key' } },
  verifies: 'GetSMSAttributes: the credentials work',
  create: async (config) => (await import('./sns.js')).createSnsProvider(config),
};

const metaWhatsApp: KindSpec = {
  kind: 'meta-whatsapp',
  channels: ['whatsapp'],
  summary: 'Meta WhatsApp Cloud API (HTTPS with fetch; text and approved templates)',
  settings: {
    phoneNumberId: { type: 'string', required: true, doc: 'WhatsApp Business phone number id (digits)' },
    apiVersion: { type: 'string', default: 'v23.0', doc: 'Graph API version' },
    endpoint: { type: 'string', doc: 'Graph API base URL (default https://graph.facebook.com)' },
    ...SOFT_BOUNCE_SETTINGS,
  },
  secrets: {
    accessToken: { required: true, doc: 'system-user access token with whatsapp_business_messaging' },
    appSecret: { required: false, advanced: true, doc: 'delivery events: the app secret that signs webhooks (X-Hub-Signature-256); without it `events serve` refuses this config\'s events' },
    webhookVerifyToken: { required: false, advanced: true, doc: 'delivery events: the verify token of the webhook subscription handshake (hub.verify_token)' },
  },
  verifies: 'GET /{apiVersion}/{phoneNumberId}: the token works and can use the phone number',
  check(s) {
    if (!/^\d+$/.test(String(s.phoneNumberId))) return `--set phoneNumberId: "${String(s.phoneNumberId)}" is not a number id (digits only)`;
    if (!/^v\d+\.\d+$/.test(String(s.apiVersion))) return `--set apiVersion: "${String(s.apiVersion)}" does not look like v23.0`;
    return undefined;
  },
  create: async (config) => (await import('./meta-whatsapp.js')).createMetaWhatsAppProvider(config),
};

/** Kinds by name. */
export const KINDS: ReadonlyMap<string, KindSpec> = new Map(
  [smtp, outbox, sendgrid, ses, twilioKind('twilio', 'sms'), twilioKind('twilio-whatsapp', 'whatsapp'), sns, metaWhatsApp].map((k) => [k.kind, k]),
);

/** Kinds named in DESIGN §2 whose adapters are not built yet; the CLI says so plainly (none left). */
export const PLANNED_KINDS: readonly string[] = [];

/**
 * Settings every kind has, applied by the dispatcher around the adapter (DESIGN §5: rate limits are wrappers,
 * not code inside adapters): `rate` (requests per second to this provider; one request is one message, or
 * one batched request for adapters with `sendMany`) and `concurrency` (requests in flight at once).
 */
export const COMMON_SETTINGS: Readonly<Record<string, SettingSpec>> = {
  rate: { type: 'int', min: 1, max: 100_000, doc: 'most requests per second to this provider, in any one-second window (default: no limit)' },
  concurrency: { type: 'int', min: 1, max: 1000, doc: 'most requests in flight at once to this provider (default: no limit beyond --concurrency)' },
};

/**
 * Settings every kind that serves sms or whatsapp has: the price of one segment, for the estimated cost that
 * `template preview` (and bulk-send previews) show next to the segment count (`src/core/segments.ts`).
 */
export const SEGMENT_PRICE_SETTINGS: Readonly<Record<string, SettingSpec>> = {
  pricePerSegment: { type: 'decimal', min: 0, doc: 'price of one SMS segment (a WhatsApp message counts alike), for the estimated cost in previews, e.g. 0.0079' },
  currency: { type: 'currency', doc: 'ISO 4217 code of pricePerSegment, e.g. USD' },
};

/**
 * A kind's settings including {@link COMMON_SETTINGS} and, for sms/whatsapp kinds, {@link SEGMENT_PRICE_SETTINGS}
 * (a kind's own setting of the same name wins).
 */
export function settingSpecs(spec: KindSpec): Readonly<Record<string, SettingSpec>> {
  const phone = spec.channels.includes('sms') || spec.channels.includes('whatsapp');
  return { ...COMMON_SETTINGS, ...(phone ? SEGMENT_PRICE_SETTINGS : {}), ...spec.settings };
}

/**
 * Extension point for programs that embed switchboard (and for tests that drive the core in-process): adds a
 * provider kind to {@link KINDS}. The spec's `create` is called like any built-in kind's.
 * @throws Error if a kind of that name already exists.
 */
export function registerKind(spec: KindSpec): void {
  if (KINDS.has(spec.kind)) throw new Error(`provider kind ${spec.kind} already exists`);
  (KINDS as Map<string, KindSpec>).set(spec.kind, spec);
}
