/**
 * The FUSE binding's own ceiling: a do-nothing file system (one huge file whose
 * reads return zeros and whose writes are dropped) on Strata's libfuse3 binding and,
 * in the same run, on fuse-native (libfuse 2.9) for comparison. Sequential write
 * and read with dd, MB/s and the JavaScript cost per request.
 *
 *   node dist/scripts/bench-fuse.js [--mib 2048]
 *
 * fuse-native is no longer a dependency; it is installed into a temp dir for this
 * comparison (skipped with a reason if that fails).
 */

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseSession, Attr } from '../src/fuse/native';

const HUGE = 2 ** 40;
const ZERO_TS = { sec: 1_700_000_000, nsec: 0 };
const FILE_INO = 2;

function fileAttr(): Attr {
  return { ino: FILE_INO, mode: 0o100666, nlink: 1, uid: 0, gid: 0, size: HUGE, atime: ZERO_TS, mtime: ZERO_TS, ctime: ZERO_TS };
}
function rootAttr(): Attr {
  return { ino: 1, mode: 0o040777, nlink: 2, uid: 0, gid: 0, size: 0, atime: ZERO_TS, mtime: ZERO_TS, ctime: ZERO_TS };
}

/** Serves the no-op file system on Strata's binding until SIGTERM. */
function serveOurs(mnt: string): void {
  const zeros = Buffer.alloc(1024 * 1024);
  let requests = 0;
  const enoent = Object.assign(new Error('no such file'), { code: 'ENOENT' });
  const s = FuseSession.mount(
    mnt,
    {
      lookup: async (_c, parent, name) => {
        if (parent !== 1 || name !== 'f') throw enoent;
        return { attr: fileAttr(), attrTimeout: 60, entryTimeout: 60 };
      },
      getattr: async (_c, ino) => ({ attr: ino === 1 ? rootAttr() : fileAttr(), timeout: 60 }),
      setattr: async () => ({ attr: fileAttr(), timeout: 60 }),
      open: async () => ({ fh: 1 }),
      read: async (_c, _i, _fh, size) => {
        requests++;
        return size <= zeros.length ? zeros.subarray(0, size) : Buffer.alloc(size);
      },
      write: async (_c, _i, _fh, data) => {
        requests++;
        return data.length;
      },
      flush: async () => undefined,
      release: async () => undefined,
    },
    { maxWrite: Number(process.env.BENCH_MAX_WRITE ?? 1024 * 1024), errnoOf: (e) => ((e as { code?: string }).code === 'ENOENT' ? 2 : 5) },
  );
  process.on('SIGTERM', () => {
    process.stderr.write(`requests ${requests}\n`);
    void s.unmount().then(() => process.exit(0));
  });
  process.stdout.write('mounted\n');
}

/** Serves the same file system on fuse-native (loaded from `modDir`). */
function serveFuseNative(mnt: string, modDir: string): void {
  const Fuse: any = require(path.join(modDir, 'node_modules', 'fuse-native'));
  const stat = (dir: boolean) => ({ mode: dir ? 0o040777 : 0o100666, size: dir ? 0 : HUGE, uid: 0, gid: 0, nlink: dir ? 2 : 1, mtime: new Date(0), atime: new Date(0), ctime: new Date(0) });
  class Tuned extends Fuse {
    _fuseOptions() {
      const base = super._fuseOptions();
      const extra = 'big_writes,max_write=131072,max_read=131072';
      return base ? `${base},${extra}` : `-o${extra}`;
    }
  }
  const zeros = Buffer.alloc(1024 * 1024);
  const fuse = new (Tuned as any)(
    mnt,
    {
      getattr: (p: string, cb: (e: number, s?: unknown) => void) => (p === '/' ? cb(0, stat(true)) : p === '/f' ? cb(0, stat(false)) : cb(Fuse.ENOENT)),
      open: (_p: string, _f: number, cb: (e: number, fd?: number) => void) => cb(0, 1),
      read: (_p: string, _fd: number, buf: Buffer, len: number, _pos: number, cb: (n: number) => void) => {
        zeros.copy(buf, 0, 0, len);
        cb(len);
      },
      write: (_p: string, _fd: number, _buf: Buffer, len: number, _pos: number, cb: (n: number) => void) => cb(len),
      truncate: (_p: string, _s: number, cb: (e: number) => void) => cb(0),
      release: (_p: string, _fd: number, cb: (e: number) => void) => cb(0),
    },
    { timeout: false },
  );
  fuse.mount((err: Error | null) => {
    if (err) {
      process.stderr.write(`mount failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write('mounted\n');
  });
  process.on('SIGTERM', () => fuse.unmount(() => process.exit(0)));
}

async function startServer(args: string[]): Promise<{ stop(): Promise<void> }> {
  const p = spawn(process.execPath, [__filename, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('mounted')) resolve();
    });
    p.once('exit', (c) => reject(new Error(`server exited (${c})`)));
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
        p.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        p.kill('SIGTERM');
      }),
  };
}

function dd(args: string[]): number {
  const started = process.hrtime.bigint();
  const r = spawnSync('dd', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dd ${args.join(' ')}: ${r.stderr}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

export interface FuseBenchRow {
  system: string;
  writeMBps: number;
  readMBps: number;
  writeUsPerReq: number;
  readUsPerReq: number;
}

/** Measures one mounted no-op file system. */
function measure(name: string, mnt: string, mib: number, reqWrite: number, reqRead: number): FuseBenchRow {
  const file = path.join(mnt, 'f');
  const bytes = mib * 1024 * 1024;
  const w = dd(['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=notrunc']);
  const r = dd([`if=${file}`, 'of=/dev/null', 'bs=1M', `count=${mib}`]);
  return {
    system: name,
    writeMBps: bytes / 1e6 / w,
    readMBps: bytes / 1e6 / r,
    writeUsPerReq: (w * 1e6) / (bytes / reqWrite),
    readUsPerReq: (r * 1e6) / (bytes / reqRead),
  };
}

function installFuseNative(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-fuse-native-'));
  try {
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, 'fuse-native@2.2.6'], { stdio: 'ignore', timeout: 180_000 });
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`could not install fuse-native: ${(err as Error).message.split('\n')[0]}`);
  }
}

export async function benchFuse(mib: number, log: (s: string) => void = console.log): Promise<FuseBenchRow[]> {
  const rows: FuseBenchRow[] = [];
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-bench-fuse-'));
  try {
    const a = path.join(root, 'ours');
    execFileSync('mkdir', ['-p', a]);
    const ours = await startServer(['serve-ours', a]);
    try {
      rows.push(measure('strata libfuse3 binding', a, mib, 1024 * 1024, 128 * 1024));
    } finally {
      await ours.stop();
    }
    let modDir: string | undefined;
    try {
      modDir = installFuseNative();
      const b = path.join(root, 'fn');
      execFileSync('mkdir', ['-p', b]);
      const fn = await startServer(['serve-fuse-native', b, modDir]);
      try {
        rows.push(measure('fuse-native 2.2.6 (libfuse 2.9)', b, mib, 128 * 1024, 128 * 1024));
      } finally {
        await fn.stop();
      }
    } catch (err) {
      log(`skipped fuse-native: ${(err as Error).message}`);
    } finally {
      if (modDir) rmSync(modDir, { recursive: true, force: true });
    }
  } finally {
    for (const d of ['ours', 'fn']) spawnSync('fusermount3', ['-uz', path.join(root, d)]);
    rmSync(root, { recursive: true, force: true });
  }
  return rows;
}

export function printFuseTable(rows: FuseBenchRow[], log: (s: string) => void = console.log): void {
  log('no-op FUSE file system, sequential 1 MiB dd');
  log(`${'system'.padEnd(34)} ${'write MB/s'.padStart(10)} ${'read MB/s'.padStart(10)} ${'µs/write req'.padStart(13)} ${'µs/read req'.padStart(12)}`);
  for (const r of rows) {
    log(`${r.system.padEnd(34)} ${r.writeMBps.toFixed(0).padStart(10)} ${r.readMBps.toFixed(0).padStart(10)} ${r.writeUsPerReq.toFixed(1).padStart(13)} ${r.readUsPerReq.toFixed(1).padStart(12)}`);
  }
}

if (require.main === module) {
  const [mode, a1, a2] = process.argv.slice(2);
  if (mode === 'serve-ours') serveOurs(a1!);
  else if (mode === 'serve-fuse-native') serveFuseNative(a1!, a2!);
  else {
    const i = process.argv.indexOf('--mib');
    const mib = i > 0 ? Number(process.argv[i + 1]) : 2048;
    void benchFuse(mib).then((rows) => printFuseTable(rows));
  }
}
