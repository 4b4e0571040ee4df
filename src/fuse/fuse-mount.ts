/**
 * The FUSE adapter on fuse-native (libfuse 2.9): each kernel operation becomes one
 * call into StrataFileSystem and one `cb(toErrno(err))`. Nothing else lives here.
 */

import Fuse from 'fuse-native';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { StrataError, toErrno } from '../common/errors';
import type { Logger } from '../common/log';
import { FileAttributes, Timespec, timespecFromMs, timespecToMs } from '../common/protocol';
import type { StrataFileSystem } from '../client/file-system';

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** fuse-native knows only some mount options; these are the ones Strata needs on top. */
class StrataFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = ['big_writes', 'max_write=131072', 'max_read=131072', 'use_ino', 'fsname=strata', 'subtype=strata', 'default_permissions'];
    return base ? `${base},${extra.join(',')}` : `-o${extra.join(',')}`;
  }
}

export interface FuseMountOptions {
  mountPoint: string;
  fs: StrataFileSystem;
  logger: Logger;
  /** Let other users see the mount (needs user_allow_other for non-root). Default false. */
  allowOther?: boolean;
  debug?: boolean;
}

export interface FuseMount {
  mountPoint: string;
  unmount(): Promise<void>;
}

function toStat(a: FileAttributes) {
  const typeBits = a.type === 'directory' ? S_IFDIR : a.type === 'symlink' ? S_IFLNK : S_IFREG;
  return {
    mode: typeBits | a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    nlink: a.nlink,
    ino: a.ino,
    blksize: 4096,
    blocks: Math.ceil(a.size / 512),
    atime: timespecToMs(a.atime),
    mtime: timespecToMs(a.mtime),
    ctime: timespecToMs(a.ctime),
  };
}

export async function mountFuse(opts: FuseMountOptions): Promise<FuseMount> {
  const fs = opts.fs;
  const log = opts.logger;
  const onUnknown = (err: unknown) => log.error({ err }, 'unexpected error in a FUSE operation; answering EIO');
  const errno = (err: unknown) => toErrno(err, onUnknown);

  /** Runs `p` and answers the kernel: `cb(0, value)` or `cb(-errno)`. */
  const reply = <T>(p: Promise<T>, cb: (code: number, value?: unknown) => void, map?: (v: T) => unknown) => {
    p.then(
      (v) => (map ? cb(0, map(v)) : cb(0)),
      (err) => cb(errno(err)),
    );
  };
  /** For read/write, whose reply is the byte count or -errno. */
  const count = (p: Promise<number>, cb: (n: number) => void) => {
    p.then(cb, (err) => cb(errno(err)));
  };
  const time = (ms: number): Timespec => timespecFromMs(ms);

  const ops = {
    getattr: (path: string, cb: any) => reply(fs.getattr(path), cb, toStat),
    fgetattr: (path: string, _fd: number, cb: any) => reply(fs.getattr(path), cb, toStat),
    access: (path: string, _mode: number, cb: any) => reply(fs.getattr(path), cb),
    readdir: (path: string, cb: any) => reply(fs.readdir(path), cb, (es) => ['.', '..', ...es.map((e) => e.name)]),
    mkdir: (path: string, mode: number, cb: any) => reply(fs.mkdir(path, mode), cb),
    rmdir: (path: string, cb: any) => reply(fs.rmdir(path), cb),
    unlink: (path: string, cb: any) => reply(fs.unlink(path), cb),
    rename: (src: string, dst: string, cb: any) => reply(fs.rename(src, dst), cb),
    chmod: (path: string, mode: number, cb: any) => reply(fs.chmod(path, mode), cb),
    chown: (path: string, uid: number, gid: number, cb: any) => reply(fs.chown(path, uid, gid), cb),
    // fuse-native passes atime twice (mtime is lost) and in ms; our own binding (issue 10) fixes this.
    utimens: (path: string, atime: number, mtime: number, cb: any) => reply(fs.utimens(path, time(atime), time(mtime)), cb),
    truncate: (path: string, size: number, cb: any) => reply(fs.truncate(path, size), cb),
    ftruncate: (_path: string, fd: number, size: number, cb: any) => reply(fs.ftruncate(fd, size), cb),
    create: (path: string, mode: number, cb: any) => reply(fs.create(path, mode), cb, (fh) => fh),
    open: (path: string, flags: number, cb: any) => reply(fs.open(path, flags), cb, (fh) => fh),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: any) => count(fs.read(fd, buf, len, pos), cb),
    write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: any) => count(fs.write(fd, buf, len, pos), cb),
    flush: (_path: string, fd: number, cb: any) => reply(fs.flush(fd), cb),
    fsync: (_path: string, _datasync: number, fd: number, cb: any) => reply(fs.fsync(fd), cb),
    release: (_path: string, fd: number, cb: any) => reply(fs.release(fd), cb),
    statfs: (_path: string, cb: any) =>
      reply(fs.statfs(), cb, (s) => {
        const bsize = 4096;
        const cap = Math.min(Math.floor(s.capacityBytes / bsize), 0xffffffff);
        const free = Math.min(Math.max(0, Math.floor((s.capacityBytes - s.usedBytes) / bsize)), cap);
        return { bsize, frsize: bsize, blocks: cap, bfree: free, bavail: free, files: 1_000_000, ffree: 1_000_000, favail: 1_000_000, fsid: 0, flag: 0, namemax: 255 };
      }),
  };

  const fuse = new StrataFuse(opts.mountPoint, ops, {
    force: false,
    mkdir: false,
    timeout: false,
    allowOther: !!opts.allowOther,
    debug: !!opts.debug,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(new StrataError('IO_ERROR', `could not mount ${opts.mountPoint}: ${err.message}`, { cause: err })) : resolve())));
  log.info({ mountPoint: opts.mountPoint }, 'mounted');
  let unmounted = false;
  return {
    mountPoint: opts.mountPoint,
    unmount: async () => {
      if (unmounted) return;
      unmounted = true;
      await new Promise<void>((resolve) =>
        fuse.unmount((err) => {
          if (err) log.warn({ err: err.message }, 'unmount reported an error');
          resolve();
        }),
      );
    },
  };
}

const execFileP = promisify(execFile);

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
      log.warn({ mountPoint: dir }, 'found a stale FUSE mount left by a killed process; unmounting it');
      process.stderr.write(`strata: ${dir} held a stale FUSE mount left by a killed process; unmounted it\n`);
      await execFileP('fusermount', ['-uz', dir]).catch(async () => execFileP('umount', ['-l', dir]));
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
  if (await isMountPoint(dir)) throw new StrataError('CONFIG', `${dir} is already a mount point (is another Strata mounted there?)`);
  const entries = await fsp.readdir(dir);
  if (entries.length > 0) throw new StrataError('CONFIG', `mount point ${dir} is not empty`);
}

async function isMountPoint(dir: string): Promise<boolean> {
  const real = await fsp.realpath(dir);
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return mounts.split('\n').some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === real);
}
