/**
 * The synchronous SQLite core (InodeTable) on a real file: what is particular to
 * SQLite (the schema, its migrations, rows on disk). The namespace, blocks, workers
 * and the rest are checked through the Metastore interface by the conformance
 * suite (metastore-conformance.ts, run for SQLite by metastore-sqlite.test.ts).
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { InodeTable, ROOT_INO } from '../../src/master/inode-table';
import { blockIdOf } from '../../src/common/protocol';
import type { ErrorCode } from '../../src/common/errors';
import { rejectsCode } from '../ufs/conformance';

const BS = 4096;

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

t.test('a lost worker\'s location rows are deleted, not just hidden', async (t) => {
  const { table, file } = open(t);
  const f = table.createChild(ROOT_INO, 'f', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: true, size: 2 * BS });
  const ids = table.blocks(f.ino).map((b) => b.id);
  register(table, 'uuid-1', 'http://w:1', 1000, 10, ids);
  table.expireWorkers(Date.now() + 1);
  const db = new Database(file, { readonly: true });
  try {
    t.equal((db.prepare(`SELECT COUNT(*) AS n FROM block_location`).get() as { n: number }).n, 0);
  } finally {
    db.close();
  }
});

t.test('an unsupported schema version is refused with CONFIG', async (t) => {
  const o = open(t);
  o.table.close();
  const db = new Database(o.file);
  db.prepare(`UPDATE meta SET value = '99' WHERE key = 'schema_version'`).run();
  db.close();
  await throwsCode(t, () => new InodeTable(o.file, { blockSize: BS }), 'CONFIG', 'opening a newer schema');
  const fix = new Database(o.file);
  fix.prepare(`UPDATE meta SET value = '6' WHERE key = 'schema_version'`).run();
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
  t.equal((check.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string }).value, '6', 'the version row says 6');
  t.ok(columns('node').includes('in_store'), 'nodes say whether an object of theirs may be in the store (v6)');
  t.ok((check.prepare(`PRAGMA index_list(node)`).all() as { name: string }[]).some((i) => i.name === 'node_unpersisted_container'), 'unpersisted files are indexed by container (v5)');
  t.ok((check.prepare(`PRAGMA index_list(persist_queue)`).all() as { name: string }[]).some((i) => i.name === 'persist_queue_due'), 'the persist queue is indexed by due time (v4)');
  t.match(columns('open_write'), ['container', 'ino', 'renewed_at'], 'writes in flight are tracked (v3)');
  t.match(columns('block_location'), ['block_id', 'worker_id', 'tier', 'bytes'], 'block locations have tier and bytes');
  t.ok(columns('worker').includes('tiers') && columns('worker').includes('page_size'), 'workers have tiers and a page size');
  t.notOk(columns('worker').includes('block_dir'), 'block_dir is gone');
  t.ok(['pinned', 'ttl_expires_at', 'ttl_action'].every((c) => columns('node').includes(c)), 'nodes have pin and TTL columns');
  check.close();

  t.equal(table.nodeCount(), 3, 'every inode kept');
  t.equal(table.pathOf(3), '/d/f');
  const f = table.requireNode(3);
  t.match(f, { size: 2 * BS + 10, mode: 0o640, persistState: 'persisted', ufsFingerprint: 'fp-v1', container: 7, pinned: false, ttl: null, inStore: true });
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

t.test('a file persisted by a master from before in_store counts as in the store, and keeps counting once rewritten', async (t) => {
  const o = open(t);
  const f = o.table.createChild(ROOT_INO, 'f', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false });
  t.equal(f.inStore, false);
  const db = new Database(o.file);
  db.prepare(`UPDATE node SET persisted = 1, ufs_fingerprint = 'e1' WHERE ino = ?`).run(f.ino); // what such a master's commit writes
  db.close();
  t.equal(o.table.requireNode(f.ino).inStore, true, 'persisted: in the store, whatever the column says');
  const { containerId } = o.table.beginWrite(f.ino);
  o.table.commitWrite({ ino: f.ino, containerId, size: 0, blocks: [], workerId: 1, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
  t.same([o.table.requireNode(f.ino).persistState, o.table.requireNode(f.ino).inStore], ['not_persisted', true], 'a new unpersisted version: its older one is still there');
});
