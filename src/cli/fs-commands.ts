/**
 * `strata fs …`: shell commands against a running cluster. Metadata comes from the
 * master; bytes move straight between this process and the workers.
 */

import { Command } from 'commander';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import * as os from 'node:os';
import { StrataError, toStrataError } from '../common/errors';
import { resolveConfig } from '../common/config';
import { silentLogger } from '../common/log';
import { normalizePath, joinPath } from '../common/paths';
import { FileAttributes, timespecToMs } from '../common/protocol';
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

  cmd('stat', 'show attributes of paths')
    .argument('<paths...>', 'Strata paths')
    .option('--json', 'print JSON')
    .action(async (paths: string[], o: FsOpts) =>
      withFs(o, async (fs) => {
        const all = [];
        for (const p of paths) {
          const path = normalizePath(p);
          const a = await fs.getattr(path);
          if (o.json) all.push({ path, ...entryJson(nodePath.posix.basename(path) || '/', a), uid: a.uid, gid: a.gid, nlink: a.nlink, blockSize: a.blockSize, atime: a.atime, mtimeNs: a.mtime, ctime: a.ctime });
          else {
            process.stdout.write(
              `  File: ${path}\n  Type: ${a.type}  Size: ${a.size}  Inode: ${a.ino}  Links: ${a.nlink}\n  Mode: ${modeString(a)} (0${a.mode.toString(8)})  Uid: ${a.uid}  Gid: ${a.gid}\n` +
                `Modify: ${new Date(timespecToMs(a.mtime)).toISOString()}\nChange: ${new Date(timespecToMs(a.ctime)).toISOString()}\nPersisted: ${a.persistState}\n`,
            );
          }
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
}
