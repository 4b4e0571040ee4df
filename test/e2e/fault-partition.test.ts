/**
 * Fault: a worker partitioned away (SIGSTOP: its sockets stay open, nothing answers).
 * The master marks it lost after the timeout and reads go to the other worker; a file
 * rewritten meanwhile reads back new after SIGCONT, when the worker rejoins, and the
 * rejoined worker serves none of the old blocks. Short-circuit reads are off, so every
 * byte crosses HTTP as it would between hosts.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runCli } from '../helpers/cluster';
import { startCluster } from '../helpers/multi-cluster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TIMEOUT_MS = 3000;

async function readWithin(file: string, ms: number): Promise<Buffer | Error> {
  return Promise.race([fsp.readFile(file).catch((e: Error) => e), sleep(ms).then(() => new Error(`read of ${file} hung for ${ms} ms`))]);
}

t.test('SIGSTOP a worker: lost after the timeout, reads elsewhere; SIGCONT: rejoins without stale blocks', async (t) => {
  const c = await startCluster(t, {
    workers: 2,
    mounts: 1,
    masterEnv: { STRATA_WORKER_TIMEOUT_MS: String(TIMEOUT_MS) },
    workerEnv: { STRATA_HEARTBEAT_INTERVAL_MS: '500' },
    mountEnv: () => ({ STRATA_SHORT_CIRCUIT: 'false' }),
  });
  const mnt = c.mounts[0]!;
  const workers = async () => (await (await fetch(`${c.masterUrl}/api/v1/workers`)).json()) as { id: number; live: boolean }[];
  const stat = async (p: string) => JSON.parse((await runCli(['fs', 'stat', p, '--json', '--master', c.masterUrl])).stdout) as { blocks: { id: number; locations: { worker: number }[] }[] };

  const v1 = randomBytes(3 * 1024 * 1024 + 17);
  // Written through the CLI, so the mount's kernel cache has none of it: its reads cross HTTP.
  await fsp.writeFile(path.join(c.root, 'v1'), v1);
  t.equal((await runCli(['fs', 'cp', `file:${path.join(c.root, 'v1')}`, 'strata:/f', '--master', c.masterUrl])).code, 0);
  const before = await stat('/f');
  const holderId = before.blocks[0]!.locations[0]!.worker;
  const holder = c.workers.find((w) => w.id === holderId)!;
  const oldBlock = before.blocks[0]!.id;

  holder.pause();
  const pausedAt = Date.now();
  // A read that starts at once, while the master still lists the worker as live: the client's
  // health probe gives up on it in seconds (not the 120 s a slow fill may take) and reads elsewhere.
  const earlyRead = readWithin(path.join(mnt, 'f'), 30_000).then((r) => ({ r, ms: Date.now() - pausedAt }));
  let lostAfter = -1;
  while (Date.now() - pausedAt < TIMEOUT_MS * 4) {
    if ((await workers()).some((w) => w.id === holderId && !w.live)) {
      lostAfter = Date.now() - pausedAt;
      break;
    }
    await sleep(100);
  }
  t.ok(lostAfter >= TIMEOUT_MS - 600 && lostAfter <= TIMEOUT_MS + 3000, `marked lost ${lostAfter} ms after SIGSTOP (timeout ${TIMEOUT_MS} ms)`);
  t.same((await stat('/f')).blocks[0]!.locations, [], 'its block locations were dropped');
  const er = await earlyRead;
  t.ok(er.r instanceof Buffer && er.r.equals(v1), `a read through the mount started right after SIGSTOP got its bytes elsewhere (${er.ms} ms; ${er.r instanceof Error ? er.r.message : 'ok'})`);
  t.ok(er.ms < 15_000, 'within 15 s');

  // Through the client library (the CLI), not the mount: the kernel may still cache the file.
  const t0 = Date.now();
  const copy = path.join(c.root, 'copy');
  const cp = await runCli(['fs', 'cp', 'strata:/f', `file:${copy}`, '--master', c.masterUrl]);
  t.equal(cp.code, 0, cp.stderr);
  t.ok((await fsp.readFile(copy)).equals(v1), `the file reads back through the other worker (${Date.now() - t0} ms)`);
  const v2 = randomBytes(2 * 1024 * 1024 + 5);
  await fsp.writeFile(path.join(mnt, 'f'), v2);

  holder.resume();
  const resumedAt = Date.now();
  let liveAfter = -1;
  while (Date.now() - resumedAt < 10_000) {
    if ((await workers()).some((w) => w.id === holderId && w.live)) {
      liveAfter = Date.now() - resumedAt;
      break;
    }
    await sleep(100);
  }
  t.ok(liveAfter >= 0, `rejoined ${liveAfter} ms after SIGCONT`);
  t.comment(`lost after ${lostAfter} ms, live again ${liveAfter} ms after SIGCONT`);
  t.ok((await readWithin(path.join(mnt, 'f'), 20_000) as Buffer).equals(v2), 'the file reads back with its new bytes through the mount');
  await fsp.rm(copy);
  t.equal((await runCli(['fs', 'cp', 'strata:/f', `file:${copy}`, '--master', c.masterUrl])).code, 0);
  t.ok((await fsp.readFile(copy)).equals(v2), 'and through the client library');
  const after = await stat('/f');
  for (const b of after.blocks) {
    const ids = b.locations.map((l) => l.worker);
    t.equal(new Set(ids).size, ids.length, `block ${b.id}: no duplicate locations`);
    t.not(b.id, oldBlock, 'the rewrite has new blocks');
  }
  // The old block belongs to no file any more: the rejoined worker must not serve its stale bytes.
  let stale = true;
  for (const deadline = Date.now() + 8000; Date.now() < deadline && stale; await sleep(300)) {
    const r = await fetch(`${holder.url}/blocks/${oldBlock}?offset=0&length=16`);
    stale = r.status === 200;
    await r.arrayBuffer();
  }
  t.notOk(stale, 'the rejoined worker answers an error for the old block, not its bytes');
});
