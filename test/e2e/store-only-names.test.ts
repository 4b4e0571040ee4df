/**
 * A name put straight into the under-store while its directory's listing is fresh
 * (within the sync interval) is not listed yet. A create through the mount that must
 * not replace a file (O_EXCL), or that keeps what is there (O_CREAT without O_TRUNC:
 * `>>`, O_RDWR), used to make a new empty file over it, and the close replaced the
 * stored one. Now such a create asks the store: O_EXCL fails EEXIST, the others open
 * the stored file. A create with O_TRUNC replaces it, as asked, without the store call.
 */

import t from 'tap';
import { promises as fsp, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { startCluster } from '../helpers/multi-cluster';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

t.test('creates over names only the store has, within the sync interval', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '600000'] });
  const m = (p: string) => path.join(c.mounts[0]!, p);
  const u = (p: string) => path.join(c.ufsDir, p);
  await fsp.mkdir(u('d'));
  t.same(await fsp.readdir(m('d')), [], 'the directory is listed, empty');
  await fsp.writeFile(u('d/excl'), 'stored first\n');
  await fsp.writeFile(u('d/append'), 'first line\n');
  await fsp.writeFile(u('d/rdwr'), 'kept bytes\n');
  await fsp.writeFile(u('d/trunc'), 'to be replaced\n');
  await fsp.mkdir(u('d/sub'));
  t.same(await fsp.readdir(m('d')), [], 'not listed yet: the listing is fresh');

  t.equal(await code(fsp.open(m('d/excl'), 'wx')), 'EEXIST', 'O_CREAT|O_EXCL of a file only the store has: EEXIST');
  t.equal(await fsp.readFile(u('d/excl'), 'utf8'), 'stored first\n', 'and the stored file is untouched');
  t.equal(await fsp.readFile(m('d/excl'), 'utf8'), 'stored first\n', 'the mount reads it now');

  t.equal(await code(fsp.open(m('d/sub'), 'wx')), 'EEXIST', 'O_CREAT|O_EXCL of a directory only the store has: EEXIST');
  t.ok((await fsp.stat(m('d/sub'))).isDirectory(), 'and it is a directory through the mount');

  await fsp.appendFile(m('d/append'), 'second line\n');
  t.equal(await fsp.readFile(m('d/append'), 'utf8'), 'first line\nsecond line\n', '>> appends to the stored file');
  t.equal(await fsp.readFile(u('d/append'), 'utf8'), 'first line\nsecond line\n', 'in the store too');

  const fh = await fsp.open(m('d/rdwr'), fsc.O_CREAT | fsc.O_RDWR);
  try {
    const buf = Buffer.alloc(64);
    const { bytesRead } = await fh.read(buf, 0, 64, 0);
    t.equal(buf.subarray(0, bytesRead).toString(), 'kept bytes\n', 'O_CREAT|O_RDWR opens the stored file with its bytes');
    await fh.write('KEPT', 0);
  } finally {
    await fh.close();
  }
  t.equal(await fsp.readFile(u('d/rdwr'), 'utf8'), 'KEPT bytes\n', 'and a write into it keeps the rest');

  await fsp.writeFile(m('d/trunc'), 'new\n');
  t.equal(await fsp.readFile(u('d/trunc'), 'utf8'), 'new\n', 'O_TRUNC replaces the stored file, as asked');

  t.same((await fsp.readdir(m('d'))).sort(), ['append', 'excl', 'rdwr', 'sub', 'trunc']);
});
