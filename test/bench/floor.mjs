// The floors the floors bench (floors.bench.mjs) holds switchboard against: what any Node program doing the same
// job with the same libraries must spend, with no switchboard code.
//   send  one message over SMTP, as `switchboard send test --json`: open a SQLite file (better-sqlite3), record the
//         message, send it with nodemailer (one connection), record the outcome, print one JSON line.
//   bulk  every row of a CSV (`email,name,code`, no quoted fields) over SMTP with a pooled nodemailer transport
//         (`maxConnections` = concurrency, as the smtp adapter), `concurrency` messages in flight; no ledger. Each
//         message is the MIME `send batch` sends for the row: the same headers, including the row's
//         `X-Switchboard-Batch: <batch>/<row>` correlation header (which the first version of the floor left out).
// Sockets are opened with TCP_NODELAY as switchboard's smtp adapter does, so neither side waits on delayed ACKs.
// Usage: node test/bench/floor.mjs send <port> <store.db>
//        node test/bench/floor.mjs bulk <port> <csv> <concurrency>
import fs from 'node:fs';
import net from 'node:net';
import Database from 'better-sqlite3';
import nodemailer from 'nodemailer';

const [mode, port, file, concurrency] = process.argv.slice(2);

/** nodemailer transport options for the sink on 127.0.0.1:`port`, plain SMTP, sockets with TCP_NODELAY. */
function transportOptions(extra) {
  return {
    host: '127.0.0.1',
    port: Number(port),
    ignoreTLS: true,
    getSocket: (_opts, cb) => {
      const socket = net.connect({ host: '127.0.0.1', port: Number(port), noDelay: true });
      socket.once('error', cb);
      socket.once('connect', () => cb(null, { connection: socket }));
    },
    ...extra,
  };
}

if (mode === 'send') {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE IF NOT EXISTS floor_messages (id INTEGER PRIMARY KEY, recipient TEXT, status TEXT, message_id TEXT, at TEXT)');
  const { lastInsertRowid: id } = db.prepare("INSERT INTO floor_messages (recipient, status, at) VALUES (?, 'sending', ?)").run('user@example.com', new Date().toISOString());
  const transport = nodemailer.createTransport(transportOptions({}));
  const info = await transport.sendMail({ from: 'bench@example.com', to: 'user@example.com', subject: 'switchboard test message', text: 'This is a test message.' });
  db.prepare("UPDATE floor_messages SET status = 'sent', message_id = ? WHERE id = ?").run(info.messageId, id);
  transport.close();
  db.close();
  process.stdout.write(JSON.stringify({ status: 'sent', messageId: info.messageId }) + '\n');
} else if (mode === 'bulk') {
  const rows = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((line) => line.split(','));
  const transport = nodemailer.createTransport(transportOptions({ pool: true, maxConnections: Number(concurrency) }));
  let next = 0;
  let sent = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = ++next;
      const [email, name, code] = rows[row - 1];
      const headers = { 'X-Switchboard-Batch': `b-20261207-f1007000/${row}` };
      await transport.sendMail({ from: 'bench@example.com', to: email, subject: `Hi ${name}`, text: `Hello ${name}, your code is ${code}.\n`, headers });
      sent++;
    }
  };
  await Promise.all(Array.from({ length: Number(concurrency) }, worker));
  transport.close();
  process.stdout.write(JSON.stringify({ sent }) + '\n');
} else {
  process.stderr.write('usage: floor.mjs send <port> <store.db> | bulk <port> <csv> <concurrency>\n');
  process.exitCode = 2;
}
