/**
 * A complete in-memory file system on Strata's own FUSE binding, with no master:
 * it exercises every operation of the binding through a real mount. Run as a
 * child process (`node memfs.js MOUNTPOINT`), so the test process never touches
 * a mount served by its own event loop.
 */

import { constants as os } from 'node:os';
import { Attr, DirListingEntry, Entry, FuseSession, LowLevelHandlers, RENAME_EXCHANGE, RENAME_NOREPLACE, RequestContext, SetAttrChanges } from '../../src/fuse/native';
import { Timespec, timespecNow } from '../../src/common/protocol';

const E = os.errno;
const O_TRUNC = 0o1000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** A file's bytes in 1 MiB chunks: holes take no memory, so offsets far past 4 GiB work. */
class SparseBytes {
  static readonly CHUNK = 1024 * 1024;
  readonly #chunks = new Map<number, Buffer>();

  /** The bytes of [offset, end); holes read as zeros. */
  read(offset: number, end: number): Buffer {
    const out = Buffer.alloc(Math.max(0, end - offset));
    const C = SparseBytes.CHUNK;
    for (let pos = offset; pos < end; ) {
      const i = Math.floor(pos / C);
      const within = pos - i * C;
      const n = Math.min(C - within, end - pos);
      this.#chunks.get(i)?.copy(out, pos - offset, within, within + n);
      pos += n;
    }
    return out;
  }

  write(data: Buffer, offset: number): void {
    const C = SparseBytes.CHUNK;
    for (let done = 0; done < data.length; ) {
      const pos = offset + done;
      const i = Math.floor(pos / C);
      const within = pos - i * C;
      const n = Math.min(C - within, data.length - done);
      let chunk = this.#chunks.get(i);
      if (!chunk) this.#chunks.set(i, (chunk = Buffer.alloc(C)));
      data.copy(chunk, within, done, done + n);
      done += n;
    }
  }

  /** Forgets everything at and past `size`, so a later grow reads zeros there. */
  cut(size: number): void {
    const C = SparseBytes.CHUNK;
    for (const i of this.#chunks.keys()) if (i * C >= size) this.#chunks.delete(i);
    if (size % C !== 0) this.#chunks.get(Math.floor(size / C))?.fill(0, size % C);
  }
}

class FsError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}
const fail = (errno: number): never => {
  throw new FsError(errno);
};

interface Node {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  data: SparseBytes;
  size: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  children?: Map<string, number>;
  target?: string;
  xattrs: Map<string, Buffer>;
}

export class MemFs implements LowLevelHandlers {
  readonly nodes = new Map<number, Node>();
  #next = 2;
  #fh = 1;
  /** flock(2) locks: inode → lock owner → LOCK_SH or LOCK_EX; and who waits for a change. */
  readonly #flocks = new Map<number, Map<number, number>>();
  readonly #flockWaiters = new Map<number, (() => void)[]>();
  readonly #orphans = new Set<number>();

  constructor() {
    const now = timespecNow();
    this.nodes.set(1, { ino: 1, mode: S_IFDIR | 0o777, uid: 0, gid: 0, nlink: 2, rdev: 0, data: new SparseBytes(), size: 0, atime: now, mtime: now, ctime: now, children: new Map(), xattrs: new Map() });
  }

  #node(ino: number): Node {
    return this.nodes.get(ino) ?? fail(E.ENOENT);
  }
  #dir(ino: number): Node {
    const n = this.#node(ino);
    if (!n.children) fail(E.ENOTDIR);
    return n;
  }
  #attr(n: Node): Attr {
    return { ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev, size: n.size, atime: n.atime, mtime: n.mtime, ctime: n.ctime };
  }
  #entry(n: Node): Entry {
    return { attr: this.#attr(n), attrTimeout: 1, entryTimeout: 1 };
  }
  #touch(n: Node, what: 'm' | 'c') {
    const now = timespecNow();
    n.ctime = now;
    if (what === 'm') n.mtime = now;
  }
  #newNode(ctx: RequestContext, parent: Node, name: string, mode: number, extra: Partial<Node> = {}): Node {
    if (Buffer.byteLength(name) > 255) fail(E.ENAMETOOLONG);
    if (parent.children!.has(name)) fail(E.EEXIST);
    const now = timespecNow();
    const n: Node = { ino: this.#next++, mode, uid: ctx.uid, gid: parent.mode & 0o2000 ? parent.gid : ctx.gid, nlink: 1, rdev: 0, data: new SparseBytes(), size: 0, atime: now, mtime: now, ctime: now, xattrs: new Map(), ...extra };
    this.nodes.set(n.ino, n);
    parent.children!.set(name, n.ino);
    this.#touch(parent, 'm');
    return n;
  }
  #drop(n: Node) {
    n.nlink--;
    this.#touch(n, 'c');
    if (n.nlink <= 0 || (n.children && n.nlink <= 1)) this.#orphan(n);
  }
  /** No name reaches `n` any more; it lives on (open files, the kernel's inode) until the kernel forgets it. */
  #orphan(n: Node) {
    n.nlink = 0;
    this.#orphans.add(n.ino);
  }

  forget(ino: number) {
    // The kernel forgets an inode only when nothing (no open file) uses it any more.
    if (this.#orphans.delete(ino)) this.nodes.delete(ino);
  }

  async lookup(_ctx: RequestContext, parent: number, name: string) {
    if (Buffer.byteLength(name) > 255) fail(E.ENAMETOOLONG);
    const ino = this.#dir(parent).children!.get(name) ?? fail(E.ENOENT);
    return this.#entry(this.#node(ino));
  }
  async getattr(_ctx: RequestContext, ino: number) {
    return { attr: this.#attr(this.#node(ino)), timeout: 1 };
  }
  async setattr(_ctx: RequestContext, ino: number, c: SetAttrChanges) {
    const n = this.#node(ino);
    const now = timespecNow();
    if (c.mode !== undefined) n.mode = (n.mode & S_IFMT) | (c.mode & 0o7777);
    if (c.uid !== undefined) n.uid = c.uid;
    if (c.gid !== undefined) n.gid = c.gid;
    if (c.size !== undefined) {
      if (n.children) fail(E.EISDIR);
      this.#resize(n, c.size);
      n.mtime = now;
    }
    if (c.atime !== undefined) n.atime = c.atime === 'now' ? now : c.atime;
    if (c.mtime !== undefined) n.mtime = c.mtime === 'now' ? now : c.mtime;
    n.ctime = now;
    return { attr: this.#attr(n), timeout: 1 };
  }
  #resize(n: Node, size: number) {
    if (size < n.size) n.data.cut(size);
    n.size = size;
  }
  async readlink(_ctx: RequestContext, ino: number) {
    return this.#node(ino).target ?? fail(E.EINVAL);
  }
  async mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number) {
    return this.#entry(this.#newNode(ctx, this.#dir(parent), name, mode, { rdev }));
  }
  async mkdir(ctx: RequestContext, parent: number, name: string, mode: number) {
    const p = this.#dir(parent);
    const n = this.#newNode(ctx, p, name, S_IFDIR | (mode & 0o7777), { children: new Map(), nlink: 2 });
    p.nlink++;
    return this.#entry(n);
  }
  async unlink(_ctx: RequestContext, parent: number, name: string) {
    const p = this.#dir(parent);
    const n = this.#node(p.children!.get(name) ?? fail(E.ENOENT));
    if (n.children) fail(E.EISDIR);
    p.children!.delete(name);
    this.#touch(p, 'm');
    this.#drop(n);
  }
  async rmdir(_ctx: RequestContext, parent: number, name: string) {
    const p = this.#dir(parent);
    const n = this.#node(p.children!.get(name) ?? fail(E.ENOENT));
    if (!n.children) fail(E.ENOTDIR);
    if (n.children!.size > 0) fail(E.ENOTEMPTY);
    p.children!.delete(name);
    p.nlink--;
    this.#touch(p, 'm');
    this.#orphan(n);
  }
  async symlink(ctx: RequestContext, parent: number, name: string, target: string) {
    return this.#entry(this.#newNode(ctx, this.#dir(parent), name, S_IFLNK | 0o777, { target, size: Buffer.byteLength(target) }));
  }
  async rename(_ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number) {
    const p = this.#dir(parent);
    const q = this.#dir(newParent);
    const ino = p.children!.get(name) ?? fail(E.ENOENT);
    const n = this.#node(ino);
    const existing = q.children!.get(newName);
    if (flags & RENAME_NOREPLACE && existing !== undefined) fail(E.EEXIST);
    if (flags & RENAME_EXCHANGE) {
      if (existing === undefined) fail(E.ENOENT);
      p.children!.set(name, existing!);
      q.children!.set(newName, ino);
      const dirsMoved = p === q ? 0 : (n.children ? 1 : 0) - (this.#node(existing!).children ? 1 : 0);
      p.nlink -= dirsMoved;
      q.nlink += dirsMoved;
      this.#touch(p, 'm');
      this.#touch(q, 'm');
      return;
    }
    if (n.children) {
      for (let cur: number | undefined = newParent; ; ) {
        if (cur === ino) fail(E.EINVAL);
        if (cur === 1 || cur === undefined) break;
        cur = [...this.nodes.values()].find((x) => x.children?.has && [...x.children.values()].includes(cur!))?.ino;
      }
    }
    if (existing !== undefined) {
      if (existing === ino) return;
      const e = this.#node(existing);
      if (n.children && !e.children) fail(E.ENOTDIR);
      if (!n.children && e.children) fail(E.EISDIR);
      if (e.children && e.children.size > 0) fail(E.ENOTEMPTY);
      if (e.children) {
        q.nlink--;
        this.#orphan(e);
      } else this.#drop(e);
    }
    p.children!.delete(name);
    q.children!.set(newName, ino);
    if (n.children && p !== q) {
      p.nlink--;
      q.nlink++;
    }
    this.#touch(p, 'm');
    this.#touch(q, 'm');
    this.#touch(n, 'c');
  }
  async link(_ctx: RequestContext, ino: number, newParent: number, newName: string) {
    const n = this.#node(ino);
    if (n.children) fail(E.EPERM);
    const q = this.#dir(newParent);
    if (q.children!.has(newName)) fail(E.EEXIST);
    q.children!.set(newName, ino);
    n.nlink++;
    this.#touch(n, 'c');
    this.#touch(q, 'm');
    return this.#entry(n);
  }
  async open(_ctx: RequestContext, ino: number, flags: number) {
    const n = this.#node(ino);
    if (flags & O_TRUNC) this.#resize(n, 0);
    return { fh: this.#fh++ };
  }
  async read(_ctx: RequestContext, ino: number, _fh: number, size: number, offset: number) {
    const n = this.#node(ino);
    return n.data.read(Math.min(offset, n.size), Math.min(offset + size, n.size));
  }
  async write(_ctx: RequestContext, ino: number, _fh: number, data: Buffer, offset: number) {
    const n = this.#node(ino);
    n.data.write(data, offset);
    if (offset + data.length > n.size) n.size = offset + data.length;
    this.#touch(n, 'm');
    return data.length;
  }
  async flush() {}
  async release() {}
  async fsync() {}
  async opendir(_ctx: RequestContext, ino: number) {
    this.#dir(ino);
    return { fh: this.#fh++ };
  }
  async readdir(_ctx: RequestContext, ino: number): Promise<DirListingEntry[]> {
    return [...this.#dir(ino).children!.entries()].map(([name, i]) => ({ name, attr: this.#attr(this.#node(i)) }));
  }
  async releasedir() {}
  async statfs() {
    return { bsize: 4096, blocks: 2 ** 40, bfree: 2 ** 39, bavail: 2 ** 39, files: 2 ** 36, ffree: 2 ** 35, namemax: 255 };
  }
  async setxattr(_ctx: RequestContext, ino: number, name: string, value: Buffer, flags: number) {
    const n = this.#node(ino);
    if (flags === 1 && n.xattrs.has(name)) fail(E.EEXIST);
    if (flags === 2 && !n.xattrs.has(name)) fail(E.ENODATA);
    n.xattrs.set(name, Buffer.from(value));
    this.#touch(n, 'c');
  }
  async getxattr(_ctx: RequestContext, ino: number, name: string) {
    return this.#node(ino).xattrs.get(name) ?? fail(E.ENODATA);
  }
  async listxattr(_ctx: RequestContext, ino: number) {
    return [...this.#node(ino).xattrs.keys()];
  }
  async removexattr(_ctx: RequestContext, ino: number, name: string) {
    const n = this.#node(ino);
    if (!n.xattrs.delete(name)) fail(E.ENODATA);
  }
  async access(_ctx: RequestContext, ino: number) {
    this.#node(ino);
  }
  async create(ctx: RequestContext, parent: number, name: string, mode: number) {
    const n = this.#newNode(ctx, this.#dir(parent), name, S_IFREG | (mode & 0o7777));
    return { ...this.#entry(n), open: { fh: this.#fh++ } };
  }
  async flock(_ctx: RequestContext, ino: number, _fh: number, owner: number, op: number) {
    const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
    let held = this.#flocks.get(ino);
    if (!held) this.#flocks.set(ino, (held = new Map()));
    const wake = () => {
      const waiters = this.#flockWaiters.get(ino) ?? [];
      this.#flockWaiters.delete(ino);
      for (const w of waiters) w();
    };
    if (op & LOCK_UN) {
      held.delete(owner);
      return wake();
    }
    const want = op & LOCK_EX ? LOCK_EX : LOCK_SH;
    // A conversion gives up the old lock first, as flock(2) does.
    if (held.delete(owner)) wake();
    for (;;) {
      const conflict = [...held].some(([o, type]) => o !== owner && (type === LOCK_EX || want === LOCK_EX));
      if (!conflict) {
        held.set(owner, want);
        return;
      }
      if (op & LOCK_NB) fail(E.EWOULDBLOCK);
      // A blocking lock waits for the holders to let go.
      await new Promise<void>((resolve) => {
        const list = this.#flockWaiters.get(ino) ?? [];
        list.push(resolve);
        this.#flockWaiters.set(ino, list);
      });
    }
  }
  async fallocate(_ctx: RequestContext, ino: number, _fh: number, mode: number, offset: number, length: number) {
    if (mode !== 0) fail(E.EOPNOTSUPP);
    const n = this.#node(ino);
    if (offset + length > n.size) this.#resize(n, offset + length);
  }
}

/** Maps MemFs's errors; everything else is EIO. */
export function memErrno(err: unknown): number {
  return err instanceof FsError ? err.errno : E.EIO;
}

if (require.main === module) {
  const mnt = process.argv[2]!;
  const fs = new MemFs();
  const session = FuseSession.mount(mnt, fs, { options: ['default_permissions', 'fsname=memfs'], errnoOf: memErrno });
  const stop = () => void session.unmount().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`mounted ${mnt}\n`);
}
