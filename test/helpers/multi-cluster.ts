/**
 * A cluster of separate processes on loopback: one master, N workers, M FUSE
 * mounts, each a real `strata` process. Workers can be SIGKILLed and restarted on
 * the same home. Teardown stops everything and unmounts, even after a failure.
 */

import { spawn, ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CLI, forceUnmount, tempRoot } from './cluster';

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

function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export async function startCluster(t: Tap, opts: MultiClusterOptions): Promise<MultiCluster> {
  const root = opts.root ?? tempRoot('strata-cluster-');
  const ufsDir = path.join(root, 'ufs');
  await fsp.mkdir(ufsDir, { recursive: true });
  const procs = new Set<ChildProcess>();
  const mounts: string[] = [];
  t.teardown(async () => {
    // A paused (SIGSTOPped) process would not act on SIGTERM.
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGCONT');
    // Mounts first (SIGTERM unmounts cleanly), then everything else.
    for (const p of procs) if (p.exitCode === null && p.signalCode === null && (p as ChildProcess & { role?: string }).role === 'mount') p.kill('SIGTERM');
    await Promise.all([...procs].map((p) => waitExit(p, 10_000)));
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all([...procs].map((p) => waitExit(p, 5_000)));
    for (const m of mounts) forceUnmount(m);
    if (!opts.root) await fsp.rm(root, { recursive: true, force: true });
  });

  const start = (role: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<ClusterProcess>((resolve, reject) => {
      const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...env } });
      (p as ChildProcess & { role?: string }).role = role;
      procs.add(p);
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
      master.proc = (await start('master', masterArgs(master.port), opts.masterEnv)).proc;
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
    await w.restart();
    workers.push(w);
  }

  for (let i = 0; i < opts.mounts; i++) {
    const dir = path.join(root, `mnt${i}`);
    await fsp.mkdir(dir);
    mounts.push(dir);
    await start('mount', ['mount', '--home', path.join(root, `client${i}`), '--master', masterUrl, ...(opts.mountArgs?.(i) ?? []), dir], opts.mountEnv?.(i));
  }

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

  const processes = () => [...procs].map((p) => ({ role: (p as ChildProcess & { role?: string }).role ?? '?', proc: p }));
  return { root, ufsDir, masterUrl, master, processes, workers, mounts, workerMetric, metricOf };
}
