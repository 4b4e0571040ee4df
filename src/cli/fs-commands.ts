/**
 * `strata fs …`: shell commands against a running cluster. Metadata comes from the
 * master; bytes move straight between this process and the workers.
 *
 * Conventions every command keeps: Strata path arguments of commands that take
 * existing paths may be glob patterns (see ./glob.ts), expanded against the
 * namespace before anything runs; `--json` prints one JSON document on stdout (an
 * object for one literal path, an array for several paths or a pattern); a failure
 * is one line `strata: <path>: <cause>` on stderr (see ./cli-errors.ts).
 */

import { Command, Option } from 'commander';
import { createReadStream, createWriteStream, promises as fsp, Stats } from 'node:fs';
import * as nodePath from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import * as os from 'node:os';
import { StrataError, toStrataError } from '../common/errors';
import { resolveConfig } from '../common/config';
import { clientToken } from '../common/auth';
import { silentLogger } from '../common/log';
import { normalizePath, joinPath } from '../common/paths';
import { BlockInfo, DirEntry, FileAttributes, FileBlocksResponse, FileType, LoadBlockResponse, MAX_TTL_MS, TtlAction, WorkerInfo, timespecToMs } from '../common/protocol';
import type { StrataFileSystem } from '../client/file-system';
import type { FileReader } from '../client/file-reader';
import { at, eachOperand, errorLine, onPath, pathError, usageError } from './cli-errors';
import { expandGlob, hasGlob, literalPrefix, namesDirectory, unescapeGlob } from './glob';
import { Progress, human, percent, rate } from './progress';

interface FsOpts {
  master?: string;
  tokenFile?: string;
  json?: boolean;
}

async function openFs(o: FsOpts): Promise<StrataFileSystem> {
  const cfg = resolveConfig({ master: o.master, tokenFile: o.tokenFile });
  const { StrataFileSystem } = await import('../client/file-system');
  return new StrataFileSystem({
    masterUrl: cfg.master,
    token: clientToken(cfg),
    stagingDir: nodePath.join(os.tmpdir(), `strata-cli-${process.pid}`),
    logger: silentLogger(),
    shortCircuit: cfg.shortCircuit === 'true',
    ...(cfg.hostId ? { hostId: cfg.hostId } : {}),
    workerProbeIntervalMs: cfg.workerProbeIntervalMs,
    masterFailoverTimeoutMs: cfg.masterFailoverTimeoutMs,
  });
}

/** Runs a command with a client and closes it; failures reach main(), which prints them and picks the exit code. */
async function withFs(o: FsOpts, fn: (fs: StrataFileSystem) => Promise<void>): Promise<void> {
  const fs = await openFs(o);
  try {
    await fn(fs);
  } finally {
    await fs.close().catch(() => undefined);
  }
}

/** Prints one JSON document on stdout. */
function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

/** A Strata path argument, checked and normalized; a malformed one is bad usage (exit 2). */
function strataPath(arg: string): string {
  if (!arg.startsWith('/')) throw usageError(`${arg}: not an absolute Strata path (start it with /)`);
  try {
    return normalizePath(arg);
  } catch (err) {
    throw usageError(`${arg}: ${toStrataError(err).message}`);
  }
}

/** Path arguments after expansion; `single` when there was one literal path, so --json prints an object rather than an array. */
interface Operands {
  paths: string[];
  single: boolean;
}

/** Lists a directory for pattern expansion: a missing directory or a file holds no matches. */
async function listForGlob(fs: StrataFileSystem, dir: string): Promise<DirEntry[] | undefined> {
  try {
    return await fs.master.list(dir);
  } catch (err) {
    const e = toStrataError(err);
    if (e.code === 'NOT_FOUND' || e.code === 'NOT_DIRECTORY') return undefined;
    throw onPath(dir, e);
  }
}

/**
 * Expands every pattern argument against the namespace, as a shell with failglob
 * does: all of them before the command starts, and a pattern matching nothing
 * fails the command (`strata: <pattern>: no match`). `\*` names a literal `*`.
 */
async function expand(fs: StrataFileSystem, args: string[], opts: { slashFollows?: boolean; followLast?: boolean } = {}): Promise<Operands> {
  const paths: string[] = [];
  for (const arg of args) {
    if (!hasGlob(arg)) {
      // Symbolic links in the path are followed as path resolution does; a trailing `/` follows the
      // last one too (`ls /link/`), except where the caller says it must not (rm), and so does a
      // command that acts on the file a link names (`followLast`: pin, load, free, persist, du).
      const slash = namesDirectory(arg);
      const path = await resolveLinks(fs, strataPath(unescapeGlob(arg)), opts.followLast === true || (slash && opts.slashFollows !== false));
      // `rm /g/file/` must not remove the file: a trailing `/` names a directory, as rm(1) and a shell take it.
      if (slash && (await at(path, () => fs.getattr(path))).type !== 'directory') throw pathError(`${path}/`, 'NOT_DIRECTORY', 'not a directory');
      paths.push(path);
      continue;
    }
    if (!arg.startsWith('/')) throw usageError(`${arg}: not an absolute Strata path (start it with /)`);
    strataPath(literalPrefix(arg));
    if (arg.split('/').some((c) => c === '.' || c === '..')) throw usageError(`${arg}: '.' and '..' are not allowed in Strata paths`);
    const found = await expandGlob(arg, (dir) => listForGlob(fs, dir));
    if (found.length === 0) throw pathError(arg, 'NOT_FOUND', 'no match');
    // One by one: a spread of a pattern that matched a huge directory would overflow the stack.
    for (const f of found) paths.push(f);
  }
  return { paths, single: args.length === 1 && !hasGlob(args[0]!) };
}

/**
 * The attributes at `path`, or undefined when nothing is there. Only NOT_FOUND means that:
 * after any other failure (the master briefly away) `mv /d /empty` would replace the empty
 * directory instead of moving into it.
 */
async function attrsIfAny(fs: StrataFileSystem, path: string, name: string): Promise<FileAttributes | undefined> {
  try {
    return await fs.getattr(path);
  } catch (err) {
    if (toStrataError(err).code === 'NOT_FOUND') return undefined;
    throw onPath(name, err);
  }
}

/** A destination written with a trailing `/` names a directory, as for cp(1) and mv(1): it must be one. */
function wantDirectory(arg: string, isDirectory: boolean | undefined, name: string): void {
  if (!arg.endsWith('/') || isDirectory) return;
  throw isDirectory === undefined ? pathError(name, 'NOT_FOUND', 'no such directory') : pathError(name, 'NOT_DIRECTORY', 'not a directory');
}

/** An example section for a command's help. */
function examples(lines: string[]): string {
  // Commander ends the added text with a newline itself.
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`;
}

const TYPE_LETTER: Record<FileAttributes['type'], string> = { file: '-', directory: 'd', symlink: 'l', fifo: 'p', socket: 's', chardev: 'c', blockdev: 'b' };

/** As ls -l: the type, then rwx for owner, group and others, with setuid, setgid and sticky in the x places. */
function modeString(a: FileAttributes): string {
  // `special` set: s/t over x, S/T without it.
  const rwx = (b: number, special: boolean, letter: string) =>
    `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${special ? (b & 1 ? letter : letter.toUpperCase()) : b & 1 ? 'x' : '-'}`;
  const m = a.mode;
  return (TYPE_LETTER[a.type] ?? '?') + rwx((m >> 6) & 7, (m & 0o4000) !== 0, 's') + rwx((m >> 3) & 7, (m & 0o2000) !== 0, 's') + rwx(m & 7, (m & 0o1000) !== 0, 't');
}

function entryJson(path: string, name: string, a: FileAttributes) {
  return { path, name, type: a.type, size: a.size, mode: a.mode, mtime: new Date(timespecToMs(a.mtime)).toISOString(), ino: a.ino, persisted: a.persistState === 'persisted' };
}

function lsLine(name: string, a: FileAttributes): string {
  const mtime = new Date(timespecToMs(a.mtime)).toISOString().replace('T', ' ').slice(0, 19);
  return `${modeString(a)} ${String(a.uid).padStart(5)} ${String(a.gid).padStart(5)} ${String(a.size).padStart(12)} ${mtime} ${name}`;
}

/** One side of `cp`: `strata:/p` and `strata:///p` name Strata paths; anything else (plain or `file:`) is local. */
interface Location {
  strata: boolean;
  path: string;
}

function parseLocation(arg: string): Location {
  if (arg.startsWith('strata://')) return { strata: true, path: strataPath(arg.slice('strata://'.length) || '/') };
  if (arg.startsWith('strata:')) return { strata: true, path: strataPath(arg.slice('strata:'.length) || '/') };
  if (arg.startsWith('file://')) return { strata: false, path: nodePath.resolve(decodeURIComponent(new URL(arg).pathname)) };
  if (arg.startsWith('file:')) return { strata: false, path: nodePath.resolve(arg.slice('file:'.length)) };
  return { strata: false, path: nodePath.resolve(arg) };
}

/** How `cp` names a path in messages: Strata paths as `strata:/p`, local ones as they are. */
const label = (l: Location) => (l.strata ? `strata:${l.path}` : l.path);

/** A readable stream of a Strata file, read in read-ahead windows; read errors name `path`. */
function readerStream(reader: FileReader, path: string, onChunk?: (n: number) => void): Readable {
  let pos = 0;
  const chunk = 4 * 1024 * 1024;
  return new Readable({
    highWaterMark: chunk,
    read() {
      if (pos >= reader.size) {
        this.push(null);
        return;
      }
      const buf = Buffer.allocUnsafe(Math.min(chunk, reader.size - pos));
      reader.read(pos, buf.length, buf, 0).then(
        (n) => {
          pos += n;
          onChunk?.(n);
          this.push(n === 0 ? null : buf.subarray(0, n));
        },
        (err) => this.destroy(onPath(path, err)),
      );
    },
  });
}

/**
 * Writes a Strata file to `out` a window at a time, waiting for 'drain' whenever
 * `out` holds a window already. A pipeline() per file with `end: false` left its
 * listeners on stdout (MaxListenersExceededWarning after ten files). Resolves false
 * when the reader of `out` went away (EPIPE): the output ends there, as cat(1)'s
 * does on SIGPIPE.
 */
async function copyToOutput(reader: FileReader, path: string, out: NodeJS.WritableStream & Writable): Promise<boolean> {
  const chunk = 4 * 1024 * 1024;
  const gone = (err: unknown) => {
    if ((err as NodeJS.ErrnoException | null)?.code === 'EPIPE') return false;
    throw onPath('stdout', err);
  };
  for (let pos = 0; pos < reader.size; ) {
    if (out.destroyed) return gone(out.errored);
    const buf = Buffer.allocUnsafe(Math.min(chunk, reader.size - pos));
    const n = await at(path, () => reader.read(pos, buf.length, buf, 0));
    if (n === 0) break;
    pos += n;
    if (out.write(n === buf.length ? buf : buf.subarray(0, n))) continue;
    if (out.destroyed) return gone(out.errored);
    try {
      await once(out, 'drain');
    } catch (err) {
      return gone(err);
    }
  }
  return true;
}

/** A local file as a byte stream that reports each chunk read. */
function countedLocalStream(path: string, onChunk: (n: number) => void): Readable {
  async function* counted() {
    for await (const c of createReadStream(path)) {
      onChunk((c as Buffer).length);
      yield c as Buffer;
    }
  }
  return Readable.from(counted(), { objectMode: false });
}

const ignoreExists = (err: unknown) => {
  if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
};

/** How messages name the file types that are neither a regular file, a directory nor a symbolic link. */
const SPECIAL_TYPES: Partial<Record<FileType, string>> = { fifo: 'a named pipe (fifo)', socket: 'a socket', chardev: 'a character device', blockdev: 'a block device' };

/** A special file's type as messages name it, or undefined for a regular file, a directory or a symbolic link. */
function specialTypeName(type: FileType): string | undefined {
  return SPECIAL_TYPES[type];
}

/** The type of a local file, from lstat. */
function localType(st: Stats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return st.isCharacterDevice() ? 'chardev' : 'blockdev';
}

/** Symbolic links followed in a row before giving up, as Linux's MAXSYMLINKS. */
const MAX_SYMLINK_HOPS = 40;

/**
 * Follows `path` while it is a symbolic link. The master never follows links, and
 * a link is resolved by whoever reads it: a relative target within Strata is
 * followed here; an absolute one names a path on the host that reads it through
 * a mount, which this process cannot know, and fails with a clear error.
 * Failures name `name` (`strata:/p` for cp).
 */
/**
 * `path` with the symbolic links among its directories followed (and the last component's too
 * with `followLast`), as the kernel resolves a path: the master takes paths literally. One request
 * when the parent is a plain directory. A path that does not resolve comes back as it is, for the
 * command to report.
 */
async function resolveLinks(fs: StrataFileSystem, path: string, followLast: boolean, hops = 0): Promise<string> {
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return '/';
  const parentPath = '/' + parts.slice(0, -1).join('/');
  let dir = parentPath;
  if (parts.length > 1) {
    try {
      const a = await fs.getattr(parentPath);
      if (a.type === 'symlink') dir = await resolveLinks(fs, parentPath, true, hops);
    } catch (err) {
      // A link higher up (the master found a non-directory there): resolve the parent the same way.
      if (toStrataError(err).code !== 'NOT_DIRECTORY') return path;
      dir = await resolveLinks(fs, parentPath, true, hops);
    }
  }
  const full = joinPath(dir, parts[parts.length - 1]!);
  if (!followLast) return full;
  let a: FileAttributes;
  try {
    a = await fs.getattr(full);
  } catch (err) {
    if (toStrataError(err).code === 'NOT_FOUND') return full;
    throw onPath(path, err);
  }
  if (a.type !== 'symlink') return full;
  if (hops >= MAX_SYMLINK_HOPS) throw pathError(path, 'TOO_MANY_LINKS', 'too many levels of symbolic links');
  return resolveLinks(fs, linkTarget(dir, a.target ?? '', path), true, hops + 1);
}

/** Where a link in `dir` pointing at `target` leads, within Strata (an absolute target is the host's to resolve). */
function linkTarget(dir: string, target: string, name: string): string {
  const outside = () => pathError(name, 'NOT_SUPPORTED', `symbolic link to '${target}', outside Strata (the host reading it through a mount resolves it)`);
  if (target.startsWith('/')) throw outside();
  const parts = dir.split('/').filter(Boolean);
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c !== '..') parts.push(c);
    else if (parts.pop() === undefined) throw outside();
  }
  return '/' + parts.join('/');
}

async function followSymlinks(fs: StrataFileSystem, path: string, name = path): Promise<{ path: string; attrs: FileAttributes }> {
  let current = path;
  for (let hops = 0; ; hops++) {
    const attrs = await at(name, () => fs.getattr(current));
    if (attrs.type !== 'symlink') return { path: current, attrs };
    if (hops === MAX_SYMLINK_HOPS) throw pathError(name, 'TOO_MANY_LINKS', 'too many levels of symbolic links');
    current = linkTarget(nodePath.posix.dirname(current), attrs.target ?? '', name);
  }
}

/** What a copy did, for its summary. */
interface CopyStats {
  files: number;
  directories: number;
  symlinks: number;
  /** Special files (named pipes, sockets, devices) of a local tree left out. */
  skipped: number;
  bytes: number;
}

/** f_type of a FUSE file system, from statfs(2). */
const FUSE_SUPER_MAGIC = 0x65735546;

/**
 * Copies files and trees between local disk and Strata, counting what it did and
 * driving an optional progress display. Symbolic links are copied as links;
 * special files of a local tree are skipped with a warning, never opened (a named
 * pipe would block the copy forever). A local side may be a Strata mount: each
 * directory is listed before anything is created in its copy, and a directory
 * this copy created is never copied again (seen through the mount, it has the
 * Strata inode number), so a copy into its own source ends.
 */
class Copier {
  readonly stats: CopyStats = { files: 0, directories: 0, symlinks: 0, skipped: 0, bytes: 0 };
  readonly #fs: StrataFileSystem;
  readonly #recursive: boolean;
  #progress: Progress | undefined;
  /** Per local device: whether it is a FUSE mount. */
  readonly #fuseDevices = new Map<number, boolean>();
  /** Inode numbers of the directories this copy created on a local FUSE mount. */
  readonly #createdOnMount = new Set<number>();
  /** Strata inode numbers of the directories this copy created in Strata. */
  readonly #createdInStrata = new Set<number>();

  constructor(fs: StrataFileSystem, recursive: boolean) {
    this.#fs = fs;
    this.#recursive = recursive;
  }

  set progress(p: Progress | undefined) {
    this.#progress = p;
  }

  #bytes = (n: number) => {
    this.stats.bytes += n;
    this.#progress?.update(this.stats.bytes, this.stats.files + this.stats.symlinks);
  };

  /**
   * A source the client can open again when it must send a file once more (its
   * write-through was overtaken by a rename); progress counts the last attempt only.
   */
  #reopenable(open: (count: (n: number) => void) => Readable): () => Readable {
    let counted = 0;
    return () => {
      this.#bytes(-counted);
      counted = 0;
      return open((n) => {
        counted += n;
        this.#bytes(n);
      });
    };
  }

  #fileDone(): void {
    this.stats.files++;
    this.#progress?.update(this.stats.bytes, this.stats.files + this.stats.symlinks);
  }

  #symlinkDone(): void {
    this.stats.symlinks++;
    this.#progress?.update(this.stats.bytes, this.stats.files + this.stats.symlinks);
  }

  #needsRecursive(l: Location): never {
    throw pathError(label(l), 'IS_DIRECTORY', 'is a directory (use -r)');
  }

  #refuseSpecial(l: Location, type: FileType): never {
    throw pathError(label(l), 'NOT_SUPPORTED', `is ${specialTypeName(type)}; cp copies files, directories and symbolic links`);
  }

  async #onFuse(dev: number, path: string): Promise<boolean> {
    let fuse = this.#fuseDevices.get(dev);
    if (fuse === undefined) {
      fuse = (await fsp.statfs(path).catch(() => undefined))?.type === FUSE_SUPER_MAGIC;
      this.#fuseDevices.set(dev, fuse);
    }
    return fuse;
  }

  /** Files (and symbolic links) and bytes below `src`, for the progress totals. */
  async plan(src: Location): Promise<{ files: number; bytes: number }> {
    if (!src.strata) {
      const st = await at(src.path, () => fsp.lstat(src.path));
      if (st.isFile()) return { files: 1, bytes: st.size };
      if (st.isSymbolicLink()) return { files: 1, bytes: 0 };
      if (!st.isDirectory()) return { files: 0, bytes: 0 };
      const sum = { files: 0, bytes: 0 };
      for (const name of await at(src.path, () => fsp.readdir(src.path))) {
        const r = await this.plan({ strata: false, path: nodePath.join(src.path, name) });
        sum.files += r.files;
        sum.bytes += r.bytes;
      }
      return sum;
    }
    const walk = async (dir: string): Promise<{ files: number; bytes: number }> => {
      const sum = { files: 0, bytes: 0 };
      for (const e of await at(`strata:${dir}`, () => this.#fs.readdir(dir))) {
        if (e.type === 'directory') {
          const r = await walk(joinPath(dir, e.name));
          sum.files += r.files;
          sum.bytes += r.bytes;
        } else if (e.type === 'file' || e.type === 'symlink') {
          sum.files++;
          sum.bytes += e.type === 'file' ? e.size : 0;
        }
      }
      return sum;
    };
    const a = await at(label(src), () => this.#fs.getattr(src.path));
    return a.type === 'directory' ? walk(src.path) : { files: 1, bytes: a.type === 'file' ? a.size : 0 };
  }

  /** Copies `src` to `dst`; `top` is the path the user named, which is followed when it is a link and the copy is not recursive, as cp(1) does. */
  async localToStrata(src: string, dst: string, top = true): Promise<void> {
    const to: Location = { strata: true, path: dst };
    const st = await at(src, () => (top && !this.#recursive ? fsp.stat(src) : fsp.lstat(src)));
    const type = localType(st);
    if (type === 'directory') {
      if (!this.#recursive) this.#needsRecursive({ strata: false, path: src });
      const names = await at(src, () => fsp.readdir(src));
      const made = await at(label(to), async () => (await this.#fs.mkdir(dst, st.mode & 0o7777).catch(ignoreExists)) ?? (await this.#fs.getattr(dst)));
      this.#createdInStrata.add(made.ino);
      this.stats.directories++;
      for (const name of names) {
        const child = nodePath.join(src, name);
        // The source is on the mount of this cluster and this is the copy's own output: copying it would never end.
        const cst = await fsp.lstat(child).catch(() => undefined);
        if (cst?.isDirectory() && this.#createdInStrata.has(cst.ino) && (await this.#onFuse(cst.dev, child))) continue;
        await this.localToStrata(child, joinPath(dst, name), false);
      }
      return;
    }
    if (type === 'symlink') {
      const target = await at(src, () => fsp.readlink(src));
      await at(label(to), () => this.#fs.symlink(dst, target));
      this.#symlinkDone();
      return;
    }
    if (type !== 'file') {
      if (top) this.#refuseSpecial({ strata: false, path: src }, type);
      process.stderr.write(errorLine(pathError(src, 'NOT_SUPPORTED', `skipped: ${specialTypeName(type)}`)));
      this.stats.skipped++;
      return;
    }
    await at(label(to), () => this.#fs.writeFile(dst, this.#reopenable((count) => countedLocalStream(src, count)), st.size, st.mode & 0o7777));
    this.#fileDone();
  }

  async strataToLocal(src: string, dst: string): Promise<void> {
    const from: Location = { strata: true, path: src };
    const a = await at(label(from), () => this.#fs.getattr(src));
    if (a.type === 'directory') {
      if (!this.#recursive) this.#needsRecursive(from);
      const entries = await at(label(from), () => this.#fs.readdir(src));
      await at(dst, () => fsp.mkdir(dst, { recursive: true }));
      const made = await at(dst, () => fsp.lstat(dst));
      if (await this.#onFuse(made.dev, dst)) this.#createdOnMount.add(made.ino);
      this.stats.directories++;
      for (const e of entries) {
        // The destination is on a mount of this cluster and this is the copy's own output: copying it would never end.
        if (e.type === 'directory' && this.#createdOnMount.has(e.ino)) continue;
        await this.strataToLocal(joinPath(src, e.name), nodePath.join(dst, e.name));
      }
      return;
    }
    if (a.type === 'symlink') {
      await at(dst, () => fsp.symlink(a.target ?? '', dst));
      this.#symlinkDone();
      return;
    }
    if (a.type !== 'file') this.#refuseSpecial(from, a.type);
    const reader = await at(label(from), () => this.#fs.openReader(src));
    try {
      await at(dst, () => pipeline(readerStream(reader, label(from), this.#bytes), createWriteStream(dst, { mode: a.mode & 0o777 })));
    } finally {
      reader.close();
    }
    this.#fileDone();
  }

  async strataToStrata(src: string, dst: string): Promise<void> {
    const from: Location = { strata: true, path: src };
    const to: Location = { strata: true, path: dst };
    const a = await at(label(from), () => this.#fs.getattr(src));
    if (a.type === 'directory') {
      if (!this.#recursive) this.#needsRecursive(from);
      const entries = await at(label(from), () => this.#fs.readdir(src));
      await at(label(to), () => this.#fs.mkdir(dst, a.mode).catch(ignoreExists));
      this.stats.directories++;
      for (const e of entries) await this.strataToStrata(joinPath(src, e.name), joinPath(dst, e.name));
      return;
    }
    if (a.type === 'symlink') {
      await at(label(to), () => this.#fs.symlink(dst, a.target ?? ''));
      this.#symlinkDone();
      return;
    }
    if (a.type !== 'file') this.#refuseSpecial(from, a.type);
    const reader = await at(label(from), () => this.#fs.openReader(src));
    try {
      await at(label(to), () => this.#fs.writeFile(dst, this.#reopenable((count) => readerStream(reader, label(from), count)), reader.size, a.mode));
    } finally {
      reader.close();
    }
    this.#fileDone();
  }
}

/** Blocks listed by `fs stat` in text form; --json lists all. */
const STAT_BLOCK_LINES = 16;

/** A block as `fs stat --json` shows it; `cachedBytes` is its best copy on a live worker. */
function blockJson(b: BlockInfo): { id: number; offset: number; length: number; locations: { worker: number; tier: string; bytes: number }[]; cachedBytes: number } {
  // A master without per-copy detail: every location holds the whole block.
  const cached = b.cached ?? b.locations.map((w) => ({ workerId: w, tier: '', bytes: b.length }));
  const locations = cached.map((c) => ({ worker: c.workerId, tier: c.tier, bytes: c.bytes }));
  return { id: b.id, offset: b.offset, length: b.length, locations, cachedBytes: locations.reduce((m, l) => Math.max(m, l.bytes), 0) };
}

function ttlJson(ttl: FileBlocksResponse['ttl']): { expiresAt: string; expiresAtMs: number; action: TtlAction } | null {
  return ttl ? { expiresAt: new Date(ttl.expiresAtMs).toISOString(), expiresAtMs: ttl.expiresAtMs, action: ttl.action } : null;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30s", "10m", "2h", "1d", "1.5h", or a plain number of milliseconds. */
export function parseDuration(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v);
  const ms = m ? Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!) : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0) throw usageError(`bad duration '${v}': use a number of milliseconds or a number with s, m, h or d (30s, 10m, 2h, 1d)`);
  if (ms > MAX_TTL_MS) throw usageError(`bad duration '${v}': at most ${MAX_TTL_MS / DURATION_UNITS.d!}d (100 years)`);
  return ms;
}

/** A file to load and its blocks. */
interface LoadJob {
  path: string;
  blocks: BlockInfo[];
}

/**
 * Calls `visit` for the regular file at `path`, or with `recursive` for every one below the
 * directory there (a directory without it: IS_DIRECTORY). Each directory is listed once and
 * its files are taken from the listing, not asked for again.
 */
async function eachFile(fs: StrataFileSystem, path: string, recursive: boolean, visit: (path: string, a: FileAttributes) => void): Promise<void> {
  const a = await at(path, () => fs.getattr(path));
  if (a.type === 'file') return visit(path, a);
  // Named: refused, so it is not taken for done. Below a directory, such entries (no bytes of their own) are passed over.
  if (a.type !== 'directory') throw pathError(path, 'NOT_SUPPORTED', `is ${specialTypeName(a.type) ?? 'a symbolic link'}, not a file or directory`);
  if (!recursive) throw pathError(path, 'IS_DIRECTORY', 'is a directory (use -r)');
  const below = async (dir: string): Promise<void> => {
    for (const e of await at(dir, () => fs.readdir(dir))) {
      const p = joinPath(dir, e.name);
      if (e.type === 'file') visit(p, e);
      else if (e.type === 'directory') await below(p);
    }
  };
  await below(path);
}

/** Loads one block through the worker the router picks; a worker that does not answer is skipped for the next try. */
async function loadOne(fs: StrataFileSystem, block: BlockInfo): Promise<LoadBlockResponse> {
  for (let attempt = 1; ; attempt++) {
    const w = await fs.router.forBlock(block);
    try {
      return await fs.workers.loadBlock(w, block.id, { reported: true });
    } catch (err) {
      const e = toStrataError(err);
      if (attempt >= 3 || (e.code !== 'UNAVAILABLE' && e.code !== 'TIMEOUT')) throw e;
      fs.router.markFailed(w);
    }
  }
}

/**
 * `persist -r`: every file below the paths not in its under-store yet is written there, `parallel`
 * at a time (the master answers each once its bytes are stored). A file that fails is reported
 * and the others go on; the command then fails naming the first.
 */
async function persistTrees(fs: StrataFileSystem, paths: string[], parallel: number, showProgress: boolean, json: boolean): Promise<void> {
  const started = Date.now();
  // By path: operands that overlap (`-r /a /a/b`, patterns) count each file once.
  const found = new Map<string, { size: number; persisted: boolean }>();
  for (const path of paths) await eachFile(fs, path, true, (p, a) => found.set(p, { size: a.size, persisted: a.persistState === 'persisted' }));
  const all = [...found].map(([path, f]) => ({ path, ...f }));
  const queue = all.filter((f) => !f.persisted);
  const total = queue.reduce((n, f) => n + f.size, 0);
  const failed: { path: string; error: string }[] = [];
  let files = 0;
  let bytes = 0;
  const progress = showProgress ? new Progress('persist', total, queue.length) : undefined;
  const run = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      try {
        const a = await fs.master.persist(f.path);
        if (a.persistState === 'persisted') {
          files++;
          bytes += f.size;
        } else failed.push({ path: f.path, error: `still ${a.persistState}` });
      } catch (err) {
        failed.push({ path: f.path, error: toStrataError(err).message });
      }
      progress?.update(bytes, files);
    }
  };
  const toDo = queue.length;
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, toDo)) }, run));
  } finally {
    progress?.stop();
  }
  const already = all.length - toDo;
  if (json) printJson({ files, totalFiles: all.length, alreadyPersisted: already, bytes, failedFiles: failed.length, failed, ms: Date.now() - started });
  else process.stdout.write(`persisted ${files} of ${toDo} file${toDo === 1 ? '' : 's'}, ${human(bytes)} (${bytes} bytes); ${already} already in the under-store\n`);
  if (failed.length > 0) {
    const first = failed[0]!;
    const more = failed.length > 1 ? ` (and ${failed.length - 1} more file${failed.length === 2 ? '' : 's'})` : '';
    throw pathError(first.path, 'IO_ERROR', `could not be persisted: ${first.error}${more}`);
  }
}

/** Removes a file, or a tree with `recursive`; each failure names the path it happened on. */
async function remove(fs: StrataFileSystem, path: string, recursive: boolean): Promise<void> {
  const a = await at(path, () => fs.getattr(path));
  if (a.type !== 'directory') return at(path, () => fs.unlink(path));
  if (!recursive) throw pathError(path, 'IS_DIRECTORY', 'is a directory (use -r)');
  if (path === '/') throw pathError(path, 'NOT_PERMITTED', 'refusing to remove the root (remove what is below it instead)');
  for (const e of await at(path, () => fs.readdir(path))) await remove(fs, joinPath(path, e.name), true);
  await at(path, () => fs.rmdir(path));
}

/** Adds the `fs` subcommands, with their help and examples, to `fsCmd`. */
export function registerFsCommands(fsCmd: Command): void {
  fsCmd.addHelpText(
    'after',
    `
Paths: Strata paths are absolute (/data/x). ls, stat, du, cat, rm, load, free, pin,
unpin and persist expand glob patterns against the namespace: *, ?, [abc], [a-z],
[!x], one path component at a time (quote them so the local shell leaves them
alone). A pattern matching nothing fails with "no match"; a backslash makes a
character literal: '/a\\*b' is the file named a*b.

Output: --json prints one JSON document on stdout: an object for one literal path,
an array for several paths or a pattern. Errors are one line on stderr:
"strata: <path>: <cause>". Exit codes: 0 ok, 1 operation failed, 2 bad usage.
The master is --master URL, else $STRATA_MASTER, else http://127.0.0.1:19998.
${examples([
  "$ strata fs ls '/data/*.parquet'",
  '$ strata fs cp -r ./dir strata:/dir',
  "$ strata fs rm '/tmp/x*'",
  '$ strata fs du --json /lake',
  '$ strata fs help cp',
])}`,
  );

  // Also before the command's name (`strata fs --master URL ls /`), as people type it. Given twice, the last wins.
  fsCmd
    .option('--master <url>', 'master URL for every command; default $STRATA_MASTER or http://127.0.0.1:19998')
    .option('--token-file <file>', 'the cluster token, when auth is on')
    .hook('preAction', (_fs, action) => {
      const shared = fsCmd.opts<{ master?: string; tokenFile?: string }>();
      for (const key of ['master', 'tokenFile'] as const) {
        if (shared[key] !== undefined && action.getOptionValue(key) === undefined) action.setOptionValue(key, shared[key]);
      }
    });

  const cmd = (name: string, desc: string, example: string[]) =>
    fsCmd
      .command(name)
      .description(desc)
      .option('--master <url>', 'master URL; default $STRATA_MASTER or http://127.0.0.1:19998')
      .option('--token-file <file>', 'the cluster token, when auth is on; default <home>/token, or $STRATA_TOKEN')
      .addHelpText('after', examples(example));

  cmd('ls', 'list directories (or show files)', [
    '$ strata fs ls /data',
    "$ strata fs ls '/data/*.parquet'          # a pattern, expanded against the namespace",
    "$ strata fs ls --json /data | jq '.[].name'",
    '$ strata fs ls --sync /lake               # re-read the under-store first',
  ])
    .argument('[paths...]', 'Strata paths or patterns', ['/'])
    .option('--json', 'print a JSON array of entries: [{path, name, type, size, mode, mtime, ino, persisted}]')
    .option('--sync', 're-read the metadata from the under-store first')
    .action(async (args: string[], o: FsOpts & { sync?: boolean }) =>
      withFs(o, async (fs) => {
        if (o.sync) {
          for (const arg of args) {
            const p = strataPath(hasGlob(arg) ? literalPrefix(arg) : unescapeGlob(arg));
            await at(p, () => fs.master.sync(p));
          }
        }
        const { paths } = await expand(fs, args);
        const files: { path: string; a: FileAttributes }[] = [];
        const dirs: string[] = [];
        // As ls(1), the ones that fail are reported first and the others still listed (exit 1 after).
        let failed: unknown;
        await eachOperand(paths, async (path) => {
          const a = await at(path, () => fs.getattr(path));
          if (a.type === 'directory') dirs.push(path);
          else files.push({ path, a });
        }).catch((err: unknown) => (failed = err));
        // As ls(1): the files named first, then each directory's entries, under a heading when there are several.
        const out: ReturnType<typeof entryJson>[] = [];
        for (const f of files) {
          if (o.json) out.push(entryJson(f.path, nodePath.posix.basename(f.path), f.a));
          else process.stdout.write(lsLine(f.path, f.a) + '\n');
        }
        let i = 0;
        await eachOperand(dirs, async (dir) => {
          const entries = await at(dir, () => fs.readdir(dir));
          if (!o.json && paths.length > 1) process.stdout.write(`${files.length > 0 || i > 0 ? '\n' : ''}${dir}:\n`);
          i++;
          for (const e of entries) {
            if (o.json) out.push(entryJson(joinPath(dir, e.name), e.name, e));
            else process.stdout.write(lsLine(e.name, e) + '\n');
          }
        }).catch((err: unknown) => (failed ??= err));
        // Only a failure: nothing on stdout, as for every command that fails.
        if (o.json && (!failed || out.length > 0)) printJson(out);
        if (failed) throw failed;
      }),
    );

  cmd('stat', 'show attributes, cache state and block locations of paths', [
    '$ strata fs stat /data/a.parquet',
    "$ strata fs stat --json '/data/*.parquet'   # an array, one object per match",
    "$ strata fs stat --json /data/a.parquet | jq .cachedBytes",
  ])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('--json', 'print JSON (with persisted, pinned, ttl, cachedBytes and blocks: [{id, offset, length, locations: [{worker, tier, bytes}]}])')
    .action(async (args: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const { paths, single } = await expand(fs, args);
        const all = [];
        for (const path of paths) {
          const info = await at(path, () => fs.master.fileBlocks(path, { allowDirectory: true }));
          const a = info.attrs;
          const blocks = info.blocks.map(blockJson);
          // A directory's cached bytes are its subtree's; a file's are its blocks'.
          const du = a.type === 'directory' ? await at(path, () => fs.master.du(path)) : undefined;
          const cachedBytes = du ? du.cachedBytes : blocks.reduce((n, b) => n + b.cachedBytes, 0);
          const total = du ? du.size : a.size;
          const ttl = ttlJson(info.ttl);
          if (o.json) {
            all.push({
              ...entryJson(path, nodePath.posix.basename(path) || '/', a),
              uid: a.uid,
              gid: a.gid,
              nlink: a.nlink,
              blockSize: a.blockSize,
              atime: a.atime,
              mtimeNs: a.mtime,
              ctime: a.ctime,
              pinned: info.pinned ?? false,
              ttl,
              cachedBytes,
              blocks: blocks.map(({ cachedBytes: _c, ...b }) => b),
            });
            continue;
          }
          let text =
            `  File: ${path}\n  Type: ${a.type}  Size: ${a.size}  Inode: ${a.ino}  Links: ${a.nlink}\n  Mode: ${modeString(a)} (0${a.mode.toString(8)})  Uid: ${a.uid}  Gid: ${a.gid}\n` +
            `Modify: ${new Date(timespecToMs(a.mtime)).toISOString()}\nChange: ${new Date(timespecToMs(a.ctime)).toISOString()}\nPersisted: ${a.persistState}\n` +
            `Pinned: ${info.pinned ? 'yes' : 'no'}  TTL: ${ttl ? `${ttl.action} at ${ttl.expiresAt}` : 'none'}\n` +
            `Cached: ${human(cachedBytes)} of ${human(total)} (${percent(cachedBytes, total)})${a.type === 'file' ? ` in ${blocks.length} block${blocks.length === 1 ? '' : 's'}` : ''}\n`;
          for (const b of blocks.slice(0, STAT_BLOCK_LINES)) {
            const where = b.locations.map((l) => `worker ${l.worker} ${l.tier || '?'} ${human(l.bytes)}`).join(', ') || 'not cached';
            text += `  block ${b.id} @${b.offset}+${b.length}: ${where}\n`;
          }
          if (blocks.length > STAT_BLOCK_LINES) text += `  … ${blocks.length - STAT_BLOCK_LINES} more blocks (--json lists all)\n`;
          process.stdout.write(text);
        }
        if (o.json) printJson(single ? all[0] : all);
      }),
    );

  cmd('cat', 'print files to stdout', ['$ strata fs cat /data/readme.txt', "$ strata fs cat '/logs/day=1/part-*' | wc -l"])
    .argument('<paths...>', 'Strata paths or patterns')
    .action(async (args: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const { paths } = await expand(fs, args);
        await eachOperand(paths, async (path) => {
          const target = await followSymlinks(fs, path);
          const special = specialTypeName(target.attrs.type);
          if (special) throw pathError(path, 'NOT_SUPPORTED', `is ${special}, which holds no bytes to print`);
          const reader = await at(path, () => fs.openReader(target.path));
          try {
            if (!(await copyToOutput(reader, path, process.stdout))) return 'stop';
          } finally {
            // Its read-ahead windows go now, not when the client closes: 4 MiB a file otherwise.
            reader.close();
          }
        });
      }),
    );

  cmd('cp', 'copy files: local <-> Strata (strata:/path), or within Strata', [
    '$ strata fs cp ./local.bin strata:/data/local.bin',
    '$ strata fs cp strata:/data/local.bin file:/tmp/x',
    '$ strata fs cp -r ./dir strata:/dir           # progress on stderr, a summary at the end',
    '$ strata fs cp -r --json strata:/dir ./back    # {files, directories, bytes, ms, bytesPerSecond}',
  ])
    .argument('<src>', 'source: a local path (plain or file:) or strata:/path')
    .argument('<dst>', 'destination: a local path or strata:/path')
    .option('-r, --recursive', 'copy directories recursively')
    .option('--no-progress', 'no progress display on stderr for a directory copy')
    .option('--json', 'print a JSON summary')
    .action(async (srcArg: string, dstArg: string, o: FsOpts & { recursive?: boolean; progress: boolean }) =>
      withFs(o, async (fs) => {
        const src = parseLocation(srcArg);
        const dst = parseLocation(dstArg);
        if (!src.strata && !dst.strata) throw usageError('one side of cp must be a Strata path (strata:/path)');
        // Copying onto an existing directory puts the source inside it, as cp(1) does.
        let dstPath = dst.path;
        const base = src.strata ? nodePath.posix.basename(src.path) : nodePath.basename(src.path);
        if (dst.strata) {
          const d = await attrsIfAny(fs, dst.path, label(dst));
          wantDirectory(dstArg, d && d.type === 'directory', label(dst));
          if (d?.type === 'directory') dstPath = joinPath(dst.path, base);
        } else {
          const d = await at(dst.path, () => fsp.stat(dst.path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err))));
          wantDirectory(dstArg, d && d.isDirectory(), label(dst));
          if (d?.isDirectory()) dstPath = nodePath.join(dst.path, base);
        }
        const started = Date.now();
        const copier = new Copier(fs, !!o.recursive);
        // Without -r, a link named on the command line is followed, as cp(1) follows it; with -r it is copied as a link.
        if (src.strata && !o.recursive) src.path = (await followSymlinks(fs, src.path, label(src))).path;
        const isTree = o.recursive ? (src.strata ? (await at(label(src), () => fs.getattr(src.path))).type === 'directory' : (await at(src.path, () => fsp.lstat(src.path))).isDirectory()) : false;
        // A copy inside its own source would list the copy as it goes, and copy it again, one level deeper each time.
        if (isTree && src.strata && dst.strata && (src.path === '/' || dstPath === src.path || dstPath.startsWith(src.path + '/'))) {
          throw usageError(`cannot copy a directory, ${label(src)}, into itself, strata:${dstPath}`);
        }
        let progress: Progress | undefined;
        if (isTree && o.progress) {
          const plan = await copier.plan(src);
          progress = new Progress('cp', plan.bytes, plan.files);
          copier.progress = progress;
        }
        try {
          if (src.strata && dst.strata) await copier.strataToStrata(src.path, dstPath);
          else if (src.strata) await copier.strataToLocal(src.path, dstPath);
          else await copier.localToStrata(src.path, dstPath);
        } finally {
          progress?.stop();
        }
        const ms = Date.now() - started;
        const { files, directories, symlinks, skipped, bytes } = copier.stats;
        if (o.json) printJson({ files, directories, symlinks, skipped, bytes, ms, bytesPerSecond: ms > 0 ? Math.round((bytes * 1000) / ms) : bytes });
        else if (isTree) {
          const links = symlinks ? `, ${symlinks} symbolic link${symlinks === 1 ? '' : 's'}` : '';
          const left = skipped ? `; skipped ${skipped} special file${skipped === 1 ? '' : 's'}` : '';
          process.stdout.write(
            `copied ${files} file${files === 1 ? '' : 's'}${links} and ${directories} director${directories === 1 ? 'y' : 'ies'}, ${human(bytes)} (${bytes} bytes) in ${(ms / 1000).toFixed(1)} s, ${rate(bytes, ms)}${left}\n`,
          );
        }
      }),
    );

  cmd('mkdir', 'create directories', ['$ strata fs mkdir /data', '$ strata fs mkdir -p /data/day=1/hour=00'])
    .argument('<paths...>', 'Strata paths (taken literally)')
    .option('-p, --parents', 'create parents as needed; no error if existing')
    .option('--json', 'print {ok: true, paths}')
    .action(async (args: string[], o: FsOpts & { parents?: boolean }) =>
      withFs(o, async (fs) => {
        const paths = args.map(strataPath);
        for (const path of paths) {
          if (!o.parents) {
            await at(path, () => fs.mkdir(path, 0o755), { NOT_FOUND: 'no such parent directory (use -p)' });
            continue;
          }
          let cur = '';
          for (const part of path.split('/').filter(Boolean)) {
            cur += '/' + part;
            await at(path, () => fs.mkdir(cur, 0o755).catch(ignoreExists));
          }
          if ((await at(path, () => fs.getattr(path))).type !== 'directory') throw pathError(path, 'ALREADY_EXISTS', 'file exists');
        }
        if (o.json) printJson({ ok: true, paths });
      }),
    );

  cmd('rm', 'remove files (and directories with -r)', ['$ strata fs rm /tmp/out.bin', "$ strata fs rm '/tmp/x*'", '$ strata fs rm -r /scratch/run-7'])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('-r, --recursive', 'remove directories and their contents')
    .option('--json', 'print {ok: true, paths}')
    .action(async (args: string[], o: FsOpts & { recursive?: boolean }) =>
      withFs(o, async (fs) => {
        const { paths } = await expand(fs, args, { slashFollows: false });
        await eachOperand(paths, (path) => remove(fs, path, !!o.recursive));
        if (o.json) printJson({ ok: true, paths });
      }),
    );

  cmd('mount', 'mount an under-store at a Strata path; without arguments, list the mount table', [
    '$ strata fs mount',
    '$ strata fs mount /lake s3://bucket/lake --option s3.endpoint=http://127.0.0.1:9000 --option s3.pathStyle=true',
    '$ strata fs mount /ref file:///data/ref --readonly',
  ])
    .argument('[path]', 'Strata path to mount at (missing or an empty directory)')
    .argument('[uri]', 'under-store URI: file:///dir, s3://bucket/prefix, hdfs://namenode:port/path')
    .option('--readonly', 'writes under the mount fail with EROFS')
    .option('--option <key=value>', 'mount option (repeatable): s3.endpoint, s3.region, s3.pathStyle, s3.accessKeyId, s3.secretAccessKey, hdfs.user, write.type, sync.interval.ms', (v: string, p: string[] = []) => [...p, v])
    .option('--json', 'print JSON: the mount table [{path, uri, readOnly, options}], or the new mount')
    .action(async (pathArg: string | undefined, uri: string | undefined, o: FsOpts & { readonly?: boolean; option?: string[] }) =>
      withFs(o, async (fs) => {
        if (pathArg === undefined) {
          const mounts = await fs.master.mounts();
          if (o.json) printJson(mounts);
          else for (const m of mounts) process.stdout.write(`${m.path.padEnd(24)} ${m.uri}${m.readOnly ? ' (read-only)' : ''}${Object.keys(m.options).length ? ' ' + JSON.stringify(m.options) : ''}\n`);
          return;
        }
        const path = strataPath(pathArg);
        if (uri === undefined) throw usageError(`${path}: fs mount needs a path and an under-store URI`);
        const options: Record<string, string> = {};
        for (const kv of o.option ?? []) {
          const i = kv.indexOf('=');
          if (i <= 0) throw usageError(`--option expects key=value, got '${kv}'`);
          options[kv.slice(0, i)] = kv.slice(i + 1);
        }
        const m = await at(path, () => fs.master.mount(path, uri, options, !!o.readonly), {
          ALREADY_EXISTS: 'something is already mounted there',
          NOT_EMPTY: 'directory not empty (mount on a missing or empty directory)',
        });
        if (o.json) printJson(m);
      }),
    );

  cmd('unmount', 'unmount the under-store mounted at a Strata path', ['$ strata fs unmount /lake'])
    .argument('<path>', 'Strata path')
    .option('--json', 'print {ok: true, path}')
    .action(async (arg: string, o: FsOpts) =>
      withFs(o, async (fs) => {
        const path = strataPath(arg);
        try {
          await fs.master.unmount(path);
        } catch (err) {
          // Busy says why (files not persisted yet, stores mounted below): the bare word helped nobody.
          const e = toStrataError(err);
          if (e.code === 'BUSY') throw pathError(path, 'BUSY', `busy: ${e.message.replace(/\s+/g, ' ')}`, e);
          throw onPath(path, e, { NOT_FOUND: 'nothing is mounted there' });
        }
        if (o.json) printJson({ ok: true, path });
      }),
    );

  cmd('sync', 're-read metadata of paths from their under-store now (new, changed and deleted files)', ['$ strata fs sync /lake/new', '$ strata fs sync /lake /ref'])
    .argument('<paths...>', 'Strata paths (taken literally: what to sync may not be known yet)')
    .option('--json', 'print {ok: true, paths}')
    .action(async (args: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const paths = args.map(strataPath);
        for (const path of paths) await at(path, () => fs.master.sync(path));
        if (o.json) printJson({ ok: true, paths });
      }),
    );

  cmd('persist', 'write files to their under-store now (for MUST_CACHE / ASYNC_THROUGH files)', [
    '$ strata fs persist /tmp/out.bin',
    "$ strata fs persist --json '/tmp/out-*.bin'",
    '$ strata fs persist -r /scratch/run-7 --parallel 8',
  ])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('-r, --recursive', 'persist every file below a directory')
    .option('--parallel <n>', 'files persisted at once, with -r (1-64)', '4')
    .option('--no-progress', 'no progress display on stderr, with -r')
    .option('--json', 'print JSON: {path, persisted}, an array for several paths or a pattern; with -r a summary')
    .action(async (args: string[], o: FsOpts & { recursive?: boolean; parallel: string; progress: boolean }) =>
      withFs(o, async (fs) => {
        const parallel = Number(o.parallel);
        if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw usageError(`--parallel must be an integer from 1 to 64, got '${o.parallel}'`);
        const { paths, single } = await expand(fs, args, { followLast: true });
        if (o.recursive) return persistTrees(fs, paths, parallel, o.progress, !!o.json);
        const out = [];
        for (const path of paths) {
          const type = (await at(path, () => fs.getattr(path))).type;
          if (type === 'directory') throw pathError(path, 'IS_DIRECTORY', 'is a directory (use -r)');
          if (type !== 'file') throw pathError(path, 'NOT_SUPPORTED', `is ${specialTypeName(type) ?? 'a symbolic link'}, not a file or directory`);
          const a = await at(path, () => fs.master.persist(path));
          const persisted = a.persistState === 'persisted';
          out.push({ path, persisted });
          if (!o.json) process.stdout.write(`${path}: ${persisted ? 'persisted' : a.persistState}\n`);
        }
        if (o.json) printJson(single ? out[0] : out);
      }),
    );

  cmd('mv', 'rename or move a file or directory', ['$ strata fs mv /a/b /a/c', '$ strata fs mv /tmp/out.bin /data      # into an existing directory'])
    .argument('<src>', 'Strata path')
    .argument('<dst>', 'Strata path (into it, when it is a directory)')
    .option('--json', 'print {ok: true, from, to}')
    .action(async (srcArg: string, dstArg: string, o: FsOpts) =>
      withFs(o, async (fs) => {
        const from = strataPath(srcArg);
        let to = strataPath(dstArg);
        const src = await at(from, () => fs.getattr(from));
        // As mv(1): `mv /file/ x` names a directory that is not there.
        if (namesDirectory(srcArg) && src.type !== 'directory') throw pathError(`${from}/`, 'NOT_DIRECTORY', 'not a directory');
        const d = await attrsIfAny(fs, to, to);
        wantDirectory(dstArg, d && d.type === 'directory', to);
        if (d?.type === 'directory') to = joinPath(to, nodePath.posix.basename(from));
        await at(`${from} -> ${to}`, () => fs.rename(from, to));
        if (o.json) printJson({ ok: true, from, to });
      }),
    );

  // ---- cache control -----------------------------------------------------------

  cmd('load', 'load files into the cluster cache (each block on the worker it belongs to)', [
    '$ strata fs load /lake/day=1/part-0.parquet',
    '$ strata fs load -r /lake/day=1 --parallel 8',
    "$ strata fs load '/lake/day=*/part-0*.parquet' --json",
  ])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('-r, --recursive', 'load every file below a directory')
    .option('--parallel <n>', 'blocks loaded at once (1-64)', '4')
    .option('--no-progress', 'no progress display on stderr')
    .option('--json', 'print a JSON summary')
    .action(async (args: string[], o: FsOpts & { recursive?: boolean; parallel: string; progress: boolean }) =>
      withFs(o, async (fs) => {
        const parallel = Number(o.parallel);
        if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw usageError(`--parallel must be an integer from 1 to 64, got '${o.parallel}'`);
        const started = Date.now();
        const { paths } = await expand(fs, args, { followLast: true });
        const jobs: LoadJob[] = [];
        const found: string[] = [];
        for (const path of paths) await eachFile(fs, path, !!o.recursive, (p) => found.push(p));
        for (const path of found) jobs.push({ path, blocks: (await at(path, () => fs.master.fileBlocks(path))).blocks });
        const queue = jobs.flatMap((job, file) => job.blocks.map((block) => ({ file, block })));
        const total = queue.reduce((n, q) => n + q.block.length, 0);
        const blocks = queue.length;
        const left = jobs.map((j) => j.blocks.length);
        const failed: { path: string; block: number; error: string }[] = [];
        let bytes = 0;
        let ufsBytes = 0;
        // Files without blocks (empty) are loaded already.
        let files = left.filter((n) => n === 0).length;
        const progress = o.progress ? new Progress('load', total, jobs.length) : undefined;
        const run = async () => {
          for (let q = queue.shift(); q; q = queue.shift()) {
            try {
              const r = await loadOne(fs, q.block);
              bytes += r.length;
              ufsBytes += r.ufsBytes;
              if (--left[q.file]! === 0) files++;
            } catch (err) {
              failed.push({ path: jobs[q.file]!.path, block: q.block.id, error: toStrataError(err).message });
            }
            progress?.update(bytes, files);
          }
        };
        try {
          await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, queue.length)) }, run));
        } finally {
          progress?.stop();
        }
        if (o.json) printJson({ files, totalFiles: jobs.length, blocks, bytes, ufsBytes, failedBlocks: failed.length, failed, ms: Date.now() - started });
        else process.stdout.write(`loaded ${files} of ${jobs.length} file${jobs.length === 1 ? '' : 's'}, ${human(bytes)} (${bytes} bytes); read ${human(ufsBytes)} (${ufsBytes} bytes) from the under-store\n`);
        if (failed.length > 0) {
          const first = failed[0]!;
          const more = failed.length > 1 ? ` (and ${failed.length - 1} more block${failed.length === 2 ? '' : 's'})` : '';
          throw pathError(first.path, 'IO_ERROR', `block ${first.block} failed to load: ${first.error}${more}`);
        }
      }),
    );

  cmd('free', 'drop cached copies of files from the cluster cache (files already in their under-store only)', ['$ strata fs free /lake/day=1/part-0.parquet', '$ strata fs free -r /lake/day=1', "$ strata fs free '/lake/day=[1-3]' -r --json"])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('-r, --recursive', 'free every file below a directory')
    .option('--json', 'print JSON: {path, files, bytes, skippedNotPersisted}, an array for several paths or a pattern')
    .action(async (args: string[], o: FsOpts & { recursive?: boolean }) =>
      withFs(o, async (fs) => {
        const { paths, single } = await expand(fs, args, { followLast: true });
        const out = [];
        for (const path of paths) {
          if (!o.recursive && (await at(path, () => fs.getattr(path))).type === 'directory') throw pathError(path, 'IS_DIRECTORY', 'is a directory (use -r)');
          const r = await at(path, () => fs.master.free(path, !!o.recursive));
          out.push({ path, ...r });
          if (!o.json) {
            const skipped = r.skippedNotPersisted ? `; ${r.skippedNotPersisted} file${r.skippedNotPersisted === 1 ? '' : 's'} not persisted yet kept` : '';
            process.stdout.write(`freed ${r.files} file${r.files === 1 ? '' : 's'}${single ? '' : ` below ${path}`}: ${human(r.bytes)} of cached copies dropped${skipped}\n`);
          }
        }
        if (o.json) printJson(single ? out[0] : out);
      }),
    );

  const pinCommand = (name: 'pin' | 'unpin', pinned: boolean) =>
    cmd(
      name,
      pinned ? 'keep files in the cache: pinned blocks are never evicted (a directory: everything below it, also files created later)' : 'let pinned files be evicted again',
      [`$ strata fs ${name} /hot`, `$ strata fs ${name} --json '/hot/*.parquet'`],
    )
      .argument('<paths...>', 'Strata paths or patterns')
      .option('--json', 'print JSON: {path, pinned, files}, an array for several paths or a pattern')
      .action(async (args: string[], o: FsOpts) =>
        withFs(o, async (fs) => {
          const { paths, single } = await expand(fs, args, { followLast: true });
          const out = [];
          for (const path of paths) {
            const r = await at(path, () => fs.master.pin(path, pinned, true));
            if (o.json) out.push(r);
            else process.stdout.write(`${name}ned ${r.path} (${r.files} file${r.files === 1 ? '' : 's'} changed)\n`);
          }
          if (o.json) printJson(single ? out[0] : out);
        }),
      );
  pinCommand('pin', true);
  pinCommand('unpin', false);

  cmd('setTtl', 'set a time to live: after DURATION the path is freed from the cache (default) or deleted', ['$ strata fs setTtl /tmp/scratch 2h', '$ strata fs setTtl /tmp/scratch 1d --action delete'])
    .argument('<path>', 'Strata path (a file or directory)')
    .argument('<duration>', 'milliseconds, or a number with s, m, h or d: 30s, 10m, 2h, 1d')
    .addOption(new Option('--action <action>', 'what happens when it expires: free (drop cached copies) or delete (remove it, from the under-store too)').choices(['free', 'delete']).default('free'))
    .option('--json', 'print JSON: {path, ttl: {expiresAt, expiresAtMs, action}}')
    .action(async (arg: string, duration: string, o: FsOpts & { action: TtlAction }) => {
      const path = strataPath(arg);
      const ttlMs = parseDuration(duration);
      await withFs(o, async (fs) => {
        const r = await at(path, () => fs.master.setTtl(path, ttlMs, o.action));
        const ttl = ttlJson(r.ttl);
        if (o.json) printJson({ path: r.path, ttl });
        else process.stdout.write(`${r.path}: ${ttl!.action} at ${ttl!.expiresAt}\n`);
      });
    });

  cmd('unsetTtl', 'remove the time to live of a path', ['$ strata fs unsetTtl /tmp/scratch'])
    .argument('<path>', 'Strata path')
    .option('--json', 'print JSON: {path, ttl: null}')
    .action(async (arg: string, o: FsOpts) =>
      withFs(o, async (fs) => {
        const path = strataPath(arg);
        const r = await at(path, () => fs.master.setTtl(path, null));
        if (o.json) printJson({ path: r.path, ttl: null });
        else process.stdout.write(`${r.path}: no TTL\n`);
      }),
    );

  cmd('du', 'size of files and how much of it is in the cluster cache', ['$ strata fs du /lake', "$ strata fs du '/lake/day=*'", '$ strata fs du --json /lake    # raw byte counts'])
    .argument('<paths...>', 'Strata paths or patterns')
    .option('--json', 'print JSON (raw byte counts): {path, size, cachedBytes, files, directories}, an array for several paths or a pattern')
    .action(async (args: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const { paths, single } = await expand(fs, args, { followLast: true });
        const out = [];
        for (const path of paths) {
          const r = await at(path, () => fs.master.du(path));
          if (o.json) out.push({ path, ...r });
          else {
            const counts = `${r.files} file${r.files === 1 ? '' : 's'}${r.directories ? `, ${r.directories} director${r.directories === 1 ? 'y' : 'ies'}` : ''}`;
            process.stdout.write(`${human(r.size).padStart(10)}  cached ${human(r.cachedBytes).padStart(10)} (${percent(r.cachedBytes, r.size).padStart(4)})  ${counts}  ${path}\n`);
          }
        }
        if (o.json) printJson(single ? out[0] : out);
      }),
    );

  cmd('report', 'workers of the cluster: state and the use of each cache tier', ['$ strata fs report', "$ strata fs report --json | jq '.[] | {id, state, usedBytes}'"])
    .option('--json', 'print JSON: [{id, address, host, state, tiers: [{name, dir, state, capacityBytes, usedBytes}], capacityBytes, usedBytes, pageSize, lastHeartbeat}]; a tier\'s state is ok, failing (a write to its disk fails) or stalled (one hangs)')
    .action(async (o: FsOpts) =>
      withFs(o, async (fs) => {
        const workers = (await fs.master.workers()).map(reportJson);
        if (o.json) {
          printJson(workers);
          return;
        }
        const rows: string[][] = [['ID', 'ADDRESS', 'STATE', 'TIER', 'USED', 'CAPACITY', 'USE']];
        for (const w of workers) {
          const tiers = w.tiers.length ? w.tiers : [{ name: '-', state: 'ok', capacityBytes: w.capacityBytes, usedBytes: w.usedBytes }];
          tiers.forEach((t, i) =>
            rows.push([i ? '' : String(w.id), i ? '' : w.address, i ? '' : w.state, t.state === 'ok' ? t.name : `${t.name} (${t.state})`, human(t.usedBytes), human(t.capacityBytes), percent(t.usedBytes, t.capacityBytes)]),
          );
        }
        const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
        for (const r of rows) process.stdout.write(r.map((cell, c) => (c >= 4 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd() + '\n');
        if (workers.length === 0) process.stdout.write('(no workers registered)\n');
      }),
    );
}

/** A worker as `fs report --json` shows it. */
function reportJson(w: WorkerInfo) {
  return {
    id: w.id,
    address: w.address,
    host: w.host,
    state: w.live ? 'live' : 'lost',
    tiers: (w.tiers ?? []).map((t) => ({ name: t.name, dir: t.dir, state: t.state ?? 'ok', capacityBytes: t.capacityBytes, usedBytes: t.usedBytes })),
    capacityBytes: w.capacityBytes,
    usedBytes: w.usedBytes,
    pageSize: w.pageSize,
    lastHeartbeat: new Date(w.lastHeartbeatMs).toISOString(),
  };
}
