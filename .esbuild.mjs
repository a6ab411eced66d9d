// Bundles the CLI's own code (src/) for start-up speed (DESIGN §8): Node loads each ES module file separately
// (resolve, read, parse, link), so one file per command path is much cheaper than the ~20 small files tsc emits.
// - Packages stay external: they load from node_modules as they do without the bundle, and better-sqlite3's
//   native addon is found by its own lookup. Except commander, which every command runs (issue 15 start-up): bundled,
//   it is part of main.js instead of 8 CommonJS files read, wrapped and scanned for exports through Node's
//   ES-module/CommonJS bridge. Its `require()` of Node built-ins needs a real `require` in the ES-module chunks,
//   which the banner makes with `createRequire`.
// - Code splitting keeps every `await import()` lazy: each command module (src/cli/<noun>.ts) and each adapter is
//   its own chunk, so `tenant list` loads neither the send path nor any provider SDK.
// - keychain-child.ts is a second entry: the keychain runs it as a child process next to the bundle.
// tsc still type-checks and emits dist/ module by module (test helpers import dist/core and dist/store).
// Usage: node .esbuild.mjs   (run by `npm run build`)
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Packages bundled into the CLI rather than loaded from node_modules. */
const BUNDLED = new Set(['commander']);

const root = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.join(root, 'dist', 'bundle');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const external = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })
  .filter((name) => !BUNDLED.has(name))
  .flatMap((name) => [name, `${name}/*`]);
fs.rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: { main: 'src/cli/main.ts', 'keychain-child': 'src/crypto/keychain-child.ts' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module';\nconst require = __sbCreateRequire(import.meta.url);" },
  sourcemap: true,
  chunkNames: '[name]-[hash]',
  logLevel: 'warning',
});
