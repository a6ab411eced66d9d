/**
 * Small helpers shared by the adapters (no SDK imports here: the registry and core may load this module).
 */
import { ProviderError } from './types.js';

/** Collapses whitespace (provider replies span lines) into one line. */
export function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/**
 * Checks an `endpoint` setting (a base URL such as `https://api.eu.sendgrid.com` or `http://127.0.0.1:8025`)
 * and returns it without a trailing slash.
 * @throws ProviderError `config` naming the provider ref if it is not an http(s) URL.
 */
export function checkEndpoint(value: string, ref: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ProviderError('config', `provider ${ref}: endpoint "${value}" is not a URL (expected e.g. https://api.eu.sendgrid.com)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ProviderError('config', `provider ${ref}: endpoint "${value}" must be an http:// or https:// URL`);
  }
  return value.replace(/\/+$/, '');
}
