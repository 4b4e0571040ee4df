/**
 * Test harness: real `strata local` process trees on free ports, FUSE-mounted into
 * temp dirs. Teardown always stops the processes and unmounts, even after a failure.
 */

import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO = process.env.STRATA_REPO ?? path.resolve(__dirname, '..', '..', '..');
export const CLI = path.join(REPO, 'bin', 'strata');

type Tap = { teardown(fn: () => unknown): void };

export interface LocalCluster {
  root: string;
  home: string;
  mnt: string;
  ufsDir: string;
  masterUrl: string;
  workerUrl: string;
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait for a clean exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL the whole process tree, leaving whatever state a crash leaves. */
  kill(): Promise<void>;
}

const tempRoots = new Set<string>();

/**
 * A temp dir for one test. Whatever a test's own teardown leaves of it goes when the
 * test process exits, unless something is still mounted inside it: removing through a
 * leaked mount would reach into the store or the cache behind it.
 */
export function tempRoot(prefix = 'strata-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (tempRoots.size === 0) process.once('exit', removeTempRoots);
  tempRoots.add(dir);
  return dir;
}

function removeTempRoots(): void {
  let mounts: string[];
  try {
    // Mount points as the kernel writes them: space, tab, newline and backslash as octal escapes.
    mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  } catch {
    return;
  }
  for (const root of tempRoots) {
    let dir: string;
    try {
      dir = realpathSync(root); // the kernel names mounts by their real path
    } catch {
      continue; // gone already
    }
    if (mounts.some((m) => m === dir || m.startsWith(dir + '/'))) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort at exit: a dir still busy stays for the next clean-up
    }
  }
}

export function isMounted(dir: string): boolean {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[1] === dir);
}

export function forceUnmount(dir: string): void {
  if (isMounted(dir)) spawnSync('fusermount', ['-uz', dir]);
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export interface StartOptions {
  root?: string;
  /** Reuse dirs of an earlier cluster (restart after a crash). */
  reuse?: { home: string; mnt: string; ufsDir: string };
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Starts `strata local` and resolves once it printed that it mounted. */
export async function startLocal(t: Tap, opts: StartOptions = {}): Promise<LocalCluster> {
  const root = opts.root ?? tempRoot();
  const home = opts.reuse?.home ?? path.join(root, 'home');
  const mnt = opts.reuse?.mnt ?? path.join(root, 'mnt');
  const ufsDir = opts.reuse?.ufsDir ?? path.join(root, 'ufs');
  if (!opts.reuse) {
    mkdirSync(mnt, { recursive: true });
    mkdirSync(ufsDir, { recursive: true });
  }
  const args = [CLI, 'local', '--home', home, '--mount', mnt, '--ufs', `file://${ufsDir}`, '--master-port', '0', '--worker-port', '0', '--sync-interval-ms', '0', ...(opts.args ?? [])];
  const proc = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...opts.env } });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));

  const killTree = () => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      if (!(await waitExit(proc, 20_000))) killTree();
    }
    killTree();
    forceUnmount(mnt);
    if (!opts.root && !opts.reuse) rmSync(root, { recursive: true, force: true });
  });

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`strata local did not mount within 60s\nstdout: ${out}\nstderr: ${err}`)), 60_000);
    const check = () => {
      if (/mounted at /.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`strata local exited (${sig ?? code}) before mounting\nstdout: ${out}\nstderr: ${err}`));
    });
  });
  const m = /master (http:\/\/[^,]+), worker (http:\/\/[^,]+),/.exec(out);
  if (!m) throw new Error(`cannot parse addresses from: ${out}`);
  return {
    root,
    home,
    mnt,
    ufsDir,
    masterUrl: m[1]!,
    workerUrl: m[2]!,
    proc,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      proc.kill('SIGTERM');
      await waitExit(proc, 30_000);
      return proc.exitCode;
    },
    async kill() {
      killTree();
      await waitExit(proc, 10_000);
      // Let the children die too before the caller restarts.
      await new Promise((r) => setTimeout(r, 300));
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `strata ARGS…` to completion. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.stdin.end(input ?? '');
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
