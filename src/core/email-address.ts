/**
 * E-mail address syntax check, on its own so that code needing only it (provider settings, `tenant list`)
 * does not load the phone-number metadata that core/address.ts brings in.
 */
import isEmailModule from 'validator/lib/isEmail.js';

// validator is CommonJS: under NodeNext the default import is the module object; its `default` is the function.
const isEmail = isEmailModule.default;

/** True if `address` is a syntactically valid e-mail address (validator.js isEmail, TLD required). */
export function isEmailAddress(address: string): boolean {
  return isEmail(address, { require_tld: true, allow_display_name: false, allow_ip_domain: false });
}
