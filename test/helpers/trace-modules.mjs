// Preload (`NODE_OPTIONS=--import=<this file>`) that records every module a process loads into the file named
// by SWITCHBOARD_TRACE_MODULES: ES modules through a resolve hook, CommonJS ones from require.cache at exit.
// Used to prove that commands which send nothing load no provider SDK.
import fs from 'node:fs';
import { createRequire, register } from 'node:module';

const file = process.env.SWITCHBOARD_TRACE_MODULES;
if (file) {
  register('./trace-hooks.mjs', import.meta.url, { data: { file } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => fs.appendFileSync(file, Object.keys(cache).map((f) => `${f}\n`).join('')));
}
