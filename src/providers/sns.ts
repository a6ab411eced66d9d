/**
 * Amazon SNS SMS adapter (`sns`), through the official `@aws-sdk/client-sns` (imported lazily by the registry).
 * Send: `Publish` with `PhoneNumber` (E.164) and `Message`
 * (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html); the message id is `MessageId`.
 * The sender id and origination number travel as the message attributes `AWS.SNS.SMS.SenderID` and
 * `AWS.MM.SMS.OriginationNumber` (https://docs.aws.amazon.com/sns/latest/dg/sms_publish-to-phone.html).
 * Verify: `GetSMSAttributes` (https://docs.aws.amazon.com/sns/latest/api/API_GetSMSAttributes.html), which
 * sends nothing and needs valid, signed credentials.
 *
 * Settings: region, accessKeyId, senderId, originationNumber, endpoint (base URL, e.g. a FIPS or VPC endpoint or a
 * local test server). Secret: secretAccessKey. The SDK's own retries are off (`maxAttempts: 1`): the dispatcher
 * retries and falls back (DESIGN §5).
 */
import type { SNSClient } from '@aws-sdk/client-sns';
import type { AdapterConfig, SendResult, SmsMessage, SmsProvider, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { AWS_AUTH_CODES, HTTP_TIMEOUT_MS, isNetworkError, parseEndpoint } from './http.js';

/** What the SDK puts on service errors (`ServiceException`). */
interface AwsError {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: { throttling?: boolean };
}

/**
 * SNS error codes by DESIGN §5 kind. Sources: Publish errors, https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors,
 * and the common AWS errors, https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html.
 * - auth: AuthorizationError (403), InvalidClientTokenId, SignatureDoesNotMatch, IncompleteSignature,
 *   MissingAuthenticationToken, AccessDenied(Exception), ExpiredToken, UnrecognizedClientException, InvalidSecurity.
 * - recipient with opt-out: OptedOut (the number replied STOP; SNS opt-out list).
 * - recipient: InvalidParameter / InvalidParameterValue / ValidationError naming PhoneNumber.
 * - rate_limited: Throttled (429), Throttling, ThrottlingException, KMSThrottling, and any error the SDK marks throttling.
 * - transient: InternalError/InternalFailure/ServiceUnavailable, any HTTP 5xx, and network failures.
 * - config: everything else (other invalid parameters, KMS errors, unknown codes).
 */
const AUTH = new Set([...AWS_AUTH_CODES, 'AuthorizationError', 'UnrecognizedClient', 'InvalidSecurity']);
const RATE = new Set(['Throttled', 'Throttling', 'KMSThrottling', 'TooManyRequests', 'RequestLimitExceeded']);
const TRANSIENT = new Set(['InternalError', 'InternalFailure', 'ServiceUnavailable']);
const INVALID = new Set(['InvalidParameter', 'InvalidParameterValue', 'ValidationError', 'Validation']);

/** Classifies an error thrown by the SNS client (see the table above). */
export function classifySnsError(err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  const e = (err ?? {}) as AwsError;
  const status = e.$metadata?.httpStatusCode;
  // The SDK names modelled errors `<Code>Exception`; unmodelled ones keep the wire code.
  const code = (e.Code ?? e.name ?? '').replace(/Exception$/, '');
  const text = `${e.message || code || 'unknown error'}${code ? ` (${code})` : ''}`;
  const details = { code: code || (status ? String(status) : undefined), cause: err };
  if (status === undefined && isNetworkError(err)) return new ProviderError('transient', `cannot reach SNS: ${text}`, details);
  if (code === 'OptedOut') return new ProviderError('recipient', `recipient has opted out of SMS: ${text}`, { ...details, optOut: true });
  if (AUTH.has(code)) return new ProviderError('auth', `SNS rejected the credentials: ${text}`, details);
  if (INVALID.has(code) && /phone ?number/i.test(e.message ?? '')) return new ProviderError('recipient', `recipient rejected: ${text}`, details);
  if (RATE.has(code) || e.$retryable?.throttling || status === 429) return new ProviderError('rate_limited', `SNS rate limit: ${text}`, details);
  if (TRANSIENT.has(code) || (status !== undefined && status >= 500) || status === undefined) {
    return new ProviderError('transient', `SNS error: ${text}`, details);
  }
  return new ProviderError('config', `SNS refused the request: ${text}`, details);
}

/**
 * Builds an SNS SMS adapter.
 * @throws ProviderError `config` for a malformed endpoint or missing credentials.
 */
export async function createSnsProvider(config: AdapterConfig): Promise<SmsProvider> {
  const s = config.settings;
  const secretAccessKey = config.secrets.secretAccessKey;
  if (!secretAccessKey) throw new ProviderError('config', `${config.ref}: secret secretAccessKey is not set`);
  let endpoint: string | undefined;
  try {
    endpoint = s.endpoint === undefined ? undefined : parseEndpoint(String(s.endpoint)).href;
  } catch (err) {
    throw new ProviderError('config', `${config.ref}: ${(err as Error).message}`);
  }
  const { SNSClient: Client, PublishCommand, GetSMSAttributesCommand } = await import('@aws-sdk/client-sns');
  const client: SNSClient = new Client({
    region: String(s.region),
    credentials: { accessKeyId: String(s.accessKeyId), secretAccessKey },
    maxAttempts: 1,
    requestHandler: { requestTimeout: HTTP_TIMEOUT_MS },
    ...(endpoint ? { endpoint } : {}),
  });

  const attributes: Record<string, { DataType: string; StringValue: string }> = {};
  if (s.senderId !== undefined) attributes['AWS.SNS.SMS.SenderID'] = { DataType: 'String', StringValue: String(s.senderId) };
  if (s.originationNumber !== undefined) attributes['AWS.MM.SMS.OriginationNumber'] = { DataType: 'String', StringValue: String(s.originationNumber) };

  return {
    channel: 'sms',
    async send(message: SmsMessage): Promise<SendResult> {
      try {
        const out = await client.send(
          new PublishCommand({
            PhoneNumber: message.to,
            Message: message.body,
            ...(Object.keys(attributes).length ? { MessageAttributes: attributes } : {}),
          }),
        );
        if (!out.MessageId) throw new ProviderError('transient', 'SNS accepted the request but returned no MessageId');
        return { messageId: out.MessageId, acceptedAt: new Date() };
      } catch (err) {
        throw classifySnsError(err);
      }
    },
    async verify(): Promise<VerifyResult> {
      try {
        const out = await client.send(new GetSMSAttributesCommand({}));
        const attrs = out.attributes ?? {};
        const shown = ['DefaultSMSType', 'MonthlySpendLimit', 'DefaultSenderID'].filter((k) => attrs[k]).map((k) => `${k}=${attrs[k]}`);
        return { ok: true, detail: `credentials accepted in ${String(s.region)}${shown.length ? ` (${shown.join(', ')})` : ''}` };
      } catch (err) {
        const e = classifySnsError(err);
        return { ok: false, detail: `${e.kind}: ${e.message}` };
      }
    },
    async close(): Promise<void> {
      client.destroy();
    },
  };
}
