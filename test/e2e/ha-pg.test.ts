/**
 * Masters that share one PostgreSQL for both the namespace and the leader lease
 * (`--metastore <url> --leader-election metastore`): two real `strata master`
 * processes, one worker and one FUSE mount given both URLs. Five rounds each lose
 * the leader, by SIGKILL or by SIGSTOP, while writes through the mount are in
 * flight; the test keeps operating through the mount until a change succeeds
 * (failover time = loss of the leader -> first successful change through the
 * mount). Once the standby leads, everything that succeeded before is there with
 * its bytes (CACHE_THROUGH over a file:// under-store shared by both masters), and
 * each write in flight at the loss either failed or is there whole.
 *
 * A SIGKILLed master comes back as the new standby. A SIGSTOPped one keeps its
 * connections and, when woken (SIGCONT) after the standby took over, still has a
 * request queued that it received while stopped: the fence must hold. It loses its
 * lease, answers that request NOT_LEADER without applying it, and stands by.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runCli } from '../helpers/cluster';
import { HaMaster, leaderView, startMasters, until } from '../helpers/multi-cluster';
import { postgresSkipReason, startPostgres } from '../helpers/postgres';

/** How each round loses its leader: five losses, two of them stalls. */
const LOSSES = ['SIGKILL', 'SIGSTOP', 'SIGKILL', 'SIGSTOP', 'SIGKILL'] as const;
const LEASE_MS = 3000;
/** Writes through the mount started just before each loss. */
const IN_FLIGHT = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The promise's outcome, or a rejection after `ms`: a FUSE call must fail rather than hang. */
function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)));
  return Promise.race([p, hang]).then(
    (value) => ({ status: 'fulfilled' as const, value }),
    (reason: unknown) => ({ status: 'rejected' as const, reason }),
  ).finally(() => clearTimeout(timer));
}

const summary = (xs: number[]): string => {
  const s = [...xs].sort((x, y) => x - y);
  return `min ${s[0]} ms, median ${s[Math.floor(s.length / 2)]} ms, max ${s[s.length - 1]} ms`;
};

t.test('two masters sharing one PostgreSQL for namespace and lease: nothing acknowledged is lost across SIGKILLs and SIGSTOPs', { skip: postgresSkipReason() }, async (t) => {
  const pg = await startPostgres();
  t.teardown(() => pg.stop());
  const { root, masters, urls: both, start, addMountPoint } = await startMasters(t, {
    prefix: 'strata-ha-pg-',
    masterArgs: ['--metastore', pg.url, '--leader-election', 'metastore'],
    masterEnv: { STRATA_LEADER_LEASE_MS: String(LEASE_MS) },
  });
  const [a, b] = masters as [HaMaster, HaMaster];
  const mnt = path.join(root, 'mnt');
  await fsp.mkdir(mnt);
  addMountPoint(mnt);
  await start('worker', ['worker', '--home', path.join(root, 'worker'), '--port', '0', '--master', both, '--tiers', `ssd:${path.join(root, 'worker', 'ssd')}:1GiB`]);
  await start('mount', ['mount', '--home', path.join(root, 'client'), '--master', both, mnt]);

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

  const failovers: Record<(typeof LOSSES)[number], number[]> = { SIGKILL: [], SIGSTOP: [] };
  const inFlight = { acknowledged: 0, failed: 0 };
  let leader = a;
  let standby = b;
  for (const [i, how] of LOSSES.entries()) {
    const round = i + 1;
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
    await check(`round ${round}, before the ${how}`);
    const oldTerm = (await leaderView(leader.url)).term;

    // Writes in flight at the loss: each one either fails or, once acknowledged, must be there whole.
    const writes = Array.from({ length: IN_FLIGHT }, (_, j) => {
      const p = `${dir}/in-flight-${j}`;
      const bytes = randomBytes(50_000 + j * 50_000);
      return { p, bytes, done: settleWithin(fsp.writeFile(path.join(mnt, p), bytes), 60_000, `the write of ${p}`) };
    });
    await sleep(5);
    const lostAt = Date.now();
    let queued: Promise<Response> | undefined;
    if (how === 'SIGKILL') await leader.kill();
    else {
      leader.stop();
      // A change that reaches the stopped leader's socket: it waits there until SIGCONT, and by then the
      // leader's lease is gone. Sent directly, so that no client gives up on it or sends it elsewhere.
      queued = fetch(`${leader.url}/api/v1/mkdir`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ path: `/${dir}/fenced`, mode: 0o755 }),
        signal: AbortSignal.timeout(120_000),
      });
      queued.catch(() => undefined);
    }

    // Keep operating through the mount: each change either succeeds (and is then kept) or fails, and is tried again.
    let attempt = 0;
    let failed = 0;
    for (;;) {
      const bytes = randomBytes(5000);
      const p = `${dir}/after-loss-${attempt++}`;
      try {
        await fsp.writeFile(path.join(mnt, p), bytes);
        files.set(p, bytes);
        break;
      } catch (err) {
        failed++;
        if (Date.now() - lostAt > 60_000) throw err;
        await sleep(200);
      }
    }
    const took = Date.now() - lostAt;
    failovers[how].push(took);
    t.ok(took < 10_000, `round ${round}: after the ${how} of ${leader.name}, a change through the mount succeeded ${took} ms later (${failed} failed before)`);
    const view = await leaderView(standby.url);
    t.equal(view.role, 'leader', `round ${round}: ${standby.name} leads`);
    t.ok(view.term > oldTerm, `round ${round}: with a newer term (${view.term} > ${oldTerm})`);

    const outcomes = await Promise.all(writes.map((w) => w.done));
    const failures: string[] = [];
    for (const [j, o] of outcomes.entries()) {
      const w = writes[j]!;
      if (o.status === 'fulfilled') {
        files.set(w.p, w.bytes);
        inFlight.acknowledged++;
      } else {
        failures.push((o.reason as NodeJS.ErrnoException).code ?? String(o.reason));
        inFlight.failed++;
      }
    }
    t.ok(failures.every((code) => code === 'EIO'), `round ${round}: of the ${IN_FLIGHT} writes in flight at the ${how}, ${IN_FLIGHT - failures.length} were acknowledged (and are checked below), ${failures.length} failed (${failures.join(', ') || 'none'}), none hung`);

    if (how === 'SIGSTOP') {
      leader.resume();
      const res = await queued!;
      const body = (await res.json().catch(() => ({}))) as { code?: string };
      t.equal(res.status, 503, `round ${round}: the woken ${leader.name} answers the change it received while stopped with 503`);
      t.equal(body.code, 'NOT_LEADER', `round ${round}: NOT_LEADER: its lease is gone and it applies nothing`);
      gone.add(`${dir}/fenced`);
      const woken = await until(`round ${round}: the woken ${leader.name} to name the new leader`, async () => {
        const v = await leaderView(leader.url);
        return v.leader === standby.url ? v : undefined;
      }, 10_000);
      t.equal(woken.role, 'standby', `round ${round}: the woken ${leader.name} stands by`);
    } else {
      // The killed master comes back on its port as the new standby.
      await leader.restart();
      const back = await until(`round ${round}: ${leader.name} back as standby`, async () => {
        const v = await leaderView(leader.url);
        return v.leader === standby.url ? v : undefined;
      }, 15_000);
      t.equal(back.role, 'standby', `round ${round}: the restarted ${leader.name} stands by`);
    }

    await fsp.mkdir(path.join(mnt, dir, 'after-loss-dir'));
    files.set(`${dir}/after-loss-dir`, 'dir');
    const extra = randomBytes(3000);
    await fsp.writeFile(path.join(mnt, 'extra', `${dir}.bin`), extra);
    files.set(`extra/${dir}.bin`, extra);
    t.ok((await fsp.readFile(path.join(extraDir, `${dir}.bin`))).equals(extra), `round ${round}: the new leader writes /extra through to its own under-store (it knows the mounts made by an earlier leader)`);
    await check(`round ${round}, after the takeover`);
    [leader, standby] = [standby, leader];
  }
  await check('at the end');
  const all = [...failovers.SIGKILL, ...failovers.SIGSTOP];
  t.comment(
    `failover (loss of the leader -> first successful write through the mount) over ${all.length} losses, lease ${LEASE_MS} ms: ${summary(all)}; ` +
      `SIGKILL ×${failovers.SIGKILL.length}: ${summary(failovers.SIGKILL)} (${failovers.SIGKILL.join(', ')}); ` +
      `SIGSTOP ×${failovers.SIGSTOP.length}: ${summary(failovers.SIGSTOP)} (${failovers.SIGSTOP.join(', ')}); ` +
      `writes in flight at the losses: ${inFlight.acknowledged} acknowledged and kept, ${inFlight.failed} failed with EIO`,
  );
});
