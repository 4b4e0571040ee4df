/**
 * Names a mount's store cannot hold are refused when they are made, with EINVAL, not
 * acknowledged and then never stored: HDFS refuses ':' in names (DFSUtil.isValidName).
 * A Namespace over the WebHDFS stand-in (test/helpers/webhdfs-server.ts, not Hadoop).
 */

import t from 'tap';
import type tap from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { startWebHdfsStandIn } from '../helpers/webhdfs-server';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';

t.test("an hdfs:// mount refuses new names with ':' and keeps taking others", async (t) => {
  const hdfs = await startWebHdfsStandIn();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-store-names-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, hdfs.uri('/'), { 'hdfs.user': 'strata' });
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: 60_000, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    await hdfs.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'made',
      (err: { code?: string }) => err.code,
    );
  t.equal(await code(ns.create('/a:b', 0o644)), 'INVALID_ARGUMENT', 'create');
  t.equal(await code(ns.mkdir('/d:1', 0o755)), 'INVALID_ARGUMENT', 'mkdir');
  t.equal(await code(ns.symlink('/l:1', 'target')), 'INVALID_ARGUMENT', 'symlink');
  await ns.create('/ok', 0o644);
  t.equal(await code(ns.rename('/ok', '/ok:2')), 'INVALID_ARGUMENT', 'rename onto such a name');
  t.equal(await code(ns.mkdir('/fine', 0o755)), 'made', 'other names are made as before');
  t.same((await ns.list('/')).map((e) => e.name).sort(), ['fine', 'ok'], 'nothing else was made');
});

/** A Namespace with a sync interval of -1 over the mem:// store named `name`, and that store. */
async function neverSynced(t: tap.Test, name: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `strata-${name}-`));
  const uri = `mem://${name}-${process.pid}`;
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, uri, {});
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: -1, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { ns, sqlite, ufs: new MemoryUnderFileSystem(uri) };
}

t.test('with a sync interval of -1 a directory is listed from its store once, also when the store has it no more', async (t) => {
  const { ns, sqlite, ufs } = await neverSynced(t, 'store-once');
  await ufs.mkdir('/lazy');
  await (await ufs.create('/lazy/a')).complete();
  let lists = 0;
  const list = MemoryUnderFileSystem.prototype.list;
  MemoryUnderFileSystem.prototype.list = async function (this: MemoryUnderFileSystem, p: string) {
    lists++;
    return list.call(this, p);
  };
  t.teardown(() => void (MemoryUnderFileSystem.prototype.list = list));
  t.same((await ns.list('/lazy')).map((e) => e.name), ['a'], 'listed from the store at first');
  const first = lists;
  t.ok(first >= 1, 'the store was listed');
  await ns.list('/lazy');
  t.equal(lists, first, 'and not again');
  await ufs.delete('/lazy/a');
  await ufs.rmdir('/lazy');
  // Marked to be listed again (as a store mounted on it is): listed once more, then not, though the store has it no more.
  await sqlite.markSynced((await ns.stat('/lazy')).ino, 0);
  for (let i = 0; i < 5; i++) await ns.list('/lazy');
  t.equal(lists, first + 1, 'a directory the store no longer has is listed once, not at every listing');
});

t.test('with a sync interval of -1, what an unmount uncovers in the parent store is listed', async (t) => {
  const { ns, ufs } = await neverSynced(t, 'store-unmount');
  const other = `mem://store-unmount-other-${process.pid}`;
  await ufs.mkdir('/p');
  await ufs.mkdir('/p/m');
  t.same((await ns.list('/p')).map((e) => e.name), ['m'], 'listed once from the store');
  await ns.mount('/p/m', other, {});
  // Meanwhile the parent store gets an object at the mount point's name: hidden while the mount is there.
  await (await ufs.create('/p/m/hidden')).complete();
  await ns.unmount('/p/m');
  t.same((await ns.list('/p')).map((e) => e.name), ['m'], "after the unmount the parent store's directory is back");
  t.same((await ns.list('/p/m')).map((e) => e.name), ['hidden'], 'with what its store has in it');
});
