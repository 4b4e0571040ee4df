/**
 * Masters that share one PostgreSQL for both the namespace and the leader lease
 * (`--metastore <url> --leader-election metastore`): two real `strata master`
 * processes, one worker and one FUSE mount given both URLs. Each round writes files,
 * makes a directory and renames through the mount, SIGKILLs the leader and keeps
 * operating through the mount; once the standby leads, everything that succeeded
 * before the kill is there with its bytes (CACHE_THROUGH over a file:// under-store
 * shared by both masters). The killed master comes back as the new standby.
 * Failover time = kill -> first successful change through the mount.
 */

import t from 'tap';
import { spawn, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CLI, forceUnmount, runCli, tempRoot } from '../helpers/cluster';
import { postgresSkipReason, startPostgres } from '../helpers/postgres';
import type { LeaderResponse } from '../../src/common/protocol';

const ROUNDS = 3;
const LEASE_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

async function leaderView(url: string): Promise<LeaderResponse> {
  const res = await fetch(`${url}/api/v1/leader`, { signal: AbortSignal.timeout(2000) });
  return (await res.json()) as LeaderResponse;
}

t.test('two masters sharing one PostgreSQL for namespace and lease: nothing acknowledged is lost across SIGKILLs', { skip: postgresSkipReason() }, async (t) => {
  const pg = await startPostgres();
  t.teardown(() => pg.stop());
  const root = tempRoot('strata-ha-pg-');
  const ufsDir = path.join(root, 'ufs');
  await fsp.mkdir(ufsDir, { recursive: true });
  const procs = new Set<ChildProcess>();
  const mnt = path.join(root, 'mnt');
  await fsp.mkdir(mnt);
  let mountProc: ChildProcess | undefined;
  t.teardown(async () => {
    if (mountProc && mountProc.exitCode === null && mountProc.signalCode === null) {
      mountProc.kill('SIGTERM');
      await waitExit(mountProc, 10_000);
    }
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await Promise.all([...procs].map((p) => waitExit(p, 10_000)));
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all([...procs].map((p) => waitExit(p, 5_000)));
    forceUnmount(mnt);
    await fsp.rm(root, { recursive: true, force: true });
  });

  const start = (role: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ proc: ChildProcess; out: () => string; err: () => string }>((resolve, reject) => {
      const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', STRATA_LOG_FORMAT: 'json', ...env } });
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
        if (process.env.STRATA_TEST_LOGS) process.stderr.write(String(d).replace(/^/gm, `[${role}] `));
      });
      p.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${role} exited (${sig ?? code}): ${err}`));
      });
    });

  interface Master {
    name: string;
    port: number;
    url: string;
    proc: ChildProcess;
  }
  const startMaster = async (name: string, port = 0): Promise<Master> => {
    const home = path.join(root, name);
    const m = await start(`master ${name}`, ['master', '--home', home, '--port', String(port), '--ufs', `file://${ufsDir}`, '--metastore', pg.url, '--leader-election', 'metastore'], {
      STRATA_LEADER_LEASE_MS: String(LEASE_MS),
    });
    const url = /listening on (http:\/\/\S+)/.exec(m.out())![1]!;
    return { name, port: Number(new URL(url).port), url, proc: m.proc };
  };

  const a = await startMaster('a');
  await until('master a to lead', async () => ((await leaderView(a.url)).role === 'leader' ? true : undefined), 15_000);
  const b = await startMaster('b');
  await until('master b to stand by', async () => ((await leaderView(b.url)).leader === a.url ? true : undefined), 15_000);
  const both = `${a.url},${b.url}`;
  await start('worker', ['worker', '--home', path.join(root, 'worker'), '--port', '0', '--master', both, '--tiers', `ssd:${path.join(root, 'worker', 'ssd')}:1GiB`]);
  mountProc = (await start('mount', ['mount', '--home', path.join(root, 'client'), '--master', both, mnt])).proc;

  // What the mount acknowledged: path -> its bytes, or 'dir'; and names renamed away.
  const files = new Map<string, Buffer | 'dir'>();
  const gone = new Set<string>();
  const check = async (label: string) => {
    let ok = 0;
    const bad: string[] = [];
    for (const [p, want] of files) {
      try {
        if (want === 'dir') {
          if ((await fsp.stat(path.join(mnt, p))).isDirectory()) ok++;
          else bad.push(`${p}: not a directory`);
        } else if ((await fsp.readFile(path.join(mnt, p))).equals(want)) ok++;
        else bad.push(`${p}: other bytes`);
      } catch (err) {
        bad.push(`${p}: ${(err as NodeJS.ErrnoException).code}`);
      }
    }
    for (const p of gone) {
      const there = await fsp.stat(path.join(mnt, p)).then(() => true, () => false);
      if (there) bad.push(`${p}: still there after its rename`);
    }
    t.same(bad, [], `${label}: all ${files.size} acknowledged files and directories are there with their bytes (${ok} checked), ${gone.size} renamed names gone`);
  };

  // A mount made on the first leader after the standby started: the standby learns it when it takes over.
  const extraDir = path.join(root, 'extra');
  await fsp.mkdir(extraDir);
  const mounted = await runCli(['fs', 'mount', '/extra', `file://${extraDir}`, '--master', both]);
  t.equal(mounted.code, 0, `strata fs mount /extra on the leader: ${mounted.stderr}`);
  files.set('extra', 'dir');

  const failovers: number[] = [];
  let leader = a;
  let standby = b;
  for (let round = 1; round <= ROUNDS; round++) {
    const dir = `r${round}`;
    await fsp.mkdir(path.join(mnt, dir));
    files.set(dir, 'dir');
    await fsp.mkdir(path.join(mnt, dir, 'sub'));
    files.set(`${dir}/sub`, 'dir');
    for (let j = 0; j < 5; j++) {
      const bytes = randomBytes(1000 + j * 40_000 + round);
      const p = `${dir}/sub/f${j}`;
      await fsp.writeFile(path.join(mnt, p), bytes);
      files.set(p, bytes);
    }
    await fsp.rename(path.join(mnt, dir, 'sub', 'f0'), path.join(mnt, dir, 'renamed0'));
    files.set(`${dir}/renamed0`, files.get(`${dir}/sub/f0`)!);
    files.delete(`${dir}/sub/f0`);
    gone.add(`${dir}/sub/f0`);
    await check(`round ${round}, before the kill`);

    const killedAt = Date.now();
    leader.proc.kill('SIGKILL');
    await waitExit(leader.proc, 10_000);
    // Keep operating through the mount: each change either succeeds (and is then kept) or fails, and is tried again.
    let attempt = 0;
    let failed = 0;
    for (;;) {
      const bytes = randomBytes(5000);
      const p = `${dir}/after-kill-${attempt++}`;
      try {
        await fsp.writeFile(path.join(mnt, p), bytes);
        files.set(p, bytes);
        break;
      } catch (err) {
        failed++;
        if (Date.now() - killedAt > 60_000) throw err;
        await sleep(200);
      }
    }
    const took = Date.now() - killedAt;
    failovers.push(took);
    t.ok(took < 30_000, `round ${round}: a change through the mount succeeded ${took} ms after the kill (${failed} failed before)`);
    t.equal((await leaderView(standby.url)).role, 'leader', `round ${round}: ${standby.name} leads`);
    await fsp.mkdir(path.join(mnt, dir, 'after-kill-dir'));
    files.set(`${dir}/after-kill-dir`, 'dir');
    const extra = randomBytes(3000);
    await fsp.writeFile(path.join(mnt, 'extra', `${dir}.bin`), extra);
    files.set(`extra/${dir}.bin`, extra);
    t.ok((await fsp.readFile(path.join(extraDir, `${dir}.bin`))).equals(extra), `round ${round}: the new leader writes /extra through to its own under-store (it knows the mounts made by an earlier leader)`);
    await check(`round ${round}, after the takeover`);

    // The killed master comes back on its port as the new standby.
    leader.proc = (await startMaster(leader.name, leader.port)).proc;
    const back = await until(`round ${round}: ${leader.name} back as standby`, async () => {
      const v = await leaderView(leader.url);
      return v.leader === standby.url ? v : undefined;
    }, 15_000);
    t.equal(back.role, 'standby', `round ${round}: the restarted ${leader.name} stands by`);
    [leader, standby] = [standby, leader];
  }
  await check('at the end');
  const sorted = [...failovers].sort((x, y) => x - y);
  t.comment(`failover (SIGKILL of the leader -> first successful write through the mount) over ${ROUNDS} kills, lease ${LEASE_MS} ms: min ${sorted[0]} ms, median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms (${failovers.join(', ')})`);
});
