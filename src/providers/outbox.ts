/**
 * Outbox adapter: writes each message as a file into a folder, like nodemailer's stream transport or
 * Django's file e-mail backend. The embedded default: needs no network and no credentials.
 * E-mail becomes an RFC 5322 `.eml` file; SMS and WhatsApp messages become `.json` files
 * (`{channel, from, to, body | text | template, messageId, acceptedAt}`).
 * Files are written to a temporary name and renamed, so a reader never sees half a message.
 * Settings: dir, from, fromName.
 *
 * Cost per message (issue 15): the file is written and renamed with synchronous calls (open+write+close and
 * rename, no thread-pool round trips or FileHandle objects; the folder is local, so the event loop waits tens of
 * microseconds), and random name parts come from a pooled buffer refilled 4 KiB at a time rather than one
 * `randomBytes` call each. nodemailer's MailComposer is loaded on the first e-mail only (sms/whatsapp load no
 * e-mail library).
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomFillSync } from 'node:crypto';
import type MailComposerType from 'nodemailer/lib/mail-composer';
import type { AdapterConfig, EmailMessage, Provider, SendResult, SmsMessage, VerifyResult, WhatsAppMessage } from './types.js';
import { ProviderError } from './types.js';
import { formatFrom } from './address.js';
import { emailHeaders } from './tracking.js';

const pool = Buffer.alloc(4096);
let poolAt = pool.length;
/** `bytes` random bytes as lower-case hex, taken from a pooled buffer (crypto-grade, refilled when used up). */
function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += bytes;
  return pool.toString('hex', poolAt - bytes, poolAt);
}

let composer: Promise<typeof MailComposerType> | undefined;

/** Builds an outbox adapter for the config's channel. The folder is created (mode 0700) on first send. */
export function createOutboxProvider(config: AdapterConfig): Provider {
  const dir = path.resolve(String(config.settings.dir));
  const fromAddress = config.settings.from === undefined ? undefined : String(config.settings.from);
  let ready = false;

  /** Writes `content` as `<time>-<random>.<ext>` atomically; maps file-system errors to provider errors. */
  async function write(ext: string, content: (acceptedAt: Date) => Promise<{ data: Buffer | string; messageId: string }>): Promise<SendResult> {
    try {
      if (!ready) {
        await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
        ready = true;
      }
      const acceptedAt = new Date();
      const { data, messageId } = await content(acceptedAt);
      const base = `${acceptedAt.toISOString().replace(/[:.]/g, '-')}-${randomHex(4)}`;
      const tmp = path.join(dir, `.${base}.tmp`);
      fs.writeFileSync(tmp, data, { mode: 0o600 });
      fs.renameSync(tmp, path.join(dir, `${base}.${ext}`));
      return { messageId, acceptedAt };
    } catch (err) {
      if (err instanceof ProviderError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      // A folder we cannot write is a configuration problem: fall back rather than retry.
      const kind = code === 'EACCES' || code === 'EROFS' || code === 'ENOTDIR' || code === 'EEXIST' ? 'config' : 'transient';
      throw new ProviderError(kind, `outbox cannot write to ${dir}: ${(err as Error).message}`, { code, cause: err });
    }
  }

  const verify = async (): Promise<VerifyResult> => {
    try {
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.promises.access(dir, fs.constants.W_OK);
      return { ok: true, detail: `folder ${dir} is writable` };
    } catch (err) {
      return { ok: false, detail: `folder ${dir} is not writable: ${(err as Error).message}` };
    }
  };
  const close = async () => {};
  const json = (channel: string, { tracking: _tracking, ...message }: SmsMessage | WhatsAppMessage) => async (acceptedAt: Date) => {
    const messageId = `outbox-${randomHex(8)}`;
    const record = { channel, from: fromAddress ?? null, ...message, messageId, acceptedAt: acceptedAt.toISOString() };
    return { data: JSON.stringify(record, null, 2) + '\n', messageId };
  };

  if (config.channel === 'sms') {
    return { channel: 'sms', send: (m: SmsMessage) => write('json', json('sms', m)), verify, close };
  }
  if (config.channel === 'whatsapp') {
    return { channel: 'whatsapp', send: (m: WhatsAppMessage) => write('json', json('whatsapp', m)), verify, close };
  }
  const from = formatFrom(fromAddress ?? 'switchboard@localhost', config.settings.fromName === undefined ? undefined : String(config.settings.fromName));
  const mailto = config.settings.unsubscribeMailto === undefined ? undefined : String(config.settings.unsubscribeMailto);
  return {
    channel: 'email',
    send: (message: EmailMessage) =>
      write('eml', async () => {
        const MailComposer = await (composer ??= import('nodemailer/lib/mail-composer').then((m) => m.default));
        const node = new MailComposer({
          from,
          to: message.to,
          subject: message.subject,
          text: message.text,
          html: message.html,
          headers: emailHeaders(message, mailto),
        }).compile();
        return { data: await node.build(), messageId: node.messageId() };
      }),
    verify,
    close,
  };
}
