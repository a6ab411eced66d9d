// JSON Schemas of every `--json` output (test/schemas/, validated with ajv) and the README's JSON vocabulary rules,
// for the e2e tests that check command output.
import fs from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'vitest';
import { repoRoot } from './cli.js';

export const schemaDir = path.join(repoRoot, 'test', 'schemas');
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
for (const f of fs.readdirSync(schemaDir).filter((n) => n.endsWith('.schema.json'))) {
  ajv.addSchema(JSON.parse(fs.readFileSync(path.join(schemaDir, f), 'utf8')) as object);
}

export const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const REF = /^[a-z][a-z0-9-]*\/(email|sms|whatsapp)\/[a-z0-9_-]+$/;

/**
 * The README's vocabulary rules, checked on any JSON value whatever its command: `…At` is ISO 8601 UTC or null;
 * `provider` is a ref or null; no `ref`, `providerRef`, `at`; a number never has a plural name (counts are
 * `…Count`, durations `…Ms`); a `…Count` is a whole number. An event's `payload` is the provider's own object,
 * in the provider's words, and is not checked.
 */
function vocabularyProblems(value: unknown, where = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => vocabularyProblems(v, `${where}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const at = `${where}.${k}`;
    if (k === 'payload') continue;
    if (['ref', 'providerRef', 'at', 'to'].includes(k)) out.push(`${at}: not in the vocabulary`);
    if (/At$/.test(k) && !(v === null || (typeof v === 'string' && TIME.test(v)))) out.push(`${at}: ${JSON.stringify(v)} is not an ISO 8601 UTC time`);
    if (k === 'provider' && !(v === null || (typeof v === 'string' && REF.test(v)))) out.push(`${at}: ${JSON.stringify(v)} is not a provider ref`);
    if (typeof v === 'number' && /s$/.test(k) && !/Ms$/.test(k)) out.push(`${at}: a number with a plural name (use …Count)`);
    if (/Count$/.test(k) && !(typeof v === 'number' && Number.isInteger(v))) out.push(`${at}: a count that is not a whole number`);
    // Maps keyed by a provider ref are lists in disguise.
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).some((x) => REF.test(x))) out.push(`${at}: an object keyed by provider refs (use an array)`);
    out.push(...vocabularyProblems(v, at));
  }
  return out;
}

/** Checks one JSON document against `test/schemas/<schema>.schema.json` and the vocabulary; returns it. */
export function checkJson(schema: string, doc: unknown, what: string): unknown {
  const validate = ajv.getSchema(`https://switchboard.invalid/schemas/${schema}.schema.json`);
  if (!validate) throw new Error(`no schema ${schema}`);
  if (!validate(doc)) throw new Error(`${what}: does not match ${schema}.schema.json: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(doc, null, 2)}`);
  expect(vocabularyProblems(doc), what).toEqual([]);
  return doc;
}
