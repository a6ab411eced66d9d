// Module loader hooks (node:module register) for the module trace: appends every resolved module URL to
// the trace file. Runs in the loader thread; see trace-modules.mjs.
import fs from 'node:fs';

let file;

export async function initialize(data) {
  file = data.file;
}

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  fs.appendFileSync(file, `${result.url}\n`);
  return result;
}
