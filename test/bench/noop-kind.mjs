// Loaded with `node --import` by bulk.bench.mjs only: registers the provider kind `bench-noop`, an adapter that
// accepts every message at once (no I/O), so a run measures switchboard's own cost per message (ledger,
// dispatch, rendering, progress) through the real dispatch path. Not part of the product.
import { registerKind } from '../../dist/providers/registry.js';

let sent = 0;
registerKind({
  kind: 'bench-noop',
  channels: ['email', 'sms', 'whatsapp'],
  summary: 'bench only: accepts every message at once, sends nothing',
  settings: {},
  secrets: {},
  create: async (config) => ({
    channel: config.channel,
    send: async () => ({ messageId: `noop-${++sent}`, acceptedAt: new Date() }),
    verify: async () => ({ ok: true, detail: 'bench no-op' }),
    close: async () => {},
  }),
});
