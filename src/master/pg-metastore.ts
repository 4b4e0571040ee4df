/**
 * The master's metadata store on PostgreSQL: the same namespace, blocks, block
 * locations, worker registry, persist queue and pins as `InodeTable` (SQLite), with
 * the same method names, arguments, results and StrataError codes, each method
 * async and each one transaction. The database outlives any one master: a
 * standby on another host takes over the namespace when the leader dies (one
 * writer at a time, as the Metastore contract says; with `setFence`, the leader
 * lease in the same database enforces it: a master that lost the lease cannot
 * commit a write), and the namespace can outgrow one machine.
 *
 * Concurrency: every writing method runs as one SERIALIZABLE transaction and is
 * run again from the start when PostgreSQL aborts it with serialization_failure
 * (40001) or deadlock_detected (40P01). Serializable snapshot isolation makes the
 * whole method behave as if methods ran one at a time, so the checks a method
 * makes before it writes (the name is free, the directory is empty, the target
 * directory is not below the one being moved) still hold when it commits. That is
 * what keeps link counts right and the tree acyclic under concurrent renames,
 * without a lock order to get wrong; it is also the isolation level distributed
 * PostgreSQL-compatible databases (CockroachDB, YugabyteDB) offer by default, with
 * the same retry contract. Reads of several statements run in one REPEATABLE READ
 * READ ONLY transaction (one snapshot, never aborted).
 *
 * A transaction whose connection broke before COMMIT was sent, and any read, is
 * run again on a new connection (a few times, with backoff): a restarted or
 * failed-over database is a pause. One that broke during COMMIT is not, since it
 * may have committed; the caller gets UNAVAILABLE, as from any lost server.
 *
 * Changes for client caches are collected by each transaction as it writes and
 * appended to an in-memory log after its COMMIT succeeded (see `PgChangeLog`).
 */

import { randomBytes } from 'node:crypto';
import type * as pg from 'pg';
import { StrataError } from '../common/errors';
import type { Logger } from '../common/log';
import { LEADER_LEASE_TABLE, pgDriver } from './leadership';
import {
  BLOCKS_PER_CONTAINER,
  BlockInfo,
  BlockReport,
  ChangesResponse,
  DuResponse,
  FileType,
  FreeResponse,
  HeartbeatRequest,
  PersistState,
  RegisterWorkerRequest,
  TierInfo,
  Timespec,
  TtlAction,
  WorkerInfo,
  WriteCommitRequest,
  WriteType,
  blockIdOf,
  laterTimespec,
  timespecNow,
} from '../common/protocol';
import {
  ROOT_INO,
  type AttributeChanges,
  type BlockRecord,
  type ChangeLog,
  type DuePersist,
  type ExpiredTtl,
  type HeartbeatAnswer,
  type LinkRef,
  type Metastore,
  type MountRecord,
  type NamedNodeRecord,
  type ListedNodeRecord,
  type NewNode,
  type NodeRecord,
  type QueuedPersist,
  type SyncGuard,
  NODE_TYPE_CODE,
  type NodeRow,
  nodeRecordFromRow,
  type CommitEmptyRequest,
  type CreatedEmpty,
  type CreatedNode,
} from './metastore';

/** The newest schema this code knows; a database at a newer version is refused. */
export const PG_SCHEMA_VERSION = 4;

/** Options of `PgMetastore.open`. */
export interface PgMetastoreOptions {
  /** Block size of new files in bytes. */
  blockSize: number;
  /** Wait before the first persist attempt of an ASYNC_THROUGH file (ms). Default 0. */
  persistInitialWaitMs?: number;
  /** Connections in the pool. Default 10. */
  poolSize?: number;
  /** Longest wait for a connection (ms); then the call fails UNAVAILABLE. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * Longest run of one statement on the server (ms), and of a transaction left idle
   * by a client that went away; then the call fails TIMEOUT. Default 60000.
   */
  statementTimeoutMs?: number;
  /**
   * Longest a transaction may sit idle between statements (ms); then the server
   * ends its session, rolling it back and releasing its row locks. Default
   * `statementTimeoutMs`. Masters that share the database with a leader lease set
   * it below the lease: a fenced write holds a key-share lock on the lease row until
   * COMMIT, and a leader stopped (SIGSTOP, a hung host) in the middle of one would
   * otherwise keep every standby from taking the lease for that long.
   */
  idleInTransactionTimeoutMs?: number;
  /** Where pool errors and retry storms are reported. Default: nowhere. */
  logger?: Logger;
  /**
   * Start a new pin version at open (a write). Default true. A standby master that
   * shares the database with a leader passes false and calls `elected()` when it
   * takes over, so that it writes nothing while it stands by.
   */
  bumpPinVersionAtOpen?: boolean;
}

/**
 * The leader lease a fenced store's writes require (see `PgMetastore.setFence`):
 * the row `name` of `leader_lease` must name `holder` with `term`, unexpired.
 * Undefined: this master does not lead, and every write fails NOT_LEADER.
 */
export interface MetastoreFence {
  name: string;
  holder: string;
  term: number;
}

const TYPE_CODE = NODE_TYPE_CODE;
/**
 * Migration to version N, run in one transaction with the version bump. Version 1
 * is the whole schema of SQLite version 3 in PostgreSQL terms: BIGINT for ids,
 * sizes and times, BOOLEAN flags, BYTEA xattr values, names in the "C" collation
 * so listings sort by bytes as SQLite's do, and a sequence for containers (block
 * ids), so concurrent writers never contend on a counter row.
 */
const MIGRATIONS: Record<number, (tx: Tx, blockSize: number) => Promise<void>> = {
  1: async (tx, blockSize) => {
    await tx.client.query(`
      -- Plain sequences rather than identity columns: what PostgreSQL-compatible distributed databases share.
      CREATE SEQUENCE node_ino_seq START WITH 2;
      CREATE SEQUENCE worker_id_seq START WITH 1;
      CREATE TABLE node (
        ino BIGINT PRIMARY KEY DEFAULT nextval('node_ino_seq'),
        type SMALLINT NOT NULL,
        mode INTEGER NOT NULL,
        uid BIGINT NOT NULL,
        gid BIGINT NOT NULL,
        size BIGINT NOT NULL DEFAULT 0,
        nlink INTEGER NOT NULL DEFAULT 1,
        atime_s BIGINT NOT NULL, atime_ns INTEGER NOT NULL,
        mtime_s BIGINT NOT NULL, mtime_ns INTEGER NOT NULL,
        ctime_s BIGINT NOT NULL, ctime_ns INTEGER NOT NULL,
        target TEXT,
        rdev BIGINT NOT NULL DEFAULT 0,
        block_size BIGINT NOT NULL,
        persisted BOOLEAN NOT NULL,
        ufs_fingerprint TEXT,
        synced_at BIGINT NOT NULL DEFAULT 0,
        container BIGINT NOT NULL DEFAULT 0,
        pinned BOOLEAN NOT NULL DEFAULT false,
        ttl_expires_at BIGINT,
        ttl_action TEXT
      );
      CREATE INDEX node_ttl ON node (ttl_expires_at) WHERE ttl_expires_at IS NOT NULL;
      CREATE INDEX node_pinned ON node (ino) WHERE pinned;
      CREATE TABLE edge (
        parent BIGINT NOT NULL REFERENCES node (ino),
        name TEXT COLLATE "C" NOT NULL,
        ino BIGINT NOT NULL REFERENCES node (ino),
        -- The one link of a hard-linked file whose path is where its bytes live in the store.
        primary_link BOOLEAN NOT NULL DEFAULT true,
        PRIMARY KEY (parent, name)
      );
      CREATE INDEX edge_by_ino ON edge (ino);
      CREATE TABLE block (
        block_id BIGINT PRIMARY KEY,
        ino BIGINT NOT NULL REFERENCES node (ino) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        length BIGINT NOT NULL,
        UNIQUE (ino, idx)
      );
      CREATE TABLE worker (
        id BIGINT PRIMARY KEY DEFAULT nextval('worker_id_seq'),
        uuid TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        tiers TEXT NOT NULL DEFAULT '[]',
        page_size BIGINT NOT NULL DEFAULT 0,
        capacity BIGINT NOT NULL,
        used BIGINT NOT NULL,
        last_heartbeat BIGINT NOT NULL,
        live BOOLEAN NOT NULL
      );
      CREATE TABLE block_location (
        block_id BIGINT NOT NULL,
        worker_id BIGINT NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
        tier TEXT,
        bytes BIGINT,
        PRIMARY KEY (block_id, worker_id)
      );
      CREATE INDEX block_location_by_worker ON block_location (worker_id);
      CREATE TABLE pending_delete (
        worker_id BIGINT NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
        block_id BIGINT NOT NULL,
        PRIMARY KEY (worker_id, block_id)
      );
      CREATE TABLE mount (path TEXT COLLATE "C" PRIMARY KEY, uri TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}');
      CREATE TABLE persist_queue (
        ino BIGINT PRIMARY KEY REFERENCES node (ino) ON DELETE CASCADE,
        enqueued_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        last_error TEXT
      );
      CREATE TABLE xattr (
        ino BIGINT NOT NULL REFERENCES node (ino) ON DELETE CASCADE,
        name TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (ino, name)
      );
      CREATE TABLE open_write (container BIGINT PRIMARY KEY, ino BIGINT NOT NULL, renewed_at BIGINT NOT NULL);
      CREATE TABLE unclaimed_block (
        worker_id BIGINT NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
        block_id BIGINT NOT NULL,
        tier TEXT,
        bytes BIGINT,
        PRIMARY KEY (worker_id, block_id)
      );
      CREATE SEQUENCE container_seq START WITH 1;
      INSERT INTO meta (key, value) VALUES ('pin_version', '0');
    `);
    const now = timespecNow();
    await tx.client.query(
      `INSERT INTO node (ino, type, mode, uid, gid, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, block_size, persisted)
       VALUES ($1, 2, $2, 0, 0, 2, $3, $4, $3, $4, $3, $4, $5, true)`,
      [ROOT_INO, 0o755, now.sec, now.nsec, blockSize],
    );
  },
  /** 2: due persists are found by index (the persister asks after every upload). */
  2: async (tx) => {
    await tx.client.query(`CREATE INDEX IF NOT EXISTS persist_queue_due ON persist_queue (next_at, ino)`);
  },
  /** 3: workers ask after every heartbeat which of their pinned blocks' containers are still unpersisted files. */
  3: async (tx) => {
    await tx.client.query(`CREATE INDEX IF NOT EXISTS node_unpersisted_container ON node (container) WHERE NOT persisted`);
  },
  /** 4: whether an object of a file may be at its path in the store (NodeRecord.inStore); older nodes may have one. */
  4: async (tx) => {
    await tx.client.query(`ALTER TABLE node ADD COLUMN IF NOT EXISTS in_store BOOLEAN NOT NULL DEFAULT true`);
  },
};

/** A named statement: prepared once per connection, then only bound and executed. */
interface Sql {
  name: string;
  text: string;
}
const sql = (name: string, text: string): Sql => ({ name, text });

const NODE_COLUMNS = `n.ino, n.type, n.mode, n.uid, n.gid, n.size, n.nlink, n.atime_s, n.atime_ns, n.mtime_s, n.mtime_ns, n.ctime_s, n.ctime_ns,
  n.target, n.rdev, n.block_size, n.persisted, n.ufs_fingerprint, n.synced_at, n.container, n.pinned, n.ttl_expires_at, n.ttl_action, n.in_store`;
const SUBTREE = `WITH RECURSIVE sub(ino) AS (SELECT $1::int8 UNION SELECT e.ino FROM edge e JOIN sub s ON e.parent = s.ino)`;

const Q = {
  node: sql('node', `SELECT ${NODE_COLUMNS} FROM node n WHERE n.ino = $1`),
  lookup: sql('lookup', `SELECT ${NODE_COLUMNS} FROM edge e JOIN node n ON n.ino = e.ino WHERE e.parent = $1 AND e.name = $2`),
  edgeExists: sql('edge_exists', `SELECT 1 FROM edge WHERE parent = $1 AND name = $2`),
  children: sql('children', `SELECT e.name, ${NODE_COLUMNS} FROM edge e JOIN node n ON n.ino = e.ino WHERE e.parent = $1 ORDER BY e.name`),
  childrenAfter: sql('children_after', `SELECT e.name, ${NODE_COLUMNS}, EXISTS (SELECT 1 FROM xattr x WHERE x.ino = n.ino) AS has_xattrs FROM edge e JOIN node n ON n.ino = e.ino WHERE e.parent = $1 AND e.name > $2 ORDER BY e.name LIMIT $3`),
  hasChildren: sql('has_children', `SELECT EXISTS (SELECT 1 FROM edge WHERE parent = $1) AS any`),
  parentOf: sql('parent_of', `SELECT parent, name FROM edge WHERE ino = $1 ORDER BY primary_link DESC, parent, name LIMIT 1`),
  // UNION, not UNION ALL: ends even if the tree were broken into a cycle.
  isAncestorOf: sql(
    'is_ancestor_of',
    `WITH RECURSIVE up(ino) AS (SELECT $1::int8 UNION SELECT e.parent FROM edge e JOIN up ON e.ino = up.ino WHERE up.ino <> ${ROOT_INO})
     SELECT EXISTS (SELECT 1 FROM up WHERE ino = $2) AS found`,
  ),
  edgeFlag: sql('edge_flag', `SELECT primary_link FROM edge WHERE parent = $1 AND name = $2`),
  otherLink: sql('other_link', `SELECT parent, name FROM edge WHERE ino = $1 AND NOT (parent = $2 AND name = $3) ORDER BY parent, name LIMIT 1`),
  setPrimary: sql('set_primary', `UPDATE edge SET primary_link = true WHERE parent = $1 AND name = $2`),
  insertLink: sql('insert_link', `INSERT INTO edge (parent, name, ino, primary_link) VALUES ($1, $2, $3, $4)`),
  /**
   * createChild in one statement: check the parent and the name, insert the node
   * and its name, touch the parent. Without a row the parent is missing; with
   * `ino` NULL the check failed (parent_type and taken say why) and nothing changed.
   */
  createChild: sql(
    'create_child',
    `WITH p AS (
       SELECT type, pinned, EXISTS (SELECT 1 FROM edge WHERE parent = $18::int8 AND name = $19::text) AS taken FROM node WHERE ino = $18
     ), n AS (
       INSERT INTO node (type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, target, rdev, block_size, persisted, ufs_fingerprint, synced_at, pinned, in_store)
       SELECT $1::int2, $2::int4, $3::int8, $4::int8, $5::int8, $6::int4, $7::int8, $8::int4, $7, $8, $9::int8, $10::int4, $11::text, $12::int8, $13::int8, $14::bool,
              $15::text, $16::int8, p.pinned, $22::bool
       FROM p WHERE p.type = ${TYPE_CODE.directory} AND NOT p.taken
       RETURNING *
     ), e AS (
       INSERT INTO edge (parent, name, ino) SELECT $18, $19, ino FROM n
     ), d AS (
       UPDATE node SET nlink = nlink + $17::int4, mtime_s = $20, mtime_ns = $21, ctime_s = $20, ctime_ns = $21 WHERE ino = $18 AND EXISTS (SELECT 1 FROM n)
     )
     SELECT p.type AS parent_type, p.taken, ${NODE_COLUMNS} FROM p LEFT JOIN n ON true`,
  ),
  // Batch forms for loadChildren: a listing of thousands of entries in a few round trips.
  takenNames: sql('taken_names', `SELECT name FROM edge WHERE parent = $1 AND name = ANY ($2::text[])`),
  nextInos: sql('next_inos', `SELECT nextval('node_ino_seq') AS v FROM generate_series(1, $1::int4)`),
  nextContainers: sql('next_containers', `SELECT nextval('container_seq') AS v FROM generate_series(1, $1::int4)`),
  insertNodes: sql(
    'insert_nodes',
    `INSERT INTO node (ino, type, mode, uid, gid, size, nlink, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, target, rdev, block_size, persisted, ufs_fingerprint, synced_at, container, pinned, in_store)
     SELECT ino, type, mode, uid, gid, size, nlink, ts, tns, ts, tns, cs, cns, target, rdev, $1, persisted, fp, synced_at, container, $2, in_store
     FROM unnest($3::int8[], $4::int2[], $5::int4[], $6::int8[], $7::int8[], $8::int8[], $9::int4[], $10::int8[], $11::int4[], $12::int8[], $13::int4[],
                 $14::text[], $15::int8[], $16::bool[], $17::text[], $18::int8[], $19::int8[], $20::bool[])
       AS u(ino, type, mode, uid, gid, size, nlink, ts, tns, cs, cns, target, rdev, persisted, fp, synced_at, container, in_store)`,
  ),
  insertEdges: sql('insert_edges', `INSERT INTO edge (parent, name, ino) SELECT $1, name, ino FROM unnest($2::text[], $3::int8[]) AS u(name, ino)`),
  insertBlocksMany: sql('insert_blocks_many', `INSERT INTO block (block_id, ino, idx, length) SELECT b, f, i, l FROM unnest($1::int8[], $2::int8[], $3::int4[], $4::int8[]) AS u(b, f, i, l)`),
  deleteEdge: sql('delete_edge', `DELETE FROM edge WHERE parent = $1 AND name = $2 RETURNING primary_link`),
  setEdge: sql('set_edge', `UPDATE edge SET ino = $3, primary_link = $4 WHERE parent = $1 AND name = $2`),
  deleteNode: sql('delete_node', `DELETE FROM node WHERE ino = $1`),
  // Batch forms for deleting a whole subtree (#deleteTree).
  subtreeDirs: sql(
    'subtree_dirs',
    `WITH RECURSIVE d(ino) AS (SELECT $1::int8 UNION SELECT e.ino FROM edge e JOIN d ON e.parent = d.ino JOIN node n ON n.ino = e.ino AND n.type = ${TYPE_CODE.directory})
     SELECT ino FROM d`,
  ),
  deleteEdgesIn: sql(
    'delete_edges_in',
    `WITH gone AS (DELETE FROM edge WHERE parent = ANY ($1::int8[]) RETURNING parent, name, ino, primary_link)
     SELECT g.parent, g.name, g.ino, g.primary_link, n.type FROM gone g JOIN node n ON n.ino = g.ino ORDER BY g.parent, g.name`,
  ),
  unlinkFiles: sql(
    'unlink_files',
    `UPDATE node SET nlink = nlink - u.k, ctime_s = $3, ctime_ns = $4 FROM unnest($1::int8[], $2::int4[]) AS u(ino, k) WHERE node.ino = u.ino
     RETURNING node.ino, node.nlink, node.pinned`,
  ),
  setFirstPrimary: sql(
    'set_first_primary',
    `UPDATE edge SET primary_link = true
     FROM (SELECT DISTINCT ON (ino) ino, parent, name FROM edge WHERE ino = ANY ($1::int8[]) ORDER BY ino, parent, name) AS f
     WHERE edge.parent = f.parent AND edge.name = f.name RETURNING edge.parent, edge.name`,
  ),
  locationsOfFiles: sql(
    'locations_of_files',
    `SELECT l.worker_id, l.block_id, b.ino FROM block b JOIN block_location l ON l.block_id = b.block_id WHERE b.ino = ANY ($1::int8[])`,
  ),
  deleteLocationsOfFiles: sql('delete_locations_of_files', `DELETE FROM block_location WHERE block_id IN (SELECT block_id FROM block WHERE ino = ANY ($1::int8[]))`),
  deleteBlocksOfFiles: sql('delete_blocks_of_files', `DELETE FROM block WHERE ino = ANY ($1::int8[]) RETURNING ino`),
  deleteNodes: sql('delete_nodes', `DELETE FROM node WHERE ino = ANY ($1::int8[])`),
  // mtime and ctime of a directory whose entries changed, and its link count when a subdirectory came or went.
  touchDir: sql('touch_dir', `UPDATE node SET nlink = nlink + $2, mtime_s = $3, mtime_ns = $4, ctime_s = $3, ctime_ns = $4 WHERE ino = $1`),
  nlinkAdd: sql('nlink_add', `UPDATE node SET nlink = nlink + $2 WHERE ino = $1`),
  unlinkFile: sql('unlink_file', `UPDATE node SET nlink = nlink - 1, ctime_s = $2, ctime_ns = $3 WHERE ino = $1 RETURNING nlink`),
  touchCtime: sql('touch_ctime', `UPDATE node SET ctime_s = $2, ctime_ns = $3 WHERE ino = $1`),
  setContainer: sql('set_container', `UPDATE node SET container = $2 WHERE ino = $1`),
  nextContainer: sql('next_container', `SELECT nextval('container_seq') AS c`),
  blocksOf: sql('blocks_of', `SELECT block_id, idx, length FROM block WHERE ino = $1 ORDER BY idx`),
  block: sql('block', `SELECT block_id, ino, idx, length FROM block WHERE block_id = $1`),
  insertBlocks: sql('insert_blocks', `INSERT INTO block (block_id, ino, idx, length) SELECT b, $1, i, l FROM unnest($2::int8[], $3::int4[], $4::int8[]) AS u(b, i, l)`),
  deleteBlocksOf: sql('delete_blocks_of', `DELETE FROM block WHERE ino = $1`),
  locationsOfFile: sql(
    'locations_of_file',
    `SELECT l.block_id, l.worker_id, l.tier, l.bytes FROM block b JOIN block_location l ON l.block_id = b.block_id
     JOIN worker w ON w.id = l.worker_id WHERE b.ino = $1 AND w.live ORDER BY l.worker_id`,
  ),
  locationsByFile: sql(
    'locations_by_file',
    `SELECT l.worker_id, l.block_id, LEAST(COALESCE(l.bytes, b.length), b.length) AS bytes
     FROM block b JOIN block_location l ON l.block_id = b.block_id WHERE b.ino = $1`,
  ),
  deleteLocationsOfFile: sql('delete_locations_of_file', `DELETE FROM block_location WHERE block_id IN (SELECT block_id FROM block WHERE ino = $1)`),
  addPendingDeletes: sql(
    'add_pending_deletes',
    `INSERT INTO pending_delete (worker_id, block_id) SELECT w, b FROM unnest($1::int8[], $2::int8[]) AS u(w, b) ON CONFLICT DO NOTHING`,
  ),
  removeLocations: sql(
    'remove_locations',
    `WITH gone AS (DELETE FROM block_location WHERE worker_id = $1 AND block_id = ANY ($2::int8[]) RETURNING block_id)
     SELECT DISTINCT b.ino FROM gone JOIN block b ON b.block_id = gone.block_id`,
  ),
  deleteLocationsOfWorker: sql(
    'delete_locations_of_worker',
    `WITH gone AS (DELETE FROM block_location WHERE worker_id = $1 RETURNING block_id)
     SELECT DISTINCT b.ino FROM gone JOIN block b ON b.block_id = gone.block_id`,
  ),
  // Which reported blocks belong to a file, and whether a deletion of the worker's copy is queued.
  classifyBlocks: sql(
    'classify_blocks',
    `SELECT b.block_id, EXISTS (SELECT 1 FROM pending_delete p WHERE p.worker_id = $1 AND p.block_id = b.block_id) AS pending
     FROM block b WHERE b.block_id = ANY ($2::int8[])`,
  ),
  openWritesAmong: sql('open_writes_among', `SELECT container FROM open_write WHERE container = ANY ($1::int8[])`),
  // Locations written at commit (tier NULL until the worker's next report) or reported by the worker; answers the files whose cache maps changed.
  addLocations: sql(
    'add_locations',
    `WITH up AS (
       INSERT INTO block_location (block_id, worker_id, tier, bytes)
       SELECT u.b, $1, u.t, u.n FROM unnest($2::int8[], $3::text[], $4::int8[]) AS u(b, t, n) WHERE EXISTS (SELECT 1 FROM block WHERE block_id = u.b)
       ON CONFLICT (block_id, worker_id) DO UPDATE SET tier = COALESCE(excluded.tier, block_location.tier), bytes = excluded.bytes
       RETURNING block_id)
     SELECT DISTINCT b.ino FROM up JOIN block b ON b.block_id = up.block_id`,
  ),
  addUnclaimedMany: sql(
    'add_unclaimed_many',
    `INSERT INTO unclaimed_block (worker_id, block_id, tier, bytes) SELECT $1, b, t, n FROM unnest($2::int8[], $3::text[], $4::int8[]) AS u(b, t, n)
     ON CONFLICT (worker_id, block_id) DO UPDATE SET tier = excluded.tier, bytes = excluded.bytes`,
  ),
  metaGet: sql('meta_get', `SELECT value FROM meta WHERE key = $1`),
  // Clock-based so that numbers from an earlier run or another database are never reused.
  bumpPinVersion: sql('bump_pin_version', `UPDATE meta SET value = GREATEST(value::int8 + 1, $1::int8)::text WHERE key = 'pin_version'`),
  workerByUuid: sql('worker_by_uuid', `SELECT id FROM worker WHERE uuid = $1`),
  workerById: sql('worker_by_id', `SELECT id, live FROM worker WHERE id = $1`),
  insertWorker: sql(
    'insert_worker',
    `INSERT INTO worker (uuid, address, host, tiers, page_size, capacity, used, last_heartbeat, live) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true) RETURNING id`,
  ),
  updateWorker: sql('update_worker', `UPDATE worker SET capacity = $2, used = $3, tiers = $4, last_heartbeat = $5, live = true WHERE id = $1`),
  updateWorkerAddress: sql('update_worker_address', `UPDATE worker SET address = $2, host = $3, page_size = $4 WHERE id = $1`),
  otherLiveWorkersAt: sql('other_live_workers_at', `SELECT id FROM worker WHERE address = $1 AND id <> $2 AND live ORDER BY id`),
  workers: sql('workers', `SELECT id, address, host, tiers, page_size, capacity, used, last_heartbeat, live FROM worker ORDER BY id`),
  staleWorkers: sql('stale_workers', `SELECT id FROM worker WHERE live AND last_heartbeat < $1 ORDER BY id`),
  markLost: sql('mark_lost', `UPDATE worker SET live = false WHERE id = $1`),
  markLeft: sql('mark_left', `UPDATE worker SET live = false WHERE id = $1 AND live`),
  pendingDeletes: sql('pending_deletes', `SELECT block_id FROM pending_delete WHERE worker_id = $1 ORDER BY block_id LIMIT 10000`),
  clearPendingDeletes: sql('clear_pending_deletes', `DELETE FROM pending_delete WHERE worker_id = $1 AND block_id = ANY ($2::int8[])`),
  renewOpenWrites: sql('renew_open_writes', `UPDATE open_write SET renewed_at = $1 WHERE container = ANY ($2::int8[])`),
  openWriteOf: sql('open_write_of', `SELECT ino FROM open_write WHERE container = $1`),
  // One statement, one snapshot: a commit moving a container from open_write to node is seen on one side.
  unpersistedContainers: sql(
    'unpersisted_containers',
    `SELECT container FROM node WHERE container = ANY($1::int8[]) AND NOT persisted
     UNION SELECT container FROM open_write WHERE container = ANY($1::int8[])`,
  ),
  insertOpenWrite: sql('insert_open_write', `INSERT INTO open_write (container, ino, renewed_at) VALUES ($1, $2, $3)`),
  deleteOpenWrite: sql('delete_open_write', `DELETE FROM open_write WHERE container = $1`),
  // One statement for all: most writes that expire are creates' begun writes nobody used, thousands after a job.
  expireOpenWrites: sql(
    'expire_open_writes',
    `DELETE FROM open_write WHERE container IN (SELECT container FROM open_write WHERE renewed_at < $1 ORDER BY container FOR UPDATE) RETURNING container, ino`,
  ),
  takeUnclaimedOf: sql('take_unclaimed_of', `DELETE FROM unclaimed_block WHERE block_id / ${BLOCKS_PER_CONTAINER} = ANY ($1::int8[]) RETURNING worker_id, block_id`),
  takeUnclaimed: sql('take_unclaimed', `DELETE FROM unclaimed_block WHERE block_id >= $1 AND block_id < $2 RETURNING worker_id, block_id, tier, bytes`),
  mounts: sql('mounts', `SELECT path, uri, options FROM mount ORDER BY path`),
  insertMount: sql('insert_mount', `INSERT INTO mount (path, uri, options) VALUES ($1, $2, $3) ON CONFLICT (path) DO UPDATE SET uri = excluded.uri, options = excluded.options`),
  deleteMount: sql('delete_mount', `DELETE FROM mount WHERE path = $1`),
  claimMount: sql('claim_mount', `INSERT INTO mount (path, uri, options) VALUES ($1, $2, $3) ON CONFLICT (path) DO NOTHING`),
  mountAt: sql('mount_at', `SELECT path, uri, options FROM mount WHERE path = $1`),
  nodeCount: sql('node_count', `SELECT COUNT(*)::int8 AS n FROM node`),
  pinnedBlocks: sql('pinned_blocks', `SELECT b.block_id FROM node n JOIN block b ON b.ino = n.ino WHERE n.pinned ORDER BY b.block_id`),
  setTtl: sql('set_ttl', `UPDATE node SET ttl_expires_at = $2, ttl_action = $3 WHERE ino = $1`),
  expiredTtls: sql('expired_ttls', `SELECT ino, ttl_expires_at, ttl_action FROM node WHERE ttl_expires_at <= $1 ORDER BY ttl_expires_at, ino LIMIT $2`),
  clearTtl: sql('clear_ttl', `UPDATE node SET ttl_expires_at = NULL, ttl_action = NULL WHERE ino = $1 AND ttl_expires_at = $2`),
  rescheduleTtl: sql('reschedule_ttl', `UPDATE node SET ttl_expires_at = $3 WHERE ino = $1 AND ttl_expires_at = $2`),
  subtreeFiles: sql('subtree_files', `${SUBTREE} SELECT n.ino, n.persisted, n.pinned FROM node n JOIN sub ON sub.ino = n.ino WHERE n.type = 1 ORDER BY n.ino`),
  setPinnedSubtree: sql('set_pinned_subtree', `${SUBTREE} UPDATE node SET pinned = $2 WHERE ino IN (SELECT ino FROM sub) AND pinned <> $2 RETURNING ino`),
  hasUnpersisted: sql(
    'has_unpersisted',
    `${SUBTREE} SELECT EXISTS (SELECT 1 FROM node n JOIN sub ON sub.ino = n.ino WHERE n.type = 1 AND NOT n.persisted) AS found`,
  ),
  duCounts: sql(
    'du_counts',
    `${SUBTREE} SELECT COUNT(*) FILTER (WHERE n.type = 1)::int8 AS files, COUNT(*) FILTER (WHERE n.type = 2)::int8 AS dirs,
       COALESCE(SUM(n.size) FILTER (WHERE n.type = 1), 0)::int8 AS size
     FROM node n JOIN sub ON sub.ino = n.ino`,
  ),
  // Per block, the best copy on a live worker; a location without a byte count holds the whole block.
  duCached: sql(
    'du_cached',
    `${SUBTREE}, per_block AS (
       SELECT LEAST(MAX(COALESCE(l.bytes, b.length)), b.length) AS bytes
       FROM sub JOIN block b ON b.ino = sub.ino JOIN block_location l ON l.block_id = b.block_id JOIN worker w ON w.id = l.worker_id
       WHERE w.live GROUP BY b.block_id, b.length)
     SELECT COALESCE(SUM(bytes), 0)::int8 AS cached FROM per_block`,
  ),
  cachedOf: sql(
    'cached_of',
    `WITH per_block AS (
       SELECT LEAST(MAX(COALESCE(l.bytes, b.length)), b.length) AS bytes
       FROM block b JOIN block_location l ON l.block_id = b.block_id JOIN worker w ON w.id = l.worker_id
       WHERE b.ino = ANY($1::int8[]) AND w.live GROUP BY b.block_id, b.length)
     SELECT COALESCE(SUM(bytes), 0)::int8 AS cached FROM per_block`,
  ),
  xattrExists: sql('xattr_exists', `SELECT 1 FROM xattr WHERE ino = $1 AND name = $2`),
  setXattr: sql('set_xattr', `INSERT INTO xattr (ino, name, value) VALUES ($1, $2, $3) ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value`),
  getXattr: sql('get_xattr', `SELECT value FROM xattr WHERE ino = $1 AND name = $2`),
  listXattrs: sql('list_xattrs', `SELECT name FROM xattr WHERE ino = $1 ORDER BY name`),
  removeXattr: sql('remove_xattr', `DELETE FROM xattr WHERE ino = $1 AND name = $2`),
  enqueuePersist: sql(
    'enqueue_persist',
    `INSERT INTO persist_queue (ino, enqueued_at, next_at) VALUES ($1, $2, $3)
     ON CONFLICT (ino) DO UPDATE SET next_at = excluded.next_at, attempts = 0, last_error = NULL`,
  ),
  dropPersist: sql('drop_persist', `DELETE FROM persist_queue WHERE ino = $1`),
  queueUnwritten: sql(
    'queue_unwritten',
    `INSERT INTO persist_queue (ino, enqueued_at, next_at)
     SELECT n.ino, $2, $2 FROM node n WHERE n.ino = ANY ($1::int8[]) AND n.type = $3 AND NOT n.persisted AND n.in_store AND n.size = 0
       AND NOT EXISTS (SELECT 1 FROM open_write w WHERE w.ino = n.ino)
     ON CONFLICT (ino) DO NOTHING RETURNING ino`,
  ),
  wakeFailedPersists: sql('wake_failed_persists', `UPDATE persist_queue SET next_at = $1 WHERE attempts > 0 AND next_at > $1`),
  duePersists: sql('due_persists', `SELECT ino, attempts, enqueued_at FROM persist_queue WHERE next_at <= $1 ORDER BY next_at, ino LIMIT $2`),
  persistQueue: sql('persist_queue', `SELECT ino, attempts, enqueued_at, next_at, last_error FROM persist_queue ORDER BY enqueued_at, ino`),
  // Exponential backoff, 1 s … 5 min (the exponent capped so the power cannot overflow).
  persistFailed: sql(
    'persist_failed',
    `UPDATE persist_queue SET next_at = $2 + LEAST(300000, 1000 * power(2::float8, LEAST(attempts, 30)))::int8, attempts = attempts + 1, last_error = $3 WHERE ino = $1`,
  ),
  markPersisted: sql('mark_persisted', `UPDATE node SET persisted = true, in_store = true, ufs_fingerprint = $2, synced_at = $3 WHERE ino = $1`),
  markInStore: sql('mark_in_store', `UPDATE node SET in_store = true WHERE ino = $1 AND NOT in_store RETURNING ino`),
  markSynced: sql('mark_synced', `UPDATE node SET synced_at = $1 WHERE ino = ANY ($2::int8[]) RETURNING ino`),
  commitContent: sql(
    'commit_content',
    `UPDATE node SET size = $2, mtime_s = $3, mtime_ns = $4, ctime_s = $5, ctime_ns = $6, container = $7, persisted = $8, in_store = in_store OR persisted OR $8, ufs_fingerprint = $9, synced_at = $10 WHERE ino = $1`,
  ),
  refreshFromUfs: sql(
    'refresh_from_ufs',
    `UPDATE node SET size = $2, mtime_s = $3, mtime_ns = $4, ctime_s = $5, ctime_ns = $6, ufs_fingerprint = $7, synced_at = $8, persisted = true, in_store = true WHERE ino = $1`,
  ),
};



/** Tiers as stored (JSON written by this module); anything unreadable shows as no tiers. */
function parseTiers(json: string): TierInfo[] {
  try {
    const v = JSON.parse(json) as unknown;
    return Array.isArray(v) ? (v as TierInfo[]) : [];
  } catch {
    return [];
  }
}

/** int8 columns as JS numbers: every id, size and time here fits in 2^53, and a value that does not is a bug to surface, not to round. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new StrataError('INTERNAL', `database value ${text} does not fit in a JS number`);
  return n;
}
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pgDriver().types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** SQLSTATEs after which the whole transaction is run again. */
const RETRY_ALWAYS = new Set(['40001', '40P01']);
/**
 * unique_violation: a row a concurrent transaction committed after our snapshot
 * (two creates of one name); the next attempt sees it and answers ALREADY_EXISTS.
 * Retried a few times only, so a genuine bug still surfaces.
 */
const UNIQUE_VIOLATION = '23505';
/**
 * duplicate_object, duplicate_table: DDL that a concurrent transaction committed first (two
 * masters creating one new database's tables; CREATE … IF NOT EXISTS is no guard against
 * that). Retried as a unique violation: the next attempt sees what the other created.
 */
const DUPLICATE_DDL = new Set(['42710', '42P07']);
const MAX_ATTEMPTS = 100;
const MAX_UNIQUE_RETRIES = 5;
/**
 * A transaction that lost its connection before COMMIT was sent did not happen
 * (the server rolls it back), so it is safe to run again on a new connection: a
 * restarted server or a failover of the database is then a pause, not an error.
 */
const MAX_RECONNECTS = 3;
/** SQLSTATE classes of a server that is down, going away or out of resources. */
const UNAVAILABLE_CLASSES = ['08', '57', '53'];

/** The SQLSTATE of an error the server sent; undefined for anything else (a socket error, a bug). */
function sqlState(err: unknown): string | undefined {
  return err instanceof pgDriver().DatabaseError ? err.code : undefined;
}

/**
 * Whether the connection itself failed: a socket error, the driver's "connection
 * terminated", a server shutting down. Not a programming error (those are the
 * built-in error classes) and not an answer of the server to a statement.
 */
function isConnectionFailure(err: unknown): boolean {
  if (err instanceof StrataError || err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError) return false;
  const state = sqlState(err);
  return state === undefined ? err instanceof Error : state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03';
}

/** A database error as a StrataError: StrataErrors pass, a lost server is UNAVAILABLE, a timeout TIMEOUT, anything else INTERNAL. */
function toStoreError(err: unknown): StrataError {
  if (err instanceof StrataError) return err;
  const state = sqlState(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (state === '57014') return new StrataError('TIMEOUT', `metadata database: ${detail}`, { cause: err });
  if (state === '53100') return new StrataError('NO_SPACE', `metadata database: ${detail}`, { cause: err });
  if (isConnectionFailure(err) || (state !== undefined && UNAVAILABLE_CLASSES.includes(state.slice(0, 2)))) {
    return new StrataError('UNAVAILABLE', `metadata database: ${detail}`, { cause: err });
  }
  return new StrataError('INTERNAL', `metadata database${state ? ` (${state})` : ''}: ${detail}`, { cause: err });
}

/**
 * 0: the inode's attributes changed; 1: the name `name` in directory `ino` changed; 2: where the file's blocks are cached changed;
 * 3: only attributes that neither stat nor the file's bytes show changed (see QUIET_COLUMNS in change-feed.ts).
 */
export type ChangeKind = 0 | 1 | 2 | 3;
/** One entry of the change log. */
export interface Change {
  ino: number;
  kind: ChangeKind;
  name: string | null;
}

/** One transaction in progress: its connection and the changes it made, for the change log after COMMIT. */
class Tx {
  readonly changed: Change[] = [];
  constructor(readonly client: pg.PoolClient) {}

  async rows<R>(q: Sql, values: unknown[]): Promise<R[]> {
    return (await this.client.query({ name: q.name, text: q.text, values })).rows as R[];
  }

  async one<R>(q: Sql, values: unknown[]): Promise<R | undefined> {
    return (await this.rows<R>(q, values))[0];
  }

  /** Runs a statement; answers how many rows it touched. */
  async run(q: Sql, values: unknown[]): Promise<number> {
    return (await this.client.query({ name: q.name, text: q.text, values })).rowCount ?? 0;
  }

  /** The inode's attributes changed. */
  node(ino: number): void {
    this.changed.push({ ino, kind: 0, name: null });
  }

  /** Only what neither stat nor the file's bytes show changed: persist state, store fingerprint, sync time, pin, TTL. */
  quiet(ino: number): void {
    this.changed.push({ ino, kind: 3, name: null });
  }

  /** The entry `name` of directory `parent` changed. */
  edge(parent: number, name: string): void {
    this.changed.push({ ino: parent, kind: 1, name });
  }

  /** Where the file's blocks are cached changed. */
  located(ino: number): void {
    this.changed.push({ ino, kind: 2, name: null });
  }
}

/** Something that runs a statement: a transaction's connection or the pool. */
type Runner = Pick<Tx, 'rows' | 'one' | 'run'>;

/** Changes kept for clients that fall behind; one further behind starts over (reset). */
const KEEP = 200_000;
/** Changes answered at most per poll. */
const BATCH = 10_000;

/**
 * The change feed of a `PgMetastore`, with the surface and semantics of
 * `ChangeFeed`: which inodes, names and cache maps changed, in order, with an
 * epoch and a long poll.
 *
 * It is an in-memory log fed after COMMIT rather than a table with a BIGSERIAL
 * seq, because a sequence hands out numbers in insert order, not commit order:
 * with concurrent transactions seq 9 can commit after seq 10 has been served, and a
 * client that moved past 10 would never drop what 9 changed. Numbering changes
 * only once their transaction committed, in this process, makes "seq S" mean
 * "every change up to S is visible" without serializing writers on a counter row,
 * and costs no writes. The price is the one SQLite's TEMP table already pays: the
 * log is per process. Each start (a restart or a standby taking over) has a new
 * epoch, so clients of the previous master reset their caches instead of trusting
 * seqs that meant something else; and only the serving master writes. A
 * standby that opened the store long before it was elected starts a new epoch
 * when it is (`reset`, from `PgMetastore.elected`).
 */
export class PgChangeLog implements ChangeLog {
  epoch = randomBytes(6).toString('hex');
  /** Seq of entries[0]; entries[i] has seq first + i. */
  #first = 1;
  #entries: Change[] = [];
  readonly #waiters = new Set<() => void>();
  #lastWoken = 0;

  /** The seq of the last change committed. */
  async seq(): Promise<number> {
    return this.#seq();
  }

  #seq(): number {
    return this.#first + this.#entries.length - 1;
  }

  /** The value of the `strata-changes` response header. */
  async header(startSeq: number): Promise<string> {
    return `${this.epoch}:${startSeq}:${this.#seq()}`;
  }

  /** Records the changes of a committed transaction and wakes long polls. */
  append(changes: Change[]): void {
    if (changes.length === 0) return;
    for (const c of changes) this.#entries.push(c);
    if (this.#entries.length > KEEP + KEEP / 2) {
      const drop = this.#entries.length - KEEP;
      this.#entries = this.#entries.slice(drop);
      this.#first += drop;
    }
    this.notify();
  }

  /**
   * Changes after `since`; waits up to `waitMs` for one when there are none. A
   * client of another epoch, or one the log no longer reaches, gets `reset`.
   */
  async changes(epoch: string, since: number, waitMs: number, signal?: AbortSignal): Promise<ChangesResponse> {
    const now = this.#seq();
    if (epoch !== this.epoch || since > now || since < this.#first - 1) {
      return { epoch: this.epoch, seq: now, reset: true, inos: [], seqs: [], names: [], located: [] };
    }
    if (since === now && waitMs > 0) await this.#wait(waitMs, signal);
    // Trimmed while we waited: start over.
    if (since < this.#first - 1) return { epoch: this.epoch, seq: this.#seq(), reset: true, inos: [], seqs: [], names: [], located: [] };
    const from = since + 1 - this.#first;
    const batch = this.#entries.slice(from, from + BATCH);
    const seq = since + batch.length;
    // Each inode (and each name) once, with its last change in this batch.
    const nodes = new Map<number, number>();
    const names = new Map<string, [number, string, number]>();
    const located = new Map<number, number>();
    const shown = new Set<number>();
    batch.forEach((c, i) => {
      const s = since + 1 + i;
      if (c.kind === 1) names.set(`${c.ino}/${c.name}`, [c.ino, c.name ?? '', s]);
      else if (c.kind === 2) located.set(c.ino, s);
      else {
        nodes.set(c.ino, s);
        if (c.kind === 0) shown.add(c.ino);
      }
    });
    const inos = [...nodes.keys()];
    return { epoch: this.epoch, seq, reset: false, inos, seqs: [...nodes.values()], names: [...names.values()], located: [...located.entries()], quiet: inos.filter((ino) => !shown.has(ino)) };
  }

  #wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done);
      this.#waiters.add(done);
    });
  }

  /** Wakes waiters if something committed since they were last woken (commits already wake them; kept for ChangeFeed's callers). */
  notify(): void {
    const s = this.#seq();
    if (s === this.#lastWoken) return;
    this.#lastWoken = s;
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Starts a new epoch with an empty log (a master taking over: changes made by
   * another leader meanwhile never reached this log, so its clients start over).
   */
  reset(): void {
    this.epoch = randomBytes(6).toString('hex');
    this.#first = this.#seq() + 1;
    this.#entries = [];
    for (const w of [...this.#waiters]) w();
  }

  async close(): Promise<void> {
    for (const w of [...this.#waiters]) w();
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class PgMetastore implements Metastore {
  readonly #pool: pg.Pool;
  readonly #blockSize: number;
  readonly #persistWaitMs: number;
  readonly #log: Logger | undefined;
  /** Which inodes changed, for client metadata caches. */
  readonly changes = new PgChangeLog();
  /** Counters for metrics: transactions committed, and attempts run again after a conflict. */
  readonly stats = { commits: 0, retries: 0 };
  #closed = false;
  /** When set, every write transaction requires the leader lease it names (see setFence). */
  #fence: (() => MetastoreFence | undefined) | undefined;

  private constructor(pool: pg.Pool, opts: PgMetastoreOptions) {
    this.#pool = pool;
    this.#blockSize = opts.blockSize;
    this.#persistWaitMs = opts.persistInitialWaitMs ?? 0;
    this.#log = opts.logger;
  }

  /**
   * Connects to `url` (postgres://user@host:port/db), creates or upgrades the
   * schema and the root directory, and starts a new pin version. Refuses, with
   * CONFIG, a database whose schema is newer than this code.
   */
  static async open(url: string, opts: PgMetastoreOptions): Promise<PgMetastore> {
    const statementTimeoutMs = opts.statementTimeoutMs ?? 60_000;
    const pool = new (pgDriver().Pool)({
      connectionString: url,
      max: opts.poolSize ?? 10,
      types,
      application_name: 'strata-master',
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      // A hung server or a lost client never holds a request or a row lock forever.
      statement_timeout: statementTimeoutMs,
      idle_in_transaction_session_timeout: opts.idleInTransactionTimeoutMs ?? statementTimeoutMs,
    });
    // An idle connection whose server went away emits here; without a listener that would end the process.
    pool.on('error', (err) => opts.logger?.warn({ err }, 'metadata database connection lost'));
    const store = new PgMetastore(pool, opts);
    try {
      await store.#migrate();
      // A new number at every start: a worker that kept a set from another run (or another database) asks again.
      if (opts.bumpPinVersionAtOpen !== false) await store.#tx((tx) => store.#bumpPinVersion(tx));
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw toStoreError(err);
    }
    return store;
  }

  /**
   * Fences the writes: from now on every write transaction first takes a key-share
   * lock on the lease row `fence()` names and checks that it still names this
   * holder and term and has not expired, in the same SERIALIZABLE transaction;
   * otherwise (or when `fence()` answers undefined) the write fails NOT_LEADER and
   * changes nothing. The lock holds until COMMIT, and the term is a key column of
   * the row (leadership.ts), so a standby cannot take the lease (an UPDATE that
   * changes the term) while a write of the old term is in flight: once a new term
   * exists, no write of an older one commits. The holder's renewals keep the term,
   * so they do not wait for its writes.
   */
  setFence(fence: () => MetastoreFence | undefined): void {
    this.#fence = fence;
  }

  /**
   * This master starts to lead a database it shares with other masters: a new pin
   * version (workers fetch the pinned set again) and a new change-log epoch (clients
   * drop what they cached from any earlier view of this master). The store keeps no
   * other in-memory state of the namespace.
   */
  async elected(): Promise<void> {
    this.changes.reset();
    await this.#tx((tx) => this.#bumpPinVersion(tx));
  }

  async #checkFence(tx: Tx): Promise<void> {
    const f = this.#fence?.();
    if (!f) throw new StrataError('NOT_LEADER', 'this master does not hold the leader lease: it writes nothing');
    const r = await tx.client.query(
      `SELECT 1 FROM ${LEADER_LEASE_TABLE} WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > now() FOR KEY SHARE`,
      [f.name, f.holder, f.term],
    );
    if (r.rowCount !== 1) throw new StrataError('NOT_LEADER', `the leader lease of term ${f.term} is no longer held by this master: it writes nothing`);
  }

  async #migrate(): Promise<void> {
    // Two masters starting at once: one CREATE fails (a unique violation, or "already exists") and is retried; then both see the table.
    await this.#tx(async (tx) => {
      await tx.client.query(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    });
    for (;;) {
      // Each step is one transaction with its version bump: a crash leaves the database at the old version or the new one.
      const done = await this.#tx(async (tx) => {
        const row = await tx.one<{ value: string }>(Q.metaGet, ['schema_version']);
        const version = row ? Number(row.value) : 0;
        if (row && !(Number.isInteger(version) && version >= 1 && version <= PG_SCHEMA_VERSION)) {
          throw new StrataError('CONFIG', `metadata schema version ${row.value} is not supported by this Strata (expects ${PG_SCHEMA_VERSION} or older)`);
        }
        if (version === PG_SCHEMA_VERSION) return true;
        const to = version + 1;
        await MIGRATIONS[to]!(tx, this.#blockSize);
        await tx.client.query(`INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(to)]);
        return to === PG_SCHEMA_VERSION;
      });
      if (done) return;
    }
  }

  /**
   * Runs `fn` as one SERIALIZABLE transaction, again from the start when the
   * database aborts it for a conflict with a concurrent one; after COMMIT, its
   * changes go to the change log. `fn` must not have effects outside the
   * transaction, since it may run several times.
   */
  async #tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    let uniqueRetries = 0;
    let reconnects = 0;
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#connect();
      } catch (err) {
        if (this.#closed || !isConnectionFailure(err) || ++reconnects > MAX_RECONNECTS) throw toStoreError(err);
        await sleep(100 * 2 ** reconnects);
        continue;
      }
      let broken: Error | undefined;
      let reconnect = false;
      // Once COMMIT is sent, a lost connection leaves the outcome unknown: never run that attempt again.
      let committing = false;
      try {
        const tx = new Tx(client);
        await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
        if (this.#fence) await this.#checkFence(tx);
        const out = await fn(tx);
        committing = true;
        await client.query('COMMIT');
        this.stats.commits++;
        this.changes.append(tx.changed);
        return out;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          // The connection is gone: do not give it back to the pool.
          broken = rollbackErr as Error;
        }
        const state = sqlState(err);
        reconnect = !committing && !this.#closed && isConnectionFailure(err) && ++reconnects <= MAX_RECONNECTS;
        const retry = reconnect || (state !== undefined && RETRY_ALWAYS.has(state)) || ((state === UNIQUE_VIOLATION || (state !== undefined && DUPLICATE_DDL.has(state))) && ++uniqueRetries <= MAX_UNIQUE_RETRIES);
        if (!retry || attempt >= MAX_ATTEMPTS) {
          if (retry) this.#log?.warn({ attempts: attempt, state }, 'metadata transaction still conflicting; giving up');
          throw toStoreError(err);
        }
      } finally {
        this.#release(client, broken);
      }
      this.stats.retries++;
      // A server coming back takes a moment. After a conflict: jittered exponential
      // backoff, so the transactions that collided do not collide again in step.
      await sleep(reconnect ? 100 * 2 ** reconnects : Math.random() * Math.min(50, 2 ** Math.min(attempt, 6)));
    }
  }

  /** Runs several reads on one snapshot (never aborted for conflicts: it writes nothing). */
  async #read<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#reading(async () => {
      const client = await this.#connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const out = await fn(new Tx(client));
        await client.query('COMMIT');
        return out;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr as Error;
        }
        throw err;
      } finally {
        this.#release(client, broken);
      }
    });
  }

  /** Runs a read again on a new connection when the connection failed (reads are safe to repeat); errors as StrataErrors. */
  async #reading<T>(read: () => Promise<T>): Promise<T> {
    for (let reconnects = 0; ; ) {
      try {
        return await read();
      } catch (err) {
        if (this.#closed || !isConnectionFailure(err) || ++reconnects > MAX_RECONNECTS) throw toStoreError(err);
        await sleep(100 * 2 ** reconnects);
      }
    }
  }

  /**
   * A connection of the pool for one transaction. While it is checked out, the
   * pool does not listen for its errors: a server that dies between two statements
   * would raise an unhandled 'error' and end the process, so we listen (the next
   * statement then fails, and the transaction with it). Throws the driver's error
   * as it is, so callers can tell a connection failure.
   */
  async #connect(): Promise<pg.PoolClient> {
    if (this.#closed) throw new StrataError('UNAVAILABLE', 'the metadata store is closed');
    const client = await this.#pool.connect();
    client.on('error', this.#onClientError);
    return client;
  }

  #release(client: pg.PoolClient, broken: Error | undefined): void {
    client.off('error', this.#onClientError);
    client.release(broken);
  }

  readonly #onClientError = (err: Error): void => {
    this.#log?.warn({ err }, 'metadata database connection lost in a transaction');
  };

  /** One read statement on its own (autocommit; its snapshot is the statement's). */
  readonly #pooled: Runner = {
    rows: <R>(q: Sql, values: unknown[]): Promise<R[]> =>
      this.#reading(async () => {
        if (this.#closed) throw new StrataError('UNAVAILABLE', 'the metadata store is closed');
        return (await this.#pool.query({ name: q.name, text: q.text, values })).rows as R[];
      }),
    one: async <R>(q: Sql, values: unknown[]): Promise<R | undefined> => (await this.#pooled.rows<R>(q, values))[0],
    run: () => Promise.reject(new StrataError('INTERNAL', 'writes run in transactions, not on the pool')),
  };

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.changes.close();
    await this.#pool.end();
  }

  get blockSize(): number {
    return this.#blockSize;
  }

  // ---- reads ---------------------------------------------------------------

  async getNode(ino: number): Promise<NodeRecord | undefined> {
    return this.#node(this.#pooled, ino);
  }

  async #node(r: Runner, ino: number): Promise<NodeRecord | undefined> {
    const row = await r.one<NodeRow>(Q.node, [ino]);
    return row && nodeRecordFromRow(row);
  }

  async requireNode(ino: number): Promise<NodeRecord> {
    return this.#requireNode(this.#pooled, ino);
  }

  async #requireNode(r: Runner, ino: number): Promise<NodeRecord> {
    const n = await this.#node(r, ino);
    if (!n) throw new StrataError('NOT_FOUND', `no inode ${ino}`);
    return n;
  }

  async lookup(parent: number, name: string): Promise<NodeRecord | undefined> {
    return this.#lookup(this.#pooled, parent, name);
  }

  async #lookup(r: Runner, parent: number, name: string): Promise<NodeRecord | undefined> {
    const row = await r.one<NodeRow>(Q.lookup, [parent, name]);
    return row && nodeRecordFromRow(row);
  }

  async children(parent: number): Promise<NamedNodeRecord[]> {
    return this.#children(this.#pooled, parent);
  }

  async childrenPage(parent: number, after: string | null, limit: number): Promise<ListedNodeRecord[]> {
    return (await this.#pooled.rows<NodeRow & { name: string; has_xattrs: boolean }>(Q.childrenAfter, [parent, after ?? '', limit])).map((row) => ({ ...nodeRecordFromRow(row), name: row.name, xattrs: row.has_xattrs }));
  }

  async #children(r: Runner, parent: number): Promise<NamedNodeRecord[]> {
    return (await r.rows<NodeRow & { name: string }>(Q.children, [parent])).map((row) => ({ ...nodeRecordFromRow(row), name: row.name }));
  }

  /** The path of an inode from the root, through its first parent edge. */
  async pathOf(ino: number): Promise<string> {
    return this.#read(async (tx) => {
      const parts: string[] = [];
      let cur = ino;
      for (let depth = 0; cur !== ROOT_INO; depth++) {
        if (depth > 4096) throw new StrataError('INTERNAL', `inode ${ino} has no path to the root`);
        const e = await tx.one<{ parent: number; name: string }>(Q.parentOf, [cur]);
        if (!e) throw new StrataError('NOT_FOUND', `inode ${ino} is not linked into the namespace`);
        parts.push(e.name);
        cur = e.parent;
      }
      return '/' + parts.reverse().join('/');
    });
  }

  /** True when `ino` is `ancestor` or lies below it. */
  async isDescendant(ino: number, ancestor: number): Promise<boolean> {
    return this.#read(async (tx) => {
      let cur = ino;
      for (let depth = 0; depth < 4096; depth++) {
        if (cur === ancestor) return true;
        if (cur === ROOT_INO) return false;
        const e = await tx.one<{ parent: number }>(Q.parentOf, [cur]);
        if (!e) return false;
        cur = e.parent;
      }
      return false;
    });
  }

  /** A file's blocks with their cached copies on live workers. */
  async blocks(ino: number): Promise<BlockInfo[]> {
    return this.#read(async (tx) => {
      const node = await this.#requireNode(tx, ino);
      type Loc = { block_id: number; worker_id: number; tier: string | null; bytes: number | null };
      const locs = new Map<number, Loc[]>();
      for (const l of await tx.rows<Loc>(Q.locationsOfFile, [ino])) {
        const arr = locs.get(l.block_id) ?? [];
        arr.push(l);
        locs.set(l.block_id, arr);
      }
      return (await tx.rows<{ block_id: number; idx: number; length: number }>(Q.blocksOf, [ino])).map((b) => {
        const here = locs.get(b.block_id) ?? [];
        return {
          id: b.block_id,
          index: b.idx,
          offset: b.idx * node.blockSize,
          length: b.length,
          locations: here.map((l) => l.worker_id),
          // No tier yet: written at commit, before the worker's report.
          cached: here.map((l) => ({ workerId: l.worker_id, tier: l.tier ?? '', bytes: Math.min(l.bytes ?? b.length, b.length) })),
        };
      });
    });
  }

  async block(blockId: number): Promise<BlockRecord | undefined> {
    const b = await this.#pooled.one<{ block_id: number; ino: number; idx: number; length: number }>(Q.block, [blockId]);
    return b && { blockId: b.block_id, ino: b.ino, index: b.idx, length: b.length };
  }

  async nodeCount(): Promise<number> {
    return (await this.#pooled.one<{ n: number }>(Q.nodeCount, []))!.n;
  }

  // ---- namespace mutations (each one transaction) --------------------------

  /** Links a new inode under `parent`; ALREADY_EXISTS if the name is taken. */
  async createChild(parent: number, name: string, node: NewNode, empty?: CreatedEmpty, begin?: boolean): Promise<CreatedNode> {
    return this.#tx(async (tx): Promise<CreatedNode> => {
      const t = node.mtime ?? timespecNow();
      const now = timespecNow();
      const row = await tx.one<{ parent_type: number; taken: boolean } & (NodeRow | { [K in keyof NodeRow]: null })>(Q.createChild, [
        TYPE_CODE[node.type],
        node.mode & 0o7777,
        node.uid,
        node.gid,
        node.size ?? 0,
        node.type === 'directory' ? 2 : 1,
        t.sec,
        t.nsec,
        node.mtime ? t.sec : now.sec,
        node.mtime ? t.nsec : now.nsec,
        node.target ?? null,
        node.rdev ?? 0,
        this.#blockSize,
        node.persisted,
        node.ufsFingerprint ?? null,
        node.syncedAt ?? 0,
        node.type === 'directory' ? 1 : 0,
        parent,
        name,
        now.sec,
        now.nsec,
        node.inStore ?? node.persisted,
      ]);
      if (!row) throw new StrataError('NOT_FOUND', `no inode ${parent}`);
      if (row.parent_type !== TYPE_CODE.directory) throw new StrataError('NOT_DIRECTORY', `inode ${parent} is not a directory`);
      if (row.taken || row.ino === null) throw new StrataError('ALREADY_EXISTS', `'${name}' already exists`);
      let created = nodeRecordFromRow(row as NodeRow);
      tx.node(created.ino);
      tx.edge(parent, name);
      tx.node(parent);
      if (node.type === 'file' && node.persisted && (node.size ?? 0) > 0) {
        await this.#allocateBlocks(tx, created.ino, node.size!, created.pinned);
        created = await this.#requireNode(tx, created.ino);
      }
      if (empty && node.type === 'file') created = await this.#commitEmpty(tx, { ino: created.ino, ufsFingerprint: null, ...empty });
      return begin && node.type === 'file' ? { ...created, begun: await this.#beginWrite(tx, created) } : created;
    });
  }

  /**
   * Links nodes discovered in the under-store, skipping names that meanwhile
   * exist; used by lazy loading, so it never touches parent times. Batched: a
   * listing costs a handful of statements, not a few per entry.
   */
  async loadChildren(parent: number, nodes: { name: string; node: NewNode }[]): Promise<void> {
    await this.#tx(async (tx) => {
      const p = await this.#node(tx, parent);
      if (!p || p.type !== 'directory' || nodes.length === 0) return;
      const taken = new Set((await tx.rows<{ name: string }>(Q.takenNames, [parent, nodes.map((n) => n.name)])).map((r) => r.name));
      // A name listed twice is linked once, as a second insert would find it taken.
      const fresh = nodes.filter(({ name }) => !taken.has(name) && (taken.add(name), true));
      if (fresh.length === 0) return;
      const inos = (await tx.rows<{ v: number }>(Q.nextInos, [fresh.length])).map((r) => r.v);
      const withBlocks = fresh.filter(({ node }) => node.type === 'file' && (node.size ?? 0) > 0).length;
      const containers = withBlocks > 0 ? (await tx.rows<{ v: number }>(Q.nextContainers, [withBlocks])).map((r) => r.v) : [];
      const now = timespecNow();
      const col = <T>(f: (n: NewNode, i: number) => T): T[] => fresh.map(({ node }, i) => f(node, i));
      const containerOf = new Map<number, number>();
      const blocks = { ids: [] as number[], inos: [] as number[], idx: [] as number[], lengths: [] as number[] };
      fresh.forEach(({ node }, i) => {
        if (node.type !== 'file' || (node.size ?? 0) <= 0) return;
        const container = containers[containerOf.size]!;
        containerOf.set(i, container);
        const n = Math.ceil(node.size! / this.#blockSize);
        for (let b = 0; b < n; b++) {
          blocks.ids.push(blockIdOf(container, b));
          blocks.inos.push(inos[i]!);
          blocks.idx.push(b);
          blocks.lengths.push(Math.min(this.#blockSize, node.size! - b * this.#blockSize));
        }
      });
      await tx.run(Q.insertNodes, [
        this.#blockSize,
        p.pinned,
        inos,
        col((n) => TYPE_CODE[n.type]),
        col((n) => n.mode & 0o7777),
        col((n) => n.uid),
        col((n) => n.gid),
        col((n) => n.size ?? 0),
        col((n) => (n.type === 'directory' ? 2 : 1)),
        col((n) => (n.mtime ?? now).sec),
        col((n) => (n.mtime ?? now).nsec),
        col((n) => (n.mtime ?? now).sec),
        col((n) => (n.mtime ?? now).nsec),
        col((n) => n.target ?? null),
        col((n) => n.rdev ?? 0),
        col((n) => n.persisted),
        col((n) => n.ufsFingerprint ?? null),
        col((n) => n.syncedAt ?? 0),
        col((_, i) => containerOf.get(i) ?? 0),
        col((n) => n.inStore ?? n.persisted),
      ]);
      await tx.run(Q.insertEdges, [parent, fresh.map((f) => f.name), inos]);
      if (blocks.ids.length > 0) {
        await tx.run(Q.insertBlocksMany, [blocks.ids, blocks.inos, blocks.idx, blocks.lengths]);
        if (p.pinned) await this.#bumpPinVersion(tx);
      }
      fresh.forEach(({ name }, i) => {
        tx.node(inos[i]!);
        tx.edge(parent, name);
      });
      const subdirs = fresh.filter(({ node }) => node.type === 'directory').length;
      if (subdirs > 0) {
        await tx.run(Q.nlinkAdd, [parent, subdirs]);
        tx.node(parent);
      }
    });
  }

  /** A fresh container id from a sequence: never reused, and no row for concurrent writers to contend on. */
  async #allocateContainer(tx: Tx): Promise<number> {
    return (await tx.one<{ c: number }>(Q.nextContainer, []))!.c;
  }

  /** Gives a file of `size` bytes a fresh container of blocks with no locations. */
  async #allocateBlocks(tx: Tx, ino: number, size: number, pinned: boolean): Promise<void> {
    const container = await this.#allocateContainer(tx);
    const bs = this.#blockSize;
    const n = Math.ceil(size / bs);
    const ids: number[] = [];
    const idx: number[] = [];
    const lengths: number[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(blockIdOf(container, i));
      idx.push(i);
      lengths.push(Math.min(bs, size - i * bs));
    }
    await tx.run(Q.insertBlocks, [ino, ids, idx, lengths]);
    await tx.run(Q.setContainer, [ino, container]);
    tx.node(ino);
    if (n > 0 && pinned) await this.#bumpPinVersion(tx);
  }

  /** Drops a file's blocks; every cached copy is queued for deletion on its worker. */
  async #dropBlocks(tx: Tx, ino: number, pinned: boolean): Promise<void> {
    await this.#dropCachedCopies(tx, ino);
    if ((await tx.run(Q.deleteBlocksOf, [ino])) > 0 && pinned) await this.#bumpPinVersion(tx);
  }

  /** Forgets every cached copy of a file's blocks and queues them for deletion on their workers; returns the bytes. */
  async #dropCachedCopies(tx: Tx, ino: number): Promise<number> {
    const copies = await tx.rows<{ worker_id: number; block_id: number; bytes: number }>(Q.locationsByFile, [ino]);
    if (copies.length === 0) return 0;
    await tx.run(Q.addPendingDeletes, [copies.map((c) => c.worker_id), copies.map((c) => c.block_id)]);
    await tx.run(Q.deleteLocationsOfFile, [ino]);
    tx.located(ino);
    return copies.reduce((sum, c) => sum + c.bytes, 0);
  }

  /** Removes the entry `name` of `parent` (file or empty directory) and frees the inode when unreferenced; with `ino`, only while the name still names it. */
  async removeChild(parent: number, name: string, expect: 'file' | 'directory' | 'any', ino?: number): Promise<NodeRecord> {
    return this.#tx(async (tx) => {
      const node = await this.#lookup(tx, parent, name);
      if (!node) throw new StrataError('NOT_FOUND', `'${name}' does not exist`);
      if (ino !== undefined && node.ino !== ino) throw new StrataError('NOT_FOUND', `'${name}' no longer names inode ${ino}`);
      if (expect === 'file' && node.type === 'directory') throw new StrataError('IS_DIRECTORY', `'${name}' is a directory`);
      if (expect === 'directory' && node.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `'${name}' is not a directory`);
      if (node.type === 'directory' && (await this.#hasChildren(tx, node.ino))) throw new StrataError('NOT_EMPTY', `directory '${name}' is not empty`);
      await this.#unlinkEdge(tx, parent, name, node);
      const now = timespecNow();
      await tx.run(Q.touchDir, [parent, 0, now.sec, now.nsec]);
      tx.node(parent);
      return node;
    });
  }

  async #hasChildren(r: Runner, ino: number): Promise<boolean> {
    return (await r.one<{ any: boolean }>(Q.hasChildren, [ino]))!.any;
  }

  /** Whether `name` in `parent` is the link whose path holds the file's bytes in the store. */
  async isPrimaryLink(parent: number, name: string): Promise<boolean> {
    const r = await this.#pooled.one<{ primary_link: boolean }>(Q.edgeFlag, [parent, name]);
    return !!r && r.primary_link;
  }

  /** Another link of the inode than `name` in `parent` (the one that becomes primary if this one goes). */
  async otherLink(ino: number, parent: number, name: string): Promise<LinkRef | undefined> {
    return this.#pooled.one<LinkRef>(Q.otherLink, [ino, parent, name]);
  }

  /** link(2): a new name for an existing non-directory inode. */
  async link(ino: number, newParent: number, newName: string): Promise<NodeRecord> {
    return this.#tx(async (tx) => {
      const n = await this.#requireNode(tx, ino);
      if (n.type === 'directory') throw new StrataError('NOT_PERMITTED', 'hard links to directories are not allowed');
      const p = await this.#requireNode(tx, newParent);
      if (p.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `inode ${newParent} is not a directory`);
      if (await tx.one(Q.edgeExists, [newParent, newName])) throw new StrataError('ALREADY_EXISTS', `'${newName}' already exists`);
      await tx.run(Q.insertLink, [newParent, newName, ino, false]);
      tx.edge(newParent, newName);
      const now = timespecNow();
      await tx.run(Q.nlinkAdd, [ino, 1]);
      await tx.run(Q.touchCtime, [ino, now.sec, now.nsec]);
      tx.node(ino);
      await tx.run(Q.touchDir, [newParent, 0, now.sec, now.nsec]);
      tx.node(newParent);
      return this.#requireNode(tx, ino);
    });
  }

  async #unlinkEdge(tx: Tx, parent: number, name: string, node: NodeRecord): Promise<void> {
    const gone = await tx.one<{ primary_link: boolean }>(Q.deleteEdge, [parent, name]);
    tx.edge(parent, name);
    if (gone?.primary_link && node.type !== 'directory') {
      const other = await tx.one<{ parent: number; name: string }>(Q.otherLink, [node.ino, parent, name]);
      if (other) {
        await tx.run(Q.setPrimary, [other.parent, other.name]);
        tx.edge(other.parent, other.name);
      }
    }
    if (node.type === 'directory') {
      await tx.run(Q.nlinkAdd, [parent, -1]);
      tx.node(parent);
      await this.#deleteTree(tx, node.ino);
      return;
    }
    const now = timespecNow();
    const left = await tx.one<{ nlink: number }>(Q.unlinkFile, [node.ino, now.sec, now.nsec]);
    tx.node(node.ino);
    if (left && left.nlink <= 0) {
      await this.#dropBlocks(tx, node.ino, node.pinned);
      await tx.run(Q.deleteNode, [node.ino]);
    }
  }

  /** Deletes a directory inode and everything below it (used when the under-store lost a tree). */
  async #deleteTree(tx: Tx, ino: number): Promise<void> {
    // In a few statements however large the tree: the directories, then every name in them at once.
    const dirs = (await tx.rows<{ ino: number }>(Q.subtreeDirs, [ino])).map((r) => r.ino);
    const names = await tx.rows<{ parent: number; name: string; ino: number; primary_link: boolean; type: number }>(Q.deleteEdgesIn, [dirs]);
    // Per file: how many of its names went, and whether its primary one did.
    const files = new Map<number, { gone: number; primaryGone: boolean }>();
    for (const e of names) {
      tx.edge(e.parent, e.name);
      if (e.type === TYPE_CODE.directory) continue;
      const f = files.get(e.ino) ?? { gone: 0, primaryGone: false };
      f.gone++;
      f.primaryGone ||= e.primary_link;
      files.set(e.ino, f);
    }
    if (files.size > 0) {
      const now = timespecNow();
      const inos = [...files.keys()];
      const left = await tx.rows<{ ino: number; nlink: number; pinned: boolean }>(Q.unlinkFiles, [inos, inos.map((i) => files.get(i)!.gone), now.sec, now.nsec]);
      for (const f of left) tx.node(f.ino);
      const dead = left.filter((f) => f.nlink <= 0);
      // Names elsewhere keep a file alive, as unlinks one by one would; the first of them by (parent, name) becomes primary.
      const orphaned = left.filter((f) => f.nlink > 0 && files.get(f.ino)!.primaryGone).map((f) => f.ino);
      if (orphaned.length > 0) for (const e of await tx.rows<{ parent: number; name: string }>(Q.setFirstPrimary, [orphaned])) tx.edge(e.parent, e.name);
      if (dead.length > 0) {
        const deadInos = dead.map((f) => f.ino);
        const copies = await tx.rows<{ worker_id: number; block_id: number; ino: number }>(Q.locationsOfFiles, [deadInos]);
        if (copies.length > 0) {
          await tx.run(Q.addPendingDeletes, [copies.map((c) => c.worker_id), copies.map((c) => c.block_id)]);
          await tx.run(Q.deleteLocationsOfFiles, [deadInos]);
          for (const i of new Set(copies.map((c) => c.ino))) tx.located(i);
        }
        const withBlocks = new Set((await tx.rows<{ ino: number }>(Q.deleteBlocksOfFiles, [deadInos])).map((r) => r.ino));
        if (dead.some((f) => f.pinned && withBlocks.has(f.ino))) await this.#bumpPinVersion(tx);
        await tx.run(Q.deleteNodes, [deadInos]);
      }
    }
    await tx.run(Q.deleteNodes, [dirs]);
    for (const d of dirs) tx.node(d);
  }

  /** POSIX rename(2): replaces a compatible destination atomically; with `srcIno`, only while the source name still names it. */
  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, srcIno?: number): Promise<NodeRecord> {
    return this.#tx(async (tx) => {
      const src = await this.#lookup(tx, srcParent, srcName);
      if (!src) throw new StrataError('NOT_FOUND', `'${srcName}' does not exist`);
      if (srcIno !== undefined && src.ino !== srcIno) throw new StrataError('NOT_FOUND', `'${srcName}' no longer names inode ${srcIno}`);
      const dp = await this.#requireNode(tx, dstParent);
      if (dp.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `destination parent is not a directory`);
      // Serializable isolation makes this walk up from the destination conflict with any concurrent move of its ancestors.
      if (src.type === 'directory' && (await tx.one<{ found: boolean }>(Q.isAncestorOf, [dstParent, src.ino]))!.found) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move a directory into itself`);
      }
      const dst = await this.#lookup(tx, dstParent, dstName);
      if (dst && dst.ino === src.ino) return src;
      if (dst) {
        if (src.type === 'directory' && dst.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `'${dstName}' is not a directory`);
        if (src.type !== 'directory' && dst.type === 'directory') throw new StrataError('IS_DIRECTORY', `'${dstName}' is a directory`);
        if (dst.type === 'directory' && (await this.#hasChildren(tx, dst.ino))) throw new StrataError('NOT_EMPTY', `directory '${dstName}' is not empty`);
        await this.#unlinkEdge(tx, dstParent, dstName, dst);
      }
      const moved = await tx.one<{ primary_link: boolean }>(Q.deleteEdge, [srcParent, srcName]);
      tx.edge(srcParent, srcName);
      await tx.run(Q.insertLink, [dstParent, dstName, src.ino, moved?.primary_link ?? true]);
      tx.edge(dstParent, dstName);
      const movesDir = src.type === 'directory' && srcParent !== dstParent ? 1 : 0;
      const now = timespecNow();
      await tx.run(Q.touchDir, [srcParent, -movesDir, now.sec, now.nsec]);
      tx.node(srcParent);
      if (dstParent !== srcParent) {
        await tx.run(Q.touchDir, [dstParent, movesDir, now.sec, now.nsec]);
        tx.node(dstParent);
      }
      await tx.run(Q.touchCtime, [src.ino, now.sec, now.nsec]);
      tx.node(src.ino);
      return this.#requireNode(tx, src.ino);
    });
  }

  /** renameat2(RENAME_EXCHANGE): the two names swap their inodes (see Metastore.exchange). */
  async exchange(aParent: number, aName: string, bParent: number, bName: string, expect?: { a: number; b: number }): Promise<void> {
    await this.#tx(async (tx) => {
      const a = await this.#lookup(tx, aParent, aName);
      const b = await this.#lookup(tx, bParent, bName);
      if (!a) throw new StrataError('NOT_FOUND', `'${aName}' does not exist`);
      if (!b) throw new StrataError('NOT_FOUND', `'${bName}' does not exist`);
      if (expect && (a.ino !== expect.a || b.ino !== expect.b)) throw new StrataError('NOT_FOUND', `'${aName}' or '${bName}' no longer names the inode it named`);
      if (a.ino === b.ino) return;
      // As in rename: serializable isolation makes these walks conflict with concurrent moves of the ancestors.
      if (
        (a.type === 'directory' && (await tx.one<{ found: boolean }>(Q.isAncestorOf, [bParent, a.ino]))!.found) ||
        (b.type === 'directory' && (await tx.one<{ found: boolean }>(Q.isAncestorOf, [aParent, b.ino]))!.found)
      ) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move a directory into itself`);
      }
      const aPrimary = !!(await tx.one<{ primary_link: boolean }>(Q.edgeFlag, [aParent, aName]))?.primary_link;
      const bPrimary = !!(await tx.one<{ primary_link: boolean }>(Q.edgeFlag, [bParent, bName]))?.primary_link;
      await tx.run(Q.setEdge, [aParent, aName, b.ino, bPrimary]);
      tx.edge(aParent, aName);
      await tx.run(Q.setEdge, [bParent, bName, a.ino, aPrimary]);
      tx.edge(bParent, bName);
      const dirsMoved = aParent === bParent ? 0 : (a.type === 'directory' ? 1 : 0) - (b.type === 'directory' ? 1 : 0);
      const now = timespecNow();
      await tx.run(Q.touchDir, [aParent, -dirsMoved, now.sec, now.nsec]);
      tx.node(aParent);
      if (bParent !== aParent) {
        await tx.run(Q.touchDir, [bParent, dirsMoved, now.sec, now.nsec]);
        tx.node(bParent);
      }
      for (const ino of [a.ino, b.ino]) {
        await tx.run(Q.touchCtime, [ino, now.sec, now.nsec]);
        tx.node(ino);
      }
    });
  }

  async setAttributes(ino: number, attrs: AttributeChanges): Promise<NodeRecord> {
    return this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      const sets: string[] = [];
      const args: number[] = [ino];
      const set = (column: string, value: number) => {
        args.push(value);
        sets.push(`${column} = $${args.length}`);
      };
      if (attrs.mode !== undefined) set('mode', attrs.mode & 0o7777);
      if (attrs.uid !== undefined) set('uid', attrs.uid);
      if (attrs.gid !== undefined) set('gid', attrs.gid);
      if (attrs.atime) set('atime_s', attrs.atime.sec), set('atime_ns', attrs.atime.nsec);
      if (attrs.mtime) set('mtime_s', attrs.mtime.sec), set('mtime_ns', attrs.mtime.nsec);
      const now = timespecNow();
      set('ctime_s', now.sec);
      set('ctime_ns', now.nsec);
      // Unnamed: the column list varies per call.
      await tx.client.query(`UPDATE node SET ${sets.join(', ')} WHERE ino = $1`, args);
      tx.node(ino);
      return this.#requireNode(tx, ino);
    });
  }

  /** Starts a new version of a file's content: a fresh container of block ids. */
  async openWriteOf(container: number): Promise<number | undefined> {
    return (await this.#pooled.one<{ ino: string | number }>(Q.openWriteOf, [container]).then((r) => (r ? Number(r.ino) : undefined)));
  }

  async unpersistedContainers(containers: number[]): Promise<number[]> {
    if (containers.length === 0) return [];
    const rows = await this.#pooled.rows<{ container: string | number }>(Q.unpersistedContainers, [[...new Set(containers)]]);
    return rows.map((r) => Number(r.container));
  }

  async beginWrite(ino: number): Promise<{ containerId: number; blockSize: number }> {
    return this.#tx(async (tx) => this.#beginWrite(tx, await this.#requireNode(tx, ino)));
  }

  async #beginWrite(tx: Tx, n: NodeRecord): Promise<{ containerId: number; blockSize: number }> {
    if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${n.ino} is not a regular file`);
    const containerId = await this.#allocateContainer(tx);
    await tx.run(Q.insertOpenWrite, [containerId, n.ino, Date.now()]);
    return { containerId, blockSize: n.blockSize };
  }

  /**
   * Makes a file empty as one write: no worker took part (nothing to cache), the
   * under-store already has the empty object when `ufsFingerprint` is set, and
   * ASYNC_THROUGH queues its persist like any other write.
   */
  async commitEmpty(req: CommitEmptyRequest): Promise<NodeRecord> {
    return this.#tx((tx) => this.#commitEmpty(tx, req));
  }

  /** commitEmpty inside the caller's transaction. */
  async #commitEmpty(tx: Tx, req: CommitEmptyRequest): Promise<NodeRecord> {
    const n = await this.#requireNode(tx, req.ino);
    if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${req.ino} is not a regular file`);
    await this.#dropBlocks(tx, req.ino, n.pinned);
    const container = await this.#allocateContainer(tx);
    const t = req.mtime ?? timespecNow();
    // The content changed when the client wrote it (its mtime), not at this commit; a later chmod's ctime stays.
    const now = req.mtime ? laterTimespec(n.ctime, t) : timespecNow();
    await tx.run(Q.commitContent, [req.ino, 0, t.sec, t.nsec, now.sec, now.nsec, container, !!req.ufsFingerprint, req.ufsFingerprint, Date.now()]);
    tx.node(req.ino);
    if (!req.ufsFingerprint && req.writeType === 'ASYNC_THROUGH') await this.#enqueuePersist(tx, req.ino, Math.max(this.#persistWaitMs, req.persistDelayMs ?? 0));
    else await tx.run(Q.dropPersist, [req.ino]);
    return this.#requireNode(tx, req.ino);
  }

  /** Replaces a file's content with the blocks a worker wrote; the old blocks are queued for deletion. */
  async commitWrite(req: WriteCommitRequest): Promise<NodeRecord> {
    return this.#tx(async (tx) => {
      const n = await this.#requireNode(tx, req.ino);
      if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${req.ino} is not a regular file`);
      const bs = n.blockSize;
      const expected = Math.ceil(req.size / bs);
      if (req.blocks.length !== expected) throw new StrataError('BAD_REQUEST', `a ${req.size}-byte file has ${expected} blocks, got ${req.blocks.length}`);
      req.blocks.forEach((b, i) => {
        if (b.id !== blockIdOf(req.containerId, i)) throw new StrataError('BAD_REQUEST', `block ${i} has id ${b.id}, expected ${blockIdOf(req.containerId, i)}`);
        if (b.length !== Math.min(bs, req.size - i * bs)) throw new StrataError('BAD_REQUEST', `block ${i} has a wrong length ${b.length}`);
      });
      const open = await tx.one<{ ino: number }>(Q.openWriteOf, [req.containerId]);
      if (!open || open.ino !== req.ino) {
        // Committed already, begun for another file, or expired (its copies are being deleted): the bytes are not safe to point at.
        throw new StrataError('TIMEOUT', `write ${req.containerId} of inode ${req.ino} is not in progress (expired or committed already); write the file again`);
      }
      const worker = await tx.one(Q.workerById, [req.workerId]);
      await this.#dropBlocks(tx, req.ino, n.pinned);
      const reported = await this.#closeWrite(tx, req.containerId);
      await tx.run(Q.insertBlocks, [req.ino, req.blocks.map((b) => b.id), req.blocks.map((_, i) => i), req.blocks.map((b) => b.length)]);
      const kept = req.blocks.filter((b) => !b.uncached);
      if (worker && req.cached !== false && kept.length > 0) {
        // The writer's own reports of this write say which tier holds each block; until then, none.
        const seen = new Map(reported.filter((r) => r.worker_id === req.workerId).map((r) => [r.block_id, r]));
        await tx.run(Q.addLocations, [
          req.workerId,
          kept.map((b) => b.id),
          kept.map((b) => seen.get(b.id)?.tier ?? null),
          kept.map((b) => seen.get(b.id)?.bytes ?? b.length),
        ]);
        tx.located(req.ino);
      }
      // Copies of this write reported by any other worker are not where the client wrote: drop them.
      const strays = reported.filter((r) => r.worker_id !== req.workerId || !req.blocks.some((b) => b.id === r.block_id));
      if (strays.length > 0) await tx.run(Q.addPendingDeletes, [strays.map((r) => r.worker_id), strays.map((r) => r.block_id)]);
      // The pinned set changed: its workers must learn the new block ids.
      if (n.pinned && req.blocks.length > 0) await this.#bumpPinVersion(tx);
      const t = req.mtime ?? timespecNow();
      // The content changed when the client wrote it (its mtime), not at this commit; a later chmod's ctime stays.
      const now = req.mtime ? laterTimespec(n.ctime, t) : timespecNow();
      await tx.run(Q.commitContent, [req.ino, req.size, t.sec, t.nsec, now.sec, now.nsec, req.containerId, !!req.ufsFingerprint, req.ufsFingerprint, Date.now()]);
      tx.node(req.ino);
      // The queue row commits with the file, so an acknowledged ASYNC_THROUGH write is never forgotten.
      if (!req.ufsFingerprint && req.writeType === 'ASYNC_THROUGH') await this.#enqueuePersist(tx, req.ino, this.#persistWaitMs);
      else await tx.run(Q.dropPersist, [req.ino]);
      return this.#requireNode(tx, req.ino);
    });
  }

  /**
   * Brings a file in line with its under-store object after an out-of-band change:
   * new size and mtime, fresh blocks, cached copies dropped. With `guard`, only
   * while the file is still what the sync saw before asking the store.
   */
  async refreshFromUfs(ino: number, size: number, mtime: Timespec, fingerprint: string, guard?: Omit<SyncGuard, 'ino'>): Promise<boolean> {
    return this.#tx(async (tx) => {
      const n = await this.#node(tx, ino);
      if (!n || n.type !== 'file') return false;
      if (guard && !matchesGuard(n, guard)) return false;
      await this.#dropBlocks(tx, ino, n.pinned);
      const now = timespecNow();
      await tx.run(Q.refreshFromUfs, [ino, size, mtime.sec, mtime.nsec, now.sec, now.nsec, fingerprint, Date.now()]);
      tx.node(ino);
      if (size > 0) await this.#allocateBlocks(tx, ino, size, n.pinned);
      return true;
    });
  }

  // ---- extended attributes ------------------------------------------------------

  /** setxattr(2): flags 1 = XATTR_CREATE (must not exist), 2 = XATTR_REPLACE (must exist). */
  async setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    await this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      const exists = await tx.one(Q.xattrExists, [ino, name]);
      if (flags & 1 && exists) throw new StrataError('ALREADY_EXISTS', `attribute ${name} exists`);
      if (flags & 2 && !exists) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
      await tx.run(Q.setXattr, [ino, name, value]);
      const now = timespecNow();
      await tx.run(Q.touchCtime, [ino, now.sec, now.nsec]);
      tx.node(ino);
    });
  }

  async getXattr(ino: number, name: string): Promise<Buffer> {
    return this.#read(async (tx) => {
      await this.#requireNode(tx, ino);
      const row = await tx.one<{ value: Buffer }>(Q.getXattr, [ino, name]);
      if (!row) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
      return row.value;
    });
  }

  async listXattrs(ino: number): Promise<string[]> {
    return this.#read(async (tx) => {
      await this.#requireNode(tx, ino);
      return (await tx.rows<{ name: string }>(Q.listXattrs, [ino])).map((r) => r.name);
    });
  }

  async removeXattr(ino: number, name: string): Promise<void> {
    await this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      if ((await tx.run(Q.removeXattr, [ino, name])) === 0) throw new StrataError('NO_ATTRIBUTE', `no attribute ${name}`);
      const now = timespecNow();
      await tx.run(Q.touchCtime, [ino, now.sec, now.nsec]);
      tx.node(ino);
    });
  }

  // ---- persist queue (ASYNC_THROUGH) ------------------------------------------

  async #enqueuePersist(tx: Tx, ino: number, delayMs: number): Promise<void> {
    const now = Date.now();
    await tx.run(Q.enqueuePersist, [ino, now, now + delayMs]);
  }

  async enqueuePersist(ino: number): Promise<void> {
    await this.#tx((tx) => this.#enqueuePersist(tx, ino, 0));
  }

  /** Files due for persisting, oldest first. */
  async duePersists(now: number, limit: number): Promise<DuePersist[]> {
    return (await this.#pooled.rows<{ ino: number; attempts: number; enqueued_at: number }>(Q.duePersists, [now, limit])).map((r) => ({
      ino: r.ino,
      attempts: r.attempts,
      enqueuedAt: r.enqueued_at,
    }));
  }

  async persistQueue(): Promise<QueuedPersist[]> {
    type Row = { ino: number; attempts: number; enqueued_at: number; next_at: number; last_error: string | null };
    return (await this.#pooled.rows<Row>(Q.persistQueue, [])).map((r) => ({
      ino: r.ino,
      attempts: r.attempts,
      enqueuedAt: r.enqueued_at,
      nextAt: r.next_at,
      lastError: r.last_error,
    }));
  }

  /** Records a failed attempt; the next one waits with exponential backoff (1 s … 5 min). */
  async persistFailed(ino: number, error: string): Promise<void> {
    await this.#tx((tx) => tx.run(Q.persistFailed, [ino, Date.now(), error.slice(0, 500)]));
  }

  /**
   * Marks a file persisted if its content is still the version that was persisted,
   * and takes it off the queue. A queue entry of a newer version stays: it was
   * queued by that version's commit, and that content is not in the store yet.
   */
  async markPersisted(ino: number, container: number, fingerprint: string): Promise<boolean> {
    return this.#tx(async (tx) => {
      const n = await this.#node(tx, ino);
      if (n && n.type === 'file' && n.container !== container) {
        // An older version's object is at its path now.
        if (!n.inStore) await this.#markInStore(tx, ino);
        return false;
      }
      await tx.run(Q.dropPersist, [ino]);
      if (!n || n.type !== 'file') return false;
      await tx.run(Q.markPersisted, [ino, fingerprint, Date.now()]);
      tx.quiet(ino);
      return true;
    });
  }

  async markInStore(ino: number): Promise<void> {
    await this.#tx((tx) => this.#markInStore(tx, ino));
  }

  async #markInStore(tx: Tx, ino: number): Promise<void> {
    if ((await tx.rows(Q.markInStore, [ino])).length > 0) tx.quiet(ino);
  }

  /**
   * Drops the queue entry of a node that no longer needs persisting (gone, not a
   * file, or persisted); checked in the same transaction, so a write that queued
   * the file again meanwhile keeps its entry.
   */
  async dropPersist(ino: number): Promise<boolean> {
    return this.#tx(async (tx) => {
      const n = await this.#node(tx, ino);
      if (n && n.type === 'file' && n.persistState !== 'persisted') return false;
      return (await tx.run(Q.dropPersist, [ino])) > 0;
    });
  }

  /** True when a file at or below `ino` has bytes not yet in its under-store. */
  async hasUnpersisted(ino: number): Promise<boolean> {
    return (await this.#pooled.one<{ found: boolean }>(Q.hasUnpersisted, [ino]))!.found;
  }

  async markSyncedMany(inos: number[], at = Date.now()): Promise<void> {
    if (inos.length === 0) return;
    await this.#tx(async (tx) => {
      for (const r of await tx.rows<{ ino: number }>(Q.markSynced, [at, inos])) {
        tx.quiet(r.ino);
        if (at === 0) tx.edge(r.ino, ''); // the listing is to be read again (ChangeFeed.listingChanged)
      }
    });
  }

  async markSynced(ino: number, at = Date.now()): Promise<void> {
    await this.markSyncedMany([ino], at);
  }

  /**
   * Removes a child that vanished from the under-store (the whole subtree for
   * directories). With `guard`, only while `name` still names the node the sync
   * saw, unchanged, and (a file) through its primary link.
   */
  async forgetChild(parent: number, name: string, guard?: SyncGuard): Promise<boolean> {
    return this.#tx(async (tx) => {
      const node = await this.#lookup(tx, parent, name);
      if (!node) return false;
      if (guard) {
        if (node.ino !== guard.ino || !matchesGuard(node, guard)) return false;
        if (node.type !== 'directory' && !(await tx.one<{ primary_link: boolean }>(Q.edgeFlag, [parent, name]))?.primary_link) return false;
      }
      await this.#forget(tx, parent, name, node);
      return true;
    });
  }

  /** Removes `name` of `parent` (`node`): a directory with its subtree, a file's link as an unlink would. */
  async #forget(tx: Tx, parent: number, name: string, node: NodeRecord): Promise<void> {
    if (node.type === 'directory') {
      await tx.run(Q.deleteEdge, [parent, name]);
      tx.edge(parent, name);
      await tx.run(Q.nlinkAdd, [parent, -1]);
      tx.node(parent);
      await this.#deleteTree(tx, node.ino);
    } else {
      // Other hard links keep the inode alive, as an unlink would.
      await this.#unlinkEdge(tx, parent, name, node);
    }
  }

  // ---- workers -------------------------------------------------------------

  /**
   * Registers a worker by its persistent identity (a uuid kept in its home), so a
   * restarted worker on a new port keeps its id and its cached blocks stay known.
   * `req.blocks` is a full report: it replaces what the master knew of the worker.
   */
  async registerWorker(req: RegisterWorkerRequest): Promise<number> {
    return this.#tx(async (tx) => {
      const now = Date.now();
      const existing = await tx.one<{ id: number }>(Q.workerByUuid, [req.uuid]);
      const tiers = JSON.stringify(req.tiers);
      let id: number;
      if (existing) {
        id = existing.id;
        await tx.run(Q.updateWorker, [id, req.capacityBytes, req.usedBytes, tiers, now]);
        await tx.run(Q.updateWorkerAddress, [id, req.address, req.host, req.pageSize]);
      } else {
        id = (await tx.one<{ id: number }>(Q.insertWorker, [req.uuid, req.address, req.host, tiers, req.pageSize, req.capacityBytes, req.usedBytes, now]))!.id;
      }
      // Whoever had this address before is gone: it cannot share a port with a live worker.
      for (const w of await tx.rows<{ id: number }>(Q.otherLiveWorkersAt, [req.address, id])) {
        await tx.run(Q.markLost, [w.id]);
        await this.#deleteLocationsOfWorker(tx, w.id);
      }
      // A full report replaces what we knew; blocks no file refers to any more are deleted on the worker.
      await this.#deleteLocationsOfWorker(tx, id);
      await this.#reported(tx, id, req.blocks);
      // Persists that failed (for want of this worker, maybe) are due now, not after a backoff of up to 5 minutes;
      // attempts are kept. Entries still in their first wait are left to it.
      await tx.run(Q.wakeFailedPersists, [now]);
      return id;
    });
  }

  async #deleteLocationsOfWorker(tx: Tx, workerId: number): Promise<void> {
    for (const r of await tx.rows<{ ino: number }>(Q.deleteLocationsOfWorker, [workerId])) tx.located(r.ino);
  }

  /**
   * Blocks a worker says it holds, in one batch: a location (tier and bytes
   * updated) for a block of a file, a copy held for a write in flight, or a
   * deletion when no file has the block. The same as taking them one by one: no
   * report changes how another one of the batch is classified.
   */
  async #reported(tx: Tx, workerId: number, reports: BlockReport[]): Promise<void> {
    if (reports.length === 0) return;
    const ids = [...new Set(reports.map((b) => b.id))];
    const known = new Map((await tx.rows<{ block_id: number; pending: boolean }>(Q.classifyBlocks, [workerId, ids])).map((r) => [r.block_id, r.pending]));
    const unknown = ids.filter((id) => !known.has(id));
    const writing = new Set(
      unknown.length ? (await tx.rows<{ container: number }>(Q.openWritesAmong, [[...new Set(unknown.map((id) => Math.floor(id / BLOCKS_PER_CONTAINER)))]])).map((r) => r.container) : [],
    );
    // Repeats of one block merge as successive reports would: the last bytes, the last tier given (a location keeps its tier when a report has none).
    const located = new Map<number, { tier: string | null; bytes: number | null }>();
    const unclaimed = new Map<number, { tier: string | null; bytes: number | null }>();
    const orphans: number[] = [];
    for (const b of reports) {
      const pending = known.get(b.id);
      if (pending === true) {
        // A deletion queued for this copy wins: an incremental report sent before a
        // `free` reached the worker cannot be told from a copy cached again after
        // it, and keeping a freed copy would break the free. The worker deletes it
        // with this beat's answer and reports it again if it is read again.
      } else if (pending === false) {
        located.set(b.id, { tier: b.tier ?? located.get(b.id)?.tier ?? null, bytes: b.bytes ?? null });
      } else if (writing.has(Math.floor(b.id / BLOCKS_PER_CONTAINER))) {
        // Written right now and not committed yet: the commit (or the write's expiry) decides.
        unclaimed.set(b.id, { tier: b.tier ?? null, bytes: b.bytes ?? null });
      } else {
        orphans.push(b.id);
      }
    }
    if (located.size > 0) {
      const rows = [...located];
      const changed = await tx.rows<{ ino: number }>(Q.addLocations, [workerId, rows.map(([id]) => id), rows.map(([, l]) => l.tier), rows.map(([, l]) => l.bytes)]);
      for (const r of changed) tx.located(r.ino);
    }
    if (unclaimed.size > 0) {
      const rows = [...unclaimed];
      await tx.run(Q.addUnclaimedMany, [workerId, rows.map(([id]) => id), rows.map(([, l]) => l.tier), rows.map(([, l]) => l.bytes)]);
    }
    if (orphans.length > 0) await tx.run(Q.addPendingDeletes, [orphans.map(() => workerId), orphans]);
  }

  /** Ends a write in flight: forgets it and answers the copies workers reported for it. */
  async #closeWrite(tx: Tx, container: number): Promise<{ worker_id: number; block_id: number; tier: string | null; bytes: number | null }[]> {
    await tx.run(Q.deleteOpenWrite, [container]);
    return tx.rows(Q.takeUnclaimed, [blockIdOf(container, 0), blockIdOf(container + 1, 0)]);
  }

  /**
   * Writes begun before `before` and not renewed since (the client or worker went
   * away mid-write): their reported copies are orphans and get deleted.
   */
  async expireOpenWrites(before: number): Promise<{ writes: number; copies: number; queued: number[] }> {
    return this.#tx(async (tx) => {
      const rows = await tx.rows<{ container: number; ino: number }>(Q.expireOpenWrites, [before]);
      if (rows.length === 0) return { writes: 0, copies: 0, queued: [] };
      const stale = rows.map((r) => r.container);
      const orphans = await tx.rows<{ worker_id: number; block_id: number }>(Q.takeUnclaimedOf, [stale]);
      if (orphans.length > 0) await tx.run(Q.addPendingDeletes, [orphans.map((r) => r.worker_id), orphans.map((r) => r.block_id)]);
      const queued = await this.#queueUnwritten(tx, [...new Set(rows.map((r) => Number(r.ino)))]);
      return { writes: stale.length, copies: orphans.length, queued };
    });
  }

  /** Queues those of `inos` to be stored empty whose every write ended uncommitted (see Metastore.abandonWrite). */
  async #queueUnwritten(tx: Tx, inos: number[]): Promise<number[]> {
    return (await tx.rows<{ ino: number }>(Q.queueUnwritten, [inos, Date.now(), NODE_TYPE_CODE.file])).map((r) => Number(r.ino)).sort((a, b) => a - b);
  }

  async abandonWrite(container: number, opts?: { storeIfUnwritten?: boolean }): Promise<boolean> {
    return this.#tx(async (tx) => {
      const ino = (await tx.one<{ ino: number }>(Q.openWriteOf, [container]))?.ino;
      const orphans = await this.#closeWrite(tx, container);
      if (orphans.length > 0) await tx.run(Q.addPendingDeletes, [orphans.map((r) => r.worker_id), orphans.map((r) => r.block_id)]);
      return ino !== undefined && opts?.storeIfUnwritten === true && (await this.#queueUnwritten(tx, [Number(ino)])).length > 0;
    });
  }

  /**
   * Records a heartbeat: usage, tiers and the incremental block report. Answers the
   * blocks to delete and, when the worker's pin set is out of date, the current one;
   * null when the worker is unknown or lost (it must register again).
   */
  async heartbeat(req: HeartbeatRequest): Promise<HeartbeatAnswer | null> {
    return this.#tx(async (tx) => {
      const w = await tx.one<{ live: boolean }>(Q.workerById, [req.workerId]);
      if (!w || !w.live) return null;
      await tx.run(Q.updateWorker, [req.workerId, req.capacityBytes, req.usedBytes, JSON.stringify(req.tiers), Date.now()]);
      // Removals first: a block dropped and cached again since the last beat is in both lists.
      if (req.removedBlocks.length > 0) {
        for (const r of await tx.rows<{ ino: number }>(Q.removeLocations, [req.workerId, req.removedBlocks])) tx.located(r.ino);
        await tx.run(Q.clearPendingDeletes, [req.workerId, req.removedBlocks]);
      }
      if (req.openWrites?.length) await tx.run(Q.renewOpenWrites, [Date.now(), req.openWrites]);
      await this.#reported(tx, req.workerId, req.addedBlocks);
      const deleteBlocks = (await tx.rows<{ block_id: number }>(Q.pendingDeletes, [req.workerId])).map((r) => r.block_id);
      const version = await this.#pinVersion(tx);
      return req.pinVersion === version ? { deleteBlocks } : { deleteBlocks, pins: { version, blocks: await this.#pinnedBlocks(tx) } };
    });
  }

  /** Marks workers silent since `before` as lost and drops their block locations. */
  async expireWorkers(before: number): Promise<number[]> {
    return this.#tx(async (tx) => {
      const lost = (await tx.rows<{ id: number }>(Q.staleWorkers, [before])).map((r) => r.id);
      for (const id of lost) {
        await tx.run(Q.markLost, [id]);
        await this.#deleteLocationsOfWorker(tx, id);
      }
      return lost;
    });
  }

  async workerLeft(workerId: number): Promise<boolean> {
    return this.#tx(async (tx) => {
      if ((await tx.run(Q.markLeft, [workerId])) === 0) return false;
      await this.#deleteLocationsOfWorker(tx, workerId);
      return true;
    });
  }

  async workers(): Promise<WorkerInfo[]> {
    type Row = { id: number; address: string; host: string; tiers: string; page_size: number; capacity: number; used: number; last_heartbeat: number; live: boolean };
    return (await this.#pooled.rows<Row>(Q.workers, [])).map((w) => ({
      id: w.id,
      address: w.address,
      host: w.host,
      tiers: parseTiers(w.tiers),
      pageSize: w.page_size,
      capacityBytes: w.capacity,
      usedBytes: w.used,
      lastHeartbeatMs: w.last_heartbeat,
      live: w.live,
    }));
  }

  // ---- pins, TTL, free, du ---------------------------------------------------

  /** Version of the pinned-block set; it changes whenever the set may have. */
  async pinVersion(): Promise<number> {
    return this.#pinVersion(this.#pooled);
  }

  async #pinVersion(r: Runner): Promise<number> {
    return Number((await r.one<{ value: string }>(Q.metaGet, ['pin_version']))!.value);
  }

  /** Every block of a pinned file: what workers must never evict. */
  async pinnedBlocks(): Promise<number[]> {
    return this.#pinnedBlocks(this.#pooled);
  }

  async #pinnedBlocks(r: Runner): Promise<number[]> {
    return (await r.rows<{ block_id: number }>(Q.pinnedBlocks, [])).map((row) => row.block_id);
  }

  async #bumpPinVersion(tx: Tx): Promise<void> {
    await tx.run(Q.bumpPinVersion, [Date.now()]);
  }

  /**
   * Pins or unpins a file, or a directory with everything below it (directories
   * too, so files created or found in them later start pinned). Returns how many
   * files changed state.
   */
  async setPinned(ino: number, pinned: boolean): Promise<{ files: number }> {
    return this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      const files = (await tx.rows<{ pinned: boolean }>(Q.subtreeFiles, [ino])).filter((f) => f.pinned !== pinned).length;
      const changed = await tx.rows<{ ino: number }>(Q.setPinnedSubtree, [ino, pinned]);
      for (const r of changed) tx.quiet(r.ino);
      if (changed.length > 0) await this.#bumpPinVersion(tx);
      return { files };
    });
  }

  /** Sets (epoch ms) or clears (null) the time to live of a node. */
  async setTtl(ino: number, expiresAtMs: number | null, action: TtlAction): Promise<void> {
    await this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      await tx.run(Q.setTtl, [ino, expiresAtMs, expiresAtMs === null ? null : action]);
      tx.quiet(ino);
    });
  }

  /** Nodes whose TTL passed, oldest first (an indexed range scan). */
  async expiredTtls(now: number, limit = 100): Promise<ExpiredTtl[]> {
    return (await this.#pooled.rows<{ ino: number; ttl_expires_at: number; ttl_action: string | null }>(Q.expiredTtls, [now, limit])).map((r) => ({
      ino: r.ino,
      expiresAtMs: r.ttl_expires_at,
      action: r.ttl_action === 'delete' ? 'delete' : 'free',
    }));
  }

  /** Clears a TTL that fired, unless it was set again meanwhile. */
  async clearTtl(ino: number, expiresAtMs: number): Promise<void> {
    await this.#tx(async (tx) => {
      if ((await tx.run(Q.clearTtl, [ino, expiresAtMs])) > 0) tx.quiet(ino);
    });
  }

  /** Moves a TTL whose action failed to `at`, unless it was set again meanwhile. */
  async rescheduleTtl(ino: number, expiresAtMs: number, at: number): Promise<void> {
    await this.#tx(async (tx) => {
      if ((await tx.run(Q.rescheduleTtl, [ino, expiresAtMs, at])) > 0) tx.quiet(ino);
    });
  }

  /**
   * Drops every cached copy of the persisted files at or below `ino`: locations go
   * now, and each copy is queued for deletion on its worker (sent with the next
   * heartbeat). Files whose bytes are not in the under-store yet keep their copies.
   */
  async free(ino: number): Promise<FreeResponse> {
    return this.#tx(async (tx) => {
      await this.#requireNode(tx, ino);
      const out: FreeResponse = { files: 0, bytes: 0, skippedNotPersisted: 0 };
      for (const f of await tx.rows<{ ino: number; persisted: boolean }>(Q.subtreeFiles, [ino])) {
        if (!f.persisted) {
          out.skippedNotPersisted++;
          continue;
        }
        out.files++;
        out.bytes += await this.#dropCachedCopies(tx, f.ino);
      }
      return out;
    });
  }

  /** Size and cached bytes of the subtree at `ino` (cached: per block, the largest copy on a live worker). */
  async du(ino: number): Promise<DuResponse> {
    return this.#read(async (tx) => {
      await this.#requireNode(tx, ino);
      const c = (await tx.one<{ files: number; dirs: number; size: number }>(Q.duCounts, [ino]))!;
      const cached = (await tx.one<{ cached: number }>(Q.duCached, [ino]))!.cached;
      return { files: c.files, directories: c.dirs, size: c.size, cachedBytes: cached };
    });
  }

  async cachedBytes(inos: readonly number[]): Promise<number> {
    return (await this.#pooled.one<{ cached: number }>(Q.cachedOf, [[...new Set(inos)]]))!.cached;
  }

  // ---- mount table ---------------------------------------------------------

  async mounts(): Promise<MountRecord[]> {
    return this.#pooled.rows<MountRecord>(Q.mounts, []);
  }

  async setMount(path: string, uri: string, options = '{}'): Promise<void> {
    await this.#tx((tx) => tx.run(Q.insertMount, [path, uri, options]));
  }

  async claimMount(path: string, uri: string, options: string): Promise<MountRecord> {
    return this.#tx(async (tx) => {
      await tx.run(Q.claimMount, [path, uri, options]);
      return (await tx.one<MountRecord>(Q.mountAt, [path]))!;
    });
  }

  async removeMount(path: string): Promise<void> {
    await this.#tx((tx) => tx.run(Q.deleteMount, [path]));
  }

  async unmount(path: string, parent: number, name: string): Promise<void> {
    await this.#tx(async (tx) => {
      const node = await this.#lookup(tx, parent, name);
      // Serializable: a create or a commit below the mount point that this check missed makes one of the two transactions fail and run again.
      if (node && (await tx.one<{ found: boolean }>(Q.hasUnpersisted, [node.ino]))!.found) throw new StrataError('BUSY', `files under ${path} are not persisted yet`);
      await tx.run(Q.deleteMount, [path]);
      if (node) await this.#forget(tx, parent, name, node);
    });
  }
}

/** Whether a node is still what a sync saw before it asked the under-store. */
function matchesGuard(n: NodeRecord, guard: Omit<SyncGuard, 'ino'>): boolean {
  return n.ufsFingerprint === guard.ufsFingerprint && n.syncedAt < guard.syncedBefore;
}
