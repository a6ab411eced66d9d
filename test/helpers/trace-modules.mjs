// Preload (`NODE_OPTIONS=--import=<this file>`) that records every module a process loads into the file named
// by SWITCHBOARD_TRACE_MODULES: ES modules through a resolve hook, CommonJS ones from require.cache at exit, and
// the public Node built-ins loaded by any route (an ES import, a require, or Node itself) from
// process.moduleLoadList at exit, as `builtin:<name>` (e.g. `builtin:crypto`).
// Used to prove that commands which send nothing load no provider SDK.
import fs from 'node:fs';
import { createRequire, register } from 'node:module';

const file = process.env.SWITCHBOARD_TRACE_MODULES;
if (file) {
  register('./trace-hooks.mjs', import.meta.url, { data: { file } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    const builtins = process.moduleLoadList.map((m) => /^NativeModule ([a-z_]+)$/.exec(m)?.[1]).filter(Boolean);
    fs.appendFileSync(file, [...Object.keys(cache), ...builtins.map((b) => `builtin:${b}`)].map((f) => `${f}\n`).join(''));
  });
}
