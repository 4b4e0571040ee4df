/**
 * A file changed straight in the under-store within the sync interval, while the
 * namespace still knows its old version: a read of bytes not cached yet must not
 * hand out the new version's bytes under the old one's size (a grown file read
 * back cut short), nor fail until the interval runs out (a shrunk one). It fails
 * once with ESTALE, the master re-checks the file, and the next open reads the
 * new version whole. Bytes cached already keep serving the version they came
 * from until the interval runs out, as any metadata the master vouches for.
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import { constants as os } from 'node:os';
import * as path from 'node:path';
import { startCluster } from '../helpers/multi-cluster';

async function readOrCode(file: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // libuv has no name for ESTALE: Node reports it as "Unknown system error -116".
    return e.errno === -os.errno.ESTALE ? 'ESTALE' : (e.code ?? String(err));
  }
}

t.test('a file changed in the store within the sync interval: ESTALE once, then the new version whole', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '600000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const u = (p: string) => path.join(c.ufsDir, p);
  await fsp.mkdir(u('o'));
  await fsp.writeFile(u('o/grows'), 'AAAAAAAAAA\n');
  await fsp.writeFile(u('o/shrinks'), 'short\n');
  await fsp.writeFile(u('o/cached'), 'old bytes\n');
  t.same((await fsp.readdir(a('o'))).sort(), ['cached', 'grows', 'shrinks']);
  t.equal((await fsp.stat(a('o/grows'))).size, 11);
  t.equal((await fsp.stat(a('o/shrinks'))).size, 6);
  t.equal(await readOrCode(a('o/cached')), 'old bytes\n', 'one file is read (cached) before the changes');

  await fsp.writeFile(u('o/grows'), 'BBBBBBBBBBBBBBBBBBBBBBBBB\n');
  await fsp.writeFile(u('o/shrinks'), 'x\n');
  await fsp.writeFile(u('o/cached'), 'new bytes, longer\n');

  t.equal(await readOrCode(a('o/grows')), 'ESTALE', 'the grown file: no bytes of the new version under the old size');
  t.equal(await readOrCode(a('o/grows')), 'BBBBBBBBBBBBBBBBBBBBBBBBB\n', 'the next open reads the new version whole');
  t.equal((await fsp.stat(a('o/grows'))).size, 26);
  t.equal(await readOrCode(a('o/shrinks')), 'ESTALE', 'the shrunk file');
  t.equal(await readOrCode(a('o/shrinks')), 'x\n', 'then its new version, long before the interval ran out');
  t.equal(await readOrCode(a('o/cached')), 'old bytes\n', 'the cached file still reads the version it was cached from, whole');
});
