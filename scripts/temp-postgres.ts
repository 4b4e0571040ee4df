/**
 * A real, throwaway PostgreSQL server for tests and the benchmark: Debian's
 * binaries, a fresh cluster in a temp dir (initdb), listening on a free loopback
 * port, stopped and removed by `stop()`. PostgreSQL refuses to run as root, so as
 * root the cluster belongs to the `postgres` user the Debian package creates.
 *
 * Should the process that started it end without `stop()` (a test killed at its
 * timeout, a crash, SIGKILL), a watchdog stops the server and removes its files:
 * a small detached shell that waits for its stdin, a pipe from this process, to
 * close, as the kernel does when this process ends however it ends.
 *
 * initdb takes ~2.5 s here, copying a cluster ~0.2 s: the first start keeps a
 * freshly initialised cluster as a template in the temp dir
 * (`strata-pg-template-<major>-<user>`, ~40 MB, never started) and every start
 * copies it.
 *
 * Nothing here imports Strata's own code, so test/ and scripts/ both use it.
 */

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface PostgresServer {
  /** postgres://strata@HOST:PORT/strata (HOST: the listen address, 127.0.0.1 by default) */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (fast shutdown) and removes its files. */
  stop(): Promise<void>;
  /** SIGKILLs the postmaster and its backends (a crash of the server), leaving the data dir for `start()`. */
  kill(): void;
  /** Starts the server again on the same data dir and port. */
  start(): Promise<void>;
}

export interface PostgresOptions {
  /**
   * A network namespace (a name under /run/netns) to run the server in; it then
   * listens on `listenAddress` there. Default: the caller's own namespace.
   */
  netns?: string;
  /** The address to listen on. Default 127.0.0.1. */
  listenAddress?: string;
  /** The port. Default a free loopback port of the caller's namespace (any port is free in a new namespace). */
  port?: number;
  /** A network (CIDR) whose clients are trusted besides loopback, e.g. the hosts of a test network. */
  clientsFrom?: string;
}

/** The directory with initdb/pg_ctl, or undefined when PostgreSQL's server is not installed. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(root, versions[0]!, 'bin') : undefined;
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export function postgresSkipReason(): string | undefined {
  if (!postgresBinDir()) return 'PostgreSQL server binaries not installed (apt-get install postgresql)';
  if (process.getuid?.() === 0 && spawnSync('id', ['postgres']).status !== 0) return 'running as root and there is no postgres user to run the server as';
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs `argv` (an immediate stop of the server) and removes `base` once this
 * process is gone; `disarm()` lets it exit at once instead, when stop() did it.
 */
function startWatchdog(base: string, argv: string[]): { disarm(): void } {
  // `read` returns at end of input: this process ended (or a line came that says otherwise).
  const script = 'base=$1; shift; read -r line; [ "$line" = disarm ] && exit 0; "$@" >/dev/null 2>&1; rm -rf "$base"';
  const dog = spawn('sh', ['-c', script, 'strata-pg-watchdog', base, ...argv], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  dog.on('error', () => undefined);
  dog.stdin!.on('error', () => undefined);
  // Neither the process nor its pipe keeps this process alive.
  dog.unref();
  (dog.stdin as unknown as { unref?: () => void }).unref?.();
  return {
    disarm() {
      dog.stdin!.end('disarm\n');
    },
  };
}

/** Owns `dir` by the postgres user (as root), so that the server may use what is in it. */
function giveToPostgres(dir: string, asRoot: boolean): void {
  if (!asRoot) return;
  chmodSync(dir, 0o755);
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(dir, uid, gid);
}

/**
 * The data dir of a cluster as initdb leaves it, made once per PostgreSQL major
 * version and user: built aside and renamed into place, so concurrent first starts
 * never see half of one.
 */
function clusterTemplate(bin: string, run: (cmd: string, args: string[]) => void, asRoot: boolean): string {
  const dir = path.join(os.tmpdir(), `strata-pg-template-${path.basename(path.dirname(bin))}-${asRoot ? 'postgres' : process.getuid?.() ?? 'user'}`);
  const data = path.join(dir, 'data');
  if (existsSync(path.join(data, 'PG_VERSION'))) return data;
  const staging = mkdtempSync(path.join(os.tmpdir(), 'strata-pg-template-new-'));
  try {
    giveToPostgres(staging, asRoot);
    run('initdb', ['-D', path.join(staging, 'data'), '-U', 'strata', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
    try {
      renameSync(staging, dir);
    } catch {
      // Another process put one in place first (or a broken one is there: replaced next time it is found so).
      if (!existsSync(path.join(data, 'PG_VERSION'))) {
        rmSync(dir, { recursive: true, force: true });
        renameSync(staging, dir);
      }
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return data;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(postgresSkipReason());
  const asRoot = process.getuid?.() === 0;
  const base = mkdtempSync(path.join(os.tmpdir(), 'strata-pg-'));
  const dataDir = path.join(base, 'data');
  const sockDir = path.join(base, 'sock');
  const asPostgres = (full: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', full, ...args]] : [full, args]);
  // Commands that open sockets run inside the namespace (nsenter enters only its network).
  const inNetns = (argv: string[]): string[] => (options.netns ? ['nsenter', `--net=/run/netns/${options.netns}`, '--', ...argv] : argv);
  const stopArgs = ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'];
  const watchdog = startWatchdog(base, asPostgres(path.join(bin, 'pg_ctl'), stopArgs).flat());
  // Run a server binary as the postgres user when we are root.
  const run = (cmd: string, args: string[]): void => {
    const [file, ...argv] = inNetns(asPostgres(path.join(bin, cmd), args).flat());
    execFileSync(file!, argv, { stdio: 'pipe' });
  };
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      run('pg_ctl', stopArgs);
    } catch {
      // already stopped
    }
    rmSync(base, { recursive: true, force: true });
    watchdog.disarm();
  };
  giveToPostgres(base, asRoot);
  try {
    // initdb opens no socket: it runs outside any namespace.
    const template = clusterTemplate(bin, (cmd, args) => void execFileSync(...asPostgres(path.join(bin, cmd), args), { stdio: 'pipe' }), asRoot);
    execFileSync('cp', ['-a', template, dataDir]);
  } catch (err) {
    await stop();
    throw err;
  }
  const host = options.listenAddress ?? '127.0.0.1';
  // initdb trusts loopback only; clients of a server on another address come from its network.
  if (options.clientsFrom) appendFileSync(path.join(dataDir, 'pg_hba.conf'), `host all all ${options.clientsFrom} trust\n`);
  const port = options.port ?? (await freePort());
  const opts = `-c listen_addresses=${host} -c port=${port} -c unix_socket_directories=${sockDir} -c fsync=on -c max_connections=200`;
  // Processes of a killed server: a new one cannot start while they still hold its shared memory.
  let killed: number[] = [];
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const start = async (): Promise<void> => {
    for (const deadline = Date.now() + 10_000; killed.some(alive) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    killed = [];
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', 'mkdir', '-p', sockDir]);
    else execFileSync('mkdir', ['-p', sockDir]);
    run('pg_ctl', ['-D', dataDir, '-o', opts, '-l', path.join(base, 'server.log'), '-w', '-t', '60', 'start']);
  };
  try {
    await start();
    const psql = (sql: string): void => {
      const [file, ...args] = inNetns(['psql', '-h', host, '-p', String(port), '-U', 'strata', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
      execFileSync(file!, args, { stdio: 'pipe' });
    };
    psql('CREATE DATABASE strata');
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `postgres://strata@${host}:${port}/strata`,
    port,
    dataDir,
    start,
    kill() {
      try {
        const pid = Number(execFileSync('head', ['-1', path.join(dataDir, 'postmaster.pid')]).toString().trim());
        // Its backends by parent pid, taken before the kill; left alone they would linger until they notice.
        const children = spawnSync('pgrep', ['-P', String(pid)]).stdout.toString().split('\n').filter(Boolean).map(Number);
        process.kill(pid, 'SIGKILL');
        for (const child of children) {
          try {
            process.kill(child, 'SIGKILL');
          } catch {
            // exited already
          }
        }
        killed = [pid, ...children];
      } catch {
        // not running
      }
    },
    stop,
  };
}
