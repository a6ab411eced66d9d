// `provider kinds` is generated from the registry's KindSpec: every registered kind shows up (a kind added with
// registerKind too), and what it says about batching matches what each adapter actually does.
import { describe, expect, test } from 'vitest';
import { main } from '../../src/cli/main.js';
import { KINDS, registerKind, settingSpecs, type KindSpec } from '../../src/providers/registry.js';
import { kindJson } from '../../src/cli/provider.js';
import type { Provider } from '../../src/providers/types.js';

/** Runs the CLI in-process; returns exit code and stdout. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdin: process.stdin,
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
    env: { HOME: '/nonexistent', SWITCHBOARD_STORE: '/nonexistent/never-opened.db' },
  });
  return { code, stdout, stderr };
}

describe('provider kinds', () => {
  test('lists every registered kind, with settings (and the common ones), secrets and capabilities', async () => {
    const r = await run(['provider', 'kinds', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const kinds = JSON.parse(r.stdout) as Array<ReturnType<typeof kindJson>>;
    expect(kinds.map((k) => k.kind)).toEqual([...KINDS.keys()]);
    const twilio = kinds.find((k) => k.kind === 'twilio')!;
    expect(twilio.settings.map((s) => s.name)).toEqual(Object.keys(settingSpecs(KINDS.get('twilio')!)));
    expect(twilio.settings.find((s) => s.name === 'accountSid')).toMatchObject({ required: true, default: null });
    expect(twilio.settings.find((s) => s.name === 'pricePerSegment')).toMatchObject({ type: 'decimal', required: false });
    expect(twilio.secrets).toEqual([{ name: 'authToken', required: true, advanced: false, description: expect.stringMatching(/^auth token of the account/) }]);
    // Delivery-event settings and secrets are marked advanced (the interactive `provider add` does not ask for them).
    expect(twilio.settings.find((s) => s.name === 'softBounceLimit')).toMatchObject({ advanced: true, required: false });
    expect(kinds.find((k) => k.kind === 'meta-whatsapp')!.secrets.filter((x) => x.advanced).map((x) => x.name)).toEqual(['appSecret', 'webhookVerifyToken']);
    expect(kinds.find((k) => k.kind === 'smtp')!.settings.find((s) => s.name === 'tls')).toMatchObject({ default: 'starttls', values: ['starttls', 'tls', 'none'] });
    expect(kinds.filter((k) => k.canAuthenticateDomains).map((k) => k.kind)).toEqual(['sendgrid', 'ses']);
    expect(kinds.filter((k) => k.canBatch).map((k) => k.kind)).toEqual(['sendgrid']);
    // E-mail kinds have no segment price.
    expect(kinds.find((k) => k.kind === 'smtp')!.settings.some((s) => s.name === 'pricePerSegment')).toBe(false);
  });

  test('a kind added with registerKind shows up, and `provider verify --help` lists it among the kinds that verify', async () => {
    const spec: KindSpec = {
      kind: 'test-pigeon',
      channels: ['sms'],
      summary: 'carrier pigeon (test)',
      settings: { loft: { type: 'string', required: true, doc: 'where the pigeons live' } },
      secrets: { ring: { required: false, doc: 'leg ring code' } },
      verifies: 'the pigeon comes back',
      create: () => Promise.reject(new Error('not in this test')),
    };
    registerKind(spec);
    try {
      const one = await run(['provider', 'kinds', 'test-pigeon', '--json']);
      expect(JSON.parse(one.stdout)).toEqual([
        expect.objectContaining({ kind: 'test-pigeon', channels: ['sms'], canVerify: true, verifies: 'the pigeon comes back', canBatch: false, canAuthenticateDomains: false }),
      ]);
      const text = await run(['provider', 'kinds']);
      expect(text.stdout.split('\n').some((l) => l.startsWith('test-pigeon\tsms\tyes\tno\tno\t'))).toBe(true);
      const help = await run(['provider', 'verify', '--help']);
      for (const k of [...KINDS.values()].filter((x) => x.verifies)) expect(help.stdout).toContain(`  ${k.kind}: ${k.verifies}`);
    } finally {
      (KINDS as Map<string, KindSpec>).delete('test-pigeon');
    }
    const unknown = await run(['provider', 'kinds', 'test-pigeon']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no provider kind test-pigeon/);
  });

  test('batchSize in each KindSpec matches the adapter: sendMany exactly where it is declared, within the size', async () => {
    const settings: Record<string, Record<string, string | number | boolean>> = {
      smtp: { host: '127.0.0.1', from: 'a@example.com', tls: 'none', timeout: 1000 },
      outbox: { dir: '/nonexistent' },
      sendgrid: { from: 'a@example.com', endpoint: 'http://127.0.0.1:9' },
      ses: { region: 'eu-west-1', from: 'a@example.com', accessKeyId: 'AKIAEXAMPLE', endpoint: 'http://127.0.0.1:9' },
      twilio: { accountSid: `AC${'0'.repeat(32)}`, from: '+14155550100' },
      'twilio-whatsapp': { accountSid: `AC${'0'.repeat(32)}`, from: '+14155550100' },
      sns: { region: 'eu-west-1', accessKeyId: 'AKIAEXAMPLE' },
      'meta-whatsapp': { phoneNumberId: '1', apiVersion: 'v23.0' },
    };
    for (const spec of KINDS.values()) {
      const s = settings[spec.kind];
      if (!s) continue; // kinds registered by other tests
      const secrets = Object.fromEntries(Object.keys(spec.secrets).map((k) => [k, `SG.${'x'.repeat(20)}`]));
      const adapter = (await spec.create({ ref: `system/${spec.channels[0]}/${spec.kind}`, settings: s, secrets, maxConcurrency: 1, channel: spec.channels[0] as 'email' })) as Provider & { sendMany?: unknown; maxBatchSize?: number };
      try {
        expect(typeof adapter.sendMany === 'function', `${spec.kind}: sendMany`).toBe(spec.batchSize !== undefined);
        if (spec.batchSize !== undefined) expect(adapter.maxBatchSize).toBeLessThanOrEqual(spec.batchSize);
      } finally {
        await (adapter as { close?: () => Promise<void> }).close?.();
      }
    }
  }, 30_000);
});
