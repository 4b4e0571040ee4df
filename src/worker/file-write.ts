/**
 * One file's bytes on their way through a worker: cut into blocks for the cache,
 * and streamed in order to the under-store (per the write type), at the same time.
 *
 * A write either arrives in one request (`PUT /files/:ino`), or as a stream: the
 * client sends whole blocks while the application is still writing, and the rest
 * with the final size at close. Both feed one FileWrite, so a streamed file ends up
 * exactly as if it had come in one piece; the stream only moves the work earlier.
 */

import type { FileHandle } from 'node:fs/promises';
import { StrataError } from '../common/errors';
import { fileDataExtents } from '../common/extents';
import { UfsPlace, WriteFileResponse, WriteType, blockIdOf } from '../common/protocol';
import type { UfsWriter } from '../ufs/ufs';
import { TierFullOfPinnedPagesError, type BlockPageWriter, type PageStore } from './page-store';

const ZEROS = Buffer.alloc(1024 * 1024);

/** Where a write-through goes: the writer, and whether the file is still at that path. */
export interface UfsTarget {
  writer: UfsWriter;
  stillAt: () => Promise<boolean>;
  /** Where the writer writes. */
  at: UfsPlace;
}

export class FileWrite {
  readonly #store: PageStore;
  readonly #ufsWriter: UfsWriter | undefined;
  readonly #ufsStillAt: (() => Promise<boolean>) | undefined;
  readonly #ufsAt: UfsPlace | undefined;
  readonly #cache: boolean;
  /**
   * A write-through whose cached copy found its tier full of pinned pages: the copy
   * is dropped and the write goes on to the store alone, as THROUGH. (Its blocks are
   * pinned while written, so a file larger than the cache would fill it.)
   */
  #uncached = false;
  readonly #through: boolean;
  /** Finished blocks' writers; those before `#committed` are durable already (streamed blocks). */
  readonly #done: BlockPageWriter[] = [];
  #committed = 0;
  readonly #lengths: number[] = [];
  /** Indexes of whole blocks of hole a write-through did not cache (#uncachedHoleBlocks). */
  readonly #holeBlocks = new Set<number>();
  #cur: BlockPageWriter | undefined;
  #curLen = 0;
  /** The declared size once known (the final request); streamed blocks are whole until then. */
  #size = Infinity;
  /** Bytes taken so far. */
  total = 0;

  private constructor(
    store: PageStore,
    readonly containerId: number,
    readonly blockSize: number,
    readonly writeType: WriteType,
    ufs: UfsTarget | undefined,
  ) {
    this.#store = store;
    this.#ufsWriter = ufs?.writer;
    this.#ufsStillAt = ufs?.stillAt;
    this.#ufsAt = ufs?.at;
    this.#cache = writeType !== 'THROUGH';
    this.#through = writeType === 'CACHE_THROUGH' || writeType === 'THROUGH';
  }

  /** `openUfs` is called only for write types that store the bytes in the under-store now. */
  static async open(store: PageStore, containerId: number, blockSize: number, writeType: WriteType, openUfs: () => Promise<UfsTarget>): Promise<FileWrite> {
    const through = writeType === 'CACHE_THROUGH' || writeType === 'THROUGH';
    return new FileWrite(store, containerId, blockSize, writeType, through ? await openUfs() : undefined);
  }

  /** The final size: the last block's length follows from it. */
  declareSize(size: number): void {
    if (size < this.total) throw new StrataError('BAD_REQUEST', `declared size ${size} is below the ${this.total} bytes already streamed`);
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  /** Data: into the under-store and the blocks at once. Keeps `piece` (multipart parts, whole pages). */
  async piece(piece: Buffer): Promise<void> {
    this.#fits(piece.length);
    const ufsWrite = this.#ufsWriter?.write(piece);
    // Awaited below, after the pages: a store failure meanwhile must not be an unhandled rejection (which ends the process).
    ufsWrite?.catch(() => undefined);
    try {
      await this.#advance(piece.length, piece);
    } finally {
      await ufsWrite;
    }
  }

  /** A run of zeros: holes where the disk allows, zeros where the store needs bytes. */
  async hole(n: number): Promise<void> {
    // Checked first: a store without holes is sent the zeros, and a frame far past the size would send gigabytes.
    this.#fits(n);
    const w = this.#ufsWriter;
    if (w?.skip) await w.skip(n);
    else if (w) for (let left = n; left > 0; left -= ZEROS.length) await w.write(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
    if (this.#through && n > 0) {
      // The rest of the block under way is cached as pages; whole blocks after it are not.
      const first = this.#curLen > 0 ? Math.min(n, this.blockSize - this.#curLen) : 0;
      await this.#advance(first, undefined);
      n = this.#uncachedHoleBlocks(n - first);
    }
    await this.#advance(n, undefined);
  }

  /**
   * A write-through's whole blocks of hole are not cached: the store has them, and as
   * pages they took a page's room each (a `truncate -s 1T` emptied the cache for them).
   * A read of one is a cache miss, filled from the store. What is left of `n` is answered.
   */
  #uncachedHoleBlocks(n: number): number {
    const bs = this.blockSize;
    while (this.#curLen === 0 && !this.#cur) {
      const len = Math.min(bs, this.#size - this.#lengths.length * bs);
      if (len <= 0 || n < len) break;
      this.#fits(len);
      this.#holeBlocks.add(this.#lengths.length);
      this.#lengths.push(len);
      this.total += len;
      n -= len;
    }
    return n;
  }

  /** `[from, to)` of a same-host file handed over through a tier's incoming dir; runs of zero MiBs become holes. */
  async fromFile(fh: FileHandle, from: number, to: number): Promise<void> {
    if (from !== this.total) throw new StrataError('BAD_REQUEST', `local range starts at ${from}, the write is at ${this.total}`);
    for await (const ext of fileExtents(fh, from, to)) {
      if (ext.offset > this.total) await this.hole(ext.offset - this.total);
      await this.piece(ext.data);
    }
    if (this.total < to) await this.hole(to - this.total);
  }

  #fits(n: number): void {
    if (this.total + n > this.#size) throw new StrataError('BAD_REQUEST', `body is longer than the declared size ${this.#size}`);
  }

  async #advance(n: number, piece: Buffer | undefined): Promise<void> {
    this.#fits(n);
    this.total += n;
    const bs = this.blockSize;
    let left = n;
    let chunk = piece;
    while (left > 0) {
      if (!this.#cur && this.#cache && !this.#uncached) {
        const id = blockIdOf(this.containerId, this.#lengths.length);
        // Pinned before the first page lands, so eviction never drops them, until the master says they
        // are persisted (heartbeat `unpin`). A write-through's too, until its commit: the master lets them
        // go once it recorded the file stored (a commit a rename overtook fails, and the client writes again).
        await this.#store.markUnpersisted(id);
        this.#cur = this.#store.blockWriter(id, Math.min(bs, this.#size - this.#lengths.length * bs), { durable: !this.#through });
      }
      const take = Math.min(left, bs - this.#curLen);
      if (this.#cur) {
        try {
          if (chunk) await this.#cur.write(take === chunk.length ? chunk : chunk.subarray(0, take));
          else await this.#cur.skip(take);
        } catch (err) {
          if (!this.#noRoomForCopy(err)) throw err;
          await this.#dropCopy();
        }
      }
      this.#curLen += take;
      left -= take;
      if (chunk) chunk = chunk.subarray(take);
      if (this.#curLen === bs) {
        if (this.#cur) this.#done.push(this.#cur);
        this.#lengths.push(bs);
        this.#cur = undefined;
        this.#curLen = 0;
      }
    }
  }

  /** Commits of whole blocks, one after another (fsyncs, for write types that keep the bytes only here). */
  #settling: Promise<unknown> = Promise.resolve();

  /**
   * Starts making the whole blocks taken so far final, in the background, so a
   * streamed file's blocks reach the disk while the application still writes and
   * its close has only the tail left. `finish` waits for them and reports a failure.
   */
  settleWholeBlocks(): void {
    while (this.#committed < this.#done.length) {
      const w = this.#done[this.#committed++]!;
      this.#settling = this.#settling.then(() =>
        w.commit().then(
          () => undefined,
          (err: unknown) => {
            if (!this.#noRoomForCopy(err)) throw err;
          },
        ),
      );
    }
    this.#settling.catch(() => undefined);
  }

  /**
   * The file may have been renamed or unlinked while it was written; its under-store
   * object must not complete at the old path (it would replace what is there now).
   * Then the write fails, nothing lands, and the client sends the file to where it is
   * now. (The commit checks once more: a rename may still come in between.)
   */
  async finish(): Promise<WriteFileResponse> {
    const size = this.#size;
    if (this.total !== size) throw new StrataError('BAD_REQUEST', `body has ${this.total} bytes, declared ${size}`);
    if (this.#ufsStillAt && !(await this.#ufsStillAt())) throw new StrataError('NOT_FOUND', 'the file moved in the under-store while it was written');
    if (this.#curLen > 0) {
      if (this.#cur) this.#done.push(this.#cur);
      this.#lengths.push(this.#curLen);
      this.#cur = undefined;
      this.#curLen = 0;
    }
    const st = this.#ufsWriter ? await this.#ufsWriter.complete() : undefined;
    this.settleWholeBlocks();
    await this.#settling;
    if (this.#uncached) await this.#dropCopy();
    const blocks = this.#lengths.map((length, i) => ({ id: blockIdOf(this.containerId, i), length, ...(this.#holeBlocks.has(i) ? { uncached: true } : {}) }));
    // In the store now: the master is asked about these pins first (a rename may still make the object a stray at the commit).
    if (st) for (const b of blocks) this.#store.noteFinished(b.id);
    return { size, blocks, ufsFingerprint: st ? st.fingerprint : null, cached: this.#cache && !this.#uncached, ...(st && this.#ufsAt ? { ufsAt: this.#ufsAt } : {}) };
  }

  /**
   * Whether `err` is a write-through's cached copy finding its tier full of pinned
   * pages: then the write goes on without it. A full disk fails the write as before.
   */
  #noRoomForCopy(err: unknown): boolean {
    if (!this.#through || !(err instanceof TierFullOfPinnedPagesError)) return false;
    this.#uncached = true;
    return true;
  }

  /** Drops the cached copy written so far (its pages and pins); the store gets every byte anyway. */
  async #dropCopy(): Promise<void> {
    await this.#settling.catch(() => undefined);
    const writers = [...this.#done, ...(this.#cur ? [this.#cur] : [])];
    this.#done.length = 0;
    this.#committed = 0;
    this.#cur = undefined;
    for (const w of writers) await w.abort();
  }

  async abort(): Promise<void> {
    await this.#settling.catch(() => undefined);
    try {
      await this.#ufsWriter?.abort();
    } finally {
      // The cached copy and its pins go even when the store's abort failed (a dead network).
      for (const w of [...this.#done, ...(this.#cur ? [this.#cur] : [])]) await w.abort();
      this.#done.length = 0;
      this.#cur = undefined;
    }
  }
}

/** `[from, to)` of a handed-over file as extents (holes and zero MiBs left out: stored as holes). */
async function* fileExtents(fh: FileHandle, from: number, to: number): AsyncGenerator<{ offset: number; data: Buffer }> {
  const shrank = () => new StrataError('BAD_REQUEST', 'local file shrank while being written');
  // Past its end a file is all hole to SEEK_DATA: a handed-over file must be whole first.
  if ((await fh.stat()).size < to) throw shrank();
  yield* fileDataExtents(fh, from, to, shrank);
}
