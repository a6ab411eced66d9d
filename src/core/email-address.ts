/**
 * E-mail address syntax check, on its own so that code needing only it (provider settings, `tenant list`)
 * does not load the phone-number metadata that core/address.ts brings in.
 */
import { createRequire } from 'node:module';
import type isEmailModule from 'validator/lib/isEmail.js';

/**
 * validator's isEmail, required on first use: it is CommonJS spread over about ten files, and commands that
 * only read the store (`tenant list`) import this module without checking any address (DESIGN §8 start-up).
 */
let isEmail: typeof isEmailModule.default | undefined;

/** True if `address` is a syntactically valid e-mail address (validator.js isEmail, TLD required). */
export function isEmailAddress(address: string): boolean {
  isEmail ??= (createRequire(import.meta.url)('validator/lib/isEmail.js') as typeof isEmailModule).default;
  return isEmail(address, { require_tld: true, allow_display_name: false, allow_ip_domain: false });
}
