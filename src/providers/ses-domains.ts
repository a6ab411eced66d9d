/**
 * Amazon SES sender domains through `@aws-sdk/client-sesv2`: an email identity with Easy DKIM, and optionally
 * a custom MAIL FROM domain.
 * Wire format (REST JSON): https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_CreateEmailIdentity.html,
 * API_GetEmailIdentity.html, API_DeleteEmailIdentity.html, API_PutEmailIdentityMailFromAttributes.html;
 * records: https://docs.aws.amazon.com/ses/latest/dg/send-email-authentication-dkim-easy.html and
 * https://docs.aws.amazon.com/ses/latest/dg/mail-from.html.
 */
import type { SESv2Client as Client, DkimAttributes, MailFromAttributes } from '@aws-sdk/client-sesv2';
import { httpError, normalizeHost, type DnsRecord, type DomainApiConfig, type DomainAuthApi, type DomainValidation, type RecordValidation } from './domain-auth.js';
import { ProviderError } from './types.js';

/** Default zone of Easy DKIM CNAME targets (`<token>.dkim.amazonses.com`) when SES does not name one. */
const DEFAULT_DKIM_ZONE = 'dkim.amazonses.com';

function failure(err: unknown, what: string): ProviderError {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return httpError(status, `SES ${what}: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message ?? String(err)}`, err);
}

/** The records an identity needs: one CNAME per DKIM token, and MX + SPF TXT for a custom MAIL FROM domain. */
export function sesRecords(domain: string, region: string, dkim: DkimAttributes | undefined, mailFrom: MailFromAttributes | undefined): DnsRecord[] {
  const zone = normalizeHost(dkim?.SigningHostedZone || DEFAULT_DKIM_ZONE);
  const records: DnsRecord[] = (dkim?.Tokens ?? []).map((token, i) => ({
    purpose: `dkim${i + 1}`,
    type: 'CNAME',
    host: normalizeHost(`${token}._domainkey.${domain}`),
    value: normalizeHost(`${token}.${zone}`),
  }));
  if (mailFrom?.MailFromDomain) {
    const host = normalizeHost(mailFrom.MailFromDomain);
    records.push({ purpose: 'mail_from_mx', type: 'MX', host, value: `feedback-smtp.${region}.amazonses.com`, priority: 10 });
    records.push({ purpose: 'mail_from_spf', type: 'TXT', host, value: 'v=spf1 include:amazonses.com ~all' });
  }
  return records;
}

/**
 * Builds the SES domain API from a config: settings `region`, `accessKeyId`, `endpoint` (optional), secret
 * `secretAccessKey`.
 */
export async function createSesDomains(config: DomainApiConfig): Promise<DomainAuthApi> {
  const sdk = await import('@aws-sdk/client-sesv2');
  const region = String(config.settings.region ?? '');
  const accessKeyId = String(config.settings.accessKeyId ?? '');
  const secretAccessKey = config.secrets.secretAccessKey;
  if (!region || !accessKeyId || !secretAccessKey) throw new ProviderError('config', `${config.ref}: region, accessKeyId and secret secretAccessKey are required`);
  const endpoint = typeof config.settings.endpoint === 'string' && config.settings.endpoint ? config.settings.endpoint : undefined;
  const client: Client = new sdk.SESv2Client({ region, credentials: { accessKeyId, secretAccessKey }, ...(endpoint ? { endpoint } : {}), maxAttempts: 2 });

  const get = async (identity: string) => {
    try {
      return await client.send(new sdk.GetEmailIdentityCommand({ EmailIdentity: identity }));
    } catch (err) {
      throw failure(err, `get identity ${identity}`);
    }
  };

  return {
    async create(domain, options) {
      try {
        await client.send(new sdk.CreateEmailIdentityCommand({ EmailIdentity: domain }));
      } catch (err) {
        // An identity made earlier (e.g. by hand in the console) is adopted: its records are read below.
        if ((err as { name?: string }).name !== 'AlreadyExistsException') throw failure(err, `create identity ${domain}`);
      }
      if (options.mailFrom) {
        try {
          await client.send(
            new sdk.PutEmailIdentityMailFromAttributesCommand({
              EmailIdentity: domain,
              MailFromDomain: `${options.mailFrom}.${domain}`,
              BehaviorOnMxFailure: 'USE_DEFAULT_VALUE',
            }),
          );
        } catch (err) {
          throw failure(err, `set MAIL FROM for ${domain}`);
        }
      }
      const identity = await get(domain);
      return { externalId: domain, records: sesRecords(domain, region, identity.DkimAttributes, identity.MailFromAttributes) };
    },

    async validate(externalId): Promise<DomainValidation> {
      const identity = await get(externalId);
      const dkim = identity.DkimAttributes?.Status ?? 'NOT_STARTED';
      const records = sesRecords(externalId, region, identity.DkimAttributes, identity.MailFromAttributes);
      const mailFrom = identity.MailFromAttributes?.MailFromDomain ? (identity.MailFromAttributes.MailFromDomainStatus ?? 'PENDING') : null;
      const results: RecordValidation[] = records.map((r) => {
        const state = r.purpose.startsWith('dkim') ? dkim : (mailFrom ?? 'PENDING');
        return { purpose: r.purpose, valid: state === 'SUCCESS', reason: state === 'SUCCESS' ? null : `${r.purpose.startsWith('dkim') ? 'DKIM' : 'MAIL FROM'} status ${state}` };
      });
      const verified = dkim === 'SUCCESS' && identity.VerifiedForSendingStatus === true && (mailFrom === null || mailFrom === 'SUCCESS');
      const failed = dkim === 'FAILED' || mailFrom === 'FAILED';
      return { status: verified ? 'verified' : failed ? 'failed' : 'pending', final: failed, results, records };
    },

    async remove(externalId) {
      try {
        await client.send(new sdk.DeleteEmailIdentityCommand({ EmailIdentity: externalId }));
      } catch (err) {
        if ((err as { name?: string }).name === 'NotFoundException') return;
        throw failure(err, `delete identity ${externalId}`);
      }
    },
  };
}
