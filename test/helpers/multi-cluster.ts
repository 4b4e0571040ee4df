/**
 * Clusters of separate `strata` processes on loopback, for end-to-end tests.
 *
 * `startCluster`: one master, N workers, M FUSE mounts. Workers can be SIGKILLed
 * and restarted on the same home.
 *
 * `startMasters`: several masters that elect one leader (high availability); the
 * test adds workers and mounts with `start`, and kills, stops and restarts masters.
 *
 * Teardown stops everything and unmounts, even after a failure; should the test
 * process die without its teardown (killed at its timeout), a reaper does it.
 */

import { spawn, ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CLI, forceUnmount, tempRoot } from './cluster';
import type { LeaderResponse } from '../../src/common/protocol';

type Tap = { teardown(fn: () => unknown): void };

export interface ClusterProcess {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
}

export interface ClusterWorker {
  home: string;
  url: string;
  id: number;
  proc: ChildProcess;
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, its sockets stay open, nothing answers (a partition). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Starts it again on the same home (and a new port). */
  restart(): Promise<void>;
}

/** The master process; restartable on the same home and port, so clients find it again. */
export interface ClusterMaster {
  home: string;
  port: number;
  proc: ChildProcess;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

export interface MultiCluster {
  root: string;
  ufsDir: string;
  masterUrl: string;
  master: ClusterMaster;
  /** Every process started so far (dead ones too), with its role. */
  processes(): { role: string; proc: ChildProcess }[];
  workers: ClusterWorker[];
  mounts: string[];
  /** Sum of a counter over every live worker's /metrics (labels summed). */
  workerMetric(name: string): Promise<number>;
  /** The same for one worker. */
  metricOf(w: ClusterWorker, name: string): Promise<number>;
}

export interface MultiClusterOptions {
  workers: number;
  mounts: number;
  /** Tiers of worker i as a --tiers value; `{dir}` is replaced by the worker's home. */
  tiers?: (i: number) => string;
  masterEnv?: NodeJS.ProcessEnv;
  workerEnv?: NodeJS.ProcessEnv;
  mountEnv?: (i: number) => NodeJS.ProcessEnv;
  masterArgs?: string[];
  workerArgs?: string[];
  mountArgs?: (i: number) => string[];
  /** The master's home; default `<root>/master` (e.g. a small tmpfs made by the test). */
  masterHome?: string;
  /** The cluster's root dir; default a new temp dir (removed in teardown unless given). */
  root?: string;
}

/** Resolves once `p` exited, or after `ms` (check `p.exitCode` / `p.signalCode`). */
export function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 100 ms until it answers something (a throw counts as not yet); fails after `ms`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A master's own view of the election: `GET /api/v1/leader`. */
export async function leaderView(url: string): Promise<LeaderResponse> {
  const res = await fetch(`${url}/api/v1/leader`, { signal: AbortSignal.timeout(2000) });
  return (await res.json()) as LeaderResponse;
}

/** Starts `strata` processes for one test; its teardown ends them all. */
interface ProcessSet {
  /** Starts `strata <args>` and resolves once it says it listens, serves or mounted. */
  start(role: string, args: string[], env?: NodeJS.ProcessEnv): Promise<ClusterProcess>;
  processes(): { role: string; proc: ChildProcess }[];
  /** A mount point to unmount by force in teardown, should its process not have. */
  addMountPoint(dir: string): void;
}

/**
 * Ends a test's processes should the test process die without its teardown (tap's
 * timeout ends it with SIGALRM, then SIGKILL): a detached shell that collects, from
 * its stdin, the pids, mount points and directories the test made, and when its
 * stdin closes (this process is gone) SIGTERMs and then SIGKILLs those pids that are
 * still `strata` processes, unmounts the mount points and removes the directories.
 * `disarm()` after a normal teardown lets it exit without doing anything.
 */
function startReaper(): { pid(pid: number | undefined): void; mountPoint(dir: string): void; dir(dir: string): void; disarm(): void } {
  const script = `
    pids=; mnts=; dirs=
    while read -r kind arg; do
      case "$kind" in
        pid) pids="$pids $arg" ;;
        mnt) mnts="$mnts $arg" ;;
        dir) dirs="$dirs $arg" ;;
        disarm) exit 0 ;;
      esac
    done
    ours() { grep -q strata "/proc/$1/cmdline" 2>/dev/null; }
    for p in $pids; do ours "$p" && kill -CONT "$p" && kill -TERM "$p"; done
    sleep 3
    for p in $pids; do ours "$p" && kill -KILL "$p"; done
    for m in $mnts; do fusermount -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    for d in $dirs; do rm -rf "$d"; done`;
  const dog = spawn('sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  dog.on('error', () => undefined);
  dog.stdin!.on('error', () => undefined);
  // Neither the process nor its pipe keeps the test alive.
  dog.unref();
  (dog.stdin as unknown as { unref?: () => void }).unref?.();
  const say = (line: string) => void (dog.stdin!.writable && dog.stdin!.write(line + '\n'));
  return {
    pid: (pid) => pid !== undefined && say(`pid ${pid}`),
    mountPoint: (dir) => say(`mnt ${dir}`),
    dir: (dir) => say(`dir ${dir}`),
    disarm: () => void (dog.stdin!.writable && dog.stdin!.end('disarm\n')),
  };
}

type RoledProcess = ChildProcess & { role?: string };
const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

/**
 * Teardown: wakes stopped processes, SIGTERMs the mounts (they unmount) and then
 * the rest, SIGKILLs what is left after 10 s, unmounts by force what is still
 * mounted, and removes `root` when `removeRoot`.
 */
function processSet(t: Tap, root: string, removeRoot: boolean, baseEnv: NodeJS.ProcessEnv): ProcessSet {
  const procs = new Set<RoledProcess>();
  const mountPoints: string[] = [];
  const reaper = startReaper();
  if (removeRoot) reaper.dir(root);
  t.teardown(async () => {
    // A paused (SIGSTOPped) process would not act on SIGTERM.
    for (const p of procs) if (alive(p)) p.kill('SIGCONT');
    // Mounts first (SIGTERM unmounts cleanly, while their masters and workers still answer), then everything else.
    const mounts = [...procs].filter((p) => p.role === 'mount');
    for (const p of mounts) if (alive(p)) p.kill('SIGTERM');
    await Promise.all(mounts.map((p) => waitExit(p, 10_000)));
    for (const p of procs) if (alive(p)) p.kill('SIGTERM');
    await Promise.all([...procs].map((p) => waitExit(p, 10_000)));
    for (const p of procs) if (alive(p)) p.kill('SIGKILL');
    await Promise.all([...procs].map((p) => waitExit(p, 5_000)));
    for (const m of mountPoints) forceUnmount(m);
    if (removeRoot) await fsp.rm(root, { recursive: true, force: true });
    reaper.disarm();
  });

  const start = (role: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<ClusterProcess>((resolve, reject) => {
      const p: RoledProcess = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...baseEnv, ...env } });
      p.role = role;
      procs.add(p);
      reaper.pid(p.pid);
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`${role} did not start in 60 s: ${err}`)), 60_000);
      p.stdout!.on('data', (d) => {
        out += d;
        if (/listening on|serving on|mounted at/.test(out)) {
          clearTimeout(timer);
          resolve({ proc: p, out: () => out, err: () => err });
        }
      });
      p.stderr!.on('data', (d) => {
        err += d;
        // STRATA_TEST_LOGS=1 shows every process's log, prefixed with its role.
        if (process.env.STRATA_TEST_LOGS) process.stderr.write(String(d).replace(/^/gm, `[${role}] `));
      });
      p.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${role} exited (${sig ?? code}): ${err}`));
      });
    });

  return {
    start,
    processes: () => [...procs].map((p) => ({ role: p.role ?? '?', proc: p })),
    addMountPoint: (dir) => {
      mountPoints.push(dir);
      reaper.mountPoint(dir);
    },
  };
}

/**
 * Starts a daemon again on the port it had. Test files run side by side, and another one's
 * outgoing connection may hold that port for a moment after it was let go: tried again for up to 10 s.
 */
export async function onItsOldPort<T>(startIt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await startIt();
    } catch (err) {
      const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' || /EADDRINUSE/.test((err as Error).message);
      if (!inUse || tries >= 20) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export async function startCluster(t: Tap, opts: MultiClusterOptions): Promise<MultiCluster> {
  const root = opts.root ?? tempRoot('strata-cluster-');
  const ufsDir = path.join(root, 'ufs');
  await fsp.mkdir(ufsDir, { recursive: true });
  const mounts: string[] = [];
  const { start, processes, addMountPoint } = processSet(t, root, !opts.root, {});

  const masterHome = opts.masterHome ?? path.join(root, 'master');
  const masterArgs = (port: number) => ['master', '--home', masterHome, '--port', String(port), '--ufs', `file://${ufsDir}`, '--sync-interval-ms', '0', ...(opts.masterArgs ?? [])];
  const m = await start('master', masterArgs(0), opts.masterEnv);
  const masterUrl = /listening on (http:\/\/\S+)/.exec(m.out())![1]!;
  const master: ClusterMaster = {
    home: masterHome,
    port: Number(new URL(masterUrl).port),
    proc: m.proc,
    async kill() {
      master.proc.kill('SIGKILL');
      await waitExit(master.proc, 10_000);
    },
    async restart() {
      master.proc = (await onItsOldPort(() => start('master', masterArgs(master.port), opts.masterEnv))).proc;
    },
  };

  const workers: ClusterWorker[] = [];
  for (let i = 0; i < opts.workers; i++) {
    const home = path.join(root, `worker${i}`);
    const tiers = (opts.tiers?.(i) ?? `ssd:{dir}/ssd:1GiB`).replace(/\{dir\}/g, home);
    const w: ClusterWorker = {
      home,
      url: '',
      id: 0,
      proc: undefined as unknown as ChildProcess,
      async kill() {
        w.proc.kill('SIGKILL');
        await waitExit(w.proc, 10_000);
      },
      pause() {
        w.proc.kill('SIGSTOP');
      },
      resume() {
        w.proc.kill('SIGCONT');
      },
      async restart() {
        const p = await start('worker', ['worker', '--home', home, '--port', '0', '--master', masterUrl, '--tiers', tiers, '--page-size', '1MiB', ...(opts.workerArgs ?? [])], opts.workerEnv);
        const mm = /strata worker (\d+) serving on (http:\/\/\S+)/.exec(p.out())!;
        w.id = Number(mm[1]);
        w.url = mm[2]!;
        w.proc = p.proc;
      },
    };
    workers.push(w);
  }
  // Side by side: each start is mostly Node loading code. Every worker is up before the mounts.
  await Promise.all(workers.map((w) => w.restart()));

  for (let i = 0; i < opts.mounts; i++) {
    const dir = path.join(root, `mnt${i}`);
    await fsp.mkdir(dir);
    mounts.push(dir);
    addMountPoint(dir);
  }
  await Promise.all(mounts.map((dir, i) => start('mount', ['mount', '--home', path.join(root, `client${i}`), '--master', masterUrl, ...(opts.mountArgs?.(i) ?? []), dir], opts.mountEnv?.(i))));

  const metricOf = async (w: ClusterWorker, name: string): Promise<number> => {
    if (w.proc.exitCode !== null || w.proc.signalCode !== null) return 0;
    const text = await (await fetch(`${w.url}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  };
  const workerMetric = async (name: string): Promise<number> => {
    let sum = 0;
    for (const w of workers) sum += await metricOf(w, name);
    return sum;
  };

  return { root, ufsDir, masterUrl, master, processes, workers, mounts, workerMetric, metricOf };
}

// ---- several masters, one leader ----------------------------------------------------------------

/** One of several masters; `kill`, `stop`/`resume` and `restart` act on its current process. */
export interface HaMaster {
  name: string;
  home: string;
  /** Fixed at its first start: a restarted master listens on the same port, so URL lists stay valid. */
  port: number;
  url: string;
  proc: ChildProcess;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, its connections stay open, nothing answers. */
  stop(): void;
  /** SIGCONT after stop(). */
  resume(): void;
  /** Starts it again on the same home and port. */
  restart(): Promise<void>;
}

export interface MasterSet {
  root: string;
  /** A file:// under-store directory every master serves. */
  ufsDir: string;
  /** In start order; the first one leads at the start, the others stand by. */
  masters: HaMaster[];
  /** Every master's URL, comma-separated, for `--master`. */
  urls: string;
  /** Starts another `strata` process (a worker, a mount: role 'mount'), stopped in teardown. */
  start(role: string, args: string[], env?: NodeJS.ProcessEnv): Promise<ClusterProcess>;
  /** Registers a mount point to unmount by force in teardown. */
  addMountPoint(dir: string): void;
}

export interface MasterSetOptions {
  /** The masters' names (default a, b); each gets `<root>/<name>` as its home. */
  names?: string[];
  /** Election arguments of `strata master` beyond home, port and under-store, e.g. `--leader-election URL`. */
  masterArgs: string[];
  masterEnv?: NodeJS.ProcessEnv;
  /** Environment of every process started (default: warn-level JSON logs). */
  env?: NodeJS.ProcessEnv;
  /** The temp dir's prefix. */
  prefix?: string;
}

/**
 * Masters over one under-store that elect a leader among themselves: the first
 * is started and waited for until it leads, then the others until each names it
 * as the leader.
 */
export async function startMasters(t: Tap, opts: MasterSetOptions): Promise<MasterSet> {
  const root = tempRoot(opts.prefix ?? 'strata-ha-');
  const ufsDir = path.join(root, 'ufs');
  await fsp.mkdir(ufsDir, { recursive: true });
  const { start, addMountPoint } = processSet(t, root, true, { STRATA_LOG_FORMAT: 'json', ...opts.env });
  const launch = async (name: string, home: string, port: number): Promise<{ proc: ChildProcess; url: string }> => {
    const m = await start(`master ${name}`, ['master', '--home', home, '--port', String(port), '--ufs', `file://${ufsDir}`, ...opts.masterArgs], opts.masterEnv);
    return { proc: m.proc, url: /listening on (http:\/\/\S+)/.exec(m.out())![1]! };
  };
  const masters: HaMaster[] = [];
  for (const name of opts.names ?? ['a', 'b']) {
    const home = path.join(root, name);
    const first = await launch(name, home, 0);
    const m: HaMaster = {
      name,
      home,
      port: Number(new URL(first.url).port),
      url: first.url,
      proc: first.proc,
      async kill() {
        m.proc.kill('SIGKILL');
        await waitExit(m.proc, 10_000);
      },
      stop() {
        m.proc.kill('SIGSTOP');
      },
      resume() {
        m.proc.kill('SIGCONT');
      },
      async restart() {
        m.proc = (await onItsOldPort(() => launch(name, home, m.port))).proc;
      },
    };
    masters.push(m);
    const leader = masters[0]!;
    if (m === leader) await until(`master ${name} to lead`, async () => ((await leaderView(m.url)).role === 'leader' ? true : undefined), 15_000);
    else await until(`master ${name} to name ${leader.name} as the leader`, async () => ((await leaderView(m.url)).leader === leader.url ? true : undefined), 15_000);
  }
  return { root, ufsDir, masters, urls: masters.map((m) => m.url).join(','), start, addMountPoint };
}
