/**
 * Leader election by lease (src/master/leadership.ts) against a real PostgreSQL:
 * one leader among contenders, a clean handover, a stalled (SIGSTOPped) leader that
 * wakes up as a standby, and a database restart.
 */

import t from 'tap';
import { spawn, ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { Client } from 'pg';
import { LEADER_LEASE_TABLE, LeaderElection } from '../../src/master/leadership';
import { postgresSkipReason, startPostgres } from '../helpers/postgres';

const LEASE_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - start;
}

interface ContenderLine {
  event: string;
  term?: number;
  leader?: boolean;
  reason?: string;
  at: number;
}

/** A contender in a child process (test/helpers/lease-contender.ts), so that it can be SIGSTOPped. */
function startContender(t: { teardown(fn: () => unknown): void }, url: string, name: string): { proc: ChildProcess; lines: ContenderLine[] } {
  const proc = spawn(process.execPath, [path.join(__dirname, '..', 'helpers', 'lease-contender.js'), url, name, String(LEASE_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: ContenderLine[] = [];
  let buf = '';
  proc.stdout!.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)) as ContenderLine);
      buf = buf.slice(i + 1);
    }
  });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
    }
  });
  return { proc, lines };
}

t.test('leader lease on PostgreSQL', { skip: postgresSkipReason() }, async (t) => {
  const pg = await startPostgres();
  t.teardown(() => pg.stop());
  const contenders: LeaderElection[] = [];
  const contender = (name: string, id: string) => {
    const e = new LeaderElection({ url: pg.url, name, leaseMs: LEASE_MS, address: `http://${id}`, holderId: id });
    contenders.push(e);
    e.start();
    return e;
  };
  t.teardown(async () => {
    for (const e of contenders) await e.close();
  });

  await t.test('three contenders: exactly one leads; closing it hands over within the lease', async (t) => {
    const es = ['a', 'b', 'c'].map((id) => contender('three', id));
    const elected: string[] = [];
    for (const e of es) e.on('elected', () => elected.push(e.holderId));
    await until('a leader', () => es.some((e) => e.isLeader()), 5000);
    await sleep(LEASE_MS); // several renew periods: nobody else may take it meanwhile
    const leaders = es.filter((e) => e.isLeader());
    t.equal(leaders.length, 1, 'exactly one leader');
    t.same(elected, [leaders[0]!.holderId], 'one election event, from the leader');
    const first = leaders[0]!;
    const term = first.fence!;
    t.ok(term >= 1, `the leader has a term (${term})`);
    for (const e of es) t.same(e.leader(), { address: first.address, term }, `${e.holderId} knows the leader and its term`);

    const closedAt = Date.now();
    await first.close();
    t.notOk(first.isLeader(), 'closed: no longer leader');
    const waited = await until('a new leader', () => es.some((e) => e !== first && e.isLeader()), LEASE_MS);
    t.comment(`handover after close: ${Date.now() - closedAt} ms`);
    t.ok(waited < LEASE_MS, `another leads within the lease (${waited} ms)`);
    await sleep(LEASE_MS / 2);
    const next = es.filter((e) => e.isLeader());
    t.equal(next.length, 1, 'still exactly one leader');
    t.ok(next[0]!.fence! > term, 'with a higher term');
  });

  await t.test('a SIGSTOPped leader is replaced after the lease and wakes up as a standby', async (t) => {
    const stalled = startContender(t, pg.url, 'stall');
    await until('the child to lead', () => stalled.lines.some((l) => l.event === 'elected'), 10_000);
    const standby = contender('stall', 'standby');
    await sleep(LEASE_MS); // the standby sees a live lease and waits
    t.notOk(standby.isLeader(), 'the standby does not lead while the lease is renewed');
    t.equal(standby.leader()?.address, `http://contender-${stalled.proc.pid}`, 'the standby knows who leads');

    const stoppedAt = Date.now();
    stalled.proc.kill('SIGSTOP');
    const waited = await until('the standby to lead', () => standby.isLeader(), 4 * LEASE_MS);
    t.comment(`takeover after SIGSTOP: ${waited} ms (lease ${LEASE_MS} ms)`);
    t.ok(waited <= (LEASE_MS * 4) / 3 + 1000, 'within the lease and one renew period');

    const resumedAt = Date.now();
    stalled.proc.kill('SIGCONT');
    await until('the woken one to report', () => stalled.lines.some((l) => l.at >= resumedAt && l.event === 'demoted'), 3000);
    await sleep(LEASE_MS);
    const after = stalled.lines.filter((l) => l.at >= stoppedAt);
    t.same(after.filter((l) => l.event === 'elected' || (l.event === 'claim' && l.leader === true)), [], 'woken up, it never claims to lead while the standby holds the lease');
    t.ok(after.some((l) => l.event === 'claim' && l.leader === false), 'its isLeader() turned false');
    t.ok(standby.isLeader(), 'the standby still leads');

    // A clean close hands the lease back at once (NOTIFY), not after a renew period.
    const closedAt = Date.now();
    await standby.close();
    await until('the child to lead again', () => stalled.lines.some((l) => l.at >= closedAt && l.event === 'elected'), LEASE_MS);
    t.comment(`handover to the child after close: ${Date.now() - closedAt} ms`);
    stalled.proc.kill('SIGTERM');
    await new Promise((r) => stalled.proc.once('exit', r));
  });

  await t.test('a leader stopped in the middle of a fenced write: the database ends the write, and a standby takes over within L + L/3', async (t) => {
    // The master's fenced writes (PgMetastore.setFence) hold a key-share lock on the lease row until COMMIT, which a takeover (a new term) waits for;
    // a master stopped before its COMMIT leaves its session idle in that transaction.
    const stalled = startContender(t, pg.url, 'locked');
    const elected = await until('the child to lead', () => stalled.lines.some((l) => l.event === 'elected'), 10_000).then(() => stalled.lines.find((l) => l.event === 'elected')!);
    // What a master sharing the database sets (server.ts): idle transactions end after half a lease.
    const write = new Client({ connectionString: pg.url, idle_in_transaction_session_timeout: LEASE_MS / 2 });
    write.on('error', () => undefined); // the server ends this session: that is the point
    await write.connect();
    t.teardown(() => write.end().catch(() => undefined));
    await write.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
    await write.query(`SELECT 1 FROM ${LEADER_LEASE_TABLE} WHERE name = $1 FOR KEY SHARE`, ['locked']);
    const stoppedAt = Date.now();
    stalled.proc.kill('SIGSTOP');
    const standby = contender('locked', 'locked-standby');
    const waited = await until('the standby to lead', () => standby.isLeader(), 10 * LEASE_MS);
    t.comment(`takeover after SIGSTOP in the middle of a write: ${waited} ms (lease ${LEASE_MS} ms)`);
    t.ok(Date.now() - stoppedAt <= (LEASE_MS * 4) / 3 + 1000, `within the lease and one renew period (${Date.now() - stoppedAt} ms after the stop)`);
    t.equal(standby.fence, elected.term! + 1, 'with the next term');
    await sleep(LEASE_MS);
    const look = new Client({ connectionString: pg.url });
    await look.connect();
    const { rows } = await look.query<{ term: string }>(`SELECT term::text FROM ${LEADER_LEASE_TABLE} WHERE name = 'locked'`);
    await look.end();
    t.same([standby.fence, Number(rows[0]!.term)], [elected.term! + 1, elected.term! + 1], 'and no update left waiting on the locked row changed the term later');
    stalled.proc.kill('SIGCONT');
    stalled.proc.kill('SIGTERM');
    await new Promise((r) => stalled.proc.once('exit', r));
  });

  await t.test('a PostgreSQL crash and restart: the leader steps down, then leadership recovers', async (t) => {
    const es = ['x', 'y'].map((id) => contender('restart', id));
    await until('a leader', () => es.some((e) => e.isLeader()), 5000);
    const demoted: string[] = [];
    for (const e of es) e.on('demoted', (reason) => demoted.push(`${e.holderId}: ${reason}`));
    const leader = es.find((e) => e.isLeader())!;
    const left = leader.msLeft();
    t.ok(left > 0 && left <= (LEASE_MS * 5) / 6, `a leader is sure of at most 5/6 of the lease (${left} ms)`);
    pg.kill();
    // What it grants (feed leases) must end before anyone else can lead: within its sure time.
    const samples: number[] = [];
    const down = await until('the leader to step down', () => (samples.push(leader.msLeft()), !es.some((e) => e.isLeader())), 2 * LEASE_MS);
    t.ok(samples.every((x) => x >= 0 && x <= (LEASE_MS * 5) / 6), 'its sure time never exceeds 5/6 of the lease');
    t.equal(leader.msLeft(), 0, 'and is 0 once it stepped down');
    t.comment(`stepped down ${down} ms after the database died: ${demoted.join('; ')}`);
    // isLeader() reads the clock: false at 5/6 of the lease after the last renew began; the slack is this loop's.
    t.ok(down <= LEASE_MS * 1.5, 'within the lease: nobody acts as leader without the database');
    // The killed postmaster's backends notice its death a moment later; until they are gone a new one refuses to start.
    for (let attempt = 1; ; attempt++) {
      try {
        await pg.start();
        break;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(500);
      }
    }
    const back = await until('a leader again', () => es.some((e) => e.isLeader()), 6 * LEASE_MS);
    t.comment(`leader again ${back} ms after the restart`);
    await sleep(LEASE_MS);
    t.equal(es.filter((e) => e.isLeader()).length, 1, 'exactly one leader');
  });
});
