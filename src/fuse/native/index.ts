/**
 * The TypeScript face of Strata's own FUSE binding (strata_fuse.c, libfuse3's
 * low-level API). Handlers are async functions over inodes; this module turns
 * each request into exactly one reply: the handler's result, or the errno of
 * what it threw (through the one errno table in src/common/errors).
 */

import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { abortFuseConnection, connectionOfDevice, fuseDeviceOf, unmountLazily } from './fusectl';
import { toErrno } from '../../common/errors';
import type { ReadParts } from '../../common/file-range';
import type { Timespec } from '../../common/protocol';

/** Op codes, in the order of the enum in strata_fuse.c. */
const OP = {
  INIT: 0, DESTROY: 1, LOOKUP: 2, FORGET: 3, GETATTR: 4, SETATTR: 5, READLINK: 6, MKNOD: 7,
  MKDIR: 8, UNLINK: 9, RMDIR: 10, SYMLINK: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16,
  FLUSH: 17, RELEASE: 18, FSYNC: 19, OPENDIR: 20, READDIR: 21, RELEASEDIR: 22, FSYNCDIR: 23, STATFS: 24,
  SETXATTR: 25, GETXATTR: 26, LISTXATTR: 27, REMOVEXATTR: 28, ACCESS: 29, CREATE: 30, GETLK: 31, SETLK: 32,
  FLOCK: 33, FALLOCATE: 34, READDIRPLUS: 35, COPY_FILE_RANGE: 36, LSEEK: 37, FORGET_MULTI: 38,
} as const;
const OP_COUNT = 39;

/** Linux ENOSYS: the operation is not implemented. */
const ENOSYS = 38;

/** FUSE_SET_ATTR_* bits of a setattr request. */
export const SET_ATTR = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256, CTIME: 1024 } as const;

/** rename(2) flags. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

interface Native {
  mount(mnt: string, args: string[], dispatch: (...a: any[]) => void, implemented: Uint8Array, conn: object): unknown;
  unmount(handle: unknown): void;
  stopInvalidations(handle: unknown): number;
  requestsInFlight(handle: unknown): number;
  replyErr(req: bigint, errno: number): void;
  replyNone(req: bigint): void;
  replyEntry(req: bigint, ino: number, generation: number, attr: Float64Array, attrTimeout: number, entryTimeout: number): void;
  replyCreate(req: bigint, ino: number, generation: number, attr: Float64Array, attrTimeout: number, entryTimeout: number, fh: number, flags: number): void;
  replyAttr(req: bigint, attr: Float64Array, timeout: number): void;
  replyReadlink(req: bigint, target: string): void;
  replyOpen(req: bigint, fh: number, flags: number): void;
  replyWrite(req: bigint, count: number): void;
  replyBuf(req: bigint, buf: Buffer, len: number): void;
  replyData(req: bigint, parts: (Buffer | [number, number, number])[], len: number): void;
  replyStatfs(req: bigint, st: Float64Array): void;
  replyXattr(req: bigint, size: number): void;
  replyLock(req: bigint, type: number, start: number, len: number, pid: number): void;
  replyLseek(req: bigint, off: number): void;
  replyDir(req: bigint, max: number, plus: boolean, names: string[], inos: number[], attrs: (number | Float64Array)[], offs: number[], timeout: number): number;
  getGroups(req: bigint): number[];
  invalidateInode(handle: unknown, ino: number, off: number, len: number): object | number;
  invalidationDone(ticket: object): boolean;
  invalidateEntry(handle: unknown, parent: number, name: string): number;
  xattrsAbsent(handle: unknown, ino: number, capMs: number, allMs: number): void;
  xattrsAbsentLease(handle: unknown, ms: number): void;
  xattrsAbsentClear(handle: unknown): void;
  serveReads(handle: unknown, fh: number, ino: number, off: number, len: number, fd: number, fdOff: number): boolean;
  dropReads(handle: unknown, fh: number, ino: number, extents?: Float64Array): void;
  readsServed(handle: unknown): number;
  /** Sessions not freed yet: mounted, or unmounted and waiting for their last reply. */
  sessionsAlive(): number;
}

let native: Native | undefined;

/** Loads the compiled addon (build/Release/strata_fuse.node, built by `npm ci` / node-gyp). */
export function loadNative(): Native {
  if (native) return native;
  const root = path.resolve(__dirname, '..', '..', '..', '..');
  const file = path.join(root, 'build', 'Release', 'strata_fuse.node');
  if (!existsSync(file)) throw new Error(`Strata's FUSE addon is not built (${file}); run \`npm ci\` (needs libfuse3-dev)`);
  native = require(file) as Native;
  return native;
}

/** The caller of a request. */
export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
  /** Supplementary groups of the caller (read from /proc on demand). */
  groups(): number[];
}

/** What stat(2) shows; `mode` includes the file-type bits. */
export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev?: number;
  size: number;
  blocks?: number;
  blksize?: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

export interface Entry {
  attr: Attr;
  /** Seconds the kernel may cache the attributes. */
  attrTimeout: number;
  /** Seconds the kernel may cache the name → inode mapping (also for negative lookups). */
  entryTimeout: number;
  generation?: number;
}

export interface AttrReply {
  attr: Attr;
  timeout: number;
}

export interface OpenReply {
  fh: number;
  directIo?: boolean;
  /** Keep the kernel's page cache of the file from an earlier open (of a directory: its cached listing). */
  keepCache?: boolean;
  nonseekable?: boolean;
  /** opendir: the kernel may keep this listing in its page cache and serve later ones from it (FOPEN_CACHE_DIR). */
  cacheReaddir?: boolean;
}

/** The changes a setattr asks for; absent fields stay as they are. */
export interface SetAttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
  ctime?: Timespec;
}

export interface DirListingEntry {
  name: string;
  /** For readdirplus the full attributes; for readdir only ino and mode are used. */
  attr: Attr;
}

/** One page of a listing; `next`: what to pass as `after` for the next page, null after the last. */
export interface DirListingPage {
  entries: DirListingEntry[];
  next: string | null;
}

export interface Statfs {
  bsize: number;
  frsize?: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail?: number;
  fsid?: number;
  flag?: number;
  namemax: number;
}

export interface Lock {
  type: number;
  start: number;
  len: number;
  pid: number;
}

/** Operations a file system may implement; a missing one answers ENOSYS (or the kernel's default). */
export interface LowLevelHandlers {
  lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry>;
  forget?(ino: number, nlookup: number): void;
  getattr(ctx: RequestContext, ino: number, fh: number | null): Promise<AttrReply>;
  setattr?(ctx: RequestContext, ino: number, changes: SetAttrChanges, fh: number | null): Promise<AttrReply>;
  readlink?(ctx: RequestContext, ino: number): Promise<string>;
  mknod?(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number, umask: number): Promise<Entry>;
  mkdir?(ctx: RequestContext, parent: number, name: string, mode: number, umask: number): Promise<Entry>;
  unlink?(ctx: RequestContext, parent: number, name: string): Promise<void>;
  rmdir?(ctx: RequestContext, parent: number, name: string): Promise<void>;
  symlink?(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry>;
  rename?(ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void>;
  link?(ctx: RequestContext, ino: number, newParent: number, newName: string): Promise<Entry>;
  open?(ctx: RequestContext, ino: number, flags: number): Promise<OpenReply>;
  /**
   * Returns at most `size` bytes at `offset` (fewer at EOF): a buffer, or parts
   * that may name ranges of open files (answered without copying them through JS).
   */
  read?(ctx: RequestContext, ino: number, fh: number, size: number, offset: number): Promise<Buffer | ReadParts>;
  write?(ctx: RequestContext, ino: number, fh: number, data: Buffer, offset: number, flags: number): Promise<number>;
  flush?(ctx: RequestContext, ino: number, fh: number, lockOwner: number): Promise<void>;
  release?(ctx: RequestContext, ino: number, fh: number, flags: number): Promise<void>;
  fsync?(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Promise<void>;
  opendir?(ctx: RequestContext, ino: number, flags: number): Promise<OpenReply>;
  /**
   * The listing (without . and ..), whole or in pages: `after` is null for the first page (an
   * opendir, or a rewind), else the `next` of the page before. The binding answers the kernel's
   * offsets from the page it holds per directory handle and asks for the next one when the
   * kernel reaches its end, so a huge directory never sits in memory whole.
   */
  readdir?(ctx: RequestContext, ino: number, fh: number, after: string | null): Promise<DirListingEntry[] | DirListingPage>;
  /**
   * The entries of a listing whose attributes a READDIRPLUS reply just gave the kernel (a plain
   * READDIR reply gives names only: for those this is not called).
   */
  readdirSent?(entries: DirListingEntry[]): void;
  releasedir?(ctx: RequestContext, ino: number, fh: number): Promise<void>;
  fsyncdir?(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Promise<void>;
  statfs?(ctx: RequestContext, ino: number): Promise<Statfs>;
  setxattr?(ctx: RequestContext, ino: number, name: string, value: Buffer, flags: number): Promise<void>;
  /** The value; absent → throw a NOT_FOUND-like error mapped to ENODATA by `errnoOf`. */
  getxattr?(ctx: RequestContext, ino: number, name: string): Promise<Buffer>;
  listxattr?(ctx: RequestContext, ino: number): Promise<string[]>;
  removexattr?(ctx: RequestContext, ino: number, name: string): Promise<void>;
  access?(ctx: RequestContext, ino: number, mask: number): Promise<void>;
  create?(ctx: RequestContext, parent: number, name: string, mode: number, flags: number, umask: number): Promise<Entry & { open: OpenReply }>;
  getlk?(ctx: RequestContext, ino: number, fh: number, owner: number, lock: Lock): Promise<Lock>;
  setlk?(ctx: RequestContext, ino: number, fh: number, owner: number, lock: Lock, sleep: boolean): Promise<void>;
  flock?(ctx: RequestContext, ino: number, fh: number, owner: number, op: number): Promise<void>;
  fallocate?(ctx: RequestContext, ino: number, fh: number, mode: number, offset: number, length: number): Promise<void>;
  copyFileRange?(ctx: RequestContext, inoIn: number, fhIn: number, offIn: number, inoOut: number, fhOut: number, offOut: number, len: number, flags: number): Promise<number>;
  lseek?(ctx: RequestContext, ino: number, fh: number, offset: number, whence: number): Promise<number>;
}

export interface MountOptions {
  /** Extra `-o` options, e.g. ['default_permissions', 'allow_other', 'fsname=strata']. */
  options?: string[];
  /** Largest write request in bytes (libfuse3: up to 1 MiB). Default 1 MiB. */
  maxWrite?: number;
  maxReadahead?: number;
  /** Largest read request in bytes (the `max_read` mount option). Default: up to maxWrite. */
  maxRead?: number;
  /** The kernel's writeback cache; off unless asked for. */
  writebackCache?: boolean;
  /** Splice the file ranges of read replies into the kernel (no copy through this process). Default true. */
  spliceWrite?: boolean;
  /** Turns a handler's error into a positive errno. Default: Strata's table. */
  errnoOf?: (err: unknown) => number;
  /** Seconds to cache a negative lookup (ENOENT). Default 0. */
  negativeTimeout?: number;
  /** Seconds the kernel keeps the names and attributes of a READDIRPLUS reply. Default 1. */
  dirTimeout?: number;
  /** Called for errors without a Strata code, once per distinct error. */
  onUnknownError?: (err: unknown) => void;
}

function attrArray(a: Attr): Float64Array {
  const d = new Float64Array(15);
  d[0] = a.ino;
  d[1] = a.mode;
  d[2] = a.nlink;
  d[3] = a.uid;
  d[4] = a.gid;
  d[5] = a.rdev ?? 0;
  d[6] = a.size;
  d[7] = a.blocks ?? Math.ceil(a.size / 512);
  d[8] = a.blksize ?? 4096;
  d[9] = a.atime.sec;
  d[10] = a.atime.nsec;
  d[11] = a.mtime.sec;
  d[12] = a.mtime.nsec;
  d[13] = a.ctime.sec;
  d[14] = a.ctime.nsec;
  return d;
}

function openFlags(o: OpenReply): number {
  return (o.directIo ? 1 : 0) | (o.keepCache ? 2 : 0) | (o.nonseekable ? 4 : 0) | (o.cacheReaddir ? 8 : 0);
}

const IMPLEMENTS: [keyof LowLevelHandlers, number][] = [
  ['forget', OP.FORGET], ['setattr', OP.SETATTR], ['readlink', OP.READLINK], ['mknod', OP.MKNOD], ['mkdir', OP.MKDIR],
  ['unlink', OP.UNLINK], ['rmdir', OP.RMDIR], ['symlink', OP.SYMLINK], ['rename', OP.RENAME], ['link', OP.LINK],
  ['open', OP.OPEN], ['read', OP.READ], ['write', OP.WRITE], ['flush', OP.FLUSH], ['release', OP.RELEASE],
  ['fsync', OP.FSYNC], ['opendir', OP.OPENDIR], ['readdir', OP.READDIR], ['readdir', OP.READDIRPLUS],
  ['releasedir', OP.RELEASEDIR], ['fsyncdir', OP.FSYNCDIR], ['statfs', OP.STATFS], ['setxattr', OP.SETXATTR],
  ['getxattr', OP.GETXATTR], ['listxattr', OP.LISTXATTR], ['removexattr', OP.REMOVEXATTR], ['access', OP.ACCESS],
  ['create', OP.CREATE], ['getlk', OP.GETLK], ['setlk', OP.SETLK], ['flock', OP.FLOCK], ['fallocate', OP.FALLOCATE],
  ['copyFileRange', OP.COPY_FILE_RANGE], ['lseek', OP.LSEEK],
];

const ERANGE = 34;
const LOCK_UN = 8;

/** A mounted file system on Strata's own binding. */
/** Offsets of "." and ".." (after it); the listing's entries get cookies from FIRST_COOKIE on. */
const DOT_OFFSET = 1;
const DOTDOT_OFFSET = 2;
const FIRST_COOKIE = 3;

/**
 * A directory handle's place in its listing. Each entry handed to the kernel carries a cookie as
 * its offset (where the next reply starts, and what telldir gives), bound to its name: a readdir
 * at that offset (the next one, or a seekdir) goes on after that name, however the directory
 * changed meanwhile, as NFS's cookies do. Only one page of entries is held, and the names
 * handed out (about 150 bytes each), not their attributes. The cookies are the directory's
 * (DirCookies), shared by all its handles: the kernel's readdir cache (FOPEN_CACHE_DIR) keeps a
 * listing with the cookies of the handle that read it, and when its pages go (an invalidation,
 * an opendir without keep_cache, memory pressure) a reader on another handle asks on from one.
 */
export interface DirHandle {
  /** The page held: its entries with their cookies, and the `after` of the page that follows it (null: none). */
  entries: DirListingEntry[];
  cookies: number[];
  next: string | null;
  /** Whether the page held is the listing's first. */
  first: boolean;
  /** The directory's cookies. */
  table: DirCookies;
}

/** One directory's cookies (see DirHandle): by cookie, and by name; shared by its handles. */
export class DirCookies {
  readonly names = new Map<number, string>();
  readonly cookieOf = new Map<string, number>();

  /** `next` hands out a cookie never given before (in any directory sharing it). */
  constructor(readonly next: () => number) {}

  /** The cookie of `name`, given one if it has none yet. */
  of(name: string): number {
    let c = this.cookieOf.get(name);
    if (c === undefined) {
      c = this.next();
      this.cookieOf.set(name, c);
      this.names.set(c, name);
    }
    return c;
  }
}

/**
 * Every directory's cookies, the least recently used let go past `maxNames` names in all
 * (`onDrop` then makes the kernel drop any listing it keeps of that directory, whose cookies
 * would mean nothing any more). A cookie is never given twice, in any directory.
 */
export class DirCookieTables {
  readonly #tables = new Map<number, DirCookies>();
  #names = 0;
  #next = FIRST_COOKIE;

  constructor(
    readonly maxNames = 200_000,
    readonly onDrop: (ino: number) => void = () => undefined,
  ) {}

  has(ino: number): boolean {
    return this.#tables.has(ino);
  }

  /** The cookies of directory `ino` (made if none). */
  get(ino: number): DirCookies {
    let t = this.#tables.get(ino);
    if (t) this.#tables.delete(ino);
    else {
      const table: DirCookies = new DirCookies(() => {
        if (++this.#names > this.maxNames) this.#evict(table);
        return this.#next++;
      });
      t = table;
    }
    this.#tables.set(ino, t);
    return t;
  }

  #evict(keep: DirCookies): void {
    for (const [ino, t] of this.#tables) {
      if (this.#names <= this.maxNames) return;
      if (t === keep) continue;
      this.#tables.delete(ino);
      this.#names -= t.names.size;
      this.onDrop(ino);
    }
  }
}

/**
 * Where a readdir at `offset` goes on ("." and ".." are the binding's): the page held, with each
 * entry's cookie, from index `from`. The page itself, not a copy: a reply takes a few dozen.
 */
export async function entriesAt(
  handles: Map<number, DirHandle>,
  fh: number,
  offset: number,
  fetch: (after: string | null) => Promise<DirListingEntry[] | DirListingPage>,
  /** The directory's cookies, shared with its other handles; a handle of its own without. */
  cookies?: () => DirCookies,
): Promise<{ entries: readonly DirListingEntry[]; cookies: readonly number[]; from: number }> {
  const none = { entries: [], cookies: [], from: 0 };
  let h = handles.get(fh);
  if (!h || (offset === 0 && !cookies)) {
    // A new handle; or a rewind of one with cookies of its own, which are let go.
    let next = FIRST_COOKIE;
    h = { entries: [], cookies: [], next: null, first: false, table: cookies?.() ?? new DirCookies(() => next++) };
    handles.set(fh, h);
  }
  const d = h;
  const hold = async (after: string | null): Promise<void> => {
    d.first = after === null;
    for (let from = after; ; ) {
      const r = await fetch(from);
      let entries = Array.isArray(r) ? r : r.entries;
      // A handler that ignores `after` answers the whole listing: go on after the name in it.
      if (Array.isArray(r) && from !== null) {
        const i = entries.findIndex((e) => e.name === from);
        entries = i < 0 ? [] : entries.slice(i + 1);
      }
      d.entries = entries;
      d.next = Array.isArray(r) ? null : r.next;
      // An empty page that is not the last: on to the next.
      if (entries.length > 0 || d.next === null) break;
      from = d.next;
    }
    d.cookies = d.entries.map((e) => d.table.of(e.name));
  };
  if (offset < FIRST_COOKIE) {
    // From the start; the page held is kept for a reply after "." or ".." alone.
    if (offset === 0 || !d.first) await hold(null);
    return { entries: d.entries, cookies: d.cookies, from: 0 };
  }
  const after = d.table.names.get(offset);
  if (after === undefined) return none; // not a cookie of this directory (or of a listing before a rewind)
  let i = d.cookies.indexOf(offset);
  if (i < 0) {
    // A seekdir elsewhere: on after that name.
    await hold(after);
    i = -1;
  } else if (i === d.cookies.length - 1) {
    // The end of the page held: the next one, if any.
    if (d.next === null) return none;
    await hold(d.next);
    i = -1;
  }
  return { entries: d.entries, cookies: d.cookies, from: i + 1 };
}

export class FuseSession {
  readonly mountPoint: string;
  #handle: unknown;
  #native: Native;
  /** The mount's device ("0:53"), if known: names its connection in fusectl and its bdi. */
  device: string | undefined;
  /** Each directory handle's place in its listing (see readdir). */
  readonly #listings = new Map<number, DirHandle>();

  private constructor(mountPoint: string, native: Native) {
    this.mountPoint = mountPoint;
    this.#native = native;
  }

  static mount(mountPoint: string, h: LowLevelHandlers, opts: MountOptions = {}): FuseSession {
    const n = loadNative();
    const s = new FuseSession(mountPoint, n);
    const implemented = new Uint8Array(OP_COUNT);
    for (const [name, code] of IMPLEMENTS) if (h[name]) implemented[code] = 1;
    // A flock lock is dropped on the last close through release, so flock needs it.
    if (h.flock) implemented[OP.RELEASE] = 1;
    // Listings are kept per directory handle: opendir hands out a handle of its own, releasedir drops the listing.
    if (h.readdir) implemented[OP.OPENDIR] = implemented[OP.RELEASEDIR] = 1;
    const options = ['-o', ['subtype=strata', ...(opts.maxRead ? [`max_read=${opts.maxRead}`] : []), ...(opts.options ?? [])].join(',')];
    const errnoOf = opts.errnoOf ?? ((err: unknown) => -toErrno(err, opts.onUnknownError));
    s.#handle = n.mount(mountPoint, options, s.#dispatcher(h, errnoOf, opts.negativeTimeout ?? 0, opts.dirTimeout ?? 1), implemented, {
      maxWrite: opts.maxWrite ?? 1024 * 1024,
      maxReadahead: opts.maxReadahead ?? 1024 * 1024,
      maxRead: opts.maxRead ?? 0,
      writebackCache: !!opts.writebackCache,
      spliceWrite: opts.spliceWrite !== false,
      locks: !!(h.getlk && h.setlk),
      flock: !!h.flock,
    });
    try {
      s.device = fuseDeviceOf(mountPoint);
    } catch {
      // No /proc: an unmount cannot abort stragglers then.
    }
    return s;
  }

  /**
   * Drops the kernel's cached attributes and pages of `ino` (e.g. when an open finds
   * the file changed elsewhere), on a native thread of its own, since the kernel may wait
   * for reads of that file in flight. Resolves true once the kernel has dropped them, false
   * when it could not be started or did not finish within `waitMs` (a read of that file
   * stuck on a lost worker holds its pages; the caller should not wait for that).
   */
  async invalidateInode(ino: number, off = 0, len = 0, waitMs = 1000): Promise<boolean> {
    if (this.#handle === undefined) return false;
    const ticket = this.#native.invalidateInode(this.#handle, ino, off, len);
    if (typeof ticket === 'number') return false;
    const deadline = Date.now() + waitMs;
    // The kernel usually answers within microseconds: look again soon, then every millisecond.
    await new Promise<void>((r) => setImmediate(r));
    while (!this.#native.invalidationDone(ticket)) {
      if (Date.now() >= deadline) return false;
      await new Promise<void>((r) => setTimeout(r, 1));
    }
    return true;
  }

  /** Drops the kernel's cached lookup of `name` in `parent` (on a native thread, as invalidateInode). */
  invalidateEntry(parent: number, name: string): number {
    if (this.#handle === undefined) return -107;
    return this.#native.invalidateEntry(this.#handle, parent, name);
  }

  /**
   * For the next `capMs` milliseconds, getxattr("security.capability") on `ino` is answered
   * ENODATA by the binding without calling the handler, and for the next `allMs` getxattr of
   * any name, while the lease set by xattrsAbsentLease runs; both 0 forget it. The kernel
   * asks for the capability before every write, and `ls -l` for two attributes per entry,
   * so a file system that knows a file has none spares each a round trip through JS.
   */
  xattrsAbsent(ino: number, capMs: number, allMs = 0): void {
    if (this.#handle === undefined) return;
    this.#native.xattrsAbsent(this.#handle, ino, capMs, allMs);
  }

  /** What xattrsAbsent's `allMs` says holds only for the next `ms` milliseconds from now (0: not now). */
  xattrsAbsentLease(ms: number): void {
    if (this.#handle === undefined) return;
    this.#native.xattrsAbsentLease(this.#handle, ms);
  }

  /** Forgets everything xattrsAbsent said. */
  xattrsAbsentClear(): void {
    if (this.#handle === undefined) return;
    this.#native.xattrsAbsentClear(this.#handle);
  }

  /**
   * Until dropped, reads of handle `fh` wholly within `[off, off+len)` of the file are
   * answered by the binding from `fd` (at `fdOff`), without calling the read handler.
   * For bytes that cannot change under that handle, in a file reading cannot fail
   * midway (a short reply would tell the kernel the file ends there). The caller keeps
   * `fd` open until it has dropped the extent. False when not taken.
   */
  serveReads(fh: number, ino: number, off: number, len: number, fd: number, fdOff: number): boolean {
    if (this.#handle === undefined) return false;
    return this.#native.serveReads(this.#handle, fh, ino, off, len, fd, fdOff);
  }

  /**
   * Drops the extents of handle `fh`; once this returns, no reply reads their descriptors.
   * `extents` (offset, length pairs), when given, must name every extent served for `fh`.
   */
  dropReads(fh: number, extents?: Float64Array): void {
    if (this.#handle === undefined) return;
    this.#native.dropReads(this.#handle, fh, -1, extents);
  }

  /** Drops the extents of every handle of inode `ino` (its bytes are about to change). */
  dropReadsOfInode(ino: number): void {
    if (this.#handle === undefined) return;
    this.#native.dropReads(this.#handle, -1, ino);
  }

  /** Reads the binding answered from extents, since the mount. */
  readsServed(): number {
    return this.#handle === undefined ? 0 : this.#native.readsServed(this.#handle);
  }

  /**
   * Unmounts. Requests in flight get up to `drainMs` to be answered first, with the mount
   * still serving (new invalidations are refused meanwhile): so a read waiting on a slow
   * worker still gets its bytes, and above all a running invalidation, which may wait for
   * the pages of such a read, finishes. Unmounting under that invalidation would leave the
   * read unanswerable and its reader stuck in the kernel for good (see stopInvalidations in
   * the binding). If one is still running after the wait, the connection is aborted, so the
   * read fails instead. Resolves what was done about stragglers, for the log (undefined:
   * nothing was needed).
   */
  async unmount(drainMs = 5000): Promise<string | undefined> {
    const h = this.#handle;
    if (h === undefined) return undefined;
    const deadline = Date.now() + drainMs;
    let aborted: string | undefined;
    for (;;) {
      const invalidating = this.#native.stopInvalidations(h);
      if (invalidating === 0 && this.#native.requestsInFlight(h) === 0) break;
      if (Date.now() >= deadline) {
        if (invalidating > 0) aborted = this.device === undefined ? 'no FUSE device known' : abortFuseConnection(connectionOfDevice(this.device));
        break;
      }
      await new Promise<void>((r) => setTimeout(r, 5));
    }
    if (this.#handle !== h) return aborted; // unmounted meanwhile by another call
    this.#handle = undefined;
    this.#native.unmount(h);
    // libfuse leaves an aborted connection mounted (its device already reports an error).
    if (aborted === 'aborted' && !unmountLazily(this.mountPoint)) return 'aborted, but could not unmount';
    return aborted === undefined ? undefined : `an invalidation outlived the unmount's wait: fusectl abort: ${aborted}`;
  }

  #dispatcher(h: LowLevelHandlers, errnoOf: (err: unknown) => number, negativeTimeout: number, dirTimeout: number) {
    const n = this.#native;
    const listings = this.#listings;
    const dirCookies = new DirCookieTables(200_000, (ino) => void this.invalidateInode(ino).catch(() => undefined));
    let nextDirFh = 1;
    return (op: number, req: bigint, uid: number, gid: number, pid: number, ino: number, ...a: any[]): void => {
      const ctx: RequestContext = { uid, gid, pid, groups: () => n.getGroups(req) };
      let replied = false;
      const fail = (err: unknown) => {
        if (replied) return;
        replied = true;
        const errno = errnoOf(err);
        // A missing name may be cached by the kernel as a negative entry instead of an error.
        if (op === OP.LOOKUP && errno === 2 && negativeTimeout > 0) {
          const zero = new Float64Array(15);
          n.replyEntry(req, 0, 0, zero, 0, negativeTimeout);
          return;
        }
        // ENOSYS tells the kernel the operation does not exist here, and it never asks again (fsync and flush then
        // succeed without reaching us): only a handler that is not there may answer it; an ENOSYS from below is EIO.
        n.replyErr(req, errno > 0 && errno !== ENOSYS ? errno : 5);
      };
      const ok = <T>(p: Promise<T> | undefined, reply: (v: T) => void, unsent?: (v: T) => void) => {
        if (!p) {
          replied = true;
          return n.replyErr(req, ENOSYS);
        }
        p.then((v) => {
          if (replied) return unsent?.(v);
          replied = true;
          try {
            reply(v);
          } catch (err) {
            // A malformed result (the reply functions throw before answering): still exactly one reply.
            replied = false;
            fail(err);
          }
        }, fail);
      };
      const entry = (e: Entry) => n.replyEntry(req, e.attr.ino, e.generation ?? 0, attrArray(e.attr), e.attrTimeout, e.entryTimeout);
      const done = () => n.replyErr(req, 0);
      try {
        switch (op) {
          case OP.LOOKUP:
            return ok(h.lookup(ctx, ino, a[0]), entry);
          case OP.FORGET:
            h.forget?.(ino, a[0]);
            replied = true;
            return n.replyNone(req);
          case OP.FORGET_MULTI: {
            const list = a[0] as number[];
            for (let i = 0; i < list.length; i += 2) h.forget?.(list[i]!, list[i + 1]!);
            replied = true;
            return n.replyNone(req);
          }
          case OP.GETATTR:
            return ok(h.getattr(ctx, ino, a[0]), (r) => n.replyAttr(req, attrArray(r.attr), r.timeout));
          case OP.SETATTR: {
            const st = a[0] as Float64Array;
            const bits = a[1] as number;
            const c: SetAttrChanges = {};
            if (bits & SET_ATTR.MODE) c.mode = st[1]!;
            if (bits & SET_ATTR.UID) c.uid = st[3]!;
            if (bits & SET_ATTR.GID) c.gid = st[4]!;
            if (bits & SET_ATTR.SIZE) c.size = st[6]!;
            if (bits & SET_ATTR.ATIME_NOW) c.atime = 'now';
            else if (bits & SET_ATTR.ATIME) c.atime = { sec: st[9]!, nsec: st[10]! };
            if (bits & SET_ATTR.MTIME_NOW) c.mtime = 'now';
            else if (bits & SET_ATTR.MTIME) c.mtime = { sec: st[11]!, nsec: st[12]! };
            if (bits & SET_ATTR.CTIME) c.ctime = { sec: st[13]!, nsec: st[14]! };
            return ok(h.setattr?.(ctx, ino, c, a[2]), (r) => n.replyAttr(req, attrArray(r.attr), r.timeout));
          }
          case OP.READLINK:
            return ok(h.readlink?.(ctx, ino), (t) => n.replyReadlink(req, t));
          case OP.MKNOD:
            return ok(h.mknod?.(ctx, ino, a[0], a[1], a[2], a[3]), entry);
          case OP.MKDIR:
            return ok(h.mkdir?.(ctx, ino, a[0], a[1], a[2]), entry);
          case OP.UNLINK:
            return ok(h.unlink?.(ctx, ino, a[0]), done);
          case OP.RMDIR:
            return ok(h.rmdir?.(ctx, ino, a[0]), done);
          case OP.SYMLINK:
            return ok(h.symlink?.(ctx, ino, a[0], a[1]), entry);
          case OP.RENAME:
            return ok(h.rename?.(ctx, ino, a[0], a[1], a[2], a[3]), done);
          case OP.LINK:
            return ok(h.link?.(ctx, ino, a[0], a[1]), entry);
          case OP.OPEN:
            return ok(h.open?.(ctx, ino, a[0]), (o) => n.replyOpen(req, o.fh, openFlags(o)));
          case OP.READ:
            return ok(h.read?.(ctx, ino, a[0], a[1], a[2]), (b) => {
              if (Buffer.isBuffer(b)) return n.replyBuf(req, b, Math.min(b.length, a[1]));
              // Sent (or failed) synchronously: the ranges' descriptors may be let go right after.
              try {
                const only = b.parts.length === 1 ? b.parts[0] : undefined;
                if (Buffer.isBuffer(only)) n.replyBuf(req, only, Math.min(only.length, a[1]));
                else n.replyData(req, b.parts.map((p) => (Buffer.isBuffer(p) ? p : [p.fd, p.pos, p.len])), a[1]);
              } finally {
                b.done();
              }
            }, (b) => Buffer.isBuffer(b) || b.done());
          case OP.WRITE:
            return ok(h.write?.(ctx, ino, a[0], a[1], a[2], a[3]), (count) => n.replyWrite(req, count));
          case OP.FLUSH:
            return ok(h.flush?.(ctx, ino, a[0], a[1]), done);
          case OP.RELEASE: {
            const [fh, flags, flockRelease, lockOwner] = a as [number, number, number, number];
            // The last close of a file that took a flock lock: libfuse leaves dropping it to release.
            const unlocked = flockRelease && h.flock ? h.flock(ctx, ino, fh, lockOwner, LOCK_UN).catch(() => undefined) : Promise.resolve();
            return ok(unlocked.then(() => h.release?.(ctx, ino, fh, flags)), done);
          }
          case OP.FSYNC:
            return ok(h.fsync?.(ctx, ino, a[0], !!a[1]), done);
          case OP.OPENDIR:
            // Without an opendir handler each open directory still gets its own handle: listings are kept per handle.
            // A listing the kernel keeps is of no use once the directory's cookies were let go (DirCookieTables).
            return ok(h.opendir ? h.opendir(ctx, ino, a[0]) : Promise.resolve<OpenReply>({ fh: nextDirFh++ }), (o) =>
              n.replyOpen(req, o.fh, openFlags(o.keepCache && o.cacheReaddir && !dirCookies.has(ino) ? { ...o, keepCache: false } : o)),
            );
          case OP.READDIR:
          case OP.READDIRPLUS: {
            const [fh, size, offset] = a as [number, number, number];
            const plus = op === OP.READDIRPLUS;
            return ok(h.readdir ? entriesAt(listings, fh, offset, (after) => h.readdir!(ctx, ino, fh, after), () => dirCookies.get(ino)) : Promise.resolve(undefined), (listed) => {
              // Offsets: where the next reply starts; "." and ".." have 1 and 2, the listing's entries their cookies.
              const dirAttr = (entryIno: number): Attr => ({ ino: entryIno, mode: 0o040000, nlink: 2, uid: 0, gid: 0, size: 0, atime: ZERO, mtime: ZERO, ctime: ZERO });
              const names: string[] = [];
              const inos: number[] = [];
              const attrs: (number | Float64Array)[] = [];
              const offs: number[] = [];
              const told: DirListingEntry[] = [];
              for (let o = offset; o < DOTDOT_OFFSET; o++) {
                names.push(o === 0 ? '.' : '..');
                // readdirplus: an entry with ino 0 is not looked up, so "." and ".." add no lookup count.
                const attr = dirAttr(o === 0 ? ino : 1);
                inos.push(plus ? 0 : attr.ino);
                attrs.push(plus ? attrArray(attr) : attr.mode);
                offs.push(o === 0 ? DOT_OFFSET : DOTDOT_OFFSET);
                told.push({ name: '', attr });
              }
              if (listed) {
                // No more than can fit: a dirent is at least 24 bytes, 152 with its attributes.
                const room = Math.ceil(size / (plus ? 152 : 24));
                for (let i = listed.from; i < listed.entries.length && names.length < room; i++) {
                  const e = listed.entries[i]!;
                  names.push(e.name);
                  inos.push(e.attr.ino);
                  attrs.push(plus ? attrArray(e.attr) : e.attr.mode);
                  offs.push(listed.cookies[i]!);
                  told.push(e);
                }
              }
              const sent = n.replyDir(req, size, plus, names, inos, attrs, offs, dirTimeout);
              if (plus && h.readdirSent) h.readdirSent(told.slice(0, sent).filter((e) => e.name !== ''));
            });
          }
          case OP.RELEASEDIR:
            listings.delete(a[0] as number);
            return ok(h.releasedir ? h.releasedir(ctx, ino, a[0]) : Promise.resolve(), done);
          case OP.FSYNCDIR:
            return ok(h.fsyncdir ? h.fsyncdir(ctx, ino, a[0], !!a[1]) : Promise.resolve(), done);
          case OP.STATFS:
            return ok(h.statfs?.(ctx, ino), (s) =>
              n.replyStatfs(req, Float64Array.from([s.bsize, s.frsize ?? s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail ?? s.ffree, s.fsid ?? 0, s.flag ?? 0, s.namemax])),
            );
          case OP.SETXATTR:
            return ok(h.setxattr?.(ctx, ino, a[0], a[1], a[2]), done);
          case OP.GETXATTR: {
            const size = a[1] as number;
            return ok(h.getxattr?.(ctx, ino, a[0]), (v) => {
              if (size === 0) n.replyXattr(req, v.length);
              else if (v.length > size) n.replyErr(req, ERANGE);
              else n.replyBuf(req, v, v.length);
            });
          }
          case OP.LISTXATTR: {
            const size = a[0] as number;
            return ok(h.listxattr?.(ctx, ino), (names) => {
              const buf = Buffer.from(names.map((x) => x + '\0').join(''));
              if (size === 0) n.replyXattr(req, buf.length);
              else if (buf.length > size) n.replyErr(req, ERANGE);
              else n.replyBuf(req, buf, buf.length);
            });
          }
          case OP.REMOVEXATTR:
            return ok(h.removexattr?.(ctx, ino, a[0]), done);
          case OP.ACCESS:
            return ok(h.access?.(ctx, ino, a[0]), done);
          case OP.CREATE:
            return ok(h.create?.(ctx, ino, a[0], a[1], a[2], a[3]), (e) =>
              n.replyCreate(req, e.attr.ino, e.generation ?? 0, attrArray(e.attr), e.attrTimeout, e.entryTimeout, e.open.fh, openFlags(e.open)),
            );
          case OP.GETLK:
            return ok(h.getlk?.(ctx, ino, a[0], a[1], a[2]), (l) => n.replyLock(req, l.type, l.start, l.len, l.pid));
          case OP.SETLK:
            return ok(h.setlk?.(ctx, ino, a[0], a[1], a[2], !!a[3]), done);
          case OP.FLOCK:
            return ok(h.flock?.(ctx, ino, a[0], a[1], a[2]), done);
          case OP.FALLOCATE:
            return ok(h.fallocate?.(ctx, ino, a[0], a[1], a[2], a[3]), done);
          case OP.COPY_FILE_RANGE:
            return ok(h.copyFileRange?.(ctx, ino, a[0], a[1], a[2], a[3], a[4], a[5], a[6]), (count) => n.replyWrite(req, count));
          case OP.LSEEK:
            return ok(h.lseek?.(ctx, ino, a[0], a[1], a[2]), (off) => n.replyLseek(req, off));
          default:
            replied = true;
            return n.replyErr(req, 38 /* ENOSYS */);
        }
      } catch (err) {
        fail(err);
      }
    };
  }
}

const ZERO: Timespec = { sec: 0, nsec: 0 };
