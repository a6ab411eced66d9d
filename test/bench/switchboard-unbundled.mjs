// bin/switchboard on tsc's module-by-module output (dist/cli/main.js) instead of the esbuild bundle, for the
// bulk benches: they load test/bench/noop-kind.mjs with `node --import`, which registers its kind in
// dist/providers/registry.js — the registry this entry uses (the bundle has its own copy). Send-path code is the
// same; only start-up differs.
import { main } from '../../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });
