// Bundles the CLI's own code (src/) for start-up speed (DESIGN §8): Node loads each module file separately
// (resolve, read, parse, link), so one file per command path is much cheaper than the ~20 small files tsc emits.
// - Packages stay external: they load from node_modules as they do without the bundle. Except commander and
//   better-sqlite3's JavaScript, which every command runs (issue 15 start-up): bundled, they are part of main.cjs
//   (compiled from its code cache) instead of 8 and 12 CommonJS files resolved, read and wrapped one by one
//   (measured: `tenant list` on 1,000 tenants 5 ms faster, 40 paired runs). better-sqlite3's native addon stays in
//   node_modules; src/store/db.ts hands its path to the driver (`nativeBinding`).
// - Code splitting keeps every `await import()` lazy: each command module (src/cli/<noun>.ts) and each adapter is
//   its own chunk, so `tenant list` loads neither the send path nor any provider SDK.
// - The bundle is CommonJS (`.cjs`), run by a CommonJS bin/switchboard (issue 15, start-up): Node's ES-module
//   loader (resolve, link, and its CommonJS bridge) is never started for our own code, and the entry can be
//   compiled with a V8 code cache, which Node 20 offers for scripts (`vm.Script`) but not for ES modules. esbuild
//   code-splits ES modules only, so passes 1 and 2 below write ES modules to a staging folder and pass 3 turns
//   each into CommonJS (source maps chained): `import()` of one of our chunks becomes a `require()` on first use
//   (still lazy), `import()` of a package stays `import()` (chalk and others are ES modules), and
//   `import.meta.url` becomes the file's own URL.
// - After the bundle, the build runs `tenant list` once on a throw-away store and stores V8's code cache of
//   main.cjs next to it (main.cjs.v8cache), which bin/switchboard uses when it belongs to the same build.
// - keychain-child.ts is bundled on its own: the keychain runs it as a child process next to the bundle.
// tsc still type-checks and emits dist/ module by module (test helpers import dist/core and dist/store).
// Usage: node .esbuild.mjs   (run by `npm run build`)
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Packages bundled into the CLI rather than loaded from node_modules. */
const BUNDLED = new Set(['commander', 'better-sqlite3']);

const root = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.join(root, 'dist', 'bundle');
/** Passes 1 and 2 write ES modules here; pass 3 turns them into dist/bundle/*.cjs. Removed after the build. */
const staging = path.join(root, 'dist', '.bundle-esm');
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
 * (File names below are the staged ES modules; pass 3 renames each `.js` to `.cjs`.)
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
  outdir: staging,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // The staged modules end up CommonJS (pass 3), where `import.meta` does not exist: pass 3 defines `__sbUrl`.
  define: { 'import.meta.url': '__sbUrl' },
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
fs.rmSync(staging, { recursive: true, force: true });
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
const provided = new Set(pass1.metafile.outputs[path.relative(root, path.join(staging, 'main.js'))].exports);
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
/**
 * Pass 3: each staged ES module becomes dist/bundle/<name>.cjs. Every import stays external (our other chunks as
 * `./<name>.cjs`); `import("./<chunk>.js")` is rewritten to a `require()` in a promise before esbuild reads it
 * (same line, so the staged source maps still chain); `__sbUrl` is the file's URL.
 * A package imported statically becomes a `require()` of it. Its default import must stay what it was: the
 * package's default export for an ES module (p-queue, which Node 20.19+ loads by `require`; nodemailer's build
 * marked `__esModule`), `module.exports` for CommonJS (pg, fastify). That is esbuild's `__esModule` interop, which
 * it applies only when the importing file is not an ES module in Node's sense, hence the staging folder's own
 * package.json (without it, `new PQueue()` would get p-queue's namespace object).
 */
fs.writeFileSync(path.join(staging, 'package.json'), '{ "type": "commonjs" }\n');
await build({
  absWorkingDir: root,
  outdir,
  entryPoints: Object.fromEntries(fs.readdirSync(staging).filter((f) => f.endsWith('.js')).map((f) => [f.slice(0, -3), path.join(staging, f)])),
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  banner: { js: 'var __sbUrl = require("node:url").pathToFileURL(__filename).href;' },
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  logLevel: 'warning',
  plugins: [
    {
      name: 'switchboard-commonjs',
      setup(b) {
        b.onResolve({ filter: /.*/ }, (args) => {
          if (args.kind === 'entry-point') return undefined;
          return args.path.startsWith('./') ? { path: args.path.replace(/\.js$/, '.cjs'), external: true } : { path: args.path, external: true };
        });
        b.onLoad({ filter: /\.js$/ }, (args) => {
          let contents = fs.readFileSync(args.path, 'utf8').replace(/\bimport\("(\.\/[\w-]+)\.js"\)/g, 'Promise.resolve().then(() => require("$1.cjs"))');
          // main.cjs runs compiled by bin/switchboard with a code cache, and Node 20 loses a script's `import()`
          // handler when its code comes from a cache made in another process ("A dynamic import callback was not
          // specified"): main.cjs imports packages (chalk, @inquirer/prompts) through the bin's `import()`, handed
          // over as `module.sbImport`, or its own when loaded by a plain `require`.
          if (path.basename(args.path) === 'main.js') contents = contents.replace(/\bimport\(("[^".][^"]*")\)/g, '(module.sbImport ?? ((s) => import(s)))($1)');
          return { contents, loader: 'js' };
        });
      },
    },
  ],
});
fs.rmSync(staging, { recursive: true, force: true });

// The keychain's child process: a bundle of its own (it shares no module state with the CLI's process), an ES
// module that Node runs as a script of its own.
await build({
  ...options,
  outdir,
  define: {},
  banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module';\nconst require = __sbCreateRequire(import.meta.url);" },
  entryPoints: { 'keychain-child': 'src/crypto/keychain-child.ts' },
});

/**
 * The code cache of main.cjs (bin/switchboard): main.cjs ends with a line naming this build (a hash of its
 * content); a warm-up `tenant list` on a throw-away store with one tenant, run with SWITCHBOARD_WRITE_CODE_CACHE=1,
 * writes V8's cached data after the command ran (so it holds the functions that command compiled), behind that
 * line. Fails the build if the warm-up fails.
 */
const mainFile = path.join(outdir, 'main.cjs');
fs.appendFileSync(mainFile, `// switchboard build ${createHash('sha256').update(fs.readFileSync(mainFile)).digest('hex').slice(0, 16)}\n`);
const warm = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-build-cache-'));
try {
  const env = { PATH: process.env.PATH, HOME: warm, SWITCHBOARD_STORE: path.join(warm, 'switchboard.db'), SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'), NO_COLOR: '1' };
  for (const [args, extra] of [
    [['tenant', 'add', 'warm-up', '--name', 'Warm-up'], {}],
    [['tenant', 'list'], { SWITCHBOARD_WRITE_CODE_CACHE: '1' }],
  ]) {
    const r = spawnSync(process.execPath, [path.join(root, 'bin', 'switchboard'), ...args], { env: { ...env, ...extra }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`code cache warm-up: switchboard ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  if (!fs.existsSync(`${mainFile}.v8cache`)) throw new Error('code cache warm-up wrote no main.cjs.v8cache');
} finally {
  fs.rmSync(warm, { recursive: true, force: true });
}
