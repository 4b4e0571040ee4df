/**
 * Fault: SIGKILL of a worker in the middle of an under-store write. What the write
 * left in the store (here a local store's temp file; an S3 multipart upload works
 * the same way, see the drivers' conformance tests) is discarded once the worker
 * is back: its journal hands it to the master, which removes it through the mount.
 */

import t from 'tap';
import { promises as fsp, existsSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { runCli } from '../helpers/cluster';
import { startCluster } from '../helpers/multi-cluster';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The store's temp files (a writer's remains), at any depth. */
function tempFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => path.basename(p).startsWith('.strata-tmp-'));
}

async function until<T>(probe: () => T, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let v = probe();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(50);
    v = probe();
  }
  return v;
}

t.test('a write cut off by a worker crash leaves nothing in the store once the worker is back', async (t) => {
  // Small blocks: the mount hands whole blocks to the worker, which streams them on to the store.
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--block-size', '4MiB'] });
  const mnt = c.mounts[0]!;
  const store = path.join(c.root, 'ufs-through');
  await fsp.mkdir(store);
  const r = await runCli(['fs', 'mount', '/through', `file://${store}`, '--option', 'write.type=CACHE_THROUGH', '--master', c.masterUrl]);
  t.equal(r.code, 0, `mount /through: ${r.stderr}`);

  // A file written through to the store and held open: its bytes stream to a temp file there.
  const fh = await fsp.open(path.join(mnt, 'through', 'cut.bin'), 'w');
  for (let i = 0; i < 24; i++) await fh.write(randomBytes(MiB));
  const during = await until(() => tempFiles(store), (f) => f.length > 0, 15_000);
  t.equal(during.length, 1, `the write is streaming to a temp file in the store (${during.join(', ')})`);
  const journal = path.join(c.workers[0]!.home, 'worker', 'leftovers');
  t.equal(readdirSync(journal).filter((f) => f.endsWith('.json')).length, 1, "the worker's journal records it");

  await c.workers[0]!.kill();
  await fh.close().catch(() => undefined);
  t.same(tempFiles(store), during, 'the crash left the temp file in the store');

  await c.workers[0]!.restart();
  const after = await until(() => tempFiles(store), (f) => f.length === 0, 10_000);
  t.same(after, [], 'discarded once the worker is back');
  t.same(existsSync(journal) ? readdirSync(journal) : [], [], 'and the journal is empty');

  // Writes after the restart leave nothing behind either.
  const data = randomBytes(3 * MiB);
  await fsp.writeFile(path.join(mnt, 'through', 'whole.bin'), data);
  t.ok((await fsp.readFile(path.join(store, 'whole.bin'))).equals(data), 'a new write reaches the store whole');
  t.same(tempFiles(store), [], 'no temp file');
  t.same(readdirSync(journal), [], 'no record left in the journal');
});
