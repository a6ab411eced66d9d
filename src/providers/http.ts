/**
 * Small helpers shared by the adapters (no SDK imports here): base-URL handling for the `endpoint` setting,
 * `Retry-After` parsing, network-error detection, the User-Agent switchboard sends, one-line error texts, and
 * the AWS common error codes.
 */
import { readFileSync } from 'node:fs';
import { ProviderError } from './types.js';

/** Default timeout of one provider HTTP request, in ms. */
export const HTTP_TIMEOUT_MS = 30_000;

let userAgent: string | undefined;

/** `switchboard/<version>` (the version from package.json), read once. */
export function switchboardUserAgent(): string {
  userAgent ??= `switchboard/${(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version}`;
  return userAgent;
}

/**
 * Parses an `endpoint` setting: an absolute http(s) URL without query or fragment. A trailing `/` is dropped.
 * @throws Error naming the setting when it is not such a URL (adapters turn it into a `config` ProviderError).
 */
export function parseEndpoint(raw: string, setting = 'endpoint'): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`setting ${setting} "${raw}" is not a URL (expected e.g. https://api.example.com)`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash) {
    throw new Error(`setting ${setting} "${raw}" must be an http(s) base URL without query or fragment`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

/**
 * Checks an `endpoint` setting for an adapter and returns it without a trailing slash.
 * @throws ProviderError `config` naming the provider ref if it is not an http(s) base URL.
 */
export function checkEndpoint(value: string, ref: string): string {
  try {
    return parseEndpoint(value).href.replace(/\/+$/, '');
  } catch (err) {
    throw new ProviderError('config', `provider ${ref}: ${(err as Error).message}`);
  }
}

/** Collapses whitespace (provider replies span lines) into one line. */
export function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/**
 * AWS common error codes that mean the credentials are wrong, expired or not allowed
 * (https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html, https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html).
 */
export const AWS_AUTH_CODES: ReadonlySet<string> = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'ExpiredToken',
  'ExpiredTokenException',
]);

/** `base` (from {@link parseEndpoint}) joined with an absolute `pathAndQuery` such as `/v23.0/123/messages`. */
export function joinEndpoint(base: URL, pathAndQuery: string): string {
  const prefix = base.pathname === '/' ? '' : base.pathname;
  return `${base.origin}${prefix}${pathAndQuery}`;
}

/**
 * A `Retry-After` header value (RFC 9110 §10.2.3: delay in seconds, or an HTTP date) in ms from `now`.
 * Returns undefined when absent or unreadable; never negative.
 */
export function retryAfterMs(value: unknown, now: Date = new Date()): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const text = String(Array.isArray(value) ? value[0] : value).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}

/** Whether an error thrown by an HTTP client is a network-level failure (refused, reset, DNS, timeout). */
export function isNetworkError(err: unknown): boolean {
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code ?? '';
  return (
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    /^(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_\w+)$/.test(code)
  );
}
