/**
 * Short-circuit reads: when a worker runs on this host, read its page files
 * directly instead of over HTTP. Page files appear only when complete (renamed
 * into place) and a block id never changes content, so an open page file always
 * holds the right bytes, even after the worker moved or evicted it. Each page
 * file is checked against its checksum the first time this client opens that
 * version of it (see common/page-file.ts), and an open one is compared with the
 * file on disk again after a second, so a file changed on disk is not served
 * here either; it falls back to HTTP, where the worker drops and refetches it.
 * Any page that is not on local disk sends the whole range to HTTP, which fills it.
 */

import { promises as fsp, fstatSync, readFileSync, readSync } from 'node:fs';
import * as nodePath from 'node:path';
import { hostIdentity } from '../common/host';
import { PAGE_TRAILER_BYTES, PageIdentity, identityOfFd, onMemoryFs, pageRelPath, sameIdentity, verifyPage } from '../common/page-file';
import type { PageFileInfo, WorkerInfo } from '../common/protocol';

interface OpenPage {
  fh: Promise<fsp.FileHandle>;
  /** The descriptor, once open. */
  fd?: number;
  refs: number;
  /** Identity of the version of the file that verified. */
  verified: PageIdentity | undefined;
  /** When the identity was last compared with the file on disk. */
  checkedAt: number;
  dataBytes: number;
  /** Dropped from the cache (failed a check): closed once the last holder lets go. */
  dead?: boolean;
}


/** Reads up to this size are done synchronously (random 4-16 KiB reads: no thread-pool round trip). */
const SYNC_READ_MAX = 16 * 1024;
/** How long a verified, open page file is trusted before its identity is checked again. */
const RECHECK_MS = 1000;
/** Verified pages kept in memory: a sequential reader reads each page from disk once (to verify it). */
const VERIFIED_PAGES_KEPT = 8;
/** Verified identities remembered (~100 bytes each): 64 GiB of 1 MiB pages. */
const MAX_VERIFIED = 65536;

/**
 * Page files kept open: enough for random reads over a few GiB of 1 MiB pages
 * without an open/fstat/close per read, within a quarter of the descriptor limit.
 */
function defaultMaxOpen(): number {
  let soft = 1024;
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const v = Number(line?.split(/\s+/)[3]);
    if (Number.isFinite(v) && v > 0) soft = v;
  } catch {
    // not Linux: the conservative default
  }
  return Math.max(64, Math.min(4096, Math.floor(soft / 4)));
}

/**
 * Where a worker's tier keeps a page file (the layout of worker/page-store.ts, pageRelPath).
 * Built on every read of a page: concatenated, since tier dirs come normalized from the worker.
 */
function pageFile(tierDir: string, blockId: number, pageIndex: number): string {
  return `${tierDir}/${pageRelPath(blockId, pageIndex)}`;
}

/** A range of an open page file; its descriptor stays open while held (see `ShortCircuitReader.ranges`). */
export interface PageRange {
  readonly fd: number;
  readonly pos: number;
  readonly len: number;
  /** The open file it belongs to: what holding counts on. */
  readonly page: { refs: number };
  /** In a tier on a memory file system: reading it cannot fail midway. */
  readonly inMemory: boolean;
}

/** A whole page file in a memory tier, held open for the caller (see `readInto`'s `keep`). */
export interface KeptPage {
  /** The whole page: let go of it with `release([range])` once done. */
  range: PageRange;
  /** Where the page starts in its block. */
  pageStart: number;
}

export interface ShortCircuitOptions {
  /** This client's host identity; a worker reporting the same one is local. Default hostIdentity(). */
  hostId?: string;
  /** Page files kept open. Default a quarter of the descriptor limit, 64-4096. */
  maxOpen?: number;
  /** How often kept page files are checked for having been removed (ms). Default 2000. */
  sweepMs?: number;
}

export class ShortCircuitReader {
  readonly #host: string;
  /** Workers whose tier dirs we could not read (other user, container): HTTP only. */
  readonly #unusable = new Set<number>();
  /** Open page files, most recently used last; a random reader should not pay open+verify per 4 KiB. */
  readonly #open = new Map<string, OpenPage>();
  readonly #maxOpen: number;
  /** Bytes served from local page files, for metrics and tests. */
  bytesRead = 0;
  /** Page files that failed verification here. */
  corruptPages = 0;
  /** Page files this client checked by hashing them (the worker had not named that version of them as its own). */
  pagesHashed = 0;
  /** Identities of page files verified here, by file, so a reopened file is not hashed again. */
  readonly #verified = new Map<string, PageIdentity>();
  /** The bytes of the most recently verified pages, by file. */
  readonly #recent = new Map<string, { ident: PageIdentity; data: Buffer }>();
  /** Ranges handed out and not let go yet (`ranges` and `hold` add, `release` takes away). */
  #rangesHeld = 0;
  /** Tier directories by whether they are on a memory file system. */
  readonly #memoryDirs = new Map<string, boolean>();

  /** Closes kept page files the worker removed (see #sweep). */
  readonly #sweeper: NodeJS.Timeout;

  constructor(opts: ShortCircuitOptions = {}) {
    this.#host = hostIdentity(opts.hostId);
    this.#maxOpen = opts.maxOpen ?? defaultMaxOpen();
    this.#sweeper = setInterval(() => this.#sweep(), opts.sweepMs ?? 2000).unref();
  }

  /**
   * Closes the kept page files that the worker has removed (evicted, or its block deleted). A
   * removed file's space is freed only when its last descriptor closes: thousands kept open
   * would hold GiBs of a memory tier outside the worker's quota, and its writes would find the
   * file system full. Only files nobody holds, and only those already opened.
   */
  #sweep(): void {
    for (const [file, op] of this.#open) {
      const fd = op.fd;
      if (op.refs > 0 || fd === undefined) continue;
      let removed: boolean;
      try {
        removed = fstatSync(fd).nlink === 0;
      } catch {
        removed = true;
      }
      if (!removed) continue;
      this.#open.delete(file);
      this.#verified.delete(file);
      this.#recent.delete(file);
      void op.fh.then((h) => h.close()).catch(() => undefined);
    }
  }

  isLocal(w: WorkerInfo): boolean {
    return w.host === this.#host && Array.isArray(w.tiers) && w.tiers.length > 0 && w.pageSize > 0 && !this.#unusable.has(w.id);
  }

  /** Opens (or reuses) a page file, verifying it when this version was not verified yet. */
  async #acquire(w: WorkerInfo, blockId: number, pageIndex: number): Promise<{ file: string; op: OpenPage; tierDir: string } | undefined> {
    const files = w.tiers.map((tier) => pageFile(tier.dir, blockId, pageIndex));
    // A page already open in a lower tier is used without first failing to open it in the upper ones.
    const open = files.findIndex((f) => this.#open.has(f));
    for (const file of open > 0 ? [files[open]!, ...files.filter((_f, i) => i !== open)] : files) {
      let op = this.#open.get(file);
      if (op) {
        this.#open.delete(file);
        this.#open.set(file, op);
      } else {
        const known = this.#verified.get(file);
        op = { fh: fsp.open(file, 'r'), refs: 0, verified: known, checkedAt: 0, dataBytes: known ? known.size - PAGE_TRAILER_BYTES : 0 };
        const pending = op;
        op.fh.then(
          (h) => void (pending.fd = h.fd),
          () => {
            if (this.#open.get(file) === pending) this.#open.delete(file);
          },
        );
        this.#open.set(file, op);
      }
      // Held before trimming: the page being opened must not be the one closed to make room.
      op.refs++;
      this.#trim();
      let fh: fsp.FileHandle;
      try {
        fh = await op.fh;
      } catch (err) {
        op.refs--;
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EACCES' || code === 'EPERM') {
          this.#unusable.add(w.id);
          return undefined;
        }
        continue; // not in this tier
      }
      try {
        const now = Date.now();
        if (!op.verified || now - op.checkedAt >= RECHECK_MS) {
          // fstat of an open file reads no disk: done here, not as a thread-pool round trip per recheck.
          const ident = identityOfFd(fh.fd);
          op.checkedAt = now;
          if (!sameIdentity(op.verified, ident)) {
            this.#recent.delete(file);
            this.pagesHashed++;
            const r = await verifyPage(fh, ident.size, blockId, pageIndex);
            if (!r.ok) {
              this.corruptPages++;
              this.#forget(file, op);
              this.#unref(op);
              return undefined;
            }
            op.verified = ident;
            op.dataBytes = ident.size - PAGE_TRAILER_BYTES;
            this.#verified.delete(file);
            this.#verified.set(file, ident);
            if (this.#verified.size > MAX_VERIFIED) this.#verified.delete(this.#verified.keys().next().value!);
            this.#recent.set(file, { ident, data: r.data });
            if (this.#recent.size > VERIFIED_PAGES_KEPT) this.#recent.delete(this.#recent.keys().next().value!);
          }
        }
      } catch {
        this.#forget(file, op);
        this.#unref(op);
        return undefined;
      }
      return { file, op, tierDir: w.tiers[files.indexOf(file)]!.dir };
    }
    return undefined;
  }

  /** Drops a page file from the cache; it is closed when nobody holds it any more (see #unref). */
  #forget(file: string, op: OpenPage): void {
    if (this.#open.get(file) === op) this.#open.delete(file);
    this.#verified.delete(file);
    op.dead = true;
  }

  #unref(op: OpenPage): void {
    op.refs--;
    // A held range's descriptor must stay open: a reply may still read from it.
    if (op.dead && op.refs === 0) void op.fh.then((h) => h.close()).catch(() => undefined);
  }

  #trim(): void {
    for (const [file, op] of this.#open) {
      if (this.#open.size <= this.#maxOpen) break;
      if (op.refs > 0) continue;
      this.#open.delete(file);
      void op.fh.then((h) => h.close()).catch(() => undefined);
    }
  }

  /**
   * Trusts page files the worker itself just wrote or verified (a range load's
   * answer): exactly those versions, so this client does not hash them again.
   */
  trust(w: WorkerInfo, blockId: number, pages: PageFileInfo[]): void {
    for (const p of pages) {
      const tier = w.tiers.find((t) => t.name === p.tier);
      if (!tier) continue;
      const file = pageFile(tier.dir, blockId, p.index);
      this.#verified.delete(file);
      this.#verified.set(file, { ino: p.ino, ctimeNs: BigInt(p.ctimeNs), size: p.size });
      if (this.#verified.size > MAX_VERIFIED) this.#verified.delete(this.#verified.keys().next().value!);
    }
  }

  /**
   * Whether this client verified, or was told by the worker, some version of every
   * page file of `[offset, offset+length)` (it still checks that version on open).
   */
  knowsPages(w: WorkerInfo, blockId: number, offset: number, length: number): boolean {
    const ps = w.pageSize;
    for (let p = Math.floor(offset / ps); p * ps < offset + length; p++) {
      if (!w.tiers.some((tier) => this.#verified.has(pageFile(tier.dir, blockId, p)))) return false;
    }
    return true;
  }

  /**
   * The page-file ranges holding `[offset, offset+length)` of a block, each file
   * held open (verified as for a read) until `release`; undefined when some page
   * is not on local disk. Fewer bytes than asked only past the block's end.
   * For replies the kernel takes straight from the files (no copy through here).
   */
  async ranges(w: WorkerInfo, blockId: number, offset: number, length: number): Promise<PageRange[] | undefined> {
    const ps = w.pageSize;
    const out: PageRange[] = [];
    let n = 0;
    while (n < length) {
      const pos = offset + n;
      const pageIndex = Math.floor(pos / ps);
      const got = await this.#acquire(w, blockId, pageIndex);
      if (!got) {
        this.release(out);
        return undefined;
      }
      const inPage = pos - pageIndex * ps;
      const want = Math.min(length - n, got.op.dataBytes - inPage);
      if (want <= 0) {
        this.#unref(got.op);
        this.#trim();
        break; // past the block's end
      }
      out.push({ fd: (await got.op.fh).fd, pos: inPage, len: want, page: got.op, inMemory: this.#inMemory(got.tierDir) });
      this.#rangesHeld++;
      n += want;
    }
    this.bytesRead += n;
    return out;
  }

  /** Whether a tier directory is on a memory file system (tmpfs, ramfs), where reading cannot fail. */
  #inMemory(dir: string): boolean {
    let known = this.#memoryDirs.get(dir);
    if (known === undefined) {
      known = onMemoryFs(dir);
      this.#memoryDirs.set(dir, known);
    }
    return known;
  }

  /** Holds the files of `ranges` open once more (for a reply that outlives its window). */
  hold(ranges: readonly PageRange[]): void {
    for (const r of ranges) r.page.refs++;
    this.#rangesHeld += ranges.length;
  }

  /** Lets go of `ranges`' files (once per `ranges` or `hold`). */
  release(ranges: readonly PageRange[]): void {
    for (const r of ranges) this.#unref(r.page as OpenPage);
    this.#rangesHeld -= ranges.length;
    this.#trim();
  }

  /** Ranges handed out and not let go yet. */
  get rangesHeld(): number {
    return this.#rangesHeld;
  }

  /**
   * Whether more ranges may be held: held page files stay open past the limit of
   * open files, so many readers each holding windows of ranges must fall back to
   * reading bytes before this process runs out of descriptors.
   */
  canHold(): boolean {
    return this.#rangesHeld < this.#maxOpen / 2;
  }

  /**
   * Reads into `into`; undefined when some page of the range is not on local disk (use HTTP then).
   * `keep` is offered each page read that is in a memory tier, held open; when it answers
   * false the page is let go at once, else the caller lets go of it later.
   */
  async readInto(w: WorkerInfo, blockId: number, offset: number, length: number, into: Buffer, at: number, keep?: (p: KeptPage) => boolean): Promise<number | undefined> {
    const ps = w.pageSize;
    let n = 0;
    while (n < length) {
      const pos = offset + n;
      const pageIndex = Math.floor(pos / ps);
      const got = await this.#acquire(w, blockId, pageIndex);
      if (!got) return undefined;
      try {
        const fh = await got.op.fh;
        const inPage = pos - pageIndex * ps;
        const want = Math.min(length - n, got.op.dataBytes - inPage);
        if (want <= 0) break; // past the block's end
        if (keep && this.canHold() && this.#inMemory(got.tierDir)) {
          const range: PageRange = { fd: fh.fd, pos: 0, len: got.op.dataBytes, page: got.op, inMemory: true };
          this.hold([range]);
          if (!keep({ range, pageStart: pageIndex * ps })) this.release([range]);
        }
        const kept = this.#recent.get(got.file);
        if (kept && sameIdentity(got.op.verified, kept.ident)) {
          kept.data.copy(into, at + n, inPage, inPage + want);
          n += want;
          continue;
        }
        let m = 0;
        if (want <= SYNC_READ_MAX) {
          // A small read costs less than a trip through the thread pool: read it in place.
          m = readSync(fh.fd, into, at + n, want, inPage);
        }
        while (m < want) {
          const { bytesRead } = await fh.read(into, at + n + m, want - m, inPage + m);
          if (bytesRead === 0) break;
          m += bytesRead;
        }
        n += m;
        if (m < want) break;
      } finally {
        this.#unref(got.op);
        this.#trim();
      }
    }
    this.bytesRead += n;
    return n;
  }

  /** Closes every cached page file. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    const all = [...this.#open.values()];
    this.#open.clear();
    this.#recent.clear();
    // A page file a range still holds is closed when that range is let go (a reply may be reading it).
    for (const op of all) op.dead = true;
    await Promise.all(all.filter((op) => op.refs === 0).map((op) => op.fh.then((h) => h.close()).catch(() => undefined)));
  }
}
