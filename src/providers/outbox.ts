/**
 * Outbox adapter: writes each e-mail as an RFC 5322 `.eml` file into a folder, like nodemailer's stream
 * transport or Django's file e-mail backend. The embedded default: needs no network and no credentials.
 * Files are written to a temporary name and renamed, so a reader never sees half a message.
 * Settings: dir, from, fromName.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { AdapterConfig, EmailMessage, EmailProvider, SendResult, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { formatFrom } from './address.js';

/** Builds an outbox adapter. The folder is created (mode 0700) on first send. */
export function createOutboxProvider(config: AdapterConfig): EmailProvider {
  const dir = path.resolve(String(config.settings.dir));
  const from = formatFrom(
    String(config.settings.from ?? 'switchboard@localhost'),
    config.settings.fromName === undefined ? undefined : String(config.settings.fromName),
  );
  let ready: Promise<unknown> | undefined;

  return {
    channel: 'email',
    async send(message: EmailMessage): Promise<SendResult> {
      try {
        ready ??= fs.mkdir(dir, { recursive: true, mode: 0o700 });
        await ready;
        const node = new MailComposer({
          from,
          to: message.to,
          subject: message.subject,
          text: message.text,
          html: message.html,
          headers: message.headers,
        }).compile();
        const raw = await node.build();
        const messageId = node.messageId();
        const acceptedAt = new Date();
        const base = `${acceptedAt.toISOString().replace(/[:.]/g, '-')}-${randomBytes(4).toString('hex')}`;
        const tmp = path.join(dir, `.${base}.tmp`);
        await fs.writeFile(tmp, raw, { mode: 0o600 });
        await fs.rename(tmp, path.join(dir, `${base}.eml`));
        return { messageId, acceptedAt };
      } catch (err) {
        if (err instanceof ProviderError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        // A folder we cannot write is a configuration problem: fall back rather than retry.
        const kind = code === 'EACCES' || code === 'EROFS' || code === 'ENOTDIR' || code === 'EEXIST' ? 'config' : 'transient';
        throw new ProviderError(kind, `outbox cannot write to ${dir}: ${(err as Error).message}`, { code, cause: err });
      }
    },
    async verify(): Promise<VerifyResult> {
      try {
        await fs.mkdir(dir, { recursive: true, mode: 0o700 });
        await fs.access(dir, fs.constants.W_OK);
        return { ok: true, detail: `folder ${dir} is writable` };
      } catch (err) {
        return { ok: false, detail: `folder ${dir} is not writable: ${(err as Error).message}` };
      }
    },
    async close(): Promise<void> {},
  };
}
