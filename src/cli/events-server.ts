/**
 * The HTTP side of `events serve` (Fastify 5, loaded only by this command): routes to {@link Webhooks}, every
 * request body kept raw (a Buffer, whatever its content type: signatures are over the exact bytes), a body limit
 * (413 above it), request and keep-alive timeouts, one log line per request, and a clean stop: `close()` stops
 * accepting, lets requests in flight finish (their events are committed before their answer), then resolves.
 * Routes: `POST|GET /hooks/<tenant|system>/<channel>/<name>`, `POST|GET /hooks/meta`, `POST /hooks/twilio`,
 * `GET|POST /unsubscribe/<token>`, `GET /healthz`.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { HookReply, HookRequest, Webhooks } from '../core/webhooks.js';

/**
 * One line of the request log, in the JSON vocabulary (`events serve --json` prints it as is). `route` never
 * holds a query or an unsubscribe token.
 */
export interface RequestLog {
  /** When the answer was sent, ISO 8601 UTC. */
  answeredAt: string;
  method: string;
  route: string;
  /** The HTTP status of the answer. */
  statusCode: number;
  tenantId: string | null;
  /** Time from the request's arrival to its answer, in ms (0.1 ms steps). */
  elapsedMs: number;
  result: string;
}

/** How to run the server. */
export interface ServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest request body in bytes; larger ones get 413. */
  bodyLimit: number;
  /** Most time to receive a whole request, in ms. */
  requestTimeoutMs: number;
  webhooks: Webhooks;
  log(entry: RequestLog): void;
  /** The current time (the log's `answeredAt`). */
  now(): Date;
}

/** A running server. */
export interface RunningServer {
  /** `http://host:port` it listens on. */
  url: string;
  /** Stops accepting, waits for requests in flight, closes connections. */
  close(): Promise<void>;
}

interface Outcome {
  tenantId: string | null;
  result: string;
}

/** The path of a request for the log: no query (Meta's handshake carries its verify token there), no token. */
function logRoute(url: string): string {
  const path = url.split('?')[0] ?? url;
  return path.startsWith('/unsubscribe/') ? '/unsubscribe/…' : path;
}

/**
 * Starts listening. @throws the listen error (e.g. EADDRINUSE) with its code.
 */
export async function startEventsServer(o: ServerOptions): Promise<RunningServer> {
  const app = Fastify({
    logger: false,
    bodyLimit: o.bodyLimit,
    requestTimeout: o.requestTimeoutMs,
    keepAliveTimeout: 10_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  const outcomes = new WeakMap<FastifyRequest, Outcome>();

  // Every body as raw bytes, for every content type (SNS posts JSON as text/plain; Twilio form-encoded).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const toHook = (req: FastifyRequest): HookRequest => ({
    method: req.method,
    url: req.url,
    headers: req.headers,
    body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
  });
  const send = (req: FastifyRequest, reply: FastifyReply, r: HookReply) => {
    outcomes.set(req, { tenantId: r.tenantId, result: r.result });
    return reply.code(r.status).header('content-type', r.contentType).header('cache-control', 'no-store').send(r.body);
  };

  app.get('/healthz', async (req, reply) => {
    outcomes.set(req, { tenantId: null, result: 'ok' });
    return reply.code(200).send({ status: 'ok', ...o.webhooks.stats });
  });
  app.route({ method: ['GET', 'POST'], url: '/hooks/meta', handler: async (req, reply) => send(req, reply, await o.webhooks.metaShared(toHook(req))) });
  app.post('/hooks/twilio', async (req, reply) => send(req, reply, await o.webhooks.twilioShared(toHook(req))));
  app.route<{ Params: { owner: string; channel: string; name: string } }>({
    method: ['GET', 'POST'],
    url: '/hooks/:owner/:channel/:name',
    handler: async (req, reply) => send(req, reply, await o.webhooks.configHook(`${req.params.owner}/${req.params.channel}/${req.params.name}`, toHook(req))),
  });
  app.route<{ Params: { token: string } }>({
    method: ['GET', 'POST'],
    url: '/unsubscribe/:token',
    handler: async (req, reply) => send(req, reply, await o.webhooks.unsubscribe(req.params.token, toHook(req))),
  });
  app.setNotFoundHandler(async (req, reply) => {
    outcomes.set(req, { tenantId: null, result: 'no such route' });
    return reply.code(404).send({ error: 'no such route' });
  });
  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    outcomes.set(req, { tenantId: null, result: `${status === 413 ? 'rejected' : 'failed'}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ') });
    return reply.code(status).send({ error: status === 413 ? `body larger than ${o.bodyLimit} bytes` : status < 500 ? err.message : 'internal error' });
  });
  app.addHook('onResponse', async (req, reply) => {
    const out = outcomes.get(req) ?? { tenantId: null, result: '' };
    o.log({
      answeredAt: o.now().toISOString(),
      method: req.method,
      route: logRoute(req.url),
      statusCode: reply.statusCode,
      tenantId: out.tenantId,
      elapsedMs: Math.round(reply.elapsedTime * 10) / 10,
      result: out.result,
    });
  });

  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = addr && typeof addr === 'object' ? addr.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return { url: `http://${host}:${port}`, close: () => app.close() };
}
