/**
 * `npm run bench`: Strata side by side with rclone (`mount --vfs-cache-mode full`), s3fs and local
 * disk, all over one S3-protocol store (s3rver on 127.0.0.1, scripts/s3-server.ts) in one run.
 *
 *   npm run bench -- [--quick] [--runs N] [--out FILE] [--only write,read,rand,small,meta,master,fuse]
 *                    [--systems strata,strataAsync,rclone,s3fs,local] [--store-latency-ms N]
 *                    [--cpu-prof DIR] [--keep]
 *
 * --quick     sizes ~20x smaller (and --runs 1 unless given)
 * --runs N    each figure is the median of N runs, with min and max [3; quick 1]; the runs
 *             alternate between the systems (run 1 of each, then run 2 of each, …)
 * --out FILE  also write the table as JSON: {"rows":[{"workload","unit","strata","strataAsync",
 *             "rclone","s3fs","local","min":{…},"max":{…}}],"resources":[…],"fuse":[…]}; higher is better in every
 *             row's unit, null where a system was not measured
 * --only      pick workloads (default all):
 *   write   sequential write of one big file: to close(), and until it is in S3
 *   read    cold sequential read of an object put into S3 directly (fresh mount, page cache
 *           dropped), warm re-read (the system's own cache; page cache dropped), hot re-read
 *           (page cache kept)
 *   rand    4 KiB random reads (fio, psync, QD1) of that object, cold; and bytes fetched from S3
 *   small   10,000 × 64 KiB files read by 4 parallel readers, two epochs (fresh mount, then warm)
 *   meta    create / stat / list / unlink 10,000 empty files through the mount; then write
 *           1,000 files of 64 KiB one after another (each until its close returns)
 *   master  the Strata master alone: lookup and create latency with 10k and 1M inodes on SQLite;
 *           lookups/s and creates/s on SQLite beside PostgreSQL (a temporary server, as the
 *           tests start one; skipped with the reason when initdb/pg_ctl are missing) at 10k
 *           inodes only, to keep the run short (filling 1M inodes into PostgreSQL alone took
 *           22 s here)
 *   fuse    the FUSE binding's ceiling (scripts/bench-fuse.ts)
 * --systems   which of strata, strataAsync, rclone, s3fs, local to run (default all); strataAsync is
 *             Strata with ASYNC_THROUGH, the match of rclone's write-back, on write and meta only
 * --store-latency-ms N  every store request is held N ms first (a store in another building)
 * --cpu-prof DIR  Strata's master, worker and mount write V8 CPU profiles into DIR, one per
 *             process and start (open them in Chrome DevTools or speedscope)
 * --keep      keep the temp directory (logs, store) instead of removing it
 *
 * Needs root (FUSE mounts, dropping the page cache), fuse3, and rclone / s3fs / fio, which it
 * installs with apt-get when missing; a peer that cannot run is skipped with the reason.
 * Everything it starts is stopped and unmounted at the end, on failure, and on SIGINT/SIGTERM.
 */

import { spawn, spawnSync, ChildProcess, SpawnOptions } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
  createWriteStream,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import pg from 'pg';
import { InodeTable } from '../src/master/inode-table';
import { PgMetastore } from '../src/master/pg-metastore';
import { MasterClient } from '../src/client/master-client';
import { benchFuse, printFuseTable, type FuseBenchRow } from './bench-fuse';
import type { S3ServerStats } from './s3-server';
import { postgresSkipReason, startPostgres } from './temp-postgres';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const REPO = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO, 'bin', 'strata');
const S3_SERVER = path.join(__dirname, 's3-server.js');
const BUCKET = 'bench';
/** Every system sees the same key prefix as its root. */
const PREFIX = 'strata';
const RCLONE_REMOTE = 'STRATABENCH';

type SystemId = 'strata' | 'strataAsync' | 'rclone' | 's3fs' | 'local';
const SYSTEMS: SystemId[] = ['strata', 'strataAsync', 'rclone', 's3fs', 'local'];
const PEERS: SystemId[] = ['rclone', 's3fs'];
const SYSTEM_TITLE: Record<SystemId, string> = { strata: 'Strata', strataAsync: 'Strata async', rclone: 'rclone', s3fs: 's3fs', local: 'local disk' };
/**
 * Strata with ASYNC_THROUGH (close returns once the worker holds the bytes; the store
 * gets them in the background) is the like-for-like match of rclone's write-back. Only
 * the workloads a write type changes run on it: reads are the same code either way.
 */
const ASYNC_WORKLOADS = new Set<string>(['write', 'meta']);
const WORKLOADS = ['write', 'read', 'rand', 'small', 'meta', 'master', 'fuse'] as const;
type Workload = (typeof WORKLOADS)[number];

// ---- options ------------------------------------------------------------------------------------

interface Options {
  quick: boolean;
  runs: number;
  out?: string;
  only: Set<Workload>;
  systems: Set<SystemId>;
  keep: boolean;
  /** Every store request waits this long first (s3-server --latency-ms): a store that is not on this machine. */
  storeLatencyMs: number;
  /** Strata's processes write V8 CPU profiles (node --cpu-prof) into this directory. */
  cpuProfDir?: string;
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\nusage: npm run bench -- [--quick] [--runs N] [--out FILE] [--only ${WORKLOADS.join(',')}] [--systems ${SYSTEMS.join(',')}] [--store-latency-ms N] [--cpu-prof DIR] [--keep]\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let quick = false;
  let runs: number | undefined;
  let out: string | undefined;
  let only: Set<Workload> = new Set(WORKLOADS);
  let systems: Set<SystemId> = new Set(SYSTEMS);
  let keep = false;
  let storeLatencyMs = 0;
  let cpuProfDir: string | undefined;
  const list = <T extends string>(v: string | undefined, allowed: readonly T[], flag: string): Set<T> => {
    if (!v) usage(`${flag} needs a value`);
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const i of items) if (!allowed.includes(i as T)) usage(`${flag}: unknown '${i}' (one of ${allowed.join(', ')})`);
    return new Set(items as T[]);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--quick') quick = true;
    else if (flag === '--keep') keep = true;
    else if (flag === '--runs') {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1 || n > 99) usage('--runs must be an integer 1…99');
      runs = n;
    } else if (flag === '--out') {
      out = value();
      if (!out) usage('--out needs a file');
    } else if (flag === '--store-latency-ms') {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0 || n > 10_000) usage('--store-latency-ms must be an integer 0…10000');
      storeLatencyMs = n;
    } else if (flag === '--cpu-prof') {
      cpuProfDir = value();
      if (!cpuProfDir) usage('--cpu-prof needs a directory');
    } else if (flag === '--only') only = list(value(), WORKLOADS, '--only');
    else if (flag === '--systems') systems = list(value(), SYSTEMS, '--systems');
    else if (flag === '--help' || flag === '-h') usage('help');
    else usage(`unknown argument '${a}'`);
  }
  return { quick, runs: runs ?? (quick ? 1 : 3), out: out && path.resolve(out), only, systems, keep, storeLatencyMs, ...(cpuProfDir ? { cpuProfDir: path.resolve(cpuProfDir) } : {}) };
}

interface Sizes {
  /** The big file of write / read / rand. */
  big: number;
  smallCount: number;
  smallSize: number;
  readers: number;
  metaCount: number;
  /** Small files written by one writer (the meta workload). */
  smallWrites: number;
  randSeconds: number;
  masterInodes: number[];
  masterLookups: number;
  masterCreates: number;
  fuseMiB: number;
}

function sizesFor(quick: boolean): Sizes {
  const full: Sizes = {
    big: GiB,
    smallCount: 10_000,
    smallSize: 64 * KiB,
    readers: 4,
    metaCount: 10_000,
    smallWrites: 1_000,
    randSeconds: 20,
    masterInodes: [10_000, 1_000_000],
    masterLookups: 5_000,
    masterCreates: 2_000,
    fuseMiB: 2048,
  };
  if (!quick) return full;
  return {
    ...full,
    big: Math.round(full.big / 20 / MiB) * MiB,
    smallCount: full.smallCount / 20,
    metaCount: full.metaCount / 20,
    smallWrites: full.smallWrites / 20,
    randSeconds: 3,
    masterInodes: [10_000, 50_000],
    masterLookups: 1_000,
    masterCreates: 500,
    fuseMiB: 256,
  };
}

// ---- small helpers ------------------------------------------------------------------------------

const log = (s = ''): void => void process.stdout.write(s + '\n');
const note = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const tick = () => new Promise<void>((r) => setImmediate(r));
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const fmtBytes = (n: number): string => (n >= GiB && n % GiB === 0 ? `${n / GiB} GiB` : n >= MiB ? `${+(n / MiB).toFixed(1)} MiB` : `${n / KiB} KiB`);
const fmtCount = (n: number): string => (n >= 1_000_000 && n % 1_000_000 === 0 ? `${n / 1_000_000}M` : n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : n.toLocaleString('en-US'));

let aborted = false;
class Aborted extends Error {}
function checkAbort(): void {
  if (aborted) throw new Aborted('interrupted');
}

/** The environment of every child: no CA bundle meant for some other endpoint. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.AWS_CA_BUNDLE;
  return env;
}

// ---- cleanup ------------------------------------------------------------------------------------

const cleanups: { name: string; fn: () => Promise<void> | void }[] = [];
/** Registers a cleanup step (run last-in first-out); returns its remover. */
function onCleanup(name: string, fn: () => Promise<void> | void): () => void {
  const entry = { name, fn };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}
let cleaning: Promise<void> | undefined;
/** Runs every cleanup step; concurrent callers share one pass. */
function cleanupAll(): Promise<void> {
  return (cleaning ??= (async () => {
    while (cleanups.length) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (err) {
        note(`cleanup '${c.name}' failed: ${(err as Error).message}`);
      }
    }
  })().finally(() => (cleaning = undefined)));
}

function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

async function unmount(dir: string): Promise<void> {
  if (!isMounted(dir)) return;
  await run('fusermount3', ['-uz', dir], { timeoutMs: 20_000, check: false });
  if (isMounted(dir)) await run('umount', ['-l', dir], { timeoutMs: 20_000, check: false });
}

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (!alive(p)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL of the process (group, when it leads one) after `ms`. */
async function terminate(p: ChildProcess, ms: number, group: boolean): Promise<void> {
  if (!alive(p) || p.pid === undefined) return;
  try {
    p.kill('SIGTERM');
  } catch {
    // gone
  }
  if (await waitExit(p, ms)) {
    if (group) killGroup(p);
    return;
  }
  killGroup(p);
  if (!group) p.kill('SIGKILL');
  await waitExit(p, 5_000);
}

function killGroup(p: ChildProcess): void {
  try {
    process.kill(-p.pid!, 'SIGKILL');
  } catch {
    // no such group
  }
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed by cleanup on abort). */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; check?: boolean } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? childEnv() });
    const remove = onCleanup(`${cmd}`, () => void (alive(p) && p.kill('SIGKILL')));
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    p.once('error', (err) => {
      clearTimeout(timer);
      remove();
      reject(err);
    });
    p.once('close', (code) => {
      clearTimeout(timer);
      remove();
      if (opts.check !== false && code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

function which(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, cmd)));
}

/** The tool, installed with apt-get when missing (as root); false with a printed reason if it cannot be had. */
async function ensureTool(cmd: string, pkg: string): Promise<boolean> {
  if (which(cmd)) return true;
  if (process.getuid?.() !== 0) {
    note(`${cmd} is missing and this is not root; install it with: apt-get install -y ${pkg}`);
    return false;
  }
  note(`${cmd} is missing; apt-get install -y ${pkg}…`);
  const env = childEnv({ DEBIAN_FRONTEND: 'noninteractive' });
  let r = await run('apt-get', ['install', '-y', '-qq', pkg], { env, check: false, timeoutMs: 600_000 });
  if (r.code !== 0) {
    await run('apt-get', ['update', '-qq'], { env, check: false, timeoutMs: 600_000 });
    r = await run('apt-get', ['install', '-y', '-qq', pkg], { env, check: false, timeoutMs: 600_000 });
  }
  if (!which(cmd)) {
    note(`could not install ${pkg}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    return false;
  }
  return true;
}

let canDropCaches = true;
/** Writes back dirty pages and drops the kernel's page, dentry and inode caches. */
async function dropCaches(): Promise<void> {
  await run('sync', []);
  if (!canDropCaches) return;
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch (err) {
    canDropCaches = false;
    note(`cannot drop the page cache (${(err as NodeJS.ErrnoException).code}); "cold" figures will be warmer than they should be`);
  }
}

/** Peak resident set (VmHWM) of a process in bytes, or undefined when it is gone. */
function peakRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * KiB : undefined;
  } catch {
    return undefined;
  }
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    checkAbort();
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(everyMs);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// ---- the store ----------------------------------------------------------------------------------

interface Store {
  endpoint: string;
  client: S3Client;
  /** The store's server process. */
  pid: number | undefined;
  stats(): Promise<S3ServerStats>;
  resetStats(): Promise<void>;
  close(): Promise<void>;
}

/** s3rver in a child process, so that its work does not share an event loop with the readers. */
async function startStore(dir: string, logFile: string, latencyMs: number): Promise<Store> {
  const logFd = openSync(logFile, 'a');
  const p = spawn(process.execPath, [S3_SERVER, '--dir', dir, '--bucket', BUCKET, '--latency-ms', String(latencyMs)], { stdio: ['ignore', 'pipe', logFd, 'ipc'], env: childEnv(), detached: true });
  closeSync(logFd);
  const stop = () => terminate(p, 10_000, true);
  const remove = onCleanup('s3 server', stop);
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`the S3 server did not start within 30s (see ${logFile})`)), 30_000);
    p.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) {
        clearTimeout(t);
        resolve((JSON.parse(line) as { endpoint: string }).endpoint);
      }
    });
    p.once('exit', (c) => reject(new Error(`the S3 server exited (${c}) during start (see ${logFile})`)));
  });
  const ask = <T>(msg: string, key: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const onMsg = (m: unknown) => {
        if (m && typeof m === 'object' && key in m) {
          p.off('message', onMsg);
          resolve((m as Record<string, T>)[key]!);
        }
      };
      p.on('message', onMsg);
      p.send(msg, (err) => err && reject(err));
    });
  const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxAttempts: 5 });
  return {
    endpoint,
    client,
    pid: p.pid,
    stats: () => ask<S3ServerStats>('stats', 'stats'),
    resetStats: async () => void (await ask<boolean>('reset-stats', 'reset')),
    close: async () => {
      client.destroy();
      remove();
      await stop();
    },
  };
}

async function objectSize(store: Store, key: string): Promise<number | undefined> {
  try {
    const h = await store.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return h.ContentLength;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

/** Puts `size` random bytes at `key` (multipart) and the same bytes into the local file. */
async function putBigObject(store: Store, key: string, size: number, localFile: string): Promise<void> {
  const partSize = 16 * MiB;
  mkdirSync(path.dirname(localFile), { recursive: true });
  const out = createWriteStream(localFile);
  const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const parts: { ETag: string; PartNumber: number }[] = [];
  for (let off = 0, n = 1; off < size; off += partSize, n++) {
    checkAbort();
    const body = randomBytes(Math.min(partSize, size - off));
    await new Promise<void>((resolve, reject) => out.write(body, (err) => (err ? reject(err) : resolve())));
    const r = await store.client.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: n, Body: body, ContentLength: body.length }));
    parts.push({ ETag: r.ETag!, PartNumber: n });
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await store.client.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
  const got = await objectSize(store, key);
  if (got !== size) throw new Error(`put ${key}: the store reports ${got} bytes, expected ${size}`);
}

/** `smallCount` small random files in data/small/, in the store and on local disk. */
async function putSmallFiles(store: Store, sizes: Sizes, localRoot: string): Promise<string[]> {
  const names: string[] = [];
  // One flat directory: s3rver does not report a directory that holds only subdirectories as a
  // common prefix, so rclone (which trusts listings) would not see subdirectories of `small/`.
  for (let i = 0; i < sizes.smallCount; i++) names.push(`data/small/f${String(i).padStart(6, '0')}`);
  let next = 0;
  const put = async () => {
    while (next < names.length) {
      checkAbort();
      const name = names[next++]!;
      const body = randomBytes(sizes.smallSize);
      const local = path.join(localRoot, name);
      mkdirSync(path.dirname(local), { recursive: true });
      writeFileSync(local, body);
      await store.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/${name}`, Body: body, ContentLength: body.length }));
    }
  };
  await Promise.all(Array.from({ length: 16 }, put));
  return names;
}

// ---- the systems --------------------------------------------------------------------------------

interface BenchSystem {
  id: SystemId;
  /** The mount point (or the directory, for local disk) while started. */
  dir: string;
  /** Starts with empty caches (a fresh mount, a fresh cache directory or home). */
  start(): Promise<void>;
  stop(): Promise<void>;
  started: boolean;
  /** Peak RSS per process seen so far, by role, in bytes. */
  rss: Map<string, number>;
  /** The processes that serve the mount while started (none for local disk: the kernel's work is nobody's). */
  pids(): number[];
}

/** Clock ticks per second of /proc/PID/stat's times. */
const CLK_TCK = (() => {
  const n = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** CPU time (user + system, all threads) the processes used so far, in seconds; a gone process counts 0. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks / CLK_TCK;
}

/** Runs `fn` and adds the CPU seconds per GiB it cost the system's processes and the store as resource rows `key.*`. */
async function withCpu<T>(c: Ctx, sys: BenchSystem, key: string, label: string, bytes: number, fn: () => Promise<T>): Promise<T> {
  const pids = sys.pids();
  const store = c.store.pid === undefined ? [] : [c.store.pid];
  // Strata's share per daemon too: which of its processes the time goes to.
  const roles = sys instanceof StrataCluster ? [...sys.processes()] : [];
  const [s0, t0] = [cpuSeconds(pids), cpuSeconds(store)];
  const r0 = roles.map(([, pid]) => cpuSeconds([pid]));
  const out = await fn();
  const perGiB = (sec: number) => (sec * GiB) / bytes;
  roles.forEach(([role, pid], i) => c.results.addResource(`${key}.${role}`, `CPU s per GiB, ${label}: Strata ${role}`, 's', sys.id, perGiB(cpuSeconds([pid]) - r0[i]!)));
  if (pids.length > 0) c.results.addResource(`${key}.system`, `CPU s per GiB, ${label}: the system's processes`, 's', sys.id, perGiB(cpuSeconds(pids) - s0));
  if (store.length > 0 && pids.length > 0) c.results.addResource(`${key}.store`, `CPU s per GiB, ${label}: the store (s3rver) serving it`, 's', sys.id, perGiB(cpuSeconds(store) - t0));
  return out;
}

function recordRss(sys: BenchSystem, role: string, pid: number | undefined): void {
  const v = peakRss(pid);
  if (v !== undefined) sys.rss.set(role, Math.max(sys.rss.get(role) ?? 0, v));
}

class LocalDisk implements BenchSystem {
  id: SystemId = 'local';
  started = false;
  rss = new Map<string, number>();
  constructor(readonly dir: string) {}
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.started = true;
  }
  async stop(): Promise<void> {
    this.started = false;
  }
  pids(): number[] {
    return [];
  }
}

/** A mount served by one long-running child process (rclone, s3fs). */
abstract class ProcessMount implements BenchSystem {
  abstract id: SystemId;
  started = false;
  rss = new Map<string, number>();
  #proc?: ChildProcess;
  #removeCleanup?: () => void;
  #n = 0;
  constructor(
    readonly root: string,
    readonly dir: string,
  ) {}
  protected abstract command(cacheDir: string): { cmd: string; args: string[]; env: NodeJS.ProcessEnv };

  async start(): Promise<void> {
    if (this.started) await this.stop();
    mkdirSync(this.dir, { recursive: true });
    const cache = path.join(this.root, `${this.id}-cache-${++this.#n}`);
    rmSync(cache, { recursive: true, force: true });
    mkdirSync(cache, { recursive: true });
    const { cmd, args, env } = this.command(cache);
    const logFile = path.join(this.root, `${this.id}.log`);
    const logFd = openSync(logFile, 'a');
    const p = spawn(cmd, args, { stdio: ['ignore', logFd, logFd], env, detached: true });
    closeSync(logFd);
    this.#proc = p;
    const dir = this.dir;
    this.#removeCleanup = onCleanup(this.id, async () => {
      await unmount(dir);
      await terminate(p, 10_000, true);
      rmSync(cache, { recursive: true, force: true });
    });
    let exited = false;
    p.once('exit', () => (exited = true));
    p.once('error', () => (exited = true));
    try {
      await waitFor(`${this.id} to mount ${dir}`, () => {
        if (exited) {
          const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ') : '';
          throw new Error(`${this.id} exited during start: ${tail}`);
        }
        return isMounted(dir);
      }, 30_000);
      // The root answers: the mount is usable, not only listed.
      await waitFor(`${this.id} to answer`, () => {
        try {
          readdirSync(dir);
          return true;
        } catch {
          return false;
        }
      }, 30_000);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.started = true;
    this.cache = cache;
  }
  cache = '';

  pids(): number[] {
    return this.#proc?.pid ? [this.#proc.pid] : [];
  }

  async stop(): Promise<void> {
    const p = this.#proc;
    if (p) recordRss(this, this.id, p.pid);
    await unmount(this.dir);
    if (p) await terminate(p, 10_000, true);
    this.#removeCleanup?.();
    this.#removeCleanup = undefined;
    this.#proc = undefined;
    if (this.cache) rmSync(this.cache, { recursive: true, force: true });
    this.started = false;
  }
}

class RcloneMount extends ProcessMount {
  id: SystemId = 'rclone';
  constructor(
    root: string,
    dir: string,
    readonly endpoint: string,
  ) {
    super(root, dir);
  }
  protected command(cacheDir: string) {
    const v = (k: string, val: string): [string, string] => [`RCLONE_CONFIG_${RCLONE_REMOTE}_${k}`, val];
    const env = childEnv(
      Object.fromEntries([
        v('TYPE', 's3'),
        v('PROVIDER', 'Other'),
        v('ENDPOINT', this.endpoint),
        v('ACCESS_KEY_ID', 'S3RVER'),
        v('SECRET_ACCESS_KEY', 'S3RVER'),
        v('FORCE_PATH_STYLE', 'true'),
        v('REGION', 'us-east-1'),
      ]),
    );
    return {
      cmd: 'rclone',
      args: ['mount', `${RCLONE_REMOTE}:${BUCKET}/${PREFIX}`, this.dir, '--config', '/dev/null', '--vfs-cache-mode', 'full', '--cache-dir', cacheDir, '--log-level', 'NOTICE'],
      env,
    };
  }
}

class S3fsMount extends ProcessMount {
  id: SystemId = 's3fs';
  constructor(
    root: string,
    dir: string,
    readonly endpoint: string,
  ) {
    super(root, dir);
  }
  protected command(cacheDir: string) {
    const passwd = path.join(this.root, 's3fs.passwd');
    writeFileSync(passwd, 'S3RVER:S3RVER\n', { mode: 0o600 });
    // nomixupload: s3fs would otherwise rewrite parts of big objects with UploadPartCopy.
    const o = [`url=${this.endpoint}`, 'use_path_request_style', `passwd_file=${passwd}`, 'nomixupload', `use_cache=${cacheDir}`, 'dbglevel=warn'];
    return { cmd: 's3fs', args: [`${BUCKET}:/${PREFIX}`, this.dir, '-f', '-o', o.join(',')], env: childEnv() };
  }
}

class StrataCluster implements BenchSystem {
  started = false;
  rss = new Map<string, number>();
  #proc?: ChildProcess;
  #removeCleanup?: () => void;
  #home = '';
  #mem = '';
  #n = 0;
  constructor(
    readonly root: string,
    readonly dir: string,
    readonly endpoint: string,
    readonly id: SystemId = 'strata',
    /** Where its processes write CPU profiles (the daemons inherit node's flags from `strata local`). */
    readonly cpuProfDir?: string,
  ) {}

  async start(): Promise<void> {
    if (this.started) await this.stop();
    mkdirSync(this.dir, { recursive: true });
    const home = path.join(this.root, `${this.id}-home-${++this.#n}`);
    rmSync(home, { recursive: true, force: true });
    this.#home = home;
    // A memory tier on tmpfs above an SSD tier, as one would run Strata next to compute.
    const mem = existsSync('/dev/shm') ? `/dev/shm/strata-bench-${process.pid}-${this.#n}` : '';
    this.#mem = mem;
    const tiers = [...(mem ? [`mem:${mem}:2GiB`] : []), `ssd:${path.join(home, 'ssd')}:16GiB`];
    const args = [
      CLI, 'local', '--home', home, '--mount', this.dir, '--master-port', '0', '--worker-port', '0',
      ...tiers.flatMap((t) => ['--tier', t]),
      '--ufs', `s3://${BUCKET}/${PREFIX}`,
      '--ufs-option', `s3.endpoint=${this.endpoint}`,
      '--ufs-option', 's3.pathStyle=true',
      '--ufs-option', 's3.region=us-east-1',
      '--ufs-option', 's3.accessKeyId=S3RVER',
      '--ufs-option', 's3.secretAccessKey=S3RVER',
      ...(this.id === 'strataAsync' ? ['--write-type', 'ASYNC_THROUGH'] : []),
    ];
    const logFile = path.join(this.root, `${this.id}.log`);
    const logFd = openSync(logFile, 'a');
    const prof = this.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', this.cpuProfDir] : [];
    const p = spawn(process.execPath, [...prof, ...args], { stdio: ['ignore', 'pipe', logFd], env: childEnv({ STRATA_LOG_LEVEL: 'warn' }), detached: true });
    closeSync(logFd);
    this.#proc = p;
    const dir = this.dir;
    this.#removeCleanup = onCleanup(this.id, async () => {
      await terminate(p, 30_000, true);
      await unmount(dir);
      rmSync(home, { recursive: true, force: true });
      if (mem) rmSync(mem, { recursive: true, force: true });
    });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`strata local did not mount within 60s (see ${logFile})`)), 60_000);
        p.stdout!.on('data', () => {
          if (/mounted at /.test(out)) {
            clearTimeout(t);
            resolve();
          }
        });
        p.once('exit', (code, sig) => {
          clearTimeout(t);
          const tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ');
          reject(new Error(`strata local exited (${sig ?? code}) before mounting: ${tail}`));
        });
      });
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.started = true;
  }

  pids(): number[] {
    return this.#proc?.pid ? [this.#proc.pid, ...this.processes().values()] : [];
  }

  /** master / worker / mount child processes of `strata local`. */
  processes(): Map<string, number> {
    const out = new Map<string, number>();
    if (!this.#proc?.pid) return out;
    for (const pid of childPids(this.#proc.pid)) {
      const argv = cmdline(pid);
      const role = ['master', 'worker', 'mount'].find((r) => argv.includes(r));
      if (role) out.set(role, pid);
    }
    return out;
  }

  async stop(): Promise<void> {
    const p = this.#proc;
    if (p) {
      for (const [role, pid] of this.processes()) recordRss(this, role, pid);
      await terminate(p, 30_000, true);
    }
    await unmount(this.dir);
    this.#removeCleanup?.();
    this.#removeCleanup = undefined;
    this.#proc = undefined;
    if (this.#home) rmSync(this.#home, { recursive: true, force: true });
    if (this.#mem) rmSync(this.#mem, { recursive: true, force: true });
    this.started = false;
  }
}

// ---- results ------------------------------------------------------------------------------------

interface Row {
  key: string;
  workload: string;
  unit: string;
  samples: Partial<Record<SystemId, number[]>>;
}

class Results {
  readonly rows: Row[] = [];
  readonly resources: Row[] = [];
  #row(list: Row[], key: string, workload: string, unit: string): Row {
    let r = list.find((x) => x.key === key);
    if (!r) {
      r = { key, workload, unit, samples: {} };
      list.push(r);
    }
    return r;
  }
  /** Declares a row, so the table keeps this order whatever runs first. */
  declare(key: string, workload: string, unit: string): void {
    this.#row(this.rows, key, workload, unit);
  }
  add(key: string, sys: SystemId, v: number): void {
    const r = this.rows.find((x) => x.key === key);
    if (!r) throw new Error(`undeclared row ${key}`);
    (r.samples[sys] ??= []).push(v);
  }
  addResource(key: string, workload: string, unit: string, sys: SystemId, v: number): void {
    const r = this.#row(this.resources, key, workload, unit);
    (r.samples[sys] ??= []).push(v);
  }
}

const fmtNum = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));

function cell(xs: number[] | undefined): string {
  if (!xs || xs.length === 0) return '—';
  const m = fmtNum(median(xs));
  if (xs.length === 1) return m;
  return `${m} (${fmtNum(Math.min(...xs))}–${fmtNum(Math.max(...xs))})`;
}

/** Strata's median over the best peer's median; for 'lower' rows, the best peer over Strata. */
function ratio(r: Row, better: 'higher' | 'lower'): string {
  const s = r.samples.strata;
  const peers = PEERS.map((p) => r.samples[p]).filter((x): x is number[] => !!x && x.length > 0).map(median);
  if (!s?.length || peers.length === 0) return '—';
  const best = better === 'higher' ? Math.max(...peers) : Math.min(...peers);
  const v = better === 'higher' ? median(s) / best : best / median(s);
  return `${v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)}×`;
}

function printTable(title: string, rows: Row[], better: 'higher' | 'lower'): void {
  const head = ['workload', 'unit', ...SYSTEMS.map((s) => SYSTEM_TITLE[s]), 'Strata ÷ best peer'];
  const body = rows.map((r) => [r.workload, r.unit, ...SYSTEMS.map((s) => cell(r.samples[s])), ratio(r, better)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  log(title);
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  log(line(head));
  log('|' + widths.map((w, i) => (i < 2 ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  for (const b of body) log(line(b));
}

function jsonRows(rows: Row[]) {
  return rows.map((r) => {
    const o: Record<string, unknown> = { id: r.key, workload: r.workload, unit: r.unit };
    const min: Record<string, number | null> = {};
    const max: Record<string, number | null> = {};
    for (const s of SYSTEMS) {
      const xs = r.samples[s];
      o[s] = xs?.length ? median(xs) : null;
      min[s] = xs?.length ? Math.min(...xs) : null;
      max[s] = xs?.length ? Math.max(...xs) : null;
    }
    o.min = min;
    o.max = max;
    o.runs = Math.max(0, ...SYSTEMS.map((s) => r.samples[s]?.length ?? 0));
    return o;
  });
}

// ---- workloads through a mount --------------------------------------------------------------------

interface Ctx {
  opts: Options;
  sizes: Sizes;
  store: Store;
  results: Results;
  root: string;
  /** A buffer of random bytes that writes are made of. */
  source: Buffer;
  smallNames: string[];
  fio: boolean;
}

const BIG = 'data/big.bin';
const MB = 1e6;

/** Sequential write of the big file: to close(), and until the store has all of it. */
async function seqWrite(c: Ctx, sys: BenchSystem, runNo: number): Promise<void> {
  const dir = path.join(sys.dir, `w-${sys.id}`);
  mkdirSync(dir, { recursive: true });
  const name = `seq-${runNo}.bin`;
  const file = path.join(dir, name);
  const size = c.sizes.big;
  const chunk = MiB;
  const pids = sys.pids();
  const cpu0 = cpuSeconds(pids);
  const t0 = now();
  const fd = openSync(file, 'w');
  try {
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      const at = off % c.source.length;
      writeSync(fd, c.source, at, Math.min(n, c.source.length - at));
      if ((off / chunk) % 64 === 63) {
        await tick();
        checkAbort();
      }
    }
  } finally {
    closeSync(fd);
  }
  const tClose = now() - t0;
  const cpuClose = cpuSeconds(pids);
  let tDurable: number;
  if (sys.id === 'local') {
    const fd2 = openSync(file, 'r');
    fsyncSync(fd2);
    closeSync(fd2);
    tDurable = now() - t0;
  } else {
    const key = `${PREFIX}/w-${sys.id}/${name}`;
    await waitFor(`${key} in the store`, async () => (await objectSize(c.store, key)) === size, 600_000, 50);
    tDurable = now() - t0;
  }
  if (statSync(file).size !== size) throw new Error(`${file}: wrote ${size} bytes, stat says ${statSync(file).size}`);
  c.results.add('write.close', sys.id, size / MB / tClose);
  c.results.add('write.durable', sys.id, size / MB / tDurable);
  if (pids.length > 0) {
    c.results.addResource('cpu.write.close', `CPU s per GiB, seq write until close() returns: the system's processes`, 's', sys.id, ((cpuClose - cpu0) * GiB) / size);
    c.results.addResource('cpu.write.durable', `CPU s per GiB, seq write until all in S3: the system's processes`, 's', sys.id, ((cpuSeconds(pids) - cpu0) * GiB) / size);
  }
  unlinkSync(file);
}

/** Reads a whole file with dd (1 MiB blocks); seconds. */
async function ddRead(file: string, expect: number): Promise<number> {
  const t0 = now();
  const r = await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']);
  const t = now() - t0;
  const m = /^(\d+) bytes/m.exec(r.stderr);
  if (!m || Number(m[1]) !== expect) throw new Error(`dd ${file}: read ${m?.[1] ?? '?'} bytes, expected ${expect}`);
  return t;
}

/** Cold read (fresh mount, caches dropped), warm re-read (page cache dropped), hot re-read. */
async function seqRead(c: Ctx, sys: BenchSystem): Promise<void> {
  await sys.start();
  await dropCaches();
  const file = path.join(sys.dir, BIG);
  const size = c.sizes.big;
  const secs = await withCpu(c, sys, 'cpu.read.cold', 'cold seq read', size, () => ddRead(file, size));
  c.results.add('read.cold', sys.id, size / MB / secs);
  await dropCaches();
  c.results.add('read.warm', sys.id, size / MB / (await ddRead(file, size)));
  c.results.add('read.hot', sys.id, size / MB / (await ddRead(file, size)));
}

/** 4 KiB random reads of the cold big file for a fixed time; IOPS, and what the store sent meanwhile. */
async function randRead(c: Ctx, sys: BenchSystem): Promise<void> {
  await sys.start();
  await dropCaches();
  const file = path.join(sys.dir, BIG);
  await c.store.resetStats();
  let iops: number;
  let bytesRead: number;
  if (c.fio) {
    const r = await run('fio', [
      '--name=randread', `--filename=${file}`, '--rw=randread', '--bs=4k', '--ioengine=psync', '--iodepth=1', `--size=${c.sizes.big}`,
      '--time_based', `--runtime=${c.sizes.randSeconds}`, '--readonly', '--invalidate=1', '--output-format=json',
    ], { timeoutMs: (c.sizes.randSeconds + 120) * 1000 });
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number; io_bytes: number } }[] };
    iops = j.jobs[0]!.read.iops;
    bytesRead = j.jobs[0]!.read.io_bytes;
  } else {
    // A plain reader, when fio is not there: one 4 KiB pread at a time at random aligned offsets.
    const fd = openSync(file, 'r');
    const buf = Buffer.alloc(4 * KiB);
    const blocks = Math.floor(c.sizes.big / buf.length);
    let n = 0;
    const t0 = now();
    try {
      while (now() - t0 < c.sizes.randSeconds) {
        readSync(fd, buf, 0, buf.length, Math.floor(Math.random() * blocks) * buf.length);
        if (++n % 64 === 0) {
          await tick();
          checkAbort();
        }
      }
    } finally {
      closeSync(fd);
    }
    iops = n / (now() - t0);
    bytesRead = n * buf.length;
  }
  c.results.add('rand.iops', sys.id, iops);
  if (sys.id !== 'local') {
    const st = await c.store.stats();
    c.results.addResource('rand.fetched', '4 KiB random reads: MiB fetched from S3', 'MiB', sys.id, st.objectGetBytes / MiB);
    c.results.addResource('rand.amp', '4 KiB random reads: bytes fetched ÷ bytes read', '×', sys.id, st.objectGetBytes / Math.max(1, bytesRead));
  }
}

const READER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
let bytes = 0;
for (const f of workerData) bytes += readFileSync(f).length;
parentPort.postMessage(bytes);
`;

/** One epoch: list the directory, then `readers` threads read every file once. */
async function smallEpoch(c: Ctx, sys: BenchSystem): Promise<number> {
  const t0 = now();
  const top = path.join(sys.dir, 'data', 'small');
  const files = readdirSync(top).map((f) => path.join(top, f));
  if (files.length !== c.sizes.smallCount) throw new Error(`${top}: listed ${files.length} files, expected ${c.sizes.smallCount}`);
  const shares: string[][] = Array.from({ length: c.sizes.readers }, () => []);
  files.forEach((f, i) => shares[i % shares.length]!.push(f));
  const workers = shares.map((share) => new Worker(READER_CODE, { eval: true, workerData: share }));
  const removers = workers.map((w) => onCleanup('reader', () => void w.terminate()));
  try {
    const bytes = await Promise.all(
      workers.map(
        (w) =>
          new Promise<number>((resolve, reject) => {
            w.once('message', (b: number) => resolve(b));
            w.once('error', reject);
            w.once('exit', (code) => reject(new Error(`a reader stopped (exit code ${code}) before it was done`)));
          }),
      ),
    );
    const total = bytes.reduce((a, b) => a + b, 0);
    if (total !== c.sizes.smallCount * c.sizes.smallSize) throw new Error(`read ${total} bytes of small files, expected ${c.sizes.smallCount * c.sizes.smallSize}`);
  } finally {
    removers.forEach((r) => r());
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return files.length / (now() - t0);
}

async function smallFiles(c: Ctx, sys: BenchSystem): Promise<void> {
  await sys.start();
  await dropCaches();
  c.results.add('small.1', sys.id, await smallEpoch(c, sys));
  await dropCaches();
  c.results.add('small.2', sys.id, await smallEpoch(c, sys));
}

/** Runs fn(i) for i < n, synchronously, yielding now and then; ops per second. */
async function timedLoop(n: number, fn: (i: number) => void): Promise<number> {
  const t0 = now();
  for (let i = 0; i < n; i++) {
    fn(i);
    if (i % 50 === 49) {
      await tick();
      checkAbort();
    }
  }
  return n / (now() - t0);
}

async function metadata(c: Ctx, sys: BenchSystem, runNo: number): Promise<void> {
  const dir = path.join(sys.dir, `meta-${sys.id}-${runNo}`);
  mkdirSync(dir);
  const n = c.sizes.metaCount;
  const name = (i: number) => path.join(dir, `f${String(i).padStart(6, '0')}`);
  c.results.add('meta.create', sys.id, await timedLoop(n, (i) => closeSync(openSync(name(i), 'w'))));
  c.results.add('meta.stat', sys.id, await timedLoop(n, (i) => statSync(name(i))));
  const t0 = now();
  const listed = readdirSync(dir).length;
  const tList = now() - t0;
  if (listed !== n) throw new Error(`${dir}: listed ${listed} entries, expected ${n}`);
  c.results.add('meta.list', sys.id, n / tList);
  // What `ls -l` does per entry besides the listing: lstat, and getxattr of security.selinux and an ACL.
  const t1 = now();
  const ls = spawnSync('ls', ['-l', dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const tLs = now() - t1;
  if (ls.status !== 0 || ls.stdout.trim().split('\n').length !== n + 1) throw new Error(`${dir}: ls -l failed or listed a wrong count: ${ls.stderr}`);
  c.results.add('meta.lsl', sys.id, n / tLs);
  c.results.add('meta.unlink', sys.id, await timedLoop(n, (i) => unlinkSync(name(i))));
  // Small files written one after another, each closed before the next (a job writing its outputs, an untar).
  const w = c.sizes.smallWrites;
  const body = randomBytes(c.sizes.smallSize);
  c.results.add('meta.write', sys.id, await timedLoop(w, (i) => writeFileSync(name(i), body)));
  for (let i = 0; i < w; i++) unlinkSync(name(i));
  rmdirSync(dir);
}

/**
 * Every workload for one system, run `r` of `runs` (fresh mounts for cold ones). Runs
 * alternate between the systems (run 1 of each, then run 2 of each, …): this VM's
 * speed drifts by 20% and more over minutes, and only figures taken close together
 * compare.
 */
async function benchSystem(c: Ctx, sys: BenchSystem, r: number): Promise<void> {
  const { runs } = c.opts;
  const only = sys.id === 'strataAsync' ? new Set([...c.opts.only].filter((w) => ASYNC_WORKLOADS.has(w))) : c.opts.only;
  const step = (what: string) => note(`${SYSTEM_TITLE[sys.id]}: ${what}${runs > 1 ? ` (run ${r}/${runs})` : ''}`);
  try {
    if (only.has('write')) {
      if (!sys.started) await sys.start();
      step(`sequential write of ${fmtBytes(c.sizes.big)}`);
      await seqWrite(c, sys, r);
    }
    if (only.has('read')) {
      step(`cold / warm / hot sequential read of ${fmtBytes(c.sizes.big)}`);
      await seqRead(c, sys);
    }
    if (only.has('rand')) {
      step(`4 KiB random reads for ${c.sizes.randSeconds}s`);
      await randRead(c, sys);
    }
    if (only.has('small')) {
      step(`${fmtCount(c.sizes.smallCount)} × ${fmtBytes(c.sizes.smallSize)} files, ${c.sizes.readers} readers, 2 epochs`);
      await smallFiles(c, sys);
    }
    if (only.has('meta')) {
      if (!sys.started) await sys.start();
      step(`create / stat / list / unlink ${fmtCount(c.sizes.metaCount)} files, write ${fmtCount(c.sizes.smallWrites)} small ones`);
      await metadata(c, sys, r);
    }
  } finally {
    await sys.stop();
  }
}

/** Peak RSS rows, also for a system that failed or was interrupted part way. */
function recordRssRows(c: Ctx, sys: BenchSystem): void {
  for (const [role, bytes] of sys.rss) {
    // rclone and s3fs are one process each: the mount.
    const key = sys instanceof StrataCluster ? `rss.${role}` : 'rss.mount';
    const label = key === 'rss.mount' ? 'peak RSS: the mount (FUSE client) process' : `peak RSS: Strata ${role}`;
    c.results.addResource(key, label, 'MiB', sys.id, bytes / MiB);
  }
  if (sys.rss.size > 0) {
    c.results.addResource('rss.all', 'peak RSS: all processes (sum of peaks)', 'MiB', sys.id, [...sys.rss.values()].reduce((a, b) => a + b, 0) / MiB);
  }
}

// ---- the master alone ---------------------------------------------------------------------------

/**
 * PostgreSQL's rows are measured at this size only, to keep the run short: filling
 * 1M inodes into it took 22 s here (SQLite: 4 s), before any request.
 */
const PG_INODES = 10_000;

/** How the bench's namespace is laid out: directories of `perDir` empty files under the root. */
interface MasterLayout {
  inodes: number;
  dirs: { ino: number; name: string }[];
  perDir: number;
}

/**
 * Plans a namespace of `inodes` inodes (the root included) with inode numbers from
 * `base`: `visit` gets each directory, then its files. Both engines are filled from it.
 */
function planNamespace(inodes: number, base: number, ufsDir: string, visit: (n: { ino: number; dir: boolean; parent: number; name: string }) => void): MasterLayout {
  const perDir = 1000;
  const nDirs = Math.max(1, Math.ceil((inodes - 1) / (perDir + 1)));
  const dirs: { ino: number; name: string }[] = [];
  let ino = base;
  let left = inodes - 1; // the root is one
  for (let d = 0; d < nDirs && left > 0; d++) {
    const name = `d${String(d).padStart(5, '0')}`;
    const dino = ino++;
    visit({ ino: dino, dir: true, parent: 1, name });
    dirs.push({ ino: dino, name });
    mkdirSync(path.join(ufsDir, name), { recursive: true });
    left--;
    for (let f = 0; f < perDir && left > 0; f++, left--) visit({ ino: ino++, dir: false, parent: dino, name: `f${String(f).padStart(4, '0')}` });
  }
  return { inodes, dirs, perDir };
}

/** A master home whose SQLite namespace holds `inodes` inodes (one transaction). */
function populateMaster(home: string, ufsDir: string, inodes: number): MasterLayout {
  const dbFile = path.join(home, 'master', 'strata.db');
  mkdirSync(path.dirname(dbFile), { recursive: true });
  new InodeTable(dbFile, { blockSize: 64 * MiB }).close(); // the schema, as the master makes it
  const db = new Database(dbFile);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const base = ((db.prepare('SELECT MAX(ino) AS m FROM node').get() as { m: number }).m ?? 1) + 1;
  const sec = Math.floor(Date.now() / 1000);
  const nowMs = Date.now();
  const insNode = db.prepare(
    `INSERT INTO node (ino, type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, block_size, persisted, synced_at)
     VALUES (?, ?, ?, 0, 0, 0, ?, ?, 0, ?, 0, ?, 0, ?, 1, ?)`,
  );
  const insEdge = db.prepare(`INSERT INTO edge (parent, name, ino) VALUES (?, ?, ?)`);
  const layout = db.transaction(() => {
    const l = planNamespace(inodes, base, ufsDir, (n) => {
      insNode.run(n.ino, n.dir ? 2 : 1, n.dir ? 0o755 : 0o644, n.dir ? 2 : 1, sec, sec, sec, 64 * MiB, nowMs);
      insEdge.run(n.parent, n.name, n.ino);
    });
    db.prepare('UPDATE node SET nlink = nlink + ? WHERE ino = 1').run(l.dirs.length);
    return l;
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return layout;
}

/** The same namespace in a PostgreSQL database: the schema as the master makes it, then one transaction. */
async function populatePgMaster(url: string, ufsDir: string, inodes: number): Promise<MasterLayout> {
  await (await PgMetastore.open(url, { blockSize: 64 * MiB })).close();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const base = Number((await client.query<{ m: string }>('SELECT MAX(ino)::text AS m FROM node')).rows[0]!.m) + 1;
    const node = { ino: [] as number[], type: [] as number[], mode: [] as number[], nlink: [] as number[] };
    const edge = { parent: [] as number[], name: [] as string[], ino: [] as number[] };
    const layout = planNamespace(inodes, base, ufsDir, (n) => {
      node.ino.push(n.ino);
      node.type.push(n.dir ? 2 : 1);
      node.mode.push(n.dir ? 0o755 : 0o644);
      node.nlink.push(n.dir ? 2 : 1);
      edge.parent.push(n.parent);
      edge.name.push(n.name);
      edge.ino.push(n.ino);
    });
    const sec = Math.floor(Date.now() / 1000);
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO node (ino, type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, block_size, persisted, synced_at)
       SELECT i, t, m, 0, 0, 0, n, $5, 0, $5, 0, $5, 0, $6, true, $7 FROM unnest($1::bigint[], $2::smallint[], $3::int[], $4::int[]) AS u(i, t, m, n)`,
      [node.ino, node.type, node.mode, node.nlink, sec, 64 * MiB, Date.now()],
    );
    await client.query(`INSERT INTO edge (parent, name, ino) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])`, [edge.parent, edge.name, edge.ino]);
    await client.query('UPDATE node SET nlink = nlink + $1 WHERE ino = 1', [layout.dirs.length]);
    await client.query(`SELECT setval('node_ino_seq', $1)`, [base + node.ino.length]);
    await client.query('COMMIT');
    await client.query('ANALYZE');
    return layout;
  } finally {
    await client.end();
  }
}

async function startMasterAlone(root: string, home: string, ufsDir: string, extraArgs: string[] = []): Promise<{ url: string; proc: ChildProcess; stop(): Promise<void> }> {
  const logFile = path.join(root, 'master-alone.log');
  const logFd = openSync(logFile, 'a');
  // Metadata is never re-checked against the store: this measures the master itself.
  const args = [CLI, 'master', '--home', home, '--port', '0', '--ufs', `file://${ufsDir}`, '--sync-interval-ms', '-1', '--log-level', 'warn', ...extraArgs];
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', logFd], env: childEnv(), detached: true });
  closeSync(logFd);
  const stop = () => terminate(p, 20_000, true);
  const remove = onCleanup('master', stop);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`strata master did not start within 120s (see ${logFile})`)), 120_000);
    p.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    p.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`strata master exited (${code}) during start (see ${logFile})`));
    });
  });
  return {
    url,
    proc: p,
    stop: async () => {
      remove();
      await stop();
    },
  };
}

type MasterOp = 'lookup' | 'create';

/**
 * One client drives the master at `url` back to back, as a FUSE client does: random
 * lookups of existing files, then creates of new empty files in random directories,
 * `runs` times after a short warm-up. `record` gets each run's latencies (sorted, s)
 * and its throughput (ops over the loop's whole time).
 */
async function driveMaster(c: Ctx, url: string, layout: MasterLayout, what: string, ops: MasterOp[], record: (op: MasterOp, lat: number[], opsPerSec: number) => void): Promise<void> {
  const client = new MasterClient(url);
  // New names for each drive: two drives may share one database (PostgreSQL with and without the lease).
  const tag = what.replace(/[^a-zA-Z0-9]+/g, '-');
  try {
    const info = (await (await fetch(`${url}/api/v1/info`)).json().catch(() => ({}))) as { inodes?: number };
    if (info.inodes !== undefined && info.inodes < layout.inodes) throw new Error(`the master reports ${info.inodes} inodes, expected ${layout.inodes}`);
    const { dirs, perDir } = layout;
    const lastDirFiles = layout.inodes - 1 - dirs.length - (dirs.length - 1) * perDir;
    const pick = (): { parent: number; name: string } => {
      const d = Math.floor(Math.random() * dirs.length);
      const n = d === dirs.length - 1 ? Math.max(1, lastDirFiles) : perDir;
      return { parent: dirs[d]!.ino, name: `f${String(Math.floor(Math.random() * n)).padStart(4, '0')}` };
    };
    // Warm up the connection and the database pages a little, as a running master would be.
    for (let i = 0; i < 200; i++) {
      const { parent, name } = pick();
      await client.lookup(parent, name);
    }
    for (let r = 1; r <= c.opts.runs; r++) {
      const counts = ops.map((op) => `${fmtCount(op === 'lookup' ? c.sizes.masterLookups : c.sizes.masterCreates)} ${op}s`).join(', ');
      note(`master alone, ${what}: ${counts}${c.opts.runs > 1 ? ` (run ${r}/${c.opts.runs})` : ''}`);
      if (ops.includes('lookup')) {
        const lat: number[] = [];
        const t0 = now();
        for (let i = 0; i < c.sizes.masterLookups; i++) {
          const { parent, name } = pick();
          const t = now();
          await client.lookup(parent, name);
          lat.push(now() - t);
          if (i % 500 === 499) checkAbort();
        }
        const secs = now() - t0;
        record('lookup', lat.sort((a, b) => a - b), c.sizes.masterLookups / secs);
      }
      if (ops.includes('create')) {
        const cl: number[] = [];
        const t0 = now();
        for (let i = 0; i < c.sizes.masterCreates; i++) {
          const d = dirs[Math.floor(Math.random() * dirs.length)]!;
          const t = now();
          await client.createAt(d.ino, `new-${tag}-${r}-${i}`, 0o644);
          cl.push(now() - t);
          if (i % 500 === 499) checkAbort();
        }
        const secs = now() - t0;
        record('create', cl.sort((a, b) => a - b), c.sizes.masterCreates / secs);
      }
    }
  } finally {
    await client.close();
  }
}

/** Runs the master workload; answers why PostgreSQL's rows were skipped, if they were. */
async function benchMaster(c: Ctx): Promise<string | undefined> {
  const pgLabel = fmtCount(PG_INODES);
  for (const inodes of c.sizes.masterInodes) {
    const label = fmtCount(inodes);
    for (const [k, what] of [['lookup', 'lookup'], ['create', 'create']] as const) {
      c.results.declare(`master.${k}.p50.${inodes}`, `master alone, ${label} inodes: ${what} p50`, 'ops/s (1/latency)');
      c.results.declare(`master.${k}.p99.${inodes}`, `master alone, ${label} inodes: ${what} p99`, 'ops/s (1/latency)');
    }
  }
  // The engines side by side: the same client loop, one request at a time, at the same size.
  for (const k of ['lookup', 'create'] as const) {
    c.results.declare(`master.${k}.p50.pg.${PG_INODES}`, `master alone on PostgreSQL, ${pgLabel} inodes: ${k} p50`, 'ops/s (1/latency)');
    c.results.declare(`master.${k}.p99.pg.${PG_INODES}`, `master alone on PostgreSQL, ${pgLabel} inodes: ${k} p99`, 'ops/s (1/latency)');
  }
  for (const k of ['lookup', 'create'] as const) {
    c.results.declare(`master.${k}.ops.sqlite.${PG_INODES}`, `master ${k}, SQLite, ${pgLabel} inodes (one client)`, 'ops/s');
    c.results.declare(`master.${k}.ops.pg.${PG_INODES}`, `master ${k}, PostgreSQL, ${pgLabel} inodes (one client)`, 'ops/s');
  }
  // Not in --quick, which keeps PostgreSQL's part under 10 s.
  if (!c.opts.quick) c.results.declare(`master.create.ops.pglease.${PG_INODES}`, `master create, PostgreSQL + leader lease (fenced writes), ${pgLabel} inodes`, 'ops/s');

  for (const inodes of c.sizes.masterInodes) {
    checkAbort();
    const label = fmtCount(inodes);
    const home = path.join(c.root, `master-${label}`);
    const ufsDir = path.join(c.root, `master-${label}-ufs`);
    mkdirSync(ufsDir, { recursive: true });
    note(`master alone: populating ${label} inodes`);
    const t0 = now();
    const layout = populateMaster(home, ufsDir, inodes);
    note(`master alone: populated in ${(now() - t0).toFixed(1)}s; starting the master`);
    const m = await startMasterAlone(c.root, home, ufsDir);
    try {
      await driveMaster(c, m.url, layout, `${label} inodes`, ['lookup', 'create'], (op, lat, opsPerSec) => {
        c.results.add(`master.${op}.p50.${inodes}`, 'strata', 1 / percentile(lat, 50));
        c.results.add(`master.${op}.p99.${inodes}`, 'strata', 1 / percentile(lat, 99));
        if (inodes === PG_INODES) c.results.add(`master.${op}.ops.sqlite.${PG_INODES}`, 'strata', opsPerSec);
      });
      const rss = peakRss(m.proc.pid);
      if (rss !== undefined) c.results.addResource(`master.rss.${inodes}`, `peak RSS: master alone with ${label} inodes`, 'MiB', 'strata', rss / MiB);
    } finally {
      await m.stop();
      rmSync(home, { recursive: true, force: true });
      rmSync(ufsDir, { recursive: true, force: true });
    }
  }
  // SQLite at PG_INODES when the sizes above skipped it, so the engines compare at one size.
  if (!c.sizes.masterInodes.includes(PG_INODES)) {
    const home = path.join(c.root, 'master-sqlite');
    const ufsDir = path.join(c.root, 'master-sqlite-ufs');
    mkdirSync(ufsDir, { recursive: true });
    const layout = populateMaster(home, ufsDir, PG_INODES);
    const m = await startMasterAlone(c.root, home, ufsDir);
    try {
      await driveMaster(c, m.url, layout, `SQLite, ${pgLabel} inodes`, ['lookup', 'create'], (op, _lat, opsPerSec) =>
        c.results.add(`master.${op}.ops.sqlite.${PG_INODES}`, 'strata', opsPerSec),
      );
    } finally {
      await m.stop();
      rmSync(home, { recursive: true, force: true });
      rmSync(ufsDir, { recursive: true, force: true });
    }
  }
  return benchMasterPg(c);
}

/**
 * The master with its namespace in PostgreSQL (a throwaway server in a temp dir, as
 * the tests start it; fsync on), at PG_INODES inodes: alone, then (not in --quick)
 * with the leader lease in the same database, which fences every write (one more
 * row lock each).
 */
async function benchMasterPg(c: Ctx): Promise<string | undefined> {
  const why = postgresSkipReason();
  if (why) {
    note(`master on PostgreSQL: skipped: ${why}`);
    return why;
  }
  checkAbort();
  const label = fmtCount(PG_INODES);
  note(`master on PostgreSQL: starting a temporary server (${label} inodes only, to keep the run short)`);
  const began = now();
  const server = await startPostgres();
  const removePg = onCleanup('postgres', () => server.stop());
  const home = path.join(c.root, 'master-pg');
  const ufsDir = path.join(c.root, 'master-pg-ufs');
  mkdirSync(ufsDir, { recursive: true });
  try {
    const t0 = now();
    const layout = await populatePgMaster(server.url, ufsDir, PG_INODES);
    note(`master on PostgreSQL: populated ${label} inodes in ${(now() - t0).toFixed(1)}s; starting the master`);
    let m = await startMasterAlone(c.root, home, ufsDir, ['--metastore', server.url]);
    try {
      await driveMaster(c, m.url, layout, `PostgreSQL, ${label} inodes`, ['lookup', 'create'], (op, lat, opsPerSec) => {
        c.results.add(`master.${op}.p50.pg.${PG_INODES}`, 'strata', 1 / percentile(lat, 50));
        c.results.add(`master.${op}.p99.pg.${PG_INODES}`, 'strata', 1 / percentile(lat, 99));
        c.results.add(`master.${op}.ops.pg.${PG_INODES}`, 'strata', opsPerSec);
      });
      const rss = peakRss(m.proc.pid);
      if (rss !== undefined) c.results.addResource(`master.rss.pg.${PG_INODES}`, `peak RSS: master alone on PostgreSQL with ${label} inodes`, 'MiB', 'strata', rss / MiB);
    } finally {
      await m.stop();
    }
    if (c.opts.quick) {
      note('master on PostgreSQL: --quick leaves out the run with the leader lease');
      return undefined;
    }
    m = await startMasterAlone(c.root, home, ufsDir, ['--metastore', server.url, '--leader-election', 'metastore']);
    try {
      await waitFor('the master to take the leader lease', async () => {
        const v = (await (await fetch(`${m.url}/api/v1/leader`)).json().catch(() => ({}))) as { role?: string };
        return v.role === 'leader';
      }, 30_000);
      await driveMaster(c, m.url, layout, `PostgreSQL + leader lease, ${label} inodes`, ['create'], (_op, _lat, opsPerSec) =>
        c.results.add(`master.create.ops.pglease.${PG_INODES}`, 'strata', opsPerSec),
      );
    } finally {
      await m.stop();
    }
  } finally {
    removePg();
    await server.stop();
    rmSync(home, { recursive: true, force: true });
    rmSync(ufsDir, { recursive: true, force: true });
    note(`master on PostgreSQL: done in ${(now() - began).toFixed(1)}s`);
  }
  return undefined;
}

// ---- main ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const sizes = sizesFor(opts.quick);
  delete process.env.AWS_CA_BUNDLE;
  // The AWS SDK's notice about future Node versions, once per process, says nothing about this run.
  const emitWarning = process.emitWarning.bind(process) as (...a: unknown[]) => void;
  process.emitWarning = ((w: unknown, ...rest: unknown[]) => {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    if (type === 'NodeVersionSupportWarning' || String(w instanceof Error ? w.message : w).startsWith('NodeVersionSupportWarning')) return;
    emitWarning(w, ...rest);
  }) as typeof process.emitWarning;

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (aborted) return;
      aborted = true;
      note(`${sig}: stopping and unmounting everything…`);
      // Stopping the mounts makes a workload blocked on one fail at once; main then prints what it
      // has and exits. Should it not get there, exit anyway.
      void cleanupAll().then(() => setTimeout(() => process.exit(130), 30_000));
    });
  }

  if (process.getuid?.() !== 0) note('not root: FUSE mounts by peers and dropping the page cache may fail');
  if (!existsSync('/dev/fuse') || !which('fusermount3')) throw new Error('FUSE is missing: apt-get install -y fuse3 libfuse3-dev pkg-config');

  const mountWorkloads = (['write', 'read', 'rand', 'small', 'meta'] as Workload[]).filter((w) => opts.only.has(w));
  const skipped: Record<string, string> = {};
  const systems = new Set(opts.systems);
  if (mountWorkloads.length > 0) {
    if (systems.has('rclone') && !(await ensureTool('rclone', 'rclone'))) {
      systems.delete('rclone');
      skipped.rclone = 'rclone is not installed and could not be installed';
    }
    if (systems.has('s3fs') && !(await ensureTool('s3fs', 's3fs'))) {
      systems.delete('s3fs');
      skipped.s3fs = 's3fs is not installed and could not be installed';
    }
  }
  const fio = opts.only.has('rand') ? await ensureTool('fio', 'fio') : false;
  if (opts.only.has('rand') && !fio) note('fio is missing: random reads use a plain Node reader');

  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-bench-'));
  if (!opts.keep) onCleanup('temp dir', () => rmSync(root, { recursive: true, force: true }));
  const machine = `${os.cpus().length} cores, ${Math.round(os.totalmem() / GiB)} GiB, ${os.cpus()[0]?.model ?? '?'}, Linux ${os.release()}, Node ${process.version}`;
  log(`Strata benchmark ${opts.quick ? '(quick) ' : ''}— ${new Date().toISOString()} — ${machine}`);
  log(`runs: ${opts.runs}; temp dir: ${root}${opts.keep ? ' (kept)' : ''}`);
  if (opts.cpuProfDir) log(`CPU profiles of Strata's processes (one per process and start): ${opts.cpuProfDir}`);

  const results = new Results();
  results.declare('write.close', `seq write ${fmtBytes(sizes.big)}, until close() returns`, 'MB/s');
  results.declare('write.durable', `seq write ${fmtBytes(sizes.big)}, until all in S3 (local: fsync)`, 'MB/s');
  results.declare('read.cold', `seq read ${fmtBytes(sizes.big)}, cold (fresh mount, page cache dropped)`, 'MB/s');
  results.declare('read.warm', `seq re-read, warm (own cache; page cache dropped)`, 'MB/s');
  results.declare('read.hot', `seq re-read, hot (page cache kept)`, 'MB/s');
  results.declare('rand.iops', `4 KiB random reads, cold ${fmtBytes(sizes.big)} file, QD1`, 'IOPS');
  results.declare('small.1', `${fmtCount(sizes.smallCount)} × ${fmtBytes(sizes.smallSize)} files, ${sizes.readers} readers, epoch 1 (cold)`, 'files/s');
  results.declare('small.2', `${fmtCount(sizes.smallCount)} × ${fmtBytes(sizes.smallSize)} files, ${sizes.readers} readers, epoch 2 (warm)`, 'files/s');
  results.declare('meta.create', `metadata: create ${fmtCount(sizes.metaCount)} empty files`, 'ops/s');
  results.declare('meta.stat', `metadata: stat them`, 'ops/s');
  results.declare('meta.list', `metadata: list the directory`, 'entries/s');
  results.declare('meta.lsl', `metadata: ls -l of the directory`, 'entries/s');
  results.declare('meta.unlink', `metadata: unlink them`, 'ops/s');
  results.declare('meta.write', `write ${fmtCount(sizes.smallWrites)} × ${fmtBytes(sizes.smallSize)} files, one writer, each until close() returns`, 'files/s');
  const wantRows = (k: string) =>
    (k.startsWith('write') && opts.only.has('write')) ||
    (k.startsWith('read') && opts.only.has('read')) ||
    (k.startsWith('rand') && opts.only.has('rand')) ||
    (k.startsWith('small') && opts.only.has('small')) ||
    (k.startsWith('meta') && opts.only.has('meta')) ||
    k.startsWith('master');

  let fuseRows: FuseBenchRow[] | undefined;
  let failed: unknown;
  /** The JSON of --out; written after each part too, so an interrupted run leaves what it measured. */
  const writeJson = (partial: boolean): void => {
    if (!opts.out) return;
    const json = {
      date: new Date().toISOString(),
      machine,
      quick: opts.quick,
      runs: opts.runs,
      storeLatencyMs: opts.storeLatencyMs,
      sizes,
      ...(partial ? { partial: true } : {}),
      rows: jsonRows(results.rows.filter((r) => wantRows(r.key))),
      resources: jsonRows(results.resources),
      fuse: fuseRows ?? null,
      skipped,
      ...(failed ? { error: (failed as Error).message } : {}),
    };
    writeFileSync(opts.out, JSON.stringify(json, null, 2) + '\n');
  };
  try {
    if (mountWorkloads.length > 0) {
      const store = await startStore(path.join(root, 's3'), path.join(root, 's3-server.log'), opts.storeLatencyMs);
      onCleanup('store client', () => store.client.destroy());
      const latency = opts.storeLatencyMs > 0 ? `, every request held ${opts.storeLatencyMs} ms first` : '';
      log(`store: s3rver at ${store.endpoint}, bucket ${BUCKET}, every system rooted at ${BUCKET}/${PREFIX}${latency}`);
      const localDir = path.join(root, 'local');
      const source = randomBytes(64 * MiB);
      let smallNames: string[] = [];
      // s3rver reports a directory as a common prefix only while it holds an object of its own, so
      // data/ gets one whatever else is put (rclone, which trusts listings, would not see it else).
      await store.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/data/.bench`, Body: 'x', ContentLength: 1 }));
      if (opts.only.has('read') || opts.only.has('rand')) {
        note(`putting ${BIG} (${fmtBytes(sizes.big)}) into the store`);
        await putBigObject(store, `${PREFIX}/${BIG}`, sizes.big, path.join(localDir, BIG));
      }
      if (opts.only.has('small')) {
        note(`putting ${fmtCount(sizes.smallCount)} × ${fmtBytes(sizes.smallSize)} files into the store`);
        const t0 = now();
        smallNames = await putSmallFiles(store, sizes, localDir);
        note(`  done in ${(now() - t0).toFixed(1)}s`);
      }
      const c: Ctx = { opts, sizes, store, results, root, source, smallNames, fio };
      const make: Record<SystemId, () => BenchSystem> = {
        local: () => new LocalDisk(localDir),
        strata: () => new StrataCluster(root, path.join(root, 'mnt-strata'), store.endpoint, 'strata', opts.cpuProfDir),
        strataAsync: () => new StrataCluster(root, path.join(root, 'mnt-strata-async'), store.endpoint, 'strataAsync', opts.cpuProfDir),
        rclone: () => new RcloneMount(root, path.join(root, 'mnt-rclone'), store.endpoint),
        s3fs: () => new S3fsMount(root, path.join(root, 'mnt-s3fs'), store.endpoint),
      };
      const benched = SYSTEMS.filter((id) => systems.has(id)).map((id) => make[id]());
      try {
        for (let r = 1; r <= opts.runs; r++) {
          for (const sys of benched) {
            if (skipped[sys.id]) continue;
            checkAbort();
            try {
              await benchSystem(c, sys, r);
            } catch (err) {
              if (err instanceof Aborted || aborted) throw err;
              const msg = (err as Error).message;
              note(`${SYSTEM_TITLE[sys.id]}: FAILED: ${msg}${opts.keep ? '' : ' (run with --keep to keep the logs)'}`);
              skipped[sys.id] = `failed: ${msg}`;
            }
            writeJson(true);
          }
        }
      } finally {
        for (const sys of benched) recordRssRows(c, sys);
      }
      await store.close();
    }
    if (opts.only.has('master') && opts.systems.has('strata')) {
      const pgSkipped = await benchMaster({ opts, sizes, store: undefined as unknown as Store, results, root, source: Buffer.alloc(0), smallNames: [], fio });
      if (pgSkipped) skipped.postgres = `master on PostgreSQL: ${pgSkipped}`;
      writeJson(true);
    }
    if (opts.only.has('fuse')) {
      note(`FUSE binding: no-op file system, ${sizes.fuseMiB} MiB with dd`);
      fuseRows = await benchFuse(sizes.fuseMiB, note);
    }
  } catch (err) {
    failed = err;
  }

  const rows = results.rows.filter((r) => wantRows(r.key));
  log('');
  printTable(`Higher is better everywhere; each cell: median${opts.runs > 1 ? ` of ${opts.runs} runs (min–max)` : ''}. "Strata ÷ best peer": Strata's median over the better of rclone and s3fs.`, rows, 'higher');
  if (results.resources.length > 0) {
    log('');
    printTable('Resources (lower is better; peak RSS is the highest VmHWM seen in the run). "Strata ÷ best peer": the better peer over Strata.', results.resources, 'lower');
  }
  if (fuseRows) {
    log('');
    printFuseTable(fuseRows, log);
  }
  for (const [id, why] of Object.entries(skipped)) log(`skipped ${id}: ${why}`);
  log('');
  log(
    `setup: s3rver ${'3.7.1'} on loopback (one bucket); Strata = strata local (master + worker + FUSE mount, CACHE_THROUGH, default 60 s metadata sync, tiers MEM 2 GiB on /dev/shm + SSD, 1 MiB pages); ` +
      `rclone mount --vfs-cache-mode full (defaults otherwise: write-back after 5 s); s3fs with use_cache and nomixupload; local disk = a directory on the same disk as the store; ` +
      `master alone = one \`strata master\` on loopback and one client calling it back to back, its namespace in SQLite (WAL) or in a temporary PostgreSQL on the same machine (fsync on; ${fmtCount(PG_INODES)} inodes only).`,
  );

  writeJson(false);
  if (opts.out) log(`wrote ${opts.out}`);
  await cleanupAll();
  if (failed) throw failed;
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    async (err) => {
      note(err instanceof Aborted || aborted ? 'interrupted' : `failed: ${(err as Error).stack ?? err}`);
      await cleanupAll();
      process.exit(aborted ? 130 : 1);
    },
  );
}
