/**
 * The FUSE adapter on Strata's own libfuse3 binding: each kernel operation (over
 * inodes) becomes one call into StrataFileSystem; the binding turns the result or
 * the thrown error (through the one errno table) into the reply. Nothing else
 * lives here.
 */

import { constants as fsConstants, promises as fsp } from 'node:fs';
import { StrataError, toErrno } from '../common/errors';
import type { Logger } from '../common/log';
import { LIST_PAGE_MAX, POSIX_ACL_XATTRS, type FileAttributes, type FileType, type Timespec } from '../common/protocol';
import type { StrataFileSystem } from '../client/file-system';
import type { KeepPage } from '../client/file-reader';
import type { PageRange } from '../client/short-circuit';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Attr, Entry, FuseSession, LowLevelHandlers, RENAME_EXCHANGE, RENAME_NOREPLACE } from './native';
import { unmountLazily } from './native/fusectl';

const S_IFREG = 0o100000;
const { O_TRUNC, O_EXCL, O_WRONLY, O_RDWR } = fsConstants;
const O_ACCMODE = 3;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFMT = 0o170000;

/** Whether the caller may open a file of `a` with `flags`, as the kernel's permission check (default_permissions) would. */
function mayOpen(ctx: { uid: number; gid: number; groups(): number[] }, a: FileAttributes, flags: number): boolean {
  if (ctx.uid === 0) return true;
  const acc = flags & O_ACCMODE;
  const want = (acc === O_WRONLY ? 0 : 4) | (acc === O_WRONLY || acc === O_RDWR || flags & O_TRUNC ? 2 : 0);
  const bits = ctx.uid === a.uid ? (a.mode >> 6) & 7 : ctx.gid === a.gid || ctx.groups().includes(a.gid) ? (a.mode >> 3) & 7 : a.mode & 7;
  return (bits & want) === want;
}

/**
 * How long the kernel may answer stat and path lookups without asking this mount.
 * `attrTimeoutMs`/`entryTimeoutMs` (1 s each by default, as JuiceFS) bound the
 * window in which a change made through another mount can go unseen (opens still
 * check; see `invalidate` below). An answer the mount's metadata cache vouches for
 * (kept exact by the master's change feed) gets `exactTimeoutMs` instead: the feed
 * reports every change, and the mount then drops the kernel's copy at once
 * (KernelView), so a long timeout costs no staleness beyond the feed's delay.
 * 0 turns that off.
 */
export interface KernelCacheTimeouts {
  attrTimeoutMs: number;
  entryTimeoutMs: number;
  exactTimeoutMs?: number;
}
export const DEFAULT_KERNEL_CACHE: KernelCacheTimeouts = { attrTimeoutMs: 1000, entryTimeoutMs: 1000, exactTimeoutMs: 0 };

/** What stat shows of an inode; equal strings mean the kernel's copy is current. */
function visible(a: FileAttributes): string {
  return `${a.type}:${a.mode}:${a.nlink}:${a.uid}:${a.gid}:${a.size}:${a.rdev ?? 0}:${a.mtime.sec}.${a.mtime.nsec}:${a.ctime.sec}.${a.ctime.nsec}:${a.atime.sec}.${a.atime.nsec}`;
}

/**
 * What the kernel was told (attributes per inode, inode per name), so that a change
 * the feed reports becomes a kernel invalidation exactly when the kernel's copy is
 * no longer what the metadata cache holds. The mount's own changes, already answered
 * to the kernel, are then not invalidated again. Entries pushed out of these maps
 * are invalidated too, so the kernel never keeps a long-lived copy nobody follows.
 */
class KernelView {
  /** What the kernel was told of each inode's attributes (`seen`: visible()), `told` counting up. */
  readonly #attrs: LRUCache<number, { seen: string; told: number }>;
  #told = 0;
  readonly #entries: LRUCache<string, { parent: number; name: string; ino: number }>;

  constructor(
    readonly invalidateAttrs: (ino: number) => void,
    readonly invalidateEntry: (parent: number, name: string) => void,
  ) {
    const max = 100_000;
    this.#attrs = new LRUCache({ max, dispose: (_v, ino, reason) => reason === 'evict' && this.invalidateAttrs(ino) });
    this.#entries = new LRUCache({ max, dispose: (e, _k, reason) => reason === 'evict' && this.invalidateEntry(e.parent, e.name) });
  }

  toldAttrs(a: FileAttributes): void {
    this.#attrs.set(a.ino, { seen: visible(a), told: ++this.#told });
  }

  /** Which telling of `ino`'s attributes the kernel has now: taken before a change, for dirChanged. */
  toldMark(ino: number): number | undefined {
    return this.#attrs.peek(ino)?.told;
  }

  /**
   * The kernel dropped its copy of a directory's attributes itself: it does after
   * every create, mkdir, mknod, link, symlink, unlink, rmdir and rename in it that
   * succeeded, and asks again when next needed. Nothing to notify when the feed
   * reports the change (in a loop of creates, one notification per create).
   */
  dirChanged(ino: number, before: number | undefined): void {
    // Told again while the change ran (a stat of the directory): that answer may reach the kernel after
    // its own invalidation, so it is kept, and the feed's report of the change still notifies.
    if (this.#attrs.peek(ino)?.told === before) this.#attrs.delete(ino);
  }

  toldEntry(parent: number, name: string, ino: number): void {
    this.#entries.set(`${parent}/${name}`, { parent, name, ino });
  }

  /** The feed reported these changes; `attrsNow`/`entryNow` give what the metadata cache vouches for now. */
  changed(inos: number[], names: [number, string][], attrsNow: (ino: number) => FileAttributes | undefined, entryNow: (parent: number, name: string) => number | null | undefined): number[] {
    const dropped: number[] = [];
    for (const ino of inos) {
      const told = this.#attrs.peek(ino);
      if (told === undefined) continue;
      const now = attrsNow(ino);
      if (now && visible(now) === told.seen) continue;
      this.#attrs.delete(ino);
      this.invalidateAttrs(ino);
      dropped.push(ino);
    }
    for (const [parent, name] of names) {
      const key = `${parent}/${name}`;
      const told = this.#entries.peek(key);
      if (told === undefined) continue;
      if (entryNow(parent, name) === told.ino) continue;
      this.#entries.delete(key);
      this.invalidateEntry(parent, name);
    }
    return dropped;
  }

  /** The kernel moved its dentry (rename) or swapped two (exchange): follow it, or a later change would go unseen. */
  renamed(parent: number, name: string, newParent: number, newName: string, exchange: boolean): void {
    const a = this.#entries.peek(`${parent}/${name}`);
    const b = this.#entries.peek(`${newParent}/${newName}`);
    this.#entries.delete(`${parent}/${name}`);
    this.#entries.delete(`${newParent}/${newName}`);
    // No record of the source: the feed reported this very rename before its reply came
    // (and dropped the record), yet the kernel moves its dentry, timeout and all. Record
    // the new name with no inode, so any later change of that name drops the kernel's copy.
    this.toldEntry(newParent, newName, a ? a.ino : -1);
    if (exchange) this.toldEntry(parent, name, b ? b.ino : -1);
  }

  /** Nothing the kernel holds is vouched for any more: drop it all. */
  reset(): void {
    for (const ino of this.#attrs.keys()) this.invalidateAttrs(ino);
    for (const e of this.#entries.values()) this.invalidateEntry(e.parent, e.name);
    // clear() disposes with reason 'delete', which invalidates nothing more.
    this.#attrs.clear();
    this.#entries.clear();
  }
}

/**
 * Which directory listings the kernel may keep (FOPEN_CACHE_DIR) and serve again
 * without asking: each opendir says whether the kernel's copy, if it has one, is
 * still the directory's listing. It is when this mount last listed the directory
 * from its start as of feed seq `asOf`, within the time to live, and the feed has
 * reported no name in it changed after `asOf`. This mount's own changes in it need
 * no record: the kernel drops its listing after each of them itself.
 */
class KernelListings {
  /** Per directory: the last listing (asOf; until when the master vouches for it) and the last name change the feed reported in it. */
  readonly #dirs: LRUCache<number, { asOf?: number; at?: number; freshForMs?: number; changed: number }>;
  /** Name changes of directories pushed out of #dirs: a listing older than the newest of them is not kept. */
  #floor = 0;

  /** `drop` makes the kernel let go of its listing of a directory no longer followed here. */
  constructor(
    readonly drop: (dir: number) => void,
    max = 10_000,
  ) {
    this.#dirs = new LRUCache({
      max,
      dispose: (v, dir, reason) => {
        if (reason !== 'evict') return;
        this.#floor = Math.max(this.#floor, v.changed);
        if (v.asOf !== undefined) this.drop(dir);
      },
    });
  }

  /**
   * This mount answered a listing of `dir` from its start, as of feed seq `asOf`; the master
   * answers it without asking its store for `freshForMs` more (ListResponse.freshForMs).
   */
  listed(dir: number, asOf: number, freshForMs: number): void {
    const changed = this.#dirs.peek(dir)?.changed ?? 0;
    this.#dirs.set(dir, { asOf, at: Date.now(), freshForMs, changed });
  }

  /**
   * The feed reported a name in `dir` changed at `seq` (also before a listing's answer
   * came in). True when the kernel may hold a listing older than that: the caller drops
   * it now, so a handle already open (a rewinddir) reads it again too.
   */
  changed(dir: number, seq: number): boolean {
    const e = this.#dirs.peek(dir);
    if (!e) {
      this.#dirs.set(dir, { changed: seq });
      return false;
    }
    e.changed = Math.max(e.changed, seq);
    if (e.asOf === undefined || e.asOf >= seq) return false;
    delete e.asOf;
    return true;
  }

  /** May the kernel keep its listing of `dir`, if it has one made within `ttlMs` and the master still vouches for it? */
  keep(dir: number, ttlMs: number): boolean {
    const e = this.#dirs.peek(dir);
    if (e?.asOf === undefined || e.at === undefined || e.freshForMs === undefined) return false;
    const age = Date.now() - e.at;
    return e.asOf >= e.changed && e.asOf >= this.#floor && age < ttlMs && (e.freshForMs < 0 || age < e.freshForMs);
  }

  /** A new feed (another master) or a lost one: no listing is vouched for, and the kernel lets go of them. */
  reset(): void {
    for (const [dir, e] of this.#dirs.entries()) if (e.asOf !== undefined) this.drop(dir);
    this.#dirs.clear();
    this.#floor = 0;
  }
}

/** Where NoXattrCache keeps a copy the binding answers the kernel from (FuseSession.xattrsAbsent). */
export interface XattrMirror {
  set(ino: number, capMs: number, allMs: number): void;
  clear(): void;
}

/**
 * Inodes known to have no `security.capability`, or no extended attribute at all.
 *
 * The kernel asks for `security.capability` before every write (to drop file capabilities
 * when a file changes), which cost a master round trip per write: inodes found without
 * one are remembered for the attribute timeout, the same staleness as their mode bits.
 * `ls -l` asks for `security.selinux` and an ACL per entry (0.5 ms each, 10 s for 10,000
 * entries): entries a listing showed without any attribute, and files this mount just
 * created, are known without any. That knowledge is used only while the change-feed lease
 * runs (`leaseRuns`; the binding has the lease's end), as negative lookups are: past it, a
 * change made elsewhere may have been answered without this mount hearing of it.
 *
 * This mount's own changes and the change feed forget an inode at once (a setxattr elsewhere
 * touches ctime, so it is reported); a lost or reset feed forgets everything. The binding
 * keeps a copy and answers those getxattrs itself: 4 KiB writes ran at 25-27 MB/s when each
 * one's getxattr went through JS, 58 MB/s with none.
 */
export class NoXattrCache {
  static readonly CAPABILITY = 'security.capability';
  /**
   * Forgets per slot of inodes: an answer the master gave while a change of its inode
   * was forgotten must not be added after it (it may predate the change).
   */
  readonly #forgets = new Uint32Array(4096);
  /** Forgets per slot by this mount's own changes and resets (a listing's check: `tokens`). */
  readonly #localForgets = new Uint32Array(4096);
  /** Per slot, the latest seq of a change the feed reported. */
  readonly #feedSeq = new Float64Array(4096);
  /** Until when an inode is known without the capability, and without any attribute (0: not), as of feed seq `asOf` (-1: unknown). */
  readonly #known = new Map<number, { capUntil: number; allUntil: number; asOf: number }>();
  readonly #windowMs: number;
  readonly #mirror: XattrMirror;
  readonly #leaseRuns: () => boolean;

  constructor(windowMs: number, mirror: XattrMirror = { set: () => undefined, clear: () => undefined }, leaseRuns: () => boolean = () => false) {
    this.#windowMs = windowMs;
    this.#mirror = mirror;
    this.#leaseRuns = leaseRuns;
  }

  /** Whether `ino` is known to have no attribute `name`. */
  has(ino: number, name: string): boolean {
    const e = this.#known.get(ino);
    if (e === undefined) return false;
    const now = Date.now();
    if (e.capUntil <= now && e.allUntil <= now) {
      this.#known.delete(ino);
      return false;
    }
    return (name === NoXattrCache.CAPABILITY && e.capUntil > now) || (e.allUntil > now && this.#leaseRuns());
  }

  /** Whether `ino` is known to have no attribute at all. */
  hasNone(ino: number): boolean {
    const e = this.#known.get(ino);
    return e !== undefined && e.allUntil > Date.now() && this.#leaseRuns();
  }

  /** What `add` checks: no forget of `ino` (or a slot-mate) since this was taken. */
  token(ino: number): number {
    return this.#forgets[ino & 4095]!;
  }

  /**
   * What `addListed` checks, taken before a listing is asked for: every slot's count of this
   * mount's own forgets (and resets). Changes the feed reports are checked by their seq instead.
   */
  tokens(): Uint32Array {
    return this.#localForgets.slice();
  }

  /**
   * `ino` has no capability (and, `all`, no attribute at all: a file just made) as of feed seq
   * `asOf` (-1: unknown), if no forget crossed `token`; for the attribute timeout.
   */
  add(ino: number, asOf: number, token: number, all = false): void {
    if (this.token(ino) !== token) return;
    this.#set(ino, asOf, this.#windowMs, all ? this.#windowMs : 0);
  }

  /**
   * A listing showed `ino` without any attribute, as of feed seq `asOf`: kept for `windowMs` (the
   * feed keeps it exact), unless this mount forgot it since `tokens` were taken or the feed
   * reported a change of it (or of a slot-mate) after `asOf`.
   */
  addListed(ino: number, asOf: number, tokens: Uint32Array, windowMs: number): void {
    const slot = ino & 4095;
    if (tokens[slot] !== this.#localForgets[slot] || this.#feedSeq[slot]! > asOf) return;
    // The capability alone, as other answers, for the attribute timeout whether the lease runs or not.
    this.#set(ino, asOf, this.#windowMs, windowMs);
  }

  #set(ino: number, asOf: number, capMs: number, allMs: number): void {
    if (this.#windowMs <= 0 || capMs <= 0) return;
    const now = Date.now();
    const had = this.#known.get(ino);
    // Both kinds of knowledge hold as of the older of the two.
    const e = { capUntil: Math.max(now + capMs, had?.capUntil ?? 0), allUntil: Math.max(allMs > 0 ? now + allMs : 0, had?.allUntil ?? 0), asOf: had && had.asOf < asOf ? had.asOf : asOf };
    // Bounded: the oldest entries go first (Map keeps insertion order); the binding keeps its copy until it expires.
    if (!had && this.#known.size >= 131072) this.#known.delete(this.#known.keys().next().value!);
    this.#known.delete(ino);
    this.#known.set(ino, e);
    this.#mirror.set(ino, e.capUntil - now, e.allUntil > now ? e.allUntil - now : 0);
  }

  /** This mount changes an attribute of `ino` (or does not know what a change did). */
  forget(ino: number): void {
    this.#localForgets[ino & 4095]!++;
    this.#drop(ino);
  }

  #drop(ino: number): void {
    this.#forgets[ino & 4095]!++;
    this.#known.delete(ino);
    this.#mirror.set(ino, 0, 0);
  }

  /** The feed was lost or reset: changes may have gone unreported (and a new master counts seqs anew). */
  clear(): void {
    for (let i = 0; i < 4096; i++) {
      this.#localForgets[i]!++;
      this.#forgets[i]!++;
    }
    this.#feedSeq.fill(0);
    this.#known.clear();
    // All of it, also inodes this map let go of, which the binding may still hold.
    this.#mirror.clear();
  }

  /** The feed reports a change of `ino` at `seq`: forgets it unless known as of that change or later. */
  changed(ino: number, seq: number): void {
    const slot = ino & 4095;
    if (seq > this.#feedSeq[slot]!) this.#feedSeq[slot] = seq;
    const e = this.#known.get(ino);
    if (e && e.asOf >= seq) return;
    this.#drop(ino);
  }
}

/** Reads the binding answers itself from kept page files (FuseSession.serveReads). */
export interface ReadServer {
  serve(fh: number, ino: number, off: number, len: number, fd: number, fdOff: number): boolean;
  /** `extents`: offset, length pairs of every extent served for `fh` (saves sweeping all of them). */
  drop(fh: number, extents?: Float64Array): void;
  dropInode(ino: number): void;
}

/** The binding's unit of lookup (strata_fuse.c, RX_UNIT_SHIFT). */
const KEPT_UNIT = 1024 * 1024;

/**
 * Whole cached pages in memory tiers that random reads of open handles went through
 * are handed to the binding, which answers later reads within them itself: a 4 KiB
 * random read then costs no trip through JS. A handle's pages stay what its reads
 * would return (page files never change; a handle reads the blocks it opened), so
 * only a change made here needs care: the pages of a file go before it is written,
 * truncated or allocated here, and a read that overlaps such a change keeps nothing.
 */
export class KeptReads {
  /** Changes begun or ended here, by slot of inode: a read keeps pages only if none did since it began. */
  readonly #changes = new Uint32Array(4096);
  /** Changes in flight, by slot of inode: no read keeps pages meanwhile. */
  readonly #busy = new Uint32Array(4096);
  readonly #byHandle = new Map<number, { ino: number; ranges: PageRange[]; at: Set<number> }>();
  readonly #handlesOf = new Map<number, Set<number>>();
  #pages = 0;
  #bytes = 0;

  constructor(
    readonly server: ReadServer | undefined,
    readonly release: (ranges: readonly PageRange[]) => void,
    /** Bytes of pages kept at most (each page holds its file open, memory the worker may have let go). */
    readonly maxBytes = 1024 * 1024 * 1024,
  ) {}

  get pages(): number {
    return this.#pages;
  }

  /** Where a read of `fh` begins: what its offers are checked against. */
  keeper(fh: number, ino: number): KeepPage | undefined {
    if (!this.server) return undefined;
    const slot = ino & 4095;
    const mark = this.#changes[slot];
    return {
      offer: (at, range) => {
        // The binding looks pages up by 1 MiB unit: smaller pages (a page size below the default) would crowd each other out.
        if (this.#changes[slot] !== mark || this.#busy[slot]! > 0 || at % KEPT_UNIT !== 0 || this.#bytes + range.len > this.maxBytes) return false;
        const h = this.#byHandle.get(fh);
        if (h?.at.has(at)) return false;
        if (!this.server!.serve(fh, ino, at, range.len, range.fd, range.pos)) return false;
        if (h) {
          h.ranges.push(range);
          h.at.add(at);
        } else {
          this.#byHandle.set(fh, { ino, ranges: [range], at: new Set([at]) });
          let fhs = this.#handlesOf.get(ino);
          if (!fhs) this.#handlesOf.set(ino, (fhs = new Set()));
          fhs.add(fh);
        }
        this.#pages++;
        this.#bytes += range.len;
        return true;
      },
      stale: () => this.closing(fh),
    };
  }

  /**
   * The bytes of `ino` are about to change here: call before anything of the change runs,
   * and the returned function once it is over (a read overlapping it keeps nothing: it may
   * have read the bytes before the change took effect).
   */
  changing(ino: number): () => void {
    const slot = ino & 4095;
    this.#changes[slot]!++;
    this.#busy[slot]!++;
    const fhs = this.#handlesOf.get(ino);
    if (fhs) {
      this.server!.dropInode(ino);
      for (const fh of [...fhs]) this.#forget(fh);
    }
    let over = false;
    return () => {
      if (over) return;
      over = true;
      this.#busy[slot]!--;
      this.#changes[slot]!++;
    };
  }

  /** Runs `change` of the bytes of `ino` inside `changing` (which starts before it, synchronously). */
  async during<T>(ino: number, change: () => Promise<T>): Promise<T> {
    const done = this.changing(ino);
    try {
      return await change();
    } finally {
      done();
    }
  }

  /** `fh` is being closed. */
  closing(fh: number): void {
    const h = this.#byHandle.get(fh);
    if (!h) return;
    // `at` and `ranges` were filled together, in the same order.
    const extents = new Float64Array(h.ranges.length * 2);
    let i = 0;
    for (const at of h.at) {
      extents[i] = at;
      extents[i + 1] = h.ranges[i / 2]!.len;
      i += 2;
    }
    this.server!.drop(fh, extents);
    this.#forget(fh);
  }

  /** Everything, at unmount (the binding answers nothing any more). */
  clear(): void {
    for (const fh of [...this.#byHandle.keys()]) this.closing(fh);
  }

  /** Lets go of `fh`'s pages; the binding must have dropped them first. */
  #forget(fh: number): void {
    const h = this.#byHandle.get(fh);
    if (!h) return;
    this.#byHandle.delete(fh);
    const fhs = this.#handlesOf.get(h.ino);
    fhs?.delete(fh);
    if (fhs?.size === 0) this.#handlesOf.delete(h.ino);
    this.#pages -= h.ranges.length;
    for (const r of h.ranges) this.#bytes -= r.len;
    this.release(h.ranges);
  }
}

export interface FuseMountOptions {
  mountPoint: string;
  fs: StrataFileSystem;
  logger: Logger;
  /** Registry for FUSE operation metrics (latency and errors per op). */
  metrics?: Registry;
  /** Let other users use the mount (permissions are still enforced by the kernel). Default false. */
  allowOther?: boolean;
  debug?: boolean;
  /** The kernel's attribute and entry timeouts (DEFAULT_KERNEL_CACHE when absent). */
  kernelCache?: KernelCacheTimeouts;
}

export interface FuseMount {
  mountPoint: string;
  unmount(): Promise<void>;
}

const TYPE_BITS: Record<FileType, number> = {
  file: S_IFREG,
  directory: S_IFDIR,
  symlink: S_IFLNK,
  fifo: 0o010000,
  chardev: 0o020000,
  blockdev: 0o060000,
  socket: 0o140000,
};
const TYPE_OF_BITS: Record<number, FileType> = Object.fromEntries(Object.entries(TYPE_BITS).map(([k, v]) => [v, k as FileType]));

export function toAttr(a: FileAttributes): Attr {
  return {
    ino: a.ino,
    mode: TYPE_BITS[a.type] | a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    rdev: a.rdev ?? 0,
    size: a.size,
    blksize: 65536,
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
  };
}

/**
 * The low-level handlers of a Strata mount. `invalidate` drops the kernel's cache
 * of an inode: an open that finds a file changed since the kernel last saw its
 * attributes calls it before answering, so close-to-open holds even inside the
 * attribute timeout.
 */
export function strataHandlers(
  fs: StrataFileSystem,
  invalidate: (ino: number) => Promise<unknown> = async () => undefined,
  kernelCache: KernelCacheTimeouts = DEFAULT_KERNEL_CACHE,
  invalidateEntry: (parent: number, name: string) => void = () => undefined,
  invalidateAttrs: (ino: number) => void = (ino) => void invalidate(ino),
  xattrMirror?: XattrMirror,
  readServer?: ReadServer,
): LowLevelHandlers & { dispose(): void; keptPages(): number } {
  const ATTR_TIMEOUT = kernelCache.attrTimeoutMs / 1000;
  const ENTRY_TIMEOUT = kernelCache.entryTimeoutMs / 1000;
  const EXACT_TIMEOUT = (kernelCache.exactTimeoutMs ?? 0) / 1000;
  /** Size and mtime last told to the kernel, per inode. */
  const seen = new LRUCache<number, string>({ max: 100_000 });
  const stampOf = (size: number, mtime: Timespec) => `${size}:${mtime.sec}:${mtime.nsec}`;
  const stamp = (a: FileAttributes) => stampOf(a.size, a.mtime);
  const noXattrs = new NoXattrCache(kernelCache.attrTimeoutMs, xattrMirror, () => fs.master?.leaseRuns() ?? false);
  const kept = new KeptReads(readServer, (ranges) => fs.releaseKept(ranges));
  // Looked up when first needed: building the handlers must not touch the file system (tests list features that way).
  let view: KernelView | undefined;
  const listings = new KernelListings((dir) => void invalidate(dir));
  let nextDirFh = 1;
  let unsubscribe: (() => void) | undefined;
  const cache = () => {
    if (EXACT_TIMEOUT <= 0) return undefined;
    const c = fs.master?.cache;
    if (c && !view) {
      const v = new KernelView(invalidateAttrs, invalidateEntry);
      view = v;
      unsubscribe = c.subscribe({
        changed: (r) => {
          for (const [dir, , seq] of r.names) if (listings.changed(dir, seq)) void invalidate(dir);
          // A quiet change (a background persist, say) leaves what the kernel holds as it is: otherwise
          // each file persisted after its create would make the next stat of it ask the master again.
          const quiet = r.quiet?.length ? new Set(r.quiet) : undefined;
          const inos = quiet ? r.inos.filter((ino) => !quiet.has(ino)) : r.inos;
          v.changed(inos, r.names.map(([d, n]) => [d, n] as [number, string]), (i) => c.peekAttrs(i), (d, n) => c.peekEntry(d, n));
          // Any change may be a capability set elsewhere (setxattr touches ctime), seen or not by the kernel.
          r.inos.forEach((ino, i) => quiet?.has(ino) || noXattrs.changed(ino, r.seqs[i] ?? r.seq));
        },
        reset: () => {
          v.reset();
          listings.reset();
          noXattrs.clear();
        },
      });
    }
    return c;
  };
  /**
   * The kernel's timeout for these attributes: long when the feed-kept cache holds
   * exactly them, but not past the cache's own time to live (after it the master
   * checks the under-store again, and the kernel should ask again too).
   */
  const exactFor = (a: FileAttributes): number => {
    const c = cache();
    const now = c?.peekAttrs(a.ino);
    if (!c || !now || visible(now) !== visible(a)) return 0;
    return Math.min(EXACT_TIMEOUT, c.vouchesFor(a.ino) / 1000);
  };
  const attrTimeout = (a: FileAttributes, exact = exactFor(a)): number => {
    if (exact <= ATTR_TIMEOUT) return ATTR_TIMEOUT;
    view!.toldAttrs(a);
    return exact;
  };
  const told = (a: FileAttributes): FileAttributes => {
    seen.set(a.ino, stamp(a));
    return a;
  };
  /**
   * Before a change in these directories: returns what to pass its result through once it
   * succeeded (the kernel then drops its copy of their attributes; see KernelView.dirChanged).
   * Call it before the change starts (`changing(dir)(await change())` does).
   */
  const changing = (...dirs: number[]) => {
    const marks = dirs.map((d) => [d, view?.toldMark(d)] as const);
    return <T>(r: T): T => {
      for (const [d, m] of marks) view?.dirChanged(d, m);
      return r;
    };
  };
  const entry = (a: FileAttributes, parent?: number, name?: string): Entry => {
    const exactAttrs = exactFor(told(a));
    let entryTimeout = ENTRY_TIMEOUT;
    // The name too must be what the cache holds, for no longer than both live there.
    if (exactAttrs > 0 && parent !== undefined && name !== undefined && cache()!.peekEntry(parent, name) === a.ino) {
      const exact = Math.min(exactAttrs, cache()!.vouchesFor(a.ino, parent, name) / 1000);
      if (exact > ENTRY_TIMEOUT) {
        view!.toldEntry(parent, name, a.ino);
        entryTimeout = exact;
      }
    }
    return { attr: toAttr(a), attrTimeout: attrTimeout(a, exactAttrs), entryTimeout };
  };
  const attrReply = (a: FileAttributes) => ({ attr: toAttr(told(a)), timeout: attrTimeout(a) });
  return {
    dispose: () => {
      unsubscribe?.();
      unsubscribe = undefined;
      kept.clear();
    },
    keptPages: () => kept.pages,
    lookup: async (_ctx, parent, name) => entry(await fs.lookup(parent, name), parent, name),
    getattr: async (_ctx, ino) => attrReply(await fs.getattrIno(ino)),
    setattr: async (_ctx, ino, c, fh) => {
      const change = () => fs.setattrIno(ino, c, fh);
      return attrReply(await (c.size !== undefined ? kept.during(ino, change) : change()));
    },
    mkdir: async (ctx, parent, name, mode) => entry(changing(parent)(await fs.mkdirAt(parent, name, mode, { uid: ctx.uid, gid: ctx.gid })), parent, name),
    mknod: async (ctx, parent, name, mode, rdev) => {
      const owner = { uid: ctx.uid, gid: ctx.gid };
      if ((mode & S_IFMT) === S_IFREG || (mode & S_IFMT) === 0) {
        const done = changing(parent);
        // mknod never replaces: a file only the store has (not listed yet) is EEXIST too.
        const { attrs, fh } = await fs.createAt(parent, name, mode, { owner, lookInStore: true });
        await fs.release(fh);
        return entry(done(attrs), parent, name);
      }
      const type = TYPE_OF_BITS[mode & S_IFMT];
      if (!type) throw new StrataError('INVALID_ARGUMENT', `unknown file type in mode 0${mode.toString(8)}`);
      return entry(changing(parent)(await fs.master.mknodAt(parent, name, type, mode & 0o7777, rdev, owner)), parent, name);
    },
    link: async (_ctx, ino, newParent, newName) => entry(changing(newParent)(await fs.master.linkAt(ino, newParent, newName)), newParent, newName),
    symlink: async (ctx, parent, name, target) => entry(changing(parent)(await fs.master.symlinkAt(parent, name, target, { uid: ctx.uid, gid: ctx.gid })), parent, name),
    readlink: async (_ctx, ino) => {
      const a = await fs.getattrIno(ino);
      if (a.type !== 'symlink' || a.target === undefined) throw new StrataError('INVALID_ARGUMENT', 'not a symbolic link');
      return a.target;
    },
    setxattr: async (_ctx, ino, name, value, flags) => {
      // Without FUSE_POSIX_ACL the kernel passes ACLs through as plain xattrs. Storing one would
      // leave the mode unchanged (cp -a sets the mode through an ACL, so copies stayed 0600) and
      // the ACL unenforced; ENOTSUP makes tools fall back to chmod, as on a file system mounted noacl.
      if (POSIX_ACL_XATTRS.has(name)) throw new StrataError('NOT_SUPPORTED', `POSIX ACLs are not supported (${name})`);
      noXattrs.forget(ino);
      try {
        return await fs.master.setXattr(ino, name, value, flags);
      } finally {
        // Again: a getxattr answered before the change may have been added meanwhile.
        noXattrs.forget(ino);
      }
    },
    getxattr: async (_ctx, ino, name) => {
      if (noXattrs.has(ino, name)) throw new StrataError('NO_ATTRIBUTE', `no ${name} on inode ${ino}`);
      if (name !== NoXattrCache.CAPABILITY) return fs.master.getXattr(ino, name);
      const token = noXattrs.token(ino);
      try {
        return await fs.master.getXattr(ino, name);
      } catch (err) {
        if (err instanceof StrataError && err.code === 'NO_ATTRIBUTE') noXattrs.add(ino, -1, token);
        throw err;
      }
    },
    listxattr: async (_ctx, ino) => (noXattrs.hasNone(ino) ? [] : fs.master.listXattrs(ino)),
    removexattr: async (_ctx, ino, name) => {
      noXattrs.forget(ino);
      try {
        return await fs.master.removeXattr(ino, name);
      } finally {
        noXattrs.forget(ino);
      }
    },
    unlink: async (_ctx, parent, name) => changing(parent)(await fs.unlinkAt(parent, name)),
    rmdir: async (_ctx, parent, name) => changing(parent)(await fs.rmdirAt(parent, name)),
    rename: async (_ctx, parent, name, newParent, newName, flags) => {
      if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new StrataError('INVALID_ARGUMENT', `rename flags ${flags} are not supported`);
      const done = changing(parent, newParent);
      await fs.renameAt(parent, name, newParent, newName, flags);
      view?.renamed(parent, name, newParent, newName, (flags & RENAME_EXCHANGE) !== 0);
      done(undefined);
    },
    create: async (ctx, parent, name, mode, flags) => {
      const done = changing(parent);
      const exclusive = (flags & O_EXCL) !== 0;
      let created;
      try {
        // Most files created through a mount are written next: the create begins that write too. One that must not
        // replace a file (O_EXCL) or keeps what is there (no O_TRUNC: >>, O_RDWR) also asks whether the store has one.
        created = await fs.createAt(parent, name, mode, { owner: { uid: ctx.uid, gid: ctx.gid }, forWriting: true, lookInStore: exclusive || (flags & O_TRUNC) === 0 });
      } catch (err) {
        if (exclusive || !(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
        // O_CREAT without O_EXCL of a name that exists (in the store only, or made by another client since the
        // kernel's lookup): POSIX opens that file. The kernel checked only the directory (default_permissions).
        done(undefined);
        const found = await fs.lookup(parent, name);
        if (found.type === 'directory') throw new StrataError('IS_DIRECTORY', `${name} is a directory`);
        // A symlink, fifo or socket made meanwhile: an open would follow or open it, which this path cannot do.
        if (found.type !== 'file') throw err;
        if (!mayOpen(ctx, found, flags)) throw new StrataError('PERMISSION_DENIED', `no permission to open ${name}`);
        const reopen = () => fs.openIno(found.ino, flags);
        const { fh, attrs } = await (flags & O_TRUNC ? kept.during(found.ino, reopen) : reopen());
        seen.set(attrs.ino, stamp(attrs));
        return { ...entry(attrs, parent, name), open: { fh } };
      }
      const { attrs, fh, changeSeq } = created;
      done(undefined);
      // A file just made has no extended attributes, as of the create's own change: its first write
      // need not ask the master. Only while the cache still holds it as of exactly that change (the
      // feed has applied no later change of it, which a forget might have crossed).
      if (changeSeq !== undefined && cache()?.attrsAsOf(attrs.ino) === changeSeq) noXattrs.add(attrs.ino, changeSeq, noXattrs.token(attrs.ino), true);
      return { ...entry(attrs, parent, name), open: { fh } };
    },
    open: async (_ctx, ino, flags) => {
      const open = () => fs.openIno(ino, flags);
      const { fh, attrs } = await (flags & O_TRUNC ? kept.during(ino, open) : open());
      const before = seen.get(ino);
      const unchanged = before !== undefined && before === stamp(attrs);
      seen.set(ino, stamp(attrs));
      if (before !== undefined && !unchanged) {
        // Answer only once the kernel dropped the old attributes, so the caller's next fstat sees the new size.
        await invalidate(ino);
      }
      // Close-to-open: the kernel keeps its cached pages only when the file is as it last saw it.
      return { fh, keepCache: unchanged };
    },
    read: (_ctx, ino, fh, size, offset) => fs.readParts(fh, size, offset, kept.keeper(fh, ino)),
    write: (_ctx, ino, fh, data, offset) => kept.during(ino, () => fs.write(fh, data, data.length, offset)),
    // Only the default mode (allocate, extending the size) exists here: there are no preallocated blocks to keep.
    fallocate: async (_ctx, ino, fh, mode, offset, length) => {
      if (mode !== 0) throw new StrataError('NOT_SUPPORTED', 'fallocate modes other than 0 are not supported');
      await kept.during(ino, async () => {
        const a = await fs.getattrIno(ino);
        if (offset + length > a.size) await fs.setattrIno(ino, { size: offset + length }, fh);
      });
    },
    flush: (_ctx, _ino, fh) => fs.flush(fh),
    fsync: (_ctx, _ino, fh) => fs.fsync(fh),
    release: (_ctx, _ino, fh) => {
      kept.closing(fh);
      return fs.release(fh);
    },
    opendir: async (_ctx, ino) => {
      const fh = nextDirFh++;
      const c = cache();
      if (!c) return { fh };
      // Listings kept by the kernel as long as the rest of what it keeps, and no longer than the
      // cache's time to live: a listing past it is read again, so the master checks the store again.
      const ttlMs = c.ttlMs < 0 ? EXACT_TIMEOUT * 1000 : Math.min(EXACT_TIMEOUT * 1000, c.ttlMs);
      if (ttlMs <= 0) return { fh };
      return { fh, cacheReaddir: true, keepCache: c.usable() && listings.keep(ino, ttlMs) };
    },
    readdir: async (_ctx, ino, _fh, after) => {
      // Subscribed to the feed before the tokens: changes it applies during the listing must reach noXattrs.
      const feed = cache();
      const tokens = noXattrs.tokens();
      let page;
      try {
        // A page at a time (LIST_PAGE_MAX): a whole listing of 100,000 names held the mount at 620 MB.
        page = await fs.readdirPage(ino, after, LIST_PAGE_MAX);
      } catch (err) {
        // Removed while it was read: the listing ends, as it would with the whole of it read at opendir.
        if (after !== null && err instanceof StrataError && err.code === 'NOT_FOUND') return { entries: [], next: null };
        throw err;
      }
      const { entries, next, asOf, freshForMs } = page;
      if (after === null && asOf !== undefined && freshForMs !== undefined && feed) listings.listed(ino, asOf, freshForMs);
      // What the listing showed without any attribute (`ls -l` asks for two per entry), for as long as the
      // kernel keeps the entries; used while the feed lease runs (NoXattrCache).
      if (asOf !== undefined && feed) for (const e of entries) if (e.xattrs === false) noXattrs.addListed(e.ino, asOf, tokens, kernelCache.exactTimeoutMs ?? 0);
      return { entries: entries.map((e) => ({ name: e.name, attr: toAttr(e) })), next };
    },
    // Only what a READDIRPLUS reply gave the kernel counts as told (past its first reply the kernel asks with plain
    // READDIR: an open would otherwise keep pages of a version the kernel never learned was replaced).
    readdirSent: (entries) => {
      for (const e of entries) seen.set(e.attr.ino, stampOf(e.attr.size, e.attr.mtime));
    },
    statfs: async () => {
      const s = await fs.statfs();
      const bsize = 4096;
      const blocks = Math.floor(s.capacityBytes / bsize);
      const free = Math.max(0, Math.floor((s.capacityBytes - s.usedBytes) / bsize));
      return { bsize, blocks, bfree: free, bavail: free, files: 2 ** 32, ffree: 2 ** 32, namemax: 255 };
    },
  };
}

/**
 * Largest read request. Same-host cached bytes are spliced from the worker's page
 * files into the kernel, and a spliced reply must fit one pipe: at most 1 MiB
 * without CAP_SYS_RESOURCE, and libfuse wants the header and a page per part
 * beside the data. Warm 1 GiB re-reads here: 3.0-3.5 GB/s spliced in 512 KiB
 * requests, 2.2-2.7 GB/s copied in 1 MiB ones.
 */
const MAX_READ = 512 * 1024;

export async function mountFuse(opts: FuseMountOptions): Promise<FuseMount> {
  const log = opts.logger;
  const onUnknown = (err: unknown) => log.error({ err }, 'unexpected error in a FUSE operation; answering EIO');
  const options = ['fsname=strata', 'default_permissions'];
  if (opts.allowOther) options.push('allow_other');
  if (opts.debug) options.push('debug');
  let session: FuseSession | undefined = undefined;
  let handlers: ReturnType<typeof strataHandlers> | undefined;
  const invalidations = opts.metrics
    ? new Counter({ name: 'strata_fuse_kernel_invalidations_total', help: "Notifications that made the kernel drop its cached copy, by what it dropped (attrs, data, entry)", labelNames: ['what'] as const, registers: [opts.metrics] })
    : undefined;
  try {
    handlers = strataHandlers(
      opts.fs,
      async (ino) => (invalidations?.inc({ what: 'data' }), session?.invalidateInode(ino)),
      opts.kernelCache,
      (parent, name) => (invalidations?.inc({ what: 'entry' }), void session?.invalidateEntry(parent, name)),
      // Attributes only (negative offset), without waiting: the feed's invalidations are many and need no answer.
      (ino) => (invalidations?.inc({ what: 'attrs' }), void session?.invalidateInode(ino, -1, 0, 0).catch(() => undefined)),
      {
        set: (ino, capMs, allMs) => session?.xattrsAbsent(ino, capMs, allMs),
        clear: () => session?.xattrsAbsentClear(),
      },
      {
        serve: (fh, ino, off, len, fd, fdOff) => session?.serveReads(fh, ino, off, len, fd, fdOff) ?? false,
        drop: (fh, extents) => session?.dropReads(fh, extents),
        dropInode: (ino) => session?.dropReadsOfInode(ino),
      },
    );
    if (opts.metrics) {
      const h = handlers;
      new Gauge({ name: 'strata_fuse_reads_answered_by_binding', help: 'Reads the FUSE binding answered from kept page files without JS, since the mount', registers: [opts.metrics], collect() { this.set(session?.readsServed() ?? 0); } });
      new Gauge({ name: 'strata_fuse_kept_pages', help: 'Cached pages held open for the binding to answer reads from', registers: [opts.metrics], collect() { this.set(h.keptPages()); } });
    }
    const { dispose: _dispose, keptPages: _keptPages, ...ops } = handlers;
    session = FuseSession.mount(opts.mountPoint, opts.metrics ? timed(ops, opts.metrics) : ops, {
      options,
      // A listing's entries are kept as briefly as the configured timeouts say (0: not at all).
      dirTimeout: Math.min((opts.kernelCache ?? DEFAULT_KERNEL_CACHE).attrTimeoutMs, (opts.kernelCache ?? DEFAULT_KERNEL_CACHE).entryTimeoutMs) / 1000,
      maxWrite: 1024 * 1024,
      maxRead: MAX_READ,
      errnoOf: (err) => -toErrno(err, onUnknown),
      onUnknownError: onUnknown,
    });
  } catch (err) {
    throw new StrataError('IO_ERROR', `could not mount ${opts.mountPoint}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ mountPoint: opts.mountPoint }, 'mounted');
  void raiseReadahead(session?.device, log);
  // The binding answers "no attribute of any name" only while the change-feed lease runs.
  const leaseOff = opts.fs.master?.onLease((ms) => session?.xattrsAbsentLease(ms));
  let unmounted = false;
  return {
    mountPoint: opts.mountPoint,
    unmount: async () => {
      if (unmounted) return;
      unmounted = true;
      leaseOff?.();
      // The session first: while it drains, requests in flight still need the handlers' kept pages.
      const stragglers = await session?.unmount();
      if (stragglers) log.warn({ mountPoint: opts.mountPoint, stragglers }, 'unmount: a request could not be answered in time');
      handlers?.dispose();
    },
  };
}

/** Wraps every async handler with a latency histogram and an error counter per operation. */
function timed(h: LowLevelHandlers, registry: Registry): LowLevelHandlers {
  const seconds = new Histogram({
    name: 'strata_fuse_op_seconds',
    help: 'FUSE operation latency by operation',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const errors = new Counter({ name: 'strata_fuse_op_errors_total', help: 'FUSE operations answered with an error', labelNames: ['op'] as const, registers: [registry] });
  const out: Record<string, unknown> = {};
  for (const [op, fn] of Object.entries(h)) {
    if (typeof fn !== 'function' || op === 'forget' || op === 'readdirSent') {
      out[op] = fn;
      continue;
    }
    out[op] = (...args: unknown[]) => {
      const end = seconds.startTimer({ op });
      const p = (fn as (...a: unknown[]) => Promise<unknown>)(...args);
      p.then(
        () => end(),
        () => {
          end();
          errors.inc({ op });
        },
      );
      return p;
    };
  }
  return out as unknown as LowLevelHandlers;
}

/**
 * Checks a mount point before mounting: a stale FUSE mount left by a killed
 * process ("Transport endpoint is not connected") is lazily unmounted; a live
 * mount, a missing or non-empty directory are CONFIG errors.
 */
export async function prepareMountPoint(dir: string, log: Logger, opts: { create?: boolean } = {}): Promise<void> {
  try {
    const st = await fsp.stat(dir);
    if (!st.isDirectory()) throw new StrataError('CONFIG', `mount point ${dir} is not a directory`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      await unmountStale(dir, log);
      return prepareMountPoint(dir, log, opts);
    }
    if (code === 'ENOENT') {
      if (!opts.create) throw new StrataError('CONFIG', `mount point ${dir} does not exist`);
      await fsp.mkdir(dir, { recursive: true });
      return;
    }
    if (err instanceof StrataError) throw err;
    throw new StrataError('CONFIG', `cannot use mount point ${dir}: ${(err as Error).message}`);
  }
  if (await isMountPoint(dir)) {
    // The stat above may be answered from the kernel's attribute cache, also for a mount whose
    // process was just killed; statfs always asks the file system's process.
    if (await isStaleMount(dir)) {
      await unmountStale(dir, log);
      return prepareMountPoint(dir, log, opts);
    }
    throw new StrataError('CONFIG', `${dir} is already a mount point (is another Strata mounted there?)`);
  }
  const entries = await fsp.readdir(dir);
  if (entries.length > 0) throw new StrataError('CONFIG', `mount point ${dir} is not empty`);
}

/** Lazily unmounts a FUSE mount whose process is gone, saying so. */
async function unmountStale(dir: string, log: Logger): Promise<void> {
  log.warn({ mountPoint: dir }, 'found a stale FUSE mount left by a killed process; unmounting it');
  process.stderr.write(`strata: ${dir} held a stale FUSE mount left by a killed process; unmounted it\n`);
  unmountLazily(dir);
}

/** A mount whose file system's process is gone: statfs fails with ENOTCONN (or ECONNABORTED while it dies). */
async function isStaleMount(dir: string, waitMs = 3000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const answered = fsp.statfs(dir).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOTCONN' || err.code === 'ECONNABORTED',
  );
  // A live process that does not answer is not stale: the caller refuses to mount over it.
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
  try {
    return await Promise.race([answered, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function isMountPoint(dir: string): Promise<boolean> {
  const real = await fsp.realpath(dir);
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return mounts.split('\n').some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === real);
}

/**
 * The kernel reads ahead only 128 KiB on a new FUSE mount whatever max_readahead
 * says; 1 MiB halves the requests of a sequential reader and lifts warm reads
 * (256 MiB here: 690 -> 890 MB/s). Needs root; otherwise the default stays.
 * `dev` is the mount's device (FuseSession.device).
 */
async function raiseReadahead(dev: string | undefined, log: Logger, kb = 1024): Promise<void> {
  if (!dev) return;
  try {
    await fsp.writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
    log.debug({ kb, dev }, 'kernel read-ahead raised');
  } catch (err) {
    log.debug({ err: (err as Error).message }, 'kernel read-ahead left at its default');
  }
}
