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
  fix.prepare(`UPDATE meta SET value = '2' WHERE key = 'schema_version'`).run();
  fix.close();
  o.table = new InodeTable(o.file, { blockSize: BS });
  t.equal(o.table.nodeCount(), 1, 'opens again once the version matches');
});
