/**
 * Address helpers shared by e-mail adapters.
 */

/** `"Name" <addr>` when a display name is set (quotes and backslashes escaped), else the bare address. */
export function formatFrom(address: string, name: string | undefined): string {
  if (!name) return address;
  return `"${name.replace(/["\\]/g, (c) => `\\${c}`)}" <${address}>`;
}
