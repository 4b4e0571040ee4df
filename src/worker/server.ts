/**
 * The worker: caches blocks on local disk, serves byte ranges of them over HTTP,
 * fills misses from the under-store, and writes files through to the under-store.
 * It learns where a file lives in the under-store from the master, never from the
 * request, so a client cannot make it read or write outside the namespace.
 */

import * as nodePath from 'node:path';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError, storeWriteError, toStrataError } from '../common/errors';
import { HttpAuthOptions, HttpLimits, createHttpServer, intParam, stallGuarded } from '../common/http';
import { dataRuns } from '../common/extents';
import { sparseAware } from '../common/sparse';
import { PAGE_CRC_IMPLEMENTATION } from '../common/page-file';
import { JsonClient, ResponseMeta } from '../common/json-client';
import type { Logger } from '../common/log';
import {
  BlockSource,
  HeartbeatResponse,
  MASTER_API,
  LEADER_TERM_HEADER,
  LoadBlockResponse,
  PageFileInfo,
  READ_TYPES,
  ReadType,
  PersistResponse,
  WRITE_TYPES,
  WriteType,
  RegisterWorkerResponse,
  UfsLocation,
  UnderStoreRef,
  WriteFileResponse,
  blockIdOf,
  BLOCKS_PER_CONTAINER,
  PINNED_REPORT_MAX,
  LEFTOVERS_MAX,
  MAX_CONTAINER_ID,
  TierInfo,
} from '../common/protocol';
import { createUfs, UfsMeter } from '../ufs';
import { hostIdentity } from '../common/host';
import { Counter, Gauge, Histogram } from 'prom-client';
import { createDaemonMetrics } from '../common/metrics';
import type { UfsWriter, UnderFileSystem } from '../ufs/ufs';
import { PageStore, TierSpec } from './page-store';
import { TierChecker } from './tier-check';
import { FileWrite } from './file-write';
import { LeftoverJournal } from './leftover-journal';

export interface WorkerOptions {
  /** Master API URL, e.g. http://127.0.0.1:19998. */
  masterUrl: string;
  /** The worker's home (identity, pins; `<home>/worker/...`). */
  home: string;
  host?: string;
  /** Data port; 0 picks a free one. Default 29999. */
  port?: number;
  /** Cache tiers, top first. Default: one SSD tier `<home>/worker/blocks` of `capacityBytes`. */
  tiers?: TierSpec[];
  /** Quota of the default single tier. Default 8 GiB. */
  capacityBytes?: number;
  /** Page size, the unit of caching inside a block. Default 1 MiB. */
  pageSize?: number;
  /** LRU (default), FIFO or LFU. */
  evictionPolicy?: string;
  /** Memory that reads not cached (NO_CACHE, or no room in the cache) may hold for their clients, all together. Default 256 MiB. */
  readMemoryBytes?: number;
  /** Heartbeat period in ms. Default 2000. */
  heartbeatIntervalMs?: number;
  /** Identity of this worker's host, reported to the master; mounts with the same id read its page files directly. Default hostIdentity(). */
  hostId?: string;
  /** Background verification speed of cached pages, bytes/s (0 = off). Default 64 MiB/s. */
  scrubBytesPerSec?: number;
  /** Require the cluster token on the data API. Default: no auth. */
  auth?: HttpAuthOptions;
  /** The cluster token sent to the master. Default: auth's token, else none. */
  token?: string;
  /** Connection and header limits of the data server (see HttpLimits for defaults). */
  limits?: HttpLimits;
  /** Largest body of a route that takes no stream (they take none; it is read and dropped). Default 1 MiB. */
  maxBodyBytes?: number;
  /** A request body (a streamed file write) may stall this long (ms) before the connection is closed. Default 60000. */
  bodyStallTimeoutMs?: number;
  /** A write stream (a big file sent block by block while being written) left idle this long is dropped with its blocks. Default 10 min. */
  streamIdleMs?: number;
  /** How often each cache tier's disk is checked (ms; 0 = never). Default 5000. */
  tierCheckIntervalMs?: number;
  /** A tier check still running after this long (ms) marks the tier stalled, and /healthz answers 503. Default 30000. */
  tierStallMs?: number;
  logger: Logger;
}

export interface RunningWorker {
  url: string;
  port: number;
  workerId: number;
  close(): Promise<void>;
}

/**
 * A container id from a query. Past MAX_CONTAINER_ID a block id is no exact integer: such a
 * write once left an id behind that made the master refuse every later heartbeat of this worker.
 */
function containerParam(value: unknown): number {
  const id = intParam(value, 'container');
  if (id > MAX_CONTAINER_ID) throw new StrataError('BAD_REQUEST', `parameter 'container' must be at most ${MAX_CONTAINER_ID}`);
  return id;
}

/** How long a write waits for the master to say which pinned blocks may go, before failing NO_SPACE. */
const ASK_UNPINS_WAIT_MS = 5000;
/** After a fill found no room in the cache, reads are served uncached this long before caching is tried again. */
const NO_ROOM_RETRY_MS = 5000;

/** Runs at most `n` of the functions given to it at once, in call order. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return <T>(fn: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const go = () => {
        active++;
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            queue.shift()?.();
          });
      };
      if (active < n) go();
      else queue.push(go);
    });
}

/** Most parallel under-store reads one request starts to fill missing pages. */
const FILL_PARALLEL = 4;
/** How long a fill that found its file changed waits for the master's re-check of it. */
const RECHECK_TIMEOUT_MS = 5_000;
/** How long a load that asked for it waits for the master to hear of its blocks. */
const REPORT_WAIT_MS = 5000;
/**
 * Largest ranged read of one fill: consecutive missing pages are fetched together up to this.
 * A 64 MiB block loads as 4 reads of 16 MiB at once. Cold 1 GiB read on s3rver, back to back:
 * 8 MiB 352-376 MB/s (median 356), 16 MiB 357-404 (median 383), with less CPU for the worker and
 * the store (half the requests); 32 MiB 333-348 (only 2 reads in parallel).
 */
const FILL_RUN_BYTES = 16 * 1024 * 1024;

/**
 * Pages a read holds in memory (NO_CACHE, or no room in the cache) ahead of the one its
 * client takes next. Fills run ahead of a slow client and would otherwise hold the whole
 * range asked for (a 64 MiB block per request); past the window a fill waits, its store
 * read paused, until the client has taken pages.
 */
const READ_WINDOW_BYTES = FILL_RUN_BYTES;

/**
 * What all reads of a worker that do not cache hold in memory together (HeldPages), against
 * the worker's read memory. Each read may always hold the page its client takes next, so a
 * read never waits for other reads' clients; past the budget, reads fetch no further ahead
 * until pages are taken. Without it, memory grew with the number of such reads: 16 MiB each.
 * Not counted: the pages fills have fetched and wait to hold (at most FILL_PARALLEL per read).
 */
export class ReadBudget {
  #held = 0;
  readonly #waiters = new Set<() => void>();

  constructor(
    readonly limit: number,
    readonly gauge?: Gauge,
  ) {}

  get held(): number {
    return this.#held;
  }

  /** Whether reads may hold a page beyond the one their client takes next. */
  get full(): boolean {
    return this.#held >= this.limit;
  }

  /** Bytes reads may still hold beyond their clients' next pages. */
  get room(): number {
    return Math.max(0, this.limit - this.#held);
  }

  add(bytes: number): void {
    this.#held += bytes;
    this.gauge?.inc(bytes);
  }

  release(bytes: number): void {
    this.#held -= bytes;
    this.gauge?.dec(bytes);
    // Only once there is room: while full, a release lets no waiting fill in.
    if (this.full || this.#waiters.size === 0) return;
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }

  /** Calls `w` once, when a release leaves room; the returned function cancels that. */
  onRoom(w: () => void): () => void {
    this.#waiters.add(w);
    return () => void this.#waiters.delete(w);
  }
}

export const DEFAULT_READ_MEMORY_BYTES = 256 * 1024 * 1024;

/** Flow control between a read's fills and its client (READ_WINDOW_BYTES, and the worker's ReadBudget). Exported, with HeldPages and hold, for test/worker/read-budget. */
export class ReadWindow {
  /** The page the client takes next. */
  next: number;
  #closed = false;
  /** Pages past `next` that may be held. */
  readonly pages: number;
  readonly #waiters = new Set<() => void>();

  constructor(
    first: number,
    readonly pageSize: number,
    readonly budget: ReadBudget,
  ) {
    this.next = first;
    this.pages = Math.max(1, Math.floor(READ_WINDOW_BYTES / pageSize));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Settles at the next change that may let page `idx` in: the client took a page, the read
   * ended, or (for a page within the window) the budget has room again. Each wait removes
   * itself from both, so a fill that waits long adds nothing per release elsewhere.
   */
  changed(idx: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let cancelRoom = (): void => undefined;
      const wake = (): void => {
        this.#waiters.delete(wake);
        cancelRoom();
        resolve();
      };
      this.#waiters.add(wake);
      if (idx < this.next + this.pages) cancelRoom = this.budget.onRoom(wake);
    });
  }

  /** Whether page `idx` may be held now: within the window, and the next page or within the worker's budget. */
  admits(idx: number): boolean {
    return !this.#closed && idx < this.next + this.pages && (idx <= this.next || !this.budget.full);
  }

  /** Pages past `next` a fetch starting there may bring in one go: as many as the budget has room for, up to the window. */
  get ahead(): number {
    return Math.min(this.pages - 1, Math.floor(this.budget.room / this.pageSize));
  }

  advance(next: number): void {
    if (next <= this.next) return;
    this.next = next;
    this.#wake();
  }

  close(): void {
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }
}

/** Pages a read holds for its client, counted in the worker's ReadBudget; a fill adds one once `window` admits it. */
export class HeldPages extends Map<number, Buffer> {
  /** Per page fetched for this read alone (NO_CACHE): settles when that page is held, or its fill failed. */
  readonly fills = new Map<number, Promise<void>>();

  constructor(readonly window: ReadWindow) {
    super();
  }

  override set(k: number, v: Buffer): this {
    const old = super.get(k);
    if (old) this.window.budget.release(old.length);
    this.window.budget.add(v.length);
    return super.set(k, v);
  }

  override delete(k: number): boolean {
    const old = super.get(k);
    if (old) this.window.budget.release(old.length);
    return super.delete(k);
  }

  override clear(): void {
    for (const v of this.values()) this.window.budget.release(v.length);
    super.clear();
  }
}

/** Ends a fill run that has no reader left for its pages (see hold). */
const RUN_ENDED = new StrataError('UNAVAILABLE', 'the read this fill was for has ended');
/** Ends a fill run other reads may have joined (see hold): they fetch for themselves, as when a fill finds no room. */
const RUN_PAST_WINDOW = new StrataError('NO_SPACE', "no room in the cache, and the page is past its read's window");

/**
 * Keeps a fetched page for the read that holds `pages`, once its window admits it. The fill
 * run ends (the store read is dropped) when the read has ended, and also when a fill other
 * reads may have joined (`shared`: pages that found no room) gets past the window: it never
 * waits for one client; those reads fetch for themselves, and this one fetches the next
 * window's pages when its client gets there.
 */
export async function hold(pages: Map<number, Buffer>, idx: number, page: Buffer, shared: boolean): Promise<void> {
  if (pages instanceof HeldPages) {
    const w = pages.window;
    // Checked and held in one step: fills woken together by the same room cannot all take it, and
    // none holds a page after its read ended (the read's last step let go of what it held).
    while (!w.admits(idx)) {
      // A fill other reads may have joined never waits for this one, nor fails them: they fetch for themselves.
      if (shared) throw RUN_PAST_WINDOW;
      if (w.closed) throw RUN_ENDED;
      await w.changed(idx);
    }
  }
  pages.set(idx, page);
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const log = opts.logger;
  // A master that does not answer is waited for up to a minute per call; said every 10 s, so a worker
  // that cannot reach it (a wrong --master, a firewall) does not sit silent.
  let warnedAt = 0;
  const master = new JsonClient(opts.masterUrl, {
    retryForMs: 60_000,
    token: opts.token ?? opts.auth?.token,
    onRetry: (err, what) => {
      if (closing || Date.now() - warnedAt < 10_000) return;
      warnedAt = Date.now();
      const notLeader = err instanceof StrataError && err.code === 'NOT_LEADER';
      log.warn({ master: opts.masterUrl, call: what, err: err instanceof Error ? err.message : String(err) }, notLeader ? 'no master leads yet; trying again' : 'the master does not answer; trying again');
    },
  });
  const tiers = opts.tiers ?? [{ name: 'SSD', dir: nodePath.resolve(opts.home, 'worker', 'blocks'), capacityBytes: opts.capacityBytes ?? 8 * 1024 ** 3 }];
  /** Set by close(): timers and loops stop, waits end. */
  let closing = false;
  /** Whether a heartbeat is on its way to the master. */
  let beating = false;
  /** Waits until the master has heard of what is cached now (bound below, with the heartbeat). */
  let waitReported: () => Promise<void> = () => Promise.resolve();
  /** Set once the master client and the store exist (see below). */
  let askUnpins: () => Promise<number> = async () => 0;
  const store = new PageStore({
    tiers,
    pageSize: opts.pageSize,
    evictionPolicy: opts.evictionPolicy,
    pinDir: nodePath.resolve(opts.home, 'worker', 'pins'),
    onCorrupt: (blockId, pageIndex, reason) => {
      corruptPages.inc();
      log.warn({ blockId, pageIndex, reason }, 'dropped a cached page that failed verification; it will be fetched again');
    },
    askUnpins: () => askUnpins(),
  });
  await store.open();
  // Before any write starts: what is recorded now is a previous run's.
  const opened = await LeftoverJournal.open(nodePath.resolve(opts.home, 'worker', 'leftovers'), log);
  const journal = opened.journal;
  let staleLeftovers = opened.stale;
  if (staleLeftovers.length) log.warn({ writes: staleLeftovers.length }, 'the last run was cut off during under-store writes; the master discards what they left');
  log.info({ blocks: store.blockCount, usedBytes: store.usedBytes, tiers: store.tierInfo().map((t) => `${t.name}:${t.dir}`), checksums: PAGE_CRC_IMPLEMENTATION, holes: sparseAware() ? 'SEEK_DATA' : 'read (the strata_sparse addon is not built)' }, 'page store opened');

  const metrics = createDaemonMetrics('worker');
  const reg = [metrics.registry];
  const ufsMeter = new UfsMeter(metrics.registry);
  /** Drivers by mount URI and options (credentials or endpoints may differ per mount). */
  const ufsByUri = new Map<string, UnderFileSystem>();
  const ufsFor = (loc: UnderStoreRef): UnderFileSystem => {
    const key = `${loc.mountUri}\n${JSON.stringify(loc.options ?? {})}`;
    let u = ufsByUri.get(key);
    if (!u) {
      u = createUfs(loc.mountUri, loc.options ?? {}, ufsMeter);
      ufsByUri.set(key, u);
    }
    return u;
  };

  /**
   * Under-store writers not completed or aborted yet. A stopping worker aborts them
   * while its drivers can still reach the store: the requests that own them are cut
   * by the close, and an S3 multipart upload left open is kept (and billed) by the
   * store until someone aborts it.
   */
  const openWriters = new Set<UfsWriter>();
  /** Set by close: a request still running then gets no new writer. */
  let stopping = false;
  const createWriter = async (loc: UfsLocation): Promise<UfsWriter> => {
    if (stopping) throw new StrataError('UNAVAILABLE', 'the worker is stopping');
    const vouched = typeof loc.noDirectoryForMs === 'number' && loc.noDirectoryForMs > 0 ? { noDirectoryUntil: Date.now() + loc.noDirectoryForMs } : undefined;
    const created = await ufsFor(loc)
      .create(loc.path, vouched)
      .catch((err: unknown) => {
        throw storeWriteError(err, loc.path);
      });
    const w = await journal.track(loc.mountUri, created);
    if (stopping) {
      await w.abort();
      throw new StrataError('UNAVAILABLE', 'the worker is stopping');
    }
    openWriters.add(w);
    return {
      write: (chunk) => w.write(chunk),
      ...(w.skip ? { skip: (n: number) => w.skip!(n) } : {}),
      complete: async () => {
        const st = await w.complete();
        openWriters.delete(w);
        return st;
      },
      abort: () => w.abort().finally(() => openWriters.delete(w)),
    };
  };

  /** Where a block's bytes are in the under-store; asked once per fill burst, kept briefly. */
  const sources = new Map<number, { src: Promise<BlockSource>; at: number }>();
  const sourceOf = (id: number): Promise<BlockSource> => {
    const hit = sources.get(id);
    if (hit && Date.now() - hit.at < 5000) return hit.src;
    const src = master.get<BlockSource>(`${MASTER_API}/block-source`, { id });
    src.catch(() => sources.delete(id));
    sources.set(id, { src, at: Date.now() });
    if (sources.size > 1024) for (const k of sources.keys()) if (sources.size > 512) sources.delete(k);
    return src;
  };

  /**
   * A fill found its file changed in the store, within the master's sync interval: the master
   * re-checks the file before the reader hears of it, so the next open reads the new version
   * instead of failing until the interval runs out. One re-check per file in flight.
   */
  const rechecks = new Map<number, Promise<void>>();
  const storeChanged = async (src: BlockSource, err: StrataError): Promise<never> => {
    sources.delete(src.blockId);
    let p = rechecks.get(src.ino);
    if (!p) {
      // Bounded: the reader waits for this, and a master that is down makes it fail as it would have.
      p = master
        .post(`${MASTER_API}/sync`, { ino: src.ino }, AbortSignal.timeout(RECHECK_TIMEOUT_MS))
        .then(() => undefined)
        .catch((e: unknown) => log.warn({ ino: src.ino, err: e instanceof Error ? e.message : String(e) }, 'could not have the master re-check a file that changed in the store'))
        .finally(() => rechecks.delete(src.ino));
      rechecks.set(src.ino, p);
    }
    await p;
    throw err;
  };

  /**
   * A read whose pages find no room in the cache (its tier full of pinned or unpersisted
   * pages, its disk full, a page larger than the tier) is served the store's bytes
   * uncached, as NO_CACHE would be: the store has them, and failing the read with ENOSPC
   * helped nobody. Until `noRoomUntil` fills do not try again (each try may wait for the
   * master to let go of pins).
   */
  let noRoomUntil = 0;
  const noteNoRoom = (err: unknown): void => {
    if (Date.now() >= noRoomUntil) log.warn({ err: toStrataError(err).message }, 'no room to cache what reads fetch: serving them from the store uncached for a while');
    noRoomUntil = Date.now() + NO_ROOM_RETRY_MS;
  };

  /** In-flight fills by page; concurrent readers of one missing page share one fetch. */
  const pageFills = new Map<string, Promise<void>>();
  const ps = store.pageSize;

  /**
   * Reads pages `[first, last]` of a block from the under-store in one ranged read
   * and caches each as it completes (or hands them to `sink` for NO_CACHE reads).
   */
  const fetchRun = async (src: BlockSource, first: number, last: number, sink: Map<number, Buffer> | undefined, onPage: (p: number) => void, spill?: Map<number, Buffer>): Promise<void> => {
    const start = first * ps;
    const end = Math.min(src.length, (last + 1) * ps);
    const ufs = ufsFor(src.ufs);
    // A page's bytes as the store's chunks (no copy into a page buffer): written out with one writev.
    let pieces: Buffer[] = [];
    let pageSize = Math.min(ps, end - start);
    let fillAt = 0;
    let idx = first;
    let got = 0;
    try {
      const stream = await ufs.read(src.ufs.path, src.offset + start, end - start, src.fingerprint !== undefined ? { ifFingerprint: src.fingerprint } : undefined);
      for await (const raw of stream) {
        let chunk = raw as Buffer;
        while (chunk.length > 0) {
          if (idx > last) throw new StrataError('STORE_CHANGED', `under-store returned more than ${end - start} bytes at ${src.offset + start}: the file changed`);
          const take = Math.min(chunk.length, pageSize - fillAt);
          pieces.push(take === chunk.length ? chunk : chunk.subarray(0, take));
          fillAt += take;
          got += take;
          chunk = chunk.subarray(take);
          if (fillAt === pageSize) {
            const whole = () => (pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, pageSize));
            if (sink) await hold(sink, idx, whole(), false);
            else if (spill && Date.now() < noRoomUntil) await hold(spill, idx, whole(), true);
            else {
              try {
                await store.putPage(src.blockId, idx, pieces, pageSize, src.length);
              } catch (err) {
                if (!spill || toStrataError(err).code !== 'NO_SPACE') throw err;
                noteNoRoom(err);
                await hold(spill, idx, whole(), true);
              }
            }
            onPage(idx);
            idx++;
            fillAt = 0;
            pieces = [];
            if (idx <= last) pageSize = Math.min(ps, end - idx * ps);
          }
        }
      }
      if (got !== end - start) throw new StrataError('STORE_CHANGED', `under-store returned ${got} bytes at ${src.offset + start}, expected ${end - start}: the file changed`);
      fillBytes.inc(got);
      fillCount.inc({ result: 'ok' });
    } catch (err) {
      if (err === RUN_ENDED || err === RUN_PAST_WINDOW) throw err;
      fillCount.inc({ result: 'error' });
      const e = toStrataError(err, `fill block ${src.blockId} pages ${first}-${last}`);
      if (e.code === 'STORE_CHANGED') await storeChanged(src, e);
      throw e;
    }
  };

  /**
   * Makes pages `[first, last]` cached (or, with `sink`, fetched for this request
   * only): missing ones are fetched in runs, several in parallel, joining fills
   * already in flight.
   */
  const ensurePages = (src: BlockSource, first: number, last: number, sink?: Map<number, Buffer>, spill?: Map<number, Buffer>): Promise<void> => {
    const waits: Promise<void>[] = [];
    const runs: [number, number][] = [];
    let runStart = -1;
    const maxRunPages = Math.max(1, Math.floor(FILL_RUN_BYTES / ps));
    for (let p = first; p <= last + 1; p++) {
      const missing = p <= last && !store.hasPage(src.blockId, p) && !(sink?.has(p) ?? false);
      const inflight = missing && !sink ? pageFills.get(`${src.blockId}:${p}`) : undefined;
      if (inflight) waits.push(inflight);
      const wanted = missing && !inflight;
      if (wanted && runStart < 0) runStart = p;
      if (runStart >= 0 && (!wanted || p - runStart >= maxRunPages)) {
        runs.push([runStart, p - 1]);
        runStart = wanted ? p : -1;
      }
    }
    // Every page is registered before any fetch starts, so a reader of page p waits
    // for page p only, not for the whole range.
    const limit = limiter(FILL_PARALLEL);
    const started = runs.map(([a, z]) => {
      const pages = new Map<number, { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void }>();
      for (let p = a; p <= z; p++) {
        let resolve!: () => void;
        let reject!: (e: unknown) => void;
        const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
        promise.catch(() => undefined);
        pages.set(p, { promise, resolve, reject });
        if (!sink) pageFills.set(`${src.blockId}:${p}`, promise);
        else if (sink instanceof HeldPages) sink.fills.set(p, promise);
      }
      const settle = (err?: unknown) => {
        for (const [p, d] of pages) {
          if (err) d.reject(err);
          else d.resolve();
          if (pageFills.get(`${src.blockId}:${p}`) === d.promise) pageFills.delete(`${src.blockId}:${p}`);
        }
      };
      const run = limit(() =>
        fetchRun(
          src,
          a,
          z,
          sink,
          (p) => {
            pages.get(p)?.resolve();
            if (pageFills.get(`${src.blockId}:${p}`) === pages.get(p)?.promise) pageFills.delete(`${src.blockId}:${p}`);
          },
          spill,
        ),
      );
      run.then(() => settle(), settle);
      return run;
    });
    return Promise.allSettled([...started, ...waits]).then((all) => {
      const failed = all.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });
  };

  /** The block's length: known from a page trailer or a write, else from the master. */
  const blockLength = async (id: number): Promise<number> => store.blockLength(id) ?? (await sourceOf(id)).length;

  /** Streams `[offset, end)` of a block page by page, fetching what is missing. */
  async function* servePages(id: number, offset: number, end: number, readType: ReadType): AsyncGenerator<Buffer> {
    if (offset >= end) return;
    const first = Math.floor(offset / ps);
    const last = Math.floor((end - 1) / ps);
    let missing = false;
    for (let p = first; p <= last && !missing; p++) missing = !store.hasPage(id, p);
    hits.inc({ cache: missing ? 'miss' : 'hit' });
    const window = new ReadWindow(first, ps, readBudget);
    const sink = readType === 'NO_CACHE' ? new HeldPages(window) : undefined;
    // Pages fetched for this read that found no room in the cache (see noRoomUntil).
    const spill = sink ? undefined : new HeldPages(window);
    try {
      const fill = missing ? ensurePages(await sourceOf(id), first, last, sink, spill) : undefined;
      // Serve pages as they become ready; the fill of later pages runs meanwhile.
      fill?.catch(() => undefined);
      for (let p = first; p <= last; p++) {
        window.advance(p);
        const from = Math.max(offset, p * ps) - p * ps;
        const to = Math.min(end, (p + 1) * ps) - p * ps;
        let got = await store.readPage(id, p, from, to, readType === 'CACHE_PROMOTE');
        if (!got) {
          const inflight = sink ? undefined : pageFills.get(`${id}:${p}`);
          try {
            // A NO_CACHE read waits for its page's own fill, not the whole: runs past its window wait for its client.
            if (inflight) await inflight;
            else if (sink) await sink.fills.get(p);
            else if (fill) await fill;
          } catch (err) {
            // Another request's fill of this page found no room (a load: it keeps nothing it cannot cache);
            // this read's own fills serve such pages uncached instead. Fetched once more below.
            if (toStrataError(err).code !== 'NO_SPACE') throw err;
          }
          const fetched = sink?.get(p) ?? spill?.get(p);
          if (fetched) {
            (sink ?? spill)!.delete(p);
            ufsServedBytes.inc(to - from);
            yield fetched.subarray(from, to);
            continue;
          }
          got = await store.readPage(id, p, from, to);
          if (!got) {
            // Evicted again at once, dropped as corrupt, or fetched by another read that found no room (its bytes
            // went to that read only): fetch just this page once more, and if that joins yet another such fill,
            // for this read alone, uncached (a fill for one request joins no other).
            const src = await sourceOf(id);
            try {
              // Without room, the pages up to the window's end at once (a fill that reached past it stopped there), as
              // many as the worker's read memory has room for: this page alone while it is spent (more would be dropped).
              await ensurePages(src, p, sink ? p : Math.min(last, p + window.ahead), sink, spill);
            } catch (err) {
              if (toStrataError(err).code !== 'NO_SPACE') throw err;
            }
            let again = sink?.get(p) ?? spill?.get(p);
            got = again ? undefined : await store.readPage(id, p, from, to);
            if (!again && !got) {
              const own = new Map<number, Buffer>();
              await ensurePages(src, p, p, own);
              again = own.get(p);
            }
            if (again) {
              (sink ?? spill)?.delete(p);
              ufsServedBytes.inc(to - from);
              yield again.subarray(from, to);
              continue;
            }
            if (!got) throw new StrataError('IO_ERROR', `page ${p} of block ${id} could not be read`);
          }
        }
        servedBytes.inc({ tier: got.tier }, got.data.length);
        yield got.data;
      }
  
    } finally {
      // The client has all it asked for, or went away midway: fills in flight drop what they fetch for it from now on.
      window.close();
      sink?.clear();
      spill?.clear();
    }
  }

  const servedBytes = new Counter({ name: 'strata_worker_served_bytes_total', help: 'Bytes served to clients over HTTP, by the tier they came from', labelNames: ['tier'] as const, registers: reg });
  const heldBytes = new Gauge({
    name: 'strata_worker_read_held_bytes',
    help: 'Bytes fetched from under-stores and held in memory for reads that do not cache them (NO_CACHE, or no room in the cache), waiting for their clients',
    registers: reg,
  });
  const readBudget = new ReadBudget(opts.readMemoryBytes ?? DEFAULT_READ_MEMORY_BYTES, heldBytes);
  const ufsServedBytes = new Counter({ name: 'strata_worker_no_cache_bytes_total', help: 'Bytes served straight from the under-store without caching (NO_CACHE reads, and reads that found no room in the cache)', registers: reg });
  const fillBytes = new Counter({ name: 'strata_worker_ufs_read_bytes_total', help: 'Bytes read from under-stores to fill cache misses', registers: reg });
  const fillCount = new Counter({ name: 'strata_worker_ufs_reads_total', help: 'Ranged under-store reads that filled missing pages', labelNames: ['result'] as const, registers: reg });
  const hits = new Counter({ name: 'strata_worker_block_reads_total', help: 'Block range reads by whether every page was cached', labelNames: ['cache'] as const, registers: reg });
  const corruptPages = new Counter({ name: 'strata_worker_corrupt_pages_total', help: 'Cached pages that failed checksum verification and were dropped', registers: reg });
  const writtenBytes = new Counter({
    name: 'strata_worker_written_bytes_total',
    help: 'File bytes written through this worker, by write type and how they came (http: request body; local: a same-host file handed over)',
    labelNames: ['write_type', 'via'] as const,
    registers: reg,
  });
  const streamedBytes = new Counter({
    name: 'strata_worker_write_stream_bytes_total',
    help: 'File bytes taken by write streams as whole blocks before the file was closed (also counted in strata_worker_written_bytes_total)',
    registers: reg,
  });
  new Gauge({ name: 'strata_worker_under_store_drivers', help: 'Under-store drivers this worker has made (one per store and options)', registers: reg, collect() { this.set(ufsByUri.size); } });
  new Gauge({ name: 'strata_worker_cache_used_bytes', help: 'Bytes of cached pages, by tier', labelNames: ['tier'] as const, registers: reg, collect() { for (const t of store.tierInfo()) this.set({ tier: t.name }, t.usedBytes); } });
  new Gauge({ name: 'strata_worker_cache_capacity_bytes', help: 'Quota, by tier', labelNames: ['tier'] as const, registers: reg, collect() { for (const t of store.tierInfo()) this.set({ tier: t.name }, t.capacityBytes); } });
  new Gauge({ name: 'strata_worker_cache_blocks', help: 'Blocks with at least one cached page', registers: reg, collect() { this.set(store.blockCount); } });
  new Gauge({ name: 'strata_worker_unpersisted_blocks', help: 'Blocks kept from eviction because their bytes are not persisted yet', registers: reg, collect() { this.set(store.pinnedCount); } });
  new Gauge({ name: 'strata_worker_user_pinned_blocks', help: 'Blocks of files pinned by users', registers: reg, collect() { this.set(store.userPinnedCount); } });
  new Gauge({ name: 'strata_worker_evicted_bytes_total', help: 'Bytes dropped from the cache to make room, since start', registers: reg, collect() { this.set(store.stats.evictedBytes); } });
  new Gauge({ name: 'strata_worker_demoted_bytes_total', help: 'Bytes moved down a tier to make room, since start', registers: reg, collect() { this.set(store.stats.demotedBytes); } });
  new Gauge({ name: 'strata_worker_promoted_bytes_total', help: 'Bytes moved to the top tier by CACHE_PROMOTE reads, since start', registers: reg, collect() { this.set(store.stats.promotedBytes); } });
  const tierCheckSeconds = new Histogram({ name: 'strata_worker_tier_check_seconds', help: 'Time of each check of a cache tier\'s disk (a 4 KiB write and fdatasync), by tier and result', labelNames: ['tier', 'result'] as const, buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 30], registers: reg });
  const tierChecker = new TierChecker(store.tierScratchDirs(), {
    intervalMs: opts.tierCheckIntervalMs ?? 5000,
    stallMs: opts.tierStallMs ?? 30_000,
    log,
    onCheck: (tier, seconds, ok) => tierCheckSeconds.observe({ tier, result: ok ? 'ok' : 'error' }, seconds),
  });
  new Gauge({ name: 'strata_worker_tier_state', help: 'Cache tier health: 0 ok, 1 failing (its check errs), 2 stalled (its check hangs; /healthz answers 503)', labelNames: ['tier'] as const, registers: reg, collect() { for (const t of tierChecker.health()) this.set({ tier: t.tier }, t.state === 'ok' ? 0 : t.state === 'failing' ? 1 : 2); } });
  /** The tiers as reported to the master: with their state, so clients avoid a worker whose disk hangs. */
  const tiersNow = (): TierInfo[] => {
    const states = new Map(tierChecker.health().map((h) => [h.tier, h.state]));
    return store.tierInfo().map((t) => {
      const state = states.get(t.name);
      return state && state !== 'ok' ? { ...t, state } : t;
    });
  };
  const app = createHttpServer({ logger: log, metrics, auth: opts.auth, limits: opts.limits });
  /** Containers being written here (count of uploads per container): heartbeats tell the master they are in flight. */
  const openWrites = new Map<number, number>();
  app.removeAllContentTypeParsers();
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  const stallMs = opts.bodyStallTimeoutMs ?? 60_000;
  app.addContentTypeParser('*', (req, payload, done) => {
    // File writes stream their body to the handler, which bounds it by the declared size and stalls.
    if (req.method === 'PUT') return done(null, payload);
    // No other route reads a body: drop what comes, up to the limit and the stall timeout, so a connection is never stuck on one.
    let n = 0;
    let finished = false;
    let timer = setTimeout(() => req.raw.destroy(), stallMs);
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      if (finished) return;
      finished = true;
      done(err, undefined);
    };
    payload.on('data', (c: Buffer) => {
      clearTimeout(timer);
      timer = setTimeout(() => req.raw.destroy(), stallMs);
      n += c.length;
      if (n > maxBody) {
        payload.destroy();
        finish(new StrataError('PAYLOAD_TOO_LARGE', `request body over ${maxBody} bytes`));
      }
    });
    payload.on('end', () => finish(null));
    payload.on('error', (err) => finish(new StrataError('BAD_REQUEST', `request body: ${err.message}`)));
    payload.on('close', () => clearTimeout(timer));
  });

  // 503 while a tier's disk hangs: clients probing this worker give up on it and go elsewhere (TierChecker).
  app.get('/healthz', async (_req, reply) => {
    // Nothing but liveness while healthy (anyone may ask); the tiers' states are in /metrics.
    const stalled = tierChecker.health().filter((t) => t.state === 'stalled');
    if (stalled.length === 0) return { ok: true };
    const what = stalled.map((t) => `${t.tier} (${t.detail}, ${Math.round((t.forMs ?? 0) / 1000)} s)`).join(', ');
    return reply.code(503).send({ ok: false, code: 'UNAVAILABLE', message: `cache tier stalled: ${what}` });
  });

  app.get('/blocks/:id', async (req, reply) => {
    const id = intParam((req.params as Record<string, string>).id, 'id');
    const q = req.query as Record<string, unknown>;
    const offset = intParam(q.offset, 'offset', 0);
    const length = intParam(q.length, 'length', Number.MAX_SAFE_INTEGER);
    const readType = (q.readType ?? 'CACHE') as ReadType;
    if (!READ_TYPES.includes(readType)) throw new StrataError('BAD_REQUEST', `readType must be one of ${READ_TYPES.join(', ')}`);
    const total = await blockLength(id);
    const end = Math.min(total, offset + Math.min(length, total));
    const n = Math.max(0, end - offset);
    // The first page is fetched before the reply starts, so a failing store gives an error status, not a cut body.
    const pages = servePages(id, offset, end, readType);
    // A client gone before (or while) its body is sent: the read ends, and so do its fills.
    reply.raw.once('close', () => void pages.return(undefined).catch(() => undefined));
    const first = n > 0 ? await pages.next() : { done: true as const, value: undefined };
    async function* rest(): AsyncGenerator<Buffer> {
      try {
        if (!first.done) yield first.value;
        yield* pages;
      } catch (err) {
        // Past the status line: the client sees only a cut body, so the cause is said here.
        log.warn({ blockId: id, offset, length: n, err: (err as Error).message, code: toStrataError(err).code }, 'block read failed after its reply began; the connection is cut');
        throw err;
      }
    }
    void reply.header('content-type', 'application/octet-stream').header('content-length', String(n));
    return reply.send(Readable.from(rest(), { objectMode: false }));
  });

  /** Sends a heartbeat now and answers after it: the master's queued deletes are done, what is cached is known. */
  app.post('/report', async () => {
    await waitReported();
    return { ok: true };
  });

  /**
   * Caches a block, or a range of it (`strata fs load`, a mount's read-ahead); answers
   * once every page is here, and with `reported=1` once the master knows of them too.
   */
  app.post('/blocks/:id/load', async (req): Promise<LoadBlockResponse> => {
    const id = intParam((req.params as Record<string, string>).id, 'id');
    // Optionally a range only: a same-host client has the pages it needs cached, then reads the files itself.
    const q = req.query as Record<string, unknown>;
    const offset = intParam(q.offset, 'offset', 0);
    const length = intParam(q.length, 'length', Number.MAX_SAFE_INTEGER);
    const src = await sourceOf(id);
    const first = Math.floor(Math.min(offset, Math.max(0, src.length - 1)) / ps);
    const last = Math.max(first, Math.ceil(Math.min(src.length, offset + Math.min(length, src.length)) / ps) - 1);
    let missingBytes = 0;
    for (let p = first; p <= last; p++) if (!store.hasPage(id, p)) missingBytes += Math.max(0, Math.min(ps, src.length - p * ps));
    if (src.length > 0 && missingBytes > 0) {
      // Recently out of room: fail at once (a same-host reader then reads over HTTP, served uncached)
      // rather than wait again for the master to let go of pins.
      if (Date.now() < noRoomUntil) throw new StrataError('NO_SPACE', 'no room in the cache for these pages right now');
      try {
        await ensurePages(src, first, last);
      } catch (err) {
        if (toStrataError(err).code === 'NO_SPACE') noteNoRoom(err);
        throw err;
      }
    }
    // Nothing to wait for when the master already has this block's state (the common case of a load
    // of cached files); a beat in flight may carry it, so then wait.
    if (q.reported === '1' && (missingBytes > 0 || store.hasUnreported(id) || beating)) await waitReported();
    // The page files as verified or written here: a same-host reader trusts exactly these versions.
    const pages: PageFileInfo[] = [];
    for (let p = first; p <= last; p++) {
      const f = store.pageFile(id, p);
      if (f) pages.push({ index: p, tier: f.tier, ino: f.identity.ino, ctimeNs: String(f.identity.ctimeNs), size: f.identity.size });
    }
    return { blockId: id, length: src.length, ufsBytes: missingBytes, ...(pages.length ? { pages } : {}) };
  });

  /**
   * Writes a whole file: the body is split into blocks cached here and streamed to
   * the under-store at the same time; the reply lists the blocks for the commit.
   * With `stream=ID` it finishes a write stream (below): the body (or the local file)
   * carries the bytes from where the stream is to the declared size.
   */
  app.put('/files/:ino', async (req, reply): Promise<WriteFileResponse> => {
    const ino = intParam((req.params as Record<string, string>).ino, 'ino');
    const q = req.query as Record<string, unknown>;
    const containerId = containerParam(q.container);
    if (q.stream !== undefined && typeof q.stream !== 'string') throw new StrataError('BAD_REQUEST', "parameter 'stream' must be given once");
    // One write per container (a stream's own finishing request aside): two would share, and overwrite, its blocks.
    if (q.stream === undefined && openWrites.has(containerId)) throw new StrataError('BUSY', `container ${containerId} is being written already`);
    openWrites.set(containerId, (openWrites.get(containerId) ?? 0) + 1);
    try {
      return await writeFile(req, reply, ino, q, containerId);
    } finally {
      const n = openWrites.get(containerId)! - 1;
      if (n > 0) openWrites.set(containerId, n);
      else openWrites.delete(containerId);
    }
  });

  const writeParams = (q: Record<string, unknown>): { blockSize: number; writeType: WriteType } => {
    const blockSize = intParam(q.blockSize, 'blockSize');
    const writeType = (q.writeType ?? 'CACHE_THROUGH') as WriteType;
    if (!WRITE_TYPES.includes(writeType)) throw new StrataError('BAD_REQUEST', `writeType must be one of ${WRITE_TYPES.join(', ')}`);
    if (blockSize < 4096 || blockSize > 2 ** 30) throw new StrataError('BAD_REQUEST', 'blockSize out of range');
    return { blockSize, writeType };
  };

  const openFileWrite = (ino: number, containerId: number, blockSize: number, writeType: WriteType): Promise<FileWrite> =>
    FileWrite.open(store, containerId, blockSize, writeType, async () => {
      const loc = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino, purpose: 'write', container: containerId });
      const writer = await createWriter(loc);
      const stillAt = async () => {
        const now = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino }).catch(() => undefined);
        return now !== undefined && now.mountUri === loc.mountUri && now.path === loc.path;
      };
      return { writer, stillAt, at: { mountUri: loc.mountUri, path: loc.path } };
    });

  /** A write's body stream; without a content-type fastify makes none (an empty file's write may send nothing). */
  const bodyOf = (req: { body: unknown }): Readable => (req.body as Readable | undefined) ?? Readable.from([]);

  /** Reads a raw (not extents) body into `w`, bounded by its declared size. */
  const rawBody = async (w: FileWrite, req: { body: unknown; raw: { destroy(): void } }, end: number): Promise<void> => {
    // Network chunks are ~64 KiB; disks like fewer, larger writes.
    const COALESCE = 4 * 1024 * 1024;
    let pending: Buffer[] = [];
    let pendingLen = 0;
    // A client that stops sending mid-body loses its connection after stallMs; the caller cleans up.
    for await (const raw of stallGuarded(bodyOf(req), stallMs, () => req.raw.destroy())) {
      const chunk = raw as Buffer;
      if (w.total + pendingLen + chunk.length > end) throw new StrataError('BAD_REQUEST', `body is longer than the declared ${end - w.total} bytes`);
      pending.push(chunk);
      pendingLen += chunk.length;
      if (pendingLen >= COALESCE) {
        const piece = Buffer.concat(pending, pendingLen);
        pending = [];
        pendingLen = 0;
        await w.piece(piece);
      }
    }
    if (pendingLen > 0) await w.piece(Buffer.concat(pending, pendingLen));
  };

  /** A failed write before its body ended: close the connection rather than read the rest as the next request. */
  const dropRestOfBody = (req: { body: unknown }, reply: { header(k: string, v: string): unknown }) => {
    const body = req.body as Readable | undefined;
    if (body && typeof body.resume === 'function' && !body.readableEnded) {
      void reply.header('connection', 'close');
      body.resume();
    }
  };

  const writeFile = async (req: { body: unknown; raw: { destroy(): void } }, reply: { header(k: string, v: string): unknown }, ino: number, q: Record<string, unknown>, containerId: number): Promise<WriteFileResponse> => {
    const size = intParam(q.size, 'size');
    const stream = typeof q.stream === 'string' ? takeStream(q.stream, ino, containerId) : undefined;
    let w: FileWrite | undefined = stream?.write;
    let via = typeof q.local === 'string' || stream?.local ? 'local' : 'http';
    const start = w?.total ?? 0;
    /** Closing and removing a handed-over file, once read: while the write settles (its fsyncs), not before. */
    let handedOver: Promise<void> | undefined;
    try {
      if (!w) {
        const { blockSize, writeType } = writeParams(q);
        w = await openFileWrite(ino, containerId, blockSize, writeType);
      }
      w.declareSize(size);
      if (stream?.local) {
        // The rest of a streamed file handed over on this host: the same linked file, read on.
        // Longer is fine (the client's other handles may be appending): the declared size is what this write stores.
        const has = (await stream.local.fh.stat()).size;
        if (has < size) throw new StrataError('BAD_REQUEST', `local file has ${has} bytes, fewer than the ${size} declared`);
        await w.fromFile(stream.local.fh, w.total, size);
      } else if (typeof q.local === 'string') {
        // A same-host client linked the file into a tier's incoming dir: read it from disk, not from the socket.
        const { fh, path } = await store.openIncoming(String(q.tier ?? ''), q.local);
        try {
          const has = (await fh.stat()).size;
          if (has < size) throw new StrataError('BAD_REQUEST', `local file has ${has} bytes, fewer than the ${size} declared`);
          await w.fromFile(fh, w.total, size);
        } finally {
          handedOver = fh.close().finally(() => fsp.rm(path, { force: true }));
          // Awaited below, or in the catch; an error before that must not go unhandled meanwhile.
          handedOver.catch(() => undefined);
        }
      } else if (q.format === 'extents') {
        // Sparse body: frames of [u64 offset][u32 length][bytes]; gaps between them are zeros.
        for await (const ext of readExtents(stallGuarded(bodyOf(req), stallMs, () => req.raw.destroy()))) {
          if (ext.offset < w.total) throw new StrataError('BAD_REQUEST', 'extents must be in order and must not overlap');
          if (ext.offset > w.total) await w.hole(ext.offset - w.total);
          await w.piece(ext.data);
        }
        if (w.total < size) await w.hole(size - w.total);
      } else {
        await rawBody(w, req, size);
      }
      const res = await w.finish();
      // The bytes are stored: a handed-over file that could not be closed or removed is only left for the next start to clear.
      await handedOver?.catch((e: unknown) => log.warn({ ino, err: toStrataError(e).message }, 'removing a handed-over file failed'));
      handedOver = undefined;
      writtenBytes.inc({ write_type: w.writeType, via }, size - start);
      return res;
    } catch (err) {
      await handedOver?.catch(() => undefined);
      dropRestOfBody(req, reply);
      // The write's own error is the answer, not a failure of the cleanup after it.
      await w?.abort().catch((e: unknown) => log.warn({ ino, err: toStrataError(e).message }, 'aborting a failed write failed'));
      throw toStrataError(err, `write inode ${ino}`);
    } finally {
      if (stream) await closeStream(stream);
    }
  };

  /**
   * Write streams: a client that is still writing a big file sends its whole blocks
   * as they are done (`PUT /streams/:id`), so the cache (and, for CACHE_THROUGH, the
   * under-store) take them while the application writes on; the final
   * `PUT /files/:ino?stream=ID` brings the rest. A stream idle for `streamIdleMs` is
   * dropped with its blocks, as is one the client deletes.
   */
  interface WriteStream {
    id: string;
    ino: number;
    write: FileWrite;
    local?: { fh: FileHandle; path: string };
    /** An append or the finish is running: one request at a time. */
    busy: boolean;
    /** Deleted while an append ran. */
    cancelled?: boolean;
    idle?: NodeJS.Timeout;
  }
  const streams = new Map<string, WriteStream>();
  const streamIdleMs = opts.streamIdleMs ?? 10 * 60_000;

  const touchStream = (s: WriteStream) => {
    clearTimeout(s.idle);
    s.idle = setTimeout(() => {
      log.warn({ stream: s.id, ino: s.ino, bytes: s.write.total }, 'a write stream was idle too long; dropping it and its blocks');
      void closeStream(s, true).catch((err) => log.warn({ stream: s.id, err: toStrataError(err).message }, 'dropping an idle write stream failed'));
    }, streamIdleMs);
    s.idle.unref();
  };

  const closeStream = async (s: WriteStream, abort = false): Promise<void> => {
    if (streams.get(s.id) === s) streams.delete(s.id);
    clearTimeout(s.idle);
    const n = (openWrites.get(s.write.containerId) ?? 1) - 1;
    if (n > 0) openWrites.set(s.write.containerId, n);
    else openWrites.delete(s.write.containerId);
    if (abort) await s.write.abort().catch((err) => log.warn({ stream: s.id, err: toStrataError(err).message }, 'dropping a write stream failed'));
    if (s.local) {
      await s.local.fh.close().catch(() => undefined);
      await fsp.rm(s.local.path, { force: true }).catch(() => undefined);
    }
  };

  /** The stream `id` for one request; it must belong to this inode and container and not be busy. */
  const useStream = (id: string, ino: number, containerId?: number): WriteStream => {
    const s = streams.get(id);
    if (!s || s.ino !== ino || (containerId !== undefined && s.write.containerId !== containerId)) throw new StrataError('NOT_FOUND', `no write stream ${id.slice(0, 40)} for inode ${ino}`);
    if (s.busy) throw new StrataError('BUSY', `write stream ${id} is busy with another request`);
    return s;
  };

  const takeStream = (id: string, ino: number, containerId: number): WriteStream => {
    const s = useStream(id, ino, containerId);
    s.busy = true;
    clearTimeout(s.idle);
    streams.delete(id);
    return s;
  };

  app.post('/streams', async (req): Promise<{ stream: string }> => {
    const q = req.query as Record<string, unknown>;
    const ino = intParam(q.ino, 'ino');
    const containerId = containerParam(q.container);
    const { blockSize, writeType } = writeParams(q);
    if (openWrites.has(containerId)) throw new StrataError('BUSY', `container ${containerId} is being written already`);
    const local = typeof q.local === 'string' ? await store.openIncoming(String(q.tier ?? ''), q.local) : undefined;
    let write: FileWrite;
    try {
      write = await openFileWrite(ino, containerId, blockSize, writeType);
    } catch (err) {
      if (local) {
        await local.fh.close();
        await fsp.rm(local.path, { force: true });
      }
      throw toStrataError(err, `write stream for inode ${ino}`);
    }
    const s: WriteStream = { id: randomUUID(), ino, write, busy: false, ...(local ? { local } : {}) };
    streams.set(s.id, s);
    openWrites.set(containerId, (openWrites.get(containerId) ?? 0) + 1);
    touchStream(s);
    return { stream: s.id };
  });

  /** Appends whole blocks `[offset, offset + length)`: the body's bytes, or the handed-over file's. */
  app.put('/streams/:id', async (req, reply): Promise<{ total: number }> => {
    const id = (req.params as Record<string, string>).id;
    const q = req.query as Record<string, unknown>;
    const s = useStream(id, intParam(q.ino, 'ino'));
    const offset = intParam(q.offset, 'offset');
    const length = intParam(q.length, 'length');
    s.busy = true;
    clearTimeout(s.idle);
    try {
      const w = s.write;
      if (offset !== w.total) throw new StrataError('BAD_REQUEST', `append at ${offset}, the stream is at ${w.total}`);
      if (length <= 0 || length % w.blockSize !== 0) throw new StrataError('BAD_REQUEST', `a stream takes whole blocks of ${w.blockSize} bytes`);
      if (s.local) await w.fromFile(s.local.fh, offset, offset + length);
      else {
        await rawBody(w, req, offset + length);
        if (w.total !== offset + length) throw new StrataError('BAD_REQUEST', `body has ${w.total - offset} bytes, declared ${length}`);
      }
      w.settleWholeBlocks();
      writtenBytes.inc({ write_type: w.writeType, via: s.local ? 'local' : 'http' }, length);
      streamedBytes.inc(length);
      if (s.cancelled) throw new StrataError('NOT_FOUND', `write stream ${id} was deleted`);
      s.busy = false;
      touchStream(s);
      return { total: w.total };
    } catch (err) {
      // A stream that failed half-way cannot go on: the client falls back to writing the whole file.
      dropRestOfBody(req, reply);
      await closeStream(s, true);
      throw toStrataError(err, `write stream ${id}`);
    }
  });

  app.delete('/streams/:id', async (req): Promise<{ ok: true }> => {
    const id = (req.params as Record<string, string>).id;
    const s = streams.get(id);
    if (s && !s.busy) await closeStream(s, true);
    else if (s) s.cancelled = true; // the request running on it drops it when done
    return { ok: true };
  });

  /**
   * Persists a file whose blocks are all cached here (ASYNC_THROUGH, MUST_CACHE):
   * streams them in order into the under-store. They stay pinned until the master
   * says otherwise (heartbeat `unpin`).
   */
  app.post('/persist/:ino', async (req, reply): Promise<PersistResponse> => {
    const ino = intParam((req.params as Record<string, string>).ino, 'ino');
    const q = req.query as Record<string, unknown>;
    const containerId = containerParam(q.container);
    const count = intParam(q.blocks, 'blocks');
    if (count > BLOCKS_PER_CONTAINER) throw new StrataError('BAD_REQUEST', `a file has at most ${BLOCKS_PER_CONTAINER} blocks`);
    // The master answers only for the file's current version, with this many blocks: nothing else reaches the store.
    const loc = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino, purpose: 'persist', container: containerId, blocks: count });
    const ids = Array.from({ length: count }, (_, i) => blockIdOf(containerId, i));
    const missing = ids.filter((id) => !store.hasPage(id, 0));
    if (missing.length) throw new StrataError('NOT_FOUND', `blocks ${missing.slice(0, 4).join(', ')} are not cached on this worker`);
    // A master that asked and went away (it died, timed out or lost its leadership) settles nothing: an upload it left
    // running would land unannounced, maybe over a newer version persisted meanwhile. So it stops with the request.
    let askerGone = false;
    reply.raw.once('close', () => (askerGone = !reply.raw.writableFinished));
    const stillAsked = () => {
      if (askerGone) throw new StrataError('UNAVAILABLE', `the persist of inode ${ino} was given up by the master that asked for it; nothing was stored`);
    };
    const writer = await createWriter(loc);
    try {
      for (const id of ids) {
        for (let p = 0; ; p++) {
          stillAsked();
          const len = store.blockLength(id);
          if (len !== undefined && p * ps >= len) break;
          const got = await store.readPage(id, p, 0, ps);
          if (!got) throw new StrataError('IO_ERROR', `page ${p} of block ${id} is missing or corrupt on this worker; the file cannot be persisted from here`);
          await writer.write(got.data);
        }
      }
      // Renamed, unlinked or rewritten during the upload: completing would replace what is at that path now.
      // (The master refuses a file gone or rewritten: NOT_FOUND, BUSY.)
      const now = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino, purpose: 'persist', container: containerId, blocks: count });
      if (now.mountUri !== loc.mountUri || now.path !== loc.path) throw new StrataError('NOT_FOUND', `inode ${ino} moved during its upload; nothing was stored`);
      stillAsked();
      // The blocks stay pinned: the master may still find the object a stray (a rename overtook this
      // upload) and queue the file again. It lets them go with a heartbeat once it recorded the file persisted.
      const st = await writer.complete();
      for (const id of ids) store.noteFinished(id);
      log.info({ ino, blocks: count }, 'persisted a file to the under-store');
      return { ufsFingerprint: st.fingerprint, mountUri: loc.mountUri, path: loc.path };
    } catch (err) {
      await writer.abort();
      throw toStrataError(err, `persist inode ${ino}`);
    }
  });

  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 29999 });
  const port = (app.server.address() as AddressInfo).port;
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;

  const uuid = await workerUuid(opts.home);
  /** The leader term the worker registered under (undefined: the master has no leader election). */
  let registeredTerm: string | undefined;
  const termOf = (meta: ResponseMeta): string | undefined => {
    const v = meta.headers?.[LEADER_TERM_HEADER];
    return typeof v === 'string' ? v : undefined;
  };
  /** Makes the drivers of the stores the master named, so a first read does not wait for them to load. */
  const prepareDrivers = (refs: UnderStoreRef[]): void => {
    if (closing) return;
    for (const ref of refs.slice(0, 64)) {
      try {
        ufsFor(ref);
      } catch (err) {
        // A request naming this store fails the same way, with its own error; nothing more to do here.
        log.debug({ err, mountUri: ref.mountUri }, 'could not make an under-store driver ahead of use');
      }
    }
  };
  // A full report replaces what the master knew: sending it twice is harmless.
  const register = async (): Promise<number> => {
    const meta: ResponseMeta = {};
    const sent = staleLeftovers.slice(0, LEFTOVERS_MAX);
    const r = await master.post<RegisterWorkerResponse>(`${MASTER_API}/workers/register`, {
      uuid,
      address: url,
      host: hostIdentity(opts.hostId),
      tiers: tiersNow(),
      pageSize: store.pageSize,
      capacityBytes: store.capacityBytes,
      usedBytes: store.usedBytes,
      blocks: store.fullReport(),
      ...(sent.length ? { leftovers: sent.map(({ mountUri, handle }) => ({ mountUri, handle })) } : {}),
    }, undefined, meta, { idempotent: true });
    pinVersion = -1;
    registeredTerm = termOf(meta);
    // What the master is done with goes; the rest is sent again with the next registration.
    const done = new Set((r.leftoversDone ?? []).map((i) => sent[i]).filter((x) => x !== undefined));
    if (done.size) {
      await journal.forget([...done]);
      staleLeftovers = staleLeftovers.filter((s) => !done.has(s));
    }
    if (staleLeftovers.length) log.warn({ writes: staleLeftovers.length }, 'the master could not discard everything the last run left in the stores yet; it is sent again with the next registration');
    // After this turn: the registration's caller (the start, a heartbeat) goes on first.
    const stores = r.underStores ?? [];
    if (stores.length) setImmediate(() => prepareDrivers(stores));
    return r.workerId;
  };
  let pinVersion = -1;
  const heartbeatMs = opts.heartbeatIntervalMs ?? 2000;
  /**
   * A tier full of pinned pages asks the master at once which pins may go, rather than failing
   * a write NO_SPACE until the next heartbeat lets go of what a write-through or persist just
   * stored. Asks in flight are shared; an answer later than ASK_UNPINS_WAIT_MS still counts.
   */
  /** Lets go of the pins the master named, of those it was asked about (an answer is no licence for others); how many. */
  const unpinAsked = async (asked: number[], unpin: number[]): Promise<number> => {
    const sent = new Set(asked);
    let n = 0;
    for (const id of unpin) {
      if (!sent.has(id)) continue;
      await store.markPersisted(id);
      n++;
    }
    return n;
  };
  let asking: Promise<number> | undefined;
  askUnpins = () => {
    asking ??= (async () => {
      const ids = store.pinsToAsk(PINNED_REPORT_MAX);
      if (ids.length === 0) return 0;
      const r = await master.post<{ unpin: number[] }>(`${MASTER_API}/workers/unpinnable`, { pinned: ids });
      return unpinAsked(ids, r.unpin);
    })()
      .catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, 'could not ask the master which pinned blocks may go');
        return 0;
      })
      .finally(() => (asking = undefined));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<number>((resolve) => (timer = setTimeout(() => resolve(0), ASK_UNPINS_WAIT_MS)));
    return Promise.race([asking, late]).finally(() => clearTimeout(timer));
  };
  let workerId = await register();
  log.info({ url, workerId, master: opts.masterUrl }, 'worker started');

  /** A report was asked for while a heartbeat was in flight: send another right after it. */
  let beatAgain = false;
  /** Requests waiting until the master knows what they cached or dropped (see waitReported). */
  let reportWaiters: (() => void)[] = [];
  const beat = async () => {
    if (beating) {
      beatAgain = true;
      return;
    }
    beating = true;
    const changes = store.takeChanges();
    const pinned = store.pinsToAsk(PINNED_REPORT_MAX);
    const waiting = reportWaiters;
    reportWaiters = [];
    try {
      const meta: ResponseMeta = {};
      const r = await master.post<HeartbeatResponse>(`${MASTER_API}/workers/heartbeat`, {
        workerId,
        capacityBytes: store.capacityBytes,
        usedBytes: store.usedBytes,
        tiers: tiersNow(),
        addedBlocks: changes.added,
        removedBlocks: changes.removed,
        openWrites: [...openWrites.keys()],
        pinVersion,
        pinned,
      }, undefined, meta);
      // A new leader (a new term) learns this worker's blocks from a full report; a master that
      // restarted without knowing us says `reregister`. Either way, after a random pause of up to one
      // heartbeat period, so a hundred workers do not all send their full reports at the same moment.
      const term = termOf(meta);
      const newLeader = term !== undefined && term !== registeredTerm;
      if (r.reregister || newLeader) {
        // The full report replaces the rest of what was taken; deletes done must still reach the master.
        store.restoreChanges({ added: [], removed: [], dropped: changes.dropped });
        // A stopping worker has left (or is about to): registering again would make it live once more.
        if (closing) return;
        await new Promise((res) => setTimeout(res, Math.random() * heartbeatMs));
        if (closing) return;
        workerId = await register();
        log.info({ workerId, term: registeredTerm, master: master.baseUrl }, newLeader ? 'registered with the new leader' : 'registered again with the master');
        return;
      }
      if (r.pins) {
        store.setUserPins(r.pins.blocks);
        pinVersion = r.pins.version;
      }
      for (const id of r.deleteBlocks) await store.removeBlock(id);
      await unpinAsked(pinned, r.unpin ?? []);
    } catch (err) {
      store.restoreChanges(changes);
      log.warn({ err: (err as Error).message }, 'heartbeat failed');
    } finally {
      beating = false;
      // Answered either way: the bytes are cached, and a failed report is sent again with the next beat.
      for (const w of waiting) w();
      if (beatAgain && !closing) {
        beatAgain = false;
        void beat();
      }
    }
  };
  const timer = setInterval(() => void beat(), heartbeatMs);
  timer.unref();
  /**
   * Resolves once a heartbeat sent after this call carried what is cached now (or
   * failed), at most REPORT_WAIT_MS: a `load` answers once the master knows of its
   * copies (a `stat` right after it shows them), a `free` once the workers took their
   * deletes. Other changes go with the regular heartbeat: reporting each at once made
   * the change feed busier, and a mount whose feed lags then lost its feed lease.
   */
  waitReported = (): Promise<void> =>
    new Promise<void>((resolve) => {
      if (closing) return resolve();
      const limit = setTimeout(resolve, REPORT_WAIT_MS);
      limit.unref();
      reportWaiters.push(() => {
        clearTimeout(limit);
        resolve();
      });
      if (beating) beatAgain = true;
      else void beat();
    });

  // Pages are verified on first read; the scrub also catches those nobody reads.
  const scrubRate = opts.scrubBytesPerSec ?? 64 * 1024 * 1024;
  // Ends the scrub's hour-long pause at close (polling a flag there cost each stop up to a second).
  const stopScrub = new AbortController();
  const scrubLoop = async () => {
    while (!closing && scrubRate > 0) {
      const bad = await store.scrub(scrubRate, () => closing).catch((err) => {
        log.warn({ err: (err as Error).message }, 'scrub failed');
        return 0;
      });
      if (bad) log.warn({ pages: bad }, 'scrub dropped corrupt pages');
      await sleep(3_600_000, undefined, { signal: stopScrub.signal, ref: false }).catch(() => undefined);
    }
  };
  const scrubbing = scrubLoop();
  // Last: a start that failed before this leaves no timer behind.
  tierChecker.start();

  return {
    url,
    port,
    get workerId() {
      return workerId;
    },
    async close() {
      closing = true;
      stopScrub.abort();
      tierChecker.stop();
      clearInterval(timer);
      // Lost at once in the master, so clients stop sending this worker reads and writes now rather than
      // after its heartbeats stop counting (30 s). Best effort and bounded: a master that is down learns it that way.
      // After a heartbeat in flight, which would otherwise land after the leave and keep the worker live.
      for (let waited = 0; beating && waited < 2000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      await master.post(`${MASTER_API}/workers/leave`, { workerId }, AbortSignal.timeout(2000)).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not tell the master this worker is stopping'));
      for (const w of reportWaiters.splice(0)) w();
      await scrubbing;
      await app.close();
      stopping = true;
      // As DELETE /streams: a stream busy with an append is dropped by that request when it ends.
      for (const s of [...streams.values()]) {
        if (s.busy) s.cancelled = true;
        else await closeStream(s, true);
      }
      // Bounded: an abort waits for parts in flight, and a slow store must not hold the stop for minutes.
      const aborts = Promise.allSettled([...openWriters].map((w) => w.abort()));
      const ABORT_WAIT_MS = 10_000;
      let waitTimer: NodeJS.Timeout | undefined;
      const done = await Promise.race([aborts.then(() => true), new Promise<false>((r) => (waitTimer = setTimeout(() => r(false), ABORT_WAIT_MS)))]);
      clearTimeout(waitTimer);
      if (!done) log.warn({ writers: openWriters.size }, 'under-store uploads still open after 10 s; leaving them (the store keeps incomplete uploads until they are aborted)');
      await master.close();
      for (const u of ufsByUri.values()) await u.close();
    },
  };
}

/** The worker's persistent identity: created once, kept in `<home>/worker/id`. */
async function workerUuid(home: string): Promise<string> {
  const file = nodePath.join(home, 'worker', 'id');
  try {
    const id = (await fsp.readFile(file, 'utf8')).trim();
    if (/^[0-9a-f-]{8,64}$/.test(id)) return id;
  } catch {
    // first start
  }
  const id = randomUUID();
  await fsp.mkdir(nodePath.dirname(file), { recursive: true });
  await fsp.writeFile(file + '.tmp', id + '\n');
  await fsp.rename(file + '.tmp', file);
  return id;
}

/** Parses a sparse write body: frames of [u64 offset][u32 length][length bytes]. */
async function* readExtents(body: AsyncIterable<Buffer>): AsyncGenerator<{ offset: number; data: Buffer }> {
  const MAX_EXTENT = 64 * 1024 * 1024;
  const it = body[Symbol.asyncIterator]();
  let chunks: Buffer[] = [];
  let have = 0;
  let ended = false;
  /** Makes at least `n` bytes available (false at a clean end of body). */
  const fill = async (n: number): Promise<boolean> => {
    while (have < n && !ended) {
      const r = await it.next();
      if (r.done) ended = true;
      else {
        chunks.push(r.value as Buffer);
        have += (r.value as Buffer).length;
      }
    }
    return have >= n;
  };
  const take = (n: number): Buffer => {
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, have);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length ? [rest] : [];
    have = rest.length;
    return out;
  };
  for (;;) {
    if (!(await fill(12))) {
      if (have) throw new StrataError('BAD_REQUEST', 'truncated extent header');
      return;
    }
    const head = take(12);
    const offset = Number(head.readBigUInt64BE(0));
    const len = head.readUInt32BE(8);
    if (!Number.isSafeInteger(offset) || len === 0 || len > MAX_EXTENT) throw new StrataError('BAD_REQUEST', 'malformed extent header');
    if (!(await fill(len))) throw new StrataError('BAD_REQUEST', 'truncated extent');
    yield { offset, data: Buffer.from(take(len)) };
  }
}
