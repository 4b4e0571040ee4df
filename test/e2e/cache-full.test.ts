/**
 * A worker whose cache has no room (its tier full of pinned pages) still serves reads
 * of files in the store: their bytes come from the store, uncached. Reads used to fail
 * with ENOSPC for as long as the pins lasted, through the mount and `fs cat` alike.
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { runCli, startLocal } from '../helpers/cluster';

const MiB = 1024 * 1024;

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

t.test('reads go on, uncached, while the cache is full of pinned pages', async (t) => {
  const c = await startLocal(t, { args: ['--capacity', '16MiB'] });
  const hot = randomBytes(24 * MiB);
  const cold = randomBytes(3 * MiB + 5);
  await fsp.writeFile(path.join(c.ufsDir, 'hot.bin'), hot);
  await fsp.writeFile(path.join(c.ufsDir, 'cold.bin'), cold);
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);

  t.equal((await fs('pin', '/hot.bin')).code, 0, 'pin a file larger than the cache');
  for (let i = 0; i < 100 && !((await metric(c.workerUrl, 'strata_worker_user_pinned_blocks')) > 0); i++) await new Promise((r) => setTimeout(r, 100));
  const load = await fs('load', '/hot.bin');
  t.equal(load.code, 1, 'loading it all fails: the cache is too small');
  t.match(load.stderr, /no space left|full/);
  t.ok((await metric(c.workerUrl, 'strata_worker_cache_used_bytes')) > 15 * MiB, 'the cache is full of its pinned pages');

  t.ok((await fsp.readFile(path.join(c.mnt, 'cold.bin'))).equals(cold), 'another file reads whole through the mount');
  const out = path.join(c.root, 'cold.out');
  const cp = await fs('cp', 'strata:/cold.bin', out);
  t.equal(cp.code, 0, 'and with fs cp', { stderr: cp.stderr });
  t.ok((await fsp.readFile(out)).equals(cold), 'the same bytes');
  t.ok((await metric(c.workerUrl, 'strata_worker_no_cache_bytes_total')) >= cold.length, 'served from the store, uncached');
  t.ok((await fsp.readFile(path.join(c.mnt, 'hot.bin'))).equals(hot), 'the pinned file reads whole too, cached part and all');

  // Readers of the same pages at once share fills: one that joins a fill whose bytes went to another
  // read (uncached) fetches them again for itself, and none fails.
  const shared = randomBytes(6 * MiB + 77);
  await fsp.writeFile(path.join(c.ufsDir, 'shared.bin'), shared);
  const outs = [0, 1, 2, 3].map((i) => path.join(c.root, `shared-${i}.out`));
  const cps = await Promise.all(outs.map((o) => fs('cp', 'strata:/shared.bin', o)));
  t.same(cps.map((r) => r.code), [0, 0, 0, 0], 'four readers at once all succeed', { stderr: cps.map((r) => r.stderr) });
  for (const o of outs) t.ok((await fsp.readFile(o)).equals(shared), `${path.basename(o)}: the same bytes`);
});
