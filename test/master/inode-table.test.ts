/** InodeTable on a real SQLite file: namespace, blocks, workers and persistence across reopen. */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { InodeTable, ROOT_INO, type NewNode } from '../../src/master/inode-table';
import { blockIdOf } from '../../src/common/protocol';
import type { ErrorCode } from '../../src/common/errors';
import { rejectsCode } from '../ufs/conformance';

const BS = 4096;

const fileNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'file', mode: 0o644, uid: 1000, gid: 1000, persisted: false, ...extra });
const dirNode = (extra: Partial<NewNode> = {}): NewNode => ({ type: 'directory', mode: 0o755, uid: 1000, gid: 1000, persisted: false, ...extra });

interface Opened {
  table: InodeTable;
  file: string;
  /** Closes the current table and opens the same file again. */
  reopen(): InodeTable;
}

/** A table on a fresh SQLite file in a temp dir; whatever table is current is closed and the dir removed at teardown. */
function open(t: tap.Test): Opened {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-inodes-'));
  const file = path.join(dir, 'meta.db');
  const o: Opened = {
    table: new InodeTable(file, { blockSize: BS }),
    file,
    reopen() {
      o.table.close();
      o.table = new InodeTable(file, { blockSize: BS });
      return o.table;
    },
  };
  t.teardown(() => {
    o.table.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return o;
}

/** Registers a worker with a block report of whole blocks in one tier (the shape tests need most). */
function register(table: InodeTable, uuid: string, address: string, capacityBytes: number, usedBytes: number, blocks: number[]): number {
  return table.registerWorker({
    uuid,
    address,
    host: '',
    tiers: [{ name: 'MEM', dir: '/tmp/mem', capacityBytes, usedBytes }],
    pageSize: 1024,
    capacityBytes,
    usedBytes,
    blocks: blocks.map((id) => ({ id, tier: 'MEM', bytes: BS })),
  });
}

/** A heartbeat with whole-block reports; the blocks to delete, or null when the worker must register again. */
function beat(table: InodeTable, workerId: number, capacityBytes: number, usedBytes: number, added: number[], removed: number[]): number[] | null {
  const r = table.heartbeat({ workerId, capacityBytes, usedBytes, tiers: [], addedBlocks: added.map((id) => ({ id, tier: 'MEM', bytes: BS })), removedBlocks: removed, pinVersion: table.pinVersion() });
  return r && r.deleteBlocks;
}

const ns = (ts: { sec: number; nsec: number }) => BigInt(ts.sec) * 1_000_000_000n + BigInt(ts.nsec);

/** Asserts a synchronous call throws a StrataError with `code`. */
function throwsCode(t: tap.Test, fn: () => unknown, code: ErrorCode, what: string): Promise<void> {
  return rejectsCode(t, async () => fn(), code, what);
}

t.test('a fresh table has only the root', async (t) => {
  const { table } = open(t);
  const root = table.requireNode(ROOT_INO);
  t.equal(root.type, 'directory');
  t.equal(root.nlink, 2, 'root starts with nlink 2');
  t.equal(root.mode, 0o755);
  t.same(table.children(ROOT_INO), []);
  t.equal(table.pathOf(ROOT_INO), '/');
  t.equal(table.nodeCount(), 1);
  t.equal(table.blockSize, BS);
  t.equal(table.getNode(999), undefined, 'unknown inode is undefined');
  await throwsCode(t, () => table.requireNode(999), 'NOT_FOUND', 'requireNode of an unknown inode');
});

t.test('createChild, lookup and children', async (t) => {
  const { table } = open(t);
  const rootBefore = table.requireNode(ROOT_INO);
  const b = table.createChild(ROOT_INO, 'b', fileNode({ mode: 0o100640 }));
  const a = table.createChild(ROOT_INO, 'a', dirNode());
  const c = table.createChild(ROOT_INO, 'c', fileNode());
  t.equal(b.type, 'file');
  t.equal(b.mode, 0o640, 'only permission bits are stored');
  t.equal(b.uid, 1000);
  t.equal(b.nlink, 1, 'a new file has nlink 1');
  t.equal(b.size, 0);
  t.equal(b.blockSize, BS);
  t.equal(b.persistState, 'not_persisted');
  t.equal(a.type, 'directory');
  t.equal(a.nlink, 2, 'a new directory has nlink 2');
  t.not(a.ino, b.ino);
  t.not(a.ino, c.ino);

  t.same(
    table.children(ROOT_INO).map((n) => [n.name, n.type, n.ino]),
    [
      ['a', 'directory', a.ino],
      ['b', 'file', b.ino],
      ['c', 'file', c.ino],
    ],
    'children are sorted by name with their inodes',
  );
  t.equal(table.lookup(ROOT_INO, 'a')?.ino, a.ino);
  t.equal(table.lookup(ROOT_INO, 'b')?.ino, b.ino);
  t.equal(table.lookup(ROOT_INO, 'zz'), undefined, 'missing name');
  t.equal(table.lookup(a.ino, 'b'), undefined, 'names are per directory');

  const x = table.createChild(a.ino, 'x', fileNode());
  t.equal(table.lookup(a.ino, 'x')?.ino, x.ino, 'nested child');
  t.same(
    table.children(a.ino).map((n) => n.name),
    ['x'],
  );
  t.equal(table.nodeCount(), 5);

  const rootAfter = table.requireNode(ROOT_INO);
  t.ok(ns(rootAfter.mtime) > ns(rootBefore.mtime), 'creating a child updates the parent mtime');

  await throwsCode(t, () => table.createChild(b.ino, 'y', fileNode()), 'NOT_DIRECTORY', 'child of a file');
  await throwsCode(t, () => table.createChild(12345, 'y', fileNode()), 'NOT_FOUND', 'child of an unknown inode');
  t.equal(table.nodeCount(), 5, 'failed creates add no inode');
});

t.test('createChild: ALREADY_EXISTS leaves everything unchanged', async (t) => {
  const { table } = open(t);
  const f = table.createChild(ROOT_INO, 'name', fileNode());
  const d = table.createChild(ROOT_INO, 'dir', dirNode());
  const count = table.nodeCount();
  const rootNlink = table.requireNode(ROOT_INO).nlink;
  await throwsCode(t, () => table.createChild(ROOT_INO, 'name', fileNode()), 'ALREADY_EXISTS', 'file over file');
  await throwsCode(t, () => table.createChild(ROOT_INO, 'name', dirNode()), 'ALREADY_EXISTS', 'dir over file');
  await throwsCode(t, () => table.createChild(ROOT_INO, 'dir', dirNode()), 'ALREADY_EXISTS', 'dir over dir');
  t.equal(table.nodeCount(), count, 'no inode leaked by the failed transactions');
  t.equal(table.requireNode(ROOT_INO).nlink, rootNlink, 'root nlink not bumped by a failed mkdir');
  t.equal(table.lookup(ROOT_INO, 'name')?.ino, f.ino, 'the original entry is kept');
  t.equal(table.lookup(ROOT_INO, 'dir')?.ino, d.ino);
  // The same name in another directory is fine.
  t.ok(table.createChild(d.ino, 'name', fileNode()), 'same name under another parent');
});

t.test('a persisted file with a size gets blocks', async (t) => {
  const { table } = open(t);
  const size = 2 * BS + BS / 2;
  const f = table.createChild(ROOT_INO, 'p', fileNode({ persisted: true, size, ufsFingerprint: 'fp1' }));
  t.equal(f.size, size);
  t.equal(f.persistState, 'persisted');
  t.equal(f.ufsFingerprint, 'fp1');
  const blocks = table.blocks(f.ino);
  const c = f.container;
  t.ok(c > 0, 'the file got a container');
  t.same(
    blocks.map((b) => [b.id, b.index, b.offset, b.length, b.locations]),
    [
      [blockIdOf(c, 0), 0, 0, BS, []],
      [blockIdOf(c, 1), 1, BS, BS, []],
      [blockIdOf(c, 2), 2, 2 * BS, BS / 2, []],
    ],
    'ids from the container, last block short, no locations yet',
  );
  t.same(table.block(blockIdOf(c, 2)), { blockId: blockIdOf(c, 2), ino: f.ino, index: 2, length: BS / 2 });
  const g = table.createChild(ROOT_INO, 'q', fileNode({ persisted: true, size: 10 }));
  t.not(g.container, c, 'each file gets its own container');
  t.same(table.blocks(table.createChild(ROOT_INO, 'empty', fileNode()).ino), [], 'an empty new file has no blocks');
});

t.test('pathOf and nlink counts of directories', async (t) => {
  const { table } = open(t);
  const nl = (ino: number) => table.requireNode(ino).nlink;
  const a = table.createChild(ROOT_INO, 'a', dirNode());
  const b = table.createChild(ROOT_INO, 'b', dirNode());
  t.equal(nl(ROOT_INO), 4, 'root: 2 + one per subdirectory');
  table.createChild(ROOT_INO, 'f', fileNode());
  t.equal(nl(ROOT_INO), 4, 'files do not count');
  const c = table.createChild(a.ino, 'c', dirNode());
  const deep = table.createChild(c.ino, 'deep file', fileNode());
  t.equal(nl(a.ino), 3);
  t.equal(nl(c.ino), 2);
  t.equal(table.pathOf(a.ino), '/a');
  t.equal(table.pathOf(c.ino), '/a/c');
  t.equal(table.pathOf(deep.ino), '/a/c/deep file');
  t.ok(table.isDescendant(deep.ino, a.ino));
  t.ok(table.isDescendant(a.ino, a.ino), 'a node is its own descendant');
  t.notOk(table.isDescendant(a.ino, c.ino));
  t.notOk(table.isDescendant(b.ino, a.ino));

  table.rename(a.ino, 'c', b.ino, 'c2');
  t.equal(nl(a.ino), 2, 'moving a subdirectory out decrements the old parent');
  t.equal(nl(b.ino), 3, 'and increments the new one');
  t.equal(nl(ROOT_INO), 4);
  t.equal(table.pathOf(deep.ino), '/b/c2/deep file', 'pathOf follows the rename');

  table.rename(b.ino, 'c2', b.ino, 'c3');
  t.equal(nl(b.ino), 3, 'rename within a directory keeps nlink');
  t.equal(table.pathOf(c.ino), '/b/c3');

  await throwsCode(t, () => table.removeChild(b.ino, 'c3', 'any'), 'NOT_EMPTY', 'removing a directory that holds a file');
  t.equal(nl(b.ino), 3, 'a refused removal keeps nlink');
});

t.test('pathOf and nlink counts after removals', async (t) => {
  const { table } = open(t);
  const nl = (ino: number) => table.requireNode(ino).nlink;
  const a = table.createChild(ROOT_INO, 'a', dirNode());
  const c = table.createChild(a.ino, 'c', dirNode());
  const e = table.createChild(a.ino, 'e', dirNode());
  t.equal(nl(a.ino), 4);
  table.removeChild(a.ino, 'c', 'directory');
  t.equal(nl(a.ino), 3, 'rmdir decrements the parent');
  await throwsCode(t, () => table.pathOf(c.ino), 'NOT_FOUND', 'pathOf a removed inode');
  t.equal(table.getNode(c.ino), undefined, 'the removed directory inode is freed');

  // Replacing an empty directory in another parent: the destination parent keeps its count.
  const b = table.createChild(ROOT_INO, 'b', dirNode());
  table.createChild(b.ino, 'target', dirNode());
  t.equal(nl(b.ino), 3);
  table.rename(a.ino, 'e', b.ino, 'target');
  t.equal(nl(a.ino), 2, 'source parent lost a subdirectory');
  t.equal(nl(b.ino), 3, 'destination parent: one replaced by another');
  t.equal(table.lookup(b.ino, 'target')?.ino, e.ino);
  // Replacing an empty directory in the same parent: one fewer subdirectory.
  table.createChild(b.ino, 'other', dirNode());
  t.equal(nl(b.ino), 4);
  table.rename(b.ino, 'other', b.ino, 'target');
  t.equal(nl(b.ino), 3, 'same-parent replacement drops one link');
  t.equal(nl(ROOT_INO), 4);
});

t.test('removeChild', async (t) => {
  const { table } = open(t);
  const d = table.createChild(ROOT_INO, 'd', dirNode());
  const f = table.createChild(ROOT_INO, 'f', fileNode());
  const inner = table.createChild(d.ino, 'inner', fileNode());
  const count = table.nodeCount();

  await throwsCode(t, () => table.removeChild(ROOT_INO, 'missing', 'any'), 'NOT_FOUND', 'missing name');
  await throwsCode(t, () => table.removeChild(ROOT_INO, 'd', 'file'), 'IS_DIRECTORY', 'unlink of a directory');
  await throwsCode(t, () => table.removeChild(ROOT_INO, 'f', 'directory'), 'NOT_DIRECTORY', 'rmdir of a file');
  await throwsCode(t, () => table.removeChild(ROOT_INO, 'd', 'directory'), 'NOT_EMPTY', 'rmdir of a non-empty directory');
  await throwsCode(t, () => table.removeChild(ROOT_INO, 'd', 'any'), 'NOT_EMPTY', "remove 'any' of a non-empty directory");
  t.equal(table.nodeCount(), count, 'refused removals change nothing');
  t.equal(table.lookup(d.ino, 'inner')?.ino, inner.ino);

  const removed = table.removeChild(ROOT_INO, 'f', 'file');
  t.equal(removed.ino, f.ino, 'returns the removed node');
  t.equal(table.lookup(ROOT_INO, 'f'), undefined);
  t.equal(table.getNode(f.ino), undefined, 'the unreferenced file inode is freed');

  table.removeChild(d.ino, 'inner', 'any');
  t.equal(table.requireNode(ROOT_INO).nlink, 3);
  table.removeChild(ROOT_INO, 'd', 'directory');
  t.equal(table.requireNode(ROOT_INO).nlink, 2, 'root back to 2');
  t.same(table.children(ROOT_INO), []);
  t.equal(table.nodeCount(), 1, 'only the root is left');
});

t.test('rename', async (t) => {
  const { table } = open(t);
  const a = table.createChild(ROOT_INO, 'a', dirNode());
  const b = table.createChild(a.ino, 'b', dirNode());
  const c = table.createChild(b.ino, 'c', dirNode());
  const f = table.createChild(ROOT_INO, 'f', fileNode());
  const g = table.createChild(ROOT_INO, 'g', fileNode());

  const moved = table.rename(ROOT_INO, 'f', a.ino, 'f2');
  t.equal(moved.ino, f.ino, 'the inode is kept');
  t.equal(table.lookup(ROOT_INO, 'f'), undefined, 'old name gone');
  t.equal(table.lookup(a.ino, 'f2')?.ino, f.ino, 'new name present');
  t.equal(table.pathOf(f.ino), '/a/f2');

  // Replace an existing file: its inode is freed.
  const replaced = table.rename(a.ino, 'f2', ROOT_INO, 'g');
  t.equal(replaced.ino, f.ino);
  t.equal(table.lookup(ROOT_INO, 'g')?.ino, f.ino, 'destination now names the source inode');
  t.equal(table.getNode(g.ino), undefined, 'the replaced file inode is freed');

  t.same(table.rename(ROOT_INO, 'g', ROOT_INO, 'g').ino, f.ino, 'rename onto itself is a no-op');
  t.equal(table.lookup(ROOT_INO, 'g')?.ino, f.ino);

  await throwsCode(t, () => table.rename(ROOT_INO, 'a', c.ino, 'a'), 'INVALID_ARGUMENT', 'directory into its own subtree');
  await throwsCode(t, () => table.rename(ROOT_INO, 'a', a.ino, 'self'), 'INVALID_ARGUMENT', 'directory into itself');
  t.equal(table.pathOf(c.ino), '/a/b/c', 'tree unchanged after the refused move');

  const full = table.createChild(ROOT_INO, 'full', dirNode());
  table.createChild(full.ino, 'keep', fileNode());
  await throwsCode(t, () => table.rename(a.ino, 'b', ROOT_INO, 'full'), 'NOT_EMPTY', 'onto a non-empty directory');
  t.equal(table.lookup(ROOT_INO, 'full')?.ino, full.ino, 'target kept');
  t.equal(table.lookup(a.ino, 'b')?.ino, b.ino, 'source kept');
  await throwsCode(t, () => table.rename(ROOT_INO, 'g', ROOT_INO, 'full'), 'IS_DIRECTORY', 'file onto a directory');
  await throwsCode(t, () => table.rename(ROOT_INO, 'a', ROOT_INO, 'g'), 'NOT_DIRECTORY', 'directory onto a file');
  await throwsCode(t, () => table.rename(ROOT_INO, 'nope', ROOT_INO, 'x'), 'NOT_FOUND', 'missing source');
  await throwsCode(t, () => table.rename(ROOT_INO, 'a', f.ino, 'x'), 'NOT_DIRECTORY', 'destination parent is a file');
  t.equal(table.lookup(ROOT_INO, 'g')?.ino, f.ino, 'file kept after refused renames');

  // Moving a whole tree carries everything below it.
  table.rename(a.ino, 'b', full.ino, 'b-moved');
  t.equal(table.pathOf(c.ino), '/full/b-moved/c', 'descendants follow');
  t.same(
    table.children(a.ino).map((n) => n.name),
    [],
  );
});

t.test('commitWrite validates blocks and queues old blocks for deletion on the worker that had them', async (t) => {
  const { table } = open(t);
  const w1 = register(table, 'uuid-w1', 'w1:1', 1e9, 0, []);
  const w2 = register(table, 'uuid-w2', 'w2:1', 1e9, 0, []);
  t.not(w1, w2);
  const f = table.createChild(ROOT_INO, 'f', fileNode());
  const d = table.createChild(ROOT_INO, 'd', dirNode());

  const b1 = table.beginWrite(f.ino);
  t.equal(b1.blockSize, BS);
  const size1 = 2 * BS + 1808;
  const blocks1 = [
    { id: blockIdOf(b1.containerId, 0), length: BS },
    { id: blockIdOf(b1.containerId, 1), length: BS },
    { id: blockIdOf(b1.containerId, 2), length: 1808 },
  ];
  const base = { ino: f.ino, containerId: b1.containerId, size: size1, workerId: w1, ufsFingerprint: null };

  await throwsCode(t, () => table.commitWrite({ ...base, blocks: blocks1.slice(0, 2) }), 'BAD_REQUEST', 'too few blocks');
  await throwsCode(t, () => table.commitWrite({ ...base, blocks: [...blocks1, { id: blockIdOf(b1.containerId, 3), length: 1 }] }), 'BAD_REQUEST', 'too many blocks');
  await throwsCode(
    t,
    () => table.commitWrite({ ...base, blocks: [blocks1[0]!, { id: blockIdOf(b1.containerId + 1, 1), length: BS }, blocks1[2]!] }),
    'BAD_REQUEST',
    'a block id from another container',
  );
  await throwsCode(
    t,
    () => table.commitWrite({ ...base, blocks: [blocks1[1]!, blocks1[0]!, blocks1[2]!] }),
    'BAD_REQUEST',
    'block ids out of order',
  );
  await throwsCode(t, () => table.commitWrite({ ...base, blocks: [blocks1[0]!, blocks1[1]!, { ...blocks1[2]!, length: BS }] }), 'BAD_REQUEST', 'wrong length of the last block');
  await throwsCode(t, () => table.commitWrite({ ...base, blocks: [{ ...blocks1[0]!, length: BS - 1 }, blocks1[1]!, blocks1[2]!] }), 'BAD_REQUEST', 'short middle block');
  t.equal(table.requireNode(f.ino).size, 0, 'rejected commits change nothing');
  t.same(table.blocks(f.ino), []);

  await throwsCode(t, () => table.beginWrite(d.ino), 'IS_DIRECTORY', 'beginWrite on a directory');
  await throwsCode(t, () => table.commitWrite({ ...base, ino: d.ino, blocks: blocks1 }), 'IS_DIRECTORY', 'commitWrite on a directory');
  await throwsCode(t, () => table.commitWrite({ ...base, ino: 9999, blocks: blocks1 }), 'NOT_FOUND', 'commitWrite on an unknown inode');

  const mtime = { sec: 1_700_000_000, nsec: 123 };
  const n1 = table.commitWrite({ ...base, blocks: blocks1, mtime });
  t.equal(n1.size, size1);
  t.equal(n1.container, b1.containerId);
  t.same(n1.mtime, mtime, 'mtime as given');
  t.equal(n1.persistState, 'not_persisted', 'no fingerprint: not persisted');
  t.same(
    table.blocks(f.ino).map((b) => [b.id, b.offset, b.length, b.locations]),
    [
      [blocks1[0]!.id, 0, BS, [w1]],
      [blocks1[1]!.id, BS, BS, [w1]],
      [blocks1[2]!.id, 2 * BS, 1808, [w1]],
    ],
    'blocks located on the writing worker',
  );
  t.same(beat(table, w1, 1e9, size1, [], []), [], 'nothing to delete yet on w1');

  // A second version written through w2: the old blocks are deleted on w1, not on w2.
  const b2 = table.beginWrite(f.ino);
  t.not(b2.containerId, b1.containerId, 'every write gets a fresh container');
  const n2 = table.commitWrite({ ino: f.ino, containerId: b2.containerId, size: 10, blocks: [{ id: blockIdOf(b2.containerId, 0), length: 10 }], workerId: w2, ufsFingerprint: 'etag-2' });
  t.equal(n2.size, 10);
  t.equal(n2.persistState, 'persisted', 'a fingerprint means persisted');
  t.equal(n2.ufsFingerprint, 'etag-2');
  t.same(
    table.blocks(f.ino).map((b) => [b.id, b.locations]),
    [[blockIdOf(b2.containerId, 0), [w2]]],
  );
  for (const b of blocks1) t.equal(table.block(b.id), undefined, `old block ${b.id} forgotten`);
  t.same(beat(table, w2, 1e9, 10, [], []), [], 'the new worker deletes nothing');
  t.same(
    beat(table, w1, 1e9, size1, [], [])!.slice().sort((x, y) => x - y),
    blocks1.map((b) => b.id),
    'the old worker is told to delete exactly the old blocks',
  );
  t.same(beat(table, w1, 1e9, size1, [], [])!.length, 3, 'until it reports them removed, they stay queued');
  t.same(beat(table, w1, 1e9, 0, [], [blocks1[0]!.id]), [blocks1[1]!.id, blocks1[2]!.id], 'a removed block leaves the queue');
  t.same(beat(table, w1, 1e9, 0, [], [blocks1[1]!.id, blocks1[2]!.id]), [], 'queue drained');

  // A cached copy on a second worker is deleted there too, and truncation to 0 drops all blocks.
  t.same(beat(table, w1, 1e9, 10, [blockIdOf(b2.containerId, 0)], []), [], 'w1 reports a copy of the current block');
  t.same(table.blocks(f.ino)[0]!.locations.slice().sort(), [w1, w2].sort(), 'two locations');
  const b3 = table.beginWrite(f.ino);
  const n3 = table.commitWrite({ ino: f.ino, containerId: b3.containerId, size: 0, blocks: [], workerId: w1, ufsFingerprint: 'etag-3' });
  t.equal(n3.size, 0);
  t.same(table.blocks(f.ino), [], 'an empty version has no blocks');
  t.same(beat(table, w1, 1e9, 0, [], []), [blockIdOf(b2.containerId, 0)], 'w1 deletes its copy');
  t.same(beat(table, w2, 1e9, 0, [], []), [blockIdOf(b2.containerId, 0)], 'w2 deletes its copy');
});

t.test('removing or replacing a file queues its cached blocks for deletion', async (t) => {
  const { table } = open(t);
  const w = register(table, 'uuid-w', 'w:1', 1e9, 0, []);
  const write = (ino: number, size: number) => {
    const { containerId } = table.beginWrite(ino);
    const n = Math.ceil(size / BS);
    const blocks = Array.from({ length: n }, (_, i) => ({ id: blockIdOf(containerId, i), length: Math.min(BS, size - i * BS) }));
    table.commitWrite({ ino, containerId, size, blocks, workerId: w, ufsFingerprint: null });
    return blocks.map((b) => b.id);
  };
  const f = table.createChild(ROOT_INO, 'f', fileNode());
  const g = table.createChild(ROOT_INO, 'g', fileNode());
  const fBlocks = write(f.ino, BS + 1);
  const gBlocks = write(g.ino, 5);
  t.same(beat(table, w, 1, 1, [], []), []);
  table.removeChild(ROOT_INO, 'f', 'file');
  t.same(beat(table, w, 1, 1, [], []), fBlocks, 'unlink queues the file blocks');
  beat(table, w, 1, 1, [], fBlocks);
  const h = table.createChild(ROOT_INO, 'h', fileNode());
  write(h.ino, 7);
  table.rename(ROOT_INO, 'h', ROOT_INO, 'g');
  t.same(beat(table, w, 1, 1, [], []), gBlocks, 'replacing g by rename queues the old g blocks');
});

t.test('workers: registration, block reports, heartbeats and expiry', async (t) => {
  const { table, file } = open(t);
  const f = table.createChild(ROOT_INO, 'f', fileNode({ persisted: true, size: 3 * BS }));
  const ids = table.blocks(f.ino).map((b) => b.id);
  t.equal(ids.length, 3);

  const stray = blockIdOf(999_999, 0);
  const w1 = register(table, 'uuid-1', '10.0.0.1:7000', 1000, 10, [ids[0]!, stray]);
  const w2 = register(table, 'uuid-2', '10.0.0.2:7000', 2000, 20, [ids[0]!, ids[1]!]);
  t.equal(register(table, 'uuid-1', '10.0.0.1:7000', 1500, 15, [ids[0]!]), w1, 're-registering a uuid keeps its id');
  const ws = table.workers();
  t.same(
    ws.map((w) => [w.id, w.address, w.capacityBytes, w.usedBytes, w.live]),
    [
      [w1, '10.0.0.1:7000', 1500, 15, true],
      [w2, '10.0.0.2:7000', 2000, 20, true],
    ],
  );
  t.ok(ws.every((w) => Math.abs(w.lastHeartbeatMs - Date.now()) < 60_000), 'heartbeat times are recent');
  t.same(
    table.blocks(f.ino).map((b) => b.locations.slice().sort()),
    [[w1, w2].sort(), [w2], []],
    'locations from the block reports',
  );
  t.same(beat(table, w1, 1500, 15, [], []), [stray], 'a reported block no file refers to is queued for deletion');

  t.same(beat(table, w1, 1500, 15, [ids[2]!], []), [stray], 'heartbeat adds a location');
  t.same(table.blocks(f.ino)[2]!.locations, [w1]);
  beat(table, w1, 1500, 15, [], [ids[2]!, stray]);
  t.same(table.blocks(f.ino)[2]!.locations, [], 'heartbeat removes a location');
  t.same(beat(table, w1, 1500, 15, [], []), [], 'the stray block left the queue once reported removed');
  t.equal(beat(table, 424242, 1, 1, [], []), null, 'an unknown worker must register');

  t.same(table.expireWorkers(Date.now() - 60_000), [], 'workers that just reported are not expired');
  const lost = table.expireWorkers(Date.now() + 1);
  t.same(lost.slice().sort(), [w1, w2].sort(), 'silent workers are expired');
  t.same(
    table.workers().map((w) => w.live),
    [false, false],
  );
  t.same(
    table.blocks(f.ino).map((b) => b.locations),
    [[], [], []],
    'no locations on lost workers',
  );
  const db = new Database(file, { readonly: true });
  try {
    const n = (db.prepare(`SELECT COUNT(*) AS n FROM block_location`).get() as { n: number }).n;
    t.equal(n, 0, 'the location rows are dropped, not just hidden');
  } finally {
    db.close();
  }
  t.equal(beat(table, w1, 1, 1, [], []), null, 'a lost worker must register again');
  t.same(table.expireWorkers(Date.now() + 1), [], 'already-lost workers are not expired twice');

  t.equal(register(table, 'uuid-1', '10.0.0.1:7000', 1500, 15, [ids[1]!]), w1, 'the lost worker comes back with its id');
  t.equal(table.workers().find((w) => w.id === w1)!.live, true, 'live again');
  t.same(
    table.blocks(f.ino).map((b) => b.locations),
    [[], [w1], []],
    'its new block report is the truth',
  );
  t.same(beat(table, w1, 1, 1, [], []), [], 'heartbeats work again');
});

t.test('workers are identified by uuid; an address belongs to one live worker', async (t) => {
  const { table } = open(t);
  const f = table.createChild(ROOT_INO, 'f', fileNode({ persisted: true, size: 2 * BS }));
  const [b0, b1] = table.blocks(f.ino).map((b) => b.id) as [number, number];
  const a = register(table, 'uuid-a', 'host:7001', 100, 0, [b0]);
  const moved = register(table, 'uuid-a', 'host:7002', 100, 0, [b0, b1]);
  t.equal(moved, a, 'a restarted worker on a new port keeps its id');
  t.same(
    table.workers().map((w) => [w.id, w.address, w.live]),
    [[a, 'host:7002', true]],
    'its address is updated, no second worker row',
  );
  t.same(
    table.blocks(f.ino).map((b) => b.locations),
    [[a], [a]],
  );

  const b = register(table, 'uuid-b', 'host:7002', 100, 0, [b1]);
  t.not(b, a, 'another uuid is another worker');
  const byId = new Map(table.workers().map((w) => [w.id, w]));
  t.equal(byId.get(a)!.live, false, 'the worker that had the address before is lost');
  t.equal(byId.get(b)!.live, true);
  t.same(
    table.blocks(f.ino).map((x) => x.locations),
    [[], [b]],
    "the old worker's locations are dropped",
  );
  t.equal(beat(table, a, 1, 1, [], []), null, 'the displaced worker must register again');
});

t.test('data survives closing and reopening the same file', async (t) => {
  const o = open(t);
  let table = o.table;
  const w = register(table, 'uuid-w', 'w:1', 1e9, 0, []);
  const d = table.createChild(ROOT_INO, 'dir', dirNode({ mode: 0o700 }));
  const sub = table.createChild(d.ino, 'sub', dirNode());
  const f = table.createChild(sub.ino, 'file ü 100%.bin', fileNode());
  const { containerId } = table.beginWrite(f.ino);
  const size = BS + 100;
  table.commitWrite({
    ino: f.ino,
    containerId,
    size,
    blocks: [
      { id: blockIdOf(containerId, 0), length: BS },
      { id: blockIdOf(containerId, 1), length: 100 },
    ],
    workerId: w,
    ufsFingerprint: 'fp',
  });
  const gone = table.createChild(ROOT_INO, 'gone', fileNode());
  table.removeChild(ROOT_INO, 'gone', 'file');
  table.setMount('/', 'file:///data/lake');
  const before = { node: table.requireNode(f.ino), count: table.nodeCount(), rootNlink: table.requireNode(ROOT_INO).nlink };

  table = o.reopen();
  t.equal(table.nodeCount(), before.count, 'same number of inodes');
  t.equal(table.lookup(ROOT_INO, 'dir')?.ino, d.ino);
  t.equal(table.requireNode(d.ino).mode, 0o700);
  t.equal(table.requireNode(d.ino).nlink, 3);
  t.equal(table.requireNode(ROOT_INO).nlink, before.rootNlink);
  t.equal(table.pathOf(f.ino), '/dir/sub/file ü 100%.bin');
  t.same(table.requireNode(f.ino), before.node, 'the file node is identical');
  t.equal(table.lookup(ROOT_INO, 'gone'), undefined, 'a removed entry stays removed');
  t.equal(table.getNode(gone.ino), undefined);
  t.same(
    table.blocks(f.ino).map((b) => [b.id, b.length, b.locations]),
    [
      [blockIdOf(containerId, 0), BS, [w]],
      [blockIdOf(containerId, 1), 100, [w]],
    ],
    'blocks and locations survive',
  );
  t.same(
    table.workers().map((x) => [x.id, x.address, x.live]),
    [[w, 'w:1', true]],
  );
  t.same(
    table.mounts().map(({ path, uri }) => ({ path, uri })),
    [{ path: '/', uri: 'file:///data/lake' }],
    'the mount table survives',
  );
  const next = table.beginWrite(f.ino);
  t.ok(next.containerId > containerId, 'the container counter survives: block ids are never reused');
  const fresh = table.createChild(ROOT_INO, 'new', fileNode());
  t.ok(fresh.ino > gone.ino, 'inode numbers of removed files are not reused after reopen');
  await throwsCode(t, () => table.createChild(ROOT_INO, 'dir', dirNode()), 'ALREADY_EXISTS', 'the namespace constraint survives too');
});

t.test('an unsupported schema version is refused with CONFIG', async (t) => {
  const o = open(t);
  o.table.close();
  const db = new Database(o.file);
  db.prepare(`UPDATE meta SET value = '99' WHERE key = 'schema_version'`).run();
  db.close();
  await throwsCode(t, () => new InodeTable(o.file, { blockSize: BS }), 'CONFIG', 'opening a newer schema');
  const fix = new Database(o.file);
  fix.prepare(`UPDATE meta SET value = '3' WHERE key = 'schema_version'`).run();
  fix.close();
  o.table = new InodeTable(o.file, { blockSize: BS });
  t.equal(o.table.nodeCount(), 1, 'opens again once the version matches');
});

/**
 * The schema exactly as Strata's schema version 1 created it (fixture for the
 * migration test; do not change it when the schema moves on).
 */
const SCHEMA_V1_FIXTURE = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE node (
    ino INTEGER PRIMARY KEY AUTOINCREMENT, type INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0, nlink INTEGER NOT NULL DEFAULT 1,
    atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL, mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    target TEXT, rdev INTEGER NOT NULL DEFAULT 0, block_size INTEGER NOT NULL, persisted INTEGER NOT NULL, ufs_fingerprint TEXT,
    synced_at INTEGER NOT NULL DEFAULT 0, container INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE edge (
    parent INTEGER NOT NULL REFERENCES node(ino), name TEXT NOT NULL, ino INTEGER NOT NULL REFERENCES node(ino),
    primary_link INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (parent, name)
  ) WITHOUT ROWID;
  CREATE INDEX edge_by_ino ON edge(ino);
  CREATE TABLE block (
    block_id INTEGER PRIMARY KEY, ino INTEGER NOT NULL REFERENCES node(ino) ON DELETE CASCADE, idx INTEGER NOT NULL, length INTEGER NOT NULL, UNIQUE (ino, idx)
  );
  CREATE TABLE worker (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE, address TEXT NOT NULL, host TEXT NOT NULL DEFAULT '',
    block_dir TEXT NOT NULL DEFAULT '', capacity INTEGER NOT NULL, used INTEGER NOT NULL, last_heartbeat INTEGER NOT NULL, live INTEGER NOT NULL
  );
  CREATE TABLE block_location (
    block_id INTEGER NOT NULL, worker_id INTEGER NOT NULL REFERENCES worker(id) ON DELETE CASCADE, PRIMARY KEY (block_id, worker_id)
  ) WITHOUT ROWID;
  CREATE TABLE pending_delete (
    worker_id INTEGER NOT NULL REFERENCES worker(id) ON DELETE CASCADE, block_id INTEGER NOT NULL, PRIMARY KEY (worker_id, block_id)
  ) WITHOUT ROWID;
  CREATE TABLE mount (path TEXT PRIMARY KEY, uri TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}');
  CREATE TABLE persist_queue (
    ino INTEGER PRIMARY KEY REFERENCES node(ino) ON DELETE CASCADE, enqueued_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL, last_error TEXT
  );
  CREATE TABLE xattr (ino INTEGER NOT NULL REFERENCES node(ino) ON DELETE CASCADE, name TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ino, name));
`;

t.test('a version 1 database is upgraded in place to the current version and keeps its data', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-inodes-v1-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'meta.db');
  const now = Math.floor(Date.now() / 1000);
  const v1 = new Database(file);
  v1.pragma('journal_mode = WAL');
  v1.exec(SCHEMA_V1_FIXTURE);
  const node = v1.prepare(
    `INSERT INTO node (ino, type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, block_size, persisted, ufs_fingerprint, container)
     VALUES (?, ?, ?, 0, 0, ?, ?, ?, 0, ?, 0, ?, 0, ?, 1, ?, ?)`,
  );
  node.run(ROOT_INO, 2, 0o755, 0, 3, now, now, now, BS, null, 0);
  node.run(2, 2, 0o750, 0, 2, now, now, now, BS, null, 0);
  node.run(3, 1, 0o640, 2 * BS + 10, 1, now, now, now, BS, 'fp-v1', 7);
  v1.prepare(`INSERT INTO edge (parent, name, ino) VALUES (?, ?, ?)`).run(ROOT_INO, 'd', 2);
  v1.prepare(`INSERT INTO edge (parent, name, ino) VALUES (?, ?, ?)`).run(2, 'f', 3);
  const ids = [blockIdOf(7, 0), blockIdOf(7, 1), blockIdOf(7, 2)];
  [BS, BS, 10].forEach((len, i) => v1.prepare(`INSERT INTO block (block_id, ino, idx, length) VALUES (?, 3, ?, ?)`).run(ids[i], i, len));
  v1.prepare(`INSERT INTO worker (id, uuid, address, host, block_dir, capacity, used, last_heartbeat, live) VALUES (1, 'uuid-old', 'http://w:1', 'h', '/old/blocks', 1000, 500, ?, 1)`).run(Date.now());
  v1.prepare(`INSERT INTO block_location (block_id, worker_id) VALUES (?, 1), (?, 1)`).run(ids[0], ids[2]);
  v1.prepare(`INSERT INTO pending_delete (worker_id, block_id) VALUES (1, 12345)`).run();
  v1.prepare(`INSERT INTO mount (path, uri) VALUES ('/', 'file:///lake')`).run();
  v1.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('next_container', '8')`).run();
  v1.close();

  let table = new InodeTable(file, { blockSize: BS });
  t.teardown(() => table.close());
  const check = new Database(file, { readonly: true });
  const columns = (tbl: string) => (check.prepare(`PRAGMA table_info(${tbl})`).all() as { name: string }[]).map((c) => c.name);
  t.equal((check.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string }).value, '3', 'the version row says 3');
  t.match(columns('open_write'), ['container', 'ino', 'renewed_at'], 'writes in flight are tracked (v3)');
  t.match(columns('block_location'), ['block_id', 'worker_id', 'tier', 'bytes'], 'block locations have tier and bytes');
  t.ok(columns('worker').includes('tiers') && columns('worker').includes('page_size'), 'workers have tiers and a page size');
  t.notOk(columns('worker').includes('block_dir'), 'block_dir is gone');
  t.ok(['pinned', 'ttl_expires_at', 'ttl_action'].every((c) => columns('node').includes(c)), 'nodes have pin and TTL columns');
  check.close();

  t.equal(table.nodeCount(), 3, 'every inode kept');
  t.equal(table.pathOf(3), '/d/f');
  const f = table.requireNode(3);
  t.match(f, { size: 2 * BS + 10, mode: 0o640, persistState: 'persisted', ufsFingerprint: 'fp-v1', container: 7, pinned: false, ttl: null });
  t.same(
    table.blocks(3).map((b) => [b.id, b.length, b.locations, b.cached]),
    [
      [ids[0], BS, [1], [{ workerId: 1, tier: '', bytes: BS }]],
      [ids[1], BS, [], []],
      [ids[2], 10, [1], [{ workerId: 1, tier: '', bytes: 10 }]],
    ],
    'v1 locations read as whole blocks of an unknown tier',
  );
  t.match(table.workers(), [{ id: 1, address: 'http://w:1', host: 'h', tiers: [], pageSize: 0, capacityBytes: 1000, usedBytes: 500, live: true }]);
  t.same(table.du(ROOT_INO), { files: 1, directories: 2, size: 2 * BS + 10, cachedBytes: BS + 10 });
  t.same(table.mounts().map((m) => m.uri), ['file:///lake'], 'the mount table kept');
  t.ok(table.beginWrite(3).containerId >= 8, 'the container counter kept');
  t.same(beat(table, 1, 1000, 500, [], []), [12345], 'the pending deletions kept');

  // The worker comes back with the new protocol: its full report replaces the v1 locations.
  t.equal(register(table, 'uuid-old', 'http://w:1', 1000, 500, [ids[1]!]), 1, 'same worker id');
  t.same(
    table.blocks(3).map((b) => b.cached),
    [[], [{ workerId: 1, tier: 'MEM', bytes: BS }], []],
  );
  table.close();
  table = new InodeTable(file, { blockSize: BS });
  t.equal(table.nodeCount(), 3, 'opening a version 2 file again migrates nothing');
});

t.test('block reports carry tier and cached bytes; du counts the best copy per block on live workers', async (t) => {
  const { table } = open(t);
  const d = table.createChild(ROOT_INO, 'd', dirNode({ persisted: true }));
  const f = table.createChild(d.ino, 'f', fileNode({ persisted: true, size: 2 * BS + 100 }));
  table.createChild(d.ino, 'sub', dirNode({ persisted: true }));
  const [b0, b1, b2] = table.blocks(f.ino).map((b) => b.id) as [number, number, number];
  const tiers = [{ name: 'MEM', dir: '/m', capacityBytes: 10 * BS, usedBytes: 0 }];
  const w1 = table.registerWorker({ uuid: 'uuid-1', address: 'http://a:1', host: 'h', tiers, pageSize: 1024, capacityBytes: 10 * BS, usedBytes: 0, blocks: [{ id: b0, tier: 'MEM', bytes: 1024 }] });
  const w2 = table.registerWorker({ uuid: 'uuid-2', address: 'http://b:1', host: 'h', tiers, pageSize: 1024, capacityBytes: 10 * BS, usedBytes: 0, blocks: [{ id: b0, tier: 'SSD', bytes: 3072 }] });
  t.same(table.workers().map((w) => [w.tiers, w.pageSize]), [[tiers, 1024], [tiers, 1024]], 'tiers and page size kept');
  t.same(table.blocks(f.ino)[0]!.cached, [
    { workerId: w1, tier: 'MEM', bytes: 1024 },
    { workerId: w2, tier: 'SSD', bytes: 3072 },
  ]);
  t.same(table.du(d.ino), { files: 1, directories: 2, size: 2 * BS + 100, cachedBytes: 3072 }, 'the larger copy of a block counts once');

  const used = [{ ...tiers[0]!, usedBytes: 5000 }];
  const r = table.heartbeat({ workerId: w1, capacityBytes: 10 * BS, usedBytes: 5000, tiers: used, addedBlocks: [{ id: b0, tier: 'SSD', bytes: BS }, { id: b2, tier: 'MEM', bytes: 100 }], removedBlocks: [], pinVersion: table.pinVersion() });
  t.same(r, { deleteBlocks: [] }, 'nothing to delete, no pin set when the version matches');
  t.same(table.workers()[0]!.tiers, used, 'tier usage from the heartbeat');
  t.same(table.blocks(f.ino)[0]!.cached?.[0], { workerId: w1, tier: 'SSD', bytes: BS }, 'a changed tier and byte count replace the old ones');
  t.same(table.du(d.ino).cachedBytes, BS + 100);
  t.same(table.du(f.ino), { files: 1, directories: 0, size: 2 * BS + 100, cachedBytes: BS + 100 }, 'du of a file');
  table.heartbeat({ workerId: w1, capacityBytes: 1, usedBytes: 0, tiers: used, addedBlocks: [], removedBlocks: [b0], pinVersion: table.pinVersion() });
  t.same(table.du(d.ino).cachedBytes, 3072 + 100, 'a removed copy no longer counts');
  table.expireWorkers(Date.now() + 1);
  t.same(table.du(d.ino).cachedBytes, 0, 'copies on lost workers do not count');
  t.same(b1, table.blocks(f.ino)[1]!.id);
});

t.test('pins: inherited by new children, a version that changes with the pinned set, the set in heartbeats', async (t) => {
  const o = open(t);
  const table = o.table;
  const w = register(table, 'uuid-w', 'http://w:1', 1e9, 0, []);
  const d = table.createChild(ROOT_INO, 'd', dirNode({ persisted: true }));
  const f = table.createChild(d.ino, 'f', fileNode({ persisted: true, size: BS + 1 }));
  const g = table.createChild(ROOT_INO, 'g', fileNode({ persisted: true, size: 1 }));
  const fBlocks = table.blocks(f.ino).map((b) => b.id);
  const hb = (pinVersion: number) => table.heartbeat({ workerId: w, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion })!;

  const v0 = table.pinVersion();
  t.same(hb(-1).pins, { version: v0, blocks: [] }, 'a worker without a set gets the (empty) set');
  t.equal(hb(v0).pins, undefined, 'an up-to-date worker gets nothing');

  t.same(table.setPinned(d.ino, true), { files: 1 }, 'pinning a directory pins the files below');
  const v1 = table.pinVersion();
  t.ok(v1 > v0, 'the version moved');
  t.same(hb(v0).pins, { version: v1, blocks: fBlocks });
  t.equal(table.requireNode(f.ino).pinned, true);
  t.equal(table.requireNode(d.ino).pinned, true, 'the directory too');
  t.equal(table.requireNode(g.ino).pinned, false, 'files elsewhere are not');
  t.same(table.setPinned(d.ino, true), { files: 0 }, 'pinning again changes nothing');
  t.equal(table.pinVersion(), v1, '… not even the version');

  const later = table.createChild(d.ino, 'later', fileNode({ persisted: true, size: 5 }));
  t.equal(later.pinned, true, 'a file created in a pinned directory starts pinned');
  const v2 = table.pinVersion();
  t.ok(v2 > v1, 'its blocks changed the set');
  table.loadChildren(d.ino, [{ name: 'found', node: fileNode({ persisted: true, size: 7 }) }]);
  t.equal(table.lookup(d.ino, 'found')!.pinned, true, 'so does one found in the under-store');

  // A rewrite of a pinned file: new block ids, a new version.
  const v3 = table.pinVersion();
  const { containerId } = table.beginWrite(f.ino);
  table.commitWrite({ ino: f.ino, containerId, size: 3, blocks: [{ id: blockIdOf(containerId, 0), length: 3 }], workerId: w, ufsFingerprint: 'fp' });
  const v4 = table.pinVersion();
  t.ok(v4 > v3, 'a rewrite of a pinned file moves the version');
  t.ok(hb(v3).pins!.blocks.includes(blockIdOf(containerId, 0)), 'and the set has the new block');
  t.notOk(hb(v3).pins!.blocks.includes(fBlocks[0]!), 'not the old ones');
  table.refreshFromUfs(f.ino, 10, { sec: 1, nsec: 0 }, 'fp2');
  t.ok(table.pinVersion() > v4, 'so does a refresh from the under-store');

  t.same(table.setPinned(d.ino, false), { files: 3 });
  t.same(hb(-1).pins!.blocks, [], 'unpinned: an empty set');
  t.equal(table.createChild(d.ino, 'after', fileNode()).pinned, false, 'an unpinned directory passes nothing on');
  table.setPinned(g.ino, true);
  t.same(hb(-1).pins!.blocks, table.blocks(g.ino).map((b) => b.id), 'a single file');

  const before = table.pinVersion();
  t.ok(o.reopen().pinVersion() > before, 'a restart moves the version: workers fetch the set again');
});

t.test('free drops cached copies of persisted files and queues them for deletion on their workers', async (t) => {
  const { table } = open(t);
  const d = table.createChild(ROOT_INO, 'd', dirNode({ persisted: true }));
  const sub = table.createChild(d.ino, 'sub', dirNode({ persisted: true }));
  const p1 = table.createChild(d.ino, 'p1', fileNode({ persisted: true, size: BS + 10 }));
  const p2 = table.createChild(sub.ino, 'p2', fileNode({ persisted: true, size: 20 }));
  const other = table.createChild(ROOT_INO, 'other', fileNode({ persisted: true, size: 30 }));
  const u = table.createChild(d.ino, 'u', fileNode());
  const wa = register(table, 'uuid-a', 'http://a:1', 1e9, 0, []);
  const wb = register(table, 'uuid-b', 'http://b:1', 1e9, 0, []);
  const { containerId } = table.beginWrite(u.ino);
  table.commitWrite({ ino: u.ino, containerId, size: 5, blocks: [{ id: blockIdOf(containerId, 0), length: 5 }], workerId: wa, ufsFingerprint: null });
  const ids = (ino: number) => table.blocks(ino).map((b) => b.id);
  const report = (w: number, blocks: { id: number; bytes: number }[]) =>
    table.heartbeat({ workerId: w, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: blocks.map((b) => ({ ...b, tier: 'MEM' })), removedBlocks: [], pinVersion: 0 });
  report(wa, [{ id: ids(p1.ino)[0]!, bytes: BS }, { id: ids(p1.ino)[1]!, bytes: 10 }, { id: ids(other.ino)[0]!, bytes: 30 }]);
  report(wb, [{ id: ids(p1.ino)[0]!, bytes: 512 }, { id: ids(p2.ino)[0]!, bytes: 20 }]);

  t.same(table.free(p2.ino), { files: 1, bytes: 20, skippedNotPersisted: 0 }, 'one file');
  t.same(table.free(d.ino), { files: 2, bytes: BS + 10 + 512, skippedNotPersisted: 1 }, 'a subtree: every copy counts, the unpersisted file is skipped');
  for (const ino of [p1.ino, p2.ino]) t.same(table.blocks(ino).map((b) => b.locations), table.blocks(ino).map(() => []), 'no locations left');
  t.same(table.blocks(u.ino)[0]!.locations, [wa], 'the unpersisted file keeps its copy');
  t.same(table.blocks(other.ino)[0]!.locations, [wa], 'files outside are untouched');
  t.same(beat(table, wa, 1, 0, [], [])!.slice().sort((x, y) => x - y), ids(p1.ino), 'worker a is told to delete its copies');
  t.same(beat(table, wb, 1, 0, [], [])!.slice().sort((x, y) => x - y), [ids(p1.ino)[0]!, ids(p2.ino)[0]!].sort((x, y) => x - y), 'so is worker b');
  t.same(table.free(d.ino), { files: 2, bytes: 0, skippedNotPersisted: 1 }, 'freeing again drops nothing');
  // A report that raced past the free (sent before the worker heard of it) must not undo it.
  report(wb, [{ id: ids(p2.ino)[0]!, bytes: 20 }]);
  t.same(table.blocks(p2.ino)[0]!.locations, [], 'a copy reported while its deletion is queued is not a location');
  t.same(beat(table, wb, 1, 0, [], [])!.slice().sort((x, y) => x - y), [ids(p1.ino)[0]!, ids(p2.ino)[0]!].sort((x, y) => x - y), '… and is still deleted');
  // Once the worker reported the deletion, a new copy counts again.
  beat(table, wb, 1, 0, [], [ids(p2.ino)[0]!]);
  report(wb, [{ id: ids(p2.ino)[0]!, bytes: 20 }]);
  t.same(table.blocks(p2.ino)[0]!.locations, [wb], 'a copy cached again after the deletion is a location again');
});

t.test('TTLs: set, found when expired (oldest first), cleared or moved only if unchanged', async (t) => {
  const { table } = open(t);
  const a = table.createChild(ROOT_INO, 'a', fileNode());
  const b = table.createChild(ROOT_INO, 'b', dirNode());
  const c = table.createChild(ROOT_INO, 'c', fileNode());
  table.setTtl(a.ino, 2000, 'delete');
  table.setTtl(b.ino, 1000, 'free');
  table.setTtl(c.ino, 9000, 'free');
  t.same(table.requireNode(a.ino).ttl, { expiresAtMs: 2000, action: 'delete' });
  t.same(table.expiredTtls(500), [], 'nothing expired yet');
  t.same(table.expiredTtls(2500), [
    { ino: b.ino, expiresAtMs: 1000, action: 'free' },
    { ino: a.ino, expiresAtMs: 2000, action: 'delete' },
  ]);
  t.same(table.expiredTtls(2500, 1).length, 1, 'limited');
  table.setTtl(a.ino, 5000, 'delete');
  table.clearTtl(a.ino, 2000);
  t.same(table.requireNode(a.ino).ttl, { expiresAtMs: 5000, action: 'delete' }, 'a TTL set again meanwhile is not cleared');
  table.rescheduleTtl(b.ino, 1000, 7000);
  t.same(table.requireNode(b.ino).ttl, { expiresAtMs: 7000, action: 'free' }, 'moved');
  table.clearTtl(b.ino, 7000);
  t.equal(table.requireNode(b.ino).ttl, null, 'cleared');
  table.setTtl(c.ino, null, 'free');
  t.equal(table.requireNode(c.ino).ttl, null, 'null clears');
  t.same(table.expiredTtls(1e15).map((e) => e.ino), [a.ino]);
  await throwsCode(t, () => table.setTtl(9999, 1, 'free'), 'NOT_FOUND', 'an unknown inode');
});

t.test('blocks of a write in flight are not orphans: reported before the commit, kept; an abandoned write expires', async (t) => {
  const { table } = open(t);
  const w1 = register(table, 'uuid-w1', 'w1:1', 1e9, 0, []);
  const f = table.createChild(ROOT_INO, 'f', fileNode());

  const b = table.beginWrite(f.ino);
  const ids = [blockIdOf(b.containerId, 0), blockIdOf(b.containerId, 1)];
  // The worker's heartbeat reports the pages it has so far, before the client commits.
  t.same(beat(table, w1, 1e9, 0, [ids[0]!], []), [], 'a block of an open write is not queued for deletion');
  t.same(beat(table, w1, 1e9, 0, [ids[1]!], []), [], 'nor is the next one');
  const n = table.commitWrite({ ino: f.ino, containerId: b.containerId, size: 2 * BS, blocks: ids.map((id) => ({ id, length: BS })), workerId: w1, ufsFingerprint: null });
  t.equal(n.size, 2 * BS);
  t.same(table.blocks(f.ino).map((x) => (x.cached ?? []).map((l) => [l.workerId, l.tier])), [[[w1, 'MEM']], [[w1, 'MEM']]], 'committed blocks are located on the writer, with the tier it reported');
  t.same(beat(table, w1, 1e9, 0, [], []), [], 'and nothing is deleted afterwards');
  await rejectsCode(t, async () => table.commitWrite({ ino: f.ino, containerId: b.containerId, size: 2 * BS, blocks: ids.map((id) => ({ id, length: BS })), workerId: w1, ufsFingerprint: null }), 'TIMEOUT', 'a write commits once');

  // A client that went away mid-write: its copies become orphans once the write expires.
  const lost = table.beginWrite(f.ino);
  const lostId = blockIdOf(lost.containerId, 0);
  t.same(beat(table, w1, 1e9, 0, [lostId], []), []);
  table.heartbeat({ workerId: w1, capacityBytes: 1e9, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], openWrites: [lost.containerId], pinVersion: table.pinVersion() });
  t.equal(table.expireOpenWrites(Date.now() - 60_000), 0, 'a write renewed by its worker does not expire');
  t.equal(table.expireOpenWrites(Date.now() + 1), 1, 'one silent past the timeout does');
  t.same(beat(table, w1, 1e9, 0, [], []), [lostId], 'and its copy is deleted on the worker');
  await rejectsCode(t, async () => table.commitWrite({ ino: f.ino, containerId: lost.containerId, size: BS, blocks: [{ id: lostId, length: BS }], workerId: w1, ufsFingerprint: null }), 'TIMEOUT', 'a late commit of an expired write is refused');
  t.equal(table.getNode(f.ino)!.size, 2 * BS, 'the file keeps its committed content');
});
