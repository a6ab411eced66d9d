/**
 * Node built-ins that only some commands use, loaded on their first use rather than when the CLI starts: an ES
 * `import` of `node:crypto` or `node:child_process` loads and runs a few dozen of Node's internal modules (2-5 ms
 * each measured), which `tenant list` and other commands that neither seal a secret, check a config's MAC nor
 * run the keychain never need (issue 15, start-up). Node caches each built-in, so later calls cost a lookup.
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

/** `node:crypto`, loaded on the first call. */
export function nodeCrypto(): typeof import('node:crypto') {
  return load('node:crypto') as typeof import('node:crypto');
}

/** `node:child_process`, loaded on the first call. */
export function childProcess(): typeof import('node:child_process') {
  return load('node:child_process') as typeof import('node:child_process');
}
