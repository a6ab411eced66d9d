/**
 * Amazon SES adapter (@aws-sdk/client-sesv2 3.x, imported lazily by the registry).
 * Settings: region, from, accessKeyId, endpoint (base URL, for tests or a non-default endpoint), configurationSet.
 * Secret: secretAccessKey.
 * Tracking: `EmailTags` `sb_tenant`/`sb_batch`/`sb_row` (echoed in event-publishing notifications), and
 * List-Unsubscribe headers on bulk e-mails (see ./tracking.ts).
 * Wire format: SESv2 REST-JSON, SigV4-signed: `POST /v2/email/outbound-emails` (SendEmail,
 * https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html) answers `{"MessageId": …}`;
 * credential check: `GET /v2/email/account` (GetAccount,
 * https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetAccount.html).
 */
import type { AdapterConfig, EmailMessage, EmailProvider, SendResult, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { formatFrom } from './address.js';
import { AWS_AUTH_CODES, HTTP_TIMEOUT_MS, checkEndpoint, oneLine } from './http.js';
import { emailHeaders, trackingFields } from './tracking.js';

/** What the AWS SDK v3 puts on a service exception (`name` is the error code). */
interface AwsFailure {
  name?: string;
  message?: string;
  code?: string;
  $fault?: 'client' | 'server';
  $metadata?: { httpStatusCode?: number };
}

/** Error codes that mean the credentials are wrong, expired or not allowed to send: the AWS common ones and SES's own. */
const AUTH_CODES = new Set([...AWS_AUTH_CODES, 'NotAuthorized']);
/** Error codes that ask us to slow down. */
const RATE_CODES = new Set(['TooManyRequestsException', 'ThrottlingException', 'Throttling', 'LimitExceededException']);
/** Error codes about the account or the sending set-up: another provider may still deliver. */
const CONFIG_CODES = new Set([
  'MailFromDomainNotVerifiedException',
  'AccountSuspendedException',
  'SendingPausedException',
  'NotFoundException',
  'BadRequestException',
]);

/**
 * Classifies a failed SES call into a DESIGN §5 kind. Sources: SendEmail errors
 * (https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html#API_SendEmail_Errors) and the
 * common errors of every AWS API (https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html):
 * - `MessageRejected` → `recipient` when the reason names the recipient (an unverified recipient in the SES
 *   sandbox, an illegal address), else `config` (content or sender rejected: another provider may send it)
 * - AccessDenied, NotAuthorized, InvalidClientTokenId, UnrecognizedClient, SignatureDoesNotMatch,
 *   IncompleteSignature, MissingAuthenticationToken, ExpiredToken → `auth`
 * - MailFromDomainNotVerified, AccountSuspended, SendingPaused, NotFound (configuration set), BadRequest → `config`
 * - TooManyRequests, Throttling, LimitExceeded → `rate_limited` (SES gives no Retry-After: backoff applies)
 * - InternalFailure, ServiceUnavailable, any 5xx or server fault, and no response at all → `transient`
 * - any other 4xx → `config`
 * @param recipient the message's recipient, to tell recipient rejections from others (lower-cased compare).
 */
export function classifySesError(err: unknown, recipient?: string): ProviderError {
  const e = err as AwsFailure;
  const code = e.name ?? e.code ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const text = `${code}: ${oneLine(e.message ?? String(err))}`;
  const details = { code };
  if (code === 'MessageRejected') {
    const reason = (e.message ?? '').toLowerCase();
    const aboutRecipient = (recipient !== undefined && reason.includes(recipient.toLowerCase())) || /illegal address|recipient/.test(reason);
    return new ProviderError(aboutRecipient ? 'recipient' : 'config', `SES rejected the message: ${text}`, details);
  }
  if (AUTH_CODES.has(code)) return new ProviderError('auth', `SES refused the credentials: ${text}`, details);
  if (RATE_CODES.has(code)) return new ProviderError('rate_limited', `SES sending limit reached: ${text}`, details);
  if (CONFIG_CODES.has(code)) return new ProviderError('config', `SES cannot send for this account or sender: ${text}`, details);
  if (status === undefined || status >= 500 || e.$fault === 'server') {
    return new ProviderError('transient', status === undefined ? `SES unreachable: ${text}` : `SES server error (${status}): ${text}`, details);
  }
  return new ProviderError('config', `SES refused the request (${status}): ${text}`, details);
}

/**
 * Builds an SES adapter from a decrypted config. The SDK's own retries are off (`maxAttempts: 1`): retries and
 * fallback belong to the dispatcher.
 * @throws ProviderError `config` if `endpoint` is not an http(s) URL.
 */
export async function createSesProvider(config: AdapterConfig): Promise<EmailProvider> {
  const s = config.settings;
  const endpoint = s.endpoint === undefined ? undefined : checkEndpoint(String(s.endpoint), config.ref);
  const { SESv2Client, SendEmailCommand, GetAccountCommand } = await import('@aws-sdk/client-sesv2');
  const client = new SESv2Client({
    region: String(s.region),
    ...(endpoint ? { endpoint } : {}),
    credentials: { accessKeyId: String(s.accessKeyId), secretAccessKey: config.secrets.secretAccessKey ?? '' },
    maxAttempts: 1,
    requestHandler: { requestTimeout: HTTP_TIMEOUT_MS, connectionTimeout: HTTP_TIMEOUT_MS },
  });
  const from = formatFrom(String(s.from), s.fromName === undefined ? undefined : String(s.fromName));
  const configurationSet = s.configurationSet === undefined ? undefined : String(s.configurationSet);
  const mailto = s.unsubscribeMailto === undefined ? undefined : String(s.unsubscribeMailto);

  return {
    channel: 'email',
    async send(message: EmailMessage): Promise<SendResult> {
      const headers = emailHeaders(message, mailto);
      const tags = Object.entries(trackingFields(message.tracking)).map(([Name, Value]) => ({ Name, Value }));
      try {
        const out = await client.send(
          new SendEmailCommand({
            FromEmailAddress: from,
            Destination: { ToAddresses: [message.to] },
            Content: {
              Simple: {
                Subject: { Data: message.subject, Charset: 'UTF-8' },
                Body: {
                  ...(message.text !== undefined ? { Text: { Data: message.text, Charset: 'UTF-8' } } : {}),
                  ...(message.html !== undefined ? { Html: { Data: message.html, Charset: 'UTF-8' } } : {}),
                },
                ...(headers ? { Headers: Object.entries(headers).map(([Name, Value]) => ({ Name, Value })) } : {}),
              },
            },
            ...(tags.length ? { EmailTags: tags } : {}),
            ...(configurationSet ? { ConfigurationSetName: configurationSet } : {}),
          }),
        );
        return { messageId: out.MessageId ?? '', acceptedAt: new Date() };
      } catch (err) {
        throw classifySesError(err, message.to);
      }
    },
    async verify(): Promise<VerifyResult> {
      try {
        const a = await client.send(new GetAccountCommand({}));
        const q = a.SendQuota;
        const quota = q ? `quota ${q.Max24HourSend ?? '?'}/24h at ${q.MaxSendRate ?? '?'} msg/s, ${q.SentLast24Hours ?? 0} sent in the last 24h` : 'no quota reported';
        const mode = a.ProductionAccessEnabled === false ? ', sandbox (verified recipients only)' : '';
        if (a.SendingEnabled !== true) {
          return { ok: false, detail: `credentials valid but sending is disabled for this account in ${String(s.region)} (enforcement: ${a.EnforcementStatus ?? 'unknown'}; ${quota})` };
        }
        return { ok: true, detail: `sending enabled in ${String(s.region)}; ${quota}${mode}` };
      } catch (err) {
        const e = classifySesError(err);
        return { ok: false, detail: `${e.kind}: ${e.message}` };
      }
    },
    async close(): Promise<void> {
      client.destroy();
    },
  };
}
