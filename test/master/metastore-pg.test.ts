/**
 * PgMetastore on a real PostgreSQL server (Debian's, started by the test in a temp
 * dir): whole operations with their error codes, many concurrent callers, a
 * server crash in the middle of a burst, reopening, and schema version refusal.
 * One server for the file; every store gets a database of its own.
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { PgChangeLog, PgMetastore } from '../../src/master/pg-metastore';
import { openMetastore } from '../../src/master/server';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { ROOT_INO, type Metastore, type NewNode } from '../../src/master/metastore';
import { StrataError, type ErrorCode } from '../../src/common/errors';
import { blockIdOf } from '../../src/common/protocol';
import { postgresSkipReason, startPostgres, type PostgresServer } from '../helpers/postgres';
import { rejectsCode } from '../ufs/conformance';
import { metastoreConformance } from './metastore-conformance';

const BS = 4096;
const fileNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'file', mode: 0o644, uid: 1000, gid: 1000, persisted: false, ...extra });
const dirNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'directory', mode: 0o755, uid: 1000, gid: 1000, persisted: false, ...extra });

const skip = postgresSkipReason();
if (skip) {
  t.plan(0, skip);
} else {
  let server: PostgresServer;
  let databases = 0;

  t.before(async () => {
    server = await startPostgres();
  });
  t.teardown(async () => {
    await server?.stop();
  });

  /** A URL of a new, empty database on the test server. */
  const freshDatabase = async (): Promise<string> => {
    const name = `s${++databases}`;
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return server.url.replace(/\/[^/]*$/, `/${name}`);
  };

  /** A store on a fresh database, closed at the end of the test. */
  const openStore = async (tt: tap.Test, opts: { poolSize?: number } = {}): Promise<{ store: PgMetastore; url: string }> => {
    const url = await freshDatabase();
    const store = await PgMetastore.open(url, { blockSize: BS, ...opts });
    tt.teardown(() => store.close());
    return { store, url };
  };

  /** Runs SQL against a database directly, for checks below the interface. */
  const query = async <R>(url: string, text: string, values: unknown[] = []): Promise<R[]> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(text, values)).rows as R[];
    } finally {
      await c.end();
    }
  };

  /**
   * The namespace invariants, checked in SQL: every file's nlink is its number of
   * names and exactly one of them is primary; every directory other than the root
   * has one name and nlink 2 + its subdirectories; every node is reachable from the
   * root (so there is no orphan and no cycle); no block belongs to a missing node.
   */
  const checkInvariants = async (tt: tap.Test, url: string): Promise<void> => {
    const badLinks = await query<{ ino: string }>(
      url,
      `SELECT n.ino FROM node n
         LEFT JOIN (SELECT ino, COUNT(*) AS names, COUNT(*) FILTER (WHERE primary_link) AS primaries FROM edge GROUP BY ino) e ON e.ino = n.ino
         LEFT JOIN (SELECT e.parent, COUNT(*) AS subdirs FROM edge e JOIN node c ON c.ino = e.ino WHERE c.type = 2 GROUP BY e.parent) d ON d.parent = n.ino
       WHERE (n.type = 2 AND (n.nlink <> 2 + COALESCE(d.subdirs, 0) OR COALESCE(e.names, 0) <> CASE WHEN n.ino = 1 THEN 0 ELSE 1 END))
          OR (n.type <> 2 AND (n.nlink <> COALESCE(e.names, 0) OR COALESCE(e.primaries, 0) <> 1))`,
    );
    tt.same(badLinks, [], 'every link count matches the names (and subdirectories) of its node');
    const [reach] = await query<{ reachable: number; total: number }>(
      url,
      `WITH RECURSIVE sub(ino) AS (SELECT 1::int8 UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino)
       SELECT (SELECT COUNT(*) FROM sub)::int AS reachable, (SELECT COUNT(*) FROM node)::int AS total`,
    );
    tt.equal(reach!.reachable, reach!.total, 'every node is reachable from the root: no orphans, no cycles');
    const [strays] = await query<{ n: number }>(url, `SELECT COUNT(*)::int AS n FROM edge e WHERE NOT EXISTS (SELECT 1 FROM node p WHERE p.ino = e.parent AND p.type = 2)`);
    tt.equal(strays!.n, 0, 'every name is in a directory');
  };

  /** Registers a worker holding whole blocks in one tier. */
  const register = (store: Metastore, uuid: string, address: string, blocks: number[]) =>
    store.registerWorker({
      uuid,
      address,
      host: '',
      tiers: [{ name: 'MEM', dir: '/tmp/mem', capacityBytes: 1 << 30, usedBytes: 0 }],
      pageSize: 1024,
      capacityBytes: 1 << 30,
      usedBytes: 0,
      blocks: blocks.map((id) => ({ id, tier: 'MEM', bytes: BS })),
    });

  /** Writes `size` bytes to a file through worker `workerId` (begin, commit). */
  const writeFile = async (store: Metastore, ino: number, size: number, workerId: number) => {
    const { containerId } = await store.beginWrite(ino);
    const n = Math.ceil(size / BS);
    const blocks = Array.from({ length: n }, (_, i) => ({ id: blockIdOf(containerId, i), length: Math.min(BS, size - i * BS) }));
    return store.commitWrite({ ino, containerId, size, blocks, workerId, ufsFingerprint: null });
  };

  t.test('the Metastore conformance suite', async (t) => {
    // One database for the whole suite: every open must see what the previous store committed.
    const url = await freshDatabase();
    metastoreConformance(t, () => PgMetastore.open(url, { blockSize: BS }));
  });

  t.test('a fresh store has only the root; numbers come back as numbers', async (t) => {
    const { store } = await openStore(t);
    const root = await store.requireNode(ROOT_INO);
    t.equal(root.type, 'directory');
    t.equal(root.nlink, 2);
    t.equal(typeof root.mtime.sec, 'number');
    t.equal(await store.nodeCount(), 1);
    t.same(await store.children(ROOT_INO), []);
    t.equal(await store.pathOf(ROOT_INO), '/');
    t.equal(store.blockSize, BS);
  });

  t.test('create, lookup, list, remove: results and error codes', async (t) => {
    const { store } = await openStore(t);
    const d = await store.createChild(ROOT_INO, 'd', dirNode());
    const f = await store.createChild(d.ino, 'f', fileNode());
    t.ok(f.ino > d.ino, 'inode numbers grow');
    t.equal((await store.requireNode(ROOT_INO)).nlink, 3, 'a subdirectory adds a link to its parent');
    t.equal((await store.lookup(d.ino, 'f'))?.ino, f.ino);
    t.equal(await store.lookup(d.ino, 'nope'), undefined);
    t.equal(await store.pathOf(f.ino), '/d/f');
    t.same(
      (await store.children(d.ino)).map((c) => c.name),
      ['f'],
    );
    await store.createChild(d.ino, 'B', fileNode());
    await store.createChild(d.ino, 'a', fileNode());
    t.same(
      (await store.children(d.ino)).map((c) => c.name),
      ['B', 'a', 'f'],
      'listed in byte order',
    );
    await rejectsCode(t, () => store.createChild(d.ino, 'f', fileNode()), 'ALREADY_EXISTS', 'create over an existing name');
    await rejectsCode(t, () => store.createChild(f.ino, 'x', fileNode()), 'NOT_DIRECTORY', 'create in a file');
    await rejectsCode(t, () => store.createChild(9999, 'x', fileNode()), 'NOT_FOUND', 'create in a missing directory');
    await rejectsCode(t, () => store.requireNode(9999), 'NOT_FOUND', 'requireNode of a missing inode');
    await rejectsCode(t, () => store.removeChild(ROOT_INO, 'd', 'any'), 'NOT_EMPTY', 'remove a non-empty directory');
    await rejectsCode(t, () => store.removeChild(ROOT_INO, 'd', 'file'), 'IS_DIRECTORY', 'unlink a directory');
    await rejectsCode(t, () => store.removeChild(d.ino, 'f', 'directory'), 'NOT_DIRECTORY', 'rmdir a file');
    await rejectsCode(t, () => store.removeChild(d.ino, 'zz', 'any'), 'NOT_FOUND', 'remove a missing name');
    for (const name of ['f', 'B', 'a']) await store.removeChild(d.ino, name, 'file');
    await store.removeChild(ROOT_INO, 'd', 'directory');
    t.equal(await store.nodeCount(), 1);
    t.equal((await store.requireNode(ROOT_INO)).nlink, 2);
    const big = await store.createChild(ROOT_INO, 'big', fileNode({ persisted: true, size: 3 * BS + 1 }));
    const blocks = await store.blocks(big.ino);
    t.same(
      blocks.map((b) => [b.index, b.length]),
      [
        [0, BS],
        [1, BS],
        [2, BS],
        [3, 1],
      ],
      'a persisted file with a size gets its blocks',
    );
    t.equal(big.container, Math.floor(blocks[0]!.id / 2 ** 20));
    t.same(await store.block(blocks[3]!.id), { blockId: blocks[3]!.id, ino: big.ino, index: 3, length: 1 });
  });

  t.test('rename: moves, replaces, refuses a move into its own subtree', async (t) => {
    const { store, url } = await openStore(t);
    const a = await store.createChild(ROOT_INO, 'a', dirNode());
    const b = await store.createChild(a.ino, 'b', dirNode());
    const c = await store.createChild(b.ino, 'c', dirNode());
    const f = await store.createChild(ROOT_INO, 'f', fileNode());
    const g = await store.createChild(ROOT_INO, 'g', fileNode());
    await rejectsCode(t, () => store.rename(ROOT_INO, 'a', c.ino, 'a'), 'INVALID_ARGUMENT', 'a directory into its own subtree');
    await rejectsCode(t, () => store.rename(ROOT_INO, 'a', a.ino, 'x'), 'INVALID_ARGUMENT', 'a directory into itself');
    await rejectsCode(t, () => store.rename(ROOT_INO, 'nope', a.ino, 'x'), 'NOT_FOUND', 'a missing source');
    await rejectsCode(t, () => store.rename(ROOT_INO, 'f', f.ino, 'x'), 'NOT_DIRECTORY', 'into a file');
    await rejectsCode(t, () => store.rename(ROOT_INO, 'f', ROOT_INO, 'a'), 'IS_DIRECTORY', 'a file onto a directory');
    await rejectsCode(t, () => store.rename(a.ino, 'b', ROOT_INO, 'f'), 'NOT_DIRECTORY', 'a directory onto a file');
    await rejectsCode(t, () => store.rename(b.ino, 'c', ROOT_INO, 'a'), 'NOT_EMPTY', 'onto a non-empty directory');
    const moved = await store.rename(b.ino, 'c', ROOT_INO, 'c');
    t.equal(moved.ino, c.ino);
    t.equal((await store.requireNode(b.ino)).nlink, 2, 'the old parent lost a subdirectory');
    t.equal((await store.requireNode(ROOT_INO)).nlink, 4, 'the new parent gained one');
    await store.rename(ROOT_INO, 'f', ROOT_INO, 'g');
    t.equal((await store.lookup(ROOT_INO, 'g'))?.ino, f.ino, 'the file replaced the other');
    t.equal(await store.getNode(g.ino), undefined, 'the replaced file is gone');
    t.equal(await store.lookup(ROOT_INO, 'f'), undefined);
    await store.rename(ROOT_INO, 'c', a.ino, 'b'.padEnd(1));
    t.equal(await store.getNode(b.ino), undefined, 'an empty directory was replaced');
    t.equal(await store.pathOf(c.ino), '/a/b');
    await checkInvariants(t, url);
  });

  t.test('hard links: counts, primary link, unlink of the last name frees the inode', async (t) => {
    const { store, url } = await openStore(t);
    const d = await store.createChild(ROOT_INO, 'd', dirNode());
    const f = await store.createChild(ROOT_INO, 'f', fileNode());
    const linked = await store.link(f.ino, d.ino, 'f2');
    t.equal(linked.nlink, 2);
    t.ok(await store.isPrimaryLink(ROOT_INO, 'f'));
    t.notOk(await store.isPrimaryLink(d.ino, 'f2'));
    t.same(await store.otherLink(f.ino, ROOT_INO, 'f'), { parent: d.ino, name: 'f2' });
    await rejectsCode(t, () => store.link(d.ino, ROOT_INO, 'dd'), 'NOT_PERMITTED', 'a hard link to a directory');
    await rejectsCode(t, () => store.link(f.ino, ROOT_INO, 'd'), 'ALREADY_EXISTS', 'a link over a name');
    await rejectsCode(t, () => store.link(f.ino, f.ino, 'x'), 'NOT_DIRECTORY', 'a link in a file');
    await rejectsCode(t, () => store.link(9999, ROOT_INO, 'x'), 'NOT_FOUND', 'a link to nothing');
    await store.removeChild(ROOT_INO, 'f', 'file');
    t.ok(await store.isPrimaryLink(d.ino, 'f2'), 'the remaining link became primary');
    t.equal((await store.requireNode(f.ino)).nlink, 1);
    t.equal(await store.pathOf(f.ino), '/d/f2');
    await checkInvariants(t, url);
    await store.removeChild(d.ino, 'f2', 'file');
    t.equal(await store.getNode(f.ino), undefined);
    t.ok(await store.isDescendant(d.ino, ROOT_INO));
    t.notOk(await store.isDescendant(ROOT_INO, d.ino));
  });

  t.test('attributes, xattrs, TTLs, persist queue, mounts', async (t) => {
    const { store } = await openStore(t);
    const f = await store.createChild(ROOT_INO, 'f', fileNode());
    const changed = await store.setAttributes(f.ino, { mode: 0o100600, uid: 7, mtime: { sec: 100, nsec: 5 } });
    t.equal(changed.mode, 0o600);
    t.equal(changed.uid, 7);
    t.same(changed.mtime, { sec: 100, nsec: 5 });
    await rejectsCode(t, () => store.setAttributes(9999, { uid: 1 }), 'NOT_FOUND', 'setattr of nothing');

    await store.setXattr(f.ino, 'user.b', Buffer.from([0, 1, 255]), 0);
    await store.setXattr(f.ino, 'user.a', Buffer.from('x'), 1);
    t.same([...(await store.getXattr(f.ino, 'user.b'))], [0, 1, 255], 'binary values round-trip');
    t.same(await store.listXattrs(f.ino), ['user.a', 'user.b']);
    await rejectsCode(t, () => store.setXattr(f.ino, 'user.a', Buffer.from('y'), 1), 'ALREADY_EXISTS', 'XATTR_CREATE over one');
    await rejectsCode(t, () => store.setXattr(f.ino, 'user.c', Buffer.from('y'), 2), 'NO_ATTRIBUTE', 'XATTR_REPLACE of none');
    await rejectsCode(t, () => store.getXattr(f.ino, 'user.c'), 'NO_ATTRIBUTE', 'get of none');
    await store.removeXattr(f.ino, 'user.a');
    await rejectsCode(t, () => store.removeXattr(f.ino, 'user.a'), 'NO_ATTRIBUTE', 'remove of none');
    await rejectsCode(t, () => store.listXattrs(9999), 'NOT_FOUND', 'xattrs of nothing');

    await store.setTtl(f.ino, 1000, 'delete');
    t.same(await store.expiredTtls(999), []);
    t.same(await store.expiredTtls(1000), [{ ino: f.ino, expiresAtMs: 1000, action: 'delete' }]);
    await store.rescheduleTtl(f.ino, 999, 5000);
    t.same((await store.requireNode(f.ino)).ttl, { expiresAtMs: 1000, action: 'delete' }, 'a TTL set again meanwhile is not moved');
    await store.rescheduleTtl(f.ino, 1000, 5000);
    await store.clearTtl(f.ino, 5000);
    t.equal((await store.requireNode(f.ino)).ttl, null);

    const e = await store.commitEmpty({ ino: f.ino, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
    t.equal(e.size, 0);
    t.same(
      (await store.persistQueue()).map((q) => q.ino),
      [f.ino],
      'an ASYNC_THROUGH write is queued',
    );
    t.same(
      (await store.duePersists(Date.now() + 1, 10)).map((q) => q.ino),
      [f.ino],
    );
    await store.persistFailed(f.ino, 'boom');
    const [q] = await store.persistQueue();
    t.equal(q!.attempts, 1);
    t.equal(q!.lastError, 'boom');
    t.ok(q!.nextAt >= Date.now() + 500, 'the next attempt waits');
    t.notOk(await store.dropPersist(f.ino), 'an unpersisted file keeps its entry');
    t.notOk(await store.markPersisted(f.ino, e.container + 1, 'fp'), 'another version is not marked');
    await store.enqueuePersist(f.ino);
    t.ok(await store.markPersisted(f.ino, e.container, 'fp'));
    t.equal((await store.requireNode(f.ino)).persistState, 'persisted');
    t.same(await store.persistQueue(), []);
    t.notOk(await store.hasUnpersisted(ROOT_INO));
    await store.createChild(ROOT_INO, 'new', fileNode());
    t.ok(await store.hasUnpersisted(ROOT_INO));

    await store.setMount('/lake', 's3://b/lake', '{"readOnly":"true"}');
    await store.setMount('/a', 'file:///tmp/a');
    await store.setMount('/a', 'file:///tmp/b');
    t.same(await store.mounts(), [
      { path: '/a', uri: 'file:///tmp/b', options: '{}' },
      { path: '/lake', uri: 's3://b/lake', options: '{"readOnly":"true"}' },
    ]);
    await store.removeMount('/a');
    t.equal((await store.mounts()).length, 1);
  });

  t.test('writes, workers, block reports, pins, free and du', async (t) => {
    const { store } = await openStore(t);
    const w1 = await register(store, 'u1', '127.0.0.1:1', []);
    const w2 = await register(store, 'u2', '127.0.0.1:2', [12345]);
    t.not(w1, w2);
    const f = await store.createChild(ROOT_INO, 'f', fileNode());
    const written = await writeFile(store, f.ino, 2 * BS + 10, w1);
    t.equal(written.size, 2 * BS + 10);
    const blocks = await store.blocks(f.ino);
    t.same(
      blocks.map((b) => b.locations),
      [[w1], [w1], [w1]],
      'the writing worker holds the blocks',
    );
    await rejectsCode(
      t,
      () => store.commitWrite({ ino: f.ino, containerId: written.container, size: 1, blocks: [{ id: blockIdOf(written.container, 0), length: 1 }], workerId: w1, ufsFingerprint: null }),
      'TIMEOUT',
      'a write committed already',
    );
    const { containerId } = await store.beginWrite(f.ino);
    await rejectsCode(t, () => store.commitWrite({ ino: f.ino, containerId, size: 10, blocks: [], workerId: w1, ufsFingerprint: null }), 'BAD_REQUEST', 'too few blocks');
    await rejectsCode(t, () => store.beginWrite(ROOT_INO), 'IS_DIRECTORY', 'a write to a directory');

    // w2 reports a copy of block 0; an orphan it reported at registration is to be deleted.
    const beat = await store.heartbeat({ workerId: w2, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [{ id: blocks[0]!.id, tier: 'SSD', bytes: 100 }], removedBlocks: [], pinVersion: 0 });
    t.same(beat!.deleteBlocks, [12345], 'a block of no file is deleted on the worker');
    t.ok(beat!.pins, 'an old pin version gets the pinned set');
    const [firstBlock] = await store.blocks(f.ino);
    t.same(
      firstBlock?.cached?.find((c) => c.workerId === w2),
      { workerId: w2, tier: 'SSD', bytes: 100 },
      'a reported copy with its tier and bytes',
    );
    t.equal(await store.heartbeat({ workerId: 999, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: 0 }), null);

    const du = await store.du(ROOT_INO);
    t.same(du, { files: 1, directories: 1, size: 2 * BS + 10, cachedBytes: 2 * BS + 10 });

    const before = await store.pinVersion();
    t.same(await store.setPinned(ROOT_INO, true), { files: 1 });
    t.ok((await store.pinVersion()) > before, 'pinning changes the pin version');
    t.same(
      await store.pinnedBlocks(),
      blocks.map((b) => b.id),
    );
    const g = await store.createChild(ROOT_INO, 'g', fileNode());
    t.ok(g.pinned, 'a child of a pinned directory starts pinned');

    t.same(await store.free(ROOT_INO), { files: 0, bytes: 0, skippedNotPersisted: 2 }, 'unpersisted files keep their copies');
    await store.markPersisted(f.ino, written.container, 'fp');
    const freed = await store.free(f.ino);
    t.same(freed, { files: 1, bytes: 2 * BS + 10 + 100 - 0, skippedNotPersisted: 0 });
    t.same(
      (await store.blocks(f.ino)).map((b) => b.locations),
      [[], [], []],
    );
    const next = await store.heartbeat({ workerId: w1, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: await store.pinVersion() });
    t.same(next!.deleteBlocks.sort(), blocks.map((b) => b.id).sort(), 'freed copies are deleted on their worker');
    t.equal(next!.pins, undefined, 'an up-to-date pin version gets no set');

    t.same(await store.expireWorkers(Date.now() + 1000), [w1, w2]);
    t.same(
      (await store.workers()).map((w) => w.live),
      [false, false],
    );
    // A write in flight: copies reported before the commit are not orphans; an abandoned one expires.
    const w3 = await register(store, 'u3', '127.0.0.1:3', []);
    const open = await store.beginWrite(g.ino);
    const b0 = blockIdOf(open.containerId, 0);
    const hb = await store.heartbeat({ workerId: w3, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [{ id: b0, tier: 'MEM', bytes: 10 }], removedBlocks: [], pinVersion: 0, openWrites: [open.containerId] });
    t.same(hb!.deleteBlocks, [], 'a block of a write in flight is kept');
    t.equal((await store.expireOpenWrites(Date.now() + 1000)).writes, 2, 'this write and the one begun above and never committed');
    const after = await store.heartbeat({ workerId: w3, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: 0 });
    t.same(after!.deleteBlocks, [b0], 'an expired write’s copies are deleted');
  });

  t.test('sync steps with guards: forgetChild, refreshFromUfs, loadChildren', async (t) => {
    const { store, url } = await openStore(t);
    const d = await store.createChild(ROOT_INO, 'd', dirNode());
    await store.loadChildren(d.ino, [
      { name: 'x', node: fileNode({ persisted: true, size: 5, ufsFingerprint: 'fx' }) },
      { name: 'sub', node: dirNode({ persisted: true }) },
    ]);
    await store.loadChildren(d.ino, [{ name: 'x', node: fileNode({ persisted: true, size: 99 }) }]);
    const x = (await store.lookup(d.ino, 'x'))!;
    t.equal(x.size, 5, 'loadChildren never replaces');
    t.equal((await store.requireNode(d.ino)).nlink, 3);
    t.notOk(await store.refreshFromUfs(x.ino, 7, { sec: 1, nsec: 0 }, 'fy', { ufsFingerprint: 'other', syncedBefore: Date.now() + 1 }), 'a guard that does not match');
    t.ok(await store.refreshFromUfs(x.ino, 7, { sec: 1, nsec: 0 }, 'fy', { ufsFingerprint: 'fx', syncedBefore: Date.now() + 1 }));
    const refreshed = await store.requireNode(x.ino);
    t.equal(refreshed.size, 7);
    t.equal(refreshed.ufsFingerprint, 'fy');
    t.equal((await store.blocks(x.ino)).length, 1);
    t.notOk(await store.forgetChild(d.ino, 'x', { ino: x.ino, ufsFingerprint: 'fx', syncedBefore: Date.now() + 1 }), 'a changed node is not forgotten');
    t.ok(await store.forgetChild(d.ino, 'x', { ino: x.ino, ufsFingerprint: 'fy', syncedBefore: Date.now() + 1 }));
    t.ok(await store.forgetChild(ROOT_INO, 'd'), 'a whole subtree');
    t.notOk(await store.forgetChild(ROOT_INO, 'd'));
    t.equal(await store.nodeCount(), 1);
    await store.markSyncedMany([ROOT_INO], 42);
    t.equal((await store.requireNode(ROOT_INO)).syncedAt, 42);
    await checkInvariants(t, url);
  });

  t.test('a large listing loads in one batch, as SQLite loads it', async (t) => {
    const { store, url } = await openStore(t);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-'));
    const sqlite = new SqliteMetastore(path.join(dir, 'meta.db'), { blockSize: BS });
    t.teardown(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const listing = Array.from({ length: 1000 }, (_, i) => ({
      name: `e${i % 950}`,
      node: i % 7 === 0 ? dirNode({ persisted: true, mtime: { sec: 1000 + i, nsec: i } }) : fileNode({ persisted: true, size: i * 500, ufsFingerprint: `fp${i}`, mtime: { sec: 2000 + i, nsec: 7 } }),
    }));
    const shape = async (s: Metastore, parent: number) =>
      Promise.all(
        (await s.children(parent)).map(async (c) => ({
          name: c.name,
          type: c.type,
          size: c.size,
          nlink: c.nlink,
          mtime: c.mtime,
          ctime: c.ctime,
          fp: c.ufsFingerprint,
          blocks: c.type === 'file' ? (await s.blocks(c.ino)).map((b) => [b.index, b.length, b.id % 2 ** 20]) : [],
        })),
      );
    for (const s of [store, sqlite] as Metastore[]) {
      const d = await s.createChild(ROOT_INO, 'd', dirNode());
      await s.createChild(d.ino, 'e5', fileNode({ mtime: { sec: 5, nsec: 5 } }));
      await s.loadChildren(d.ino, listing);
    }
    const pgD = (await store.lookup(ROOT_INO, 'd'))!;
    const liteD = (await sqlite.lookup(ROOT_INO, 'd'))!;
    t.equal(pgD.nlink, liteD.nlink, 'the same link count of the parent');
    t.same(await shape(store, pgD.ino), await shape(sqlite, liteD.ino), 'the same entries, attributes and blocks');
    t.equal((await store.children(pgD.ino)).length, 950);
    await checkInvariants(t, url);
  });

  t.test('2,000 random operations answer as SQLite answers them: results, error codes and the final tree', async (t) => {
    const { store, url } = await openStore(t);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-'));
    const sqlite = new SqliteMetastore(path.join(dir, 'meta.db'), { blockSize: BS });
    t.teardown(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    // A seeded generator (mulberry32): a failure names the seed that reproduces it.
    const seed = Number(process.env.STRATA_TEST_SEED ?? Date.now() % 1e9);
    let state = seed >>> 0;
    const random = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let x = Math.imul(state ^ (state >>> 15), 1 | state);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const names = ['a', 'b', 'c'] as const;
    const paths = ['/', '/', '/a', '/b', '/c', '/a/a', '/a/b', '/b/a', '/a/a/b'];
    const MISSING = 2 ** 40;
    /** The inode at `p`, or a number no inode has (the same in both stores, so both answer NOT_FOUND). */
    const resolve = async (s: Metastore, p: string): Promise<number> => {
      let ino = ROOT_INO;
      for (const part of p.split('/').filter(Boolean)) {
        const n = await s.lookup(ino, part);
        if (!n) return MISSING;
        ino = n.ino;
      }
      return ino;
    };
    const shape = (n: { type: string; nlink: number; mode: number; size: number }) => `${n.type} nlink=${n.nlink} mode=${n.mode.toString(8)} size=${n.size}`;
    type Op = { what: string; run: (s: Metastore) => Promise<unknown> };
    const ops: (() => Op)[] = [
      () => {
        const [p, name, type] = [pick(paths), pick(names), pick(['file', 'directory', 'symlink'] as const)];
        return {
          what: `create ${type} ${p}/${name}`,
          run: async (s) => s.createChild(await resolve(s, p), name, type === 'directory' ? dirNode() : type === 'symlink' ? fileNode({ type: 'symlink', target: 'x' }) : fileNode()),
        };
      },
      () => {
        const [sp, sn, dp, dn] = [pick(paths), pick(names), pick(paths), pick(names)];
        return { what: `rename ${sp}/${sn} ${dp}/${dn}`, run: async (s) => s.rename(await resolve(s, sp), sn, await resolve(s, dp), dn) };
      },
      () => {
        const [p, dp, dn] = [pick(paths), pick(paths), pick(names)];
        return { what: `link ${p} ${dp}/${dn}`, run: async (s) => s.link(await resolve(s, p), await resolve(s, dp), dn) };
      },
      () => {
        const [p, name, expect] = [pick(paths), pick(names), pick(['file', 'directory', 'any'] as const)];
        return { what: `remove ${expect} ${p}/${name}`, run: async (s) => s.removeChild(await resolve(s, p), name, expect) };
      },
      () => {
        const [p, mode] = [pick(paths), Math.floor(random() * 0o7777)];
        return { what: `chmod ${p} ${mode.toString(8)}`, run: async (s) => s.setAttributes(await resolve(s, p), { mode }) };
      },
      () => {
        const [p, name, flags] = [pick(paths), pick(['user.x', 'user.y']), pick([0, 1, 2])];
        return { what: `setxattr ${p} ${name} ${flags}`, run: async (s) => s.setXattr(await resolve(s, p), name, Buffer.from(name), flags) };
      },
      () => {
        const [p, name] = [pick(paths), pick(['user.x', 'user.y'])];
        return { what: `removexattr ${p} ${name}`, run: async (s) => s.removeXattr(await resolve(s, p), name) };
      },
    ];
    // Creates and renames most often, so the tree grows and names move.
    const weights = [5, 4, 1, 2, 1, 1, 1];
    const weighted = ops.flatMap((op, i) => Array<() => Op>(weights[i]!).fill(op));
    const outcome = async (s: Metastore, op: Op): Promise<string> => {
      try {
        const r = await op.run(s);
        return r && typeof r === 'object' && 'type' in r ? shape(r as NodeRecordLike) : 'ok';
      } catch (err) {
        if (err instanceof StrataError) return err.code;
        throw err;
      }
    };
    type NodeRecordLike = { type: string; nlink: number; mode: number; size: number };
    let differences = 0;
    const tally = new Map<string, number>();
    for (let i = 0; i < 2000 && differences < 5; i++) {
      const op = pick(weighted)();
      const [fromPg, fromSqlite] = [await outcome(store, op), await outcome(sqlite, op)];
      const kind = `${op.what.split(' ')[0]} ${/^[A-Z_]+$/.test(fromPg) ? fromPg : 'ok'}`;
      tally.set(kind, (tally.get(kind) ?? 0) + 1);
      if (fromPg !== fromSqlite) {
        differences++;
        t.fail(`seed ${seed}, op ${i} (${op.what}): PostgreSQL answered ${fromPg}, SQLite ${fromSqlite}`);
      }
    }
    t.equal(differences, 0, `every answer the same (seed ${seed})`);
    t.comment([...tally].sort().map(([k, v]) => `${k}: ${v}`).join(', '));
    const tree = async (s: Metastore, ino = ROOT_INO, at = ''): Promise<string[]> => {
      const out: string[] = [];
      for (const c of await s.children(ino)) {
        out.push(`${at}/${c.name}: ${shape(c)} xattrs=${(await s.listXattrs(c.ino)).join(',')}`);
        if (c.type === 'directory') out.push(...(await tree(s, c.ino, `${at}/${c.name}`)));
      }
      return out;
    };
    t.same(await tree(store), await tree(sqlite), 'the same tree at the end');
    t.equal(await store.nodeCount(), await sqlite.nodeCount(), 'as many inodes');
    await checkInvariants(t, url);
  });

  t.test('a block report of 20,000 blocks is taken in one batch, as SQLite takes it', async (t) => {
    const { store } = await openStore(t);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-'));
    const sqlite = new SqliteMetastore(path.join(dir, 'meta.db'), { blockSize: BS });
    t.teardown(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const FILES = 50;
    const BLOCKS = 40;
    const run = async (s: Metastore) => {
      const w1 = await register(s, 'w1', '127.0.0.1:1', []);
      const files: { ino: number; ids: number[] }[] = [];
      for (let i = 0; i < FILES; i++) {
        const f = await s.createChild(ROOT_INO, `f${i}`, fileNode());
        const written = await writeFile(s, f.ino, BLOCKS * BS, w1);
        files.push({ ino: f.ino, ids: (await s.blocks(f.ino)).map((b) => b.id) });
        // Every third file persisted and freed: deletions of w1's copies are queued.
        if (i % 3 === 0) {
          await s.markPersisted(f.ino, written.container, 'fp');
          await s.free(f.ino);
        }
      }
      const inFlight = await s.beginWrite(files[1]!.ino);
      const all = files.flatMap((f) => f.ids);
      const report = [
        ...all.map((id, i) => ({ id, tier: i % 2 ? 'SSD' : 'MEM', bytes: 100 + (i % 7) })),
        // Repeats: the later report wins.
        ...all.slice(0, 500).map((id) => ({ id, tier: 'HDD', bytes: 5 })),
        ...Array.from({ length: 17_000 }, (_, i) => ({ id: blockIdOf(1_000_000, i), tier: 'HDD', bytes: 1 })),
        ...Array.from({ length: 50 }, (_, i) => ({ id: blockIdOf(inFlight.containerId, i), tier: 'MEM', bytes: 9 })),
      ];
      const w2 = await s.registerWorker({ uuid: 'w2', address: '127.0.0.1:2', host: '', tiers: [], pageSize: 1024, capacityBytes: 1e9, usedBytes: 0, blocks: report });
      const beat1 = await s.heartbeat({ workerId: w1, capacityBytes: 1e9, usedBytes: 0, tiers: [], addedBlocks: all.slice(0, 300).map((id) => ({ id, tier: 'MEM', bytes: 3 })), removedBlocks: all.slice(300, 400), pinVersion: 0 });
      const beat2 = await s.heartbeat({ workerId: w2, capacityBytes: 1e9, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: 0 });
      const byFile = await Promise.all(
        files.map(async (f) => (await s.blocks(f.ino)).map((b) => (b.cached ?? []).map((c) => `${c.workerId === w1 ? 'w1' : 'w2'}:${c.tier}:${c.bytes}`).join(' '))),
      );
      const relative = (ids: number[]) => ids.map((id) => (all.includes(id) ? `file block ${all.indexOf(id)}` : Math.floor(id / 2 ** 20) === inFlight.containerId ? `in flight ${id % 2 ** 20}` : `other ${id}`)).sort();
      return { byFile, deletes1: relative(beat1!.deleteBlocks), deletes2: relative(beat2!.deleteBlocks) };
    };
    const fromPg = await run(store);
    const fromSqlite = await run(sqlite);
    t.same(fromPg.byFile, fromSqlite.byFile, 'the same locations, tiers and bytes of every block');
    t.same(fromPg.deletes1, fromSqlite.deletes1, 'the same deletions for the first worker');
    t.same(fromPg.deletes2, fromSqlite.deletes2, 'the same deletions for the second worker');
    t.ok(fromPg.deletes2.length >= 10_000, `orphans reported are to be deleted (${fromPg.deletes2.length}, answered at most 10,000 at a time)`);
  });

  t.test('a vanished subtree of 2,000 nodes is forgotten in a few statements, as SQLite forgets it (hard links out of it survive)', async (t) => {
    const { store, url } = await openStore(t);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-'));
    const sqlite = new SqliteMetastore(path.join(dir, 'meta.db'), { blockSize: BS });
    t.teardown(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const run = async (s: Metastore) => {
      const w = await register(s, 'w', '127.0.0.1:1', []);
      const gone = await s.createChild(ROOT_INO, 'gone', dirNode({ persisted: true }));
      const keep = await s.createChild(ROOT_INO, 'keep', dirNode());
      await s.setPinned(gone.ino, true);
      let files = 0;
      for (let i = 0; i < 40; i++) {
        const d = await s.createChild(gone.ino, `d${i}`, dirNode({ persisted: true }));
        const sub = await s.createChild(d.ino, 'sub', dirNode({ persisted: true }));
        const listing = Array.from({ length: 24 }, (_, j) => ({ name: `f${j}`, node: fileNode({ persisted: true, size: (j + 1) * 100 }) }));
        await s.loadChildren(j(i) ? d.ino : sub.ino, listing);
        files += 24;
      }
      // Hard links: out of the subtree (the file survives, its primary link moves out), and inside it twice.
      for (let i = 0; i < 40; i += 3) {
        const parentOfFiles = j(i) ? await s.lookup(gone.ino, `d${i}`) : await s.lookup((await s.lookup(gone.ino, `d${i}`))!.ino, 'sub');
        const f = (await s.lookup(parentOfFiles!.ino, 'f1'))!;
        await s.link(f.ino, keep.ino, `out${i}`);
        await s.link(f.ino, keep.ino, `out${i}b`);
        const g = (await s.lookup(parentOfFiles!.ino, 'f2'))!;
        await s.link(g.ino, (await s.lookup(gone.ino, `d${(i + 1) % 40}`))!.ino, `in${i}`);
        await writeFile(s, (await s.lookup(parentOfFiles!.ino, 'f3'))!.ino, 3 * BS, w);
      }
      const pinBefore = await s.pinVersion();
      t.ok(await s.forgetChild(ROOT_INO, 'gone'));
      const kept = await Promise.all(
        (await s.children(keep.ino)).map(async (c) => ({
          name: c.name,
          nlink: c.nlink,
          primary: await s.isPrimaryLink(keep.ino, c.name),
          path: await s.pathOf(c.ino),
          blocks: (await s.blocks(c.ino)).length,
        })),
      );
      const beat = await s.heartbeat({ workerId: w, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: 0 });
      return { files, kept, count: await s.nodeCount(), deletes: beat!.deleteBlocks.length, pinMoved: (await s.pinVersion()) > pinBefore, root: (await s.requireNode(ROOT_INO)).nlink };
    };
    const j = (i: number) => i % 2 === 0;
    const fromPg = await run(store);
    const fromSqlite = await run(sqlite);
    t.same(fromPg, fromSqlite, 'the same survivors, links, primary links, counts, deletions and pin version change');
    t.equal(fromPg.count, 2 + fromPg.kept.length / 2, 'only the root, keep and the linked-out files are left');
    t.ok(fromPg.deletes > 0 && fromPg.pinMoved, 'cached copies are queued for deletion, the pinned set changed');
    await checkInvariants(t, url);
  });

  t.test('the change log forgets old history: a client that fell behind it resets', async (t) => {
    const log = new PgChangeLog();
    const epoch = log.epoch;
    const batch = Array.from({ length: 1000 }, (_, i) => ({ ino: i, kind: 0 as const, name: null }));
    for (let i = 0; i < 310; i++) log.append(batch);
    t.equal(await log.seq(), 310_000);
    t.ok((await log.changes(epoch, 0, 0)).reset, 'seq 0 is no longer in the log');
    const recent = await log.changes(epoch, 300_000, 0);
    t.notOk(recent.reset);
    t.equal(recent.seq, 310_000);
    t.equal(recent.inos.length, 1000, 'each inode once');
    const capped = await log.changes(epoch, 150_000, 0);
    t.notOk(capped.reset, 'still in the log');
    t.equal(capped.seq, 160_000, 'at most one batch of changes per answer');
    await log.close();
  });

  t.test('the change log: names, nodes and cache maps, in order, with a long poll and resets', async (t) => {
    const { store } = await openStore(t);
    const log = store.changes;
    const start = await log.seq();
    t.match(await log.header(start), new RegExp(`^${log.epoch}:${start}:${start}$`));
    const polled = log.changes(log.epoch, start, 5000);
    const d = await store.createChild(ROOT_INO, 'd', dirNode());
    const first = await polled;
    t.notOk(first.reset);
    t.ok(first.names.some(([ino, name]) => ino === ROOT_INO && name === 'd'), 'the new name');
    t.ok(first.inos.includes(d.ino) && first.inos.includes(ROOT_INO), 'the new node and its parent');
    t.equal(first.seq, await log.seq());
    // A failed operation changes nothing.
    await rejectsCode(t, () => store.createChild(ROOT_INO, 'd', dirNode()), 'ALREADY_EXISTS', 'create over a name');
    t.equal(await log.seq(), first.seq, 'a rolled-back transaction logs nothing');
    const w = await register(store, 'u', '127.0.0.1:9', []);
    const f = await store.createChild(d.ino, 'f', fileNode());
    await writeFile(store, f.ino, 10, w);
    const next = await log.changes(log.epoch, first.seq, 0);
    t.same(
      next.located.map(([ino]) => ino),
      [f.ino],
      'the file whose cache map changed',
    );
    t.ok(next.names.some(([ino, name]) => ino === d.ino && name === 'f'));
    t.ok((await log.changes('other-epoch', 0, 0)).reset, 'another epoch resets');
    t.ok((await log.changes(log.epoch, (await log.seq()) + 5, 0)).reset, 'a seq from the future resets');
    const ac = new AbortController();
    const waiting = log.changes(log.epoch, await log.seq(), 60_000, ac.signal);
    ac.abort();
    t.same((await waiting).inos, [], 'an aborted long poll answers at once');
  });

  t.test('8 concurrent callers doing 300 random renames, creates, links and unlinks keep the tree sound', async (t) => {
    const { store, url } = await openStore(t, { poolSize: 8 });
    const dirs = [ROOT_INO];
    for (let i = 0; i < 4; i++) dirs.push((await store.createChild(ROOT_INO, `d${i}`, dirNode())).ino);
    for (let i = 0; i < 2; i++) dirs.push((await store.createChild(dirs[1 + i]!, `e${i}`, dirNode())).ino);
    const names = ['a', 'b', 'c'];
    const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
    /** A name that exists (or did a moment ago) in a random directory. */
    const someEntry = async (): Promise<{ parent: number; name: string } | undefined> => {
      const parent = pick(dirs);
      const kids = await store.children(parent);
      return kids.length ? { parent, name: pick(kids).name } : undefined;
    };
    // Codes the operations answer legitimately when another caller got there first.
    const expected = new Set<ErrorCode>(['NOT_FOUND', 'ALREADY_EXISTS', 'NOT_EMPTY', 'INVALID_ARGUMENT', 'NOT_DIRECTORY', 'IS_DIRECTORY', 'NOT_PERMITTED']);
    const outcomes = new Map<string, number>();
    let total = 0;
    const retriesBefore = store.stats.retries;
    const caller = async () => {
      while (total < 300) {
        total++;
        const op = pick(['create', 'mkdir', 'rename', 'rename', 'rename', 'link', 'unlink']);
        try {
          if (op === 'create') await store.createChild(pick(dirs), pick(names), fileNode());
          else if (op === 'mkdir') dirs.push((await store.createChild(pick(dirs), pick(names), dirNode())).ino);
          else {
            const e = await someEntry();
            if (!e) continue;
            if (op === 'rename') await store.rename(e.parent, e.name, pick(dirs), pick(names));
            else if (op === 'unlink') await store.removeChild(e.parent, e.name, 'any');
            else {
              const src = await store.lookup(e.parent, e.name);
              if (src) await store.link(src.ino, pick(dirs), pick(names));
            }
          }
          outcomes.set(`${op} ok`, (outcomes.get(`${op} ok`) ?? 0) + 1);
        } catch (err) {
          if (!(err instanceof StrataError) || !expected.has(err.code)) throw err;
          outcomes.set(`${op} ${err.code}`, (outcomes.get(`${op} ${err.code}`) ?? 0) + 1);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, caller));
    t.comment([...outcomes].sort().map(([k, v]) => `${k}: ${v}`).join(', '));
    t.comment(`transactions run again after a conflict: ${store.stats.retries - retriesBefore}`);
    t.ok([...outcomes.keys()].some((k) => k.startsWith('rename ok')), 'some renames went through');
    await checkInvariants(t, url);
  });

  t.test('two directories moved into each other at once: one move wins, the other is INVALID_ARGUMENT, never a cycle', async (t) => {
    const { store, url } = await openStore(t, { poolSize: 4 });
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 30; round++) {
      const top = await store.createChild(ROOT_INO, `r${round}`, dirNode());
      const a = await store.createChild(top.ino, 'a', dirNode());
      const b = await store.createChild(top.ino, 'b', dirNode());
      const results = await Promise.allSettled([store.rename(top.ino, 'a', b.ino, 'x'), store.rename(top.ino, 'b', a.ino, 'y')]);
      const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : String((r.reason as StrataError).code))).sort();
      outcomes.set(codes.join('+'), (outcomes.get(codes.join('+')) ?? 0) + 1);
    }
    t.same([...outcomes.keys()], ['INVALID_ARGUMENT+ok'], `every round: one move and one refusal (${[...outcomes].map(([k, v]) => `${k}: ${v}`).join(', ')})`);
    await checkInvariants(t, url);
  });

  t.test('a create below a mount point at the moment it is unmounted: the unmount is refused or the create fails, never both succeed', async (t) => {
    const { store, url } = await openStore(t, { poolSize: 4 });
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 30; round++) {
      const at = `/u${round}`;
      const m = await store.createChild(ROOT_INO, `u${round}`, dirNode({ persisted: true }));
      await store.setMount(at, 'mem://u');
      const sub = await store.createChild(m.ino, 'sub', dirNode({ persisted: true }));
      const [created, unmounted] = await Promise.allSettled([store.createChild(sub.ino, 'new', fileNode()), store.unmount(at, ROOT_INO, `u${round}`)]);
      const codes = [created, unmounted].map((r) => (r.status === 'fulfilled' ? 'ok' : String((r.reason as StrataError).code)));
      outcomes.set(`create ${codes[0]}, unmount ${codes[1]}`, (outcomes.get(`create ${codes[0]}, unmount ${codes[1]}`) ?? 0) + 1);
      const mounted = (await store.mounts()).some((r) => r.path === at);
      if (created.status === 'fulfilled') {
        t.equal(unmounted.status, 'rejected', `round ${round}: a file created below keeps the mount (unmount ${codes[1]})`);
        t.ok(mounted && (await store.getNode(created.value.ino)), `round ${round}: mount and file are there`);
      } else {
        t.equal(codes.join(' '), 'NOT_FOUND ok', `round ${round}: the unmount went first and the create found no parent`);
        t.notOk(mounted, `round ${round}: unmounted`);
      }
    }
    t.comment([...outcomes].map(([k, v]) => `${k}: ${v}`).join(', '));
    await checkInvariants(t, url);
  });

  t.test('a server crash in the middle of a burst of creates: every create that resolved is there, none is half done', async (t) => {
    const { store: first, url } = await openStore(t, { poolSize: 8 });
    let store: PgMetastore = first;
    const resolved: string[] = [];
    const failed: string[] = [];
    let started = 0;
    const creator = async () => {
      while (started < 400) {
        const name = `f${started++}`;
        try {
          await store.createChild(ROOT_INO, name, fileNode({ persisted: true, size: 3 * BS }));
          resolved.push(name);
        } catch (err) {
          t.ok(err instanceof StrataError && err.code === 'UNAVAILABLE', `${name}: a lost server is UNAVAILABLE (${String(err)})`);
          failed.push(name);
          return;
        }
      }
    };
    const burst = Promise.all(Array.from({ length: 8 }, creator));
    while (resolved.length < 40) await new Promise((r) => setTimeout(r, 5));
    server.kill();
    await burst;
    t.ok(failed.length > 0, 'the crash interrupted creates');
    await store.close();
    await server.start();
    store = await PgMetastore.open(url, { blockSize: BS });
    t.teardown(() => store.close());
    for (const name of resolved) {
      const n = await store.lookup(ROOT_INO, name);
      if (!n) t.fail(`${name} resolved before the crash but is gone`);
      else if ((await store.blocks(n.ino)).length !== 3) t.fail(`${name} lost blocks`);
    }
    t.pass(`${resolved.length} resolved creates all present`);
    const present = (await store.children(ROOT_INO)).length;
    t.ok(present >= resolved.length && present <= resolved.length + failed.length, `${present} names: the resolved ones and perhaps some in flight`);
    await checkInvariants(t, url);
    const [{ n: unnamedBlocks }] = (await query<{ n: number }>(url, `SELECT COUNT(*)::int AS n FROM node n WHERE n.ino <> 1 AND NOT EXISTS (SELECT 1 FROM block b WHERE b.ino = n.ino)`)) as [{ n: number }];
    t.equal(unnamedBlocks, 0, 'every file that exists has its blocks');
  });

  t.test('a server restarted between two calls: the same store reconnects by itself', async (t) => {
    const { store } = await openStore(t, { poolSize: 4 });
    const d = await store.createChild(ROOT_INO, 'before', dirNode());
    // Connections in the pool, all about to break.
    await Promise.all(Array.from({ length: 4 }, () => store.children(ROOT_INO)));
    server.kill();
    await server.start();
    t.equal((await store.lookup(ROOT_INO, 'before'))?.ino, d.ino, 'a read on a broken pooled connection is run again');
    const after = await store.createChild(d.ino, 'after', fileNode());
    t.equal(await store.pathOf(after.ino), '/before/after', 'so is a transaction');
  });

  t.test('closing and opening again keeps everything; each open is a new change epoch and pin version', async (t) => {
    const url = await freshDatabase();
    let store = await PgMetastore.open(url, { blockSize: BS });
    t.teardown(() => store.close());
    const d = await store.createChild(ROOT_INO, 'd', dirNode());
    const f = await store.createChild(d.ino, 'f', fileNode());
    await store.link(f.ino, ROOT_INO, 'f-link');
    const w = await register(store, 'u1', '127.0.0.1:1', []);
    await writeFile(store, f.ino, BS + 1, w);
    await store.setXattr(f.ino, 'user.k', Buffer.from('v'), 0);
    await store.setMount('/m', 'mem://x');
    await store.setPinned(d.ino, true);
    await store.setTtl(d.ino, 12345, 'free');
    await store.commitEmpty({ ino: (await store.createChild(ROOT_INO, 'q', fileNode())).ino, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
    const snapshot = async (s: PgMetastore) => ({
      root: await s.children(ROOT_INO),
      d: await s.children(d.ino),
      blocks: await s.blocks(f.ino),
      xattrs: await s.listXattrs(f.ino),
      mounts: await s.mounts(),
      workers: await s.workers(),
      queue: await s.persistQueue(),
      pinned: await s.pinnedBlocks(),
      count: await s.nodeCount(),
    });
    const before = await snapshot(store);
    const { epoch } = store.changes;
    const pinVersion = await store.pinVersion();
    await store.close();
    store = await PgMetastore.open(url, { blockSize: BS });
    t.same(await snapshot(store), before, 'the same namespace, blocks, workers, queue and pins');
    t.not(store.changes.epoch, epoch, 'a new epoch: clients drop caches of the old log');
    t.ok((await store.pinVersion()) > pinVersion, 'a new pin version');
    const g = await store.createChild(ROOT_INO, 'g', fileNode());
    t.ok(g.ino > before.count, 'inode numbers are not reused after reopening');
  });

  t.test('a database with a newer schema version is refused with CONFIG', async (t) => {
    const url = await freshDatabase();
    await (await PgMetastore.open(url, { blockSize: BS })).close();
    await query(url, `UPDATE meta SET value = '99' WHERE key = 'schema_version'`);
    await rejectsCode(t, () => PgMetastore.open(url, { blockSize: BS }), 'CONFIG', 'schema version 99');
    await query(url, `UPDATE meta SET value = 'x' WHERE key = 'schema_version'`);
    await rejectsCode(t, () => PgMetastore.open(url, { blockSize: BS }), 'CONFIG', 'an unreadable schema version');
    await query(url, `UPDATE meta SET value = '4' WHERE key = 'schema_version'`);
    await (await PgMetastore.open(url, { blockSize: BS })).close();
    t.pass('the current version opens');
    // Version 1 (before the persist queue's index, the unpersisted files' one and in_store): migrated on open.
    await query(url, `DROP INDEX persist_queue_due`);
    await query(url, `DROP INDEX node_unpersisted_container`);
    await query(url, `ALTER TABLE node DROP COLUMN in_store`);
    await query(url, `UPDATE meta SET value = '1' WHERE key = 'schema_version'`);
    await (await PgMetastore.open(url, { blockSize: BS })).close();
    t.same(await query(url, `SELECT value FROM meta WHERE key = 'schema_version'`), [{ value: '4' }], 'version 1 is migrated to 4');
    t.same(await query(url, `SELECT DISTINCT in_store FROM node`), [{ in_store: true }], 'nodes from before in_store may have an object in the store');
    t.same(await query(url, `SELECT indexname FROM pg_indexes WHERE indexname = 'persist_queue_due'`), [{ indexname: 'persist_queue_due' }], 'with the index on due times');
    t.same(await query(url, `SELECT indexname FROM pg_indexes WHERE indexname = 'node_unpersisted_container'`), [{ indexname: 'node_unpersisted_container' }], 'and the one of unpersisted files by container');
  });

  t.test('openMetastore picks PostgreSQL for postgres:// URLs; a bad one fails without showing its password', async (t) => {
    const url = await freshDatabase();
    const store = await openMetastore(url, { blockSize: BS, persistInitialWaitMs: 0 });
    t.ok(store instanceof PgMetastore);
    await store.close();
    const missing = server.url.replace('strata@', 'strata:hunter2@').replace(/\/[^/]*$/, '/no_such_database');
    let err: unknown;
    try {
      await openMetastore(missing, { blockSize: BS, persistInitialWaitMs: 0 });
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof StrataError, `a StrataError (${String(err)})`);
    t.notMatch((err as Error).message, /hunter2/, 'no password in the message');
  });

  t.test('two stores opening one new database at once both succeed', async (t) => {
    const url = await freshDatabase();
    const stores = await Promise.all([PgMetastore.open(url, { blockSize: BS }), PgMetastore.open(url, { blockSize: BS })]);
    t.equal(await stores[0].nodeCount(), 1, 'one root');
    await Promise.all(stores.map((s) => s.close()));
  });

  t.test('ops/s of 1,000 createChild + 1,000 lookup: PostgreSQL and SQLite (informational; the machine is shared)', async (t) => {
    const { store } = await openStore(t);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-'));
    const sqlite = new SqliteMetastore(path.join(dir, 'meta.db'), { blockSize: BS });
    t.teardown(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    for (const [engine, s] of [
      ['postgres', store],
      ['sqlite', sqlite],
    ] as const) {
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) await s.createChild(ROOT_INO, `n${i}`, fileNode());
      const t1 = performance.now();
      for (let i = 0; i < 1000; i++) await s.lookup(ROOT_INO, `n${i}`);
      const t2 = performance.now();
      t.comment(`${engine}: createChild ${Math.round(1000 / ((t1 - t0) / 1000))}/s, lookup ${Math.round(1000 / ((t2 - t1) / 1000))}/s`);
    }
    t.pass();
  });
}
