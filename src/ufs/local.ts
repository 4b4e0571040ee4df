/** `file:///dir`: an under-store on a local (or NFS-mounted) directory. */

import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { StrataError, toStrataError } from '../common/errors';
import { mapLimit } from '../common/map-limit';
import { parsePath } from '../common/paths';
import { tempFileOfHandle, type UfsCallOptions, type UfsStatus, type UfsWriter, type UnderFileSystem } from './ufs';

/** stat() calls a listing keeps in flight. */
const LIST_STATS_IN_FLIGHT = 64;

/** Temp files of in-flight writes carry this prefix. */
const TEMP_PREFIX = '.strata-tmp-';
/** A temp file's name: the prefix and 12 hex digits. Only such names are hidden from listings, and refused to users. */
const TEMP_NAME = /^\.strata-tmp-[0-9a-f]{12}$/;

export class LocalUnderFileSystem implements UnderFileSystem {
  readonly uri: string;
  readonly #root: string;

  /** A name listings hide would be a file that is there and never listed (the next sync drops it). */
  checkName(name: string): void {
    if (TEMP_NAME.test(name)) throw new StrataError('INVALID_ARGUMENT', `the name '${name}' is reserved for Strata's temp files`);
  }

  constructor(uri: string) {
    const url = new URL(uri);
    if (url.protocol !== 'file:') throw new StrataError('CONFIG', `not a file:// URI: ${uri}`);
    if (url.host && url.host !== 'localhost') throw new StrataError('CONFIG', `file:// URI must not name a host: ${uri}`);
    let root: string;
    try {
      root = decodeURIComponent(url.pathname);
    } catch {
      throw new StrataError('CONFIG', `file:// URI has a malformed %-escape: ${uri}`);
    }
    if (!root.startsWith('/')) throw new StrataError('CONFIG', `file:// URI must be absolute: ${uri}`);
    this.#root = nodePath.resolve(root);
    this.uri = uri;
  }

  /** Maps a store path onto the local file system; parsePath rejects '..' and NUL. */
  #abs(path: string): string {
    const parts = parsePath(path);
    return parts.length ? nodePath.join(this.#root, ...parts) : this.#root;
  }

  #status(name: string, st: import('node:fs').Stats): UfsStatus {
    const type = st.isDirectory() ? 'directory' : 'file';
    return { name, type, size: type === 'file' ? st.size : 0, mtimeMs: Math.floor(st.mtimeMs), fingerprint: fingerprintOf(st) };
  }

  async stat(path: string): Promise<UfsStatus | null> {
    try {
      const st = await fsp.stat(this.#abs(path));
      if (!st.isFile() && !st.isDirectory()) return null;
      return this.#status(nodePath.basename(path), st);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw toStrataError(err, `stat ${path}`);
    }
  }

  async list(path: string): Promise<UfsStatus[]> {
    const dir = this.#abs(path);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      throw toStrataError(err, `list ${path}`);
    }
    const out: UfsStatus[] = [];
    // A bounded number of stats at once: all of a 140k-name directory at once held 140k
    // promises and their results, and the master's GC with them.
    await mapLimit(names, LIST_STATS_IN_FLIGHT, async (name) => {
      if (TEMP_NAME.test(name)) return;
      try {
        const st = await fsp.stat(nodePath.join(dir, name));
        if (st.isFile() || st.isDirectory()) out.push(this.#status(name, st));
      } catch (err) {
        // Vanished between readdir and stat, or a dangling symlink: not listed. Any other failure (EIO, ESTALE
        // on NFS) fails the listing: leaving the name out would tell the master the file was deleted.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') throw toStrataError(err, `list ${path}: ${name}`);
      }
    });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new StrataError('INVALID_ARGUMENT', `read ${path}: bad range ${offset}+${length}`);
    }
    const abs = this.#abs(path);
    const fh = await fsp.open(abs, 'r').catch((err) => {
      throw toStrataError(err, `read ${path}`);
    });
    const st = await fh.stat();
    if (st.isDirectory()) {
      await fh.close();
      throw new StrataError('IS_DIRECTORY', `read ${path}: is a directory`);
    }
    // The version of the file this descriptor reads (a replacing rename leaves it on the old one).
    if (opts?.ifFingerprint !== undefined && fingerprintOf(st) !== opts.ifFingerprint) {
      await fh.close();
      throw new StrataError('STORE_CHANGED', `read ${path}: the file changed in the store (${fingerprintOf(st)}, expected ${opts.ifFingerprint})`);
    }
    if (length <= 0) {
      await fh.close();
      return Readable.from([]);
    }
    return fh.createReadStream({ start: offset, end: offset + length - 1, autoClose: true, highWaterMark: 1024 * 1024 });
  }

  async create(path: string): Promise<UfsWriter> {
    const abs = this.#abs(path);
    const dir = nodePath.dirname(abs);
    /** The first directory this create made, if any: its entry (and theirs below it) must be durable with the file. */
    const made = await fsp.mkdir(dir, { recursive: true }).catch((err) => {
      throw toStrataError(err, `create ${path}`);
    });
    const tmp = nodePath.join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
    const fh = await fsp.open(tmp, 'wx', 0o644).catch((err) => {
      throw toStrataError(err, `create ${path}`);
    });
    let closed = false;
    /** Until the temp file is renamed into place or removed, a crash would leave it. */
    let tmpGone = false;
    let pos = 0;
    const name = nodePath.basename(abs);
    // The temp file as a path in this store, for discardLeftover after a crash.
    const tmpPath = '/' + [...parsePath(path).slice(0, -1), nodePath.basename(tmp)].join('/');
    const status = (st: import('node:fs').Stats) => this.#status(name, st);
    const removeTmp = () =>
      fsp.rm(tmp, { force: true }).then(
        () => void (tmpGone = true),
        () => undefined,
      );
    return {
      async write(chunk: Buffer) {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, pos + off).catch((err) => {
            throw toStrataError(err, `write ${path}`);
          });
          off += bytesWritten;
        }
        pos += chunk.length;
      },
      async skip(n: number) {
        pos += n;
      },
      async complete() {
        try {
          await fh.truncate(pos);
          // Durable before it is visible: close() of a write-through file promises the bytes are stored.
          await fh.datasync();
          // This file's own status, not whatever is at the path after the rename (another writer's,
          // should its rename land in between): a rename keeps inode, size and mtime.
          const st = await fh.stat();
          await fh.close();
          closed = true;
          await fsp.rename(tmp, abs);
          tmpGone = true;
          // The new name (and any directory made for it) is on disk too before the close is answered.
          await syncDir(dir);
          if (made) for (let d = dir; d !== nodePath.dirname(made) && d.length > 1; d = nodePath.dirname(d)) await syncDir(nodePath.dirname(d));
          return status(st);
        } catch (err) {
          if (!closed) await fh.close().catch(() => undefined);
          closed = true;
          if (!tmpGone) await removeTmp();
          throw toStrataError(err, `complete ${path}`);
        }
      },
      async abort() {
        if (!closed) await fh.close().catch(() => undefined);
        closed = true;
        if (!tmpGone) await removeTmp();
      },
      leftover() {
        return tmpGone ? undefined : JSON.stringify({ tmp: tmpPath });
      },
    };
  }

  async discardLeftover(handle: string): Promise<void> {
    const parts = tempFileOfHandle(handle, TEMP_NAME);
    await fsp.rm(nodePath.join(this.#root, ...parts), { force: true }).catch((err) => {
      throw toStrataError(err, `discard /${parts.join('/')}`);
    });
  }

  async delete(path: string): Promise<void> {
    try {
      await fsp.unlink(this.#abs(path));
    } catch (err) {
      throw toStrataError(err, `delete ${path}`);
    }
  }

  async mkdir(path: string): Promise<void> {
    try {
      await fsp.mkdir(this.#abs(path));
    } catch (err) {
      throw toStrataError(err, `mkdir ${path}`);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      await fsp.rmdir(this.#abs(path));
    } catch (err) {
      throw toStrataError(err, `rmdir ${path}`);
    }
  }

  async rename(src: string, dst: string): Promise<void> {
    try {
      await fsp.rename(this.#abs(src), this.#abs(dst));
    } catch (err) {
      throw toStrataError(err, `rename ${src} -> ${dst}`);
    }
  }

  async close(): Promise<void> {}
}

/** fsync of a directory: its entries are durable. Some file systems refuse it on directories; then nothing more can be done. */
async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EINVAL' && err.code !== 'ENOTSUP') throw err;
    });
  } finally {
    await fh.close();
  }
}

/** Changes whenever the content may have: size, modification time and the inode (a file renamed over it). */
function fingerprintOf(st: import('node:fs').Stats): string {
  return `${st.size}:${st.mtimeMs}:${st.ino}`;
}
