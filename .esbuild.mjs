// Bundles the CLI's own code (src/) for start-up speed (DESIGN §8): Node loads each ES module file separately
// (resolve, read, parse, link), so one file per command path is much cheaper than the ~20 small files tsc emits.
// - Packages stay external: they load from node_modules as they do without the bundle, and better-sqlite3's
//   native addon is found by its own lookup. Except commander, which every command runs (issue 15 start-up): bundled,
//   it is part of main.js instead of 8 CommonJS files read, wrapped and scanned for exports through Node's
//   ES-module/CommonJS bridge. Its `require()` of Node built-ins needs a real `require` in the ES-module chunks,
//   which the banner makes with `createRequire`.
// - Code splitting keeps every `await import()` lazy: each command module (src/cli/<noun>.ts) and each adapter is
//   its own chunk, so `tenant list` loads neither the send path nor any provider SDK.
// - keychain-child.ts is bundled on its own: the keychain runs it as a child process next to the bundle.
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
/**
 * The modules nearly every command runs (open the store, tenants and providers, keys, output), bundled into
 * main.js with the entry point and commander (issue 15). Left to esbuild's code splitting, code shared by
 * several lazily imported modules lands in one chunk per set of importers (esbuild does not see that main.js is
 * always loaded first), which made `tenant list` load 14 such chunks and `send test` 20, each an ES module Node
 * resolves, reads, compiles and links. So the build has two passes:
 * 1. main.js: src/cli/main.ts and these modules, re-exported so the second pass can import them. Every other
 *    module of ours they import (with `await import()`: the command modules, adapters) is left external, as
 *    `./<name>.js`, and becomes an entry point of pass 2. A static import of one is an error here: it would be
 *    loaded at start-up anyway and would import main.js back before main.js has run.
 * 2. those entry points, code-split as before (each command module and adapter its own file, code shared by
 *    them in chunks), with every import of a module of pass 1 pointed at `./main.js`.
 */
const COMMON = [
  'src/cli/main.ts',
  'src/errors.ts',
  'src/cli/output.ts',
  'src/cli/json.ts',
  'src/cli/prompt.ts',
  'src/cli/context.ts',
  'src/cli/command.ts',
  'src/core/time.ts',
  'src/core/context.ts',
  'src/core/audit.ts',
  'src/core/delivery-status.ts',
  'src/core/email-address.ts',
  'src/core/tenants.ts',
  'src/core/providers.ts',
  'src/core/vault.ts',
  'src/core/config-auth.ts',
  'src/providers/registry.ts',
  'src/store/db.ts',
  'src/store/migrations.ts',
  'src/store/open.ts',
  'src/store/sql.ts',
  'src/store/repos/audit.ts',
  'src/store/repos/tenants.ts',
  'src/store/repos/providers.ts',
  'src/store/repos/keys.ts',
  'src/store/repos/messages.ts',
  'src/crypto/keys.ts',
  'src/crypto/seal.ts',
  'src/crypto/keychain.ts',
  'src/crypto/config-mac.ts',
  'src/crypto/derive.ts',
  'src/lazy-node.ts',
  // What a send runs besides its adapter (`send test`; dispatch is shared with the bulk runner): without them here
  // a test send loaded 9 more shared chunks.
  'src/core/dispatch.ts',
  'src/core/limiter.ts',
  'src/core/address.ts',
  'src/core/suppressions.ts',
  'src/core/tracking.ts',
  'src/core/unsubscribe.ts',
  'src/store/repos/events.ts',
  'src/store/repos/suppressions.ts',
  'src/providers/types.ts',
  'src/providers/address.ts',
  'src/providers/http.ts',
  'src/providers/tracking.ts',
].map((m) => path.join(root, m));

const options = {
  absWorkingDir: root,
  outdir,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module';\nconst require = __sbCreateRequire(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
};

/** Resolves a relative import of our own source through esbuild; undefined for anything else. */
async function resolveOwn(b, args) {
  if (args.pluginData === 'own' || !args.path.startsWith('.') || !args.importer.startsWith(path.join(root, 'src'))) return undefined;
  const r = await b.resolve(args.path, { importer: args.importer, resolveDir: args.resolveDir, kind: args.kind, pluginData: 'own' });
  return r.errors.length > 0 ? undefined : r.path;
}

/**
 * commander requires `node:child_process` when it loads, for executable subcommands (`program.command(name,
 * description)`), which switchboard does not use: made a require on first `spawn`, so no command loads
 * child_process for commander's sake (2-3 ms measured). Fails the build if commander's line changes.
 */
const commanderLazySpawn = {
  name: 'commander-lazy-child-process',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]commander[\\/]lib[\\/]command\.js$/ }, (args) => {
      const line = "const childProcess = require('node:child_process');";
      const text = fs.readFileSync(args.path, 'utf8');
      if (!text.includes(line)) throw new Error(`${args.path}: no "${line}" to make lazy (.esbuild.mjs, commanderLazySpawn)`);
      return { contents: text.replace(line, "const childProcess = { spawn: (...a) => require('node:child_process').spawn(...a) };"), loader: 'js' };
    });
  },
};

/** Pass 2's entry points: output name → source file. */
const lazy = {};
const nameOf = new Map();
fs.rmSync(outdir, { recursive: true, force: true });
const pass1 = await build({
  ...options,
  entryPoints: { main: 'switchboard:main' },
  metafile: true,
  plugins: [
    commanderLazySpawn,
    {
      name: 'switchboard-main',
      setup(b) {
        b.onResolve({ filter: /^switchboard:main$/ }, () => ({ path: 'main', namespace: 'switchboard' }));
        b.onLoad({ filter: /.*/, namespace: 'switchboard' }, () => ({
          contents: COMMON.map((m) => `export * from ${JSON.stringify(m)};`).join('\n'),
          resolveDir: root,
          loader: 'ts',
        }));
        b.onResolve({ filter: /^\./ }, async (args) => {
          const file = await resolveOwn(b, args);
          if (!file || COMMON.includes(file)) return undefined;
          if (args.kind !== 'dynamic-import') {
            return { errors: [{ text: `${path.relative(root, args.importer)} imports ${path.relative(root, file)} statically: add it to COMMON in .esbuild.mjs` }] };
          }
          if (!nameOf.has(file)) {
            let name = path.basename(file).replace(/\.[jt]s$/, '');
            if (Object.hasOwn(lazy, name)) name = path.relative(path.join(root, 'src'), file).replace(/\.[jt]s$/, '').replaceAll('/', '-');
            lazy[name] = file;
            nameOf.set(file, name);
          }
          return { path: `./${nameOf.get(file)}.js`, external: true };
        });
      },
    },
  ],
});
const pass2 = await build({
  ...options,
  entryPoints: lazy,
  metafile: true,
  splitting: true,
  chunkNames: '[name]-[hash]',
  plugins: [
    {
      name: 'switchboard-lazy',
      setup(b) {
        b.onResolve({ filter: /^\./ }, async (args) => {
          const file = await resolveOwn(b, args);
          return file && COMMON.includes(file) ? { path: './main.js', external: true } : undefined;
        });
      },
    },
  ],
});
// Two modules of pass 1 exporting the same name make it ambiguous, and `export *` then drops it: fail here
// rather than when Node links the chunk that imports it.
const provided = new Set(pass1.metafile.outputs[path.relative(root, path.join(outdir, 'main.js'))].exports);
for (const [file, out] of Object.entries(pass2.metafile.outputs)) {
  for (const imp of out.imports) {
    if (imp.path !== './main.js') continue;
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"\.\/main\.js"/g)) {
      for (const name of m[1].split(',').map((n) => n.trim().split(/\s+as\s+/)[0]).filter(Boolean)) {
        if (!provided.has(name)) throw new Error(`${file} imports ${name} from main.js, which does not export it (ambiguous or missing in COMMON's modules)`);
      }
    }
  }
}
// The keychain's child process: a bundle of its own (it shares no module state with the CLI's process).
await build({ ...options, entryPoints: { 'keychain-child': 'src/crypto/keychain-child.ts' } });
