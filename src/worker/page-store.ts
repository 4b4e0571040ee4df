/**
 * The worker's cache on disk: tiers of directories (memory-backed, SSD, HDD, top
 * first), each with a byte quota that is never exceeded. Blocks are the unit of
 * placement; pages (default 1 MiB) are the unit of caching inside a block, so a
 * 4 KiB read of a cold block fetches one page, not 64 MiB.
 *
 * - Each page is one file (`common/page-file.ts`): written under a temp name and
 *   renamed, with a trailer that carries its CRC-32. A page is verified the first
 *   time it is read after the worker starts or after its file changed on disk (its
 *   inode identity changed), and by a background scrub; a page that fails is
 *   deleted and counted, and the caller refetches it. It is never served.
 * - New pages go to the top tier. A tier that needs room demotes its least
 *   recently used pages (or per `evictionPolicy`, see eviction.ts) one tier down;
 *   the bottom tier drops them. Pages of pinned
 *   blocks (pinned by the user, or holding bytes not yet in the under-store) may
 *   move down but are never dropped.
 * - On start the index is rebuilt from the tier directories; temp files and files
 *   too short to hold a trailer are removed, a page found in two tiers (a crash
 *   mid-move) keeps the upper copy.
 */

import { promises as fsp, constants as fsc, closeSync, existsSync, mkdirSync, openSync, renameSync, writeSync, writevSync } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { StrataError, toStrataError } from '../common/errors';
import { Mutex } from '../common/mutex';
import { EvictionOrder, createEvictionOrder } from './eviction';
import { INCOMING_DIR } from '../common/protocol';
import type { BlockReport, TierInfo } from '../common/protocol';
import { PAGE_TRAILER_BYTES, PageIdentity, encodeTrailer, identityOf, identityOfPath, identityOfPathSync, onMemoryFs, pageCrc, sameIdentity, verifyPage } from '../common/page-file';

/** Most finished pinned blocks remembered to ask about first (see noteFinished). */
const FINISHED_MAX = 65536;

/** In each tier dir: the page size its pages were cut at (see #checkPageSize). */
const PAGE_SIZE_FILE = '.page-size';

export interface TierSpec {
  /** Label shown in reports: MEM, SSD, HDD… A tier named MEM is treated as volatile. */
  name: string;
  dir: string;
  capacityBytes: number;
}

export interface PageStoreOptions {
  tiers: TierSpec[];
  /** Bytes per page. Default 1 MiB. */
  pageSize?: number;
  /** Where pins of not-yet-persisted blocks are kept (survives restarts). */
  pinDir: string;
  /** Which page a full tier gives up first: LRU (default), FIFO or LFU. */
  evictionPolicy?: string;
  /** Called with a reason when a page fails verification and is dropped. */
  onCorrupt?: (blockId: number, pageIndex: number, reason: string) => void;
  /**
   * Asked when a tier is full of pinned pages, before a write fails NO_SPACE: pins are let
   * go only when the master says so (with a heartbeat), and a write-through or persist that
   * just finished may hold the tier until then. Resolves how many pins were let go.
   */
  askUnpins?: () => Promise<number>;
}

interface Tier {
  level: number;
  name: string;
  dir: string;
  tmp: string;
  capacity: number;
  used: number;
  reserved: number;
  /** Pages of this tier in eviction order (LRU by default). */
  lru: EvictionOrder<Page>;
  mutex: Mutex;
  volatile: boolean;
  /** On tmpfs or ramfs (known once open): page files are written from the event loop (see putPage). */
  inMemory: boolean;
}

interface Page {
  block: number;
  index: number;
  tier: Tier;
  dataBytes: number;
  /** The page file's identity when it last verified. */
  verified: PageIdentity | undefined;
  /** Set while the page file is being moved between tiers. */
  moving: boolean;
}

interface Block {
  id: number;
  length: number | undefined;
  pages: Map<number, Page>;
}

export interface PageWriteOptions {
  /** Bytes that exist nowhere else yet: fsync, and keep off volatile tiers when there is another. */
  durable?: boolean;
  /** With `durable`: leave the fsync to a later `syncBlock` (a block writer syncs all its pages at commit, in parallel). */
  deferSync?: boolean;
}

/** Sequential writer of one block's pages (the write path). */
export interface BlockPageWriter {
  /** Takes `chunk` without copying whole pages of it: the caller must not change it afterwards. */
  write(chunk: Buffer): Promise<void>;
  /** Advances by `n` zero bytes; a page that is all hole is stored sparse. */
  skip(n: number): Promise<void>;
  /** Writes the last page; returns the block's length. */
  commit(): Promise<number>;
  abort(): Promise<void>;
}

/**
 * NO_SPACE because a tier's quota is taken by pages that may not be dropped (pinned,
 * or not persisted yet), not because its disk is full: a write-through then goes on
 * without its cached copy (see FileWrite), where a full disk still fails the write.
 */
export class TierFullOfPinnedPagesError extends StrataError {
  constructor(message: string) {
    super('NO_SPACE', message);
  }
}

export class PageStore {
  readonly pageSize: number;
  readonly #tiers: Tier[];
  readonly #pinDir: string;
  readonly #blocks = new Map<number, Block>();
  /** Blocks whose bytes are not in the under-store yet. */
  readonly #unpersisted = new Set<number>();
  /** Where the last unpersistedTurn stopped. */
  #unpersistedCursor: Iterator<number> | undefined;
  /** Blocks of files the user pinned (set by the master). */
  #userPinned = new Set<number>();
  readonly #dirty = new Set<number>();
  readonly #removed = new Set<number>();
  /**
   * Blocks dropped whole on request (the master's delete, an aborted write): reported
   * as removed even when cached again since, so the master sees the delete done
   * before it sees the new copy (it ignores copies it still wants deleted).
   */
  readonly #dropped = new Set<number>();
  readonly #onCorrupt: PageStoreOptions['onCorrupt'];
  readonly #askUnpins: PageStoreOptions['askUnpins'];
  /** Pinned blocks whose write-through or persist finished: asked about first (see pinsToAsk). */
  readonly #finished = new Set<number>();
  /** Counters for metrics. */
  readonly stats = { evictedBytes: 0, evictedPages: 0, demotedBytes: 0, promotedBytes: 0, corruptPages: 0 };

  constructor(opts: PageStoreOptions) {
    if (opts.tiers.length === 0) throw new StrataError('CONFIG', 'a worker needs at least one tier');
    this.pageSize = opts.pageSize ?? 1024 * 1024;
    if (!Number.isSafeInteger(this.pageSize) || this.pageSize < 4096 || this.pageSize > 64 * 1024 * 1024) throw new StrataError('CONFIG', `page size must be between 4KiB and 64MiB, got ${opts.pageSize}`);
    const seen = new Set<string>();
    this.#tiers = opts.tiers.map((t, level) => {
      if (!Number.isSafeInteger(t.capacityBytes) || t.capacityBytes <= 0) throw new StrataError('CONFIG', `tier ${t.name}: capacity must be a positive byte count`);
      const dir = nodePath.resolve(t.dir);
      if (seen.has(dir)) throw new StrataError('CONFIG', `tier ${t.name}: directory ${dir} is used by two tiers`);
      seen.add(dir);
      return { level, name: t.name.toUpperCase(), dir, tmp: nodePath.join(dir, '.tmp'), capacity: t.capacityBytes, used: 0, reserved: 0, lru: createEvictionOrder<Page>(opts.evictionPolicy ?? 'LRU'), mutex: new Mutex(), volatile: t.name.toUpperCase() === 'MEM', inMemory: false };
    });
    // A tier that cannot hold one page fails every fill (`--capacity 10` was accepted, then every read failed).
    for (const t of this.#tiers) {
      if (t.capacity < this.pageSize + PAGE_TRAILER_BYTES) throw new StrataError('CONFIG', `tier ${t.name}: capacity ${t.capacity} bytes is less than one page (${this.pageSize} bytes and a ${PAGE_TRAILER_BYTES}-byte trailer)`);
    }
    this.#pinDir = opts.pinDir;
    this.#onCorrupt = opts.onCorrupt;
    this.#askUnpins = opts.askUnpins;
  }

  // ---- start ---------------------------------------------------------------

  async open(): Promise<void> {
    await fsp.mkdir(this.#pinDir, { recursive: true });
    for (const f of await fsp.readdir(this.#pinDir)) if (/^[0-9]{1,16}$/.test(f)) this.#unpersisted.add(Number(f));
    const found: { page: Page; atime: number }[] = [];
    for (const tier of this.#tiers) {
      await fsp.mkdir(tier.dir, { recursive: true });
      await fsp.rm(tier.tmp, { recursive: true, force: true });
      await fsp.mkdir(tier.tmp, { recursive: true });
      tier.inMemory = onMemoryFs(tier.tmp);
      await this.#checkPageSize(tier);
      // Same-host clients hand over files to write here (see openIncoming); leftovers of a crash go.
      const incoming = nodePath.join(tier.dir, INCOMING_DIR);
      await fsp.rm(incoming, { recursive: true, force: true });
      await fsp.mkdir(incoming, { recursive: true });
      // Anyone may add a file (sticky: only its owner removes it), no one but the worker lists them.
      await fsp.chmod(incoming, 0o1733);
      for (const b of await fsp.readdir(tier.dir)) {
        if (b === '.tmp' || b === INCOMING_DIR || b === PAGE_SIZE_FILE) continue;
        const bdir = nodePath.join(tier.dir, b);
        if (!/^[0-9]{1,16}$/.test(b)) {
          await fsp.rm(bdir, { recursive: true, force: true });
          continue;
        }
        const blockId = Number(b);
        let names: string[];
        try {
          names = await fsp.readdir(bdir);
        } catch {
          await fsp.rm(bdir, { recursive: true, force: true });
          continue;
        }
        for (const p of names) {
          const file = nodePath.join(bdir, p);
          const st = await fsp.stat(file).catch(() => undefined);
          const pageIndex = Number(p);
          const block = this.#blocks.get(blockId);
          if (!st || !st.isFile() || !/^[0-9]{1,9}$/.test(p) || st.size < PAGE_TRAILER_BYTES || st.size - PAGE_TRAILER_BYTES > this.pageSize || block?.pages.has(pageIndex)) {
            await fsp.rm(file, { force: true, recursive: true });
            continue;
          }
          const page: Page = { block: blockId, index: pageIndex, tier, dataBytes: st.size - PAGE_TRAILER_BYTES, verified: undefined, moving: false };
          this.#blockOf(blockId).pages.set(pageIndex, page);
          tier.used += st.size;
          found.push({ page, atime: st.atimeMs });
        }
        if (!this.#blocks.get(blockId)?.pages.size) await fsp.rmdir(bdir).catch(() => undefined);
      }
    }
    found.sort((a, b) => a.atime - b.atime);
    for (const { page } of found) page.tier.lru.add(key(page.block, page.index), page);
    // A tier that shrank since the last run: make it fit again.
    for (const tier of this.#tiers) await tier.mutex.run(() => this.#makeRoom(tier, 0));
  }

  /**
   * A tier's pages are cut at the page size they were written with, which nothing else
   * records: read with another, their indexes name other offsets (reads answered the bytes
   * of 1 MiB at 2 MiB), and pages longer than a page were deleted, unpersisted ones too.
   * So the size is kept in the tier; a tier of another size is emptied when it holds
   * only copies of persisted data, and refused when it holds the only copy of any.
   */
  async #checkPageSize(tier: Tier): Promise<void> {
    const file = nodePath.join(tier.dir, PAGE_SIZE_FILE);
    const text = await fsp.readFile(file, 'utf8').catch(() => undefined);
    const was = text === undefined ? undefined : Number(text.trim());
    if (was !== undefined && was !== this.pageSize) {
      const blocks = (await fsp.readdir(tier.dir)).filter((b) => /^[0-9]{1,16}$/.test(b)).map(Number);
      const unpersisted = blocks.filter((b) => this.#unpersisted.has(b));
      if (unpersisted.length) {
        throw new StrataError(
          'CONFIG',
          `tier ${tier.name} (${tier.dir}) holds pages of ${was} bytes, among them the only copy of ${unpersisted.length} unpersisted block(s); start this worker with page size ${was} until they are persisted`,
        );
      }
      for (const b of blocks) await fsp.rm(nodePath.join(tier.dir, String(b)), { recursive: true, force: true });
    }
    if (was !== this.pageSize) {
      await fsp.writeFile(`${file}.new`, `${this.pageSize}\n`);
      await fsp.rename(`${file}.new`, file);
    }
  }

  // ---- what is here --------------------------------------------------------

  /** Each tier's name and scratch directory (on the tier's disk; emptied at start). */
  tierScratchDirs(): { name: string; scratchDir: string }[] {
    return this.#tiers.map((t) => ({ name: t.name, scratchDir: t.tmp }));
  }

  tierInfo(): TierInfo[] {
    return this.#tiers.map((t) => ({ name: t.name, dir: t.dir, capacityBytes: t.capacity, usedBytes: t.used }));
  }

  get capacityBytes(): number {
    return this.#tiers.reduce((s, t) => s + t.capacity, 0);
  }

  get usedBytes(): number {
    return this.#tiers.reduce((s, t) => s + t.used, 0);
  }

  get blockCount(): number {
    return this.#blocks.size;
  }

  get pinnedCount(): number {
    return this.#unpersisted.size;
  }

  blockIds(): number[] {
    return [...this.#blocks.keys()];
  }

  hasPage(blockId: number, pageIndex: number): boolean {
    return this.#blocks.get(blockId)?.pages.has(pageIndex) ?? false;
  }

  /** The page file a page lives in and the identity it verified with (undefined when not verified). */
  pageFile(blockId: number, pageIndex: number): { tier: string; identity: PageIdentity } | undefined {
    const p = this.#blocks.get(blockId)?.pages.get(pageIndex);
    return p?.verified && !p.moving ? { tier: p.tier.name, identity: p.verified } : undefined;
  }

  /** The block's length when some page of it has told us (trailer) or a writer set it. */
  blockLength(blockId: number): number | undefined {
    return this.#blocks.get(blockId)?.length;
  }

  setBlockLength(blockId: number, length: number): void {
    const b = this.#blocks.get(blockId);
    if (b) b.length = length;
  }

  /** Cached bytes of a block on this worker. */
  cachedBytes(blockId: number): number {
    let n = 0;
    for (const p of this.#blocks.get(blockId)?.pages.values() ?? []) n += p.dataBytes;
    return n;
  }

  report(blockId: number): BlockReport | undefined {
    const b = this.#blocks.get(blockId);
    if (!b || b.pages.size === 0) return undefined;
    const byTier = new Map<string, number>();
    let bytes = 0;
    for (const p of b.pages.values()) {
      bytes += p.dataBytes;
      byTier.set(p.tier.name, (byTier.get(p.tier.name) ?? 0) + p.dataBytes);
    }
    let tier = '';
    let most = -1;
    for (const [name, n] of byTier) if (n > most) [tier, most] = [name, n];
    return { id: blockId, tier, bytes };
  }

  fullReport(): BlockReport[] {
    const out: BlockReport[] = [];
    for (const id of this.#blocks.keys()) {
      const r = this.report(id);
      if (r) out.push(r);
    }
    this.#dirty.clear();
    this.#removed.clear();
    // Deletes done on request go with the next heartbeat, with the block's state then: the master
    // ignores a copy it still wants deleted, in a full report too.
    for (const id of this.#dropped) this.#dirty.add(id);
    return out;
  }

  /** Blocks added, changed or removed since the last call, for the next heartbeat. */
  takeChanges(): { added: BlockReport[]; removed: number[]; dropped: number[] } {
    const added: BlockReport[] = [];
    const removed = new Set<number>();
    for (const id of this.#dirty) {
      const r = this.report(id);
      if (r) added.push(r);
      else removed.add(id);
    }
    for (const id of this.#removed) if (!this.#blocks.has(id) && !this.#dirty.has(id)) removed.add(id);
    for (const id of this.#dropped) removed.add(id);
    const dropped = [...this.#dropped];
    this.#dirty.clear();
    this.#removed.clear();
    this.#dropped.clear();
    return { added, removed: [...removed], dropped };
  }

  /** Whether the next report has something about this block. */
  hasUnreported(id: number): boolean {
    return this.#dirty.has(id) || this.#dropped.has(id) || this.#removed.has(id);
  }

  /** Puts back changes a failed heartbeat could not deliver. */
  restoreChanges(c: { added: BlockReport[]; removed: number[]; dropped: number[] }): void {
    for (const r of c.added) this.#dirty.add(r.id);
    for (const id of c.removed) this.#dirty.add(id);
    for (const id of c.dropped) {
      this.#dropped.add(id);
      this.#dirty.add(id);
    }
  }

  // ---- pins ----------------------------------------------------------------

  /** Keeps a block's pages from being dropped until `markPersisted` (survives restarts). */
  async markUnpersisted(id: number): Promise<void> {
    if (this.#unpersisted.has(id)) return;
    await fsp.writeFile(nodePath.join(this.#pinDir, String(id)), '');
    this.#unpersisted.add(id);
  }

  async markPersisted(id: number): Promise<void> {
    if (!this.#unpersisted.delete(id)) return;
    await fsp.rm(nodePath.join(this.#pinDir, String(id)), { force: true });
  }

  isUnpersisted(id: number): boolean {
    return this.#unpersisted.has(id);
  }

  /**
   * Up to `max` unpersisted blocks, going on where the last call stopped, so
   * successive calls take turns through all of them (the heartbeat asks the master
   * which it may let go). A Set's iterator sees the changes made since it started.
   */
  unpersistedTurn(max: number): number[] {
    if (this.#unpersisted.size <= max) return [...this.#unpersisted];
    const out: number[] = [];
    for (let restarted = false; out.length < max; ) {
      this.#unpersistedCursor ??= this.#unpersisted.values();
      const next = this.#unpersistedCursor.next();
      if (!next.done) {
        out.push(next.value);
        continue;
      }
      this.#unpersistedCursor = undefined;
      if (restarted) break;
      restarted = true;
    }
    return out;
  }

  /** A pinned block whose bytes just went to the store (a write-through, a persist): the master is asked about it first. */
  noteFinished(id: number): void {
    if (!this.#unpersisted.has(id)) return;
    if (this.#finished.size >= FINISHED_MAX) this.#finished.delete(this.#finished.values().next().value!);
    this.#finished.add(id);
  }

  /**
   * Up to `max` pinned blocks to ask the master about: those whose write-through or persist
   * finished first (most likely to be let go), then the others in turns (unpersistedTurn).
   */
  pinsToAsk(max: number): number[] {
    const out: number[] = [];
    for (const id of this.#finished) {
      this.#finished.delete(id);
      if (!this.#unpersisted.has(id)) continue;
      out.push(id);
      if (out.length >= max) return out;
    }
    const seen = new Set(out);
    for (const id of this.unpersistedTurn(max - out.length)) if (!seen.has(id)) out.push(id);
    return out;
  }

  setUserPins(ids: Iterable<number>): void {
    this.#userPinned = new Set(ids);
  }

  /** Blocks held here that users pinned (the pinned set the master sends covers the whole cluster). */
  get userPinnedCount(): number {
    let n = 0;
    for (const id of this.#userPinned) if (this.#blocks.has(id)) n++;
    return n;
  }

  #droppable(p: Page): boolean {
    return !this.#unpersisted.has(p.block) && !this.#userPinned.has(p.block);
  }

  // ---- reads ---------------------------------------------------------------

  /**
   * Bytes `[from, to)` of a cached page (clamped to the page), or undefined when
   * the page is not here (never cached, evicted, or failed verification: then it
   * has been dropped and must be fetched again).
   */
  async readPage(blockId: number, pageIndex: number, from: number, to: number, promote = false): Promise<{ data: Buffer; tier: string } | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const page = this.#blocks.get(blockId)?.pages.get(pageIndex);
      if (!page) return undefined;
      const file = this.#path(page.tier, blockId, pageIndex);
      let fh: fsp.FileHandle;
      try {
        fh = await fsp.open(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw toStrataError(err, `read page ${blockId}/${pageIndex}`);
        // Moved to another tier or evicted meanwhile: look again. Still indexed here and not moving: its file
        // is gone from the disk (removed by hand, a tmpfs emptied). Dropped, as a corrupt one, so it is
        // fetched again; kept, every read of it failed until it was evicted.
        if (this.#blocks.get(blockId)?.pages.get(pageIndex) === page && !page.moving && this.#path(page.tier, blockId, pageIndex) === file) {
          // Unless the whole tier is gone (its disk unmounted under it): then nothing is dropped, and reads fail until it is back.
          const tierThere = await fsp.stat(page.tier.tmp).then(() => true, () => false);
          if (!tierThere) throw new StrataError('IO_ERROR', `read page ${blockId}/${pageIndex}: tier ${page.tier.name} (${page.tier.dir}) has lost its files; is its disk mounted?`);
          if (this.#blocks.get(blockId)?.pages.get(pageIndex) !== page) continue;
          await this.#dropCorrupt(page, 'page file missing');
          return undefined;
        }
        continue;
      }
      let out: Buffer;
      try {
        const ident = await identityOf(fh);
        const end = Math.min(to, page.dataBytes);
        if (sameIdentity(page.verified, ident)) {
          out = Buffer.allocUnsafe(Math.max(0, end - from));
          let n = 0;
          while (n < out.length) {
            const { bytesRead } = await fh.read(out, n, out.length - n, from + n);
            if (bytesRead === 0) break;
            n += bytesRead;
          }
          if (n !== out.length) out = out.subarray(0, n);
        } else {
          const r = await verifyPage(fh, ident.size, blockId, pageIndex);
          if (!r.ok) {
            await this.#dropCorrupt(page, r.reason);
            return undefined;
          }
          page.verified = ident;
          // The block may have been dropped while its page was verified: the bytes read are still good.
          const blk = this.#blocks.get(blockId);
          if (blk) blk.length = r.trailer.blockLength;
          out = r.data.subarray(Math.min(from, r.data.length), Math.max(from, end));
        }
      } finally {
        await fh.close();
      }
      this.#touch(page);
      const tier = page.tier.name;
      if (promote && page.tier.level > 0) void this.#move(page, this.#tiers[0]!).catch(() => undefined);
      return { data: out, tier };
    }
    return undefined;
  }

  async #dropCorrupt(page: Page, reason: string): Promise<void> {
    this.stats.corruptPages++;
    this.#onCorrupt?.(page.block, page.index, reason);
    await this.#drop(page);
  }

  #touch(page: Page): void {
    page.tier.lru.touch(key(page.block, page.index));
  }

  // ---- writes --------------------------------------------------------------

  /**
   * Stores one page. `data` undefined stores `dataLength` zero bytes sparsely.
   * Replaces a page that is already there.
   */
  async putPage(blockId: number, pageIndex: number, data: Buffer | readonly Buffer[] | undefined, dataLength: number, blockLength: number, opts: PageWriteOptions = {}): Promise<void> {
    const pieces = data === undefined ? undefined : Buffer.isBuffer(data) ? [data] : data;
    if (dataLength > this.pageSize || (pieces && pieces.reduce((n, b) => n + b.length, 0) !== dataLength)) throw new StrataError('INTERNAL', `page ${blockId}/${pageIndex}: ${dataLength} bytes do not fit a ${this.pageSize}-byte page`);
    const fileBytes = dataLength + PAGE_TRAILER_BYTES;
    const tier = this.#tierForNew(opts.durable === true);
    await tier.mutex.run(() => this.#makeRoom(tier, fileBytes));
    const tmp = nodePath.join(tier.tmp, tmpName(blockId, pageIndex));
    let placed = false;
    try {
      const crc = pieces ? pieces.reduce((c, b) => pageCrc(b, c), 0) : zeroCrc(dataLength);
      const trailer = encodeTrailer({ dataLength, blockId, pageIndex, crc, blockLength });
      // A page file on a memory file system is written by this thread: the write is a memory copy
      // that cannot wait for a device, and the five calls (open, writev, close, rename, stat) cost
      // more as thread-pool hand-offs than done here. Measured on cold 1 GiB reads into a tmpfs
      // tier: 0.2 s less worker CPU per GiB. Pages up to 4 MiB only: a larger copy would hold up
      // every other request of this worker for longer than the hand-offs cost.
      const inline = tier.inMemory && !opts.durable && dataLength <= INLINE_WRITE_MAX;
      if (inline) writeNewFileSync(tmp, pieces ? [...pieces, trailer] : [trailer], pieces ? 0 : dataLength);
      else {
        const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
        try {
          if (pieces) {
            // Data and trailer in one system call (a short write finishes the rest).
            const all = [...pieces, trailer];
            const { bytesWritten } = await fh.writev(all, 0);
            if (bytesWritten < fileBytes) await writeAll(fh, Buffer.concat(all).subarray(bytesWritten), bytesWritten);
          } else {
            await writeAll(fh, trailer, dataLength);
          }
          if (opts.durable && !opts.deferSync) await fh.sync();
        } finally {
          await fh.close();
        }
      }
      // The old copy goes first: dropping a block's last page in a tier removes the block's directory there.
      const old = this.#blocks.get(blockId)?.pages.get(pageIndex);
      if (old) await this.#drop(old, false);
      await this.#blockDir(tier, blockId);
      const dst = this.#path(tier, blockId, pageIndex);
      await placeFile(tmp, dst, inline);
      placed = true;
      // Ours, just written: trust it until the file changes (rename changed its ctime, so stat it now).
      const verified = inline ? identityOfPathSync(dst) : await identityOfPath(dst);
      // Indexed with no await from here: a drop that empties the block meanwhile must not leave this page in a
      // Block it already took out of the map.
      tier.reserved -= fileBytes;
      tier.used += fileBytes;
      const block = this.#blockOf(blockId);
      block.length = blockLength;
      const page: Page = { block: blockId, index: pageIndex, tier, dataBytes: dataLength, verified, moving: false };
      // Another write of the same page that finished meanwhile: its room and its place in the eviction order go;
      // its file too, unless it is this one's path (this rename replaced it).
      const prev = block.pages.get(pageIndex);
      if (prev) {
        prev.tier.used -= prev.dataBytes + PAGE_TRAILER_BYTES;
        prev.tier.lru.delete(key(blockId, pageIndex));
        if (prev.tier !== tier) void fsp.rm(this.#path(prev.tier, blockId, pageIndex), { force: true }).catch(() => undefined);
      }
      block.pages.set(pageIndex, page);
      tier.lru.add(key(blockId, pageIndex), page);
      this.#dirty.add(blockId);
      if (opts.durable && !opts.deferSync) await syncDir(nodePath.join(tier.dir, String(blockId)));
    } catch (err) {
      if (!placed) {
        tier.reserved -= fileBytes;
        await fsp.rm(tmp, { force: true });
      }
      throw toStrataError(err, `write page ${blockId}/${pageIndex}`);
    }
  }

  /**
   * A file a same-host client placed in a tier's incoming dir, opened without
   * following links and checked to be a plain file; NOT_FOUND when it is not
   * there. Only a bare name is accepted: a request cannot point anywhere else.
   */
  async openIncoming(tierName: string, name: string): Promise<{ fh: fsp.FileHandle; path: string }> {
    if (!/^[A-Za-z0-9_-]{8,64}$/.test(name)) throw new StrataError('BAD_REQUEST', 'a local file name is 8-64 letters, digits, _ or -');
    const tier = this.#tiers.find((t) => t.name === tierName.toUpperCase());
    if (!tier) throw new StrataError('BAD_REQUEST', `no tier ${tierName.slice(0, 32)}`);
    const path = nodePath.join(tier.dir, INCOMING_DIR, name);
    let fh: fsp.FileHandle;
    try {
      // O_NONBLOCK: a FIFO put there (the dir is writable by all) must not hold a thread-pool thread forever.
      fh = await fsp.open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Not NOT_FOUND: to a client that means the file moved, and it would hand the same file over again.
      if (code === 'EACCES' || code === 'EPERM') throw new StrataError('LOCAL_FILE_UNREADABLE', `local file ${name} in tier ${tier.name} is not readable by this worker (${code})`, { cause: err });
      throw new StrataError('NOT_FOUND', `no local file ${name} in tier ${tier.name}`, { cause: err });
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new StrataError('BAD_REQUEST', `local file ${name} is not a regular file`);
    }
    return { fh, path };
  }

  /**
   * Makes a block's pages durable: fdatasync of every page file (in parallel, so
   * the file system commits them together), of the directories holding them, and of the
   * pin directory when the block is pinned.
   */
  async syncBlock(blockId: number): Promise<void> {
    const b = this.#blocks.get(blockId);
    if (!b) return;
    const pages = [...b.pages.values()];
    const dirs = new Set<string>();
    const next = { i: 0 };
    const one = async () => {
      while (next.i < pages.length) {
        const p = pages[next.i++]!;
        const file = this.#path(p.tier, blockId, p.index);
        dirs.add(nodePath.dirname(file));
        const fh = await fsp.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined; // moved to another tier meanwhile: the move wrote it anew
          throw err;
        });
        if (!fh) continue;
        try {
          await fh.datasync();
        } finally {
          await fh.close();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, pages.length) }, one));
    // Its pin too: a pin lost in a power cut would let eviction drop the only copy before the persist.
    if (this.#unpersisted.has(blockId)) dirs.add(this.#pinDir);
    for (const d of dirs) await syncDir(d);
  }

  /** Writer for a block written sequentially (the file write path). */
  blockWriter(blockId: number, blockLength: number, opts: PageWriteOptions = {}): BlockPageWriter {
    const ps = this.pageSize;
    let page: Buffer = Buffer.alloc(0);
    let pageFill = 0;
    let pageHasData = false;
    let pageIndex = 0;
    let written = 0;
    // Pages are written a few at a time, so the disk works while the next ones arrive.
    const IN_FLIGHT = 4;
    const inFlight = new Set<Promise<void>>();
    let failed: unknown;
    const pageOpts: PageWriteOptions = opts.durable ? { ...opts, deferSync: true } : opts;
    const flush = async () => {
      if (pageFill === 0) return;
      if (failed) throw failed;
      const p = this.putPage(blockId, pageIndex, pageHasData ? page.subarray(0, pageFill) : undefined, pageFill, blockLength, pageOpts).then(
        () => void inFlight.delete(p),
        (err: unknown) => {
          inFlight.delete(p);
          failed ??= err;
        },
      );
      inFlight.add(p);
      // The buffer now belongs to that write; the next page gets a fresh one.
      if (pageHasData) page = Buffer.alloc(0);
      pageIndex++;
      pageFill = 0;
      pageHasData = false;
      while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      if (failed) throw failed;
    };
    const settle = async () => {
      await Promise.all(inFlight);
      if (failed) throw failed;
    };
    const ensurePage = () => {
      if (!pageHasData) {
        if (page.length !== ps) page = Buffer.alloc(ps);
        else page.fill(0, 0, ps);
        pageHasData = true;
      }
    };
    const advance = async (chunk: Buffer | undefined, n: number) => {
      if (written + n > blockLength) throw new StrataError('INTERNAL', `block ${blockId} grew past ${blockLength} bytes`);
      let off = 0;
      while (off < n) {
        const take = Math.min(n - off, ps - pageFill);
        if (chunk && pageFill === 0 && (take === ps || written + off + take === blockLength)) {
          // A whole page (or the block's last) in one piece: written from the caller's buffer as it is.
          // Copying it into a fresh page buffer cost more than the disk write (page faults, GC).
          page = chunk.subarray(off, off + take);
          pageHasData = true;
          pageFill = take;
          off += take;
          await flush();
          continue;
        }
        if (chunk) {
          // ensurePage zero-fills, so a hole earlier in this page reads as zeros.
          ensurePage();
          chunk.copy(page, pageFill, off, off + take);
        }
        pageFill += take;
        off += take;
        if (pageFill === ps) await flush();
      }
      written += n;
    };
    return {
      write: (chunk) => advance(chunk, chunk.length),
      skip: (n) => advance(undefined, n),
      commit: async () => {
        if (written !== blockLength) throw new StrataError('INTERNAL', `block ${blockId} has ${written} of ${blockLength} bytes`);
        await flush();
        await settle();
        if (opts.durable) await this.syncBlock(blockId);
        return written;
      },
      abort: async () => {
        await Promise.allSettled(inFlight);
        await this.removeBlock(blockId);
      },
    };
  }

  async removeBlock(id: number): Promise<void> {
    await this.markPersisted(id);
    const b = this.#blocks.get(id);
    // Reported as removed even when it was not here (or is cached again by then), so the master can clear its delete queue.
    this.#dropped.add(id);
    if (!b) return;
    for (const p of [...b.pages.values()]) await this.#drop(p, false);
    // As in #drop: a page cached again meanwhile keeps its (possibly new) block.
    if (this.#blocks.get(id) === b && b.pages.size === 0) this.#blocks.delete(id);
    this.#removed.add(id);
  }

  // ---- room, demotion, promotion ------------------------------------------

  #tierForNew(durable: boolean): Tier {
    if (durable) return this.#tiers.find((t) => !t.volatile) ?? this.#tiers[0]!;
    return this.#tiers[0]!;
  }

  /** Frees room for `bytes` more in `tier` and reserves them. Runs under the tier's mutex. */
  async #makeRoom(tier: Tier, bytes: number): Promise<void> {
    if (bytes > tier.capacity) throw new StrataError('NO_SPACE', `a ${bytes}-byte page does not fit tier ${tier.name} of ${tier.capacity} bytes`);
    const below = this.#tiers[tier.level + 1];
    const skipped = new Set<Page>();
    let asked = false;
    while (tier.used + tier.reserved + bytes > tier.capacity) {
      let victim: Page | undefined;
      const stale: Page[] = [];
      for (const p of tier.lru.candidates()) {
        // Not indexed any more (dropped): nothing to evict, only an entry to forget (else it would be picked forever).
        if (!this.#indexed(p)) {
          stale.push(p);
          continue;
        }
        if (p.moving || skipped.has(p)) continue;
        if (!below && !this.#droppable(p)) continue;
        victim = p;
        break;
      }
      for (const p of stale) tier.lru.delete(key(p.block, p.index));
      if (!victim) {
        if (stale.length > 0) continue;
        // Once: pins of what the store already has are let go only when the master says so.
        if (!asked && this.#askUnpins) {
          asked = true;
          if ((await this.#askUnpins()) > 0) {
            skipped.clear();
            continue;
          }
        }
        throw new TierFullOfPinnedPagesError(`tier ${tier.name} is full of pages that cannot be dropped (pinned or not persisted yet)`);
      }
      if (below) {
        try {
          if ((await this.#move(victim, below)) !== 'kept') continue;
          skipped.add(victim); // may not go there: another victim, or another way out below
          continue;
        } catch (err) {
          if (!(err instanceof StrataError) || err.code !== 'NO_SPACE') throw err;
          // Nowhere below to put it: drop it if that loses nothing, else leave it.
          if (!this.#droppable(victim)) {
            skipped.add(victim);
            continue;
          }
        }
      }
      await this.#drop(victim);
      this.stats.evictedPages++;
      this.stats.evictedBytes += victim.dataBytes;
    }
    tier.reserved += bytes;
  }

  /**
   * Moves a page file to another tier (demotion or promotion). 'kept': it stays where it
   * is (bytes that exist nowhere else do not go to a volatile tier); 'gone': it was
   * dropped meanwhile.
   */
  async #move(page: Page, to: Tier): Promise<'moved' | 'kept' | 'gone'> {
    if (page.moving || page.tier === to) return 'kept';
    const unsaved = this.#unpersisted.has(page.block);
    // As #tierForNew places them: a reboot must not take the only copy of a file whose close succeeded.
    if (unsaved && to.volatile && this.#tiers.some((t) => !t.volatile)) return 'kept';
    const from = page.tier;
    const fileBytes = page.dataBytes + PAGE_TRAILER_BYTES;
    page.moving = true;
    try {
      // Demotion already holds `from`'s mutex, promotion holds none: locks are always taken upper tier first.
      await to.mutex.run(() => this.#makeRoom(to, fileBytes));
      const src = this.#path(from, page.block, page.index);
      const dst = this.#path(to, page.block, page.index);
      const wasVerified = page.verified !== undefined;
      // The index follows the file as soon as it is in its new place, before the fsyncs: a reader looking
      // meanwhile at the old path finds nothing, and an unsaved page has no other copy to be read from.
      let switched = false;
      const switchOver = () => {
        if (!this.#indexed(page)) return;
        to.reserved -= fileBytes;
        to.used += fileBytes;
        from.used -= fileBytes;
        from.lru.delete(key(page.block, page.index));
        to.lru.add(key(page.block, page.index), page);
        page.tier = to;
        // Renamed: its ctime changed. A reader until the identity is taken again below verifies the bytes.
        page.verified = undefined;
        switched = true;
      };
      try {
        await makeBlockDir(nodePath.dirname(dst));
        // Replaced or dropped while this waited for room: the file at `src` is now another page's, or none.
        if (!this.#indexed(page)) throw Object.assign(new Error('page dropped while it waited to move'), { code: 'ENOENT' });
        try {
          await placeFile(src, dst, false, () => this.#indexed(page));
          switchOver();
          if (unsaved) await syncDir(nodePath.dirname(dst));
        } catch (err) {
          if (switched || (err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
          const tmp = nodePath.join(to.tmp, tmpName(page.block, page.index));
          await fsp.copyFile(src, tmp);
          // The only copy of these bytes: on disk in its new place before the old one goes.
          if (unsaved) await syncFile(tmp);
          await placeFile(tmp, dst);
          switchOver();
          if (unsaved) await syncDir(nodePath.dirname(dst));
          // Not when the page was replaced meanwhile: `src` is then the new page's file.
          if (switched) await fsp.rm(src, { force: true });
        }
      } catch (err) {
        if (!switched) {
          to.reserved -= fileBytes;
          // Dropped meanwhile (its block deleted, its file with it): there is nothing to move, and its room is free.
          if (!this.#indexed(page)) {
            await fsp.rmdir(nodePath.dirname(dst)).catch(() => undefined);
            return 'gone';
          }
        }
        throw toStrataError(err, `move page ${page.block}/${page.index} to ${to.name}`);
      }
      if (!switched) {
        to.reserved -= fileBytes;
        // Dropped while it moved: #drop counted it out of `from`; the file moved here belongs to no page, unless
        // the same page was cached again in this tier meanwhile (same block, same bytes: then it is that page's).
        if (this.#blocks.get(page.block)?.pages.get(page.index)?.tier !== to) {
          await fsp.rm(dst, { force: true });
          await fsp.rmdir(nodePath.dirname(dst)).catch(() => undefined);
        }
        return 'gone';
      }
      // A verified page stays verified: our own move, not a change of content.
      if (wasVerified && this.#indexed(page) && page.tier === to && page.verified === undefined) page.verified = await identityOfPath(dst).catch(() => undefined);
      if (to.level > from.level) this.stats.demotedBytes += page.dataBytes;
      else this.stats.promotedBytes += page.dataBytes;
      this.#dirty.add(page.block);
      await fsp.rmdir(nodePath.dirname(src)).catch(() => undefined);
      return 'moved';
    } finally {
      page.moving = false;
    }
  }

  /** Promotes every page of a block to the top tier (CACHE_PROMOTE). */
  async promote(blockId: number): Promise<void> {
    const top = this.#tiers[0]!;
    for (const p of [...(this.#blocks.get(blockId)?.pages.values() ?? [])]) if (p.tier !== top) await this.#move(p, top).catch(() => undefined);
  }

  #indexed(page: Page): boolean {
    return this.#blocks.get(page.block)?.pages.get(page.index) === page;
  }

  async #drop(page: Page, markDirty = true): Promise<void> {
    const b = this.#blocks.get(page.block);
    if (!b || b.pages.get(page.index) !== page) return;
    b.pages.delete(page.index);
    page.tier.lru.delete(key(page.block, page.index));
    page.tier.used -= page.dataBytes + PAGE_TRAILER_BYTES;
    const file = this.#path(page.tier, page.block, page.index);
    await fsp.rm(file, { force: true });
    await fsp.rmdir(nodePath.dirname(file)).catch(() => undefined);
    // Only while it is still the block indexed: a page written meanwhile, after another drop emptied
    // this one, went into a new one, which must stay.
    if (b.pages.size === 0 && this.#blocks.get(page.block) === b) {
      this.#blocks.delete(page.block);
      this.#removed.add(page.block);
    }
    if (markDirty) this.#dirty.add(page.block);
  }

  // ---- background verification ---------------------------------------------

  /**
   * Verifies every page not verified since start (or changed on disk), at most
   * `bytesPerSec`. Returns how many pages failed. Stops early when `stop()` says so.
   */
  async scrub(bytesPerSec: number, stop: () => boolean = () => false): Promise<number> {
    let bad = 0;
    const pages: Page[] = [];
    for (const b of this.#blocks.values()) for (const p of b.pages.values()) pages.push(p);
    for (const p of pages) {
      if (stop()) break;
      if (p.moving || this.#blocks.get(p.block)?.pages.get(p.index) !== p) continue;
      const file = this.#path(p.tier, p.block, p.index);
      const fh = await fsp.open(file, 'r').catch(() => undefined);
      if (!fh) continue;
      try {
        const ident = await identityOf(fh);
        if (sameIdentity(p.verified, ident)) continue;
        const r = await verifyPage(fh, ident.size, p.block, p.index);
        if (r.ok) {
          p.verified = ident;
          const blk = this.#blocks.get(p.block);
          if (blk) blk.length = r.trailer.blockLength;
        } else {
          bad++;
          await this.#dropCorrupt(p, r.reason);
        }
      } finally {
        await fh.close();
      }
      if (bytesPerSec > 0) await new Promise((r) => setTimeout(r, (1000 * (p.dataBytes + PAGE_TRAILER_BYTES)) / bytesPerSec));
    }
    return bad;
  }

  // ---- helpers -------------------------------------------------------------

  /** Creates a block's directory in a tier once (ENOENT later means it was removed: create again). */
  async #blockDir(tier: Tier, blockId: number): Promise<void> {
    const b = this.#blocks.get(blockId);
    if (b?.pages.size && [...b.pages.values()].some((p) => p.tier === tier)) return;
    await makeBlockDir(nodePath.join(tier.dir, String(blockId)));
  }

  #blockOf(id: number): Block {
    let b = this.#blocks.get(id);
    if (!b) {
      b = { id, length: undefined, pages: new Map() };
      this.#blocks.set(id, b);
    }
    return b;
  }

  #path(tier: Tier, blockId: number, pageIndex: number): string {
    if (!Number.isSafeInteger(blockId) || blockId < 0 || !Number.isSafeInteger(pageIndex) || pageIndex < 0) throw new StrataError('BAD_REQUEST', `bad page ${blockId}/${pageIndex}`);
    return nodePath.join(tier.dir, String(blockId), String(pageIndex));
  }
}

/**
 * Renames a finished page file into its block's directory. Dropping another page of the block
 * meanwhile removes that directory once it is empty (#drop), which can fall between making it
 * and this rename (two pages of a block replaced at once): then it is made again. `sync`: with
 * synchronous calls (see putPage's inline writes).
 */
async function placeFile(from: string, to: string, sync = false, stillOurs: () => boolean = () => existsSync(from)): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      if (sync) renameSync(from, to);
      else await fsp.rename(from, to);
      return;
    } catch (err) {
      // ENOENT of the source (it went) is final; of the destination's directory, it is made again.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5 || !stillOurs()) throw err;
      await makeBlockDir(nodePath.dirname(to), sync);
    }
  }
}

/**
 * Makes a block's directory in its tier (which exists). Not recursive: a recursive mkdir
 * that finds the directory stats it next, and fails ENOENT when another page's drop
 * removed it in between.
 */
async function makeBlockDir(dir: string, sync = false): Promise<void> {
  try {
    if (sync) mkdirSync(dir);
    else await fsp.mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

function key(blockId: number, pageIndex: number): string {
  return `${blockId}:${pageIndex}`;
}

/** Largest page written from the event loop on a memory tier (see putPage). */
const INLINE_WRITE_MAX = 4 * 1024 * 1024;

/** This process's random prefix: a tier's temp names never meet those a crashed run left. */
const TMP_PREFIX = randomBytes(6).toString('hex');
let tmpMade = 0;

/**
 * A new temp name for a page being written: the prefix and a count (random bytes per
 * page were 45 ms of the worker's CPU per GiB of cold reads, 1 MiB pages).
 */
function tmpName(blockId: number, pageIndex: number): string {
  return `${blockId}.${pageIndex}.${TMP_PREFIX}-${++tmpMade}`;
}

/** Writes `parts` from `pos` into a file it creates at `path` (which must not exist). */
function writeNewFileSync(path: string, parts: Buffer[], pos: number): void {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  try {
    const total = parts.reduce((n, b) => n + b.length, 0);
    const done = writevSync(fd, parts, pos);
    if (done < total) {
      const rest = Buffer.concat(parts).subarray(done);
      let off = 0;
      while (off < rest.length) off += writeSync(fd, rest, off, rest.length - off, pos + done + off);
    }
  } finally {
    closeSync(fd);
  }
}

async function writeAll(fh: fsp.FileHandle, data: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < data.length) off += (await fh.write(data, off, data.length - off, pos + off)).bytesWritten;
}

async function syncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** fsync of a directory, so entries made or renamed in it survive a power loss; best effort (some file systems refuse it). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the file itself is synced.
  } finally {
    await fh.close();
  }
}

const zeroCrcs = new Map<number, number>();
/** CRC-32 of `n` zero bytes (holes), cached per length. */
function zeroCrc(n: number): number {
  let c = zeroCrcs.get(n);
  if (c === undefined) {
    c = pageCrc(Buffer.alloc(n));
    if (zeroCrcs.size < 64) zeroCrcs.set(n, c);
  }
  return c;
}

/** Parses `--tier NAME:DIR:SIZE` (SIZE like 4GiB). */
export function parseTierSpec(spec: string, parseBytes: (s: string) => number | undefined): TierSpec {
  const first = spec.indexOf(':');
  const last = spec.lastIndexOf(':');
  if (first <= 0 || last === first) throw new StrataError('CONFIG', `tier '${spec}' must look like NAME:DIR:SIZE, e.g. mem:/dev/shm/strata:4GiB`);
  const name = spec.slice(0, first);
  const dir = spec.slice(first + 1, last);
  const size = parseBytes(spec.slice(last + 1));
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,15}$/.test(name)) throw new StrataError('CONFIG', `tier name '${name}' must be a short word such as mem, ssd, hdd`);
  if (!dir) throw new StrataError('CONFIG', `tier '${spec}' has no directory`);
  if (size === undefined || size <= 0) throw new StrataError('CONFIG', `tier '${spec}': '${spec.slice(last + 1)}' is not a byte size such as 4GiB`);
  return { name: name.toUpperCase(), dir, capacityBytes: size };
}
