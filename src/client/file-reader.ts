/**
 * Reads a file's bytes from workers. The kernel asks in 128 KiB pieces; a
 * sequential reader is served from read-ahead windows fetched in larger ranges
 * (with the next ones already in flight), a random reader gets exactly what it
 * asked for, so a 4 KiB random read never pulls megabytes.
 */

import { StrataError } from '../common/errors';
import type { BlockInfo, FileBlocksResponse, WorkerInfo } from '../common/protocol';
import type { MasterClient } from './master-client';
import { workerUnreachable, type WorkerClient } from './worker-client';
import type { WorkerRouter } from './worker-router';
import type { ShortCircuitReader } from './short-circuit';

export interface DataPath {
  master: MasterClient;
  router: WorkerRouter;
  workers: WorkerClient;
  /** Reads block files of workers on this host directly, when set. */
  local?: ShortCircuitReader | undefined;
}

export interface FileReaderOptions {
  /** Read-ahead window in bytes. Default 4 MiB. */
  windowBytes?: number;
  /** Windows fetched ahead of a sequential reader. Default 2. */
  readAheadWindows?: number;
  /**
   * Reuse the buffers of windows the reader has passed. Then a buffer from
   * `readBuffer` is valid only until the next macrotask (the FUSE adapter replies
   * at once). Allocating a fresh multi-MiB window for every few MiB read made the
   * mount spend more time in garbage collection than anywhere else.
   */
  recycleWindows?: boolean;
}

/** Consecutive bytes after which a reader gets read-ahead windows. */
const SEQUENTIAL_AFTER = 512 * 1024;
/** Consecutive bytes after which the worker is asked to load whole blocks ahead. */
const WARM_BLOCK_AFTER = 8 * 1024 * 1024;
/**
 * Random reads touching this share of a block's MiB regions load the whole block
 * in the background: a reader scattered all over a block will want most of it, and
 * one store request per 1 MiB page at a time (QD1) is far slower than a parallel
 * load. A few scattered reads (a Parquet footer, some column chunks) stay single pages.
 */
const RANDOM_REGIONS_SHARE = 1 / 8;
const MIN_RANDOM_REGIONS = 4;

export class FileReader {
  readonly #data: DataPath;
  #info: FileBlocksResponse;
  readonly #window: number;
  readonly #ahead: number;
  readonly #windows = new Map<number, Promise<Buffer>>();
  readonly #recycle: boolean;
  /** Full-size window buffers free for reuse, and those waiting a macrotask until nobody can hold a view of them. */
  readonly #free: Buffer[] = [];
  #quarantine: Buffer[] = [];
  #lastEnd = -1;
  /** Consecutive bytes read up to `#lastEnd`. */
  #streak = 0;
  readonly #warmed = new Set<number>();
  /**
   * Blocks whose whole-block load is in flight. Their pages land on local disk
   * ahead of the reader, but the load's answer, which tells this client which
   * page files the worker wrote (so it need not hash them), comes only at the end.
   */
  readonly #warming = new Set<number>();
  /** Per block: the MiB regions random reads touched (until the block is warmed). */
  readonly #scattered = new Map<number, Set<number>>();
  #refreshed = false;

  constructor(data: DataPath, info: FileBlocksResponse, opts: FileReaderOptions = {}) {
    this.#data = data;
    this.#info = info;
    this.#window = opts.windowBytes ?? 4 * 1024 * 1024;
    this.#ahead = opts.readAheadWindows ?? 2;
    this.#recycle = opts.recycleWindows === true;
  }

  /** A window's buffer the reader is done with: reusable after the current macrotask. */
  #release(p: Promise<Buffer>): void {
    if (!this.#recycle) return;
    void p.then(
      (buf) => {
        if (buf.length !== this.#window || this.#free.length + this.#quarantine.length > this.#ahead + 2) return;
        if (this.#quarantine.length === 0) {
          setImmediate(() => {
            this.#free.push(...this.#quarantine);
            this.#quarantine = [];
          });
        }
        this.#quarantine.push(buf);
      },
      () => undefined,
    );
  }

  get size(): number {
    return this.#info.attrs.size;
  }

  /** Copies up to `len` bytes at `pos` into `into`; returns how many (0 at EOF). */
  async read(pos: number, len: number, into: Buffer, at = 0): Promise<number> {
    const buf = await this.readBuffer(pos, len);
    buf.copy(into, at);
    return buf.length;
  }

  /**
   * Up to `len` bytes at `pos` (empty at EOF). The buffer may be a view of a
   * read-ahead window: callers must not write to it. Saves a copy and an
   * allocation per kernel request, which is most of the garbage of a fast reader.
   */
  async readBuffer(pos: number, len: number): Promise<Buffer> {
    const end = Math.min(pos + len, this.size);
    if (pos >= end) return Buffer.alloc(0);
    // A reader is sequential once it has read a run of consecutive bytes: a single
    // adjacent pair (the kernel's readahead of a random read) must not start
    // megabytes of read-ahead.
    this.#streak = pos === this.#lastEnd ? this.#streak + (end - pos) : end - pos;
    this.#lastEnd = end;
    const sequential = this.#streak >= SEQUENTIAL_AFTER || this.#windows.has(this.#windowStart(pos));
    if (!sequential && end - pos < this.#window) {
      this.#noteRandom(pos);
      return this.#fetch(pos, end);
    }
    let out: Buffer | undefined;
    const first = this.#windowStart(pos);
    if (first === this.#windowStart(end - 1)) {
      const win = await this.#getWindow(first);
      out = win.subarray(pos - first, Math.min(end, first + win.length) - first);
    } else {
      out = Buffer.allocUnsafe(end - pos);
      let n = 0;
      for (let w = first; w < end; w += this.#window) {
        const win = await this.#getWindow(w);
        const from = Math.max(pos, w) - w;
        const to = Math.min(end, w + win.length) - w;
        win.copy(out, n, from, to);
        n += to - from;
      }
      out = out.subarray(0, n);
    }
    // Drop windows behind the reader, start the ones ahead of it.
    for (const [k, p] of this.#windows) {
      if (k + this.#window > pos) continue;
      this.#windows.delete(k);
      this.#release(p);
    }
    const next = this.#windowStart(end - 1) + this.#window;
    for (let i = 0; i < this.#ahead; i++) {
      const w = next + i * this.#window;
      if (w < this.size && !this.#windows.has(w)) this.#getWindow(w).catch(() => undefined);
    }
    if (this.#streak >= WARM_BLOCK_AFTER) this.#warmBlocks(end - 1);
    return out;
  }

  /**
   * A sequential reader asks the worker to load the whole block it is in, and the
   * next one once past the middle, so cold pages are fetched from the store in
   * parallel ahead of the reader; the reader's own window requests join those
   * fetches. Random readers never trigger this: they fetch single pages.
   */
  #warmBlocks(pos: number): void {
    const bs = this.#info.attrs.blockSize;
    const idx = Math.floor(pos / bs);
    this.#warm(idx);
    if (pos - idx * bs >= bs / 2) this.#warm(idx + 1);
  }

  #noteRandom(pos: number): void {
    const bs = this.#info.attrs.blockSize;
    const idx = Math.floor(pos / bs);
    if (this.#warmed.has(idx)) return;
    const region = Math.floor((pos - idx * bs) / (1024 * 1024));
    let seen = this.#scattered.get(idx);
    if (!seen) this.#scattered.set(idx, (seen = new Set()));
    seen.add(region);
    const regions = Math.ceil(Math.min(bs, this.size - idx * bs) / (1024 * 1024));
    if (seen.size >= Math.max(MIN_RANDOM_REGIONS, Math.ceil(regions * RANDOM_REGIONS_SHARE)) && regions > seen.size) {
      this.#scattered.delete(idx);
      this.#warm(idx);
    }
  }

  #warm(idx: number): void {
    // NO_CACHE reads must leave nothing cached: no whole-block loads for them.
    if (this.#warmed.has(idx) || this.#data.workers.readType === 'NO_CACHE') return;
    const block = this.#info.blocks[idx];
    if (!block) return;
    this.#warmed.add(idx);
    // Wholly cached somewhere already: nothing to fetch.
    if ((block.cached ?? []).some((c) => c.bytes >= block.length)) return;
    this.#warming.add(idx);
    void (async () => {
      const worker = await this.#data.router.forBlock(block);
      const loaded = await this.#data.workers.loadBlock(worker, block.id);
      // Pages the worker just wrote are not hashed again when read here.
      if (loaded.pages && this.#data.local?.isLocal(worker)) this.#data.local.trust(worker, block.id, loaded.pages);
    })()
      .catch(() => undefined)
      .finally(() => this.#warming.delete(idx));
  }

  /**
   * Has the worker cache `[off, off+n)` of a block (joining fills in flight) and
   * trusts the page files it names, so a same-host read of them needs no hashing.
   */
  async #loadLocal(local: ShortCircuitReader, worker: WorkerInfo, blockId: number, off: number, n: number): Promise<void> {
    const loaded = await this.#data.workers.loadBlock(worker, blockId, { range: { offset: off, length: n } });
    if (loaded.pages) local.trust(worker, blockId, loaded.pages);
  }

  #windowStart(pos: number): number {
    return pos - (pos % this.#window);
  }

  #getWindow(start: number): Promise<Buffer> {
    let p = this.#windows.get(start);
    if (!p) {
      p = this.#fetch(start, Math.min(start + this.#window, this.size));
      p.catch(() => this.#windows.delete(start));
      this.#windows.set(start, p);
    }
    return p;
  }

  /** Fetches `[start, end)` from the blocks it spans, in parallel. */
  async #fetch(start: number, end: number): Promise<Buffer> {
    try {
      return await this.#fetchOnce(start, end);
    } catch (err) {
      // A worker died or dropped the block: ask the master again, once per reader.
      if (this.#refreshed || !(err instanceof StrataError) || (err.code !== 'UNAVAILABLE' && err.code !== 'TIMEOUT' && err.code !== 'NOT_FOUND')) throw err;
      this.#refreshed = true;
      this.#data.router.invalidate();
      this.#info = await this.#data.master.fileBlocksByIno(this.#info.attrs.ino, true);
      return this.#fetchOnce(start, Math.min(end, this.size));
    }
  }

  async #fetchOnce(start: number, end: number): Promise<Buffer> {
    const buf = end - start === this.#window && this.#free.length > 0 ? this.#free.pop()! : Buffer.allocUnsafe(end - start);
    const bs = this.#info.attrs.blockSize;
    const parts: Promise<void>[] = [];
    for (let pos = start; pos < end; ) {
      const idx = Math.floor(pos / bs);
      const block: BlockInfo | undefined = this.#info.blocks[idx];
      if (!block) throw new StrataError('IO_ERROR', `file ${this.#info.attrs.ino} has no block ${idx}`);
      const off = pos - block.offset;
      const n = Math.min(end, block.offset + block.length) - pos;
      const at = pos - start;
      parts.push(
        (async () => {
          for (let attempt = 0; ; attempt++) {
            const worker = await this.#data.router.forBlock(block);
            const local = this.#data.local;
            // CACHE_PROMOTE must go through the worker, which moves what it serves to the top tier.
            if (local && this.#data.workers.readType !== 'CACHE_PROMOTE' && local.isLocal(worker)) {
              // A block being loaded whole: its pages appear on disk before this client learns
              // which files the worker wrote. Unless this client knows them all already, asking
              // the worker for the range first (pages there cost it nothing) is cheaper than
              // hashing each page here.
              const askFirst = this.#warming.has(idx) && this.#data.workers.readType === 'CACHE' && !local.knowsPages(worker, block.id, off, n);
              if (!askFirst) {
                const got = await local.readInto(worker, block.id, off, n, buf, at);
                if (got === n) return;
              }
              // Not all on local disk: have the worker cache those pages, then read the files
              // (cheaper than moving the bytes over HTTP). NO_CACHE must not cache: HTTP then.
              if (this.#data.workers.readType === 'CACHE') {
                try {
                  await this.#loadLocal(local, worker, block.id, off, n);
                  const again = await local.readInto(worker, block.id, off, n, buf, at);
                  if (again === n) return;
                } catch (err) {
                  if (!workerUnreachable(err)) throw err;
                }
              }
            }
            try {
              const got = await this.#data.workers.readInto(worker, block.id, off, n, buf, at);
              if (got !== n) throw new StrataError('IO_ERROR', `short read of block ${block.id}: ${got} of ${n} bytes`);
              return;
            } catch (err) {
              // A dead or unreachable worker: another one (or the under-store through it) has the bytes.
              // An error the worker answered with (its store failing after its own retries) is final:
              // asking again through another worker would only multiply the store's load.
              if (attempt >= 2 || !workerUnreachable(err)) throw err;
              this.#data.router.markFailed(worker);
            }
          }
        })(),
      );
      pos += n;
    }
    await Promise.all(parts);
    return buf;
  }
}
