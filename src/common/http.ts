/**
 * The HTTP server shell shared by master and worker: Fastify with our error
 * format. Every failure leaves as `{code, message}` with the status from the
 * error table; malformed input is a 4xx, never a crash.
 */

import Fastify, { FastifyInstance, FastifyError, FastifyReply } from 'fastify';
import { StrataError, toStrataError } from './errors';
import type { Logger } from './log';
import type { DaemonMetrics } from './metrics';
import { tokenDigest, tokenMatches } from './auth';

export { errorFromBody, parseJsonOrUndefined } from './reply-errors';

/** Paths any caller may fetch even with auth on: liveness only, which tells nothing. */
const PUBLIC_PATHS = new Set(['/healthz']);

export interface HttpAuthOptions {
  /** The cluster token every request must present as `Authorization: Bearer …`. */
  token: string;
  /** Serve /metrics without the token (for a Prometheus without credentials). Default false. */
  publicMetrics?: boolean;
}

/** Resource limits of one daemon's HTTP server; see the config keys of the same names. */
export interface HttpLimits {
  /** Most open connections; further ones are closed at once. Default 1024. */
  maxConnections?: number;
  /** Largest request line plus headers, in bytes; more gets 431. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Time for a request's headers to arrive, in ms; then 408. Default 10000. */
  headersTimeoutMs?: number;
}

export interface HttpServerOptions {
  logger: Logger;
  /** When given: every request is timed per route, and GET /metrics serves the registry. */
  metrics?: DaemonMetrics;
  /** Largest JSON body accepted, in bytes. Default 1 MiB. */
  bodyLimit?: number;
  /** Whole-request timeout in ms (0 = none, for long streamed bodies). Default 0. */
  requestTimeoutMs?: number;
  /** Require the cluster token on every route but /healthz. Default: no auth. */
  auth?: HttpAuthOptions;
  limits?: HttpLimits;
}

function noSchemas(): never {
  throw new StrataError('INTERNAL', 'routes here declare no schemas; give Fastify a schema compiler before adding one');
}

export function createHttpServer(opts: HttpServerOptions): FastifyInstance {
  const log = opts.logger;
  const requestTimeout = opts.requestTimeoutMs ?? 0;
  const headersTimeout = opts.limits?.headersTimeoutMs ?? 10_000;
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    requestTimeout,
    http: {
      maxHeaderSize: opts.limits?.maxHeaderBytes ?? 16 * 1024,
      // Node refuses a headers timeout longer than the request timeout.
      headersTimeout: requestTimeout > 0 ? Math.min(headersTimeout, requestTimeout) : headersTimeout,
      // Node looks for expired requests this often (default 30 s, which would triple a 10 s timeout).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    return503OnClosing: true,
    forceCloseConnections: true,
    // No route declares a schema, and Fastify's default compilers (ajv, fast-json-stringify)
    // took 100-170 ms of every daemon's start here just to load.
    schemaController: { compilersFactory: { buildValidator: () => noSchemas, buildSerializer: () => noSchemas } },
    // Errors raised by the router before any route runs (bad %-encoding, an overlong
    // parameter) get our `{code, message}` form too, not Fastify's own.
    frameworkErrors: (err, _req, reply) => {
      const status = err.statusCode ?? 400;
      void (reply as FastifyReply).status(status).send(new StrataError(status >= 500 ? 'INTERNAL' : 'BAD_REQUEST', err.message).toJSON());
    },
  });

  app.server.maxConnections = opts.limits?.maxConnections ?? 1024;

  const auth = opts.auth;
  if (auth) {
    const expected = tokenDigest(auth.token);
    // onRequest runs before routing to a handler and before any body is read, for unknown routes too,
    // so a caller without the token learns nothing: not which routes exist, not the body limits.
    app.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?')[0]!;
      if (PUBLIC_PATHS.has(path) || (auth.publicMetrics && path === '/metrics')) return;
      if (tokenMatches(req.headers.authorization, expected)) return;
      return reply.status(401).header('www-authenticate', 'Bearer realm="strata"').send(new StrataError('UNAUTHENTICATED', 'authentication required').toJSON());
    });
  }

  const metrics = opts.metrics;
  if (metrics) {
    app.get('/metrics', async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }

  // An answer given before the request's body was read (a refusal: no token, bad parameters) ends the
  // connection: kept alive, a client trickling a body it announced as huge held a connection slot for good,
  // and a thousand of them locked everyone out.
  app.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode >= 400 && !req.raw.complete) void reply.header('connection', 'close');
    return payload;
  });

  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL: block ids and paths must not explode the label set.
    metrics?.requestSeconds.observe({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    log.debug({ reqId: req.id, method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
  });

  app.setErrorHandler((err: FastifyError | StrataError | Error, req, reply) => {
    let e: StrataError;
    if (err instanceof StrataError) {
      e = err;
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      const status = (err as FastifyError).statusCode!;
      const code = status === 413 ? 'PAYLOAD_TOO_LARGE' : status === 405 ? 'METHOD_NOT_ALLOWED' : 'BAD_REQUEST';
      e = new StrataError(code, err.message);
      void reply.status(status).send(e.toJSON());
      return;
    } else {
      e = toStrataError(err);
    }
    if (e.status >= 500) log.warn({ reqId: req.id, method: req.method, url: req.url, err: e.message, code: e.code }, 'request failed');
    void reply.status(e.status).send(e.toJSON());
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });

  return app;
}

/**
 * Yields the chunks of a request body; when the client sends nothing for `ms`,
 * `onStall` runs (it should destroy the connection, which ends the loop with an
 * error). Only waits on the client count: time the consumer spends between
 * chunks (writing to a slow store) does not.
 */
export async function* stallGuarded(body: AsyncIterable<unknown>, ms: number, onStall: () => void): AsyncGenerator<Buffer> {
  let timer = setTimeout(onStall, ms);
  try {
    for await (const chunk of body) {
      clearTimeout(timer);
      yield chunk as Buffer;
      timer = setTimeout(onStall, ms);
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a required field of a JSON body with its type checked; malformed input is BAD_REQUEST. */
export function field<T extends 'string' | 'number' | 'boolean' | 'object'>(
  body: unknown,
  name: string,
  type: T,
  optional = false,
): (T extends 'string' ? string : T extends 'number' ? number : T extends 'boolean' ? boolean : Record<string, unknown>) | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new StrataError('BAD_REQUEST', 'request body must be a JSON object');
  const v = (body as Record<string, unknown>)[name];
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw new StrataError('BAD_REQUEST', `missing field '${name}'`);
  }
  if (typeof v !== type || (type === 'object' && Array.isArray(v))) throw new StrataError('BAD_REQUEST', `field '${name}' must be a ${type}`);
  if (type === 'number' && (!Number.isFinite(v as number) || !Number.isSafeInteger(v as number))) {
    throw new StrataError('BAD_REQUEST', `field '${name}' must be a safe integer`);
  }
  return v as never;
}

export function requiredString(body: unknown, name: string): string {
  return field(body, name, 'string') as string;
}

export function requiredInt(body: unknown, name: string, min = 0): number {
  const v = field(body, name, 'number') as number;
  if (v < min) throw new StrataError('BAD_REQUEST', `field '${name}' must be >= ${min}`);
  return v;
}

export function optionalInt(body: unknown, name: string, min = 0): number | undefined {
  const v = field(body, name, 'number', true) as number | undefined;
  if (v !== undefined && v < min) throw new StrataError('BAD_REQUEST', `field '${name}' must be >= ${min}`);
  return v;
}

/** Parses a non-negative integer from a URL parameter or query string value. */
export function intParam(value: unknown, name: string, fallback?: number): number {
  if (value === undefined || value === '') {
    if (fallback !== undefined) return fallback;
    throw new StrataError('BAD_REQUEST', `missing parameter '${name}'`);
  }
  if (typeof value !== 'string' || !/^[0-9]{1,16}$/.test(value)) throw new StrataError('BAD_REQUEST', `parameter '${name}' must be a non-negative integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new StrataError('BAD_REQUEST', `parameter '${name}' is too large`);
  return n;
}

