/** The data path to workers: byte ranges of blocks in, whole files out. Never via the master. */

import { Pool } from 'undici';
import type { Readable } from 'node:stream';
import { StrataError, toStrataError } from '../common/errors';
import { errorFromBody, parseJsonOrUndefined } from '../common/reply-errors';
import { authHeaders } from '../common/auth';
import type { LoadBlockResponse, ReadType, WorkerInfo, WriteFileResponse, WriteType } from '../common/protocol';

export interface WorkerClientOptions {
  /** Deadline for a worker to start answering (ms); it may fill from the under-store first. Default 120000. */
  headersTimeoutMs?: number;
  /** Longest silence inside a body (ms). Default 60000. */
  bodyTimeoutMs?: number;
  /** How workers cache what this client reads. Default CACHE. */
  readType?: ReadType;
  /** The cluster token, sent as `Authorization: Bearer …`. Default: none. */
  token?: string;
  /**
   * While a request to a worker is pending, its `/healthz` is asked every this many ms (0 = never);
   * a worker that does not answer within `probeTimeoutMs` is given up on at once (UNAVAILABLE), so
   * a hung or partitioned worker costs seconds, not the 120 s a slow under-store fill may take. Default 3000.
   */
  probeIntervalMs?: number;
  /** How long a health probe may take. Default 5000. */
  probeTimeoutMs?: number;
  /**
   * Whether a request waiting on `worker` is given up when its probe answers that it cannot
   * serve (a 503 UNAVAILABLE: a cache tier's disk hangs). Give up only where another worker
   * can take the request; with none, waiting for the disk is the only way. Default: never.
   */
  abandonUnhealthy?: (worker: WorkerInfo) => boolean;
}

/** The least headers timeout of a request health probes watch (see #watchedHeadersTimeout). */
const WATCHED_HEADERS_TIMEOUT_MS = 10 * 60_000;

export class WorkerClient {
  readonly #pools = new Map<string, Pool>();
  /** One connection per worker for health probes, so a busy data pool never delays one. */
  readonly #probePools = new Map<string, Pool>();
  readonly #probeIntervalMs: number;
  readonly #probeTimeoutMs: number;
  readonly #abandonUnhealthy: (worker: WorkerInfo) => boolean;
  readonly #headersTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
  readonly readType: ReadType;
  readonly #auth: Record<string, string>;
  /** Bytes received from workers over HTTP, for metrics. */
  bytesRead = 0;

  constructor(opts: WorkerClientOptions = {}) {
    this.readType = opts.readType ?? 'CACHE';
    this.#headersTimeoutMs = opts.headersTimeoutMs ?? 120_000;
    this.#bodyTimeoutMs = opts.bodyTimeoutMs ?? 60_000;
    this.#auth = authHeaders(opts.token);
    this.#probeIntervalMs = opts.probeIntervalMs ?? 3000;
    this.#probeTimeoutMs = opts.probeTimeoutMs ?? 5000;
    this.#abandonUnhealthy = opts.abandonUnhealthy ?? (() => false);
    if (!Number.isSafeInteger(this.#probeIntervalMs) || this.#probeIntervalMs < 0) throw new TypeError('probeIntervalMs must be an integer >= 0');
    if (!Number.isSafeInteger(this.#probeTimeoutMs) || this.#probeTimeoutMs < 1) throw new TypeError('probeTimeoutMs must be a positive integer');
  }

  /**
   * Watches `worker` while a request to it runs: returns a signal that aborts (with an
   * UNAVAILABLE error that keeps the probe's failure as cause) when the worker stops
   * answering health probes, or when `signal` aborts; call `done` when the request ended.
   */
  #watch(worker: WorkerInfo, signal?: AbortSignal, mayAbandon = true): { signal: AbortSignal | undefined; done: () => void } {
    if (this.#probeIntervalMs <= 0) return { signal, done: () => undefined };
    const ac = new AbortController();
    let probing = false;
    const timer = setInterval(() => {
      if (probing) return;
      probing = true;
      let probe = this.#probePools.get(worker.address);
      if (!probe) {
        probe = new Pool(worker.address, { connections: 1, keepAliveTimeout: 10_000, connectTimeout: this.#probeTimeoutMs });
        this.#probePools.set(worker.address, probe);
      }
      probe
        .request({ method: 'GET', path: '/healthz', headers: this.#auth, headersTimeout: this.#probeTimeoutMs, bodyTimeout: this.#probeTimeoutMs, signal: AbortSignal.timeout(this.#probeTimeoutMs) })
        .then(async (res) => {
          if (res.statusCode !== 503) return void (await res.body.dump());
          // It answers, but says it cannot serve (a cache tier's disk hangs): given up where another worker can serve.
          // Any other answer (a proxy's 401 or 429) says nothing about the worker: only silence does.
          const body = parseJsonOrUndefined(await res.body.text()) as { code?: unknown; message?: unknown } | undefined;
          if (body?.code !== 'UNAVAILABLE' || !mayAbandon || !this.#abandonUnhealthy(worker)) return;
          const why = new StrataError('UNAVAILABLE', typeof body.message === 'string' ? body.message : 'unhealthy');
          ac.abort(new StrataError('UNAVAILABLE', `worker ${worker.address} is unhealthy (${why.message})`, { cause: why }));
        })
        .catch((err: unknown) => ac.abort(new StrataError('UNAVAILABLE', `worker ${worker.address} stopped answering (health probe: ${(err as Error).message})`, { cause: err })))
        .finally(() => (probing = false));
    }, this.#probeIntervalMs);
    timer.unref();
    return { signal: signal ? AbortSignal.any([signal, ac.signal]) : ac.signal, done: () => clearInterval(timer) };
  }

  /**
   * The headers timeout of a request that #watch watches. A worker answers once its store
   * did what the request needs (a file stored, pages filled), so a slow or stalled store
   * holds the answer until the worker's own bound on the store runs out (for S3,
   * s3.maxAttempts × s3.requestTimeoutMs, 4 minutes by default). A timeout here shorter
   * than that made the client give up first and ask again, the same worker or another,
   * multiplying the wait and the store's load (a stalled S3 held a read for over 6
   * minutes, a write was sent 3 times). With health probes on, a dead or cut-off worker
   * fails the request within a probe, so the bound here is only for a worker that answers
   * its probes but not the request (a local store on a hung NFS mount has no bound of its
   * own): 10 minutes, and 1 s more per MiB a request stores (`storeBytes`).
   */
  #watchedHeadersTimeout(storeBytes = 0): number {
    if (this.#probeIntervalMs <= 0) return this.#headersTimeoutMs;
    return Math.max(this.#headersTimeoutMs, WATCHED_HEADERS_TIMEOUT_MS) + Math.ceil(storeBytes / (1024 * 1024)) * 1000;
  }

  #pool(address: string): Pool {
    let p = this.#pools.get(address);
    if (!p) {
      // undici does not abort a request while its connection is being made: without this, a host that
      // drops packets (cut off, powered down) would hold a read for undici's 10 s connect timeout,
      // whatever the health probe found. A worker that does not accept a connection in this time is down.
      p = new Pool(address, { connections: 32, keepAliveTimeout: 10_000, connectTimeout: this.#probeTimeoutMs });
      this.#pools.set(address, p);
    }
    return p;
  }

  /** Streams `[offset, offset+length)` of a block. */
  async #readStream(worker: WorkerInfo, blockId: number, offset: number, length: number, signal?: AbortSignal): Promise<Readable> {
    try {
      const res = await this.#pool(worker.address).request({
        method: 'GET',
        path: `/blocks/${blockId}?offset=${offset}&length=${length}${this.readType === 'CACHE' ? '' : `&readType=${this.readType}`}`,
        headers: this.#auth,
        headersTimeout: this.#watchedHeadersTimeout(),
        bodyTimeout: this.#bodyTimeoutMs,
        ...(signal ? { signal } : {}),
      });
      if (res.statusCode !== 200) {
        throw errorFromBody(res.statusCode, parseJsonOrUndefined(await res.body.text()), `read block ${blockId} from ${worker.address}`);
      }
      return res.body;
    } catch (err) {
      throw wrap(err, `read block ${blockId} from ${worker.address}`);
    }
  }

  /**
   * Reads `[offset, offset+length)` of a block into `into` at `at`; returns the bytes read.
   * `mayAbandon` false: the bytes are nowhere else (not in the store, on no other worker), so an unhealthy worker is waited for.
   */
  async readInto(worker: WorkerInfo, blockId: number, offset: number, length: number, into: Buffer, at: number, callerSignal?: AbortSignal, mayAbandon = true): Promise<number> {
    const { signal, done } = this.#watch(worker, callerSignal, mayAbandon);
    try {
      return await this.#readInto(worker, blockId, offset, length, into, at, signal);
    } catch (err) {
      // Aborted by the watch: its reason says why (the worker stopped answering).
      throw signal?.aborted && !callerSignal?.aborted ? wrap(signal.reason, `read block ${blockId} from ${worker.address}`) : err;
    } finally {
      done();
    }
  }

  async #readInto(worker: WorkerInfo, blockId: number, offset: number, length: number, into: Buffer, at: number, signal?: AbortSignal): Promise<number> {
    const body = await this.#readStream(worker, blockId, offset, length, signal);
    let n = 0;
    try {
      for await (const chunk of body) {
        const c = chunk as Buffer;
        const take = Math.min(c.length, length - n);
        c.copy(into, at + n, 0, take);
        n += take;
        this.bytesRead += take;
      }
    } catch (err) {
      throw wrap(err, `read block ${blockId} from ${worker.address}`);
    }
    return n;
  }

  /** Writes a whole file through `worker`, which caches its blocks and stores it in the under-store. */
  async writeFile(
    worker: WorkerInfo,
    ino: number,
    containerId: number,
    blockSize: number,
    size: number,
    body: Readable | Buffer,
    writeType: WriteType = 'CACHE_THROUGH',
    /** The body is sparse extents (see StagingFile.extents), not the raw bytes. */
    extents = false,
    /** Same host: the bytes are in this file, linked into the tier's incoming dir; no body is sent. */
    local?: { tier: string; name: string },
    /** Finishes this write stream: the body (or its handed-over file) has the bytes from where the stream is. */
    stream?: string,
  ): Promise<WriteFileResponse> {
    const { signal, done } = this.#watch(worker);
    try {
      const where = (local ? `&local=${encodeURIComponent(local.name)}&tier=${encodeURIComponent(local.tier)}` : extents ? '&format=extents' : '') + (stream ? `&stream=${encodeURIComponent(stream)}` : '');
      const res = await this.#pool(worker.address).request({
        ...(signal ? { signal } : {}),
        method: 'PUT',
        path: `/files/${ino}?container=${containerId}&blockSize=${blockSize}&size=${size}&writeType=${writeType}${where}`,
        headers: local
          ? { ...this.#auth, 'content-type': 'application/octet-stream', 'content-length': '0' }
          : extents
            ? { ...this.#auth, 'content-type': 'application/octet-stream' }
            : { ...this.#auth, 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: local ? Buffer.alloc(0) : body,
        headersTimeout: this.#watchedHeadersTimeout(size),
        bodyTimeout: this.#bodyTimeoutMs,
      });
      const parsed = parseJsonOrUndefined(await res.body.text());
      if (res.statusCode !== 200) throw errorFromBody(res.statusCode, parsed, `write inode ${ino} to ${worker.address}`);
      return parsed as WriteFileResponse;
    } catch (err) {
      throw wrap(signal?.aborted ? signal.reason : err, `write inode ${ino} to ${worker.address}`);
    } finally {
      done();
    }
  }

  /**
   * Opens a write stream: `worker` takes whole blocks of the file while it is still
   * being written (see appendStream), and `writeFile(…, stream)` finishes it.
   */
  async openStream(worker: WorkerInfo, ino: number, containerId: number, blockSize: number, writeType: WriteType, local?: { tier: string; name: string }): Promise<string> {
    const where = local ? `&local=${encodeURIComponent(local.name)}&tier=${encodeURIComponent(local.tier)}` : '';
    const r = await this.#call<{ stream: string }>(worker, 'POST', `/streams?ino=${ino}&container=${containerId}&blockSize=${blockSize}&writeType=${writeType}${where}`, `open a write stream for inode ${ino}`);
    return r.stream;
  }

  /** Appends `[offset, offset + length)`, whole blocks: `body`, or without one, the stream's handed-over file. */
  async appendStream(worker: WorkerInfo, stream: string, ino: number, offset: number, length: number, body?: Buffer): Promise<void> {
    await this.#call(worker, 'PUT', `/streams/${encodeURIComponent(stream)}?ino=${ino}&offset=${offset}&length=${length}`, `append to write stream of inode ${ino}`, { body: body ?? Buffer.alloc(0) });
  }

  /** Drops a write stream and the blocks it took (best effort: an unknown stream is fine). */
  async deleteStream(worker: WorkerInfo, stream: string): Promise<void> {
    await this.#call(worker, 'DELETE', `/streams/${encodeURIComponent(stream)}`, 'drop a write stream');
  }

  /** One request with a JSON answer, watched like every call to `worker` (and cut by `callerSignal`). */
  async #call<T>(worker: WorkerInfo, method: 'POST' | 'PUT' | 'DELETE', path: string, what: string, opts: { body?: Buffer; callerSignal?: AbortSignal } = {}): Promise<T> {
    const { signal, done } = this.#watch(worker, opts.callerSignal);
    try {
      const res = await this.#pool(worker.address).request({
        ...(signal ? { signal } : {}),
        method,
        path,
        headers: opts.body ? { ...this.#auth, 'content-type': 'application/octet-stream', 'content-length': String(opts.body.length) } : this.#auth,
        ...(opts.body ? { body: opts.body } : {}),
        headersTimeout: this.#watchedHeadersTimeout(),
        bodyTimeout: this.#bodyTimeoutMs,
      });
      const parsed = parseJsonOrUndefined(await res.body.text());
      if (res.statusCode !== 200) throw errorFromBody(res.statusCode, parsed, `${what} on ${worker.address}`);
      return parsed as T;
    } catch (err) {
      throw wrap(signal?.aborted && !opts.callerSignal?.aborted ? signal.reason : err, `${what} on ${worker.address}`);
    } finally {
      done();
    }
  }

  /**
   * Has `worker` cache a block (or `range` of it): pages it lacks are read from the
   * under-store. Resolves once every page is cached; with `reported`, once the
   * master knows of them too (`strata fs load`: a stat or free right after it sees them).
   */
  loadBlock(worker: WorkerInfo, blockId: number, opts: { range?: { offset: number; length: number }; reported?: boolean } = {}): Promise<LoadBlockResponse> {
    const q = new URLSearchParams();
    if (opts.range) {
      q.set('offset', String(opts.range.offset));
      q.set('length', String(opts.range.length));
    }
    if (opts.reported) q.set('reported', '1');
    const query = q.toString();
    return this.#call<LoadBlockResponse>(worker, 'POST', `/blocks/${blockId}/load${query ? `?${query}` : ''}`, `load block ${blockId}`, {});
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values(), ...this.#probePools.values()].map((p) => p.close()));
    this.#pools.clear();
    this.#probePools.clear();
  }
}

/**
 * The worker itself did not answer (refused, reset, closed, timed out on our side), as opposed
 * to an error it answered with (such as its under-store failing, after its own bounded retries):
 * only the former is worth trying another worker for. Errors of the first kind keep their cause.
 */
export function workerUnreachable(err: unknown): err is StrataError {
  return err instanceof StrataError && (err.code === 'UNAVAILABLE' || err.code === 'TIMEOUT') && err.cause !== undefined;
}

function wrap(err: unknown, what: string): StrataError {
  if (err instanceof StrataError) return err;
  const e = toStrataError(err, what);
  return e.code === 'IO_ERROR' ? new StrataError('UNAVAILABLE', e.message, { cause: err }) : e;
}
