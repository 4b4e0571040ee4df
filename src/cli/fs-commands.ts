/**
 * `strata fs …`: shell commands against a running cluster. Metadata comes from the
 * master; bytes move straight between this process and the workers.
 */

import { Command, Option } from 'commander';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import * as os from 'node:os';
import { StrataError, toStrataError } from '../common/errors';
import { resolveConfig } from '../common/config';
import { silentLogger } from '../common/log';
import { normalizePath, joinPath } from '../common/paths';
import { BlockInfo, FileAttributes, FileBlocksResponse, LoadBlockResponse, TtlAction, WorkerInfo, timespecToMs } from '../common/protocol';
import { Presets, SingleBar } from 'cli-progress';
import { StrataFileSystem } from '../client/file-system';
import type { FileReader } from '../client/file-reader';

interface FsOpts {
  master?: string;
  json?: boolean;
}

function openFs(o: FsOpts): StrataFileSystem {
  const cfg = resolveConfig({ master: o.master });
  return new StrataFileSystem({
    masterUrl: cfg.master,
    stagingDir: nodePath.join(os.tmpdir(), `strata-cli-${process.pid}`),
    logger: silentLogger(),
  });
}

/** Runs a command with a client, closes it, and maps failures to a message and exit code 1. */
async function withFs(o: FsOpts, fn: (fs: StrataFileSystem) => Promise<void>): Promise<void> {
  const fs = openFs(o);
  try {
    await fn(fs);
  } finally {
    await fs.close().catch(() => undefined);
  }
}

function modeString(a: FileAttributes): string {
  const t = a.type === 'directory' ? 'd' : a.type === 'symlink' ? 'l' : '-';
  const rwx = (b: number) => `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${b & 1 ? 'x' : '-'}`;
  return t + rwx((a.mode >> 6) & 7) + rwx((a.mode >> 3) & 7) + rwx(a.mode & 7);
}

function entryJson(name: string, a: FileAttributes) {
  return { name, type: a.type, size: a.size, mode: a.mode, mtime: new Date(timespecToMs(a.mtime)).toISOString(), ino: a.ino, persisted: a.persistState === 'persisted' };
}

function lsLine(name: string, a: FileAttributes): string {
  const mtime = new Date(timespecToMs(a.mtime)).toISOString().replace('T', ' ').slice(0, 19);
  return `${modeString(a)} ${String(a.uid).padStart(5)} ${String(a.gid).padStart(5)} ${String(a.size).padStart(12)} ${mtime} ${name}`;
}

/** `strata:/p` and `strata:///p` name Strata paths; anything else (plain or `file:`) is local. */
function parseLocation(arg: string): { strata: boolean; path: string } {
  if (arg.startsWith('strata://')) return { strata: true, path: normalizePath(arg.slice('strata://'.length) || '/') };
  if (arg.startsWith('strata:')) return { strata: true, path: normalizePath(arg.slice('strata:'.length) || '/') };
  if (arg.startsWith('file://')) return { strata: false, path: nodePath.resolve(decodeURIComponent(new URL(arg).pathname)) };
  if (arg.startsWith('file:')) return { strata: false, path: nodePath.resolve(arg.slice('file:'.length)) };
  return { strata: false, path: nodePath.resolve(arg) };
}

/** A readable stream of a Strata file, read in read-ahead windows. */
function readerStream(reader: FileReader): Readable {
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
          this.push(n === 0 ? null : buf.subarray(0, n));
        },
        (err) => this.destroy(err),
      );
    },
  });
}

async function copyLocalToStrata(fs: StrataFileSystem, src: string, dst: string, recursive: boolean): Promise<number> {
  const st = await fsp.stat(src).catch((err) => {
    throw toStrataError(err, src);
  });
  if (st.isDirectory()) {
    if (!recursive) throw new StrataError('IS_DIRECTORY', `${src} is a directory (use -r)`);
    await fs.mkdir(dst, st.mode & 0o7777).catch((err) => {
      if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
    });
    let n = 0;
    for (const name of await fsp.readdir(src)) n += await copyLocalToStrata(fs, nodePath.join(src, name), joinPath(dst, name), recursive);
    return n;
  }
  await fs.writeFile(dst, createReadStream(src), st.size, st.mode & 0o7777);
  return 1;
}

async function copyStrataToLocal(fs: StrataFileSystem, src: string, dst: string, recursive: boolean): Promise<number> {
  const a = await fs.getattr(src);
  if (a.type === 'directory') {
    if (!recursive) throw new StrataError('IS_DIRECTORY', `${src} is a directory (use -r)`);
    await fsp.mkdir(dst, { recursive: true });
    let n = 0;
    for (const e of await fs.readdir(src)) n += await copyStrataToLocal(fs, joinPath(src, e.name), nodePath.join(dst, e.name), recursive);
    return n;
  }
  const reader = await fs.openReader(src);
  await pipeline(readerStream(reader), createWriteStream(dst, { mode: a.mode & 0o777 }));
  return 1;
}

async function copyStrataToStrata(fs: StrataFileSystem, src: string, dst: string, recursive: boolean): Promise<number> {
  const a = await fs.getattr(src);
  if (a.type === 'directory') {
    if (!recursive) throw new StrataError('IS_DIRECTORY', `${src} is a directory (use -r)`);
    await fs.mkdir(dst, a.mode).catch((err) => {
      if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
    });
    let n = 0;
    for (const e of await fs.readdir(src)) n += await copyStrataToStrata(fs, joinPath(src, e.name), joinPath(dst, e.name), recursive);
    return n;
  }
  const reader = await fs.openReader(src);
  await fs.writeFile(dst, readerStream(reader), reader.size, a.mode);
  return 1;
}

/** Blocks listed by `fs stat` in text form; --json lists all. */
const STAT_BLOCK_LINES = 16;

/** 1536 -> "1.5 KiB": binary units, one decimal. */
export function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function percent(part: number, whole: number): string {
  if (whole <= 0) return part > 0 ? '100%' : '0%';
  const p = (100 * part) / whole;
  // Never round a partly cached file up to 100% or a little cached data down to 0%.
  return `${p >= 100 ? 100 : p > 99 ? Math.floor(p * 10) / 10 : p > 0 && p < 1 ? Math.ceil(p * 10) / 10 : Math.round(p)}%`;
}

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
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new StrataError('CONFIG', `bad duration '${v}': use a number of milliseconds or a number with s, m, h or d (30s, 10m, 2h, 1d)`);
  return ms;
}

/**
 * Progress of a long command on stderr: a bar on a terminal; elsewhere (logs, CI)
 * a plain line every 2 s or 10 %, whichever comes first.
 */
class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #bar: SingleBar | undefined;
  #lastLine = 0;
  #lastTenth = 0;

  constructor(label: string, total: number, totalFiles: number) {
    this.#label = label;
    this.#total = total;
    if (process.stderr.isTTY) {
      this.#bar = new SingleBar(
        { format: `${label} [{bar}] {percentage}% | {doneH} of {totalH} | {files}/{totalFiles} files | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, etaBuffer: 50 },
        Presets.shades_classic,
      );
      this.#bar.start(total, 0, { doneH: human(0), totalH: human(total), files: 0, totalFiles });
    }
    this.#lastLine = Date.now();
  }

  update(done: number, files: number, totalFiles: number): void {
    if (this.#bar) {
      this.#bar.update(done, { doneH: human(done), totalH: human(this.#total), files, totalFiles });
      return;
    }
    const tenth = this.#total > 0 ? Math.floor((10 * done) / this.#total) : 10;
    const now = Date.now();
    if (tenth > this.#lastTenth || now - this.#lastLine >= 2000) {
      this.#lastTenth = tenth;
      this.#lastLine = now;
      process.stderr.write(`${this.#label}: ${percent(done, this.#total)} ${human(done)} of ${human(this.#total)}, ${files}/${totalFiles} files\n`);
    }
  }

  stop(): void {
    this.#bar?.stop();
  }
}

/** A file to load and its blocks. */
interface LoadJob {
  path: string;
  blocks: BlockInfo[];
}

/** Files at `path` (all below it when `recursive`), with their blocks. */
async function filesToLoad(fs: StrataFileSystem, path: string, recursive: boolean): Promise<LoadJob[]> {
  const a = await fs.getattr(path);
  if (a.type === 'file') return [{ path, blocks: (await fs.master.fileBlocks(path)).blocks }];
  if (a.type !== 'directory') return [];
  if (!recursive) throw new StrataError('IS_DIRECTORY', `${path} is a directory (use --recursive)`);
  const out: LoadJob[] = [];
  for (const e of await fs.readdir(path)) {
    if (e.type === 'file' || e.type === 'directory') out.push(...(await filesToLoad(fs, joinPath(path, e.name), true)));
  }
  return out;
}

/** Loads one block through the worker the router picks; a worker that does not answer is skipped for the next try. */
async function loadOne(fs: StrataFileSystem, block: BlockInfo): Promise<LoadBlockResponse> {
  for (let attempt = 1; ; attempt++) {
    const w = await fs.router.forBlock(block);
    try {
      return await fs.workers.loadBlock(w, block.id);
    } catch (err) {
      const e = toStrataError(err);
      if (attempt >= 3 || (e.code !== 'UNAVAILABLE' && e.code !== 'TIMEOUT')) throw e;
      fs.router.markFailed(w.id);
    }
  }
}

export function registerFsCommands(fsCmd: Command): void {
  const cmd = (name: string, desc: string) =>
    fsCmd.command(name).description(desc).option('--master <url>', 'master URL; default $STRATA_MASTER or http://127.0.0.1:19998');

  cmd('ls', 'list directories (or show files)')
    .argument('[paths...]', 'Strata paths', ['/'])
    .option('--json', 'print a JSON array of entries')
    .option('--sync', 're-read the metadata from the under-store first')
    .action(async (paths: string[], o: FsOpts & { sync?: boolean }) =>
      withFs(o, async (fs) => {
        const out: ReturnType<typeof entryJson>[] = [];
        for (const p of paths) {
          const path = normalizePath(p);
          if (o.sync) await fs.master.sync(path);
          const a = await fs.getattr(path);
          const entries = a.type === 'directory' ? (await fs.readdir(path)).map((e) => ({ name: e.name, a: e as FileAttributes })) : [{ name: nodePath.posix.basename(path), a }];
          for (const e of entries) {
            if (o.json) out.push(entryJson(e.name, e.a));
            else process.stdout.write(lsLine(e.name, e.a) + '\n');
          }
        }
        if (o.json) process.stdout.write(JSON.stringify(out) + '\n');
      }),
    );

  cmd('stat', 'show attributes, cache state and block locations of paths')
    .argument('<paths...>', 'Strata paths')
    .option('--json', 'print JSON (with persisted, pinned, ttl, cachedBytes and blocks: [{id, offset, length, locations: [{worker, tier, bytes}]}])')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const all = [];
        for (const p of paths) {
          const path = normalizePath(p);
          const info = await fs.master.fileBlocks(path, { allowDirectory: true });
          const a = info.attrs;
          const blocks = info.blocks.map(blockJson);
          // A directory's cached bytes are its subtree's; a file's are its blocks'.
          const du = a.type === 'directory' ? await fs.master.du(path) : undefined;
          const cachedBytes = du ? du.cachedBytes : blocks.reduce((n, b) => n + b.cachedBytes, 0);
          const total = du ? du.size : a.size;
          const ttl = ttlJson(info.ttl);
          if (o.json) {
            all.push({
              path,
              ...entryJson(nodePath.posix.basename(path) || '/', a),
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
        if (o.json) process.stdout.write(JSON.stringify(paths.length === 1 ? all[0] : all) + '\n');
      }),
    );

  cmd('cat', 'print files to stdout')
    .argument('<paths...>', 'Strata paths')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        for (const p of paths) {
          const reader = await fs.openReader(normalizePath(p));
          await pipeline(readerStream(reader), process.stdout, { end: false });
        }
      }),
    );

  cmd('cp', 'copy files: local <-> Strata (strata:/path), or within Strata')
    .argument('<src>', 'source: a local path (plain or file:) or strata:/path')
    .argument('<dst>', 'destination: a local path or strata:/path')
    .option('-r, --recursive', 'copy directories recursively')
    .option('--json', 'print a JSON summary')
    .action(async (srcArg: string, dstArg: string, o: FsOpts & { recursive?: boolean }) =>
      withFs(o, async (fs) => {
        const src = parseLocation(srcArg);
        const dst = parseLocation(dstArg);
        if (!src.strata && !dst.strata) throw new StrataError('CONFIG', 'one side of cp must be a Strata path (strata:/path)');
        // Copying onto an existing directory puts the source inside it, as cp(1) does.
        let dstPath = dst.path;
        const base = src.strata ? nodePath.posix.basename(src.path) : nodePath.basename(src.path);
        if (dst.strata) {
          const d = await fs.getattr(dst.path).catch(() => undefined);
          if (d?.type === 'directory') dstPath = joinPath(dst.path, base);
        } else {
          const d = await fsp.stat(dst.path).catch(() => undefined);
          if (d?.isDirectory()) dstPath = nodePath.join(dst.path, base);
        }
        const started = Date.now();
        const files = src.strata
          ? dst.strata
            ? await copyStrataToStrata(fs, src.path, dstPath, !!o.recursive)
            : await copyStrataToLocal(fs, src.path, dstPath, !!o.recursive)
          : await copyLocalToStrata(fs, src.path, dstPath, !!o.recursive);
        if (o.json) process.stdout.write(JSON.stringify({ files, ms: Date.now() - started }) + '\n');
      }),
    );

  cmd('mkdir', 'create directories')
    .argument('<paths...>', 'Strata paths')
    .option('-p, --parents', 'create parents as needed; no error if existing')
    .action(async (paths: string[], o: FsOpts & { parents?: boolean }) =>
      withFs(o, async (fs) => {
        for (const p of paths) {
          const path = normalizePath(p);
          if (!o.parents) {
            await fs.mkdir(path, 0o755);
            continue;
          }
          let cur = '';
          for (const part of path.split('/').filter(Boolean)) {
            cur += '/' + part;
            await fs.mkdir(cur, 0o755).catch((err) => {
              if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
            });
          }
        }
      }),
    );

  const remove = async (fs: StrataFileSystem, path: string, recursive: boolean): Promise<void> => {
    const a = await fs.getattr(path);
    if (a.type !== 'directory') return fs.unlink(path);
    if (!recursive) throw new StrataError('IS_DIRECTORY', `${path} is a directory (use -r)`);
    for (const e of await fs.readdir(path)) await remove(fs, joinPath(path, e.name), true);
    await fs.rmdir(path);
  };

  cmd('rm', 'remove files (and directories with -r)')
    .argument('<paths...>', 'Strata paths')
    .option('-r, --recursive', 'remove directories and their contents')
    .action(async (paths: string[], o: FsOpts & { recursive?: boolean }) =>
      withFs(o, async (fs) => {
        for (const p of paths) await remove(fs, normalizePath(p), !!o.recursive);
      }),
    );

  cmd('mount', 'mount an under-store at a Strata path; without arguments, list the mount table')
    .argument('[path]', 'Strata path to mount at (missing or an empty directory)')
    .argument('[uri]', 'under-store URI: file:///dir, s3://bucket/prefix, hdfs://namenode:port/path')
    .option('--readonly', 'writes under the mount fail with EROFS')
    .option('--option <key=value>', 'mount option (repeatable): s3.endpoint, s3.region, s3.pathStyle, s3.accessKeyId, s3.secretAccessKey, hdfs.user, write.type, sync.interval.ms', (v: string, p: string[] = []) => [...p, v])
    .option('--json', 'print JSON')
    .action(async (path: string | undefined, uri: string | undefined, o: FsOpts & { readonly?: boolean; option?: string[] }) =>
      withFs(o, async (fs) => {
        if (path === undefined) {
          const mounts = await fs.master.mounts();
          if (o.json) process.stdout.write(JSON.stringify(mounts) + '\n');
          else for (const m of mounts) process.stdout.write(`${m.path.padEnd(24)} ${m.uri}${m.readOnly ? ' (read-only)' : ''}${Object.keys(m.options).length ? ' ' + JSON.stringify(m.options) : ''}\n`);
          return;
        }
        if (uri === undefined) throw new StrataError('CONFIG', 'fs mount needs a path and a URI');
        const options: Record<string, string> = {};
        for (const kv of o.option ?? []) {
          const i = kv.indexOf('=');
          if (i <= 0) throw new StrataError('CONFIG', `--option expects key=value, got '${kv}'`);
          options[kv.slice(0, i)] = kv.slice(i + 1);
        }
        const m = await fs.master.mount(normalizePath(path), uri, options, !!o.readonly);
        if (o.json) process.stdout.write(JSON.stringify(m) + '\n');
      }),
    );

  cmd('unmount', 'unmount the under-store mounted at a Strata path')
    .argument('<path>', 'Strata path')
    .action(async (path: string, o: FsOpts) => withFs(o, (fs) => fs.master.unmount(normalizePath(path))));

  cmd('sync', 're-read metadata of paths from their under-store now (new, changed and deleted files)')
    .argument('<paths...>', 'Strata paths')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        for (const p of paths) await fs.master.sync(normalizePath(p));
      }),
    );

  cmd('persist', 'write files to their under-store now (for MUST_CACHE / ASYNC_THROUGH files)')
    .argument('<paths...>', 'Strata paths')
    .option('--json', 'print JSON')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const out = [];
        for (const p of paths) {
          const a = await fs.master.persist(normalizePath(p));
          out.push({ path: normalizePath(p), persisted: a.persistState === 'persisted' });
        }
        if (o.json) process.stdout.write(JSON.stringify(out) + '\n');
      }),
    );

  cmd('mv', 'rename or move a file or directory')
    .argument('<src>', 'Strata path')
    .argument('<dst>', 'Strata path')
    .action(async (src: string, dst: string, o: FsOpts) =>
      withFs(o, async (fs) => {
        let to = normalizePath(dst);
        const d = await fs.getattr(to).catch(() => undefined);
        if (d?.type === 'directory') to = joinPath(to, nodePath.posix.basename(normalizePath(src)));
        await fs.rename(normalizePath(src), to);
      }),
    );

  // ---- cache control -----------------------------------------------------------

  cmd('load', 'load files into the cluster cache (each block on the worker it belongs to)')
    .argument('<path>', 'Strata path')
    .option('-r, --recursive', 'load every file below a directory')
    .option('--parallel <n>', 'blocks loaded at once (1-64)', '4')
    .option('--json', 'print a JSON summary')
    .action(async (p: string, o: FsOpts & { recursive?: boolean; parallel: string }) =>
      withFs(o, async (fs) => {
        const parallel = Number(o.parallel);
        if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new StrataError('CONFIG', `--parallel must be an integer from 1 to 64, got '${o.parallel}'`);
        const started = Date.now();
        const jobs = await filesToLoad(fs, normalizePath(p), !!o.recursive);
        const queue = jobs.flatMap((job, file) => job.blocks.map((block) => ({ file, block })));
        const total = queue.reduce((n, q) => n + q.block.length, 0);
        const blocks = queue.length;
        const left = jobs.map((j) => j.blocks.length);
        const failed: { path: string; block: number; error: string }[] = [];
        let bytes = 0;
        let ufsBytes = 0;
        // Files without blocks (empty) are loaded already.
        let files = left.filter((n) => n === 0).length;
        const progress = new Progress('load', total, jobs.length);
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
            progress.update(bytes, files, jobs.length);
          }
        };
        try {
          await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, queue.length)) }, run));
        } finally {
          progress.stop();
        }
        if (o.json) process.stdout.write(JSON.stringify({ files, totalFiles: jobs.length, blocks, bytes, ufsBytes, failedBlocks: failed.length, failed, ms: Date.now() - started }) + '\n');
        else process.stdout.write(`loaded ${files} of ${jobs.length} file${jobs.length === 1 ? '' : 's'}, ${human(bytes)} (${bytes} bytes); read ${human(ufsBytes)} (${ufsBytes} bytes) from the under-store\n`);
        if (failed.length > 0) throw new StrataError('IO_ERROR', `${failed.length} block${failed.length === 1 ? '' : 's'} failed to load; first: ${failed[0]!.path} block ${failed[0]!.block}: ${failed[0]!.error}`);
      }),
    );

  cmd('free', 'drop cached copies of files from the cluster cache (files already in their under-store only)')
    .argument('<path>', 'Strata path')
    .option('-r, --recursive', 'free every file below a directory')
    .option('--json', 'print JSON')
    .action(async (p: string, o: FsOpts & { recursive?: boolean }) =>
      withFs(o, async (fs) => {
        const path = normalizePath(p);
        if (!o.recursive && (await fs.getattr(path)).type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory (use --recursive)`);
        const r = await fs.master.free(path, !!o.recursive);
        if (o.json) process.stdout.write(JSON.stringify({ path, ...r }) + '\n');
        else {
          const skipped = r.skippedNotPersisted ? `; ${r.skippedNotPersisted} file${r.skippedNotPersisted === 1 ? '' : 's'} not persisted yet kept` : '';
          process.stdout.write(`freed ${r.files} file${r.files === 1 ? '' : 's'}: ${human(r.bytes)} of cached copies dropped${skipped}\n`);
        }
      }),
    );

  const pinCommand = (name: 'pin' | 'unpin', pinned: boolean) =>
    cmd(name, pinned ? 'keep files in the cache: pinned blocks are never evicted (a directory: everything below it, also files created later)' : 'let pinned files be evicted again')
      .argument('<paths...>', 'Strata paths')
      .option('--json', 'print JSON')
      .action(async (paths: string[], o: FsOpts) =>
        withFs(o, async (fs) => {
          const out = [];
          for (const p of paths) {
            const r = await fs.master.pin(normalizePath(p), pinned, true);
            if (o.json) out.push(r);
            else process.stdout.write(`${name}ned ${r.path} (${r.files} file${r.files === 1 ? '' : 's'} changed)\n`);
          }
          if (o.json) process.stdout.write(JSON.stringify(paths.length === 1 ? out[0] : out) + '\n');
        }),
      );
  pinCommand('pin', true);
  pinCommand('unpin', false);

  cmd('setTtl', 'set a time to live: after DURATION the path is freed from the cache (default) or deleted')
    .argument('<path>', 'Strata path (a file or directory)')
    .argument('<duration>', 'milliseconds, or a number with s, m, h or d: 30s, 10m, 2h, 1d')
    .addOption(new Option('--action <action>', 'what happens when it expires: free (drop cached copies) or delete (remove it, from the under-store too)').choices(['free', 'delete']).default('free'))
    .option('--json', 'print JSON')
    .action(async (p: string, duration: string, o: FsOpts & { action: TtlAction }) => {
      const ttlMs = parseDuration(duration);
      await withFs(o, async (fs) => {
        const r = await fs.master.setTtl(normalizePath(p), ttlMs, o.action);
        const ttl = ttlJson(r.ttl);
        if (o.json) process.stdout.write(JSON.stringify({ path: r.path, ttl }) + '\n');
        else process.stdout.write(`${r.path}: ${ttl!.action} at ${ttl!.expiresAt}\n`);
      });
    });

  cmd('unsetTtl', 'remove the time to live of a path')
    .argument('<path>', 'Strata path')
    .option('--json', 'print JSON')
    .action(async (p: string, o: FsOpts) =>
      withFs(o, async (fs) => {
        const r = await fs.master.setTtl(normalizePath(p), null);
        if (o.json) process.stdout.write(JSON.stringify({ path: r.path, ttl: null }) + '\n');
        else process.stdout.write(`${r.path}: no TTL\n`);
      }),
    );

  cmd('du', 'size of files and how much of it is in the cluster cache')
    .argument('<paths...>', 'Strata paths')
    .option('--json', 'print JSON (raw byte counts)')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const out = [];
        for (const p of paths) {
          const path = normalizePath(p);
          const r = await fs.master.du(path);
          if (o.json) out.push({ path, ...r });
          else {
            const counts = `${r.files} file${r.files === 1 ? '' : 's'}${r.directories ? `, ${r.directories} director${r.directories === 1 ? 'y' : 'ies'}` : ''}`;
            process.stdout.write(`${human(r.size).padStart(10)}  cached ${human(r.cachedBytes).padStart(10)} (${percent(r.cachedBytes, r.size).padStart(4)})  ${counts}  ${path}\n`);
          }
        }
        if (o.json) process.stdout.write(JSON.stringify(paths.length === 1 ? out[0] : out) + '\n');
      }),
    );

  cmd('report', 'workers of the cluster: state and the use of each cache tier')
    .option('--json', 'print JSON')
    .action(async (o: FsOpts) =>
      withFs(o, async (fs) => {
        const workers = (await fs.master.workers()).map(reportJson);
        if (o.json) {
          process.stdout.write(JSON.stringify(workers) + '\n');
          return;
        }
        const rows: string[][] = [['ID', 'ADDRESS', 'STATE', 'TIER', 'USED', 'CAPACITY', 'USE']];
        for (const w of workers) {
          const tiers = w.tiers.length ? w.tiers : [{ name: '-', capacityBytes: w.capacityBytes, usedBytes: w.usedBytes }];
          tiers.forEach((t, i) =>
            rows.push([i ? '' : String(w.id), i ? '' : w.address, i ? '' : w.state, t.name, human(t.usedBytes), human(t.capacityBytes), percent(t.usedBytes, t.capacityBytes)]),
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
    tiers: (w.tiers ?? []).map((t) => ({ name: t.name, dir: t.dir, capacityBytes: t.capacityBytes, usedBytes: t.usedBytes })),
    capacityBytes: w.capacityBytes,
    usedBytes: w.usedBytes,
    pageSize: w.pageSize,
    lastHeartbeat: new Date(w.lastHeartbeatMs).toISOString(),
  };
}
