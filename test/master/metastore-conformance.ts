/**
 * The Metastore conformance suite: whole operations through the interface only,
 * so every engine (SQLite, PostgreSQL) runs the same checks. Engine-specific
 * matters (schema migration, crash safety of the file, SQL details) stay in the
 * engine's own tests.
 *
 * `open` opens the engine's store under test. It is called once per subtest and
 * again for the restart check, each time after the previous store was closed, and
 * must open the SAME data: what one store committed, the next one sees. The suite
 * starts from a store holding only the root and the empty tables; subtests share
 * it, so each works in a directory of its own and filters global lists (workers,
 * persist queue, TTLs, mounts, pinned blocks) by what it created. Subtests run
 * one after another.
 */

import type tap from 'tap';
import { blockIdOf, type BlockReport } from '../../src/common/protocol';
import type { ErrorCode } from '../../src/common/errors';
import { ROOT_INO, type Metastore, type NewNode, type NodeRecord } from '../../src/master/metastore';
import { rejectsCode } from '../ufs/conformance';

const fileNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'file', mode: 0o644, uid: 1000, gid: 1000, persisted: false, ...extra });
const dirNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'directory', mode: 0o755, uid: 1000, gid: 1000, persisted: false, ...extra });
const nsOf = (ts: { sec: number; nsec: number }) => BigInt(ts.sec) * 1_000_000_000n + BigInt(ts.nsec);
const sorted = (xs: number[]) => xs.slice().sort((a, b) => a - b);

/** Runs the suite against the store `open` opens (see the module comment for what it must be). */
export function metastoreConformance(t: tap.Test, open: () => Promise<Metastore>): void {
  let seq = 0;
  /** A fresh store handle and a fresh directory under the root for one subtest; the store closes at teardown. */
  const setup = async (t: tap.Test): Promise<{ store: Metastore; dir: NodeRecord; tag: string }> => {
    const store = await open();
    t.teardown(() => store.close());
    const tag = `t${++seq}-${process.pid}`;
    const dir = await store.createChild(ROOT_INO, tag, dirNode({ persisted: true }));
    return { store, dir, tag };
  };
  const rejects = (t: tap.Test, fn: () => Promise<unknown>, code: ErrorCode, what: string) => rejectsCode(t, fn, code, what);
  /** Commits a fresh version of `size` bytes written by `worker` (ufsFingerprint null: not persisted). */
  const write = async (store: Metastore, ino: number, size: number, worker: number, extra: { ufsFingerprint?: string | null; writeType?: 'ASYNC_THROUGH' | 'CACHE_THROUGH' | 'MUST_CACHE' } = {}) => {
    const { containerId, blockSize } = await store.beginWrite(ino);
    const n = Math.ceil(size / blockSize);
    const blocks = Array.from({ length: n }, (_, i) => ({ id: blockIdOf(containerId, i), length: Math.min(blockSize, size - i * blockSize) }));
    const node = await store.commitWrite({ ino, containerId, size, blocks, workerId: worker, ufsFingerprint: extra.ufsFingerprint ?? null, ...(extra.writeType ? { writeType: extra.writeType } : {}) });
    return { node, ids: blocks.map((b) => b.id), containerId };
  };
  const register = (store: Metastore, uuid: string, address: string, blocks: BlockReport[] = []) =>
    store.registerWorker({ uuid, address, host: 'h', tiers: [{ name: 'MEM', dir: '/m', capacityBytes: 1e9, usedBytes: 0 }], pageSize: 4096, capacityBytes: 1e9, usedBytes: 0, blocks });
  const beat = async (store: Metastore, workerId: number, added: BlockReport[] = [], removed: number[] = [], openWrites?: number[]) => {
    const r = await store.heartbeat({ workerId, capacityBytes: 1e9, usedBytes: 0, tiers: [], addedBlocks: added, removedBlocks: removed, pinVersion: await store.pinVersion(), ...(openWrites ? { openWrites } : {}) });
    return r && sorted(r.deleteBlocks);
  };
  const uuid = (tag: string, n: number) => `${(seq * 1000 + n).toString(16).padStart(8, '0')}-${process.pid.toString(16)}-${tag.length}`;

  t.test('a create that begins the new file\'s first write: one transaction, the write usable as one from beginWrite', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://begun-${tag}:1`);
    const made = await store.createChild(dir.ino, 'f', fileNode(), { writeType: 'MUST_CACHE' }, true);
    t.ok(made.begun, 'the write begun');
    const { containerId, blockSize } = made.begun!;
    t.equal(blockSize, made.blockSize, "the file's block size");
    t.not(containerId, made.container, 'a container of its own, not the empty version the create committed');
    t.equal(made.size, 0, 'the file itself is committed empty');
    t.equal((await store.expireOpenWrites(Date.now() - 60_000)).writes, 0, 'the begun write is as fresh as one from beginWrite');
    // Copies reported before the commit are held for it, as for any write in flight.
    const id = blockIdOf(containerId, 0);
    t.same(await beat(store, w, [{ id, tier: 'MEM', bytes: 5 }]), [], 'a copy of the begun write is not taken for an orphan');
    const node = await store.commitWrite({ ino: made.ino, containerId, size: 5, blocks: [{ id, length: 5 }], workerId: w, ufsFingerprint: null, writeType: 'MUST_CACHE' });
    t.equal(node.size, 5, 'committed under the begun container');
    t.same((await store.blocks(made.ino)).map((b) => [b.id, b.locations]), [[id, [w]]], 'its copy located');

    const unused = await store.createChild(dir.ino, 'touched', fileNode(), undefined, true);
    t.ok(unused.begun, 'begun for a file created without closeEmpty too');
    const d = await store.createChild(dir.ino, 'sub', dirNode(), undefined, true);
    t.equal(d.begun, undefined, 'a directory: nothing to begin');
    const none = await store.createChild(dir.ino, 'plain', fileNode());
    t.equal(none.begun, undefined, 'not asked: nothing begun');
    const expired = await store.expireOpenWrites(Date.now() + 1);
    t.ok(expired.writes >= 1, 'a begun write never used expires');
    await rejects(
      t,
      () => store.commitWrite({ ino: unused.ino, containerId: unused.begun!.containerId, size: 0, blocks: [], workerId: w, ufsFingerprint: null }),
      'TIMEOUT',
      'and is not committed after',
    );
    await rejects(t, () => store.createChild(dir.ino, 'f', fileNode(), undefined, true), 'ALREADY_EXISTS', 'a taken name: nothing made');
    t.equal((await store.expireOpenWrites(Date.now() + 1)).writes, 0, 'and nothing begun');
  });

  t.test('the root, blockSize and reads of what does not exist', async (t) => {
    const store = await open();
    t.teardown(() => store.close());
    const root = await store.requireNode(ROOT_INO);
    t.equal(root.type, 'directory');
    t.equal(root.ino, ROOT_INO);
    t.equal(await store.pathOf(ROOT_INO), '/');
    t.ok(Number.isInteger(store.blockSize) && store.blockSize > 0, 'a block size');
    t.ok((await store.nodeCount()) >= 1);
    t.equal(await store.getNode(2 ** 40), undefined, 'unknown inode: undefined');
    await rejects(t, () => store.requireNode(2 ** 40), 'NOT_FOUND', 'requireNode of an unknown inode');
    await rejects(t, () => store.pathOf(2 ** 40), 'NOT_FOUND', 'pathOf an unknown inode');
    await rejects(t, () => store.blocks(2 ** 40), 'NOT_FOUND', 'blocks of an unknown inode');
    t.equal(await store.lookup(ROOT_INO, 'no such name here'), undefined);
    t.same(await store.children(2 ** 40), [], 'children of an unknown inode: none');
    t.equal(await store.block(blockIdOf(2 ** 20, 0)), undefined);
  });

  t.test('createChild, lookup, children, pathOf and directory nlinks', async (t) => {
    const { store, dir, tag } = await setup(t);
    const count = await store.nodeCount();
    const before = await store.requireNode(dir.ino);
    const b = await store.createChild(dir.ino, 'b', fileNode({ mode: 0o100640 }));
    const a = await store.createChild(dir.ino, 'a', dirNode());
    const c = await store.createChild(dir.ino, 'c é', fileNode({ uid: 7, gid: 8 }));
    t.equal(b.type, 'file');
    t.equal(b.mode, 0o640, 'only permission bits are kept');
    t.equal(b.nlink, 1);
    t.equal(b.size, 0);
    t.equal(b.blockSize, store.blockSize);
    t.equal(b.persistState, 'not_persisted');
    t.equal(a.nlink, 2, 'a new directory has nlink 2');
    t.same([c.uid, c.gid], [7, 8]);
    t.equal(new Set([a.ino, b.ino, c.ino, dir.ino]).size, 4, 'distinct inode numbers');
    t.same(
      (await store.children(dir.ino)).map((n) => [n.name, n.ino]),
      [
        ['a', a.ino],
        ['b', b.ino],
        ['c é', c.ino],
      ],
      'children sorted by name',
    );
    const page = async (after: string | null, limit: number) => (await store.childrenPage(dir.ino, after, limit)).map((n) => n.name);
    t.same(await page(null, 2), ['a', 'b'], 'a first page');
    t.same(await page('b', 2), ['c é'], 'the page after b: the rest');
    t.same(await page('a', 1), ['b'], 'pages follow names, not positions');
    t.same(await page('c é', 2), [], 'after the last name: nothing');
    t.equal((await store.childrenPage(dir.ino, null, 1))[0]?.ino, a.ino, 'entries carry their nodes');
    t.same(await store.childrenPage(2 ** 40, null, 10), [], 'a page of an unknown inode: none');
    await store.setXattr(b.ino, 'user.k', Buffer.from('v'), 0);
    t.same((await store.childrenPage(dir.ino, null, 3)).map((n) => [n.name, n.xattrs]), [['a', false], ['b', true], ['c é', false]], 'entries say whether they have any extended attribute');
    await store.removeXattr(b.ino, 'user.k');
    t.equal((await store.childrenPage(dir.ino, 'a', 1))[0]?.xattrs, false, 'and no longer once it is removed');
    t.equal((await store.lookup(dir.ino, 'b'))?.ino, b.ino);
    t.equal(await store.lookup(a.ino, 'b'), undefined, 'names are per directory');
    const x = await store.createChild(a.ino, 'x', dirNode());
    const deep = await store.createChild(x.ino, 'deep file', fileNode());
    t.equal(await store.pathOf(deep.ino), `/${tag}/a/x/deep file`);
    t.ok(await store.isDescendant(deep.ino, a.ino));
    t.ok(await store.isDescendant(a.ino, a.ino), 'a node is its own descendant');
    t.notOk(await store.isDescendant(a.ino, x.ino));
    t.equal((await store.requireNode(dir.ino)).nlink, 3, '2 + one subdirectory');
    t.equal((await store.requireNode(a.ino)).nlink, 3);
    t.equal((await store.nodeCount()) - count, 5);
    const after = await store.requireNode(dir.ino);
    t.ok(nsOf(after.mtime) >= nsOf(before.mtime) && nsOf(after.ctime) >= nsOf(before.ctime), 'parent times touched');

    await rejects(t, () => store.createChild(dir.ino, 'b', fileNode()), 'ALREADY_EXISTS', 'a taken name');
    await rejects(t, () => store.createChild(dir.ino, 'a', dirNode()), 'ALREADY_EXISTS', 'a taken directory name');
    await rejects(t, () => store.createChild(b.ino, 'y', fileNode()), 'NOT_DIRECTORY', 'a child of a file');
    await rejects(t, () => store.createChild(2 ** 40, 'y', fileNode()), 'NOT_FOUND', 'a child of an unknown inode');
    t.equal((await store.nodeCount()) - count, 5, 'failed creates leave nothing behind');
    t.equal((await store.requireNode(dir.ino)).nlink, 3, 'nor bump nlink');

    const p = await store.createChild(dir.ino, 'persisted', fileNode({ persisted: true, size: 2 * store.blockSize + 5, ufsFingerprint: 'fp', mtime: { sec: 1_600_000_000, nsec: 5 } }));
    t.equal(p.persistState, 'persisted');
    t.equal(p.ufsFingerprint, 'fp');
    t.same(p.mtime, { sec: 1_600_000_000, nsec: 5 });
    const blocks = await store.blocks(p.ino);
    t.same(
      blocks.map((x) => [x.id, x.index, x.offset, x.length, x.locations]),
      [
        [blockIdOf(p.container, 0), 0, 0, store.blockSize, []],
        [blockIdOf(p.container, 1), 1, store.blockSize, store.blockSize, []],
        [blockIdOf(p.container, 2), 2, 2 * store.blockSize, 5, []],
      ],
      'a persisted file with a size gets blocks of a fresh container',
    );
    t.same(await store.block(blocks[2]!.id), { blockId: blocks[2]!.id, ino: p.ino, index: 2, length: 5 });
    const q = await store.createChild(dir.ino, 'persisted too', fileNode({ persisted: true, size: 1 }));
    t.not(q.container, p.container, 'each file gets its own container');
    t.same(await store.blocks(b.ino), [], 'an empty new file has no blocks');
    const s = await store.createChild(dir.ino, 'sym', { type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 3, target: 'abc', persisted: false });
    t.equal(s.target, 'abc');
    const f = await store.createChild(dir.ino, 'dev', { type: 'chardev', mode: 0o600, uid: 0, gid: 0, rdev: 0x0105, persisted: false });
    t.equal(f.rdev, 0x0105);
  });

  t.test('loadChildren skips names that exist; hasUnpersisted', async (t) => {
    const { store, dir } = await setup(t);
    const kept = await store.createChild(dir.ino, 'kept', fileNode());
    await store.loadChildren(dir.ino, [
      { name: 'kept', node: fileNode({ persisted: true, size: 10 }) },
      { name: 'found', node: fileNode({ persisted: true, size: 10, ufsFingerprint: 'f1', syncedAt: 1234 }) },
      { name: 'sub', node: dirNode({ persisted: true }) },
    ]);
    t.equal((await store.lookup(dir.ino, 'kept'))?.ino, kept.ino, 'an existing name is never replaced');
    const found = (await store.lookup(dir.ino, 'found'))!;
    t.equal(found.syncedAt, 1234);
    t.equal((await store.blocks(found.ino)).length, 1, 'a found file gets blocks');
    t.equal((await store.requireNode(dir.ino)).nlink, 3, 'a found directory counts');
    await store.loadChildren(found.ino, [{ name: 'x', node: fileNode() }]);
    t.same(await store.children(found.ino), [], 'loading under a file does nothing');
    t.equal(await store.hasUnpersisted(dir.ino), true, 'an unpersisted file below');
    const sub = (await store.lookup(dir.ino, 'sub'))!;
    t.equal(await store.hasUnpersisted(sub.ino), false);
    await store.createChild(sub.ino, 'new', fileNode());
    t.equal(await store.hasUnpersisted(sub.ino), true, 'found deeper');
    t.equal(await store.hasUnpersisted(found.ino), false, 'a persisted file');
  });

  t.test('removeChild', async (t) => {
    const { store, dir } = await setup(t);
    const d = await store.createChild(dir.ino, 'd', dirNode());
    const f = await store.createChild(dir.ino, 'f', fileNode());
    await store.createChild(d.ino, 'inner', fileNode());
    const count = await store.nodeCount();
    await rejects(t, () => store.removeChild(dir.ino, 'missing', 'any'), 'NOT_FOUND', 'a missing name');
    await rejects(t, () => store.removeChild(dir.ino, 'd', 'file'), 'IS_DIRECTORY', 'unlink of a directory');
    await rejects(t, () => store.removeChild(dir.ino, 'f', 'directory'), 'NOT_DIRECTORY', 'rmdir of a file');
    await rejects(t, () => store.removeChild(dir.ino, 'd', 'directory'), 'NOT_EMPTY', 'rmdir of a non-empty directory');
    t.equal(await store.nodeCount(), count, 'refused removals change nothing');
    t.equal((await store.removeChild(dir.ino, 'f', 'file')).ino, f.ino, 'answers the removed node');
    t.equal(await store.getNode(f.ino), undefined, 'its inode is freed');
    await store.removeChild(d.ino, 'inner', 'any');
    await store.removeChild(dir.ino, 'd', 'directory');
    t.equal((await store.requireNode(dir.ino)).nlink, 2);
    t.same(await store.children(dir.ino), []);
    t.equal(await store.nodeCount(), count - 3);
  });

  t.test('removeChild, rename and exchange with the expected inode: only while the name still names it', async (t) => {
    const { store, dir } = await setup(t);
    // The caller checked inode `old` under the name, then a sync dropped it and a create took the name.
    const old = await store.createChild(dir.ino, 'f', fileNode());
    await store.removeChild(dir.ino, 'f', 'file');
    const taken = await store.createChild(dir.ino, 'f', fileNode());
    await rejects(t, () => store.removeChild(dir.ino, 'f', 'file', old.ino), 'NOT_FOUND', 'unlink of a name that names another inode now');
    t.equal((await store.lookup(dir.ino, 'f'))?.ino, taken.ino, 'the newer file stays');
    await rejects(t, () => store.removeChild(dir.ino, 'gone', 'file', old.ino), 'NOT_FOUND', 'a missing name');
    t.equal((await store.removeChild(dir.ino, 'f', 'file', taken.ino)).ino, taken.ino, 'the expected inode is removed');
    const d = await store.createChild(dir.ino, 'd', dirNode());
    await rejects(t, () => store.removeChild(dir.ino, 'd', 'directory', d.ino + 1000), 'NOT_FOUND', 'rmdir: another inode');
    await store.removeChild(dir.ino, 'd', 'directory', d.ino);
    t.equal(await store.lookup(dir.ino, 'd'), undefined, 'rmdir of the expected inode');

    const src = await store.createChild(dir.ino, 'src', fileNode());
    const dst = await store.createChild(dir.ino, 'dst', fileNode());
    await store.removeChild(dir.ino, 'src', 'file');
    const other = await store.createChild(dir.ino, 'src', fileNode());
    const count = await store.nodeCount();
    await rejects(t, () => store.rename(dir.ino, 'src', dir.ino, 'dst', src.ino), 'NOT_FOUND', 'rename of a source name that names another inode now');
    t.equal((await store.lookup(dir.ino, 'src'))?.ino, other.ino, 'the source name keeps the newer file');
    t.equal((await store.lookup(dir.ino, 'dst'))?.ino, dst.ino, 'the destination is not replaced');
    t.equal(await store.nodeCount(), count, 'nothing changed');
    t.equal((await store.rename(dir.ino, 'src', dir.ino, 'dst', other.ino)).ino, other.ino, 'the expected inode moves');
    t.equal((await store.lookup(dir.ino, 'dst'))?.ino, other.ino);

    const x = await store.createChild(dir.ino, 'x', fileNode());
    const y = await store.createChild(dir.ino, 'y', dirNode());
    await rejects(t, () => store.exchange(dir.ino, 'x', dir.ino, 'y', { a: x.ino, b: other.ino }), 'NOT_FOUND', 'exchange: a name that names another inode now');
    t.same([(await store.lookup(dir.ino, 'x'))?.ino, (await store.lookup(dir.ino, 'y'))?.ino], [x.ino, y.ino], 'nothing swapped');
    await store.exchange(dir.ino, 'x', dir.ino, 'y', { a: x.ino, b: y.ino });
    t.same([(await store.lookup(dir.ino, 'x'))?.ino, (await store.lookup(dir.ino, 'y'))?.ino], [y.ino, x.ino], 'the expected inodes swap');
  });

  t.test('hard links: nlink, primary link and hand-over, unlink of the last link', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://links-${tag}:1`);
    const sub = await store.createChild(dir.ino, 'sub', dirNode());
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const { ids } = await write(store, f.ino, 10, w);
    const l = await store.link(f.ino, sub.ino, 'g');
    t.equal(l.ino, f.ino);
    t.equal(l.nlink, 2);
    t.equal((await store.lookup(sub.ino, 'g'))?.ino, f.ino);
    t.equal(await store.isPrimaryLink(dir.ino, 'f'), true, 'the first name is primary');
    t.equal(await store.isPrimaryLink(sub.ino, 'g'), false, 'a new link is not');
    t.equal(await store.isPrimaryLink(dir.ino, 'nope'), false);
    t.same(await store.otherLink(f.ino, dir.ino, 'f'), { parent: sub.ino, name: 'g' });
    t.equal(await store.pathOf(f.ino), `/${tag}/f`, 'pathOf goes through the primary link');
    await rejects(t, () => store.link(sub.ino, dir.ino, 'dirlink'), 'NOT_PERMITTED', 'a link to a directory');
    await rejects(t, () => store.link(f.ino, dir.ino, 'sub'), 'ALREADY_EXISTS', 'a taken name');
    await rejects(t, () => store.link(f.ino, f.ino, 'x'), 'NOT_DIRECTORY', 'into a file');
    await rejects(t, () => store.link(2 ** 40, dir.ino, 'x'), 'NOT_FOUND', 'an unknown inode');
    t.equal((await store.requireNode(f.ino)).nlink, 2, 'refused links change nothing');

    await store.removeChild(dir.ino, 'f', 'file');
    const n = (await store.requireNode(f.ino))!;
    t.equal(n.nlink, 1, 'the inode lives on through its other link');
    t.equal(await store.isPrimaryLink(sub.ino, 'g'), true, 'which became primary');
    t.equal(await store.pathOf(f.ino), `/${tag}/sub/g`);
    t.same(await beat(store, w), [], 'no block deleted while a link is left');
    await store.removeChild(sub.ino, 'g', 'file');
    t.equal(await store.getNode(f.ino), undefined, 'the last link frees the inode');
    t.same(await beat(store, w), ids, 'and queues its blocks for deletion on the worker');
  });

  t.test('rename: move, replace, refusals, directories into their own subtree', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://rename-${tag}:1`);
    const a = await store.createChild(dir.ino, 'a', dirNode());
    const b = await store.createChild(a.ino, 'b', dirNode());
    const c = await store.createChild(b.ino, 'c', dirNode());
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const g = await store.createChild(dir.ino, 'g', fileNode());
    const gWrite = await write(store, g.ino, 5, w);
    const count = await store.nodeCount();

    const moved = await store.rename(dir.ino, 'f', a.ino, 'f2');
    t.equal(moved.ino, f.ino, 'the inode is kept');
    t.equal(await store.lookup(dir.ino, 'f'), undefined);
    t.equal(await store.pathOf(f.ino), `/${tag}/a/f2`);

    const replaced = await store.rename(a.ino, 'f2', dir.ino, 'g');
    t.equal(replaced.ino, f.ino);
    t.equal((await store.lookup(dir.ino, 'g'))?.ino, f.ino, 'the destination names the source');
    t.equal(await store.getNode(g.ino), undefined, 'the replaced inode is freed');
    t.equal(await store.nodeCount(), count - 1);
    t.same(await beat(store, w), gWrite.ids, "the replaced file's blocks are queued for deletion");
    t.equal((await store.rename(dir.ino, 'g', dir.ino, 'g')).ino, f.ino, 'onto itself: nothing changes');
    await store.link(f.ino, dir.ino, 'g-link');
    t.equal((await store.rename(dir.ino, 'g', dir.ino, 'g-link')).ino, f.ino, 'onto another name of the same inode: nothing changes');
    t.equal((await store.requireNode(f.ino)).nlink, 2);
    t.equal((await store.lookup(dir.ino, 'g'))?.ino, f.ino, 'both names stay');

    await rejects(t, () => store.rename(dir.ino, 'a', c.ino, 'a'), 'INVALID_ARGUMENT', 'a directory into its own subtree');
    await rejects(t, () => store.rename(dir.ino, 'a', a.ino, 'self'), 'INVALID_ARGUMENT', 'a directory into itself');
    t.equal(await store.pathOf(c.ino), `/${tag}/a/b/c`, 'the tree is unchanged');
    const full = await store.createChild(dir.ino, 'full', dirNode());
    await store.createChild(full.ino, 'keep', fileNode());
    await rejects(t, () => store.rename(a.ino, 'b', dir.ino, 'full'), 'NOT_EMPTY', 'onto a non-empty directory');
    await rejects(t, () => store.rename(dir.ino, 'g', dir.ino, 'full'), 'IS_DIRECTORY', 'a file onto a directory');
    await rejects(t, () => store.rename(dir.ino, 'a', dir.ino, 'g'), 'NOT_DIRECTORY', 'a directory onto a file');
    await rejects(t, () => store.rename(dir.ino, 'nope', dir.ino, 'x'), 'NOT_FOUND', 'a missing source');
    await rejects(t, () => store.rename(dir.ino, 'a', f.ino, 'x'), 'NOT_DIRECTORY', 'a destination parent that is a file');
    t.equal((await store.lookup(a.ino, 'b'))?.ino, b.ino, 'the source stays after refusals');

    // Directory nlinks follow moves and replacements.
    const nl = async (ino: number) => (await store.requireNode(ino)).nlink;
    const nlDir = await nl(dir.ino);
    await store.rename(a.ino, 'b', full.ino, 'b-moved');
    t.equal(await nl(a.ino), 2, 'the old parent lost a subdirectory');
    t.equal(await nl(full.ino), 3, 'the new one gained it');
    t.equal(await store.pathOf(c.ino), `/${tag}/full/b-moved/c`, 'descendants follow');
    const empty = await store.createChild(dir.ino, 'empty', dirNode());
    const other = await store.createChild(dir.ino, 'other', dirNode());
    t.equal(await nl(dir.ino), nlDir + 2);
    await store.rename(dir.ino, 'other', dir.ino, 'empty');
    t.equal(await nl(dir.ino), nlDir + 1, 'an empty directory replaced in the same parent: one fewer');
    t.equal(await store.getNode(empty.ino), undefined, 'the replaced directory is freed');
    t.equal((await store.lookup(dir.ino, 'empty'))?.ino, other.ino);

    // The primary flag moves with its link.
    await store.rename(dir.ino, 'g', a.ino, 'primary');
    t.equal(await store.isPrimaryLink(a.ino, 'primary'), true, 'a renamed primary link stays primary');
    t.equal(await store.isPrimaryLink(dir.ino, 'g-link'), false);
  });

  t.test('exchange: names swap inodes; directory nlinks, primary flags and refusals', async (t) => {
    const { store, dir, tag } = await setup(t);
    const nl = async (ino: number) => (await store.requireNode(ino)).nlink;
    const p1 = await store.createChild(dir.ino, 'p1', dirNode());
    const p2 = await store.createChild(dir.ino, 'p2', dirNode());
    const sub = await store.createChild(p1.ino, 'sub', dirNode());
    const inner = await store.createChild(sub.ino, 'inner', fileNode());
    const f = await store.createChild(p2.ino, 'f', fileNode());
    const g = await store.createChild(p2.ino, 'g', fileNode());
    await store.link(g.ino, p1.ino, 'g-link');
    const count = await store.nodeCount();

    await store.exchange(p2.ino, 'f', p2.ino, 'g');
    t.equal((await store.lookup(p2.ino, 'f'))?.ino, g.ino, 'f names g now');
    t.equal((await store.lookup(p2.ino, 'g'))?.ino, f.ino, 'g names f now');
    t.equal(await store.isPrimaryLink(p2.ino, 'f'), true, 'the primary flag moved with g');
    t.equal(await store.isPrimaryLink(p1.ino, 'g-link'), false);

    await store.exchange(p1.ino, 'sub', p2.ino, 'f');
    t.equal((await store.lookup(p2.ino, 'f'))?.ino, sub.ino, 'the directory moved to p2');
    t.equal(await store.pathOf(inner.ino), `/${tag}/p2/f/inner`, 'its entries follow');
    t.equal((await store.lookup(p1.ino, 'sub'))?.ino, g.ino, 'the file moved to p1');
    t.equal(await nl(p1.ino), 2, 'the parent that lost the directory');
    t.equal(await nl(p2.ino), 3, 'the parent that gained it');
    t.equal(await store.nodeCount(), count, 'nothing was created or freed');

    await store.exchange(p1.ino, 'sub', p1.ino, 'g-link');
    t.equal((await store.lookup(p1.ino, 'sub'))?.ino, g.ino, 'two names of one inode: nothing changes');
    await rejects(t, () => store.exchange(p2.ino, 'f', sub.ino, 'inner'), 'INVALID_ARGUMENT', 'a directory with a name in its own subtree');
    await rejects(t, () => store.exchange(sub.ino, 'inner', p2.ino, 'f'), 'INVALID_ARGUMENT', 'the same, the other way round');
    await rejects(t, () => store.exchange(p1.ino, 'nope', p2.ino, 'f'), 'NOT_FOUND', 'a missing first name');
    await rejects(t, () => store.exchange(p2.ino, 'f', p1.ino, 'nope'), 'NOT_FOUND', 'a missing second name');
    t.equal((await store.lookup(p2.ino, 'f'))?.ino, sub.ino, 'refusals change nothing');
  });

  t.test('setAttributes and extended attributes', async (t) => {
    const { store, dir } = await setup(t);
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const mtime = { sec: 1_500_000_000, nsec: 999_999_999 };
    const n = await store.setAttributes(f.ino, { mode: 0o104711, uid: 5, mtime });
    t.same([n.mode, n.uid, n.gid], [0o4711, 5, 1000], 'permission bits (with setuid) and owner; gid kept');
    t.same(n.mtime, mtime);
    t.ok(nsOf(n.ctime) >= nsOf(f.ctime), 'ctime moves');
    t.same((await store.setAttributes(f.ino, { atime: { sec: 1, nsec: 2 } })).atime, { sec: 1, nsec: 2 });
    await rejects(t, () => store.setAttributes(2 ** 40, { mode: 0o600 }), 'NOT_FOUND', 'an unknown inode');

    await store.setXattr(f.ino, 'user.b', Buffer.from('two'), 0);
    await store.setXattr(f.ino, 'user.a', Buffer.from([0, 1, 2, 255]), 0);
    t.same(await store.getXattr(f.ino, 'user.a'), Buffer.from([0, 1, 2, 255]), 'binary values');
    t.same(await store.listXattrs(f.ino), ['user.a', 'user.b'], 'names in order');
    await rejects(t, () => store.setXattr(f.ino, 'user.a', Buffer.from('x'), 1), 'ALREADY_EXISTS', 'XATTR_CREATE over an existing one');
    await rejects(t, () => store.setXattr(f.ino, 'user.c', Buffer.from('x'), 2), 'NO_ATTRIBUTE', 'XATTR_REPLACE of a missing one');
    await store.setXattr(f.ino, 'user.a', Buffer.from('new'), 2);
    t.same((await store.getXattr(f.ino, 'user.a')).toString(), 'new', 'replaced');
    await store.removeXattr(f.ino, 'user.a');
    await rejects(t, () => store.getXattr(f.ino, 'user.a'), 'NO_ATTRIBUTE', 'a removed one');
    await rejects(t, () => store.removeXattr(f.ino, 'user.a'), 'NO_ATTRIBUTE', 'removing it again');
    await rejects(t, () => store.listXattrs(2 ** 40), 'NOT_FOUND', 'an unknown inode');
    await rejects(t, () => store.setXattr(2 ** 40, 'user.a', Buffer.from('x'), 0), 'NOT_FOUND', 'set on an unknown inode');
    t.same(await store.listXattrs(f.ino), ['user.b']);
    await store.removeChild(dir.ino, 'f', 'file');
    const g = await store.createChild(dir.ino, 'f', fileNode());
    t.same(await store.listXattrs(g.ino), [], 'a new inode starts without attributes');
  });

  t.test('writes: begin, commit, blocks and locations, empty commits, expiry of writes in flight', async (t) => {
    const { store, dir, tag } = await setup(t);
    const BS = store.blockSize;
    const w1 = await register(store, uuid(tag, 1), `http://writes-${tag}:1`);
    const w2 = await register(store, uuid(tag, 2), `http://writes-${tag}:2`);
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const d = await store.createChild(dir.ino, 'd', dirNode());
    await rejects(t, () => store.beginWrite(d.ino), 'IS_DIRECTORY', 'beginWrite of a directory');
    await rejects(t, () => store.beginWrite(2 ** 40), 'NOT_FOUND', 'beginWrite of an unknown inode');

    const b1 = await store.beginWrite(f.ino);
    t.equal(b1.blockSize, BS);
    t.equal(await store.openWriteOf(b1.containerId), f.ino, 'the begun write is in flight, of its file');
    t.equal(await store.openWriteOf(b1.containerId + 12345), undefined, 'a container never begun is not');
    const size = BS + 7;
    const blocks = [
      { id: blockIdOf(b1.containerId, 0), length: BS },
      { id: blockIdOf(b1.containerId, 1), length: 7 },
    ];
    const base = { ino: f.ino, containerId: b1.containerId, size, workerId: w1, ufsFingerprint: null };
    await rejects(t, () => store.commitWrite({ ...base, blocks: blocks.slice(0, 1) }), 'BAD_REQUEST', 'too few blocks');
    await rejects(t, () => store.commitWrite({ ...base, blocks: [...blocks, { id: blockIdOf(b1.containerId, 2), length: 1 }] }), 'BAD_REQUEST', 'too many blocks');
    await rejects(t, () => store.commitWrite({ ...base, blocks: [blocks[0]!, { id: blockIdOf(b1.containerId + 1, 1), length: 7 }] }), 'BAD_REQUEST', 'a block id of another container');
    await rejects(t, () => store.commitWrite({ ...base, blocks: [{ ...blocks[0]!, length: BS - 1 }, blocks[1]!] }), 'BAD_REQUEST', 'a short middle block');
    await rejects(t, () => store.commitWrite({ ...base, ino: d.ino, blocks }), 'IS_DIRECTORY', 'commitWrite of a directory');
    await rejects(t, () => store.commitWrite({ ...base, ino: 2 ** 40, blocks }), 'NOT_FOUND', 'commitWrite of an unknown inode');
    await rejects(t, () => store.commitWrite({ ...base, blocks: [blocks[1]!, blocks[0]!] }), 'BAD_REQUEST', 'blocks out of order');
    await rejects(t, () => store.commitWrite({ ...base, blocks: [blocks[0]!, { ...blocks[1]!, length: 8 }] }), 'BAD_REQUEST', 'a wrong length');
    await rejects(t, () => store.commitWrite({ ...base, containerId: b1.containerId + 1, blocks: blocks.map((b, i) => ({ ...b, id: blockIdOf(b1.containerId + 1, i) })) }), 'TIMEOUT', 'a write never begun');
    t.equal((await store.requireNode(f.ino)).size, 0, 'refused commits change nothing');

    // A worker reports pages of the write in flight before the commit: not orphans.
    t.same(await beat(store, w1, [{ id: blocks[0]!.id, tier: 'MEM', bytes: BS }]), [], 'a copy of a write in flight is kept');
    const mtime = { sec: 1_700_000_000, nsec: 1 };
    const n1 = await store.commitWrite({ ...base, blocks, mtime });
    t.same([n1.size, n1.container, n1.persistState, n1.ufsFingerprint], [size, b1.containerId, 'not_persisted', null]);
    t.same(n1.mtime, mtime);
    t.same(
      (await store.blocks(f.ino)).map((b) => [b.id, b.offset, b.length, b.locations]),
      [
        [blocks[0]!.id, 0, BS, [w1]],
        [blocks[1]!.id, BS, 7, [w1]],
      ],
      'blocks located on the writer',
    );
    t.same((await store.blocks(f.ino))[0]!.cached, [{ workerId: w1, tier: 'MEM', bytes: BS }], 'with the tier it reported');
    await rejects(t, () => store.commitWrite({ ...base, blocks }), 'TIMEOUT', 'a write commits once');
    t.equal(await store.openWriteOf(b1.containerId), undefined, 'a committed write is no longer in flight');

    const v2 = await write(store, f.ino, 3, w2, { ufsFingerprint: 'etag-2' });
    t.equal(v2.node.persistState, 'persisted', 'a fingerprint means persisted');
    t.equal(v2.node.ufsFingerprint, 'etag-2');
    for (const b of blocks) t.equal(await store.block(b.id), undefined, 'old blocks forgotten');
    t.same(await beat(store, w1), sorted(blocks.map((b) => b.id)), 'the old copies are deleted on the worker that had them');
    t.same(await beat(store, w1, [], [blocks[0]!.id]), [blocks[1]!.id], 'a deletion reported leaves the queue');
    t.same(await beat(store, w2), [], 'the new writer deletes nothing');

    const e = await store.commitEmpty({ ino: f.ino, ufsFingerprint: 'etag-empty', writeType: 'CACHE_THROUGH' });
    t.same([e.size, e.persistState, e.ufsFingerprint], [0, 'persisted', 'etag-empty']);
    t.same(await store.blocks(f.ino), [], 'an empty version has no blocks');
    t.same(await beat(store, w2), v2.ids, 'its old copies are deleted');
    await rejects(t, () => store.commitEmpty({ ino: d.ino, ufsFingerprint: null, writeType: 'MUST_CACHE' }), 'IS_DIRECTORY', 'commitEmpty of a directory');

    // A write abandoned mid-way: renewed by heartbeats it stays, silent it expires and its copies go.
    const lost = await store.beginWrite(f.ino);
    const lostId = blockIdOf(lost.containerId, 0);
    t.same(await beat(store, w1, [{ id: lostId, tier: 'MEM', bytes: 1 }], [], [lost.containerId]), [blocks[1]!.id]);
    t.equal((await store.expireOpenWrites(Date.now() - 60_000)).writes, 0, 'a renewed write does not expire');
    const expired = await store.expireOpenWrites(Date.now() + 1);
    t.ok(expired.writes >= 1 && expired.copies >= 1, `a silent one does, with its copy (${JSON.stringify(expired)})`);
    t.same(await beat(store, w1), sorted([blocks[1]!.id, lostId]), 'and its copy is deleted');
    await rejects(t, () => store.commitWrite({ ino: f.ino, containerId: lost.containerId, size: 1, blocks: [{ id: lostId, length: 1 }], workerId: w1, ufsFingerprint: null }), 'TIMEOUT', 'a late commit of an expired write');
    t.equal((await store.requireNode(f.ino)).size, 0, 'the file keeps its committed content');

    const given = await store.beginWrite(f.ino);
    const givenId = blockIdOf(given.containerId, 0);
    t.same(await beat(store, w1, [{ id: givenId, tier: 'MEM', bytes: 1 }], [blocks[1]!.id, lostId], [given.containerId]), [], 'a write in flight: its copy is kept');
    await store.abandonWrite(given.containerId);
    t.same(await beat(store, w1, [], [], [given.containerId]), [givenId], 'abandoned: its copy is deleted, renewing it changes nothing');
    await rejects(t, () => store.commitWrite({ ino: f.ino, containerId: given.containerId, size: 1, blocks: [{ id: givenId, length: 1 }], workerId: w1, ufsFingerprint: null }), 'TIMEOUT', 'a late commit of an abandoned write');
    await store.abandonWrite(given.containerId);
    t.equal((await store.requireNode(f.ino)).size, 0, 'abandoning twice does nothing more; the file keeps its content');
  });

  t.test('under-store sync: refreshFromUfs, markSynced, forgetChild and their guards', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://sync-${tag}:1`);
    const f = await store.createChild(dir.ino, 'f', fileNode({ persisted: true, size: 10, ufsFingerprint: 'fp1', syncedAt: 1000 }));
    const [old] = (await store.blocks(f.ino)).map((b) => b.id);
    await beat(store, w, [{ id: old!, tier: 'MEM', bytes: 10 }]);
    t.equal(await store.refreshFromUfs(f.ino, 20, { sec: 5, nsec: 0 }, 'fp2', { ufsFingerprint: 'other', syncedBefore: 2000 }), false, 'a guard that does not match: nothing happens');
    t.equal(await store.refreshFromUfs(f.ino, 20, { sec: 5, nsec: 0 }, 'fp2', { ufsFingerprint: 'fp1', syncedBefore: 1000 }), false, 'synced at or after the guard: nothing happens');
    t.equal((await store.requireNode(f.ino)).ufsFingerprint, 'fp1');
    t.equal(await store.refreshFromUfs(f.ino, 20, { sec: 5, nsec: 0 }, 'fp2', { ufsFingerprint: 'fp1', syncedBefore: 1001 }), true, 'a matching guard: refreshed');
    const r = await store.requireNode(f.ino);
    t.same([r.size, r.ufsFingerprint, r.persistState, r.mtime.sec], [20, 'fp2', 'persisted', 5]);
    t.ok(r.syncedAt > 1000, 'synced now');
    t.equal((await store.blocks(f.ino)).length, 1);
    t.not((await store.blocks(f.ino))[0]!.id, old, 'fresh blocks');
    t.same(await beat(store, w), [old], 'the stale copy is deleted');
    t.equal(await store.refreshFromUfs(dir.ino, 1, { sec: 1, nsec: 0 }, 'x'), false, 'not a file');

    await store.markSynced(f.ino, 42);
    t.equal((await store.requireNode(f.ino)).syncedAt, 42);
    await store.markSyncedMany([f.ino, dir.ino], 43);
    t.same([(await store.requireNode(f.ino)).syncedAt, (await store.requireNode(dir.ino)).syncedAt], [43, 43]);

    // forgetChild: a file, a second hard link (not its own object in the store), a subtree.
    const sub = await store.createChild(dir.ino, 'sub', dirNode({ persisted: true }));
    const inner = await store.createChild(sub.ino, 'inner', fileNode({ persisted: true, size: 1, ufsFingerprint: 'i' }));
    await store.link(f.ino, dir.ino, 'f-link');
    const guard = { ino: f.ino, ufsFingerprint: 'fp2', syncedBefore: 44 };
    t.equal(await store.forgetChild(dir.ino, 'f-link', guard), false, 'guarded: never through a secondary link');
    t.equal(await store.forgetChild(dir.ino, 'f', { ...guard, ino: inner.ino }), false, 'guarded: another inode under the name');
    t.equal(await store.forgetChild(dir.ino, 'f', { ...guard, syncedBefore: 43 }), false, 'guarded: synced since');
    t.equal(await store.forgetChild(dir.ino, 'f', { ...guard, ufsFingerprint: 'fp1' }), false, 'guarded: changed since');
    t.equal(await store.forgetChild(dir.ino, 'f', guard), true, 'a matching guard: forgotten');
    t.equal((await store.requireNode(f.ino)).nlink, 1, 'the other link keeps the inode');
    t.equal(await store.forgetChild(dir.ino, 'f', guard), false, 'a missing name');
    t.equal(await store.forgetChild(dir.ino, 'sub'), true, 'unguarded: a directory with its subtree');
    t.equal(await store.getNode(inner.ino), undefined);
    t.equal(await store.getNode(sub.ino), undefined);
    t.equal((await store.requireNode(dir.ino)).nlink, 2);
  });

  t.test('createChild with `empty`: the new file is recorded as written empty in the same transaction', async (t) => {
    const { store, dir } = await setup(t);
    const inQueue = async (ino: number) => (await store.persistQueue()).filter((q) => q.ino === ino);
    const before = Date.now();
    const a = await store.createChild(dir.ino, 'async', fileNode(), { writeType: 'ASYNC_THROUGH', persistDelayMs: 60_000 });
    t.same([a.size, a.persistState, a.ufsFingerprint], [0, 'not_persisted', null]);
    t.ok(a.container > 0, 'an empty version of its own: a write committed later replaces it');
    const q = await inQueue(a.ino);
    t.equal(q.length, 1, 'ASYNC_THROUGH: queued for persisting');
    t.ok(q[0]!.nextAt >= before + 60_000, 'not before the delay asked for');
    const m = await store.createChild(dir.ino, 'cache only', fileNode(), { writeType: 'MUST_CACHE' });
    t.ok(m.container > 0);
    t.same(await inQueue(m.ino), [], 'MUST_CACHE: never persisted');
    const plain = await store.createChild(dir.ino, 'plain', fileNode());
    t.equal(plain.container, 0, 'without `empty`, nothing is recorded written');
    await rejects(t, () => store.createChild(dir.ino, 'async', fileNode(), { writeType: 'ASYNC_THROUGH' }), 'ALREADY_EXISTS', 'a taken name');
    t.equal((await inQueue(a.ino)).length, 1, 'the failed create changed nothing');
    t.equal((await store.lookup(dir.ino, 'async'))?.ino, a.ino);
  });

  t.test('inStore: false only for a file no version of which went to the store; set by every way one can get there, never cleared', async (t) => {
    const { store, dir } = await setup(t);
    const fresh = await store.createChild(dir.ino, 'fresh', fileNode());
    t.equal(fresh.inStore, false, 'a new unpersisted file');
    t.equal((await store.createChild(dir.ino, 'through', { ...fileNode(), inStore: true })).inStore, true, 'unless its creator says it will be');
    t.equal((await store.createChild(dir.ino, 'stored', { ...fileNode(), persisted: true })).inStore, true, 'a persisted one');
    await store.loadChildren(dir.ino, [{ name: 'loaded', node: { ...fileNode(), persisted: true, ufsFingerprint: 'e1' } }]);
    t.equal((await store.lookup(dir.ino, 'loaded'))?.inStore, true, 'one found in the store');
    await write(store, fresh.ino, 10, 0, { writeType: 'ASYNC_THROUGH' });
    t.equal((await store.getNode(fresh.ino))?.inStore, false, 'an unpersisted version leaves it as it was');
    await store.markInStore(fresh.ino);
    t.equal((await store.getNode(fresh.ino))?.inStore, true, 'markInStore (an upload begins)');
    await store.markInStore(fresh.ino);
    t.equal((await store.getNode(fresh.ino))?.inStore, true, 'twice is fine');

    const older = await store.createChild(dir.ino, 'older', fileNode());
    const v1 = await write(store, older.ino, 10, 0, { writeType: 'ASYNC_THROUGH' });
    await write(store, older.ino, 20, 0, { writeType: 'ASYNC_THROUGH' });
    t.equal(await store.markPersisted(older.ino, v1.containerId, 'e-v1'), false, 'an upload of an older version is not the file persisted…');
    t.equal((await store.getNode(older.ino))?.inStore, true, '…but its object is in the store');

    const wt = await store.createChild(dir.ino, 'written through', fileNode());
    await write(store, wt.ino, 5, 0, { ufsFingerprint: 'e-wt' });
    t.equal((await store.getNode(wt.ino))?.inStore, true, 'a write-through commit');
    await write(store, wt.ino, 6, 0, { writeType: 'ASYNC_THROUGH' });
    t.same([(await store.getNode(wt.ino))?.persistState, (await store.getNode(wt.ino))?.inStore], ['not_persisted', true], 'rewritten since: not persisted, still in the store');
    const e = await store.createChild(dir.ino, 'empty through', fileNode());
    await store.commitEmpty({ ino: e.ino, ufsFingerprint: 'e-empty', writeType: 'CACHE_THROUGH' });
    t.equal((await store.getNode(e.ino))?.inStore, true, 'an empty write-through commit');
  });

  t.test("markSynced at 0 reports the directory's empty name in the change log (its names may change without a name changing)", async (t) => {
    const { store, dir } = await setup(t);
    const sub = await store.createChild(dir.ino, 'sub', dirNode({ persisted: true }));
    const names = async (since: number) => (await store.changes.changes(store.changes.epoch, since, 0)).names.filter(([ino]) => ino === sub.ino).map(([, name]) => name);
    let since = await store.changes.seq();
    await store.markSynced(sub.ino);
    t.same(await names(since), [], 'a listing read (syncedAt now): no name reported');
    since = await store.changes.seq();
    await store.markSynced(sub.ino, 0);
    t.same(await names(since), [''], 'to be listed again: the empty name');
    since = await store.changes.seq();
    await store.markSyncedMany([sub.ino, 2 ** 40], 0);
    t.same(await names(since), [''], 'markSyncedMany too; a missing node reports nothing');
  });

  t.test('a change of what stat does not show (persisted, synced, pinned, TTL) is reported quiet; one stat shows is not, in the same answer either', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 7), `http://quiet-${tag}:1`);
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const v = await write(store, f.ino, 3, w, { writeType: 'ASYNC_THROUGH' });
    const since = async () => store.changes.seq();
    const changes = async (from: number) => store.changes.changes(store.changes.epoch, from, 0);
    const quietOf = async (from: number) => {
      const r = await changes(from);
      return { listed: r.inos.includes(f.ino), quiet: (r.quiet ?? []).includes(f.ino) };
    };
    let from = await since();
    t.ok(await store.markPersisted(f.ino, v.containerId, 'fp-1'));
    t.same(await quietOf(from), { listed: true, quiet: true }, 'persisted: listed (a cache drops it), and quiet');
    from = await since();
    await store.markSynced(f.ino);
    t.same(await quietOf(from), { listed: true, quiet: true }, 'synced: quiet');
    from = await since();
    await store.setPinned(f.ino, true);
    t.same(await quietOf(from), { listed: true, quiet: true }, 'pinned: quiet');
    from = await since();
    await store.setTtl(f.ino, Date.now() + 60_000, 'free');
    t.same(await quietOf(from), { listed: true, quiet: true }, 'a TTL set: quiet');
    from = await since();
    await store.setAttributes(f.ino, { mode: 0o600 });
    t.same(await quietOf(from), { listed: true, quiet: false }, 'a chmod: not quiet');
    from = await since();
    await store.setPinned(f.ino, false);
    await store.setAttributes(f.ino, { mode: 0o640 });
    await store.markSynced(f.ino);
    t.same(await quietOf(from), { listed: true, quiet: false }, 'a chmod between quiet changes in one answer: not quiet');
  });

  t.test('persist queue: ASYNC_THROUGH commits, due entries, backoff, markPersisted and dropPersist', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://persist-${tag}:1`);
    const mine = async (inos: number[]) => (await store.persistQueue()).filter((q) => inos.includes(q.ino));
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const g = await store.createChild(dir.ino, 'g', fileNode());
    const v1 = await write(store, f.ino, 3, w, { writeType: 'ASYNC_THROUGH' });
    await write(store, g.ino, 3, w, { writeType: 'CACHE_THROUGH', ufsFingerprint: 'g' });
    const q = await mine([f.ino, g.ino]);
    t.same(q.map((x) => [x.ino, x.attempts, x.lastError]), [[f.ino, 0, null]], 'an ASYNC_THROUGH commit queues the file, in the same transaction');
    const due = await store.duePersists(Date.now() + 1, 1_000_000);
    t.ok(due.some((d) => d.ino === f.ino), 'due (no initial wait configured, or it passed)');

    await store.persistFailed(f.ino, 'store down');
    const [failed] = await mine([f.ino]);
    t.same([failed!.attempts, failed!.lastError], [1, 'store down']);
    t.ok(failed!.nextAt >= Date.now() + 500, 'the next attempt waits');
    t.notOk((await store.duePersists(Date.now(), 1_000_000)).some((d) => d.ino === f.ino), 'not due during the backoff');
    await store.persistFailed(2 ** 40, 'nothing queued'); // no entry: nothing happens
    // A worker (re)joining may hold what the failed persist waited for: due now, its attempts kept;
    // an entry still in its first wait (a fresh ASYNC_THROUGH file) waits on.
    const fresh = await store.createChild(dir.ino, 'fresh', fileNode(), { writeType: 'ASYNC_THROUGH', persistDelayMs: 60_000 });
    await register(store, uuid(tag, 1), `http://persist-${tag}:2`);
    const dueNow = (await store.duePersists(Date.now(), 1_000_000)).map((d) => d.ino);
    t.ok(dueNow.includes(f.ino), 'a worker registering ends the backoff of a failed persist');
    t.same((await mine([f.ino])).map((x) => x.attempts), [1], '… and keeps its attempts');
    t.notOk(dueNow.includes(fresh.ino), 'an entry in its first wait is not woken');

    t.equal(await store.dropPersist(f.ino), false, 'an unpersisted file keeps its entry');
    t.equal(await store.markPersisted(f.ino, v1.containerId + 12345, 'wrong'), false, 'another version: not persisted');
    t.same((await mine([f.ino])).map((x) => x.ino), [f.ino], '… and the entry stays: it is the current version\'s');
    t.equal((await store.requireNode(f.ino)).persistState, 'not_persisted');
    await store.enqueuePersist(f.ino);
    t.same((await mine([f.ino])).map((x) => x.attempts), [0], 'enqueuePersist makes it due now, attempts reset');
    t.equal(await store.markPersisted(f.ino, v1.containerId, 'etag'), true, 'the persisted version is the current one');
    const p = await store.requireNode(f.ino);
    t.same([p.persistState, p.ufsFingerprint], ['persisted', 'etag']);
    t.same(await mine([f.ino]), [], 'and it left the queue');

    // A file that no longer needs persisting: dropPersist takes its entry.
    await store.enqueuePersist(f.ino);
    t.equal(await store.dropPersist(f.ino), true, 'a persisted file');
    const h = await store.createChild(dir.ino, 'h', fileNode());
    await write(store, h.ino, 1, w, { writeType: 'ASYNC_THROUGH' });
    await store.removeChild(dir.ino, 'h', 'file');
    t.same(await mine([h.ino]), [], 'removing a file takes its entry');
    t.equal(await store.dropPersist(h.ino), false, 'nothing left to drop');
    // commitEmpty queues an ASYNC_THROUGH file without a fingerprint and leaves the queue otherwise.
    await store.commitEmpty({ ino: g.ino, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
    t.same((await mine([g.ino])).map((x) => x.ino), [g.ino]);
    await store.commitEmpty({ ino: g.ino, ufsFingerprint: 'e', writeType: 'THROUGH' });
    t.same(await mine([g.ino]), []);
  });

  t.test('abandonWrite and expireOpenWrites: a write-through file whose writes all ended uncommitted is queued once, in the same transaction, to be stored empty', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://unwritten-${tag}:1`);
    const mine = async (ino: number) => (await store.persistQueue()).filter((q) => q.ino === ino);
    const f = await store.createChild(dir.ino, 'f', fileNode({ inStore: true }));
    const first = await store.beginWrite(f.ino);
    const retry = await store.beginWrite(f.ino);
    t.equal(await store.abandonWrite(first.containerId, { storeIfUnwritten: true }), false, 'not while another write of it is open (a retry)');
    t.same(await mine(f.ino), [], 'nothing queued then');
    t.equal(await store.abandonWrite(retry.containerId, { storeIfUnwritten: true }), true, 'queued once every write ended');
    t.same((await mine(f.ino)).length, 1, 'queued');
    await store.persistFailed(f.ino, 'store full');
    const again = await store.beginWrite(f.ino);
    t.equal(await store.abandonWrite(again.containerId, { storeIfUnwritten: true }), false, 'not again while queued');
    t.same((await mine(f.ino)).map((q) => [q.attempts, q.lastError]), [[1, 'store full']], 'and its retry schedule is kept');
    t.equal(await store.abandonWrite(again.containerId, { storeIfUnwritten: true }), false, 'a write no longer open queues nothing');

    const overtaken = await store.createChild(dir.ino, 'o', fileNode({ inStore: true }));
    const ow = await store.beginWrite(overtaken.ino);
    t.equal(await store.abandonWrite(ow.containerId), false, 'without storeIfUnwritten (its client writes it again) the file is not queued');
    t.same(await mine(overtaken.ino), []);

    // Expiry queues by the same rules, in its own transaction.
    const e = await store.createChild(dir.ino, 'e', fileNode({ inStore: true }));
    await store.beginWrite(e.ino);
    const mustCache = await store.createChild(dir.ino, 'm', fileNode({ inStore: false }));
    await store.beginWrite(mustCache.ino);
    const written = await store.createChild(dir.ino, 'wr', fileNode({ inStore: true }));
    await write(store, written.ino, 3, w);
    await store.beginWrite(written.ino);
    const persisted = await store.createChild(dir.ino, 'p', fileNode({ inStore: true }));
    await store.commitEmpty({ ino: persisted.ino, ufsFingerprint: 'e', writeType: 'CACHE_THROUGH' });
    await store.beginWrite(persisted.ino);
    const ours = [e.ino, mustCache.ino, written.ino, persisted.ino];
    const expired = await store.expireOpenWrites(Date.now() + 1000);
    t.ok(expired.writes >= 4, 'the four writes expired');
    t.same(expired.queued.filter((ino) => ours.includes(ino)), [e.ino], 'only the unwritten write-through file is queued: not MUST_CACHE, not one with content, not a persisted one');
    t.same((await mine(e.ino)).length, 1, 'and it is in the queue');
  });

  t.test('unpersistedContainers: the current version of an unpersisted file, or a write in flight', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://unpersisted-${tag}:1`);
    const f = await store.createChild(dir.ino, 'f', fileNode());
    const mine = async (cs: number[]) => sorted(await store.unpersistedContainers(cs));
    t.same(await mine([]), [], 'none asked, none answered');

    const open1 = await store.beginWrite(f.ino);
    t.same(await mine([open1.containerId, open1.containerId + 12345]), [open1.containerId], 'a write in flight; a container never begun is not');
    const v1 = await store.commitWrite({ ino: f.ino, containerId: open1.containerId, size: 1, blocks: [{ id: blockIdOf(open1.containerId, 0), length: 1 }], workerId: w, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
    t.same(await mine([v1.container, v1.container]), [v1.container], 'committed, not persisted: still (asked twice, answered once)');

    const v2 = await write(store, f.ino, 1, w, { writeType: 'ASYNC_THROUGH' });
    t.same(await mine([v1.container, v2.containerId]), [v2.containerId], 'a version replaced is not (its blocks are deleted)');
    t.equal(await store.markPersisted(f.ino, v2.containerId, 'etag'), true);
    t.same(await mine([v2.containerId]), [], 'persisted: not any more');

    const through = await write(store, f.ino, 1, w, { ufsFingerprint: 'fp', writeType: 'CACHE_THROUGH' });
    t.same(await mine([through.containerId]), [], 'a write-through committed with its object is persisted');
    const mustCache = await write(store, f.ino, 1, w, { writeType: 'MUST_CACHE' });
    t.same(await mine([mustCache.containerId]), [mustCache.containerId], 'MUST_CACHE is never persisted');

    const lost = await store.beginWrite(f.ino);
    await store.expireOpenWrites(Date.now() + 1000);
    t.same(await mine([lost.containerId]), [], 'an expired write is not');
    const g = await store.createChild(dir.ino, 'g', fileNode());
    const gv = await write(store, g.ino, 1, w, { writeType: 'ASYNC_THROUGH' });
    await store.removeChild(dir.ino, 'g', 'file');
    t.same(await mine([gv.containerId, mustCache.containerId]), [mustCache.containerId], 'nor a file removed');
  });

  t.test('workers: registration by uuid, block reports, heartbeats, expiry', async (t) => {
    const { store, dir, tag } = await setup(t);
    const BS = store.blockSize;
    const f = await store.createChild(dir.ino, 'f', fileNode({ persisted: true, size: 3 * BS }));
    const ids = (await store.blocks(f.ino)).map((b) => b.id);
    const stray = blockIdOf(2 ** 30 - seq, 0);
    const rep = (id: number, bytes = BS, tier = 'MEM') => ({ id, tier, bytes });
    const a1 = `http://workers-${tag}:1`;
    const w1 = await register(store, uuid(tag, 1), a1, [rep(ids[0]!), rep(stray)]);
    const w2 = await register(store, uuid(tag, 2), `http://workers-${tag}:2`, [rep(ids[0]!, 512, 'SSD'), rep(ids[1]!)]);
    t.equal(await register(store, uuid(tag, 1), a1, [rep(ids[0]!)]), w1, 'a known uuid keeps its id');
    const mine = async () => (await store.workers()).filter((w) => w.id === w1 || w.id === w2);
    t.same(
      (await mine()).map((w) => [w.id, w.address, w.host, w.pageSize, w.live, w.tiers.map((x) => x.name)]),
      [
        [w1, a1, 'h', 4096, true, ['MEM']],
        [w2, `http://workers-${tag}:2`, 'h', 4096, true, ['MEM']],
      ].sort((x, y) => (x[0] as number) - (y[0] as number)),
    );
    t.same(
      (await store.blocks(f.ino)).map((b) => sorted(b.locations)),
      [sorted([w1, w2]), [w2], []],
      'locations from the full reports',
    );
    t.same((await store.blocks(f.ino))[0]!.cached!.find((c) => c.workerId === w2), { workerId: w2, tier: 'SSD', bytes: 512 });
    t.same(await beat(store, w1), [stray], 'a reported block of no file is deleted');
    t.same(await beat(store, w1, [rep(ids[2]!)], [stray]), [], 'a heartbeat adds a location; a removal clears the deletion');
    t.same((await store.blocks(f.ino))[2]!.locations, [w1]);
    await beat(store, w1, [], [ids[2]!]);
    t.same((await store.blocks(f.ino))[2]!.locations, [], 'and removes one');
    t.equal(await beat(store, 2 ** 40), null, 'an unknown worker must register');
    t.equal(await register(store, uuid(tag, 2), `http://workers-${tag}:2b`, [rep(ids[0]!, 512, 'SSD'), rep(ids[1]!)]), w2, 'a worker restarted on a new port keeps its id');
    t.same((await store.workers()).filter((w) => w.id === w2).map((w) => w.address), [`http://workers-${tag}:2b`], 'one row, the new address');
    t.same(await beat(store, w2, [rep(ids[0]!, BS, 'MEM')]), [], 'a copy reported again');
    t.same((await store.blocks(f.ino))[0]!.cached!.find((c) => c.workerId === w2), { workerId: w2, tier: 'MEM', bytes: BS }, 'its tier and bytes replace the old ones');

    // An address belongs to one live worker: a new uuid there displaces the old one.
    const w3 = await register(store, uuid(tag, 3), a1, [rep(ids[1]!)]);
    t.not(w3, w1);
    t.equal((await store.workers()).find((w) => w.id === w1)!.live, false, 'the displaced worker is lost');
    t.equal(await beat(store, w1), null, 'and must register again');
    t.same(sorted((await store.blocks(f.ino))[1]!.locations), sorted([w2, w3]));
    t.same((await store.blocks(f.ino))[0]!.locations, [w2], "the displaced worker's locations are dropped");

    t.same((await store.expireWorkers(Date.now() - 60_000)).filter((id) => [w2, w3].includes(id)), [], 'workers that just reported stay');
    t.same(sorted((await store.expireWorkers(Date.now() + 1)).filter((id) => [w1, w2, w3].includes(id))), sorted([w2, w3]), 'silent ones are lost (once)');
    t.same((await store.blocks(f.ino)).map((b) => b.locations), [[], [], []], 'no locations on lost workers');
    t.equal(await register(store, uuid(tag, 2), `http://workers-${tag}:2b`, [rep(ids[2]!)]), w2, 'a lost worker comes back with its id');
    t.same((await store.blocks(f.ino)).map((b) => b.locations), [[], [], [w2]]);

    // A worker stopping cleanly says so: lost at once, its locations dropped.
    t.equal(await store.workerLeft(w2), true, 'a live worker leaves');
    t.equal((await store.workers()).find((w) => w.id === w2)!.live, false, 'and is lost');
    t.same((await store.blocks(f.ino)).map((b) => b.locations), [[], [], []], 'without its locations');
    t.equal(await beat(store, w2), null, 'it must register again');
    t.equal(await store.workerLeft(w2), false, 'leaving twice: it was not live');
    t.equal(await store.workerLeft(2 ** 40), false, 'an unknown worker');
  });

  t.test('mount table', async (t) => {
    const { store, tag } = await setup(t);
    const mine = async () => (await store.mounts()).filter((m) => m.path.startsWith(`/${tag}`));
    await store.setMount(`/${tag}/b`, 'mem://b', '{"readonly":"true"}');
    await store.setMount(`/${tag}/a`, 'file:///a');
    t.same(await mine(), [
      { path: `/${tag}/a`, uri: 'file:///a', options: '{}' },
      { path: `/${tag}/b`, uri: 'mem://b', options: '{"readonly":"true"}' },
    ]);
    await store.setMount(`/${tag}/a`, 's3://bucket/a', '{"s3.endpoint":"http://x"}');
    t.same((await mine())[0], { path: `/${tag}/a`, uri: 's3://bucket/a', options: '{"s3.endpoint":"http://x"}' }, 'replaced');
    await store.removeMount(`/${tag}/b`);
    await store.removeMount(`/${tag}/never`);
    t.same((await mine()).map((m) => m.path), [`/${tag}/a`]);
    t.same(await store.claimMount(`/${tag}/a`, 'file:///other', '{}'), { path: `/${tag}/a`, uri: 's3://bucket/a', options: '{"s3.endpoint":"http://x"}' }, 'claimMount answers the mount found there');
    t.same((await mine())[0]?.uri, 's3://bucket/a', 'and leaves it');
    t.same(await store.claimMount(`/${tag}/c`, 'file:///c', '{"readonly":"true"}'), { path: `/${tag}/c`, uri: 'file:///c', options: '{"readonly":"true"}' }, 'claimMount records a free path');
    t.same((await mine()).map((m) => m.path), [`/${tag}/a`, `/${tag}/c`]);
  });

  t.test('unmount: the mount row and the mount point with its tree, unless something below is not persisted', async (t) => {
    const { store, dir, tag } = await setup(t);
    const at = `/${tag}/m`;
    const m = await store.createChild(dir.ino, 'm', dirNode({ persisted: true }));
    await store.setMount(at, 'mem://m');
    const sub = await store.createChild(m.ino, 'sub', dirNode({ persisted: true }));
    const kept = await store.createChild(sub.ino, 'kept', fileNode({ persisted: true, size: 3, ufsFingerprint: 'k' }));
    const fresh = await store.createChild(sub.ino, 'fresh', fileNode());
    const mine = async () => (await store.mounts()).filter((r) => r.path.startsWith(`/${tag}`)).map((r) => r.path);
    await rejects(t, () => store.unmount(at, dir.ino, 'm'), 'BUSY', 'a file below is not persisted');
    t.same(await mine(), [at], 'the mount stays');
    t.equal((await store.lookup(sub.ino, 'fresh'))?.ino, fresh.ino, 'and the tree');
    await store.removeChild(sub.ino, 'fresh', 'file');
    await store.unmount(at, dir.ino, 'm');
    t.same(await mine(), [], 'the mount row is gone');
    t.equal(await store.lookup(dir.ino, 'm'), undefined, 'the mount point is gone');
    t.equal(await store.getNode(kept.ino), undefined, 'with its tree');
    t.equal((await store.requireNode(dir.ino)).nlink, 2, 'the parent lost a subdirectory');
    await store.setMount(at, 'mem://m');
    await store.unmount(at, dir.ino, 'm');
    t.same(await mine(), [], 'without a mount point, only the row goes');
  });

  t.test('pins and TTLs', async (t) => {
    const { store, dir, tag } = await setup(t);
    const w = await register(store, uuid(tag, 1), `http://pins-${tag}:1`);
    const d = await store.createChild(dir.ino, 'd', dirNode({ persisted: true }));
    const f = await store.createChild(d.ino, 'f', fileNode({ persisted: true, size: store.blockSize + 1 }));
    const g = await store.createChild(dir.ino, 'g', fileNode({ persisted: true, size: 1 }));
    const fBlocks = (await store.blocks(f.ino)).map((b) => b.id);
    const pinned = async () => (await store.pinnedBlocks()).filter((id) => fBlocks.includes(id));
    const v0 = await store.pinVersion();
    const hb = (v: number) => store.heartbeat({ workerId: w, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: v });
    t.equal((await hb(v0))!.pins, undefined, 'an up-to-date worker gets no set');
    t.ok((await hb(v0 - 1))!.pins, 'an out-of-date one gets it');

    t.same(await store.setPinned(d.ino, true), { files: 1 }, 'pinning a directory pins the files below');
    const v1 = await store.pinVersion();
    t.not(v1, v0, 'the version moved');
    t.same(await pinned(), fBlocks);
    t.same((await hb(v0))!.pins!.version, v1);
    t.ok((await hb(v0))!.pins!.blocks.includes(fBlocks[0]!), 'the set in the heartbeat');
    t.equal((await store.requireNode(d.ino)).pinned, true);
    t.equal((await store.requireNode(g.ino)).pinned, false);
    t.same(await store.setPinned(d.ino, true), { files: 0 }, 'pinning again changes nothing');
    t.equal(await store.pinVersion(), v1, '… not even the version');
    const later = await store.createChild(d.ino, 'later', fileNode({ persisted: true, size: 5 }));
    t.equal(later.pinned, true, 'a new child of a pinned directory starts pinned');
    const v2 = await store.pinVersion();
    t.not(v2, v1, 'its blocks changed the set');
    await store.loadChildren(d.ino, [{ name: 'found', node: fileNode({ persisted: true, size: 7 }) }]);
    t.equal((await store.lookup(d.ino, 'found'))!.pinned, true, 'so does one found in the under-store');
    const v3 = await store.pinVersion();
    const rewrite = await write(store, f.ino, 3, w, { ufsFingerprint: 'fp' });
    const v4 = await store.pinVersion();
    t.not(v4, v3, 'a rewrite of a pinned file moves the version');
    t.ok((await store.pinnedBlocks()).includes(rewrite.ids[0]!), 'the set has the new block');
    t.notOk((await store.pinnedBlocks()).some((id) => fBlocks.includes(id)), 'not the old ones');
    await store.refreshFromUfs(f.ino, 10, { sec: 1, nsec: 0 }, 'fp2');
    t.not(await store.pinVersion(), v4, 'so does a refresh from the under-store');
    t.same(await store.setPinned(d.ino, false), { files: 3 });
    t.same(await pinned(), [], 'unpinned');
    t.equal((await store.createChild(d.ino, 'after', fileNode())).pinned, false, 'an unpinned directory passes nothing on');
    await store.setPinned(g.ino, true);
    const gBlocks = (await store.blocks(g.ino)).map((x) => x.id);
    t.same((await store.pinnedBlocks()).filter((id) => gBlocks.includes(id)), gBlocks, 'a single file');
    await store.setPinned(g.ino, false);
    await rejects(t, () => store.setPinned(2 ** 40, true), 'NOT_FOUND', 'an unknown inode');

    // TTLs far in the past, so other subtests' TTLs (if any) sort after them.
    const mine = async (now: number, limit?: number) => (await store.expiredTtls(now, limit)).filter((e) => [d.ino, f.ino, g.ino].includes(e.ino));
    await store.setTtl(f.ino, 2000, 'delete');
    await store.setTtl(d.ino, 1000, 'free');
    await store.setTtl(g.ino, 9000, 'free');
    t.same((await store.requireNode(f.ino)).ttl, { expiresAtMs: 2000, action: 'delete' });
    t.same(await mine(500), []);
    t.same(await mine(2500), [
      { ino: d.ino, expiresAtMs: 1000, action: 'free' },
      { ino: f.ino, expiresAtMs: 2000, action: 'delete' },
    ], 'expired ones, earliest first');
    t.equal((await store.expiredTtls(2500, 1)).length, 1, 'limited');
    await store.setTtl(f.ino, 5000, 'delete');
    await store.clearTtl(f.ino, 2000);
    t.same((await store.requireNode(f.ino)).ttl, { expiresAtMs: 5000, action: 'delete' }, 'a TTL set again meanwhile is not cleared');
    await store.rescheduleTtl(d.ino, 1000, 7000);
    await store.rescheduleTtl(d.ino, 1000, 8000);
    t.same((await store.requireNode(d.ino)).ttl, { expiresAtMs: 7000, action: 'free' }, 'moved once: the second saw another TTL');
    await store.clearTtl(d.ino, 7000);
    t.equal((await store.requireNode(d.ino)).ttl, null);
    await store.setTtl(g.ino, null, 'free');
    t.equal((await store.requireNode(g.ino)).ttl, null, 'null clears');
    await store.clearTtl(f.ino, 5000);
    await rejects(t, () => store.setTtl(2 ** 40, 1, 'free'), 'NOT_FOUND', 'an unknown inode');
  });

  t.test('du and free', async (t) => {
    const { store, dir, tag } = await setup(t);
    const BS = store.blockSize;
    const d = await store.createChild(dir.ino, 'd', dirNode({ persisted: true }));
    const sub = await store.createChild(d.ino, 'sub', dirNode({ persisted: true }));
    const p1 = await store.createChild(d.ino, 'p1', fileNode({ persisted: true, size: BS + 10 }));
    const p2 = await store.createChild(sub.ino, 'p2', fileNode({ persisted: true, size: 20 }));
    const u = await store.createChild(d.ino, 'u', fileNode());
    const wa = await register(store, uuid(tag, 1), `http://du-${tag}:1`);
    const wb = await register(store, uuid(tag, 2), `http://du-${tag}:2`);
    const uw = await write(store, u.ino, 5, wa);
    const ids = async (ino: number) => (await store.blocks(ino)).map((b) => b.id);
    const [p1a, p1b] = (await ids(p1.ino)) as [number, number];
    const [p2a] = (await ids(p2.ino)) as [number];
    await beat(store, wa, [{ id: p1a, tier: 'MEM', bytes: BS }, { id: p1b, tier: 'MEM', bytes: 10 }]);
    await beat(store, wb, [{ id: p1a, tier: 'SSD', bytes: 512 }, { id: p2a, tier: 'MEM', bytes: 20 }]);
    t.same(await store.du(d.ino), { files: 3, directories: 2, size: BS + 10 + 20 + 5, cachedBytes: BS + 10 + 20 + 5 }, 'the largest copy of each block counts once');
    await store.link(p2.ino, d.ino, 'p2-link');
    t.same((await store.du(d.ino)).files, 3, 'a hard-linked file counts once');
    t.same(await store.du(p1.ino), { files: 1, directories: 0, size: BS + 10, cachedBytes: BS + 10 }, 'du of a file');
    t.equal(await store.cachedBytes([p1.ino, u.ino, p2.ino, p1.ino]), BS + 10 + 5 + 20, 'cachedBytes of files: the largest copy of each block, each file once');
    t.equal(await store.cachedBytes([2 ** 40]), 0, 'an unknown inode counts 0');
    await rejects(t, () => store.du(2 ** 40), 'NOT_FOUND', 'du of an unknown inode');

    t.same(await store.free(p2.ino), { files: 1, bytes: 20, skippedNotPersisted: 0 });
    t.same(await store.free(d.ino), { files: 2, bytes: BS + 10 + 512, skippedNotPersisted: 1 }, 'every copy counts; the unpersisted file is skipped');
    t.same((await store.blocks(u.ino))[0]!.locations, [wa], 'the unpersisted file keeps its copy');
    t.same(await beat(store, wa), sorted([p1a, p1b]), 'worker a deletes its copies');
    t.same(await beat(store, wb), sorted([p1a, p2a]), 'so does worker b');
    await beat(store, wb, [{ id: p2a, tier: 'MEM', bytes: 20 }]);
    t.same((await store.blocks(p2.ino))[0]!.locations, [], 'a copy reported while its deletion is queued is not a location');
    t.same((await store.du(d.ino)).cachedBytes, 5);
    t.same(await store.free(d.ino), { files: 2, bytes: 0, skippedNotPersisted: 1 }, 'freeing again drops nothing');
    await beat(store, wb, [], [p2a]);
    await beat(store, wb, [{ id: p2a, tier: 'MEM', bytes: 20 }]);
    t.same((await store.blocks(p2.ino))[0]!.locations, [wb], 'once the deletion was reported, a copy cached again is a location again');
    t.same((await store.du(d.ino)).cachedBytes, 25);
    await store.expireWorkers(Date.now() + 1);
    t.same((await store.du(d.ino)).cachedBytes, 0, 'copies on lost workers do not count');
    t.equal(await store.cachedBytes([p2.ino, u.ino]), 0, 'nor in cachedBytes');
    await rejects(t, () => store.free(2 ** 40), 'NOT_FOUND', 'free of an unknown inode');
    t.same(uw.ids.length, 1);
  });

  t.test('a restart (close and open again) keeps everything', async (t) => {
    let store = await open();
    const tag = `restart-${++seq}-${process.pid}`;
    const dir = await store.createChild(ROOT_INO, tag, dirNode({ mode: 0o700, persisted: true }));
    const w = await register(store, uuid(tag, 1), `http://${tag}:1`);
    const sub = await store.createChild(dir.ino, 'sub', dirNode());
    const f = await store.createChild(sub.ino, 'file ü 100%.bin', fileNode());
    const { containerId } = await write(store, f.ino, store.blockSize + 100, w, { writeType: 'ASYNC_THROUGH' });
    await store.link(f.ino, dir.ino, 'link');
    await store.setXattr(f.ino, 'user.k', Buffer.from('v'), 0);
    await store.setTtl(sub.ino, 123, 'free');
    await store.setPinned(sub.ino, true);
    await store.setMount(`/${tag}`, 'mem://restart', '{"k":"v"}');
    const gone = await store.createChild(dir.ino, 'gone', fileNode());
    await store.removeChild(dir.ino, 'gone', 'file');
    const before = {
      node: await store.requireNode(f.ino),
      dir: await store.requireNode(dir.ino),
      count: await store.nodeCount(),
      blocks: await store.blocks(f.ino),
      queue: (await store.persistQueue()).filter((q) => q.ino === f.ino),
      pinned: await store.pinnedBlocks(),
      version: await store.pinVersion(),
    };
    await store.close();

    store = await open();
    t.teardown(() => store.close());
    t.equal(await store.nodeCount(), before.count, 'as many inodes');
    t.same(await store.requireNode(f.ino), before.node, 'the file node is the same');
    t.same(await store.requireNode(dir.ino), before.dir, 'so is the directory');
    t.equal(await store.pathOf(f.ino), `/${tag}/sub/file ü 100%.bin`);
    t.equal((await store.lookup(dir.ino, 'link'))?.ino, f.ino);
    t.equal(await store.isPrimaryLink(sub.ino, 'file ü 100%.bin'), true);
    t.equal(await store.lookup(dir.ino, 'gone'), undefined);
    t.equal(await store.getNode(gone.ino), undefined);
    t.same(await store.blocks(f.ino), before.blocks, 'blocks and locations');
    t.same((await store.persistQueue()).filter((q) => q.ino === f.ino), before.queue, 'the persist queue');
    t.same((await store.getXattr(f.ino, 'user.k')).toString(), 'v');
    t.same((await store.requireNode(sub.ino)).ttl, { expiresAtMs: 123, action: 'free' });
    t.same(await store.pinnedBlocks(), before.pinned, 'the pinned set');
    t.not(await store.pinVersion(), before.version, 'a new pin version at every open: workers fetch the set again');
    t.same((await store.mounts()).filter((m) => m.path === `/${tag}`), [{ path: `/${tag}`, uri: 'mem://restart', options: '{"k":"v"}' }]);
    t.same((await store.workers()).filter((x) => x.id === w).map((x) => [x.address, x.live]), [[`http://${tag}:1`, true]]);
    const next = await store.beginWrite(f.ino);
    t.ok(next.containerId > containerId, 'container numbers are never reused');
    const fresh = await store.createChild(dir.ino, 'new', fileNode());
    t.ok(fresh.ino > gone.ino, 'nor inode numbers');
    await rejects(t, () => store.createChild(dir.ino, 'sub', dirNode()), 'ALREADY_EXISTS', 'names are still unique');
    await store.clearTtl(sub.ino, 123);
    await store.setPinned(sub.ino, false);
    await store.removeMount(`/${tag}`);
  });

  t.test('concurrency: 200 creates and 50 renames at once leave names, inodes and link counts consistent', async (t) => {
    const { store, dir } = await setup(t);
    const a = await store.createChild(dir.ino, 'a', dirNode());
    const b = await store.createChild(dir.ino, 'b', dirNode());
    // The names the renames shuffle: files f0..f24 and directories d0..d24, all in a.
    for (let i = 0; i < 25; i++) {
      await store.createChild(a.ino, `f${i}`, fileNode());
      await store.createChild(a.ino, `d${i}`, dirNode());
    }
    /** Nodes below `ino`, each counted once (no hard links here). */
    const below = async (ino: number): Promise<number> => {
      let n = 0;
      for (const c of await store.children(ino)) n += 1 + (c.type === 'directory' ? await below(c.ino) : 0);
      return n;
    };
    // Subtests run one at a time, so every other inode stays as it is meanwhile.
    const elsewhere = (await store.nodeCount()) - (await below(dir.ino));

    const creates = Array.from({ length: 200 }, (_, i) => store.createChild(a.ino, `new${i}`, i % 5 === 0 ? dirNode() : fileNode()));
    // Files rename onto each other in a ring (each replaces the one 7 further, or finds its source gone);
    // even directories rename onto the next name (replacing it if it is still there), odd ones move to b.
    const renames = [
      ...Array.from({ length: 25 }, (_, i) => store.rename(a.ino, `f${i}`, a.ino, `f${(i + 7) % 25}`)),
      ...Array.from({ length: 25 }, (_, i) => (i % 2 ? store.rename(a.ino, `d${i}`, b.ino, `d${i}`) : store.rename(a.ino, `d${i}`, a.ino, `d${i + 1}`))),
    ];
    // Ten creates of one name at once: exactly one wins.
    const racing = Array.from({ length: 10 }, () => store.createChild(a.ino, 'contested', fileNode()));
    // All three settled together: with a store that really waits on I/O, a rejection in one group would
    // otherwise land while an earlier group is still awaited, with no handler yet (an unhandled rejection).
    const [created, renamed, raced] = await Promise.all([Promise.allSettled(creates), Promise.allSettled(renames), Promise.allSettled(racing)]);
    const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? String((r.reason as { code?: string }).code) : 'ok');
    t.same(created.map(codeOf).filter((c) => c !== 'ok'), [], 'every create of a distinct name succeeds');
    t.same(renamed.map(codeOf).filter((c) => c !== 'ok' && c !== 'NOT_FOUND'), [], 'a rename happens, or finds its source gone');
    t.ok(renamed.some((r) => r.status === 'fulfilled'), 'renames happened');
    t.same(raced.map(codeOf).sort(), ['ok', ...Array<string>(9).fill('ALREADY_EXISTS')].sort(), 'one of ten creates of one name wins');

    const byParent = [
      { parent: a, entries: await store.children(a.ino) },
      { parent: b, entries: await store.children(b.ino) },
    ];
    const namesInA = byParent[0]!.entries.map((c) => c.name);
    t.equal(new Set(namesInA).size, namesInA.length, 'names are unique');
    t.same(Array.from({ length: 200 }, (_, i) => `new${i}`).filter((n) => !namesInA.includes(n)), [], 'every created name is there');
    const inos = new Set<number>();
    for (const { parent, entries } of byParent) {
      const parentPath = await store.pathOf(parent.ino);
      let subdirs = 0;
      for (const c of entries) {
        inos.add(c.ino);
        const n = await store.requireNode(c.ino);
        if (n.type === 'directory') {
          subdirs++;
          t.equal(n.nlink, 2, `${c.name}: an empty directory has nlink 2`);
        } else {
          t.equal(n.nlink, 1, `${c.name}: one link`);
        }
        t.equal((await store.lookup(parent.ino, c.name))?.ino, c.ino, `${c.name}: lookup agrees with children`);
        t.equal(await store.pathOf(c.ino), `${parentPath}/${c.name}`, `${c.name}: pathOf agrees`);
      }
      t.equal((await store.requireNode(parent.ino)).nlink, 2 + subdirs, `${parentPath}: nlink 2 + its subdirectories`);
    }
    t.equal(inos.size, byParent[0]!.entries.length + byParent[1]!.entries.length, 'no inode under two names');
    // Replaced inodes are gone, nothing is left unreachable.
    t.equal((await store.nodeCount()) - (await below(dir.ino)), elsewhere, 'every inode is reachable: none leaked by a replacement');
    t.equal(byParent[0]!.entries.length + byParent[1]!.entries.length, await below(dir.ino) - 2, 'everything below is directly in a or b');
    const du = await store.du(dir.ino);
    t.equal(du.directories, 3 + byParent.reduce((n, p) => n + p.entries.filter((c) => c.type === 'directory').length, 0), 'du agrees');
  });
}
