/**
 * The FUSE-free file-system layer: path operations, open-file handles, staged
 * writes and reads. The FUSE adapter and tests drive it; it talks to the master
 * for metadata and to workers for bytes.
 *
 * Writes are staged in a local temp file per open inode (so random writes,
 * overwrites and truncates behave like a local file), and on flush/fsync/close the
 * whole content goes through a worker, which caches it and writes it through to
 * the under-store, before the new block list is committed to the master. So when
 * close() returns, the file is in the under-store (close-to-open consistency).
 */

import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { constants as fsConstants } from 'node:fs';
import { StrataError, toStrataError } from '../common/errors';
import type { Logger } from '../common/log';
import { Mutex } from '../common/mutex';
import { fileDataExtents } from '../common/extents';
import { DirEntry, FileAttributes, FileBlocksResponse, ReadType, Timespec, WorkerInfo, WriteBeginResponse, WriteType, timespecNow } from '../common/protocol';
import type { ReadParts } from '../common/file-range';
import { FileReader, FileReaderOptions, type KeepPage } from './file-reader';
import { MasterClient } from './master-client';
import { WorkerClient, workerUnreachable } from './worker-client';
import { WorkerRouter } from './worker-router';
import { ShortCircuitReader, type PageRange } from './short-circuit';
import { INCOMING_DIR } from '../common/protocol';
import { basename, dirname } from '../common/paths';

export interface FileSystemOptions {
  masterUrl: string;
  /** Directory for staged writes (created; emptied on start). */
  stagingDir: string;
  logger: Logger;
  reader?: FileReaderOptions;
  /** Read block files of workers on this host directly. Default true. */
  shortCircuit?: boolean;
  /** This host's identity, compared with the one each worker reports to find local workers. Default hostIdentity(). */
  hostId?: string;
  /** Write type of this client's files; default: the mount's (see README). */
  writeType?: WriteType;
  /** How workers cache what this client reads: CACHE (default), CACHE_PROMOTE, NO_CACHE. */
  readType?: ReadType;
  /** Cache master answers, kept exact by the change feed (client/metadata-cache.ts). Default false. */
  metadataCache?: boolean;
  /** With the metadata cache: answer opens from it under a change-feed lease of this many ms (master/feed-leases.ts). Default 0 (opens ask the master). */
  feedLeaseMs?: number;
  /** The cluster token, sent to the master and workers. Default: none. */
  token?: string;
  /** Health probes of a worker this client waits on, every this many ms (0 = never). Default 3000. */
  workerProbeIntervalMs?: number;
  /**
   * How long a worker may take to begin its answer (ms). Default 120000. Not for a file's final
   * write while health probes watch its worker: that answer waits for the store to take the file.
   */
  workerHeadersTimeoutMs?: number;
  /** How long a master call looks for a leading master before it fails (ms). Default 15000. */
  masterFailoverTimeoutMs?: number;
  /**
   * Send a big file's whole blocks to a worker while the application is still
   * writing it (a write stream), so a close has only the tail left. Default true.
   */
  streamWrites?: boolean;
}

/**
 * How far a writer must be past a block before the block goes into the write stream:
 * a writer a little out of order (several threads, an mmap's writeback) rarely
 * reaches back that far; one that does makes its close send the whole file instead.
 */
const STREAM_LAG_BYTES = 8 * 1024 * 1024;

/** Largest file size accepted (bytes): what a JS number addresses exactly. */
export const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER;

/** Linux O_ACCMODE; Node does not export it. */
const O_ACCMODE = 3;

/**
 * The local copy of an open file being written. Sequential writes are coalesced in
 * memory (the kernel sends 128 KiB pieces) and reach the temp file in large writes.
 */
class StagingFile {
  size = 0;
  static readonly COALESCE_BYTES = 8 * 1024 * 1024;
  #buf: Buffer | undefined;
  #bufStart = 0;
  #bufLen = 0;

  /** The temp file, created by the first change: most created files stay empty (touch, lock files), and need none. */
  #fh: Promise<fsp.FileHandle> | undefined;

  constructor(readonly path: string) {}

  /** Names are this process's random prefix and a count: random bytes per create cost more than the rest of its naming. */
  static readonly #prefix = randomBytes(8).toString('hex');
  static #made = 0;

  static async create(dir: string): Promise<StagingFile> {
    return new StagingFile(nodePath.join(dir, `stage-${StagingFile.#prefix}-${++StagingFile.#made}`));
  }

  /** The temp file, created on first use. */
  get fh(): Promise<fsp.FileHandle> {
    if (!this.#fh) {
      const p = fsp.open(this.path, 'w+', 0o600);
      p.catch(() => {
        if (this.#fh === p) this.#fh = undefined;
      });
      this.#fh = p;
    }
    return this.#fh;
  }

  async #pwrite(buf: Buffer, pos: number): Promise<void> {
    const fh = await this.fh;
    let off = 0;
    while (off < buf.length) off += (await fh.write(buf, off, buf.length - off, pos + off)).bytesWritten;
  }

  /**
   * Operations run one at a time, in call order. The kernel sends writes of one file
   * concurrently (an mmap's dirty pages at msync); without this, a write arriving
   * while the coalescing buffer was being written out refilled that buffer under the
   * disk write, and the file got the new bytes at the old offset.
   */
  #tail: Promise<unknown> = Promise.resolve();

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Writes out coalesced data; every other operation does this first. */
  drain(): Promise<void> {
    return this.#serial(() => this.#drain());
  }

  async #drain(): Promise<void> {
    if (this.#bufLen === 0) return;
    // Emptied once on disk only: these bytes were acknowledged, and a failed write (ENOSPC) must not lose them.
    await this.#pwrite(this.#buf!.subarray(0, this.#bufLen), this.#bufStart);
    this.#bufLen = 0;
  }

  write(data: Buffer, pos: number): Promise<void> {
    return this.#serial(() => this.#write(data, pos));
  }

  async #write(data: Buffer, pos: number): Promise<void> {
    const cap = StagingFile.COALESCE_BYTES;
    if (this.#bufLen > 0 && pos === this.#bufStart + this.#bufLen && this.#bufLen + data.length <= cap) {
      data.copy(this.#buf!, this.#bufLen);
      this.#bufLen += data.length;
    } else {
      await this.#drain();
      if (data.length >= cap) {
        await this.#pwrite(data, pos);
      } else {
        this.#buf ??= Buffer.allocUnsafe(cap);
        data.copy(this.#buf, 0);
        this.#bufStart = pos;
        this.#bufLen = data.length;
      }
    }
    if (pos + data.length > this.size) this.size = pos + data.length;
  }

  read(into: Buffer, len: number, pos: number): Promise<number> {
    return this.#serial(() => this.#read(into, len, pos));
  }

  async #read(into: Buffer, len: number, pos: number): Promise<number> {
    await this.#drain();
    const end = Math.min(this.size, pos + len);
    if (pos >= end) return 0;
    const fh = await this.fh;
    let n = 0;
    while (pos + n < end) {
      const { bytesRead } = await fh.read(into, n, end - pos - n, pos + n);
      if (bytesRead === 0) {
        into.fill(0, n, end - pos); // a hole past what the disk holds
        return end - pos;
      }
      n += bytesRead;
    }
    return n;
  }

  truncate(size: number): Promise<void> {
    return this.#serial(async () => {
      await this.#drain();
      if (size !== this.size || this.#fh) await (await this.fh).truncate(size);
      this.size = size;
    });
  }

  /**
   * The content as sparse extents ([u64 offset][u32 length][bytes] frames): runs of
   * zeros (holes, or written zeros) are left out, so a mostly-empty file of
   * several GiB costs what its data costs.
   */
  async extents(from = 0, to = Infinity): Promise<Readable> {
    await this.drain();
    // Up to `to`: the size a flush recorded (writes of other handles may be appending meanwhile).
    const size = Math.min(this.size, to);
    const path = this.path;
    async function* frames() {
      const fh = await fsp.open(path, 'r');
      try {
        // Holes, and whatever lies past what the disk holds, are zeros: left out. One frame per data run.
        for await (const { offset, data } of fileDataExtents(fh, from, size, 'zeros')) {
          const head = Buffer.alloc(12);
          head.writeBigUInt64BE(BigInt(offset), 0);
          head.writeUInt32BE(data.length, 8);
          yield head;
          yield data;
        }
      } finally {
        await fh.close();
      }
    }
    return Readable.from(frames(), { objectMode: false });
  }

  async dispose(): Promise<void> {
    await this.#tail;
    this.#buf = undefined;
    this.#bufLen = 0;
    const fh = this.#fh;
    this.#fh = undefined;
    if (!fh) return;
    await fh.then((h) => h.close()).catch(() => undefined);
    await fsp.rm(this.path, { force: true });
  }
}

/** One open inode, shared by all handles on it in this mount. */
interface OpenFile {
  ino: number;
  refs: number;
  staging?: StagingFile;
  dirty: boolean;
  /** Bumped by every change, so a flush knows whether it captured the latest. */
  generation: number;
  mtime?: Timespec;
  lock: Mutex;
  /** Last attributes seen, to answer fstat() on a file unlinked while open. */
  attrs?: FileAttributes;
  /** Unlinked while open here: the staged copy lives on until the last close, then vanishes. */
  unlinked?: boolean;
  /** Whole blocks already on their way to a worker while the file is still written. */
  stream?: WriteStream;
  /** The write its create began (see #begunWrite), not used yet; `at`: performance.now() before the create was sent. */
  begun?: { begin: WriteBeginResponse; at: number };
}

/**
 * How long a write begun by the file's create is used for its first write. The master
 * drops a begun write that no worker renewed after a minute or more (its open-write
 * timeout); a worker renews it only once it writes, so a later first write begins anew.
 */
const BEGUN_WRITE_FRESH_MS = 20_000;

/** A big file going to a worker block by block while it is written (WorkerClient.openStream). */
interface WriteStream {
  worker?: WorkerInfo;
  begin?: WriteBeginResponse;
  writeType?: WriteType;
  id?: string;
  /** The staged file linked into the worker's incoming dir (same host); else blocks go over HTTP. */
  local?: { tier: string; name: string; path: string };
  /** Bytes claimed by appends, started or done: always whole blocks. */
  sentUpTo: number;
  /** The running step (opening, one append); the next starts when it ends. */
  running: Promise<void>;
  busy: boolean;
  /** Being finished or dropped: no new step starts; writes below sentUpTo still break it. */
  closing?: boolean;
  /** A change below sentUpTo, or a failed step: the stream cannot be finished; the close sends the whole file. */
  broken: boolean;
}

interface Handle {
  file: OpenFile;
  writable: boolean;
  reader?: FileReader;
  info?: FileBlocksResponse;
}

/** Errors of commitWrite refused with NOT_FOUND (see #commit): writeFile sends the file again for those only. */
const COMMIT_REFUSED = new WeakSet<Error>();

/** Errors of commitWrite with TIMEOUT (the write expired, or the commit timed out): a create's begun write is begun again for those. */
const COMMIT_TIMED_OUT = new WeakSet<Error>();

export class StrataFileSystem {
  readonly master: MasterClient;
  readonly router: WorkerRouter;
  readonly workers: WorkerClient;
  readonly local: ShortCircuitReader | undefined;
  readonly #stagingDir: string;
  readonly #log: Logger;
  readonly #readerOpts: FileReaderOptions;
  readonly #writeType: WriteType | undefined;
  readonly #streamWrites: boolean;
  readonly #files = new Map<number, OpenFile>();
  readonly #handles = new Map<number, Handle>();
  #nextFh = 1;

  constructor(opts: FileSystemOptions) {
    this.master = new MasterClient(opts.masterUrl, {
      metadataCache: opts.metadataCache === true,
      ...(opts.feedLeaseMs ? { feedLeaseMs: opts.feedLeaseMs } : {}),
      ...(opts.masterFailoverTimeoutMs !== undefined ? { retryForMs: opts.masterFailoverTimeoutMs } : {}),
      ...(opts.token ? { token: opts.token } : {}),
    });
    this.router = new WorkerRouter(this.master);
    this.workers = new WorkerClient({
      readType: opts.readType ?? 'CACHE',
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.workerProbeIntervalMs !== undefined ? { probeIntervalMs: opts.workerProbeIntervalMs } : {}),
      ...(opts.workerHeadersTimeoutMs !== undefined ? { headersTimeoutMs: opts.workerHeadersTimeoutMs } : {}),
      abandonUnhealthy: (w) => this.router.hasOtherUsable(w.id),
    });
    this.local = opts.shortCircuit === false ? undefined : new ShortCircuitReader(opts.hostId ? { hostId: opts.hostId } : {});
    this.#stagingDir = opts.stagingDir;
    this.#log = opts.logger;
    this.#readerOpts = opts.reader ?? {};
    this.#writeType = opts.writeType;
    this.#streamWrites = opts.streamWrites !== false;
  }

  /**
   * Prepares the staging directory; leftovers of a crashed client are removed: this directory's
   * own, and those of its siblings named for a process that no longer exists (`staging-<pid>`
   * beside `staging-<our pid>`). Their bytes are of writes whose close never returned; a killed
   * mount otherwise left them on disk for good.
   */
  async init(): Promise<void> {
    await fsp.rm(this.#stagingDir, { recursive: true, force: true });
    await fsp.mkdir(this.#stagingDir, { recursive: true, mode: 0o700 });
    await removeDeadStagingDirs(this.#stagingDir);
  }

  get data() {
    return { master: this.master, router: this.router, workers: this.workers, local: this.local };
  }

  // ---- metadata ------------------------------------------------------------

  async getattr(path: string): Promise<FileAttributes> {
    return this.#overlay(await this.master.stat(path));
  }

  /** Shows this mount's unflushed size and mtime of files it has open. */
  #overlay(attrs: FileAttributes): FileAttributes {
    const f = this.#files.get(attrs.ino);
    if (f) f.attrs = { ...attrs };
    if (f?.staging) {
      attrs.size = f.staging.size;
      if (f.dirty && f.mtime) attrs.mtime = f.mtime;
    }
    return attrs;
  }

  async readdir(path: string): Promise<DirEntry[]> {
    return (await this.master.list(path)).map((e) => this.#overlay(e) as DirEntry);
  }

  async mkdir(path: string, mode: number): Promise<FileAttributes> {
    return this.master.mkdir(path, mode & 0o7777);
  }

  /** Creates a symbolic link at `path` holding `target` as given: whoever follows it resolves it. */
  async symlink(path: string, target: string): Promise<FileAttributes> {
    const parentPath = dirname(path);
    const parent = await this.master.stat(parentPath);
    if (parent.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${parentPath} is not a directory`);
    return this.master.symlinkAt(parent.ino, basename(path), target);
  }

  async rmdir(path: string): Promise<void> {
    await this.master.rmdir(path);
  }

  async unlink(path: string): Promise<void> {
    await this.master.unlink(path);
  }

  async rename(src: string, dst: string): Promise<void> {
    await this.master.rename(src, dst);
  }

  async chmod(path: string, mode: number): Promise<FileAttributes> {
    return this.master.setAttributes({ path, mode: mode & 0o7777 });
  }

  async chown(path: string, uid: number, gid: number): Promise<FileAttributes> {
    // (uid_t)-1 / (gid_t)-1 mean "leave unchanged".
    return this.master.setAttributes({
      path,
      ...(uid !== 0xffffffff && uid >= 0 ? { uid } : {}),
      ...(gid !== 0xffffffff && gid >= 0 ? { gid } : {}),
    });
  }

  async utimens(path: string, atime: Timespec | 'now', mtime: Timespec | 'now'): Promise<FileAttributes> {
    const attrs = await this.master.setAttributes({ path, atime, mtime });
    const f = this.#files.get(attrs.ino);
    if (f) f.mtime = attrs.mtime;
    return attrs;
  }

  async statfs(): Promise<{ capacityBytes: number; usedBytes: number }> {
    const ws = (await this.master.workers()).filter((w) => w.live);
    return { capacityBytes: ws.reduce((a, w) => a + w.capacityBytes, 0), usedBytes: ws.reduce((a, w) => a + w.usedBytes, 0) };
  }

  // ---- inode-based operations (the FUSE low-level API speaks inodes) -----------

  async lookup(parent: number, name: string): Promise<FileAttributes> {
    return this.#overlay(await this.master.lookup(parent, name));
  }

  async getattrIno(ino: number): Promise<FileAttributes> {
    try {
      return this.#overlay(await this.master.statIno(ino));
    } catch (err) {
      // Unlinked while open here: the open file lives on until its last close, as POSIX says.
      const f = this.#files.get(ino);
      if (f?.attrs && err instanceof StrataError && err.code === 'NOT_FOUND') {
        const a = { ...f.attrs, nlink: 0 };
        if (f.staging) a.size = f.staging.size;
        return a;
      }
      throw err;
    }
  }

  /** One page of a directory (MasterClient.listPage), with what this mount has open overlaid. */
  async readdirPage(ino: number, after: string | null, limit: number): Promise<{ entries: DirEntry[]; next: string | null; asOf?: number; freshForMs?: number }> {
    const page = await this.master.listPage({ ino }, after, limit);
    for (const e of page.entries) this.#overlay(e);
    return page;
  }

  async mkdirAt(parent: number, name: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.master.mkdirAt(parent, name, mode & 0o7777, owner);
  }

  async unlinkAt(parent: number, name: string): Promise<void> {
    const open = await this.#keepOpenCopy(parent, name);
    await this.master.unlinkAt(parent, name);
    if (open) open.unlinked = true;
  }

  /**
   * POSIX keeps an unlinked file readable and writable through the handles that
   * have it open. Before a name of a file open here goes away (unlink, or rename
   * over it), its bytes are staged locally, so those handles do not depend on the
   * blocks the master is about to drop. Returns that open file: the caller marks it
   * unlinked once the name is gone (if the unlink or rename fails, its closes must still store it).
   */
  async #keepOpenCopy(parent: number, name: string): Promise<OpenFile | undefined> {
    if (this.#files.size === 0) return undefined;
    const a = await this.master.lookup(parent, name).catch(() => undefined);
    const f = a && this.#files.get(a.ino);
    if (!f || a.type !== 'file' || a.nlink > 1) return undefined;
    await this.#ensureStaging(f, undefined);
    return f;
  }

  async rmdirAt(parent: number, name: string): Promise<void> {
    await this.master.rmdirAt(parent, name);
  }

  /** rename(2) and renameat2's flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2, nothing is replaced). */
  async renameAt(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    const replaced = flags & 2 ? undefined : await this.#keepOpenCopy(newParent, newName);
    await this.master.renameAt(parent, name, newParent, newName, flags);
    if (replaced) replaced.unlinked = true;
  }

  /** setattr(2)-style changes; a size change truncates (through the open handle if given). */
  async setattrIno(
    ino: number,
    c: { mode?: number; uid?: number; gid?: number; size?: number; atime?: Timespec | 'now'; mtime?: Timespec | 'now' },
    fh?: number | null,
  ): Promise<FileAttributes> {
    if (c.size !== undefined) {
      const h = fh != null ? this.#handles.get(fh) : undefined;
      if (h) await this.#truncateOpen(h.file, c.size);
      else await this.#truncateIno(ino, c.size);
    }
    const req: { mode?: number; uid?: number; gid?: number; atime?: Timespec | 'now'; mtime?: Timespec | 'now' } = {};
    if (c.mode !== undefined) req.mode = c.mode & 0o7777;
    if (c.uid !== undefined) req.uid = c.uid;
    if (c.gid !== undefined) req.gid = c.gid;
    if (c.atime !== undefined) req.atime = c.atime;
    if (c.mtime !== undefined) req.mtime = c.mtime;
    if (Object.keys(req).length > 0) {
      const attrs = await this.master.setAttributesIno(ino, req);
      const f = this.#files.get(ino);
      if (f && req.mtime !== undefined) f.mtime = attrs.mtime;
    }
    return this.getattrIno(ino);
  }

  async #truncateIno(ino: number, size: number): Promise<void> {
    const file = this.#openFile(ino);
    try {
      await this.#truncateOpen(file, size);
      await this.#flushFile(file);
    } finally {
      await this.#releaseFile(file);
    }
  }

  /**
   * create(2) under `parent`: a new empty file, open for writing. `changeSeq`: the feed
   * seq of the create's own change, when the metadata cache follows the feed.
   * `forWriting`: the create also begins the file's first write (one master request less
   * for a program that writes the file and closes it). `lookInStore`: see the master's
   * create (a name only the store has counts as taken).
   */
  async createAt(
    parent: number,
    name: string,
    mode: number,
    opts: { owner?: { uid: number; gid: number }; forWriting?: boolean; lookInStore?: boolean } = {},
  ): Promise<{ attrs: FileAttributes; fh: number; changeSeq?: number }> {
    // Its age counts from before the request: the answer may be held (feed leases) after the master began it.
    const asked = performance.now();
    const { committed, changeSeq, begin, ...attrs } = await this.master.createAt(parent, name, mode & 0o7777, {
      ...(opts.owner ? { owner: opts.owner } : {}),
      closeEmpty: { writeType: this.#writeType },
      begin: opts.forWriting === true,
      ...(opts.lookInStore ? { lookInStore: true } : {}),
    });
    return { attrs, fh: await this.#openCreated(attrs, committed === true, begin && { begin, at: asked }), ...(changeSeq !== undefined ? { changeSeq } : {}) };
  }

  /** Opens by inode; also returns the attributes the open found, for cache revalidation. */
  async openIno(ino: number, flags: number): Promise<{ fh: number; attrs: FileAttributes }> {
    // Close-to-open: an open asks the master (as JuiceFS's open-cache 0), unless this mount
    // holds a feed lease: then the master answers no close before this cache has applied it.
    const info = await this.master.fileBlocksForOpen(ino);
    const fh = await this.#openInfo(info, flags);
    return { fh, attrs: this.#overlay({ ...info.attrs }) };
  }

  // ---- handles ---------------------------------------------------------------

  #openFile(ino: number): OpenFile {
    let f = this.#files.get(ino);
    if (!f) {
      f = { ino, refs: 0, dirty: false, generation: 0, lock: new Mutex() };
      this.#files.set(ino, f);
    }
    f.refs++;
    return f;
  }

  #handle(fh: number): Handle {
    const h = this.#handles.get(fh);
    if (!h) throw new StrataError('BAD_HANDLE', `no open file handle ${fh}`);
    return h;
  }

  #addHandle(h: Handle): number {
    const fh = this.#nextFh++;
    if (this.#nextFh > 0x7fffffff) this.#nextFh = 1;
    this.#handles.set(fh, h);
    return fh;
  }

  /** create(2) with O_CREAT|O_EXCL semantics: a new empty file, open for writing. */
  async create(path: string, mode: number): Promise<number> {
    return this.#openCreated(await this.master.create(path, mode & 0o7777));
  }

  /** `committed`: the master recorded it complete and empty already; otherwise its close must. */
  async #openCreated(attrs: FileAttributes, committed = false, begun?: OpenFile['begun']): Promise<number> {
    const file = this.#openFile(attrs.ino);
    file.attrs = attrs;
    if (begun) file.begun = begun;
    await file.lock.run(async () => {
      // Known empty: a first write needs no copy of the old content (nor a master call to find it).
      if (!file.staging) file.staging = await StagingFile.create(this.#stagingDir);
      // Even an empty new file must reach the under-store at close, unless it is recorded already.
      if (!committed) file.dirty = true;
      file.generation++;
      file.mtime = attrs.mtime;
    });
    return this.#addHandle({ file, writable: true });
  }

  async open(path: string, flags: number): Promise<number> {
    return this.#openInfo(await this.master.fileBlocks(path), flags);
  }

  async #openInfo(info: FileBlocksResponse, flags: number): Promise<number> {
    const path = `inode ${info.attrs.ino}`;
    if (info.attrs.type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
    const acc = flags & O_ACCMODE;
    const writable = acc === fsConstants.O_WRONLY || acc === fsConstants.O_RDWR;
    const file = this.#openFile(info.attrs.ino);
    file.attrs ??= info.attrs;
    const fh = this.#addHandle({ file, writable, info });
    // Also read-only: Linux truncates on O_RDONLY|O_TRUNC, and with atomic O_TRUNC the kernel leaves it to the open.
    if (flags & fsConstants.O_TRUNC) {
      try {
        await this.#truncateOpen(file, 0);
      } catch (err) {
        await this.release(fh);
        throw err;
      }
    }
    return fh;
  }

  /**
   * Up to `len` bytes at `pos`, for a reply to the kernel: same-host cached bytes as
   * ranges of the worker's page files (handed to the kernel without being read
   * here), the others as buffers that may be views of a read-ahead window reused
   * after the current macrotask. Use them at once; never modify them.
   * `keep`, for a FUSE binding that answers later reads itself: offered whole cached pages
   * random reads of this handle went through (see FileReader's KeepPage); never while the
   * file is being written here (those reads come from the staged copy).
   */
  async readParts(fh: number, len: number, pos: number, keep?: KeepPage): Promise<Buffer | ReadParts> {
    const h = this.#handle(fh);
    const f = h.file;
    if (f.staging) {
      const buf = Buffer.allocUnsafe(len);
      const n = await f.staging.read(buf, len, pos);
      return n === len ? buf : buf.subarray(0, n);
    }
    if (!h.reader) {
      const info = h.info ?? (await this.master.fileBlocksByIno(f.ino));
      h.reader = new FileReader(this.data, info, { ...this.#readerOpts, recycleWindows: true, fileRanges: true });
    }
    // Checked when offered, not now: a write may start while this read waits.
    return h.reader.readParts(pos, len, keep && { offer: (at, range) => !f.staging && !f.dirty && keep.offer(at, range), stale: () => keep.stale() });
  }

  /** Lets go of pages a `keep` of readParts kept. */
  releaseKept(ranges: readonly PageRange[]): void {
    this.data.local?.release(ranges);
  }

  async read(fh: number, into: Buffer, len: number, pos: number): Promise<number> {
    const h = this.#handle(fh);
    const f = h.file;
    if (f.staging) return f.staging.read(into, len, pos);
    if (!h.reader) {
      const info = h.info ?? (await this.master.fileBlocksByIno(f.ino));
      h.reader = new FileReader(this.data, info, this.#readerOpts);
    }
    return h.reader.read(pos, len, into, 0);
  }

  async write(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.#handle(fh);
    if (!h.writable) throw new StrataError('BAD_HANDLE', 'file is not open for writing');
    if (pos + len > MAX_FILE_SIZE) throw new StrataError('FILE_TOO_LARGE', 'write past the largest supported file size');
    const f = h.file;
    const staging = f.staging ?? (await this.#ensureStaging(f, undefined));
    await staging.write(len === buf.length ? buf : buf.subarray(0, len), pos);
    f.dirty = true;
    f.generation++;
    f.mtime = timespecNow();
    if (f.stream && pos < f.stream.sentUpTo) f.stream.broken = true;
    this.#pumpStream(f, staging);
    return len;
  }

  // ---- write streams: whole blocks go to a worker while the file is written ----

  /** Starts the file's write stream once it has a block and some more, or sends the next whole block. */
  #pumpStream(f: OpenFile, staging: StagingFile): void {
    let s = f.stream;
    if (!s) {
      const bs = f.attrs?.blockSize;
      if (!this.#streamWrites || f.unlinked || !bs || staging.size < bs + STREAM_LAG_BYTES) return;
      s = f.stream = { sentUpTo: 0, running: Promise.resolve(), busy: true, broken: false };
      const opened = s;
      s.running = this.#openStream(f, opened, staging).then(
        () => this.#streamStepDone(f, opened, staging),
        (err) => this.#streamFailed(f, opened, err),
      );
      return;
    }
    if (s.busy || s.broken || s.closing || !s.begin) return;
    const bs = s.begin.blockSize;
    if (staging.size < s.sentUpTo + bs + STREAM_LAG_BYTES) return;
    const offset = s.sentUpTo;
    s.sentUpTo += bs;
    s.busy = true;
    const cur = s;
    s.running = this.#appendStream(f, cur, staging, offset, bs).then(
      () => this.#streamStepDone(f, cur, staging),
      (err) => this.#streamFailed(f, cur, err),
    );
  }

  #streamStepDone(f: OpenFile, s: WriteStream, staging: StagingFile): void {
    s.busy = false;
    if (f.stream === s) this.#pumpStream(f, staging);
  }

  #streamFailed(f: OpenFile, s: WriteStream, err: unknown): void {
    s.busy = false;
    s.broken = true;
    this.#log.info({ ino: f.ino, err: toStrataError(err).message }, 'write stream failed; the close sends the whole file');
  }

  /** The write the file's create began, while fresh enough to use (once); else undefined. */
  #begunWrite(f: OpenFile): WriteBeginResponse | undefined {
    const b = f.begun;
    f.begun = undefined;
    return b && performance.now() - b.at < BEGUN_WRITE_FRESH_MS ? b.begin : undefined;
  }

  async #openStream(f: OpenFile, s: WriteStream, staging: StagingFile): Promise<void> {
    const begin = this.#begunWrite(f) ?? (await this.master.beginWrite(f.ino));
    const worker = await this.router.forWrite(f.ino);
    const writeType = this.#writeType ?? begin.writeType;
    s.local = this.#mayHandOver(worker) ? await this.#handOver(worker, staging) : undefined;
    try {
      s.id = await this.workers.openStream(worker, f.ino, begin.containerId, begin.blockSize, writeType, s.local);
    } catch (err) {
      if (!s.local || !this.#handOverRefused(worker, err)) throw err;
      await fsp.rm(s.local.path, { force: true });
      s.local = undefined;
      s.id = await this.workers.openStream(worker, f.ino, begin.containerId, begin.blockSize, writeType, undefined);
    }
    s.worker = worker;
    s.writeType = writeType;
    s.begin = begin;
  }

  async #appendStream(f: OpenFile, s: WriteStream, staging: StagingFile, offset: number, length: number): Promise<void> {
    if (s.local) {
      // The worker reads the block from the linked file: it must be on disk, not in the coalescing buffer.
      await staging.drain();
      await this.workers.appendStream(s.worker!, s.id!, f.ino, offset, length);
    } else {
      const buf = Buffer.allocUnsafe(length);
      const n = await staging.read(buf, length, offset);
      if (n !== length) throw new StrataError('INTERNAL', `staged file is shorter than the block sent (${n} of ${length} bytes)`);
      await this.workers.appendStream(s.worker!, s.id!, f.ino, offset, length, buf);
    }
  }

  /** Drops a stream that will not be finished, and the blocks the worker took for it. */
  #dropStream(s: WriteStream): void {
    s.closing = true;
    void (async () => {
      await s.running.catch(() => undefined);
      if (s.id && s.worker) await this.workers.deleteStream(s.worker, s.id).catch(() => undefined);
      if (s.local) await fsp.rm(s.local.path, { force: true });
    })().catch((err) => this.#log.warn({ err: toStrataError(err).message }, 'dropping a write stream failed'));
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    await this.#truncateOpen(this.#handle(fh).file, size);
  }

  async truncate(path: string, size: number): Promise<void> {
    const attrs = await this.master.stat(path);
    if (attrs.type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
    await this.#truncateIno(attrs.ino, size);
  }

  async #truncateOpen(f: OpenFile, size: number): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw new StrataError('INVALID_ARGUMENT', `bad size ${size}`);
    const staging = await this.#ensureStaging(f, size);
    await f.lock.run(async () => {
      if (f.stream && size < f.stream.sentUpTo) f.stream.broken = true;
      await staging.truncate(size);
      f.dirty = true;
      f.generation++;
      f.mtime = timespecNow();
    });
  }

  /** The staged copy of an open file, loading its current bytes (up to `upTo`) on first use. */
  async #ensureStaging(f: OpenFile, upTo: number | undefined): Promise<StagingFile> {
    return f.lock.run(async () => {
      if (f.staging) return f.staging;
      const staging = await StagingFile.create(this.#stagingDir);
      try {
        const info = await this.master.fileBlocksByIno(f.ino);
        const size = Math.min(info.attrs.size, upTo ?? Infinity);
        if (size > 0) {
          const reader = new FileReader(this.data, info, this.#readerOpts);
          const chunk = Buffer.allocUnsafe(8 * 1024 * 1024);
          for (let pos = 0; pos < size; ) {
            const n = await reader.read(pos, Math.min(chunk.length, size - pos), chunk, 0);
            if (n === 0) break;
            await staging.write(chunk.subarray(0, n), pos);
            pos += n;
          }
        }
        staging.size = size;
      } catch (err) {
        await staging.dispose();
        throw err;
      }
      f.staging = staging;
      return staging;
    });
  }

  async flush(fh: number): Promise<void> {
    await this.#flushFile(this.#handle(fh).file);
  }

  async fsync(fh: number): Promise<void> {
    await this.#flushFile(this.#handle(fh).file);
  }

  /** Sends a dirty file through a worker to the under-store and commits its blocks. */
  async #flushFile(f: OpenFile): Promise<void> {
    await f.lock.run(async () => {
      // A write stream ends here, finished below or dropped; later writes start a new one. It stays
      // the file's stream while its last step ends, so a write below what it sent still breaks it;
      // from here to taking `gen` below nothing waits, so every write is either seen by that check
      // or counted in a generation after `gen` (and the file stays dirty).
      const stream = f.stream;
      if (stream) {
        stream.closing = true;
        await stream.running.catch(() => undefined);
      }
      f.stream = undefined;
      const usable = stream && !stream.broken && stream.begin && f.dirty && f.staging && !f.unlinked && f.staging.size >= stream.sentUpTo ? stream : undefined;
      if (stream && !usable) this.#dropStream(stream);
      if (!f.dirty || !f.staging) return;
      if (f.unlinked) {
        f.dirty = false; // no name refers to it any more: nothing to store
        return;
      }
      const gen = f.generation;
      const staging = f.staging;
      const size = staging.size;
      if (usable) {
        try {
          await this.#upload(f.ino, usable.begin!, size, () => staging.extents(usable.sentUpTo, size), true, f.mtime, staging, usable);
          if (f.generation === gen) f.dirty = false;
          return;
        } catch (err) {
          // The stream's worker died, or it dropped the stream (idle, restarted): send the whole file as without one.
          this.#log.warn({ ino: f.ino, err: toStrataError(err).message }, 'finishing a write stream failed; sending the whole file');
          this.#dropStream(usable);
        }
      }
      if (size === 0) {
        // Nothing for a worker to carry: the master records (and stores) the empty file in one request.
        try {
          await this.master.commitEmpty(f.ino, this.#writeType, f.mtime);
        } catch (err) {
          if (err instanceof StrataError && err.code === 'NOT_FOUND') {
            f.dirty = false;
            return;
          }
          throw err;
        }
        if (f.generation === gen) f.dirty = false;
        return;
      }
      // Unlinked while open (beginWrite: NOT_FOUND): its bytes die with the last close anyway, nothing to store.
      let begun = this.#begunWrite(f);
      let begin = begun ?? (await this.#beginUnlessGone(f.ino));
      for (let attempt = 1; begin; attempt++) {
        try {
          await this.#upload(f.ino, begin, size, () => staging.extents(0, size), true, f.mtime, staging);
          break;
        } catch (err) {
          // The worker could not be reached or died mid-write (SIGKILL, crash): the bytes are still staged
          // here, so send them once more through another worker, under a new container (the dead one's
          // partial blocks then never match the committed file). #upload has marked the worker failed.
          // Or the file was renamed while it was written (NOT_FOUND; nothing was stored): send it to where it is now.
          const moved = err instanceof StrataError && err.code === 'NOT_FOUND';
          // The write its create began ran out before the commit (the master forgot it): once more, begun now.
          const expired = begun !== undefined && begin === begun && err instanceof StrataError && COMMIT_TIMED_OUT.has(err);
          begun = undefined;
          if (attempt >= 3 || !(workerUnreachable(err) || moved || expired)) throw err;
          begin = await this.#beginUnlessGone(f.ino);
          // Unlinked meanwhile (by another client: the write its create began came before that): nothing to store, nothing to say.
          if (begin) {
            this.#log.warn(
              { ino: f.ino, err: (err as Error).message },
              expired ? "the write the file's create began had expired; writing it again" : moved ? 'the file moved while it was written; writing it again' : 'write through a worker failed; trying another worker',
            );
          }
        }
      }
      if (!begin) {
        f.dirty = false;
        return;
      }
      if (f.generation === gen) f.dirty = false;
    });
  }

  /** A new write of `ino`; undefined when the file is gone (unlinked). */
  async #beginUnlessGone(ino: number): Promise<WriteBeginResponse | undefined> {
    try {
      return await this.master.beginWrite(ino);
    } catch (err) {
      if (err instanceof StrataError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  async release(fh: number): Promise<void> {
    const h = this.#handle(fh);
    this.#handles.delete(fh);
    h.reader?.close();
    await this.#releaseFile(h.file);
  }

  async #releaseFile(f: OpenFile): Promise<void> {
    f.refs--;
    if (f.refs > 0) return;
    try {
      if (f.dirty) await this.#flushFile(f);
    } catch (err) {
      this.#log.error({ ino: f.ino, err: (err as Error).message }, 'could not store a file on its last close; its changes are lost');
    } finally {
      if (f.refs === 0) {
        if (this.#files.get(f.ino) === f) this.#files.delete(f.ino);
        const stream = f.stream;
        f.stream = undefined;
        if (stream) {
          // Its opening may still link the staged file: let that end before the file goes.
          this.#dropStream(stream);
          await stream.running.catch(() => undefined);
        }
        await f.staging?.dispose();
      }
    }
  }

  // ---- whole-file helpers for the CLI ---------------------------------------

  /**
   * Creates or replaces `path` with `size` bytes from `body`, streamed straight to a
   * worker. A write-through whose file was renamed before its commit stores nothing
   * (NOT_FOUND) and must be sent again to where the file is now: `body` as a function
   * opens the bytes once per attempt; a stream, used up by then, fails instead.
   */
  async writeFile(path: string, body: Readable | Buffer | (() => Readable), size: number, mode = 0o644): Promise<FileAttributes> {
    let attrs: FileAttributes;
    try {
      attrs = await this.master.create(path, mode);
    } catch (err) {
      if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
      attrs = await this.master.stat(path);
      if (attrs.type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
    }
    const ino = attrs.ino;
    const bytes = typeof body === 'function' ? async () => body() : body;
    for (let attempt = 1; ; attempt++) {
      const begin = await this.master.beginWrite(ino);
      try {
        return await this.#upload(ino, begin, size, bytes, false);
      } catch (err) {
        // Only the commit's NOT_FOUND: a source that fails with NOT_FOUND (removed while copied) fails the copy.
        const moved = err instanceof StrataError && COMMIT_REFUSED.has(err);
        if (!moved || attempt >= 3 || bytes instanceof Readable) throw err;
        this.#log.warn({ ino, err: (err as Error).message }, 'the file moved while it was written; writing it again');
      }
    }
  }

  /**
   * Sends a file's whole content through a worker (per the write type) and commits
   * the new blocks. A staged file going to a worker on this host is not sent over
   * HTTP: it is hard-linked into the worker's incoming dir, which reads it from disk.
   */
  async #upload(
    ino: number,
    begin: WriteBeginResponse,
    size: number,
    body: Readable | Buffer | (() => Promise<Readable>),
    extents: boolean,
    mtime?: Timespec,
    staging?: StagingFile,
    /** Finish this write stream: `body` then has the bytes from where the stream is. */
    stream?: WriteStream,
  ): Promise<FileAttributes> {
    const worker = stream?.worker ?? (await this.router.forWrite(ino));
    const writeType = stream?.writeType ?? this.#writeType ?? begin.writeType;
    let res;
    try {
      if (stream?.local) await staging?.drain();
      const local = stream ? undefined : staging && this.#mayHandOver(worker) ? await this.#handOver(worker, staging) : undefined;
      const overHttp = async () => this.workers.writeFile(worker, ino, begin.containerId, begin.blockSize, size, typeof body === 'function' ? await body() : body, writeType, extents, undefined, stream?.id);
      /** The worker wrote the handed-over file: it removed the link before answering (or failed the write). */
      let taken = false;
      try {
        if (stream?.local) {
          // The worker reads on in the file linked when the stream opened, and unlinks it.
          res = await this.workers.writeFile(worker, ino, begin.containerId, begin.blockSize, size, Buffer.alloc(0), writeType, false, undefined, stream.id);
        } else if (local) {
          try {
            res = await this.workers.writeFile(worker, ino, begin.containerId, begin.blockSize, size, Buffer.alloc(0), writeType, false, local);
            taken = true;
          } catch (err) {
            // Refused before the worker wrote anything (it opens the file first): the same write, over HTTP.
            if (!this.#handOverRefused(worker, err)) throw err;
            res = await overHttp();
          }
        } else {
          res = await overHttp();
        }
      } finally {
        if (local && !taken) await fsp.rm(local.path, { force: true });
      }
    } catch (err) {
      if (workerUnreachable(err)) this.router.markFailed(worker);
      else this.router.invalidate();
      // Nothing was committed, and a retry begins a write of its own: the master drops this one's copies now.
      this.master.abandonWrite(ino, begin.containerId).catch((e: unknown) => this.#log.debug({ ino, err: (e as Error).message }, 'could not abandon a failed write; it expires'));
      throw err;
    }
    return this.#commit({
      ino,
      containerId: begin.containerId,
      size: res.size,
      blocks: res.blocks,
      workerId: worker.id,
      ufsFingerprint: res.ufsFingerprint,
      cached: res.cached,
      writeType,
      ...(mtime ? { mtime } : {}),
      ...(res.ufsAt ? { ufsAt: res.ufsAt } : {}),
    });
  }

  /** commitWrite; a NOT_FOUND from it (the file renamed or unlinked meanwhile) is marked as the commit's. */
  async #commit(req: Parameters<MasterClient['commitWrite']>[0]): Promise<FileAttributes> {
    try {
      return await this.master.commitWrite(req);
    } catch (err) {
      if (err instanceof StrataError && err.code === 'NOT_FOUND') COMMIT_REFUSED.add(err);
      if (err instanceof StrataError && err.code === 'TIMEOUT') COMMIT_TIMED_OUT.add(err);
      throw err;
    }
  }

  /** Same-host workers that could not read a file handed over (another user's): they get bytes over HTTP. */
  readonly #noHandOver = new Set<number>();

  #mayHandOver(worker: WorkerInfo): boolean {
    return !!this.local?.isLocal(worker) && !this.#noHandOver.has(worker.id);
  }

  /** Whether `err` is `worker` refusing a handed-over file it may not read; then it is not handed files again. */
  #handOverRefused(worker: WorkerInfo, err: unknown): boolean {
    if (!(err instanceof StrataError && err.code === 'LOCAL_FILE_UNREADABLE')) return false;
    if (!this.#noHandOver.has(worker.id)) {
      this.#noHandOver.add(worker.id);
      this.#log.warn({ worker: worker.id, err: err.message }, 'the worker on this host cannot read files this client hands over (another user?); sending it bytes over HTTP');
    }
    return true;
  }

  /**
   * Links a staged file into an incoming dir of a same-host worker (a tier on the
   * same file system); undefined when none takes it (other device, permissions).
   */
  async #handOver(worker: WorkerInfo, staging: StagingFile): Promise<{ tier: string; name: string; path: string } | undefined> {
    await staging.drain();
    await staging.fh; // the file exists once anything was written; make sure of it
    for (const tier of worker.tiers) {
      const name = randomBytes(12).toString('hex');
      const path = nodePath.join(tier.dir, INCOMING_DIR, name);
      try {
        await fsp.link(staging.path, path);
        return { tier: tier.name, name, path };
      } catch {
        // EXDEV (another file system), EACCES, no such dir (an older worker): try the next tier, then HTTP.
      }
    }
    return undefined;
  }

  /** A reader over the current content of `path`. */
  async openReader(path: string): Promise<FileReader> {
    const info = await this.master.fileBlocks(path);
    if (info.attrs.type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
    return new FileReader(this.data, info, this.#readerOpts);
  }

  /** Flushes and releases every open handle (on unmount). */
  async close(): Promise<void> {
    for (const fh of [...this.#handles.keys()]) {
      await this.release(fh).catch((err) => this.#log.error({ err: toStrataError(err).message }, 'release on close failed'));
    }
    await this.local?.close();
    await this.workers.close();
    await this.master.close();
  }
}

/** Removes the siblings of `dir` (`<prefix><pid>`, same prefix) whose process is gone; errors are left alone. */
async function removeDeadStagingDirs(dir: string): Promise<void> {
  const base = nodePath.basename(dir);
  const m = /^(.*\D)(\d+)$/.exec(base);
  if (!m || Number(m[2]) !== process.pid) return;
  const prefix = m[1]!;
  const parent = nodePath.dirname(dir);
  for (const name of await fsp.readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !/^\d+$/.test(name.slice(prefix.length))) continue;
    const pid = Number(name.slice(prefix.length));
    if (pid === process.pid || processExists(pid)) continue;
    await fsp.rm(nodePath.join(parent, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
