/**
 * The master's synchronous metadata core: the namespace, blocks, block locations
 * and the worker registry in one SQLite file (better-sqlite3, WAL). Every public
 * mutating method is one transaction, so a SIGKILL at any point leaves the
 * namespace as it was before or after the operation, never in between.
 *
 * It knows nothing about under-stores or HTTP; `Namespace` drives it.
 */

import Database from 'better-sqlite3';
import { ChangeFeed } from './change-feed';
import {
  ROOT_INO,
  type AttributeChanges,
  type BlockRecord,
  type DuePersist,
  type ExpiredTtl,
  type HeartbeatAnswer,
  type LinkRef,
  type MountRecord,
  type NamedNodeRecord,
  type ListedNodeRecord,
  type NewNode,
  type NodeRecord,
  type QueuedPersist,
  type SyncGuard,
  NODE_TYPE_CODE,
  NODE_COLUMNS,
  nodeRecordFromValues,
  type CommitEmptyRequest,
  type CreatedEmpty,
  type CreatedNode,
} from './metastore';
import { StrataError } from '../common/errors';
import {
  BLOCKS_PER_CONTAINER,
  BlockInfo,
  BlockReport,
  DirEntry,
  DuResponse,
  FreeResponse,
  HeartbeatRequest,
  RegisterWorkerRequest,
  TierInfo,
  TtlAction,
  FileAttributes,
  FileType,
  PersistState,
  Timespec,
  WorkerInfo,
  WriteCommitRequest,
  WriteType,
  blockIdOf,
  laterTimespec,
  timespecNow,
} from '../common/protocol';

const SCHEMA_VERSION = 6;

/**
 * The schema as version 1 created it. New databases start from it and run every
 * migration below, so a fresh file and an upgraded one are the same.
 */
const SCHEMA_V1 = `
  CREATE TABLE node (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    type INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    nlink INTEGER NOT NULL DEFAULT 1,
    atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
    mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    target TEXT,
    rdev INTEGER NOT NULL DEFAULT 0,
    block_size INTEGER NOT NULL,
    persisted INTEGER NOT NULL,
    ufs_fingerprint TEXT,
    synced_at INTEGER NOT NULL DEFAULT 0,
    container INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE edge (
    parent INTEGER NOT NULL REFERENCES node(ino),
    name TEXT NOT NULL,
    ino INTEGER NOT NULL REFERENCES node(ino),
    -- The one link of a hard-linked file whose path is where its bytes live in the store.
    primary_link INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (parent, name)
  ) WITHOUT ROWID;
  CREATE INDEX edge_by_ino ON edge(ino);
  CREATE TABLE block (
    block_id INTEGER PRIMARY KEY,
    ino INTEGER NOT NULL REFERENCES node(ino) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    length INTEGER NOT NULL,
    UNIQUE (ino, idx)
  );
  CREATE TABLE worker (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    block_dir TEXT NOT NULL DEFAULT '',
    capacity INTEGER NOT NULL,
    used INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    live INTEGER NOT NULL
  );
  CREATE TABLE block_location (
    block_id INTEGER NOT NULL,
    worker_id INTEGER NOT NULL REFERENCES worker(id) ON DELETE CASCADE,
    PRIMARY KEY (block_id, worker_id)
  ) WITHOUT ROWID;
  CREATE TABLE pending_delete (
    worker_id INTEGER NOT NULL REFERENCES worker(id) ON DELETE CASCADE,
    block_id INTEGER NOT NULL,
    PRIMARY KEY (worker_id, block_id)
  ) WITHOUT ROWID;
  CREATE TABLE mount (path TEXT PRIMARY KEY, uri TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}');
  CREATE TABLE persist_queue (
    ino INTEGER PRIMARY KEY REFERENCES node(ino) ON DELETE CASCADE,
    enqueued_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT
  );
  CREATE TABLE xattr (ino INTEGER NOT NULL REFERENCES node(ino) ON DELETE CASCADE, name TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ino, name));
`;

/** Migration to version N: SQL run in one transaction with the version bump. */
const MIGRATIONS: Record<number, string> = {
  /**
   * 2: tiered workers and cache control. Block locations say which tier holds the
   * block and how many of its bytes (pages) are cached; workers report tiers and a
   * page size instead of one block directory; files can be pinned and carry a TTL.
   * Locations from version 1 keep NULL tier and bytes: v1 workers cached whole blocks.
   */
  2: `
    ALTER TABLE block_location ADD COLUMN tier TEXT;
    ALTER TABLE block_location ADD COLUMN bytes INTEGER;
    ALTER TABLE worker ADD COLUMN tiers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE worker ADD COLUMN page_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE worker DROP COLUMN block_dir;
    ALTER TABLE node ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE node ADD COLUMN ttl_expires_at INTEGER;
    ALTER TABLE node ADD COLUMN ttl_action TEXT;
    CREATE INDEX node_ttl ON node(ttl_expires_at) WHERE ttl_expires_at IS NOT NULL;
    CREATE INDEX node_pinned ON node(ino) WHERE pinned = 1;
    INSERT OR IGNORE INTO meta (key, value) VALUES ('pin_version', '0');
  `,
  /**
   * 3: writes in flight. A worker reports the pages of a file being written
   * before the client commits them; those blocks belong to no file yet and must
   * not be taken for orphans and deleted under the writer. `open_write` holds the
   * containers begun and not yet committed (renewed by the writing worker's
   * heartbeats); `unclaimed_block` the copies reported for them meanwhile.
   */
  3: `
    CREATE TABLE open_write (container INTEGER PRIMARY KEY, ino INTEGER NOT NULL, renewed_at INTEGER NOT NULL);
    CREATE TABLE unclaimed_block (
      worker_id INTEGER NOT NULL REFERENCES worker(id) ON DELETE CASCADE,
      block_id INTEGER NOT NULL,
      tier TEXT,
      bytes INTEGER,
      PRIMARY KEY (worker_id, block_id)
    ) WITHOUT ROWID;
  `,
  /**
   * 4: the persister asks for the due entries after every upload; without an index
   * each ask sorted the whole queue (a backlog of thousands made it quadratic).
   */
  4: `CREATE INDEX persist_queue_due ON persist_queue (next_at);`,
  /**
   * 5: workers ask after every heartbeat which of their pinned blocks' containers are
   * still unpersisted files; without an index each ask scanned every node.
   */
  5: `CREATE INDEX node_unpersisted_container ON node (container) WHERE persisted = 0;`,
  /**
   * 6: whether an object of a file may be at its path in the store (NodeRecord.inStore). Nodes
   * from before it may have one: 1.
   */
  6: `ALTER TABLE node ADD COLUMN in_store INTEGER NOT NULL DEFAULT 1;`,
};

const TYPE_CODE = NODE_TYPE_CODE;

// The record types and helpers live in metastore.ts (every engine shares them); re-exported for the SQLite-specific tests and tools.
export { ROOT_INO, toAttributes, toDirEntry } from './metastore';
export type { NewNode, NodeRecord } from './metastore';

export interface InodeTableOptions {
  /** Block size of new files in bytes. */
  blockSize: number;
  /** Wait before the first persist attempt of an ASYNC_THROUGH file (ms). Default 0. */
  persistInitialWaitMs?: number;
  /**
   * Whether each commit syncs the WAL before it returns (synchronous = FULL). Default true.
   * False (synchronous = NORMAL) for an owner that syncs the WAL itself before it answers
   * (SqliteMetastore's group commit); a process crash loses nothing either way.
   */
  syncEachCommit?: boolean;
}

export class InodeTable {
  readonly #db: Database.Database;
  readonly #blockSize: number;
  readonly #persistWaitMs: number;
  readonly #stmt: ReturnType<InodeTable['prepare']>;
  /** Statements prepared on first use, kept: SQLite compiles a statement's text anew on every prepare. */
  readonly #prepared = new Map<string, Database.Statement>();
  /** Which inodes changed, for client metadata caches. */
  readonly changes: ChangeFeed;

  constructor(file: string, opts: InodeTableOptions) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    // FULL: a transaction that returned is on disk, so an acknowledged operation survives power loss too.
    // NORMAL: on disk once the owner has synced the WAL (WalSync), which it does before it answers.
    this.#db.pragma(opts.syncEachCommit === false ? 'synchronous = NORMAL' : 'synchronous = FULL');
    this.#db.pragma('foreign_keys = ON');
    this.#blockSize = opts.blockSize;
    this.#persistWaitMs = opts.persistInitialWaitMs ?? 0;
    this.#migrate();
    this.#stmt = this.prepare();
    this.changes = new ChangeFeed(this.#db);
    // A new number at every start: a worker that kept a set from another run (or another database) asks again.
    this.#bumpPinVersion();
  }

  #migrate(): void {
    const db = this.#db;
    db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    const row = db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string } | undefined;
    let version = row ? Number(row.value) : 0;
    if (row && !(Number.isInteger(version) && version >= 1 && version <= SCHEMA_VERSION)) {
      throw new StrataError('CONFIG', `metadata schema version ${row.value} is not supported by this Strata (expects ${SCHEMA_VERSION} or older)`);
    }
    if (!row) {
      // A new database starts as version 1 and runs every migration, so new and upgraded files end up alike.
      db.transaction(() => {
        db.exec(SCHEMA_V1);
        const now = timespecNow();
        db.prepare(
          `INSERT INTO node (ino, type, mode, uid, gid, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, block_size, persisted)
           VALUES (?, 2, ?, 0, 0, 2, ?, ?, ?, ?, ?, ?, ?, 1)`,
        ).run(ROOT_INO, 0o755, now.sec, now.nsec, now.sec, now.nsec, now.sec, now.nsec, this.#blockSize);
        db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('next_container', '1')`).run();
      })();
      version = 1;
    }
    for (; version < SCHEMA_VERSION; version++) {
      const to = version + 1;
      // Each step is one transaction: a crash leaves the file at the old version or the new one.
      db.transaction(() => {
        db.exec(MIGRATIONS[to]!);
        db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema_version'`).run(String(to));
      })();
    }
  }

  /** A statement outside the fixed set (few and bounded: the texts are literals, setattr's column lists at most 2^6). */
  #sql(text: string): Database.Statement {
    let st = this.#prepared.get(text);
    if (!st) this.#prepared.set(text, (st = this.#db.prepare(text)));
    return st;
  }

  private prepare() {
    const db = this.#db;
    const N = NODE_COLUMNS.map((c) => `n.${c}`).join(', ');
    return {
      totalChanges: db.prepare(`SELECT total_changes()`).pluck(),
      node: db.prepare(`SELECT ${N} FROM node n WHERE ino = ?`).raw(true),
      edge: db.prepare(`SELECT ino FROM edge WHERE parent = ? AND name = ?`),
      children: db.prepare(`SELECT ${N}, e.name FROM edge e JOIN node n ON n.ino = e.ino WHERE e.parent = ? ORDER BY e.name`).raw(true),
      childrenAfter: db.prepare(`SELECT ${N}, e.name, EXISTS (SELECT 1 FROM xattr x WHERE x.ino = n.ino) FROM edge e JOIN node n ON n.ino = e.ino WHERE e.parent = ? AND e.name > ? ORDER BY e.name LIMIT ?`).raw(true),
      childCount: db.prepare(`SELECT COUNT(*) AS n FROM edge WHERE parent = ?`),
      parentOf: db.prepare(`SELECT parent, name FROM edge WHERE ino = ? ORDER BY primary_link DESC LIMIT 1`),
      edgeFlag: db.prepare(`SELECT primary_link FROM edge WHERE parent = ? AND name = ?`),
      otherLink: db.prepare(`SELECT parent, name FROM edge WHERE ino = ? AND NOT (parent = ? AND name = ?) ORDER BY parent, name LIMIT 1`),
      setPrimary: db.prepare(`UPDATE edge SET primary_link = 1 WHERE parent = ? AND name = ?`),
      insertLink: db.prepare(`INSERT INTO edge (parent, name, ino, primary_link) VALUES (?, ?, ?, ?)`),
      insertNode: db.prepare(
        `INSERT INTO node (type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, target, rdev, block_size, persisted, ufs_fingerprint, synced_at, pinned, in_store)
         VALUES (@type, @mode, @uid, @gid, @size, @nlink, @as, @ans, @ms, @mns, @cs, @cns, @target, @rdev, @blockSize, @persisted, @fp, @syncedAt, @pinned, @inStore)`,
      ),
      insertEdge: db.prepare(`INSERT INTO edge (parent, name, ino) VALUES (?, ?, ?)`),
      deleteEdge: db.prepare(`DELETE FROM edge WHERE parent = ? AND name = ?`),
      setEdge: db.prepare(`UPDATE edge SET ino = ?, primary_link = ? WHERE parent = ? AND name = ?`),
      deleteNode: db.prepare(`DELETE FROM node WHERE ino = ?`),
      touchDir: db.prepare(`UPDATE node SET mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?`),
      touchCtime: db.prepare(`UPDATE node SET ctime_s = ?, ctime_ns = ? WHERE ino = ?`),
      nlinkAdd: db.prepare(`UPDATE node SET nlink = nlink + ? WHERE ino = ?`),
      blocksOf: db.prepare(`SELECT block_id, idx, length FROM block WHERE ino = ? ORDER BY idx`),
      block: db.prepare(`SELECT block_id, ino, idx, length FROM block WHERE block_id = ?`),
      insertBlock: db.prepare(`INSERT INTO block (block_id, ino, idx, length) VALUES (?, ?, ?, ?)`),
      deleteBlocksOf: db.prepare(`DELETE FROM block WHERE ino = ?`),
      locationsOfFile: db.prepare(
        `SELECT l.block_id AS block_id, l.worker_id AS worker_id, l.tier AS tier, l.bytes AS bytes FROM block b JOIN block_location l ON l.block_id = b.block_id
         JOIN worker w ON w.id = l.worker_id WHERE b.ino = ? AND w.live = 1 ORDER BY l.worker_id`,
      ),
      locationsByFile: db.prepare(
        `SELECT l.worker_id AS worker_id, l.block_id AS block_id, MIN(COALESCE(l.bytes, b.length), b.length) AS bytes
         FROM block b JOIN block_location l ON l.block_id = b.block_id WHERE b.ino = ?`,
      ),
      addPendingDelete: db.prepare(`INSERT OR IGNORE INTO pending_delete (worker_id, block_id) VALUES (?, ?)`),
      // A location written at commit (tier NULL until the worker's next report) or reported by the worker.
      addLocation: db.prepare(
        `INSERT INTO block_location (block_id, worker_id, tier, bytes) SELECT @block, @worker, @tier, @bytes WHERE EXISTS (SELECT 1 FROM block WHERE block_id = @block)
         ON CONFLICT (block_id, worker_id) DO UPDATE SET tier = COALESCE(excluded.tier, tier), bytes = excluded.bytes`,
      ),
      removeLocation: db.prepare(`DELETE FROM block_location WHERE block_id = ? AND worker_id = ?`),
      blockExists: db.prepare(`SELECT 1 FROM block WHERE block_id = ?`),
      metaGet: db.prepare(`SELECT value FROM meta WHERE key = ?`),
      metaSet: db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`),
      workerByUuid: db.prepare(`SELECT * FROM worker WHERE uuid = ?`),
      workerById: db.prepare(`SELECT * FROM worker WHERE id = ?`),
      insertWorker: db.prepare(
        `INSERT INTO worker (uuid, address, host, tiers, page_size, capacity, used, last_heartbeat, live) VALUES (@uuid, @address, @host, @tiers, @pageSize, @capacity, @used, @now, 1)`,
      ),
      updateWorker: db.prepare(`UPDATE worker SET capacity = @capacity, used = @used, tiers = @tiers, last_heartbeat = @now, live = 1 WHERE id = @id`),
      updateWorkerAddress: db.prepare(`UPDATE worker SET address = ?, host = ?, page_size = ? WHERE id = ?`),
      markOtherWorkersAtAddressLost: db.prepare(`UPDATE worker SET live = 0 WHERE address = ? AND id != ?`),
      workers: db.prepare(`SELECT * FROM worker ORDER BY id`),
      staleWorkers: db.prepare(`SELECT id FROM worker WHERE live = 1 AND last_heartbeat < ?`),
      markLost: db.prepare(`UPDATE worker SET live = 0 WHERE id = ?`),
      deleteLocationsOfWorker: db.prepare(`DELETE FROM block_location WHERE worker_id = ?`),
      pendingDeletes: db.prepare(`SELECT block_id FROM pending_delete WHERE worker_id = ? LIMIT 10000`),
      clearPendingDelete: db.prepare(`DELETE FROM pending_delete WHERE worker_id = ? AND block_id = ?`),
      mounts: db.prepare(`SELECT path, uri, options FROM mount ORDER BY path`),
      insertMount: db.prepare(`INSERT INTO mount (path, uri, options) VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE SET uri = excluded.uri, options = excluded.options`),
      deleteMount: db.prepare(`DELETE FROM mount WHERE path = ?`),
      claimMount: db.prepare(`INSERT INTO mount (path, uri, options) VALUES (?, ?, ?) ON CONFLICT(path) DO NOTHING`),
      nodeCount: db.prepare(`SELECT COUNT(*) AS n FROM node`),
      pinnedBlocks: db.prepare(`SELECT b.block_id AS block_id FROM node n JOIN block b ON b.ino = n.ino WHERE n.pinned = 1 ORDER BY b.block_id`),
      setTtl: db.prepare(`UPDATE node SET ttl_expires_at = ?, ttl_action = ? WHERE ino = ?`),
      expiredTtls: db.prepare(`SELECT ino, ttl_expires_at, ttl_action FROM node WHERE ttl_expires_at <= ? ORDER BY ttl_expires_at LIMIT ?`),
      clearTtl: db.prepare(`UPDATE node SET ttl_expires_at = NULL, ttl_action = NULL WHERE ino = ? AND ttl_expires_at = ?`),
      rescheduleTtl: db.prepare(`UPDATE node SET ttl_expires_at = ? WHERE ino = ? AND ttl_expires_at = ?`),
      // UNION, not UNION ALL: a hard-linked file under two names counts once.
      subtreeFiles: db.prepare(
        `WITH RECURSIVE sub(ino) AS (SELECT ? UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino)
         SELECT n.ino AS ino, n.persisted AS persisted, n.pinned AS pinned FROM node n JOIN sub ON sub.ino = n.ino WHERE n.type = 1`,
      ),
      setPinnedSubtree: db.prepare(
        `WITH RECURSIVE sub(ino) AS (SELECT ? UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino)
         UPDATE node SET pinned = ? WHERE ino IN (SELECT ino FROM sub) AND pinned != ?`,
      ),
      duCounts: db.prepare(
        `WITH RECURSIVE sub(ino) AS (SELECT ? UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino)
         SELECT COALESCE(SUM(n.type = 1), 0) AS files, COALESCE(SUM(n.type = 2), 0) AS dirs, COALESCE(SUM(CASE WHEN n.type = 1 THEN n.size ELSE 0 END), 0) AS size
         FROM node n JOIN sub ON sub.ino = n.ino`,
      ),
      // Per block, the best copy on a live worker; a location without a byte count (schema v1) holds the whole block.
      duCached: db.prepare(
        `WITH RECURSIVE sub(ino) AS (SELECT ? UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino),
         per_block AS (
           SELECT MIN(MAX(COALESCE(l.bytes, b.length)), b.length) AS bytes
           FROM sub JOIN block b ON b.ino = sub.ino JOIN block_location l ON l.block_id = b.block_id JOIN worker w ON w.id = l.worker_id
           WHERE w.live = 1 GROUP BY b.block_id
         )
         SELECT COALESCE(SUM(bytes), 0) AS cached FROM per_block`,
      ),
      cachedOf: db.prepare(
        `WITH per_block AS (
           SELECT MIN(MAX(COALESCE(l.bytes, b.length)), b.length) AS bytes
           FROM block b JOIN block_location l ON l.block_id = b.block_id JOIN worker w ON w.id = l.worker_id
           WHERE b.ino IN (SELECT DISTINCT value FROM json_each(?)) AND w.live = 1 GROUP BY b.block_id
         )
         SELECT COALESCE(SUM(bytes), 0) AS cached FROM per_block`,
      ),
    };
  }

  close(): void {
    this.changes.stop();
    this.#db.close();
  }

  /** The write-ahead log's file. */
  get walFile(): string {
    return `${this.#db.name}-wal`;
  }

  /** Rows changed through this connection since it opened; grows with every commit. */
  totalChanges(): number {
    return this.#stmt.totalChanges.get() as number;
  }

  get blockSize(): number {
    return this.#blockSize;
  }

  // ---- reads ---------------------------------------------------------------

  getNode(ino: number): NodeRecord | undefined {
    const row = this.#stmt.node.get(ino) as unknown[] | undefined;
    return row && nodeRecordFromValues(row);
  }

  requireNode(ino: number): NodeRecord {
    const n = this.getNode(ino);
    if (!n) throw new StrataError('NOT_FOUND', `no inode ${ino}`);
    return n;
  }

  lookup(parent: number, name: string): NodeRecord | undefined {
    const e = this.#stmt.edge.get(parent, name) as { ino: number } | undefined;
    return e && this.getNode(e.ino);
  }

  children(parent: number): NamedNodeRecord[] {
    return (this.#stmt.children.all(parent) as unknown[][]).map((r) => ({ ...nodeRecordFromValues(r), name: r[NODE_COLUMNS.length] as string }));
  }

  /** Up to `limit` children named after `after` (every name is non-empty, so '' starts at the first). */
  childrenPage(parent: number, after: string | null, limit: number): ListedNodeRecord[] {
    return (this.#stmt.childrenAfter.all(parent, after ?? '', limit) as unknown[][]).map((r) => ({ ...nodeRecordFromValues(r), name: r[NODE_COLUMNS.length] as string, xattrs: r[NODE_COLUMNS.length + 1] === 1 }));
  }

  /** The path of an inode from the root, through its first parent edge. */
  pathOf(ino: number): string {
    const parts: string[] = [];
    let cur = ino;
    for (let depth = 0; cur !== ROOT_INO; depth++) {
      if (depth > 4096) throw new StrataError('INTERNAL', `inode ${ino} has no path to the root`);
      const e = this.#stmt.parentOf.get(cur) as { parent: number; name: string } | undefined;
      if (!e) throw new StrataError('NOT_FOUND', `inode ${ino} is not linked into the namespace`);
      parts.push(e.name);
      cur = e.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  /** True when `ino` is `ancestor` or lies below it. */
  isDescendant(ino: number, ancestor: number): boolean {
    let cur = ino;
    for (let depth = 0; depth < 4096; depth++) {
      if (cur === ancestor) return true;
      if (cur === ROOT_INO) return false;
      const e = this.#stmt.parentOf.get(cur) as { parent: number } | undefined;
      if (!e) return false;
      cur = e.parent;
    }
    return false;
  }

  /** A file's blocks with their cached copies on live workers. */
  blocks(ino: number): BlockInfo[] {
    const node = this.requireNode(ino);
    const locs = new Map<number, { block_id: number; worker_id: number; tier: string | null; bytes: number | null }[]>();
    for (const l of this.#stmt.locationsOfFile.all(ino) as { block_id: number; worker_id: number; tier: string | null; bytes: number | null }[]) {
      const arr = locs.get(l.block_id) ?? [];
      arr.push(l);
      locs.set(l.block_id, arr);
    }
    return (this.#stmt.blocksOf.all(ino) as { block_id: number; idx: number; length: number }[]).map((b) => {
      const here = locs.get(b.block_id) ?? [];
      return {
        id: b.block_id,
        index: b.idx,
        offset: b.idx * node.blockSize,
        length: b.length,
        locations: here.map((l) => l.worker_id),
        // No tier yet: written at commit, before the worker's report; no byte count: a v1 location of a whole block.
        cached: here.map((l) => ({ workerId: l.worker_id, tier: l.tier ?? '', bytes: Math.min(l.bytes ?? b.length, b.length) })),
      };
    });
  }

  block(blockId: number): BlockRecord | undefined {
    const b = this.#stmt.block.get(blockId) as { block_id: number; ino: number; idx: number; length: number } | undefined;
    return b && { blockId: b.block_id, ino: b.ino, index: b.idx, length: b.length };
  }

  nodeCount(): number {
    return (this.#stmt.nodeCount.get() as { n: number }).n;
  }

  // ---- namespace mutations (each one transaction) --------------------------

  /** Links a new inode under `parent`; ALREADY_EXISTS if the name is taken. */
  createChild(parent: number, name: string, node: NewNode, empty?: CreatedEmpty, begin?: boolean): CreatedNode {
    return this.#db.transaction((): CreatedNode => {
      const p = this.requireNode(parent);
      if (p.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `inode ${parent} is not a directory`);
      if (this.#stmt.edge.get(parent, name)) throw new StrataError('ALREADY_EXISTS', `'${name}' already exists`);
      const ino = this.#insertNode(node, p.pinned);
      this.#stmt.insertEdge.run(parent, name, ino);
      if (node.type === 'directory') this.#stmt.nlinkAdd.run(1, parent);
      const now = timespecNow();
      this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, parent);
      if (node.type === 'file' && node.persisted && (node.size ?? 0) > 0) this.#allocateBlocks(ino, node.size!);
      const made = empty && node.type === 'file' ? this.#commitEmpty({ ino, ufsFingerprint: null, ...empty }, true) : this.requireNode(ino);
      return begin && node.type === 'file' ? { ...made, begun: this.#beginWrite(made) } : made;
    })();
  }

  /**
   * Links nodes discovered in the under-store, skipping names that meanwhile
   * exist; used by lazy loading, so it never touches parent times.
   */
  loadChildren(parent: number, nodes: { name: string; node: NewNode }[]): void {
    this.#db.transaction(() => {
      const p = this.getNode(parent);
      if (!p || p.type !== 'directory') return;
      for (const { name, node } of nodes) {
        if (this.#stmt.edge.get(parent, name)) continue;
        const ino = this.#insertNode(node, p.pinned);
        this.#stmt.insertEdge.run(parent, name, ino);
        if (node.type === 'directory') this.#stmt.nlinkAdd.run(1, parent);
        if (node.type === 'file' && (node.size ?? 0) > 0) this.#allocateBlocks(ino, node.size!);
      }
    })();
  }

  /** Inserts an inode; `pinned` is inherited from the parent directory. */
  #insertNode(node: NewNode, pinned: boolean): number {
    const t = node.mtime ?? timespecNow();
    const now = timespecNow();
    const r = this.#stmt.insertNode.run({
      type: TYPE_CODE[node.type],
      mode: node.mode & 0o7777,
      uid: node.uid,
      gid: node.gid,
      size: node.size ?? 0,
      nlink: node.type === 'directory' ? 2 : 1,
      as: t.sec,
      ans: t.nsec,
      ms: t.sec,
      mns: t.nsec,
      cs: node.mtime ? t.sec : now.sec,
      cns: node.mtime ? t.nsec : now.nsec,
      target: node.target ?? null,
      rdev: node.rdev ?? 0,
      blockSize: this.#blockSize,
      persisted: node.persisted ? 1 : 0,
      inStore: (node.inStore ?? node.persisted) ? 1 : 0,
      fp: node.ufsFingerprint ?? null,
      syncedAt: node.syncedAt ?? 0,
      pinned: pinned ? 1 : 0,
    });
    return Number(r.lastInsertRowid);
  }

  #allocateContainer(): number {
    const row = this.#stmt.metaGet.get('next_container') as { value: string };
    const c = Number(row.value);
    this.#stmt.metaSet.run('next_container', String(c + 1));
    return c;
  }

  /** Gives a file of `size` bytes a fresh container of blocks with no locations. */
  #allocateBlocks(ino: number, size: number): void {
    const container = this.#allocateContainer();
    const bs = this.#blockSize;
    const n = Math.ceil(size / bs);
    for (let i = 0; i < n; i++) this.#stmt.insertBlock.run(blockIdOf(container, i), ino, i, Math.min(bs, size - i * bs));
    this.#sql(`UPDATE node SET container = ? WHERE ino = ?`).run(container, ino);
    if (n > 0 && this.getNode(ino)?.pinned) this.#bumpPinVersion();
  }

  /** Drops a file's blocks; every cached copy is queued for deletion on its worker. */
  #dropBlocks(ino: number): void {
    this.#dropCachedCopies(ino);
    if (this.#stmt.deleteBlocksOf.run(ino).changes > 0 && this.getNode(ino)?.pinned) this.#bumpPinVersion();
  }

  /** Forgets every cached copy of a file's blocks and queues them for deletion on their workers; returns the bytes. */
  #dropCachedCopies(ino: number): number {
    let bytes = 0;
    // Each copy by its key: `DELETE … WHERE block_id IN (SELECT …)` built a temporary table on every
    // call, which cost a create or an unlink more than the rest of its statements together.
    for (const l of this.#stmt.locationsByFile.all(ino) as { worker_id: number; block_id: number; bytes: number }[]) {
      this.#stmt.addPendingDelete.run(l.worker_id, l.block_id);
      this.#stmt.removeLocation.run(l.block_id, l.worker_id);
      bytes += l.bytes;
    }
    return bytes;
  }

  /**
   * Removes the entry `name` of `parent` (file or empty directory) and frees the
   * inode when unreferenced; with `ino`, only while the name still names it.
   */
  removeChild(parent: number, name: string, expect: 'file' | 'directory' | 'any', ino?: number): NodeRecord {
    return this.#db.transaction(() => {
      const node = this.lookup(parent, name);
      if (!node) throw new StrataError('NOT_FOUND', `'${name}' does not exist`);
      if (ino !== undefined && node.ino !== ino) throw new StrataError('NOT_FOUND', `'${name}' no longer names inode ${ino}`);
      if (expect === 'file' && node.type === 'directory') throw new StrataError('IS_DIRECTORY', `'${name}' is a directory`);
      if (expect === 'directory' && node.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `'${name}' is not a directory`);
      if (node.type === 'directory' && (this.#stmt.childCount.get(node.ino) as { n: number }).n > 0) {
        throw new StrataError('NOT_EMPTY', `directory '${name}' is not empty`);
      }
      this.#unlinkEdge(parent, name, node);
      const now = timespecNow();
      this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, parent);
      return node;
    })();
  }

  /** Whether `name` in `parent` is the link whose path holds the file's bytes in the store. */
  isPrimaryLink(parent: number, name: string): boolean {
    const r = this.#stmt.edgeFlag.get(parent, name) as { primary_link: number } | undefined;
    return !!r && r.primary_link === 1;
  }

  /** Another link of the inode than `name` in `parent` (the one that becomes primary if this one goes). */
  otherLink(ino: number, parent: number, name: string): LinkRef | undefined {
    return this.#stmt.otherLink.get(ino, parent, name) as LinkRef | undefined;
  }

  /** link(2): a new name for an existing non-directory inode. */
  link(ino: number, newParent: number, newName: string): NodeRecord {
    return this.#db.transaction(() => {
      const n = this.requireNode(ino);
      if (n.type === 'directory') throw new StrataError('NOT_PERMITTED', 'hard links to directories are not allowed');
      const p = this.requireNode(newParent);
      if (p.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `inode ${newParent} is not a directory`);
      if (this.#stmt.edge.get(newParent, newName)) throw new StrataError('ALREADY_EXISTS', `'${newName}' already exists`);
      this.#stmt.insertLink.run(newParent, newName, ino, 0);
      this.#stmt.nlinkAdd.run(1, ino);
      const now = timespecNow();
      this.#stmt.touchCtime.run(now.sec, now.nsec, ino);
      this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, newParent);
      return this.requireNode(ino);
    })();
  }

  #unlinkEdge(parent: number, name: string, node: NodeRecord): void {
    const wasPrimary = this.isPrimaryLink(parent, name);
    this.#stmt.deleteEdge.run(parent, name);
    if (wasPrimary && node.type !== 'directory') {
      const other = this.otherLink(node.ino, parent, name);
      if (other) this.#stmt.setPrimary.run(other.parent, other.name);
    }
    if (node.type === 'directory') {
      this.#stmt.nlinkAdd.run(-1, parent);
      this.#deleteTree(node.ino);
      return;
    }
    this.#stmt.nlinkAdd.run(-1, node.ino);
    const now = timespecNow();
    this.#stmt.touchCtime.run(now.sec, now.nsec, node.ino);
    const after = this.getNode(node.ino);
    if (after && after.nlink <= 0) {
      this.#dropBlocks(node.ino);
      this.#stmt.deleteNode.run(node.ino);
    }
  }

  /** Deletes a directory inode and everything below it (used when the under-store lost a tree). */
  #deleteTree(ino: number): void {
    for (const c of this.children(ino)) {
      if (c.type === 'directory') {
        this.#stmt.deleteEdge.run(ino, c.name);
        this.#deleteTree(c.ino);
      } else {
        this.#unlinkEdge(ino, c.name, c);
      }
    }
    this.#stmt.deleteNode.run(ino);
  }

  /** POSIX rename(2): replaces a compatible destination atomically; with `srcIno`, only while the source name still names it. */
  rename(srcParent: number, srcName: string, dstParent: number, dstName: string, srcIno?: number): NodeRecord {
    return this.#db.transaction(() => {
      const src = this.lookup(srcParent, srcName);
      if (!src) throw new StrataError('NOT_FOUND', `'${srcName}' does not exist`);
      if (srcIno !== undefined && src.ino !== srcIno) throw new StrataError('NOT_FOUND', `'${srcName}' no longer names inode ${srcIno}`);
      const dp = this.requireNode(dstParent);
      if (dp.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `destination parent is not a directory`);
      if (src.type === 'directory' && this.isDescendant(dstParent, src.ino)) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move a directory into itself`);
      }
      const dst = this.lookup(dstParent, dstName);
      if (dst && dst.ino === src.ino) return src;
      if (dst) {
        if (src.type === 'directory' && dst.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `'${dstName}' is not a directory`);
        if (src.type !== 'directory' && dst.type === 'directory') throw new StrataError('IS_DIRECTORY', `'${dstName}' is a directory`);
        if (dst.type === 'directory' && (this.#stmt.childCount.get(dst.ino) as { n: number }).n > 0) {
          throw new StrataError('NOT_EMPTY', `directory '${dstName}' is not empty`);
        }
        this.#unlinkEdge(dstParent, dstName, dst);
      }
      const primary = this.isPrimaryLink(srcParent, srcName) ? 1 : 0;
      this.#stmt.deleteEdge.run(srcParent, srcName);
      this.#stmt.insertLink.run(dstParent, dstName, src.ino, primary);
      if (src.type === 'directory' && srcParent !== dstParent) {
        this.#stmt.nlinkAdd.run(-1, srcParent);
        this.#stmt.nlinkAdd.run(1, dstParent);
      }
      const now = timespecNow();
      this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, srcParent);
      if (dstParent !== srcParent) this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, dstParent);
      this.#stmt.touchCtime.run(now.sec, now.nsec, src.ino);
      return this.requireNode(src.ino);
    })();
  }

  /** renameat2(RENAME_EXCHANGE): the two names swap their inodes (see Metastore.exchange). */
  exchange(aParent: number, aName: string, bParent: number, bName: string, expect?: { a: number; b: number }): void {
    this.#db.transaction(() => {
      const a = this.lookup(aParent, aName);
      const b = this.lookup(bParent, bName);
      if (!a) throw new StrataError('NOT_FOUND', `'${aName}' does not exist`);
      if (!b) throw new StrataError('NOT_FOUND', `'${bName}' does not exist`);
      if (expect && (a.ino !== expect.a || b.ino !== expect.b)) throw new StrataError('NOT_FOUND', `'${aName}' or '${bName}' no longer names the inode it named`);
      if (a.ino === b.ino) return;
      if ((a.type === 'directory' && this.isDescendant(bParent, a.ino)) || (b.type === 'directory' && this.isDescendant(aParent, b.ino))) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move a directory into itself`);
      }
      const aPrimary = this.isPrimaryLink(aParent, aName) ? 1 : 0;
      const bPrimary = this.isPrimaryLink(bParent, bName) ? 1 : 0;
      this.#stmt.setEdge.run(b.ino, bPrimary, aParent, aName);
      this.#stmt.setEdge.run(a.ino, aPrimary, bParent, bName);
      if (aParent !== bParent) {
        const dirsMoved = (a.type === 'directory' ? 1 : 0) - (b.type === 'directory' ? 1 : 0);
        if (dirsMoved !== 0) {
          this.#stmt.nlinkAdd.run(-dirsMoved, aParent);
          this.#stmt.nlinkAdd.run(dirsMoved, bParent);
        }
      }
      const now = timespecNow();
      this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, aParent);
      if (bParent !== aParent) this.#stmt.touchDir.run(now.sec, now.nsec, now.sec, now.nsec, bParent);
      this.#stmt.touchCtime.run(now.sec, now.nsec, a.ino);
      this.#stmt.touchCtime.run(now.sec, now.nsec, b.ino);
    })();
  }

  setAttributes(ino: number, attrs: AttributeChanges): NodeRecord {
    return this.#db.transaction(() => {
      this.requireNode(ino);
      const sets: string[] = [];
      const args: number[] = [];
      if (attrs.mode !== undefined) sets.push('mode = ?'), args.push(attrs.mode & 0o7777);
      if (attrs.uid !== undefined) sets.push('uid = ?'), args.push(attrs.uid);
      if (attrs.gid !== undefined) sets.push('gid = ?'), args.push(attrs.gid);
      if (attrs.atime) sets.push('atime_s = ?', 'atime_ns = ?'), args.push(attrs.atime.sec, attrs.atime.nsec);
      if (attrs.mtime) sets.push('mtime_s = ?', 'mtime_ns = ?'), args.push(attrs.mtime.sec, attrs.mtime.nsec);
      const now = timespecNow();
      sets.push('ctime_s = ?', 'ctime_ns = ?');
      args.push(now.sec, now.nsec);
      this.#sql(`UPDATE node SET ${sets.join(', ')} WHERE ino = ?`).run(...args, ino);
      return this.requireNode(ino);
    })();
  }

  /** Starts a new version of a file's content: a fresh container of block ids. */
  openWriteOf(container: number): number | undefined {
    return (this.#sql('SELECT ino FROM open_write WHERE container = ?').get(container) as { ino: number } | undefined)?.ino;
  }

  /** See Metastore.unpersistedContainers; one transaction, so a commit is never half seen. */
  unpersistedContainers(containers: number[]): number[] {
    const unpersisted = this.#sql('SELECT 1 FROM node WHERE container = ? AND persisted = 0 LIMIT 1');
    const open = this.#sql('SELECT 1 FROM open_write WHERE container = ?');
    return this.#db.transaction(() => [...new Set(containers)].filter((c) => unpersisted.get(c) !== undefined || open.get(c) !== undefined))();
  }

  beginWrite(ino: number): { containerId: number; blockSize: number } {
    return this.#db.transaction(() => this.#beginWrite(this.requireNode(ino)))();
  }

  #beginWrite(n: NodeRecord): { containerId: number; blockSize: number } {
    if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${n.ino} is not a regular file`);
    const containerId = this.#allocateContainer();
    this.#sql(`INSERT INTO open_write (container, ino, renewed_at) VALUES (?, ?, ?)`).run(containerId, n.ino, Date.now());
    return { containerId, blockSize: n.blockSize };
  }

  /**
   * Makes a file empty as one write: no worker took part (nothing to cache), the
   * under-store already has the empty object when `ufsFingerprint` is set, and
   * ASYNC_THROUGH queues its persist like any other write.
   */
  commitEmpty(req: CommitEmptyRequest): NodeRecord {
    return this.#db.transaction(() => this.#commitEmpty(req))();
  }

  /**
   * commitEmpty inside the caller's transaction. `fresh`: the inode was made in this
   * transaction, so it has no blocks, cached copies or queue entry to drop (a create
   * skips those statements: the DELETE of copies alone builds a temporary table).
   */
  #commitEmpty(req: CommitEmptyRequest, fresh = false): NodeRecord {
    const n = this.requireNode(req.ino);
    if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${req.ino} is not a regular file`);
    if (!fresh) this.#dropBlocks(req.ino);
    const container = this.#allocateContainer();
    const t = req.mtime ?? timespecNow();
    // The content changed when the client wrote it (its mtime), not at this commit; a later chmod's ctime stays.
    const now = req.mtime ? laterTimespec(n.ctime, t) : timespecNow();
    this.#sql(`UPDATE node SET size = 0, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?, container = ?, persisted = ?, in_store = MAX(in_store, persisted, ?), ufs_fingerprint = ?, synced_at = ? WHERE ino = ?`).run(t.sec, t.nsec, now.sec, now.nsec, container, req.ufsFingerprint ? 1 : 0, req.ufsFingerprint ? 1 : 0, req.ufsFingerprint, Date.now(), req.ino);
    if (!req.ufsFingerprint && req.writeType === 'ASYNC_THROUGH') this.#enqueuePersist(req.ino, Math.max(this.#persistWaitMs, req.persistDelayMs ?? 0));
    else if (!fresh) this.#sql(`DELETE FROM persist_queue WHERE ino = ?`).run(req.ino);
    return this.requireNode(req.ino);
  }

  /** Replaces a file's content with the blocks a worker wrote; the old blocks are queued for deletion. */
  commitWrite(req: WriteCommitRequest): NodeRecord {
    return this.#db.transaction(() => {
      const n = this.requireNode(req.ino);
      if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${req.ino} is not a regular file`);
      const bs = n.blockSize;
      const expected = Math.ceil(req.size / bs);
      if (req.blocks.length !== expected) throw new StrataError('BAD_REQUEST', `a ${req.size}-byte file has ${expected} blocks, got ${req.blocks.length}`);
      req.blocks.forEach((b, i) => {
        if (b.id !== blockIdOf(req.containerId, i)) throw new StrataError('BAD_REQUEST', `block ${i} has id ${b.id}, expected ${blockIdOf(req.containerId, i)}`);
        if (b.length !== Math.min(bs, req.size - i * bs)) throw new StrataError('BAD_REQUEST', `block ${i} has a wrong length ${b.length}`);
      });
      const open = this.#sql('SELECT ino FROM open_write WHERE container = ?').get(req.containerId) as { ino: number } | undefined;
      if (!open || open.ino !== req.ino) {
        // Committed already, begun for another file, or expired (its copies are being deleted): the bytes are not safe to point at.
        throw new StrataError('TIMEOUT', `write ${req.containerId} of inode ${req.ino} is not in progress (expired or committed already); write the file again`);
      }
      const worker = this.#stmt.workerById.get(req.workerId);
      this.#dropBlocks(req.ino);
      const reported = this.#closeWrite(req.containerId);
      for (const [i, b] of req.blocks.entries()) {
        this.#stmt.insertBlock.run(b.id, req.ino, i, b.length);
        const seen = reported.find((r) => r.block_id === b.id && r.worker_id === req.workerId);
        if (worker && req.cached !== false && !b.uncached) this.#stmt.addLocation.run({ block: b.id, worker: req.workerId, tier: seen?.tier ?? null, bytes: seen?.bytes ?? b.length });
      }
      // Copies of this write reported by any other worker are not where the client wrote: drop them.
      for (const r of reported) if (r.worker_id !== req.workerId || !req.blocks.some((b) => b.id === r.block_id)) this.#stmt.addPendingDelete.run(r.worker_id, r.block_id);
      // The pinned set changed: its workers must learn the new block ids.
      if (n.pinned && req.blocks.length > 0) this.#bumpPinVersion();
      const t = req.mtime ?? timespecNow();
      const now = req.mtime ? laterTimespec(n.ctime, t) : timespecNow();
      this.#sql(`UPDATE node SET size = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?, container = ?, persisted = ?, in_store = MAX(in_store, persisted, ?), ufs_fingerprint = ?, synced_at = ? WHERE ino = ?`).run(req.size, t.sec, t.nsec, now.sec, now.nsec, req.containerId, req.ufsFingerprint ? 1 : 0, req.ufsFingerprint ? 1 : 0, req.ufsFingerprint, Date.now(), req.ino);
      // The queue row commits with the file, so an acknowledged ASYNC_THROUGH write is never forgotten.
      if (!req.ufsFingerprint && req.writeType === 'ASYNC_THROUGH') this.#enqueuePersist(req.ino, this.#persistWaitMs);
      else this.#sql(`DELETE FROM persist_queue WHERE ino = ?`).run(req.ino);
      return this.requireNode(req.ino);
    })();
  }

  /**
   * Brings a file in line with its under-store object after an out-of-band change:
   * new size and mtime, fresh blocks, cached copies dropped. With `guard`, only
   * while the file is still what the sync saw before asking the store.
   */
  refreshFromUfs(ino: number, size: number, mtime: Timespec, fingerprint: string, guard?: Omit<SyncGuard, 'ino'>): boolean {
    return this.#db.transaction(() => {
      const n = this.getNode(ino);
      if (!n || n.type !== 'file') return false;
      if (guard && !matchesGuard(n, guard)) return false;
      this.#dropBlocks(ino);
      const now = timespecNow();
      this.#sql(`UPDATE node SET size = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ?, ufs_fingerprint = ?, synced_at = ?, persisted = 1, in_store = 1 WHERE ino = ?`)
        .run(size, mtime.sec, mtime.nsec, now.sec, now.nsec, fingerprint, Date.now(), ino);
      if (size > 0) this.#allocateBlocks(ino, size);
      return true;
    })();
  }

  // ---- extended attributes ------------------------------------------------------

  /** setxattr(2): flags 1 = XATTR_CREATE (must not exist), 2 = XATTR_REPLACE (must exist). */
  setXattr(ino: number, name: string, value: Buffer, flags: number): void {
    this.#db.transaction(() => {
      this.requireNode(ino);
      const exists = this.#sql(`SELECT 1 FROM xattr WHERE ino = ? AND name = ?`).get(ino, name);
      if (flags & 1 && exists) throw new StrataError('ALREADY_EXISTS', `attribute ${name} exists`);
      if (flags & 2 && !exists) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
      this.#sql(`INSERT INTO xattr (ino, name, value) VALUES (?, ?, ?) ON CONFLICT(ino, name) DO UPDATE SET value = excluded.value`).run(ino, name, value);
      const now = timespecNow();
      this.#stmt.touchCtime.run(now.sec, now.nsec, ino);
    })();
  }

  getXattr(ino: number, name: string): Buffer {
    this.requireNode(ino);
    const row = this.#sql(`SELECT value FROM xattr WHERE ino = ? AND name = ?`).get(ino, name) as { value: Buffer } | undefined;
    if (!row) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
    return row.value;
  }

  listXattrs(ino: number): string[] {
    this.requireNode(ino);
    return (this.#sql(`SELECT name FROM xattr WHERE ino = ? ORDER BY name`).all(ino) as { name: string }[]).map((r) => r.name);
  }

  removeXattr(ino: number, name: string): void {
    this.#db.transaction(() => {
      this.requireNode(ino);
      const r = this.#sql(`DELETE FROM xattr WHERE ino = ? AND name = ?`).run(ino, name);
      if (r.changes === 0) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
      const now = timespecNow();
      this.#stmt.touchCtime.run(now.sec, now.nsec, ino);
    })();
  }

  // ---- persist queue (ASYNC_THROUGH) ------------------------------------------

  #enqueuePersist(ino: number, delayMs: number): void {
    const now = Date.now();
    this.#sql(`INSERT INTO persist_queue (ino, enqueued_at, next_at) VALUES (?, ?, ?) ON CONFLICT(ino) DO UPDATE SET next_at = excluded.next_at, attempts = 0, last_error = NULL`)
      .run(ino, now, now + delayMs);
  }

  enqueuePersist(ino: number): void {
    this.#enqueuePersist(ino, 0);
  }

  /** Files due for persisting, oldest first. */
  duePersists(now: number, limit: number): DuePersist[] {
    return (this.#sql(`SELECT ino, attempts, enqueued_at FROM persist_queue WHERE next_at <= ? ORDER BY next_at LIMIT ?`).all(now, limit) as { ino: number; attempts: number; enqueued_at: number }[]).map((r) => ({
      ino: r.ino,
      attempts: r.attempts,
      enqueuedAt: r.enqueued_at,
    }));
  }

  persistQueue(): QueuedPersist[] {
    return (this.#sql(`SELECT * FROM persist_queue ORDER BY enqueued_at`).all() as { ino: number; attempts: number; enqueued_at: number; next_at: number; last_error: string | null }[]).map((r) => ({
      ino: r.ino,
      attempts: r.attempts,
      enqueuedAt: r.enqueued_at,
      nextAt: r.next_at,
      lastError: r.last_error,
    }));
  }

  /** Records a failed attempt; the next one waits with exponential backoff (1 s … 5 min). */
  persistFailed(ino: number, error: string): void {
    this.#db.transaction(() => {
      const row = this.#sql(`SELECT attempts FROM persist_queue WHERE ino = ?`).get(ino) as { attempts: number } | undefined;
      if (!row) return;
      const delay = Math.min(300_000, 1000 * 2 ** row.attempts);
      this.#sql(`UPDATE persist_queue SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE ino = ?`).run(Date.now() + delay, error.slice(0, 500), ino);
    })();
  }

  /**
   * Marks a file persisted if its content is still the version that was persisted,
   * and takes it off the queue. A queue entry of a newer version stays: it was
   * queued by that version's commit, and that content is not in the store yet.
   */
  markPersisted(ino: number, container: number, fingerprint: string): boolean {
    return this.#db.transaction(() => {
      const n = this.getNode(ino);
      if (n && n.type === 'file' && n.container !== container) {
        // An older version's object is at its path now.
        if (!n.inStore) this.markInStore(ino);
        return false;
      }
      this.#sql(`DELETE FROM persist_queue WHERE ino = ?`).run(ino);
      if (!n || n.type !== 'file') return false;
      this.#sql(`UPDATE node SET persisted = 1, in_store = 1, ufs_fingerprint = ?, synced_at = ? WHERE ino = ?`).run(fingerprint, Date.now(), ino);
      return true;
    })();
  }

  markInStore(ino: number): void {
    this.#sql(`UPDATE node SET in_store = 1 WHERE ino = ? AND in_store = 0`).run(ino);
  }

  /**
   * Drops the queue entry of a node that no longer needs persisting (gone, not a
   * file, or persisted); checked in the same transaction, so a write that queued
   * the file again meanwhile keeps its entry.
   */
  dropPersist(ino: number): boolean {
    return this.#db.transaction(() => {
      const n = this.getNode(ino);
      if (n && n.type === 'file' && n.persistState !== 'persisted') return false;
      return this.#sql(`DELETE FROM persist_queue WHERE ino = ?`).run(ino).changes > 0;
    })();
  }

  /** True when a file at or below `ino` has bytes not yet in its under-store. */
  hasUnpersisted(ino: number): boolean {
    const n = this.getNode(ino);
    if (!n) return false;
    if (n.type === 'file') return n.persistState !== 'persisted';
    return this.children(ino).some((c) => this.hasUnpersisted(c.ino));
  }

  markSyncedMany(inos: number[], at = Date.now()): void {
    const st = this.#sql(`UPDATE node SET synced_at = ? WHERE ino = ?`);
    this.#db.transaction(() => {
      for (const ino of inos) if (st.run(at, ino).changes > 0 && at === 0) this.changes.listingChanged(ino);
    })();
  }

  markSynced(ino: number, at = Date.now()): void {
    this.markSyncedMany([ino], at);
  }

  /**
   * Removes a child that vanished from the under-store (the whole subtree for
   * directories). With `guard`, only while `name` still names the node the sync
   * saw, unchanged, and (a file) through its primary link.
   */
  forgetChild(parent: number, name: string, guard?: SyncGuard): boolean {
    return this.#db.transaction(() => {
      const node = this.lookup(parent, name);
      if (!node) return false;
      if (guard && (node.ino !== guard.ino || !matchesGuard(node, guard) || (node.type !== 'directory' && !this.isPrimaryLink(parent, name)))) return false;
      if (node.type === 'directory') {
        this.#stmt.deleteEdge.run(parent, name);
        this.#stmt.nlinkAdd.run(-1, parent);
        this.#deleteTree(node.ino);
      } else {
        // Other hard links keep the inode alive, as an unlink would.
        this.#unlinkEdge(parent, name, node);
      }
      return true;
    })();
  }

  // ---- workers -------------------------------------------------------------

  /**
   * Registers a worker by its persistent identity (a uuid kept in its home), so a
   * restarted worker on a new port keeps its id and its cached blocks stay known.
   * `req.blocks` is a full report: it replaces what the master knew of the worker.
   */
  registerWorker(req: RegisterWorkerRequest): number {
    return this.#db.transaction(() => {
      const now = Date.now();
      const existing = this.#stmt.workerByUuid.get(req.uuid) as { id: number } | undefined;
      const usage = { capacity: req.capacityBytes, used: req.usedBytes, tiers: JSON.stringify(req.tiers), now };
      let id: number;
      if (existing) {
        id = existing.id;
        this.#stmt.updateWorker.run({ ...usage, id });
        this.#stmt.updateWorkerAddress.run(req.address, req.host, req.pageSize, id);
      } else {
        id = Number(this.#stmt.insertWorker.run({ ...usage, uuid: req.uuid, address: req.address, host: req.host, pageSize: req.pageSize }).lastInsertRowid);
      }
      // Whoever had this address before is gone: it cannot share a port with a live worker.
      for (const w of this.#sql(`SELECT id FROM worker WHERE address = ? AND id != ? AND live = 1`).all(req.address, id) as { id: number }[]) {
        this.#stmt.markLost.run(w.id);
        this.#stmt.deleteLocationsOfWorker.run(w.id);
      }
      // A full report replaces what we knew; blocks no file refers to any more are deleted on the worker.
      this.#stmt.deleteLocationsOfWorker.run(id);
      for (const b of req.blocks) this.#reported(id, b);
      // Persists that failed (for want of this worker, maybe) are due now, not after a backoff of up to 5 minutes;
      // attempts are kept. Entries still in their first wait are left to it.
      this.#sql(`UPDATE persist_queue SET next_at = ? WHERE attempts > 0 AND next_at > ?`).run(now, now);
      return id;
    })();
  }

  /** A block a worker says it holds: a location (tier and bytes updated) or, when no file has it, a deletion. */
  #reported(workerId: number, b: BlockReport): void {
    if (this.#stmt.blockExists.get(b.id)) {
      // A deletion queued for this copy wins: an incremental report sent before a
      // `free` reached the worker cannot be told from a copy cached again after
      // it, and keeping a freed copy would break the free. The worker deletes it
      // with this beat's answer and reports it again if it is read again.
      if (this.#sql('SELECT 1 FROM pending_delete WHERE worker_id = ? AND block_id = ?').get(workerId, b.id)) return;
      this.#stmt.addLocation.run({ block: b.id, worker: workerId, tier: b.tier, bytes: b.bytes });
    } else if (this.#sql('SELECT 1 FROM open_write WHERE container = ?').get(Math.floor(b.id / BLOCKS_PER_CONTAINER))) {
      // Written right now and not committed yet: the commit (or the write's expiry) decides.
      this.#sql('INSERT OR REPLACE INTO unclaimed_block (worker_id, block_id, tier, bytes) VALUES (?, ?, ?, ?)')
        .run(workerId, b.id, b.tier ?? null, b.bytes ?? null);
    } else {
      this.#stmt.addPendingDelete.run(workerId, b.id);
    }
  }

  /** Ends a write in flight: forgets it and answers the copies workers reported for it. */
  #closeWrite(container: number): { worker_id: number; block_id: number; tier: string | null; bytes: number | null }[] {
    this.#sql('DELETE FROM open_write WHERE container = ?').run(container);
    const lo = blockIdOf(container, 0);
    const hi = blockIdOf(container + 1, 0);
    const rows = this.#sql('SELECT worker_id, block_id, tier, bytes FROM unclaimed_block WHERE block_id >= ? AND block_id < ?').all(lo, hi) as {
      worker_id: number;
      block_id: number;
      tier: string | null;
      bytes: number | null;
    }[];
    this.#sql('DELETE FROM unclaimed_block WHERE block_id >= ? AND block_id < ?').run(lo, hi);
    return rows;
  }

  /**
   * Writes begun before `before` and not renewed since (the client or worker went
   * away mid-write): their reported copies are orphans and get deleted.
   */
  expireOpenWrites(before: number): { writes: number; copies: number; queued: number[] } {
    return this.#db.transaction(() => {
      // Two statements for all: most writes that expire are creates' begun writes nobody used, thousands after a job.
      const rows = this.#sql('DELETE FROM open_write WHERE renewed_at < ? RETURNING container, ino').all(before) as { container: number; ino: number }[];
      if (rows.length === 0) return { writes: 0, copies: 0, queued: [] };
      const stale = rows.map((r) => r.container);
      const orphans = this.#sql(`DELETE FROM unclaimed_block WHERE block_id / ${BLOCKS_PER_CONTAINER} IN (SELECT value FROM json_each(?)) RETURNING worker_id, block_id`).all(JSON.stringify(stale)) as {
        worker_id: number;
        block_id: number;
      }[];
      for (const r of orphans) this.#stmt.addPendingDelete.run(r.worker_id, r.block_id);
      const queued = this.#queueUnwritten([...new Set(rows.map((r) => r.ino))]);
      return { writes: stale.length, copies: orphans.length, queued };
    })();
  }

  /**
   * Queues those of `inos` to be stored empty whose every write ended uncommitted (see
   * Metastore.abandonWrite), in one statement (an expiry pass may end thousands of writes);
   * inside a transaction. Answers the inodes queued, in order.
   */
  #queueUnwritten(inos: number[]): number[] {
    const now = Date.now();
    const rows = this.#sql(
      `INSERT INTO persist_queue (ino, enqueued_at, next_at)
       SELECT n.ino, ?, ? FROM node n WHERE n.ino IN (SELECT value FROM json_each(?)) AND n.type = ? AND n.persisted = 0 AND n.in_store = 1 AND n.size = 0
         AND NOT EXISTS (SELECT 1 FROM open_write w WHERE w.ino = n.ino) AND NOT EXISTS (SELECT 1 FROM persist_queue q WHERE q.ino = n.ino)
       RETURNING ino`,
    ).all(now, now, JSON.stringify(inos), TYPE_CODE.file) as { ino: number }[];
    return rows.map((r) => r.ino).sort((a, b) => a - b);
  }

  /** Ends a write in flight that will never be committed: its reported copies are orphans and get deleted. */
  abandonWrite(container: number, opts?: { storeIfUnwritten?: boolean }): boolean {
    return this.#db.transaction(() => {
      const ino = (this.#sql('SELECT ino FROM open_write WHERE container = ?').get(container) as { ino: number } | undefined)?.ino;
      for (const r of this.#closeWrite(container)) this.#stmt.addPendingDelete.run(r.worker_id, r.block_id);
      return ino !== undefined && opts?.storeIfUnwritten === true && this.#queueUnwritten([ino]).length > 0;
    })();
  }

  /**
   * Records a heartbeat: usage, tiers and the incremental block report. Answers the
   * blocks to delete and, when the worker's pin set is out of date, the current one;
   * null when the worker is unknown or lost (it must register again).
   */
  heartbeat(req: HeartbeatRequest): HeartbeatAnswer | null {
    return this.#db.transaction(() => {
      const w = this.#stmt.workerById.get(req.workerId) as { live: number } | undefined;
      if (!w || !w.live) return null;
      this.#stmt.updateWorker.run({ capacity: req.capacityBytes, used: req.usedBytes, tiers: JSON.stringify(req.tiers), now: Date.now(), id: req.workerId });
      // Removals first: a block dropped and cached again since the last beat is in both lists.
      for (const b of req.removedBlocks) {
        this.#stmt.removeLocation.run(b, req.workerId);
        this.#stmt.clearPendingDelete.run(req.workerId, b);
      }
      const renew = this.#sql('UPDATE open_write SET renewed_at = ? WHERE container = ?');
      for (const c of req.openWrites ?? []) renew.run(Date.now(), c);
      for (const b of req.addedBlocks) this.#reported(req.workerId, b);
      const deleteBlocks = (this.#stmt.pendingDeletes.all(req.workerId) as { block_id: number }[]).map((r) => r.block_id);
      const version = this.pinVersion();
      return req.pinVersion === version ? { deleteBlocks } : { deleteBlocks, pins: { version, blocks: this.pinnedBlocks() } };
    })();
  }

  /** Marks workers silent since `before` as lost and drops their block locations. */
  expireWorkers(before: number): number[] {
    return this.#db.transaction(() => {
      const lost = (this.#stmt.staleWorkers.all(before) as { id: number }[]).map((r) => r.id);
      for (const id of lost) {
        this.#stmt.markLost.run(id);
        this.#stmt.deleteLocationsOfWorker.run(id);
      }
      return lost;
    })();
  }

  workerLeft(workerId: number): boolean {
    return this.#db.transaction(() => {
      if (this.#sql(`UPDATE worker SET live = 0 WHERE id = ? AND live = 1`).run(workerId).changes === 0) return false;
      this.#stmt.deleteLocationsOfWorker.run(workerId);
      return true;
    })();
  }

  workers(): WorkerInfo[] {
    type Row = { id: number; address: string; host: string; tiers: string; page_size: number; capacity: number; used: number; last_heartbeat: number; live: number };
    return (this.#stmt.workers.all() as Row[]).map((w) => ({
      id: w.id,
      address: w.address,
      host: w.host,
      tiers: parseTiers(w.tiers),
      pageSize: w.page_size,
      capacityBytes: w.capacity,
      usedBytes: w.used,
      lastHeartbeatMs: w.last_heartbeat,
      live: w.live === 1,
    }));
  }

  // ---- pins, TTL, free, du ---------------------------------------------------

  /** Version of the pinned-block set; it changes whenever the set may have. */
  pinVersion(): number {
    return Number((this.#stmt.metaGet.get('pin_version') as { value: string }).value);
  }

  /** Every block of a pinned file: what workers must never evict. */
  pinnedBlocks(): number[] {
    return (this.#stmt.pinnedBlocks.all() as { block_id: number }[]).map((r) => r.block_id);
  }

  /** Clock-based so that numbers from an earlier run or another database are never reused. */
  #bumpPinVersion(): void {
    this.#stmt.metaSet.run('pin_version', String(Math.max(this.pinVersion() + 1, Date.now())));
  }

  /**
   * Pins or unpins a file, or a directory with everything below it (directories
   * too, so files created or found in them later start pinned). Returns how many
   * files changed state.
   */
  setPinned(ino: number, pinned: boolean): { files: number } {
    return this.#db.transaction(() => {
      this.requireNode(ino);
      const files = (this.#stmt.subtreeFiles.all(ino) as { pinned: number }[]).filter((f) => (f.pinned === 1) !== pinned).length;
      const changed = this.#stmt.setPinnedSubtree.run(ino, pinned ? 1 : 0, pinned ? 1 : 0).changes;
      if (changed > 0) this.#bumpPinVersion();
      return { files };
    })();
  }

  /** Sets (epoch ms) or clears (null) the time to live of a node. */
  setTtl(ino: number, expiresAtMs: number | null, action: TtlAction): void {
    this.requireNode(ino);
    this.#stmt.setTtl.run(expiresAtMs, expiresAtMs === null ? null : action, ino);
  }

  /** Nodes whose TTL passed, oldest first (an indexed range scan). */
  expiredTtls(now: number, limit = 100): ExpiredTtl[] {
    return (this.#stmt.expiredTtls.all(now, limit) as { ino: number; ttl_expires_at: number; ttl_action: string | null }[]).map((r) => ({
      ino: r.ino,
      expiresAtMs: r.ttl_expires_at,
      action: r.ttl_action === 'delete' ? 'delete' : 'free',
    }));
  }

  /** Clears a TTL that fired, unless it was set again meanwhile. */
  clearTtl(ino: number, expiresAtMs: number): void {
    this.#stmt.clearTtl.run(ino, expiresAtMs);
  }

  /** Moves a TTL whose action failed to `at`, unless it was set again meanwhile. */
  rescheduleTtl(ino: number, expiresAtMs: number, at: number): void {
    this.#stmt.rescheduleTtl.run(at, ino, expiresAtMs);
  }

  /**
   * Drops every cached copy of the persisted files at or below `ino`: locations go
   * now, and each copy is queued for deletion on its worker (sent with the next
   * heartbeat). Files whose bytes are not in the under-store yet keep their copies.
   */
  free(ino: number): FreeResponse {
    return this.#db.transaction(() => {
      this.requireNode(ino);
      const out: FreeResponse = { files: 0, bytes: 0, skippedNotPersisted: 0 };
      for (const f of this.#stmt.subtreeFiles.all(ino) as { ino: number; persisted: number }[]) {
        if (!f.persisted) {
          out.skippedNotPersisted++;
          continue;
        }
        out.files++;
        out.bytes += this.#dropCachedCopies(f.ino);
      }
      return out;
    })();
  }

  /** Size and cached bytes of the subtree at `ino` (cached: per block, the largest copy on a live worker). */
  du(ino: number): DuResponse {
    return this.#db.transaction(() => {
      this.requireNode(ino);
      const c = this.#stmt.duCounts.get(ino) as { files: number; dirs: number; size: number };
      const cached = (this.#stmt.duCached.get(ino) as { cached: number }).cached;
      return { files: c.files, directories: c.dirs, size: c.size, cachedBytes: cached };
    })();
  }

  cachedBytes(inos: readonly number[]): number {
    return (this.#stmt.cachedOf.get(JSON.stringify(inos)) as { cached: number }).cached;
  }

  // ---- mount table ---------------------------------------------------------

  mounts(): MountRecord[] {
    return this.#stmt.mounts.all() as MountRecord[];
  }

  setMount(path: string, uri: string, options = '{}'): void {
    this.#stmt.insertMount.run(path, uri, options);
  }

  claimMount(path: string, uri: string, options: string): MountRecord {
    return this.#db.transaction(() => {
      this.#stmt.claimMount.run(path, uri, options);
      return (this.#stmt.mounts.all() as MountRecord[]).find((m) => m.path === path)!;
    })();
  }

  removeMount(path: string): void {
    this.#stmt.deleteMount.run(path);
  }

  /** Unmounts in one transaction: BUSY while something below the mount point is not persisted. */
  unmount(path: string, parent: number, name: string): void {
    this.#db.transaction(() => {
      const node = this.lookup(parent, name);
      if (node && this.hasUnpersisted(node.ino)) throw new StrataError('BUSY', `files under ${path} are not persisted yet`);
      this.#stmt.deleteMount.run(path);
      if (node) this.forgetChild(parent, name);
    })();
  }
}


/** Tiers as stored (JSON written by this module); anything unreadable shows as no tiers. */
function parseTiers(json: string): TierInfo[] {
  try {
    const v = JSON.parse(json) as unknown;
    return Array.isArray(v) ? (v as TierInfo[]) : [];
  } catch {
    return [];
  }
}

/** Whether a node is still what a sync saw before it asked the under-store. */
function matchesGuard(n: NodeRecord, guard: Omit<SyncGuard, 'ino'>): boolean {
  return n.ufsFingerprint === guard.ufsFingerprint && n.syncedAt < guard.syncedBefore;
}
