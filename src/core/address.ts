/**
 * Recipient address checks shared by commands and bulk sends.
 * libphonenumber-js (full metadata, ~90 files) is required on first phone-number use, not at import: an e-mail
 * send and commands that only name a tenant load none of it (issue 15, DESIGN §8 start-up).
 */
import { createRequire } from 'node:module';
import type * as PhoneLib from 'libphonenumber-js/max';
import { UsageError } from '../errors.js';
import { isEmailAddress } from './email-address.js';

let phoneLib: typeof PhoneLib | undefined;
/** libphonenumber-js/max (its CommonJS build), loaded once on first use. */
function phone(): typeof PhoneLib {
  phoneLib ??= createRequire(import.meta.url)('libphonenumber-js/max') as typeof PhoneLib;
  return phoneLib;
}

export { isEmailAddress };

/**
 * Normalises a phone number to E.164 (`+447700900123`) with libphonenumber-js (full metadata).
 * Numbers without a `+` country code are read in `defaultRegion` (ISO 3166-1 alpha-2, e.g. `GB`).
 * Returns null if the number is not a valid number.
 */
export function toE164(raw: string, defaultRegion?: string): string | null {
  const text = raw.trim().replace(/^whatsapp:/i, '');
  if (!text) return null;
  const parsed = phone().parsePhoneNumberFromString(text, defaultRegion as PhoneLib.CountryCode | undefined);
  return parsed && parsed.isValid() ? parsed.number : null;
}

/** @throws UsageError naming `--default-region` if `region` is not a supported ISO 3166-1 alpha-2 code. */
export function checkRegion(region: string | undefined): string | undefined {
  if (region === undefined) return undefined;
  const r = region.toUpperCase();
  if (!phone().isSupportedCountry(r)) throw new UsageError(`--default-region ${region} is not a country code such as US, GB or DE`);
  return r;
}

/**
 * Checks and normalises a recipient for a channel: an e-mail address, or a phone number in E.164.
 * @returns the normalised address, or an error text naming what is wrong.
 */
export function normaliseRecipient(channel: 'email' | 'sms' | 'whatsapp', raw: string, defaultRegion?: string): { to: string } | { error: string } {
  const value = raw.trim();
  if (channel === 'email') return isEmailAddress(value) ? { to: value } : { error: `"${value}" is not a valid e-mail address` };
  const e164 = toE164(value, defaultRegion);
  if (e164) return { to: e164 };
  return {
    error: `"${value}" is not a valid phone number${/^\s*\+/.test(value) || defaultRegion ? '' : ' (give it with +country code, or set --default-region)'}`,
  };
}
