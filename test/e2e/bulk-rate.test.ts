// e2e: `--rate` holds at the server, not only inside the tool (DESIGN §8: never above the rate in any one-second
// window). The SMTP server answers the first RATE MAIL FROMs late, as a slow first connection or a busy server
// would: those messages reach it (DATA) long after the tool started them. A limiter that only spaced request
// starts one second apart let the next second's requests arrive in the same second as the late ones (2 × RATE
// in one window); the limiter counts a request until one second after it finished, which holds whatever the
// delays on the wire are.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { addSmtpProvider, addTenant, maxPerSecond, parseBatchOutput } from '../helpers/setup.js';

const PASSWORD = 'rate-pw-5e2b';
const RATE = 10;
const ROWS = 3 * RATE;
/** How late the server answers the first RATE MAIL FROMs: most of a window, so late and prompt arrivals meet. */
const LATE_MS = 700;

describe('--rate at the server', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: PASSWORD }, mailFromDelayMs: (n) => (n < RATE ? LATE_MS : 0) });
    await addTenant(ws, 'acme');
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASSWORD });
  });
  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test(`--rate ${RATE} with late first answers: never more than ${RATE} messages reach the server in any one second`, async () => {
    const csv = ws.file('r.csv', ['email,name', ...Array.from({ length: ROWS }, (_, i) => `r${i}@example.com,R${i}`)].join('\n') + '\n');
    const tpl = ws.file('r.txt', 'Hi {{name}}\n');
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--rate', String(RATE), '--concurrency', String(RATE), '--json'], {
      timeoutMs: 30_000,
    });
    expect(r.exitCode, show(r)).toBe(0);
    expect(parseBatchOutput(r).summary).toMatchObject({ rowCount: ROWS, sentCount: ROWS });
    expect(srv.dataAt).toHaveLength(ROWS);
    expect(maxPerSecond(srv.dataAt), `arrivals (ms): ${srv.dataAt.map((t) => Math.round(t - srv.dataAt[0]!)).join(' ')}`).toBeLessThanOrEqual(RATE);
  });
});
