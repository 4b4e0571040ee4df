/**
 * A real PostgreSQL server for tests: Debian's binaries, a fresh cluster in a temp
 * dir (initdb), listening on a free loopback port, stopped and removed by `stop()`.
 * PostgreSQL refuses to run as root, so as root the cluster belongs to the
 * `postgres` user the Debian package creates.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
   * listens on `listenAddress` there. Default: the test's own namespace.
   */
  netns?: string;
  /** The address to listen on. Default 127.0.0.1. */
  listenAddress?: string;
  /** The port. Default a free loopback port of the test's namespace (any port is free in a new namespace). */
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

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(postgresSkipReason());
  const asRoot = process.getuid?.() === 0;
  const base = mkdtempSync(path.join(os.tmpdir(), 'strata-pg-'));
  const dataDir = path.join(base, 'data');
  const sockDir = path.join(base, 'sock');
  // Commands that open sockets run inside the namespace (nsenter enters only its network).
  const inNetns = (argv: string[]): string[] => (options.netns ? ['nsenter', `--net=/run/netns/${options.netns}`, '--', ...argv] : argv);
  // Run a server binary as the postgres user when we are root.
  const run = (cmd: string, args: string[]): void => {
    const full = path.join(bin, cmd);
    const [file, ...rest] = inNetns(asRoot ? ['runuser', '-u', 'postgres', '--', full, ...args] : [full, ...args]);
    execFileSync(file!, rest, { stdio: 'pipe' });
  };
  if (asRoot) {
    chmodSync(base, 0o755);
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(base, uid, gid);
  }
  run('initdb', ['-D', dataDir, '-U', 'strata', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
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
  await start();
  const psql = (sql: string): void => {
    const [file, ...args] = inNetns(['psql', '-h', host, '-p', String(port), '-U', 'strata', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
    execFileSync(file!, args, { stdio: 'pipe' });
  };
  try {
    psql('CREATE DATABASE strata');
  } catch (err) {
    // The caller gets no handle to stop it with: a server left running here would outlive the test.
    try {
      run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
    throw err;
  }
  let stopped = false;
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
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']);
      } catch {
        // already stopped
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
