/**
 * `strata`: parses arguments and starts the parts. `local` runs master, worker and
 * mount as child processes of one foreground process tree; `master`, `worker` and
 * `mount` run one part each; `fs` talks to a running cluster.
 */

import { Command, CommanderError, Option } from 'commander';
import { fork, ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, statSync } from 'node:fs';
import * as nodePath from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { StrataError, toStrataError } from '../common/errors';
import { EXIT_FAILED, EXIT_USAGE, errorLine, exitCodeOf, isReported, onPath } from './cli-errors';
import { CONFIG_KEYS, StrataConfig, checkWorkerCapacity, configTableMarkdown, maskSecret, parseBytes, resolveConfig, resolveConfigSources } from '../common/config';
import { createLogger } from '../common/log';
import type { TierSpec } from '../worker/page-store';
import { registerFsCommands } from './fs-commands';
import { MOUNT_OWN_OPTIONS, type ReadType, type WriteType } from '../common/protocol';
import type { HttpAuthOptions, HttpLimits } from '../common/http';
import { authRequired, clientToken, isLoopback, serverToken } from '../common/auth';

// The daemons, the client, the under-store drivers, the FUSE binding, the metrics
// registry and the HTTP server are loaded by the command that needs them (await import),
// so `strata fs …` starts in a fraction of the time (every shell loop and script that
// calls the CLI pays that start), and each daemon loads only its own parts.


const CLI_ENTRY = nodePath.resolve(__dirname, '..', '..', '..', 'bin', 'strata');
/** Set for the children of `strata local`: they obey their parent, not terminal signals. */
const CHILD_ENV = 'STRATA_LOCAL_CHILD';
/**
 * Set for the children of `strata local` that start before the master is up: they load
 * their code meanwhile, then take the master's address from their parent.
 */
const MASTER_FROM_PARENT_ENV = 'STRATA_MASTER_FROM_PARENT';

/** Set once the process is on its way out: the first reason to exit is the one reported. */
let exiting = false;

/**
 * Exits with `code` once what was written to stdout and stderr has left the process.
 * process.exit() at once drops what still waits in a pipe's queue: `strata fs cat
 * /big /missing | wc -c` lost a random part of /big. A write of nothing calls back
 * after every earlier write to the stream (or with an error, when the stream is gone).
 */
function exitWhenFlushed(code: number): void {
  if (exiting) return;
  exiting = true;
  process.exitCode = code;
  const streams = [process.stdout, process.stderr].filter((s) => !s.destroyed);
  let pending = streams.length;
  if (pending === 0) process.exit(code);
  for (const s of streams) {
    s.write('', () => {
      if (--pending === 0) process.exit(code);
    });
  }
}

function fail(err: unknown): void {
  if (exiting) return; // a broken stdout already said why
  const e = toStrataError(err);
  if (!isReported(e)) process.stderr.write(errorLine(e));
  exitWhenFlushed(exitCodeOf(e));
}

/** Creates the home directory and checks that it is usable, before anything starts. */
function checkHome(home: string): void {
  try {
    mkdirSync(home, { recursive: true });
    if (!statSync(home).isDirectory()) throw new Error('not a directory');
    accessSync(home, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StrataError('CONFIG', `cannot use home directory ${home}: ${reason}`);
  }
}

/**
 * Checks the root under-store URI. A local root must be a directory: the default
 * one (`<home>/ufs`) is created, since nothing else would and every mkdir and
 * create would fail with ENOENT; another one must exist already, since creating it
 * could hide a file system that is not mounted (the files would go to the disk
 * beneath it).
 */
async function prepareUfs(uri: string, home: string, options: Record<string, string>): Promise<void> {
  const { checkUfsOptions, createUfs } = await import('../ufs');
  createUfs(uri); // throws CONFIG for unknown schemes and malformed URIs
  checkUfsOptions(uri, options, MOUNT_OWN_OPTIONS);
  const url = new URL(uri);
  if (url.protocol !== 'file:') return;
  const dir = decodeURIComponent(url.pathname);
  try {
    if (nodePath.resolve(dir) === nodePath.resolve(home, 'ufs')) mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? ' (create it, or mount the file system it is on)' : '';
    throw new StrataError('CONFIG', `cannot use under-store directory ${dir}: ${code ?? (err as Error).message}${hint}`);
  }
}

/**
 * In a child of `strata local`: what the parent said, heard from the child's first
 * moment (a message with no listener yet would wait, and a `disconnect` that came
 * before its listener would never be seen), for the start to act on when it can.
 */
const parentSaid: { child: boolean; masterLater: boolean; stop: boolean; master?: string; onStop?: () => void; onMaster?: (url: string) => void } = {
  child: false,
  masterLater: false,
  stop: false,
};

function listenToParent(): void {
  const child = process.env[CHILD_ENV] !== undefined && process.send !== undefined;
  const masterLater = process.env[MASTER_FROM_PARENT_ENV] !== undefined;
  // Read once: a process this one starts is no child of `strata local`.
  delete process.env[CHILD_ENV];
  delete process.env[MASTER_FROM_PARENT_ENV];
  if (!child) return;
  parentSaid.child = true;
  parentSaid.masterLater = masterLater;
  // The terminal's Ctrl-C reaches the whole process group; the parent orders the shutdown,
  // also of a child still starting (killed halfway through mounting, a mount would stay).
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  const stop = () => {
    parentSaid.stop = true;
    parentSaid.onStop?.();
  };
  process.on('message', (m: unknown) => {
    if (m === 'shutdown') stop();
    else if (m && typeof m === 'object' && typeof (m as { master?: unknown }).master === 'string') {
      parentSaid.master = (m as { master: string }).master;
      parentSaid.onMaster?.(parentSaid.master);
    }
  });
  // The parent is gone (killed, or stopped before its own handler ran): nothing to serve. A child
  // still starting has mounted nothing yet (the mount reports ready right after mounting, with no
  // wait in between), and would otherwise keep trying a master that may be gone too, for a minute.
  process.on('disconnect', () => {
    if (!parentSaid.onStop) process.exit(1);
    stop();
  });
}

/**
 * `cfg` with the master's address from the parent, in a child of `strata local` started
 * before the master (see MASTER_FROM_PARENT_ENV); `cfg` itself everywhere else. A child
 * told to stop meanwhile exits: it started nothing yet.
 */
async function masterFromParent(cfg: StrataConfig): Promise<StrataConfig> {
  if (!parentSaid.masterLater || !parentSaid.child) return cfg;
  const master =
    parentSaid.master ??
    (await new Promise<string>((resolve) => {
      parentSaid.onMaster = resolve;
      parentSaid.onStop = () => process.exit(0);
      if (parentSaid.stop || !process.connected) process.exit(0);
    }));
  parentSaid.onMaster = undefined;
  parentSaid.onStop = undefined;
  if (parentSaid.stop) process.exit(0);
  return { ...cfg, master };
}

/**
 * In a child of `strata local`: report readiness, and stop when the parent says so or
 * is gone, also when it said so while this child was starting.
 */
function asChild(ready: Record<string, unknown>, stop: () => Promise<void>): void {
  if (!process.send) return;
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await stop();
    } finally {
      process.exit(0);
    }
  };
  parentSaid.onStop = () => void shutdown();
  if (parentSaid.stop || !process.connected) return void shutdown();
  process.send({ ready: true, ...ready }, (err: Error | null) => {
    if (err) void shutdown();
  });
}

function onSignals(stop: () => Promise<void>): void {
  // A child of `strata local` stops when its parent says so (listenToParent).
  if (parentSaid.child) return;
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`strata: ${sig}, shutting down\n`);
    stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`strata: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}

/** Parses repeated `key=value` options. */
export function parseKeyValues(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new StrataError('CONFIG', `${flag} expects key=value, got '${kv}'`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** What a daemon requires of callers: the cluster token (created when missing) when auth is on. */
function daemonAuth(cfg: StrataConfig, log: ReturnType<typeof createLogger>, opts: { create?: boolean } = {}): HttpAuthOptions | undefined {
  const token = serverToken(cfg, opts);
  if (!token) {
    if (!isLoopback(cfg.bind)) log.warn({ bind: cfg.bind }, 'listening beyond loopback with auth none: anyone who can reach this port can read and change the file system');
    return undefined;
  }
  return { token, publicMetrics: cfg.metricsAuth === 'false' };
}

function daemonLimits(cfg: StrataConfig): HttpLimits {
  return { maxConnections: cfg.maxConnections, maxHeaderBytes: cfg.maxHeaderBytes, headersTimeoutMs: cfg.headersTimeoutMs };
}

async function runMaster(cfg: StrataConfig, ufsOptions: Record<string, string>): Promise<void> {
  checkHome(cfg.home);
  await prepareUfs(cfg.ufs, cfg.home, ufsOptions);
  const log = createLogger('master', cfg.logLevel);
  const { startMaster } = await import('../master/server');
  const m = await startMaster({
    home: cfg.home,
    host: cfg.bind,
    port: cfg.masterPort,
    ufsUri: cfg.ufs,
    ufsOptions,
    writeType: cfg.writeType as WriteType,
    blockSize: cfg.blockSize,
    syncIntervalMs: cfg.syncIntervalMs,
    workerTimeoutMs: cfg.workerTimeoutMs,
    persistInitialWaitMs: cfg.persistInitialWaitMs,
    metastore: cfg.metastore,
    dashboard: cfg.dashboard === 'true',
    auth: daemonAuth(cfg, log, { create: true }),
    limits: daemonLimits(cfg),
    maxBodyBytes: cfg.maxBodyBytes,
    requestTimeoutMs: cfg.requestTimeoutMs,
    ...(cfg.leaderElection === 'none' ? {} : { leaderElection: { url: cfg.leaderElection, leaseMs: cfg.leaderLeaseMs, ...(cfg.masterAdvertiseUrl ? { advertiseUrl: cfg.masterAdvertiseUrl } : {}) } }),
    logger: log,
  });
  const stop = () => m.close();
  onSignals(stop);
  asChild({ url: m.url }, stop);
  if (!process.send) process.stdout.write(`strata master listening on ${m.url} (under-store ${cfg.ufs})\n`);
}

async function runWorker(given: StrataConfig): Promise<void> {
  checkHome(given.home);
  const log = createLogger('worker', given.logLevel);
  const { startWorker } = await import('../worker/server');
  const cfg = await masterFromParent(given);
  const w = await startWorker({
    masterUrl: cfg.master,
    home: cfg.home,
    host: cfg.bind,
    port: cfg.workerPort,
    tiers: await workerTiers(cfg),
    pageSize: cfg.pageSize,
    evictionPolicy: cfg.evictionPolicy,
    readMemoryBytes: cfg.workerReadMemory,
    heartbeatIntervalMs: cfg.heartbeatIntervalMs,
    ...(cfg.hostId ? { hostId: cfg.hostId } : {}),
    auth: daemonAuth(cfg, log),
    token: clientToken(cfg),
    limits: daemonLimits(cfg),
    maxBodyBytes: cfg.maxBodyBytes,
    bodyStallTimeoutMs: cfg.requestTimeoutMs,
    tierCheckIntervalMs: cfg.workerTierCheckIntervalMs,
    tierStallMs: cfg.workerTierStallMs,
    logger: log,
  });
  const stop = () => w.close();
  onSignals(stop);
  asChild({ url: w.url }, stop);
  if (!process.send) process.stdout.write(`strata worker ${w.workerId} serving on ${w.url} (master ${cfg.master})\n`);
}

/** The worker's tiers from `workerTiers` (flags or env), or the one default SSD tier. */
async function workerTiers(cfg: StrataConfig): Promise<TierSpec[]> {
  const { parseTierSpec } = await import('../worker/page-store');
  if (cfg.workerTiers === 'default') return [{ name: 'SSD', dir: nodePath.join(cfg.home, 'worker', 'blocks'), capacityBytes: cfg.workerCapacity }];
  return cfg.workerTiers
    .split(',')
    .filter((x) => x.trim())
    .map((spec) => {
      const t = parseTierSpec(spec.trim(), parseBytes);
      return { ...t, dir: nodePath.resolve(t.dir) };
    });
}

async function runMount(given: StrataConfig, mountPoint: string, create: boolean, writeType: WriteType | undefined, metricsPort?: number): Promise<void> {
  checkHome(given.home);
  const log = createLogger('fuse', given.logLevel);
  const { mountFuse, prepareMountPoint } = await import('../fuse/fuse-mount');
  const { createDaemonMetrics } = await import('../common/metrics');
  const { createHttpServer } = await import('../common/http');
  const { Gauge } = await import('prom-client');
  const { StrataFileSystem } = await import('../client/file-system');
  await prepareMountPoint(mountPoint, log, { create });
  // The FUSE client's metrics: a small HTTP server on loopback serving /metrics only.
  // Made before the master is known: in `strata local` that is while the master starts.
  const metrics = createDaemonMetrics('fuse');
  const metricsServer = createHttpServer({ logger: log, metrics, auth: daemonAuth(given, log), limits: daemonLimits(given) });
  await metricsServer.listen({ host: given.bind, port: metricsPort ?? 0 });
  const metricsUrl = `http://${given.bind}:${(metricsServer.server.address() as import('node:net').AddressInfo).port}/metrics`;
  const cfg = await masterFromParent(given);
  const fs = new StrataFileSystem({
    masterUrl: cfg.master,
    stagingDir: nodePath.join(cfg.home, 'client', `staging-${process.pid}`),
    logger: log,
    readType: cfg.readType as ReadType,
    shortCircuit: cfg.shortCircuit === 'true',
    ...(cfg.hostId ? { hostId: cfg.hostId } : {}),
    metadataCache: cfg.metadataCache === 'true',
    feedLeaseMs: cfg.feedLeaseMs,
    workerProbeIntervalMs: cfg.workerProbeIntervalMs,
    masterFailoverTimeoutMs: cfg.masterFailoverTimeoutMs,
    ...(writeType ? { writeType } : {}),
    token: clientToken(cfg),
  });
  await fs.init();
  // Fail now, with a clear message, if the master is not there.
  await fs.master.stat('/').catch((err) => {
    throw new StrataError('UNAVAILABLE', `cannot reach the master at ${cfg.master}: ${(err as Error).message}`);
  });
  const allowOther = cfg.allowOther === 'true' || (cfg.allowOther === 'auto' && process.getuid?.() === 0);
  // Where this client's bytes came from: page files on this host, or workers over HTTP.
  new Gauge({
    name: 'strata_client_read_bytes_total',
    help: 'Bytes read by this client, by source (short_circuit: page files of a same-host worker; worker: over HTTP)',
    labelNames: ['source'] as const,
    registers: [metrics.registry],
    collect() {
      this.set({ source: 'short_circuit' }, fs.local?.bytesRead ?? 0);
      this.set({ source: 'worker' }, fs.workers.bytesRead);
    },
  });
  new Gauge({
    name: 'strata_client_pages_hashed_total',
    help: 'Page files of a same-host worker this client checked by hashing them, because the worker had not named that version of them as a file it wrote or verified',
    registers: [metrics.registry],
    collect() {
      this.set(fs.local?.pagesHashed ?? 0);
    },
  });
  new Gauge({
    name: 'strata_client_metadata_cache_total',
    help: 'Metadata cache of this mount: answers served from it (hit), asked of the master (miss), changes applied from the feed (invalidation), full drops (reset)',
    labelNames: ['event'] as const,
    registers: [metrics.registry],
    collect() {
      const s = fs.master.cache?.stats;
      if (!s) return;
      this.set({ event: 'hit' }, s.hits);
      this.set({ event: 'miss' }, s.misses);
      this.set({ event: 'invalidation' }, s.invalidations);
      this.set({ event: 'reset' }, s.resets);
    },
  });
  new Gauge({ name: 'strata_client_corrupt_pages_total', help: 'Page files that failed verification in this client (then read through the worker)', registers: [metrics.registry], collect() { this.set(fs.local?.corruptPages ?? 0); } });
  const m = await mountFuse({ mountPoint, fs, logger: log, allowOther, metrics: metrics.registry, kernelCache: { attrTimeoutMs: cfg.attrTimeoutMs, entryTimeoutMs: cfg.entryTimeoutMs, exactTimeoutMs: cfg.metadataCache === 'false' ? 0 : cfg.feedTimeoutMs } });
  log.info({ metrics: metricsUrl }, 'FUSE client metrics');
  const stop = async () => {
    await m.unmount();
    await fs.close();
    await metricsServer.close();
  };
  onSignals(stop);
  asChild({ mountPoint, metrics: metricsUrl }, stop);
  if (!process.send) process.stdout.write(`strata mounted at ${mountPoint} (master ${cfg.master}, metrics ${metricsUrl})\n`);
}

interface Child {
  name: string;
  proc: ChildProcess;
  info: Record<string, unknown>;
}

/**
 * V8 options for the daemons (bin/strata's shebang passes the same ones to every
 * strata process; short-lived commands do not notice). With
 * V8's default, the old generation of a small heap (20-25 MB here) may grow by
 * less than the young generation holds, so a process moving bytes at hundreds of
 * MB/s started a full mark-compact every few tens of MB: 25 of them for the worker
 * in a cold 1 GiB read, which cost it 3.2-3.55 s of CPU. Starting the old
 * generation at 128 MiB: 3 of them, 2.2-2.4 s, and the read went from 283-305 to
 * 325-369 MB/s. The price is memory: peak RSS +15-30 MiB for the worker there,
 * +39 MiB (master) and +64 MiB (mount) in the small-files benchmark.
 */
export const DAEMON_NODE_OPTIONS: readonly string[] = ['--initial-old-space-size=128'];

/** `execArgv` plus the daemon options it does not set itself. */
export function withDaemonOptions(execArgv: readonly string[]): string[] {
  const named = (a: string) => a.split('=')[0]!.replace(/_/g, '-');
  const given = new Set(execArgv.map(named));
  return [...execArgv, ...DAEMON_NODE_OPTIONS.filter((o) => !given.has(named(o)))];
}

interface StartingChild {
  child: Child;
  /** Resolves with what the child reported once ready; rejects if it exits first. */
  ready: Promise<Record<string, unknown>>;
}

/**
 * Starts one part as a child process. With `masterLater`, it loads its code and then
 * waits for the master's address (given with `giveMaster`), so the three parts' starts,
 * mostly Node loading modules, overlap instead of adding up.
 */
function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, masterLater = false): StartingChild {
  const proc = fork(CLI_ENTRY, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: withDaemonOptions(process.execArgv),
    env: { ...env, [CHILD_ENV]: '1', ...(masterLater ? { [MASTER_FROM_PARENT_ENV]: '1' } : {}) },
  });
  const child: Child = { name, proc, info: {} };
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) => reject(new StrataError(code === EXIT_USAGE ? 'CONFIG' : 'IO_ERROR', `the ${name} exited during start (${signal ?? `code ${code}`})`));
    proc.once('exit', onExit);
    const onMessage = (m: unknown) => {
      if (!m || typeof m !== 'object' || !(m as { ready?: unknown }).ready) return;
      proc.off('exit', onExit);
      proc.off('message', onMessage);
      child.info = m as Record<string, unknown>;
      resolve(child.info);
    };
    proc.on('message', onMessage);
  });
  // Awaited by the caller; a rejection before that must not count as unhandled.
  ready.catch(() => undefined);
  return { child, ready };
}

function giveMaster(c: Child, masterUrl: string): void {
  // A child that died meanwhile: its `ready` says so. (The callback keeps a failed send from being an 'error' event.)
  if (c.proc.connected) c.proc.send({ master: masterUrl }, () => undefined);
}

async function stopChild(c: Child, timeoutMs = 30_000): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      c.proc.kill('SIGKILL');
    }, timeoutMs);
    c.proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    if (c.proc.connected) c.proc.send('shutdown', (err: Error | null) => err && c.proc.kill('SIGTERM'));
    else c.proc.kill('SIGTERM');
  });
}

async function runLocal(cfg: StrataConfig, createMount: boolean, ufsOptions: string[], configFile?: string): Promise<void> {
  checkHome(cfg.home);
  const log = createLogger('local', cfg.logLevel);
  // The mount point first: a wrong one must not leave a new <home>/ufs behind.
  const { prepareMountPoint } = await import('../fuse/fuse-mount');
  await prepareMountPoint(cfg.mount, log, { create: createMount });
  await prepareUfs(cfg.ufs, cfg.home, parseKeyValues(ufsOptions, '--ufs-option'));

  // The master would create the token file too; here it exists before any child reads it.
  if (authRequired(cfg)) serverToken(cfg, { create: true });
  const auth = ['--auth', cfg.auth === 'auto' ? (authRequired(cfg) ? 'token' : 'none') : cfg.auth, '--token-file', cfg.tokenFile];
  // The parts read the same config file (its limits, for one), which --config would otherwise keep from them.
  const common = ['--home', cfg.home, '--log-level', cfg.logLevel, ...auth, ...(configFile ? ['--config', configFile] : [])];
  const children: Child[] = [];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    // Mount first (flushes open files), then the worker, then the master.
    for (const c of [...children].reverse()) await stopChild(c);
  };
  const onChildExit = (c: Child) => {
    c.proc.once('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(`strata: the ${c.name} stopped unexpectedly (${signal ?? `code ${code}`}); shutting down\n`);
      void stopAll().then(() => process.exit(1));
    });
  };
  // Before the first fork: a signal during the start stops what started so far.
  onSignals(stopAll);
  try {
    const master = startChild(
      'master',
      [
        'master', ...common, '--port', String(cfg.masterPort), '--ufs', cfg.ufs, '--bind', cfg.bind, '--block-size', String(cfg.blockSize),
        '--metastore', cfg.metastore, '--sync-interval-ms', String(cfg.syncIntervalMs), '--write-type', cfg.writeType, ...ufsOptions.flatMap((o) => ['--ufs-option', o]),
      ],
      process.env,
    );
    const worker = startChild(
      'worker',
      [
        'worker', ...common, '--port', String(cfg.workerPort), '--bind', cfg.bind, '--capacity', String(cfg.workerCapacity),
        '--page-size', String(cfg.pageSize), '--eviction-policy', cfg.evictionPolicy, '--read-memory', String(cfg.workerReadMemory), ...(cfg.workerTiers === 'default' ? [] : ['--tiers', cfg.workerTiers]),
      ],
      process.env,
      true,
    );
    const mount = startChild('mount', ['mount', ...common, '--allow-other', cfg.allowOther, '--read-type', cfg.readType, '--attr-timeout-ms', String(cfg.attrTimeoutMs), '--entry-timeout-ms', String(cfg.entryTimeoutMs), '--feed-timeout-ms', String(cfg.feedTimeoutMs), '--feed-lease-ms', String(cfg.feedLeaseMs), cfg.mount], process.env, true);
    // In stopping order reversed: the mount stops first, the master last.
    children.push(master.child, worker.child, mount.child);
    const masterUrl = String((await master.ready).url);
    if (stopping) return;
    onChildExit(master.child);
    giveMaster(worker.child, masterUrl);
    await worker.ready;
    if (stopping) return;
    onChildExit(worker.child);
    // After the worker is ready, so that the first write through the mount finds it.
    giveMaster(mount.child, masterUrl);
    await mount.ready;
    if (stopping) return;
    onChildExit(mount.child);
    process.stdout.write(`strata: mounted at ${cfg.mount} (master ${masterUrl}, worker ${String(worker.child.info.url)}, under-store ${cfg.ufs}, client metrics ${String(mount.child.info.metrics)})\n`);
    process.stdout.write(`strata: press Ctrl-C to unmount and stop\n`);
  } catch (err) {
    // Stopping already (a signal, or a part that stopped): that stop ends the process.
    if (stopping) return;
    await stopAll();
    throw err;
  }
}

function configFlags(o: Record<string, unknown>): Partial<Record<keyof StrataConfig | 'config', unknown>> {
  return {
    config: o.config,
    home: o.home,
    mount: o.mount,
    ufs: o.ufs,
    bind: o.bind,
    masterPort: o.masterPort ?? o.port,
    workerPort: o.workerPort,
    master: o.master,
    leaderElection: o.leaderElection,
    masterAdvertiseUrl: o.advertiseUrl,
    blockSize: o.blockSize,
    metastore: o.metastore,
    workerCapacity: o.capacity,
    workerTiers: o.tier ? (o.tier as string[]).join(',') : o.tiers,
    pageSize: o.pageSize,
    evictionPolicy: o.evictionPolicy,
    workerReadMemory: o.readMemory,
    readType: o.readType,
    syncIntervalMs: o.syncIntervalMs,
    writeType: o.writeType,
    allowOther: o.allowOther,
    auth: o.auth,
    tokenFile: o.tokenFile,
    logLevel: o.logLevel,
    hostId: o.hostId,
    attrTimeoutMs: o.attrTimeoutMs,
    entryTimeoutMs: o.entryTimeoutMs,
    feedTimeoutMs: o.feedTimeoutMs,
    feedLeaseMs: o.feedLeaseMs,
  };
}

/** An example section for a command's help. */
function examples(lines: string[]): string {
  // Commander ends the added text with a newline itself.
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`;
}

const TOP_HELP = `${examples([
  '$ strata local                         # master, worker and a mount at /mnt/strata, in the foreground',
  '$ strata local --ufs s3://bucket/lake --ufs-option s3.region=eu-west-1',
  "$ strata fs ls '/data/*.parquet'       # file-system commands against a running cluster",
  '$ strata fs cp -r ./dir strata:/dir',
  '$ strata help fs cp                    # the help of one command, with examples',
])}

Configuration: defaults < config file (--config FILE, else $STRATA_CONFIG, else
<home>/strata.json) < environment ($STRATA_…) < flags. \`strata conf list\` shows
every key with its effective value and where it came from.

Exit codes: 0 ok, 1 operation failed, 2 bad usage or configuration.
Errors are one line on stderr: "strata: <path>: <cause>".`;

/** The name a user types for a command: `strata fs ls`. */
function commandPath(c: Command): string {
  const names: string[] = [];
  for (let x: Command | null = c; x; x = x.parent) names.unshift(x.name());
  return names.join(' ');
}

/**
 * Usage errors found by commander read like every other error: one line
 * `strata: <what is wrong> (see 'strata fs ls --help')`, not the whole help.
 */
function oneLineUsageErrors(c: Command): void {
  const see = `(see '${commandPath(c)} --help')`;
  c.showHelpAfterError(false).configureOutput({
    outputError: (str, write) => write(`strata: ${str.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()} ${see}\n`),
  });
  for (const sub of c.commands) oneLineUsageErrors(sub);
}

export async function main(argv: string[]): Promise<void> {
  // A one-shot command: undici's HTTP parser (WebAssembly) is compiled by Liftoff only. Its optimizing
  // compile runs in the background, and the process waited for it at exit: 200 ms of every `strata fs`
  // call (550 -> 350 ms for an `fs ls` here). The daemons keep the optimized parser, for their traffic.
  // (A V8 that no longer knows the flag only loses the 200 ms; the tests check that fs commands print nothing else.)
  if (argv[0] === 'fs') {
    try {
      setFlagsFromString('--liftoff-only');
    } catch {
      // as without it
    }
  }
  listenToParent();
  // A reader that went away (`strata --help | head -3`) ends the output, not the process with a stack trace.
  // Any other failure of stdout (`> /dev/full`: ENOSPC) ends the command with one line and exit 1.
  for (const [name, out] of [
    ['stdout', process.stdout],
    ['stderr', process.stderr],
  ] as const) {
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || exiting) return;
      if (name === 'stdout') process.stderr.write(errorLine(onPath(name, err)));
      exitWhenFlushed(EXIT_FAILED);
    });
  }
  const program = new Command('strata')
    .description('Strata: one POSIX namespace over S3, HDFS and local disk, cached next to compute')
    .exitOverride()
    .addHelpText('after', TOP_HELP);

  const withCommon = (c: Command) =>
    c
      .option('--home <dir>', 'home directory (metadata, blocks, staging); default ~/.strata or $STRATA_HOME')
      .option('--auth <mode>', 'token | none | auto (= token when --bind is not loopback); default auto')
      .option('--token-file <file>', 'the cluster token; default <home>/token (or the token itself in $STRATA_TOKEN)')
      .option('--config <file>', 'JSON config file; default $STRATA_CONFIG or <home>/strata.json when it exists')
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent');

  withCommon(program.command('local').description('run master, one worker and the FUSE mount in one foreground process tree'))
    .option('--mount <dir>', 'mount point; default /mnt/strata or $STRATA_MOUNT')
    .option('--ufs <uri>', 'under-store mounted at /; default file://<home>/ufs')
    .option('--master-port <n>', 'master API port (0 = any free)')
    .option('--worker-port <n>', 'worker data port (0 = any free)')
    .option('--bind <addr>', 'address to listen on; default 127.0.0.1')
    .option('--capacity <bytes>', 'quota of the default single tier, e.g. 8GiB')
    .option('--tier <NAME:DIR:SIZE>', 'a cache tier, top first (repeatable), e.g. --tier mem:/dev/shm/strata:4GiB --tier ssd:/var/lib/strata:200GiB', collect)
    .option('--tiers <list>', 'all tiers at once, comma-separated NAME:DIR:SIZE')
    .option('--page-size <bytes>', 'unit of caching inside a block; default 1MiB')
    .option('--eviction-policy <policy>', 'LRU | FIFO | LFU (default LRU)')
    .option('--read-memory <bytes>', 'memory the worker may hold for reads it does not cache, all together (default 256MiB)')
    .option('--read-type <type>', 'CACHE | CACHE_PROMOTE | NO_CACHE (default CACHE)')
    .option('--attr-timeout-ms <ms>', 'how long the kernel answers stat from its cache (default 1000)')
    .option('--entry-timeout-ms <ms>', 'how long the kernel keeps path lookups (default 1000)')
    .option('--feed-timeout-ms <ms>', 'how long the kernel keeps what the change feed keeps exact (default 60000; 0 = off)')
    .option('--feed-lease-ms <ms>', 'answer opens from the metadata cache under a change-feed lease of this length; close-to-open still holds (default 1000; 0 = opens ask the master)')
    .option('--block-size <bytes>', 'block size of new files, e.g. 64MiB')
    .option('--metastore <where>', 'sqlite:///path (default <home>/master/strata.db) or postgres://user@host:port/db')
    .option('--sync-interval-ms <ms>', 're-check under-store metadata older than this')
    .option('--ufs-option <key=value>', 'option of the root under-store (repeatable), e.g. s3.endpoint=http://…', collect)
    .option('--write-type <type>', 'MUST_CACHE | CACHE_THROUGH | THROUGH | ASYNC_THROUGH (default CACHE_THROUGH)')
    .option('--allow-other <mode>', 'true | false | auto (= when mounted by root); default auto')
    .addHelpText(
      'after',
      examples([
        '$ strata local                                   # home ~/.strata, mount /mnt/strata, store file://~/.strata/ufs',
        '$ strata local --mount /tmp/strata --ufs file:///data/lake',
        '$ strata local --ufs s3://bucket/lake --ufs-option s3.endpoint=http://127.0.0.1:9000 --ufs-option s3.pathStyle=true',
        '$ strata local --tier mem:/dev/shm/strata:4GiB --tier ssd:/var/lib/strata:200GiB',
      ]),
    )
    .action(async (o) => {
      parseKeyValues(o.ufsOption, '--ufs-option');
      // An explicitly named mount point must exist; the default one is created.
      const r = resolveConfigSources(configFlags(o));
      checkWorkerCapacity(r);
      await runLocal(r.config, o.mount === undefined, o.ufsOption ?? [], r.file);
    });

  withCommon(program.command('master').description('run the master in the foreground'))
    .option('--port <n>', 'API port (0 = any free)')
    .option('--ufs <uri>', 'under-store mounted at /')
    .option('--bind <addr>', 'address to listen on')
    .option('--block-size <bytes>', 'block size of new files')
    .option('--metastore <where>', 'sqlite:///path (default <home>/master/strata.db) or postgres://user@host:port/db')
    .option('--sync-interval-ms <ms>', 're-check under-store metadata older than this')
    .option('--ufs-option <key=value>', 'option of the root under-store (repeatable)', collect)
    .option('--write-type <type>', 'write type of mounts that set none')
    .option('--leader-election <url>', 'postgres://… shared with standby masters: lead only while holding the lease (default none)')
    .option('--advertise-url <url>', 'the URL clients are sent to while this master leads (default its listen URL)')
    .addHelpText(
      'after',
      examples([
        '$ strata master --port 19998 --ufs s3://bucket/lake --bind 0.0.0.0',
        '$ strata master --home /var/lib/strata --ufs hdfs://namenode:9870/lake',
        '$ PGPASSWORD=… strata master --metastore postgres://strata@db.internal:5432/strata --ufs s3://bucket/lake',
        '$ strata master --bind 10.0.0.1 --leader-election postgres://strata@db:5432/strata   # one of several; clients use --master URL1,URL2',
      ]),
    )
    .action(async (o) => runMaster(resolveConfig(configFlags(o)), parseKeyValues(o.ufsOption, '--ufs-option')));

  withCommon(program.command('worker').description('run a worker in the foreground'))
    .option('--master <url>', 'master URL, or the URLs of all masters comma-separated')
    .addOption(new Option('--port <n>', 'data port (0 = any free)'))
    .option('--bind <addr>', 'address to listen on')
    .option('--capacity <bytes>', 'quota of the default single tier, e.g. 8GiB')
    .option('--tier <NAME:DIR:SIZE>', 'a cache tier, top first (repeatable), e.g. --tier mem:/dev/shm/strata:4GiB --tier ssd:/var/lib/strata:200GiB', collect)
    .option('--tiers <list>', 'all tiers at once, comma-separated NAME:DIR:SIZE')
    .option('--page-size <bytes>', 'unit of caching inside a block; default 1MiB')
    .option('--eviction-policy <policy>', 'LRU | FIFO | LFU (default LRU)')
    .option('--read-memory <bytes>', 'memory the worker may hold for reads it does not cache, all together (default 256MiB)')
    .option('--host-id <id>', "this host's identity for short-circuit reads (default /etc/machine-id); the same on a worker and the mounts beside it")
    .addHelpText(
      'after',
      examples(['$ strata worker --master http://master-host:19998 --bind 0.0.0.0', '$ strata worker --master http://master-host:19998 --tier mem:/dev/shm/strata:8GiB --tier ssd:/ssd/strata:500GiB']),
    )
    .action(async (o) => {
      const r = resolveConfigSources({ ...configFlags(o), masterPort: undefined, workerPort: o.port });
      checkWorkerCapacity(r);
      await runWorker(r.config);
    });

  withCommon(program.command('mount').description('mount a running cluster at DIR in the foreground'))
    .argument('<dir>', 'mount point (an existing empty directory)')
    .option('--master <url>', 'master URL, or the URLs of all masters comma-separated')
    .option('--write-type <type>', "this client's write type (default: each mount's)")
    .option('--read-type <type>', 'CACHE | CACHE_PROMOTE | NO_CACHE (default CACHE)')
    .option('--allow-other <mode>', 'true | false | auto (= when mounted by root); default auto')
    .option('--metrics-port <n>', 'port of the client metrics endpoint (0 = any free port, printed at start)')
    .option('--attr-timeout-ms <ms>', 'how long the kernel answers stat from its cache (default 1000)')
    .option('--entry-timeout-ms <ms>', 'how long the kernel keeps path lookups (default 1000)')
    .option('--feed-timeout-ms <ms>', 'how long the kernel keeps what the change feed keeps exact (default 60000; 0 = off)')
    .option('--feed-lease-ms <ms>', 'answer opens from the metadata cache under a change-feed lease of this length; close-to-open still holds (default 1000; 0 = opens ask the master)')
    .option('--host-id <id>', "this host's identity for short-circuit reads (default /etc/machine-id); the same as the worker's beside it")
    .addHelpText('after', examples(['$ strata mount /mnt/strata --master http://master-host:19998', '$ strata mount /mnt/strata --read-type NO_CACHE --allow-other true']))
    .action(async (dir: string, o) => {
      const cfg = resolveConfig(configFlags(o));
      const metricsPort = o.metricsPort === undefined ? undefined : Number(o.metricsPort);
      if (metricsPort !== undefined && (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)) throw new StrataError('CONFIG', `invalid --metrics-port '${o.metricsPort}'`);
      await runMount(cfg, nodePath.resolve(dir), false, o.writeType ? (cfg.writeType as WriteType) : undefined, metricsPort);
    });

  withCommon(program.command('doctor').description('check FUSE, ports, tier directories and the under-store, and say what to fix'))
    .option('--ufs <uri>', 'under-store to check; default file://<home>/ufs')
    .option('--master <url>', 'master URL to look for')
    .option('--capacity <bytes>', 'quota of the default single tier')
    .option('--tier <NAME:DIR:SIZE>', 'a cache tier to check (repeatable)', collect)
    .option('--ufs-option <key=value>', 'option of the under-store (repeatable), e.g. s3.endpoint=http://…', collect)
    .option('--json', 'print JSON: [{name, state, detail, fix}]')
    .addHelpText('after', examples(['$ strata doctor', '$ strata doctor --ufs s3://bucket/lake --ufs-option s3.region=eu-west-1 --json']) + '\n\nExit codes: 0 every check passed or warned, 1 a check failed, 2 bad usage.')
    .action(async (o) => {
      const { runDoctor } = await import('./doctor');
      const checks = await runDoctor(resolveConfig(configFlags(o)), parseKeyValues(o.ufsOption, '--ufs-option'));
      if (o.json) process.stdout.write(JSON.stringify(checks, null, 2) + '\n');
      else {
        const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
        for (const c of checks) {
          process.stdout.write(`${mark[c.state]}  ${c.name.padEnd(12)} ${c.detail}\n`);
          if (c.fix && c.state !== 'ok') process.stdout.write(`      ${''.padEnd(12)} fix: ${c.fix}\n`);
        }
      }
      if (checks.some((c) => c.state === 'fail')) process.exitCode = 1;
    });

  const conf = program
    .command('conf')
    .description('configuration: every key, its value and where it came from')
    .addHelpText('after', '\nSources, lowest first: defaults, the config file (--config FILE, $STRATA_CONFIG\nor <home>/strata.json), the environment ($STRATA_…), flags.');
  withCommon(conf.command('list').description('every configuration key with its effective value and where it came from (secrets masked)'))
    .option('--json', 'print JSON: [{key, value, source, env, description}]')
    .addHelpText('after', examples(['$ strata conf list', '$ strata conf list --config ./strata.json --json', '$ STRATA_MASTER=http://m:19998 strata conf list   # source: env']))
    .action((o) => {
      const r = resolveConfigSources(configFlags(o));
      const rows = CONFIG_KEYS.map((k) => ({
        key: k.key,
        value: maskSecret(k.key, (r.config as unknown as Record<string, unknown>)[k.key]),
        source: r.sources[k.key as keyof StrataConfig],
        env: k.env,
        description: k.description,
      }));
      if (o.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      const w = (f: 'key' | 'value') => Math.max(...rows.map((x) => x[f].length), f.length);
      process.stdout.write(`${'KEY'.padEnd(w('key'))}  ${'VALUE'.padEnd(w('value'))}  SOURCE\n`);
      for (const x of rows) process.stdout.write(`${x.key.padEnd(w('key'))}  ${x.value.padEnd(w('value'))}  ${x.source}\n`);
    });
  conf
    .command('table')
    .description("the README's configuration table (Markdown), generated from the key registry")
    .addHelpText('after', examples(['$ strata conf table > /tmp/config-table.md']))
    .action(() => void process.stdout.write(configTableMarkdown() + '\n'));

  registerFsCommands(program.command('fs').description('file-system commands against a running cluster'));
  oneLineUsageErrors(program);

  // `strata help fs cp` shows what `strata fs cp --help` shows (commander's own help command stops at one level).
  let args = argv;
  if (argv[0] === 'help' && argv.length > 1) {
    let c = program;
    for (const name of argv.slice(1)) {
      const sub = c.commands.find((x) => x.name() === name || x.aliases().includes(name));
      if (!sub) {
        process.stderr.write(`strata: unknown command '${name}' (see '${commandPath(c)} --help')\n`);
        process.exit(EXIT_USAGE);
      }
      c = sub;
    }
    args = [...argv.slice(1), '--help'];
  }
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return exitWhenFlushed(0);
      // Help shown because a command was missing (`strata fs`) is a usage error; asked for (`strata help`) it is not.
      if (err.code === 'commander.help') return exitWhenFlushed(err.exitCode === 0 ? 0 : EXIT_USAGE);
      return exitWhenFlushed(EXIT_USAGE);
    }
    fail(err);
  }
}
