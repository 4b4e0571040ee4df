/**
 * Reads a file's bytes from workers. The kernel asks in 128 KiB pieces; a
 * sequential reader is served from read-ahead windows fetched in larger ranges
 * (with the next ones already in flight), a random reader gets exactly what it
 * asked for, so a 4 KiB random read never pulls megabytes.
 */

import { read, readSync } from 'node:fs';
import { StrataError } from '../common/errors';
import type { ReadParts } from '../common/file-range';
import type { BlockInfo, FileBlocksResponse, WorkerInfo } from '../common/protocol';
import type { MasterClient } from './master-client';
import { workerUnreachable, type WorkerClient } from './worker-client';
import type { WorkerRouter } from './worker-router';
import type { PageRange, ShortCircuitReader } from './short-circuit';

/**
 * Whoever keeps whole cached pages that random reads went through (a FUSE binding
 * answering later reads from them).
 */
export interface KeepPage {
  /**
   * A page, held open, at `fileOffset` of the file: answers whether it is kept (then
   * it is let go of later, through ShortCircuitReader.release) or not (let go at once).
   */
  offer(fileOffset: number, range: PageRange): boolean;
  /** The reader now reads other blocks (it asked the master again): kept pages may be stale. */
  stale(): void;
}

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
  /**
   * Serve same-host cached bytes as ranges of the worker's page files (`readParts`)
   * instead of reading them here: the FUSE reply splices them into the kernel.
   */
  fileRanges?: boolean;
}


type Part = Buffer | PageRange;

/** A read-ahead window's bytes, in order; `buf` is its own buffer when some part needed bytes. */
interface Window {
  parts: Part[];
  buf: Buffer | undefined;
}

/**
 * A window in the read-ahead map. Requests pin it while they take their parts;
 * one dropped behind the reader lets go of its page files and buffer once unpinned.
 */
interface WindowSlot {
  p: Promise<Window>;
  pins: number;
  dropped: boolean;
}

const readAt = (fd: number, into: Buffer, at: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, into, at, len, pos, (err, n) => (err ? reject(err) : resolve(n))));

const isSpan = (x: PageRange[] | [number, number]): x is [number, number] => typeof x[0] === 'number';

const rangesOf = (parts: readonly Part[]): PageRange[] => parts.filter((x): x is PageRange => !Buffer.isBuffer(x));

const partLength = (p: Part): number => (Buffer.isBuffer(p) ? p.length : p.len);

/** The parts covering `[from, to)` of `parts` (positions relative to their start). */
function sliceParts(parts: readonly Part[], from: number, to: number, out: Part[]): void {
  let at = 0;
  for (const p of parts) {
    const len = partLength(p);
    const a = Math.max(from, at);
    const b = Math.min(to, at + len);
    if (a < b) {
      if (Buffer.isBuffer(p)) out.push(a === at && b === at + len ? p : p.subarray(a - at, b - at));
      else out.push(a === at && b === at + len ? p : { ...p, pos: p.pos + (a - at), len: b - a });
    }
    at += len;
    if (at >= to) break;
  }
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
  readonly #windows = new Map<number, WindowSlot>();
  readonly #recycle: boolean;
  readonly #fileRanges: boolean;
  /** The last keeper of pages a read named (told when the block list changes). */
  #keeper: KeepPage | undefined;
  #closed = false;
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
    this.#fileRanges = opts.fileRanges === true;
  }

  /** Lets go of a window behind the reader (now, or when its last request unpins it). */
  #drop(slot: WindowSlot): void {
    slot.dropped = true;
    if (slot.pins === 0) this.#release(slot.p);
  }

  #unpin(slot: WindowSlot): void {
    slot.pins--;
    if (slot.dropped && slot.pins === 0) this.#release(slot.p);
  }

  /** A window the reader is done with: its page files let go, its buffer reusable after the current macrotask. */
  #release(p: Promise<Window>): void {
    void p.then(
      (win) => {
        this.#letGo(win.parts);
        const buf = win.buf;
        if (!this.#recycle || !buf) return;
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
    const parts = await this.#read(pos, len);
    if (parts.length === 1 && Buffer.isBuffer(parts[0])) return parts[0];
    const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + partLength(p), 0));
    let n = 0;
    try {
      for (const p of parts) {
        if (Buffer.isBuffer(p)) n += p.copy(out, n);
        else {
          const got = readSync(p.fd, out, n, p.len, p.pos);
          if (got !== p.len) throw new StrataError('IO_ERROR', `short read of a cached page: ${got} of ${p.len} bytes`);
          n += got;
        }
      }
    } finally {
      this.#letGo(parts);
    }
    return out.subarray(0, n);
  }

  /**
   * Up to `len` bytes at `pos`, with same-host cached bytes as page-file ranges
   * when the reader was made with `fileRanges`. Its buffers are valid until the
   * next macrotask (as readBuffer's); call `done()` once the parts were used.
   */
  async readParts(pos: number, len: number, keep?: KeepPage): Promise<ReadParts> {
    if (keep) this.#keeper = keep;
    const parts = await this.#read(pos, len, keep);
    return { parts, done: () => this.#letGo(parts) };
  }

  /** Lets go of the page ranges among `parts`. */
  #letGo(parts: readonly Part[]): void {
    const ranges = rangesOf(parts);
    if (ranges.length > 0) this.#data.local?.release(ranges);
  }

  /** The parts of `[pos, pos+len)`; the page ranges among them are held for the caller. */
  async #read(pos: number, len: number, keep?: KeepPage): Promise<Part[]> {
    const end = Math.min(pos + len, this.size);
    if (pos >= end) return [Buffer.alloc(0)];
    // A reader is sequential once it has read a run of consecutive bytes: a single
    // adjacent pair (the kernel's readahead of a random read) must not start
    // megabytes of read-ahead.
    this.#streak = pos === this.#lastEnd ? this.#streak + (end - pos) : end - pos;
    this.#lastEnd = end;
    const sequential = this.#streak >= SEQUENTIAL_AFTER || this.#windows.has(this.#windowStart(pos));
    if (!sequential && end - pos < this.#window) {
      this.#noteRandom(pos);
      // Random reads are small: read here (a 4 KiB read is done in place).
      return (await this.#fetch(pos, end, false, keep)).parts;
    }
    const out: Part[] = [];
    const first = this.#windowStart(pos);
    // Every window of the request stays pinned until all are in: `out` holds views of
    // the earlier ones' buffers, which must not be recycled while a later one arrives.
    const pinned: WindowSlot[] = [];
    try {
      for (let w = first; w < end; w += this.#window) {
        const slot = this.#getWindow(w);
        slot.pins++;
        pinned.push(slot);
        const win = await slot.p;
        const before = out.length;
        sliceParts(win.parts, Math.max(pos, w) - w, Math.min(end, w + this.#window) - w, out);
        const ranges = rangesOf(out.slice(before));
        if (ranges.length > 0) this.#data.local?.hold(ranges);
      }
    } catch (err) {
      this.#letGo(out);
      throw err;
    } finally {
      for (const slot of pinned) this.#unpin(slot);
    }
    if (this.#closed) {
      // Closed while this request waited: nothing may stay behind in the windows.
      this.close();
      return out;
    }
    // Drop windows behind the reader, start the ones ahead of it.
    for (const [k, slot] of this.#windows) {
      if (k + this.#window > pos) continue;
      this.#windows.delete(k);
      this.#drop(slot);
    }
    const next = this.#windowStart(end - 1) + this.#window;
    for (let i = 0; i < this.#ahead; i++) {
      const w = next + i * this.#window;
      if (w < this.size && !this.#windows.has(w)) this.#getWindow(w).p.catch(() => undefined);
    }
    if (this.#streak >= WARM_BLOCK_AFTER) this.#warmBlocks(end - 1);
    return out;
  }

  /** Lets go of every window (the file handle is closed). */
  close(): void {
    this.#closed = true;
    for (const slot of this.#windows.values()) this.#drop(slot);
    this.#windows.clear();
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
      .catch((err: unknown) => this.#noteReplaced(err))
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

  #getWindow(start: number): WindowSlot {
    let slot = this.#windows.get(start);
    if (!slot) {
      const p = this.#fetch(start, Math.min(start + this.#window, this.size), this.#fileRanges);
      const made: WindowSlot = { p, pins: 0, dropped: false };
      p.catch(() => {
        if (this.#windows.get(start) === made) this.#windows.delete(start);
      });
      this.#windows.set(start, (slot = made));
    }
    return slot;
  }

  /** Fetches `[start, end)` from the blocks it spans, in parallel. */
  async #fetch(start: number, end: number, useRanges: boolean, keep?: KeepPage): Promise<Window> {
    if (this.#replaced) throw new StrataError('STORE_CHANGED', this.#replaced);
    try {
      return await this.#fetchOnce(start, end, useRanges, keep);
    } catch (err) {
      this.#noteReplaced(err);
      // A worker died or dropped the block: ask the master again, once per reader. Not for a timeout the
      // worker answered with (its store timed out after its own tries): asking again doubled that wait.
      if (this.#refreshed || !(err instanceof StrataError) || (err.code !== 'UNAVAILABLE' && err.code !== 'TIMEOUT' && err.code !== 'NOT_FOUND')) throw err;
      if (err.code === 'TIMEOUT' && !workerUnreachable(err)) throw err;
      this.#refreshed = true;
      this.#data.router.invalidate();
      this.#info = await this.#data.master.fileBlocksByIno(this.#info.attrs.ino, true);
      this.#keeper?.stale();
      try {
        return await this.#fetchOnce(start, Math.min(end, this.size), useRanges, keep);
      } catch (again) {
        this.#noteReplaced(again);
        throw again;
      }
    }
  }

  /**
   * Set once this reader found the version of the file it was opened on gone (STORE_CHANGED):
   * every later read fails the same way, not only the one that found it. The kernel asks again
   * for pages whose read-ahead failed; those must not come from the new version.
   */
  #replaced: string | undefined;

  #noteReplaced(err: unknown): void {
    if (err instanceof StrataError && err.code === 'STORE_CHANGED') this.#replaced ??= err.message;
  }

  /**
   * `[start, end)` as parts: same-host cached pages as page-file ranges when
   * `useRanges`, everything else read into one buffer for the window.
   */
  async #fetchOnce(start: number, end: number, useRanges: boolean, keep?: KeepPage): Promise<Window> {
    let buf: Buffer | undefined;
    const bytes = (): Buffer => (buf ??= end - start === this.#window && this.#free.length > 0 ? this.#free.pop()! : Buffer.allocUnsafe(end - start));
    /** Per block touched, in order: its page ranges, or where its bytes are in `buf`. */
    const slots: (PageRange[] | [number, number])[] = [];
    const bs = this.#info.attrs.blockSize;
    const parts: Promise<void>[] = [];
    const failed = async (err: unknown): Promise<never> => {
      // Parts still running may yet hold ranges: let go of those too once they end.
      await Promise.allSettled(parts);
      for (const x of slots) if (!isSpan(x)) this.#data.local?.release(x);
      throw err;
    };
    try {
      this.#startParts(start, end, bs, slots, parts, bytes, useRanges, keep);
    } catch (err) {
      return failed(err);
    }
    const settled = await Promise.allSettled(parts);
    const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) return failed(rejected.reason);
    if (slots.every(isSpan)) return { parts: [buf ? buf.subarray(0, end - start) : Buffer.alloc(0)], buf };
    const out: Part[] = [];
    for (const x of slots) {
      if (isSpan(x)) out.push(bytes().subarray(x[0], x[0] + x[1]));
      else out.push(...x);
    }
    return { parts: out, buf };
  }

  /** Starts fetching each block's part of `[start, end)` into `slots` (see #fetchOnce). */
  #startParts(start: number, end: number, bs: number, slots: (PageRange[] | [number, number])[], parts: Promise<void>[], bytes: () => Buffer, useRanges: boolean, keep?: KeepPage): void {
    for (let pos = start; pos < end; ) {
      const idx = Math.floor(pos / bs);
      const block: BlockInfo | undefined = this.#info.blocks[idx];
      if (!block) throw new StrataError('IO_ERROR', `file ${this.#info.attrs.ino} has no block ${idx}`);
      const off = pos - block.offset;
      const n = Math.min(end, block.offset + block.length) - pos;
      // A short block that is not the last: the block list does not cover the size (no endless loop on it).
      if (n <= 0) throw new StrataError('IO_ERROR', `file ${this.#info.attrs.ino} has no block at ${pos}: its blocks end before its size`);
      const at = pos - start;
      const slot = slots.length;
      slots.push([at, n]);
      /** Same-host page files: as ranges, or read into the window's buffer. */
      const fromLocal = async (local: ShortCircuitReader, worker: WorkerInfo): Promise<boolean> => {
        if (!useRanges || !local.canHold()) return (await local.readInto(worker, block.id, off, n, bytes(), at, keep && !this.#refreshed ? (p) => keep.offer(block.offset + p.pageStart, p.range) : undefined)) === n;
        const r = await local.ranges(worker, block.id, off, n);
        if (!r) return false;
        try {
          if (r.reduce((m, x) => m + x.len, 0) !== n) return false;
          if (r.every((x) => x.inMemory)) {
            slots[slot] = r;
            return true;
          }
          // A page on a disk tier is read here: a disk error must answer EIO, and a
          // spliced reply that fails midway would end short, telling the kernel the
          // file ends there.
          const into = bytes();
          let m = at;
          for (const x of r) {
            let k = 0;
            while (k < x.len) {
              const got = await readAt(x.fd, into, m + k, x.len - k, x.pos + k);
              if (got === 0) return false;
              k += got;
            }
            m += x.len;
          }
          return true;
        } finally {
          if (slots[slot] !== r) local.release(r);
        }
      };
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
              if (!askFirst && (await fromLocal(local, worker))) return;
              // Not all on local disk: have the worker cache those pages, then read the files
              // (cheaper than moving the bytes over HTTP). NO_CACHE must not cache: HTTP then.
              if (this.#data.workers.readType === 'CACHE') {
                try {
                  await this.#loadLocal(local, worker, block.id, off, n);
                  if (await fromLocal(local, worker)) return;
                } catch (err) {
                  // No room in its cache (pinned pages, a full disk): it still serves the bytes, uncached, over HTTP.
                  if (!workerUnreachable(err) && !(err instanceof StrataError && err.code === 'NO_SPACE')) throw err;
                }
              }
            }
            try {
              // A worker reporting a hung disk is given up on only where the bytes are elsewhere too: in the store,
              // or cached on another worker. Its only copy may be on a tier that still answers (memory).
              const elsewhere = this.#info.attrs.persistState === 'persisted' || block.locations.some((id) => id !== worker.id);
              const got = await this.#data.workers.readInto(worker, block.id, off, n, bytes(), at, undefined, elsewhere);
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
  }
}
