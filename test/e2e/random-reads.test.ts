/**
 * Random reads of a cold file through the mount: a few scattered 4 KiB reads fetch
 * only the 1 MiB pages they fall in, so a reader of a big file's footer does not
 * pull whole 64 MiB blocks from the store; reads scattered over many regions of one
 * block load that block whole in the background (one parallel load instead of one
 * store request per page at a time), and the bytes stay right either way.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { startLocal } from '../helpers/cluster';

const MiB = 1024 * 1024;

async function ufsReadBytes(workerUrl: string): Promise<number> {
  const text = await (await fetch(`${workerUrl}/metrics`)).text();
  const m = /^strata_worker_ufs_read_bytes_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('scattered 4 KiB reads: a few fetch single pages; many in one block load it whole', async (t) => {
  const c = await startLocal(t, { args: ['--block-size', '32MiB'] });
  const data = randomBytes(64 * MiB);
  await fsp.writeFile(path.join(c.ufsDir, 'cold.bin'), data);
  const fh = await fsp.open(path.join(c.mnt, 'cold.bin'), 'r');
  t.teardown(() => fh.close());
  const buf = Buffer.alloc(4096);
  const readAt = async (pos: number) => {
    const { bytesRead } = await fh.read(buf, 0, 4096, pos);
    t.ok(bytesRead === 4096 && buf.equals(data.subarray(pos, pos + 4096)), `bytes at ${pos} are right`);
  };

  // Block 0: three reads far apart (a footer, an index, a column chunk header).
  for (const mib of [3, 17, 29]) await readAt(mib * MiB + 12_345);
  t.equal(await ufsReadBytes(c.workerUrl), 3 * MiB, 'three scattered reads fetched their three pages, not the 32 MiB block');

  // Block 1: reads scattered over 8 of its 32 regions: the block is loaded whole.
  for (const mib of [1, 5, 9, 13, 18, 22, 26, 30]) await readAt(32 * MiB + mib * MiB + 777);
  await waitFor('block 1 to be loaded whole', async () => (await ufsReadBytes(c.workerUrl)) >= 3 * MiB + 32 * MiB);
  t.equal(await ufsReadBytes(c.workerUrl), 3 * MiB + 32 * MiB, 'block 1 came from the store once, whole; block 0 was left alone');
  for (const mib of [0, 11, 31]) await readAt(32 * MiB + mib * MiB + 4242);
  t.equal(await ufsReadBytes(c.workerUrl), 35 * MiB, 'later reads in block 1 fetch nothing more');
});
