/**
 * The child process that talks to the OS keychain (`@napi-rs/keyring`, pinned to the Secret Service).
 * It runs in its own process because the library can hang forever (a locked keyring waiting for an unseen
 * unlock prompt, or a bus that never answers): the parent ({@link ./keychain.ts}) kills it after 3 s.
 *
 * Usage: `node keychain-child.js <get|set|delete|probe> <account>`; the service is always `switchboard`.
 * - `get`: writes the stored text to stdout (the pipe to the parent, nothing else); exit 3 when there is none.
 * - `set`: reads the text to store from stdin (never argv).
 * - `delete`: removes the item (exit 0 whether or not it existed).
 * - `probe`: reads the item without printing it: exit 0 (present) or 3 (absent); proves the keychain answers.
 * Any failure: exit 1 with the library's one-line message on stderr (the library's messages hold no secret).
 */
import { readFileSync } from 'node:fs';

/** Exit code for "no such item". */
const ABSENT = 3;

async function run(): Promise<number> {
  const [op, account] = process.argv.slice(2);
  if (!op || !account) {
    process.stderr.write('usage: keychain-child <get|set|delete|probe> <account>\n');
    return 2;
  }
  const { Entry } = await import('@napi-rs/keyring');
  const entry = new Entry('switchboard', account, { linux: { store: 'secret-service' } });
  switch (op) {
    case 'get':
    case 'probe': {
      const value = entry.getPassword();
      if (value === null || value === undefined) return ABSENT;
      if (op === 'get') process.stdout.write(value);
      return 0;
    }
    case 'set':
      entry.setPassword(readFileSync(0, 'utf8'));
      return 0;
    case 'delete':
      entry.deletePassword();
      return 0;
    default:
      process.stderr.write(`unknown operation ${op}\n`);
      return 2;
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${String((err as Error)?.message ?? err).split('\n')[0]}\n`);
    process.exitCode = 1;
  },
);
