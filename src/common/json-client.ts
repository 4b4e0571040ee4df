/**
 * A small JSON-over-HTTP client (undici) for the master API, used by workers, the
 * FUSE client and the CLI. Every call has a deadline; a peer that is down is
 * retried with backoff while the connection is refused (nothing was sent), so a
 * restarting master is waited for and a dead one fails with UNAVAILABLE. A broken
 * connection retries GETs only (see BROKEN_ERRORS).
 */

import { Pool } from 'undici';
import { StrataError, toStrataError } from './errors';
import { errorFromBody, parseJsonOrUndefined } from './http';

export interface JsonClientOptions {
  /** Deadline of one request in ms. Default 30000. */
  timeoutMs?: number;
  /** How long to keep retrying a refused connection, in ms. Default 15000. */
  retryForMs?: number;
  /** Sent as `Authorization: Bearer …` when set. */
  token?: string;
}

/** The request was certainly not sent: any request may be tried again. */
const NOT_SENT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH']);
/**
 * The connection broke, maybe after the peer got the request: only reads (GET) are tried
 * again. A POST may have been applied (a master SIGKILLed after its commit, before its reply);
 * sent again, a rename would fail with ENOENT and a create with EEXIST although they happened.
 */
const BROKEN_ERRORS = new Set(['ECONNRESET', 'UND_ERR_SOCKET']);

/** Filled with the response headers of one call. */
export interface ResponseMeta {
  headers?: Record<string, string | string[] | undefined>;
}

export class JsonClient {
  readonly baseUrl: string;
  readonly #pool: Pool;
  readonly #timeoutMs: number;
  readonly #retryForMs: number;
  readonly #headers: Record<string, string>;

  constructor(baseUrl: string, opts: JsonClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new StrataError('CONFIG', `not a valid URL: '${baseUrl}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StrataError('CONFIG', `not an http(s) URL: '${baseUrl}'`);
    this.baseUrl = url.origin;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#retryForMs = opts.retryForMs ?? 15_000;
    this.#pool = new Pool(this.baseUrl, { connections: 16, pipelining: 1, keepAliveTimeout: 10_000 });
    this.#headers = { 'content-type': 'application/json' };
    if (opts.token) this.#headers.authorization = `Bearer ${opts.token}`;
  }

  /** `meta`, when given, receives the response headers (of an answer or of an error reply). */
  get<T>(path: string, query?: Record<string, string | number>, signal?: AbortSignal, meta?: ResponseMeta): Promise<T> {
    const qs = query ? '?' + new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString() : '';
    return this.#call<T>('GET', path + qs, undefined, signal, meta);
  }

  post<T>(path: string, body: unknown, signal?: AbortSignal, meta?: ResponseMeta): Promise<T> {
    return this.#call<T>('POST', path, JSON.stringify(body ?? {}), signal, meta);
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body: string | undefined, signal?: AbortSignal, meta?: ResponseMeta): Promise<T> {
    const started = Date.now();
    let delay = 50;
    for (;;) {
      try {
        const res = await this.#pool.request({
          method,
          path,
          headers: method === 'POST' ? this.#headers : { authorization: this.#headers.authorization ?? '' },
          body,
          headersTimeout: this.#timeoutMs,
          bodyTimeout: this.#timeoutMs,
          signal: signal ?? AbortSignal.timeout(this.#timeoutMs),
        });
        if (meta) meta.headers = res.headers;
        const parsed = parseJsonOrUndefined(await res.body.text());
        if (res.statusCode >= 400) throw errorFromBody(res.statusCode, parsed, `${method} ${this.baseUrl}${path.split('?')[0]}`);
        return parsed as T;
      } catch (err) {
        const code = (err as { code?: string }).code;
        const retriable = code !== undefined && (NOT_SENT_ERRORS.has(code) || (method === 'GET' && BROKEN_ERRORS.has(code)));
        if (retriable && Date.now() - started < this.#retryForMs && !signal?.aborted) {
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 1000);
          continue;
        }
        if (err instanceof StrataError) throw err;
        const e = toStrataError(err, `${method} ${this.baseUrl}${path.split('?')[0]}`);
        throw e.code === 'IO_ERROR' ? new StrataError('UNAVAILABLE', e.message, { cause: err }) : e;
      }
    }
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}
