/**
 * A small JSON-over-HTTP client (undici) for the master API, used by workers, the
 * FUSE client and the CLI. Every call has a deadline.
 *
 * Failover: the URL may be a comma-separated list of masters (`URL1,URL2`), of which
 * one leads. Calls go to the one that answered last; a standby's 503 NOT_LEADER
 * sends them to the leader it names (or to the next URL), and a master that cannot
 * be reached sends them to the next URL, with a short jittered backoff after each
 * full round. This goes on for at most `retryForMs` from the call's start, then the
 * call fails with UNAVAILABLE; a restarting single master is waited for the same way.
 *
 * A leader that stalls (SIGSTOP, a hung host) refuses nothing: its connections stay
 * open and calls would wait for their whole deadline. So with several URLs, a call
 * pending for SUSPECT_AFTER_MS makes the client ask the other masters (`GET
 * /api/v1/leader`, at most once per PROBE_EVERY_MS for all calls) whether one of them
 * leads now; if one does, the call is abandoned and goes there.
 *
 * What is sent again: a call that certainly did not reach a master (connection
 * refused, NOT_LEADER) always; a call whose connection broke, or that was abandoned
 * at a stalled leader, only when it is a read (GET) or marked `idempotent` (see
 * BROKEN_ERRORS); any other fails with UNAVAILABLE (EIO), as it may have been applied.
 */

import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import { StrataError, toStrataError } from './errors';
import { errorFromBody, parseJsonOrUndefined } from './reply-errors';
import { MASTER_API } from './protocol';

export interface JsonClientOptions {
  /** Deadline of one request in ms. Default 30000. */
  timeoutMs?: number;
  /** How long one call keeps trying (other masters, a refused connection), in ms. Default 15000. */
  retryForMs?: number;
  /**
   * Called before each attempt after a failed one (the master restarting, a failover), with that
   * failure and the call (`POST http://…/api/v1/…`): a caller may drop what it vouched for, or say
   * that it waits.
   */
  onRetry?: (err: unknown, what: string) => void;
  /** Sent as `Authorization: Bearer …` when set. */
  token?: string;
  /** Sent with every POST (e.g. the mount's feed-subscriber id). */
  postHeaders?: Record<string, string>;
  /** Aborts every call of this client made without a signal of its own, in flight or to come (a long poll at close). */
  stop?: AbortSignal;
}

/** Per call: a POST that may safely be applied twice (a read sent as POST, a full re-registration). */
export interface CallOptions {
  idempotent?: boolean;
  /** This call's deadline in ms instead of the client's (a call the master answers only once a long job is done). */
  timeoutMs?: number;
}

/** The request was certainly not sent: any request may be tried again. */
const NOT_SENT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH']);
/**
 * The connection broke, maybe after the peer got the request: only reads (GET) are tried
 * again. A POST may have been applied (a master SIGKILLed after its commit, before its reply);
 * sent again, a rename would fail with ENOENT and a create with EEXIST although they happened.
 */
const BROKEN_ERRORS = new Set(['ECONNRESET', 'UND_ERR_SOCKET']);

/** A call pending this long (ms) at one of several masters makes the client look for another leader. */
const SUSPECT_AFTER_MS = 2000;
/** Other masters are asked whether they lead at most this often (ms), however many calls wait. */
const PROBE_EVERY_MS = 1000;

/**
 * Calls begun within one slot of this many ms share one deadline signal (the slot's end plus the
 * timeout): a signal of its own per call, as AbortSignal.timeout joined to another by
 * AbortSignal.any, cost about 100 µs of CPU per call here, more than a third of a whole
 * round trip to the master (docs/bench-results.md, 2026-12-07, night). A call's deadline is thus its
 * timeout plus at most this much.
 */
const DEADLINE_SLOT_MS = 250;

/**
 * Deadline signals shared by the calls begun in the same slot: each aborts (TimeoutError,
 * as AbortSignal.timeout's) `timeoutMs` after its slot ends.
 */
class SharedDeadlines {
  #slot = -1;
  #signal: AbortSignal | undefined;
  /** The signals whose deadline has not passed yet: `stop` aborts them all. */
  readonly #live = new Set<AbortController>();

  constructor(
    readonly timeoutMs: number,
    readonly stop: AbortSignal | undefined,
  ) {
    stop?.addEventListener(
      'abort',
      () => {
        for (const ac of this.#live) ac.abort(stop.reason);
        this.#live.clear();
      },
      { once: true },
    );
  }

  signal(): AbortSignal {
    if (this.stop?.aborted) return this.stop;
    const slot = Math.floor(performance.now() / DEADLINE_SLOT_MS);
    if (slot !== this.#slot || !this.#signal) {
      const ac = new AbortController();
      // Every call of the slot listens to it: no "possible leak" warning past 10.
      setMaxListeners(0, ac.signal);
      const ms = this.timeoutMs;
      this.#live.add(ac);
      // Unref'd: a deadline keeps no process alive (a call in flight keeps its socket, which does).
      setTimeout(() => {
        this.#live.delete(ac);
        ac.abort(new DOMException(`the call took longer than ${ms} ms`, 'TimeoutError'));
      }, (slot + 1) * DEADLINE_SLOT_MS - performance.now() + ms).unref();
      this.#slot = slot;
      this.#signal = ac.signal;
    }
    return this.#signal;
  }
}

/** `b`, or either of `a` and `b` when there is an `a`. */
function anyOf(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}

/** Filled with the response headers of one call. */
export interface ResponseMeta {
  headers?: Record<string, string | string[] | undefined>;
}

/** A NOT_LEADER reply: the master stands by and applied nothing. */
class NotLeaderReply {
  constructor(
    readonly error: StrataError,
    readonly leader: string | undefined,
  ) {}
}

function originOf(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new StrataError('CONFIG', `not a valid URL: '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StrataError('CONFIG', `not an http(s) URL: '${raw}'`);
  return url.origin;
}

export class JsonClient {
  /** The masters to try, in order; a leader named by a standby is added when it is not listed. */
  readonly #urls: string[];
  /** Index in #urls of the master that answered last. */
  #current = 0;
  readonly #pools = new Map<string, Pool>();
  readonly #timeoutMs: number;
  readonly #deadlines: SharedDeadlines;
  readonly #stop: AbortSignal | undefined;
  readonly #retryForMs: number;
  readonly #onRetry: ((err: unknown, what: string) => void) | undefined;
  readonly #headers: Record<string, string>;
  /** The last look for another leader, shared by the calls waiting meanwhile. */
  #probe: { at: number; from: string; answer: Promise<string | undefined> } | undefined;

  /** `baseUrl`: one URL, or several separated by commas (see the file's comment). */
  constructor(baseUrl: string, opts: JsonClientOptions = {}) {
    this.#urls = [...new Set(baseUrl.split(',').filter((u) => u.trim() !== '').map(originOf))];
    if (this.#urls.length === 0) throw new StrataError('CONFIG', `not a valid URL: '${baseUrl}'`);
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#stop = opts.stop;
    this.#deadlines = new SharedDeadlines(this.#timeoutMs, opts.stop);
    this.#retryForMs = opts.retryForMs ?? 15_000;
    this.#onRetry = opts.onRetry;
    this.#headers = { ...opts.postHeaders, 'content-type': 'application/json' };
    if (opts.token) this.#headers.authorization = `Bearer ${opts.token}`;
  }

  /** The master calls go to now (the leader, once one answered). */
  get baseUrl(): string {
    return this.#urls[this.#current]!;
  }

  /** `meta`, when given, receives the response headers (of an answer or of an error reply). */
  get<T>(path: string, query?: Record<string, string | number>, signal?: AbortSignal, meta?: ResponseMeta): Promise<T> {
    const qs = query ? '?' + new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString() : '';
    return this.#call<T>('GET', path + qs, undefined, signal, meta, true);
  }

  post<T>(path: string, body: unknown, signal?: AbortSignal, meta?: ResponseMeta, opts: CallOptions = {}): Promise<T> {
    return this.#call<T>('POST', path, JSON.stringify(body ?? {}), signal, meta, opts.idempotent === true, opts.timeoutMs);
  }

  #pool(url: string): Pool {
    let p = this.#pools.get(url);
    if (!p) {
      p = new Pool(url, { connections: 16, pipelining: 1, keepAliveTimeout: 10_000 });
      this.#pools.set(url, p);
    }
    return p;
  }

  /** Moves to `leader` (added when unknown) or, without one, to the next URL. */
  #switch(leader: string | undefined): void {
    let next = -1;
    if (leader) {
      try {
        const origin = originOf(leader);
        next = this.#urls.indexOf(origin);
        if (next < 0) next = this.#urls.push(origin) - 1;
      } catch {
        next = -1; // a malformed address: ignore it
      }
    }
    this.#current = next >= 0 && next !== this.#current ? next : (this.#current + 1) % this.#urls.length;
  }

  /** Which other master says it leads, if any (a URL of our list). */
  #otherLeader(current: string): Promise<string | undefined> {
    const p = this.#probe;
    if (p && p.from === current && Date.now() - p.at < PROBE_EVERY_MS) return p.answer;
    const ask = async (url: string): Promise<string | undefined> => {
      try {
        const res = await this.#pool(url).request({ method: 'GET', path: `${MASTER_API}/leader`, headers: { authorization: this.#headers.authorization ?? '' }, signal: AbortSignal.timeout(PROBE_EVERY_MS) });
        const v = parseJsonOrUndefined(await res.body.text()) as { role?: unknown } | undefined;
        return res.statusCode === 200 && v?.role === 'leader' ? url : undefined;
      } catch {
        return undefined;
      }
    };
    const answer = Promise.all(this.#urls.filter((u) => u !== current).map(ask)).then((found) => found.find((u) => u !== undefined));
    this.#probe = { at: Date.now(), from: current, answer };
    return answer;
  }

  /** While a call waits at `url`, looks for another leader every PROBE_EVERY_MS after SUSPECT_AFTER_MS; returns the stopper. */
  #watchForOtherLeader(url: string, onFound: (leader: string) => void): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout;
    const look = async () => {
      const found = await this.#otherLeader(url);
      if (stopped) return;
      if (found) onFound(found);
      else timer = setTimeout(() => void look(), PROBE_EVERY_MS);
    };
    timer = setTimeout(() => void look(), SUSPECT_AFTER_MS);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body: string | undefined, signal: AbortSignal | undefined, meta: ResponseMeta | undefined, idempotent: boolean, timeoutMs?: number): Promise<T> {
    const started = Date.now();
    // What ends the call from outside: the caller's signal, else the client's stop. Either ends the retries too.
    const cut = signal ?? this.#stop;
    const ms = timeoutMs ?? this.#timeoutMs;
    let delay = 50;
    /** Attempts since the last backoff: after a full round of the URLs, wait a little. */
    let round = 0;
    /** Switches to a named leader in a row, without backoff. */
    let hops = 0;
    for (;;) {
      const url = this.baseUrl;
      const what = `${method} ${url}${path.split('?')[0]}`;
      // With one master there is none to move to: no watch, and no signal of this call's own.
      const abandon = this.#urls.length > 1 ? new AbortController() : undefined;
      let movedTo: string | undefined;
      const stopWatching = abandon
        ? this.#watchForOtherLeader(url, (leader) => {
            movedTo = leader;
            abandon.abort();
          })
        : () => undefined;
      // A call of its own length is rare (a persist): a timer of its own costs nothing that matters then.
      const deadline = signal ?? (timeoutMs !== undefined ? anyOf(this.#stop, AbortSignal.timeout(timeoutMs)) : this.#deadlines.signal());
      try {
        const res = await this.#pool(url).request({
          method,
          path,
          headers: method === 'POST' ? this.#headers : { authorization: this.#headers.authorization ?? '' },
          body,
          headersTimeout: ms,
          bodyTimeout: ms,
          signal: abandon ? AbortSignal.any([deadline, abandon.signal]) : deadline,
        });
        if (meta) meta.headers = res.headers;
        const parsed = parseJsonOrUndefined(await res.body.text());
        if (res.statusCode >= 400) {
          const err = errorFromBody(res.statusCode, parsed, what);
          if (err.code !== 'NOT_LEADER') throw err;
          const leader = (parsed as { leader?: unknown }).leader;
          throw new NotLeaderReply(err, typeof leader === 'string' ? leader : undefined);
        }
        return parsed as T;
      } catch (err) {
        if (movedTo !== undefined && !cut?.aborted) {
          this.#current = this.#urls.indexOf(movedTo);
          if (idempotent && Date.now() - started < this.#retryForMs) {
            this.#onRetry?.(err, what);
            continue;
          }
          throw new StrataError('UNAVAILABLE', `${what}: the master stopped answering and ${movedTo} leads now; the call may or may not have been applied`, { cause: err });
        }
        const code = (err as { code?: string }).code;
        const notLeader = err instanceof NotLeaderReply;
        const retriable = notLeader || (code !== undefined && (NOT_SENT_ERRORS.has(code) || (idempotent && BROKEN_ERRORS.has(code))));
        if (retriable && Date.now() - started < this.#retryForMs && !cut?.aborted) {
          this.#onRetry?.(notLeader ? err.error : err, what);
          this.#switch(notLeader ? err.leader : undefined);
          // A standby that named the leader costs no wait; otherwise back off once per round of the URLs.
          // (bounded: two standbys that name each other while the lease changes hands get the backoff too).
          const named = notLeader && err.leader !== undefined && this.baseUrl !== url && ++hops <= this.#urls.length;
          if (!named) hops = 0;
          if (!named && ++round >= this.#urls.length) {
            round = 0;
            // Full jitter: many clients failing over together do not arrive together.
            await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * (delay / 2)));
            delay = Math.min(delay * 2, 1000);
          }
          continue;
        }
        if (notLeader) throw new StrataError('UNAVAILABLE', `no master leads (${this.#urls.join(', ')}) after ${Date.now() - started} ms: ${err.error.message}`, { cause: err.error });
        if (err instanceof StrataError) throw err;
        const e = toStrataError(err, what);
        throw e.code === 'IO_ERROR' ? new StrataError('UNAVAILABLE', e.message, { cause: err }) : e;
      } finally {
        stopWatching();
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}
