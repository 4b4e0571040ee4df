/**
 * `npm run soak -- --minutes N`: a soak test of a whole cluster, not part of `npm test`.
 *
 *   npm run soak -- [--minutes 10] [--clients 8] [--workers 3] [--mounts 2] [--keep]
 *
 * Starts a master, `--workers` workers and `--mounts` FUSE mounts as separate processes on
 * loopback (the test helpers' multi-cluster), then runs `--clients` concurrent clients for
 * `--minutes`, each in its own directory through one mount: create, overwrite, write in
 * place, read, rename and unlink, with every byte read checked against the client's model
 * of its files. Files not changed for a few seconds are also read through another mount
 * (close-to-open across hosts). Every 10 s it prints ops/s and errors; at the end the RSS
 * and open file descriptors of every Strata process at the start and the end, and a final
 * check of every file. Exit code 1 on any verification failure or error.
 *
 * Needs root and fuse3 (FUSE mounts). Everything is stopped and unmounted at the end, on
 * failure, and on SIGINT/SIGTERM.
 */

import { randomBytes, randomInt } from 'node:crypto';
import { promises as fsp, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { startCluster, MultiCluster } from '../test/helpers/multi-cluster';

interface Args {
  minutes: number;
  clients: number;
  workers: number;
  mounts: number;
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { minutes: 10, clients: 8, workers: 3, mounts: 2, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${k} needs a positive number`);
      return v;
    };
    if (k === '--minutes') a.minutes = num();
    else if (k === '--clients') a.clients = Math.floor(num());
    else if (k === '--workers') a.workers = Math.floor(num());
    else if (k === '--mounts') a.mounts = Math.floor(num());
    else if (k === '--keep') a.keep = true;
    else throw new Error(`unknown option ${k} (see the comment at the top of scripts/soak.ts)`);
  }
  return a;
}

/** Counters shared by all clients. */
const stats = { ops: 0, errors: 0, verifyFailures: 0, bytesRead: 0, bytesWritten: 0, crossReads: 0 };
const firstErrors: string[] = [];

function fail(kind: 'error' | 'verify', what: string): void {
  if (kind === 'error') stats.errors++;
  else stats.verifyFailures++;
  if (firstErrors.length < 20) firstErrors.push(`${kind}: ${what}`);
}

interface Model {
  data: Buffer;
  changedAt: number;
}

/** A random size: mostly small, sometimes a few MiB (several pages). */
function randomSize(): number {
  return randomInt(100) < 5 ? randomInt(2 * 1024 * 1024, 4 * 1024 * 1024) : randomInt(0, 384 * 1024);
}

async function client(k: number, c: MultiCluster, until: number): Promise<Map<string, Model>> {
  const own = c.mounts[k % c.mounts.length]!;
  const other = c.mounts[(k + 1) % c.mounts.length]!;
  const dir = `c${k}`;
  await fsp.mkdir(path.join(own, dir));
  const files = new Map<string, Model>();
  let next = 0;
  const pick = (): string | undefined => {
    if (files.size === 0) return undefined;
    const names = [...files.keys()];
    return names[randomInt(names.length)];
  };
  /** After an error the file's state is unknown: forget it, and remove it if it is there. */
  const forget = async (name: string) => {
    files.delete(name);
    await fsp.rm(path.join(own, dir, name), { force: true }).catch(() => undefined);
  };
  while (Date.now() < until) {
    const r = randomInt(100);
    const name = pick();
    const p = (n: string, m = own) => path.join(m, dir, n);
    let op = '';
    try {
      if (r < 20 || !name) {
        op = 'create';
        if (files.size >= 30 && name) {
          op = 'unlink';
          await fsp.unlink(p(name));
          files.delete(name);
        } else {
          const n = `f${next++}`;
          const data = randomBytes(randomSize());
          await fsp.writeFile(p(n), data, { flag: 'wx' });
          files.set(n, { data, changedAt: Date.now() });
          stats.bytesWritten += data.length;
        }
      } else if (r < 35) {
        op = 'overwrite';
        const data = randomBytes(randomSize());
        await fsp.writeFile(p(name), data);
        files.set(name, { data, changedAt: Date.now() });
        stats.bytesWritten += data.length;
      } else if (r < 45) {
        op = 'pwrite';
        const m = files.get(name)!;
        const at = randomInt(0, m.data.length + 1);
        const piece = randomBytes(randomInt(1, 128 * 1024));
        const fh = await fsp.open(p(name), 'r+');
        try {
          await fh.write(piece, 0, piece.length, at);
        } finally {
          await fh.close();
        }
        const grown = Buffer.alloc(Math.max(m.data.length, at + piece.length));
        m.data.copy(grown);
        piece.copy(grown, at);
        files.set(name, { data: grown, changedAt: Date.now() });
        stats.bytesWritten += piece.length;
      } else if (r < 80) {
        const m = files.get(name)!;
        // Across mounts only after the kernel's 1 s entry/attribute timeouts: close-to-open, as NFS.
        const cross = c.mounts.length > 1 && Date.now() - m.changedAt > 2500 && randomInt(3) === 0;
        op = cross ? 'read (other mount)' : 'read';
        const got = await fsp.readFile(p(name, cross ? other : own));
        if (cross) stats.crossReads++;
        stats.bytesRead += got.length;
        if (!got.equals(m.data)) {
          let at = 0;
          while (at < got.length && at < m.data.length && got[at] === m.data[at]) at++;
          fail('verify', `${op} ${dir}/${name}: ${got.length} bytes, expected ${m.data.length}; first difference at ${at}`);
        }
      } else if (r < 90) {
        op = 'rename';
        const n = `f${next++}`;
        await fsp.rename(p(name), p(n));
        const m = files.get(name)!;
        files.delete(name);
        files.set(n, { data: m.data, changedAt: Date.now() });
      } else {
        op = 'unlink';
        await fsp.unlink(p(name));
        files.delete(name);
      }
      stats.ops++;
    } catch (err) {
      fail('error', `${op} ${dir}/${name ?? ''}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      if (name && op !== 'read' && op !== 'read (other mount)') await forget(name);
    }
  }
  return files;
}

interface Usage {
  rssKiB: number;
  fds: number;
  /** Open descriptors by kind: socket, pipe, file, other. */
  kinds: Record<string, number>;
}

/** RSS (KiB) and open descriptors of a process, from /proc. */
function usage(pid: number): Usage {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const kinds: Record<string, number> = {};
    const fds = readdirSync(`/proc/${pid}/fd`);
    for (const fd of fds) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue; // closed meanwhile
      }
      const kind = target.startsWith('socket:') ? 'socket' : target.startsWith('pipe:') ? 'pipe' : target.startsWith('/') ? 'file' : 'other';
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
    return { rssKiB: rss, fds: fds.length, kinds };
  } catch {
    return { rssKiB: 0, fds: 0, kinds: {} };
  }
}

function snapshot(c: MultiCluster): Map<string, Usage> {
  const out = new Map<string, Usage>();
  const counts = new Map<string, number>();
  for (const { role, proc } of c.processes()) {
    if (proc.exitCode !== null || proc.signalCode !== null) continue;
    const i = counts.get(role) ?? 0;
    counts.set(role, i + 1);
    out.set(`${role}${i}`, usage(proc.pid!));
  }
  return out;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const teardowns: (() => unknown)[] = [];
  const cleanup = async () => {
    for (const fn of teardowns.splice(0)) await fn();
  };
  const onSignal = () => {
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    console.log(`soak: starting a master, ${args.workers} workers and ${args.mounts} mounts ...`);
    const c = await startCluster({ teardown: (fn) => teardowns.push(fn) }, { workers: args.workers, mounts: args.mounts });
    if (args.keep) console.log(`soak: cluster in ${c.root}`);
    const started = Date.now();
    const until = started + args.minutes * 60_000;
    console.log(`soak: ${args.clients} clients for ${args.minutes} min`);
    const running = Array.from({ length: args.clients }, (_, k) => client(k, c, until));
    // The start figures are taken once the clients have warmed the caches up a little.
    let startUsage: Map<string, Usage> | undefined;
    const warmAt = started + Math.min(15_000, (until - started) / 4);
    let lastOps = 0;
    let lastAt = started;
    const ticker = setInterval(() => {
      const now = Date.now();
      if (!startUsage && now >= warmAt) startUsage = snapshot(c);
      const rate = ((stats.ops - lastOps) * 1000) / (now - lastAt);
      lastOps = stats.ops;
      lastAt = now;
      console.log(
        `soak: ${((now - started) / 1000).toFixed(0)}s ops ${stats.ops} (${rate.toFixed(0)}/s) errors ${stats.errors} verify failures ${stats.verifyFailures} read ${(stats.bytesRead / 2 ** 20).toFixed(0)} MiB written ${(stats.bytesWritten / 2 ** 20).toFixed(0)} MiB`,
      );
    }, 10_000);
    const models = await Promise.all(running);
    clearInterval(ticker);
    const seconds = (Date.now() - started) / 1000;
    const endUsage = snapshot(c);

    // A last check of every file, through the mount its client used.
    let checked = 0;
    for (const [k, files] of models.entries()) {
      for (const [name, m] of files) {
        const got: Buffer | NodeJS.ErrnoException = await fsp.readFile(path.join(c.mounts[k % c.mounts.length]!, `c${k}`, name)).catch((e: NodeJS.ErrnoException) => e);
        if (!Buffer.isBuffer(got)) fail('error', `final read c${k}/${name}: ${got.code ?? got.message}`);
        else if (!got.equals(m.data)) fail('verify', `final read c${k}/${name}: wrong bytes`);
        else checked++;
      }
    }

    console.log(`\nsoak: ${stats.ops} operations in ${seconds.toFixed(0)} s = ${(stats.ops / seconds).toFixed(1)} ops/s; ${stats.errors} errors; ${stats.verifyFailures} verification failures`);
    console.log(`soak: read ${(stats.bytesRead / 2 ** 20).toFixed(0)} MiB (${stats.crossReads} reads through the other mount), wrote ${(stats.bytesWritten / 2 ** 20).toFixed(0)} MiB; final check of ${checked} files`);
    console.log('soak: process       RSS start -> end (MiB)   open FDs start -> end');
    for (const [name, end] of endUsage) {
      const s = startUsage?.get(name) ?? end;
      const kinds = (u: Usage) => Object.entries(u.kinds).map(([k, n]) => `${n} ${k}`).join(', ');
      console.log(`soak: ${name.padEnd(12)}  ${(s.rssKiB / 1024).toFixed(0).padStart(6)} -> ${(end.rssKiB / 1024).toFixed(0).padEnd(12)}  ${String(s.fds).padStart(6)} -> ${end.fds}   (${kinds(s)} -> ${kinds(end)})`);
    }
    for (const e of firstErrors) console.log(`soak: ${e}`);
    return stats.verifyFailures > 0 || stats.errors > 0 ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`soak: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
