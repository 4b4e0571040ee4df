/**
 * Namespace.persistEmpty: the master stores an empty ASYNC_THROUGH file's object itself.
 * It keeps the rules a worker's persist went by (ufsLocation): a read-only store is not
 * written, and only the empty version it was asked for is counted.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';

const logger = pino({ level: 'silent' });

async function setUp(t: Test, name: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `strata-persist-empty-${name}-`));
  const uri = `mem://persist-empty-${name}-${process.pid}`;
  const table = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const open = async (options: Record<string, string> = {}) => new Namespace({ table, mounts: await MountTable.open(table, uri, options), syncIntervalMs: 60_000, logger });
  t.teardown(async () => {
    await table.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { table, open, ufs: new MemoryUnderFileSystem(uri) };
}

t.test('an empty file is stored and counted; a file written since is not (its new content stays queued)', async (t) => {
  const { table, open, ufs } = await setUp(t, 'rw');
  const ns = await open();
  t.teardown(() => ns.close());
  const a = await ns.create('/a', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  const before = await table.requireNode(a.ino);
  t.equal(await ns.persistEmpty(a.ino, before.container), true, 'persisted');
  t.equal((await ufs.stat('/a'))?.size, 0, 'the empty object is in the store');
  t.equal((await table.requireNode(a.ino)).persistState, 'persisted');

  const b = await ns.create('/b', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  const old = (await table.requireNode(b.ino)).container;
  await ns.commitEmpty(b.ino, 'ASYNC_THROUGH', undefined);
  t.equal(await ns.persistEmpty(b.ino, old), false, 'an older version is not counted');
  t.equal(await ufs.stat('/b'), null, 'nor written');
  t.equal((await table.persistQueue()).filter((q) => q.ino === b.ino).length, 1, 'the newer version stays queued');
});

t.test('an empty file queued before its store became read-only is not written into it', async (t) => {
  const { table, open, ufs } = await setUp(t, 'ro');
  const rw = await open();
  const f = await rw.create('/_SUCCESS', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  const node = await table.requireNode(f.ino);
  t.equal(node.persistState, 'not_persisted', 'queued, not persisted yet');
  await rw.close();

  // The master restarts with the root store read-only.
  const ro = await open({ readonly: 'true' });
  t.teardown(() => ro.close());
  await t.rejects(ro.ufsLocation(f.ino, { purpose: 'persist', container: node.container, blocks: 0 }), { code: 'READ_ONLY' }, 'a worker would be refused a place to write');
  await t.rejects(ro.persistEmpty(f.ino, node.container), { code: 'READ_ONLY' }, 'the master refuses itself too');
  t.equal(await ufs.stat('/_SUCCESS'), null, 'nothing was written into the read-only store');
  t.equal((await table.requireNode(f.ino)).persistState, 'not_persisted', 'the file stays queued');
});
