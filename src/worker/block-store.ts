/**
 * The worker's block cache on disk: one file per block, named by its id, in one
 * directory with a byte quota (a single tier for now). Blocks are written under a
 * temp name and renamed when complete, so a crash leaves either a whole block or a
 * temp file that the next start removes. Least-recently-used blocks are evicted to
 * make room; every block here is also in the under-store (write-through), so
 * eviction never loses data.
 */

import { promises as fsp, createReadStream } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { StrataError, toStrataError } from '../common/errors';

export interface BlockStoreOptions {
  /** Directory of block files. */
  dir: string;
  /** Byte quota; blocks are evicted to stay under it. */
  capacityBytes: number;
}

export interface BlockWriter {
  write(chunk: Buffer): Promise<void>;
  /** Advances by `n` zero bytes without writing them (a hole in the block file). */
  skip(n: number): Promise<void>;
  /** Writes at a position (parallel fills); the block's length is the furthest byte written. */
  writeAt(chunk: Buffer, pos: number): Promise<void>;
  /** Makes the block visible; returns its length. */
  commit(): Promise<number>;
  abort(): Promise<void>;
}

interface BlockMeta {
  length: number;
}

export class BlockStore {
  readonly dir: string;
  readonly capacityBytes: number;
  readonly #tmp: string;
  readonly #pinDir: string;
  /** Blocks that must not be evicted: their bytes are not in the under-store yet. */
  readonly #pinned = new Set<number>();
  /** Insertion order is recency order: a touched block is re-inserted at the end. */
  readonly #blocks = new Map<number, BlockMeta>();
  #used = 0;
  /** Bytes promised to writers in progress. */
  #reserved = 0;
  readonly #added: number[] = [];
  /** Blocks dropped to make room, since start (for metrics). */
  evictions = 0;
  readonly #removed: number[] = [];

  constructor(opts: BlockStoreOptions) {
    if (!Number.isSafeInteger(opts.capacityBytes) || opts.capacityBytes <= 0) throw new StrataError('CONFIG', `worker capacity must be a positive byte count, got ${opts.capacityBytes}`);
    this.dir = opts.dir;
    this.capacityBytes = opts.capacityBytes;
    this.#tmp = nodePath.join(opts.dir, '.tmp');
    this.#pinDir = nodePath.join(opts.dir, '.pins');
  }

  /** Rebuilds the index from disk; partial writes of a crashed run are removed. */
  async open(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    await fsp.rm(this.#tmp, { recursive: true, force: true });
    await fsp.mkdir(this.#tmp, { recursive: true });
    await fsp.mkdir(this.#pinDir, { recursive: true });
    for (const f of await fsp.readdir(this.#pinDir)) if (/^[0-9]{1,16}$/.test(f)) this.#pinned.add(Number(f));
    const files = await fsp.readdir(this.dir);
    const found: { id: number; length: number; atime: number }[] = [];
    for (const f of files) {
      if (f === '.tmp' || f === '.pins') continue;
      if (!/^[0-9]{1,16}$/.test(f)) {
        await fsp.rm(nodePath.join(this.dir, f), { force: true, recursive: true });
        continue;
      }
      const st = await fsp.stat(nodePath.join(this.dir, f));
      found.push({ id: Number(f), length: st.size, atime: st.atimeMs });
    }
    found.sort((a, b) => a.atime - b.atime);
    for (const b of found) {
      this.#blocks.set(b.id, { length: b.length });
      this.#used += b.length;
    }
  }

  get usedBytes(): number {
    return this.#used;
  }

  blockIds(): number[] {
    return [...this.#blocks.keys()];
  }

  has(id: number): boolean {
    return this.#blocks.has(id);
  }

  length(id: number): number | undefined {
    return this.#blocks.get(id)?.length;
  }

  #file(id: number): string {
    if (!Number.isSafeInteger(id) || id < 0) throw new StrataError('BAD_REQUEST', `bad block id ${id}`);
    return nodePath.join(this.dir, String(id));
  }

  /** A stream of `[start, end)` of a cached block; marks it recently used. */
  read(id: number, start: number, end: number): Readable {
    const meta = this.#blocks.get(id);
    if (!meta) throw new StrataError('NOT_FOUND', `block ${id} is not cached here`);
    this.#blocks.delete(id);
    this.#blocks.set(id, meta);
    const last = Math.min(end, meta.length) - 1;
    if (last < start) {
      const { Readable } = require('node:stream') as typeof import('node:stream');
      return Readable.from([]);
    }
    return createReadStream(this.#file(id), { start, end: last, highWaterMark: 1024 * 1024 });
  }

  /** Starts writing a block of at most `maxLength` bytes, evicting older blocks to make room. */
  async create(id: number, maxLength: number): Promise<BlockWriter> {
    const final = this.#file(id);
    await this.#reserve(maxLength);
    const tmp = nodePath.join(this.#tmp, `${id}.${randomBytes(4).toString('hex')}`);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(tmp, 'wx', 0o600);
    } catch (err) {
      this.#reserved -= maxLength;
      throw toStrataError(err, `create block ${id}`);
    }
    let written = 0;
    let done = false;
    const finish = () => {
      if (!done) this.#reserved -= maxLength;
      done = true;
    };
    return {
      write: async (chunk) => {
        if (written + chunk.length > maxLength) throw new StrataError('INTERNAL', `block ${id} grew past ${maxLength} bytes`);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off, written + off)).bytesWritten;
        written += chunk.length;
      },
      writeAt: async (chunk, pos) => {
        if (pos + chunk.length > maxLength) throw new StrataError('INTERNAL', `block ${id} grew past ${maxLength} bytes`);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off, pos + off)).bytesWritten;
        written = Math.max(written, pos + chunk.length);
      },
      skip: async (n) => {
        if (written + n > maxLength) throw new StrataError('INTERNAL', `block ${id} grew past ${maxLength} bytes`);
        written += n;
      },
      commit: async () => {
        try {
          // A trailing hole still counts towards the length.
          await fh.truncate(written);
          await fh.close();
          await fsp.rename(tmp, final);
        } catch (err) {
          finish();
          await fsp.rm(tmp, { force: true });
          throw toStrataError(err, `commit block ${id}`);
        }
        finish();
        const old = this.#blocks.get(id);
        if (old) this.#used -= old.length;
        this.#blocks.set(id, { length: written });
        this.#used += written;
        this.#added.push(id);
        return written;
      },
      abort: async () => {
        finish();
        await fh.close().catch(() => undefined);
        await fsp.rm(tmp, { force: true });
      },
    };
  }

  async #reserve(bytes: number): Promise<void> {
    if (bytes > this.capacityBytes) throw new StrataError('NO_SPACE', `a ${bytes}-byte block does not fit a ${this.capacityBytes}-byte worker`);
    while (this.#used + this.#reserved + bytes > this.capacityBytes) {
      // Least recently used first; pinned blocks (not yet in the under-store) are never evicted.
      let victim: number | undefined;
      for (const id of this.#blocks.keys()) {
        if (!this.#pinned.has(id)) {
          victim = id;
          break;
        }
      }
      if (victim === undefined) throw new StrataError('NO_SPACE', 'worker cache is full of blocks that are not persisted yet');
      this.evictions++;
      await this.remove(victim);
    }
    this.#reserved += bytes;
  }

  /** Keeps a block from eviction until `unpin` (survives restarts). */
  async pin(id: number): Promise<void> {
    if (this.#pinned.has(id)) return;
    await fsp.writeFile(nodePath.join(this.#pinDir, String(id)), '');
    this.#pinned.add(id);
  }

  async unpin(id: number): Promise<void> {
    if (!this.#pinned.delete(id)) return;
    await fsp.rm(nodePath.join(this.#pinDir, String(id)), { force: true });
  }

  get pinnedCount(): number {
    return this.#pinned.size;
  }

  isPinned(id: number): boolean {
    return this.#pinned.has(id);
  }

  async remove(id: number): Promise<void> {
    await this.unpin(id);
    const meta = this.#blocks.get(id);
    if (!meta) return;
    this.#blocks.delete(id);
    this.#used -= meta.length;
    this.#removed.push(id);
    await fsp.rm(this.#file(id), { force: true });
  }

  /** Blocks added and removed since the last call, for the next heartbeat. */
  takeChanges(): { added: number[]; removed: number[] } {
    const added = this.#added.splice(0).filter((id) => this.#blocks.has(id));
    const removed = this.#removed.splice(0).filter((id) => !this.#blocks.has(id));
    return { added, removed };
  }

  /** Puts back changes a failed heartbeat could not deliver. */
  restoreChanges(c: { added: number[]; removed: number[] }): void {
    this.#added.unshift(...c.added);
    this.#removed.unshift(...c.removed);
  }
}
