// Loaded with `node --import` by bulk.bench.mjs only: registers the provider kind `bench-noop`, an adapter that
// accepts every message at once (no I/O; or after `latency` ms), so a run measures switchboard's own cost per message (ledger,
// dispatch, rendering, progress) through the real dispatch path. Not part of the product.
import { registerKind } from '../../dist/providers/registry.js';

let sent = 0;
registerKind({
  kind: 'bench-noop',
  channels: ['email', 'sms', 'whatsapp'],
  summary: 'bench only: accepts every message at once, sends nothing',
  settings: { latency: { type: 'int', min: 0, max: 10_000, default: 0, doc: 'ms before each message is accepted' } },
  secrets: {},
  create: async (config) => ({
    channel: config.channel,
    send: async () => {
      const ms = Number(config.settings.latency ?? 0);
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      return { messageId: `noop-${++sent}`, acceptedAt: new Date() };
    },
    verify: async () => ({ ok: true, detail: 'bench no-op' }),
    close: async () => {},
  }),
});
