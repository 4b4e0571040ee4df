/**
 * The master's metadata store: the namespace (inodes and names), file blocks and
 * where they are cached, the worker registry, the persist queue, the mount table,
 * pins and TTLs. One interface at the level of whole operations, so the master
 * runs on any engine that implements it: SQLite inside the master process
 * (sqlite-metastore.ts) or PostgreSQL for standby masters and namespaces beyond
 * one machine.
 *
 * Contract for every implementation:
 * - Every mutating method is ONE transaction: it happens whole or not at all,
 *   also across a crash (SIGKILL, power loss once it resolved). Its checks (name
 *   taken, directory not empty, node still there…) run inside that transaction,
 *   so a caller never needs to hold a lock across a check and the change.
 * - A reading method sees one consistent state (one snapshot) of what it reads.
 * - Between two calls anything may change: the master serves many requests at
 *   once, and each `await` lets others run. Callers that need "check, then act"
 *   use a method that does both, or a guard parameter (forgetChild, refreshFromUfs,
 *   the expected inode of removeChild and rename).
 * - A single leader master is the only writer. Standby masters do not write and
 *   do not keep a Metastore open for writing; so an implementation may keep
 *   caches of what only its own writes change (the change log's seq, the pin version).
 * - Errors are StrataErrors with the codes each method names (NOT_FOUND,
 *   ALREADY_EXISTS, NOT_DIRECTORY, IS_DIRECTORY, NOT_EMPTY, INVALID_ARGUMENT,
 *   NOT_PERMITTED, NO_ATTRIBUTE, BAD_REQUEST, TIMEOUT, CONFIG, BUSY); anything else is a bug
 *   or the engine failing (UNAVAILABLE/IO_ERROR).
 * - Inode numbers are never reused; ROOT_INO always exists and is a directory.
 *
 * This module holds only types and pure helpers: a second implementation imports
 * it and never the SQLite one.
 */

import type {
  BlockInfo,
  ChangesResponse,
  DirEntry,
  DuResponse,
  FileAttributes,
  FileType,
  FreeResponse,
  HeartbeatRequest,
  RegisterWorkerRequest,
  Timespec,
  TtlAction,
  WorkerInfo,
  WriteCommitRequest,
  WriteType,
} from '../common/protocol';

export { BLOCKS_PER_CONTAINER } from '../common/protocol';

/** The root directory's inode number. */
export const ROOT_INO = 1;

/** A node as the namespace layer sees it: attributes plus sync bookkeeping. */
export interface NodeRecord extends FileAttributes {
  /** Size, mtime or ETag of the under-store object this content matches; null when not persisted (or not a file). */
  ufsFingerprint: string | null;
  /** Epoch ms of the last check against the under-store (for directories: last full listing; 0 = never listed). */
  syncedAt: number;
  /** The container of the file's current blocks (block ids are blockIdOf(container, index)); 0 = none yet. */
  container: number;
  /** Pinned by the user: its blocks are never evicted. A new child of a pinned directory starts pinned. */
  pinned: boolean;
  ttl: { expiresAtMs: number; action: TtlAction } | null;
  /**
   * Whether an object of this file may be at its path in the store: it was found there, stored, or an
   * upload of it began. False only for a file no version of which ever went to the store, so removing
   * or moving its name needs no store call at all (an unpersisted file that is in the store still has
   * an older version there, which must go with the name). Never set back to false.
   */
  inStore: boolean;
}

/** A child node with its name in the parent. */
export type NamedNodeRecord = NodeRecord & { name: string };
/** A child as childrenPage lists it: with whether it has any extended attribute. */
export type ListedNodeRecord = NamedNodeRecord & { xattrs: boolean };

/** What a new inode starts with. */
export interface NewNode {
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  /** Also atime; ctime too when given (a node found in the under-store). Default now. */
  mtime?: Timespec;
  persisted: boolean;
  /** NodeRecord.inStore; default `persisted`. A file its creator will write through to the store starts true. */
  inStore?: boolean;
  ufsFingerprint?: string | null;
  syncedAt?: number;
  target?: string;
  rdev?: number;
}

/** Attribute changes of setattr; absent fields stay. ctime always becomes now. */
export interface AttributeChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Timespec;
  mtime?: Timespec;
}

/** A name of an inode: the entry `name` in directory `parent`. */
export interface LinkRef {
  parent: number;
  name: string;
}

/** One block of a file, without locations. */
export interface BlockRecord {
  blockId: number;
  ino: number;
  index: number;
  length: number;
}

/** A file due for persisting. */
export interface DuePersist {
  ino: number;
  attempts: number;
  enqueuedAt: number;
}

/** An entry of the persist queue as the dashboard and metrics show it. */
export interface QueuedPersist extends DuePersist {
  nextAt: number;
  lastError: string | null;
}

/** A node whose TTL passed. */
export interface ExpiredTtl {
  ino: number;
  expiresAtMs: number;
  action: TtlAction;
}

/** A row of the mount table; `options` is a JSON object of strings. */
export interface MountRecord {
  path: string;
  uri: string;
  options: string;
}

/** The answer to a known, live worker's heartbeat. */
export interface HeartbeatAnswer {
  /** Blocks the worker must delete. */
  deleteBlocks: number[];
  /** The current pinned set, when the worker's pinVersion is out of date. */
  pins?: { version: number; blocks: number[] };
}

/**
 * What a sync from the under-store saw of a node before it asked the store. A
 * guarded sync step applies only when the node is still that: a change made
 * meanwhile through Strata (a write commit, a rename onto the name) is newer
 * than the store's answer and must win.
 */
export interface SyncGuard {
  /** The inode the name pointed at. */
  ino: number;
  /** Its fingerprint then. */
  ufsFingerprint: string | null;
  /** It applies only while the node's syncedAt is below this (the sync's start, + 1 for "at or before"). */
  syncedBefore: number;
}

/**
 * Which inodes changed, in commit order, for client metadata caches (see
 * change-feed.ts for the protocol). Every change a Metastore commits appears in
 * its log, whatever the code path. An implementation starts a new epoch when it
 * cannot continue an old log (a restart of a per-process log, a failover).
 */
export interface ChangeLog {
  /** Identifies this log; a client following another epoch is told to reset. */
  readonly epoch: string;
  /** The seq of the last change committed. */
  seq(): Promise<number>;
  /** The value of the `strata-changes` response header: `<epoch>:<startSeq>:<seq now>`. */
  header(startSeq: number): Promise<string>;
  /**
   * Changes after `since`, each inode (and name) once with its last seq; waits up
   * to `waitMs` for one when there are none, or until `signal` aborts. A client of
   * another epoch, or one the log no longer reaches, gets `reset: true`.
   */
  changes(epoch: string, since: number, waitMs: number, signal?: AbortSignal): Promise<ChangesResponse>;
  /** A hint after a request that may have changed something: wake waiters now instead of at the next poll. Never throws. */
  notify(): void;
  /** Wakes every waiter and stops polling. */
  close(): Promise<void>;
}

/** The master's metadata store; see the module comment for the contract every method follows. */
/** What `commitEmpty` records; `persistDelayMs` only lengthens the configured wait before an ASYNC_THROUGH persist. */
export interface CommitEmptyRequest {
  ino: number;
  ufsFingerprint: string | null;
  writeType: WriteType;
  mtime?: Timespec;
  persistDelayMs?: number;
}

/**
 * A new file recorded as written empty by the create itself, in its transaction
 * (what commitEmpty with no fingerprint does): one transaction, one fsync, not two.
 */
export type CreatedEmpty = Pick<CommitEmptyRequest, 'writeType' | 'persistDelayMs'>;

/** A node createChild made; `begun`: the write it began for it (asked with `begin`). */
export type CreatedNode = NodeRecord & { begun?: { containerId: number; blockSize: number } };

export interface Metastore {
  /** Block size of new files, in bytes. */
  readonly blockSize: number;
  /** The change log of this store. */
  readonly changes: ChangeLog;
  /** Closes the store (and its change log); no call may follow. */
  close(): Promise<void>;

  // ---- reads ---------------------------------------------------------------

  /** The node, or undefined. */
  getNode(ino: number): Promise<NodeRecord | undefined>;
  /** The node; NOT_FOUND when there is none. */
  requireNode(ino: number): Promise<NodeRecord>;
  /** The node named `name` in directory `parent`, or undefined. */
  lookup(parent: number, name: string): Promise<NodeRecord | undefined>;
  /** The entries of a directory, by name (byte order); empty for a missing or non-directory inode. */
  children(parent: number): Promise<NamedNodeRecord[]>;
  /**
   * Up to `limit` entries of a directory whose names sort after `after` (from the first when
   * null), by name (byte order): a listing in pages, each its own read.
   */
  childrenPage(parent: number, after: string | null, limit: number): Promise<ListedNodeRecord[]>;
  /**
   * The path of an inode from the root ('/' for the root), through its primary
   * link (a hard-linked file's first name); NOT_FOUND when it is not linked.
   */
  pathOf(ino: number): Promise<string>;
  /** True when `ino` is `ancestor` or lies below it. */
  isDescendant(ino: number, ancestor: number): Promise<boolean>;
  /** A file's blocks in order, with their cached copies on live workers; NOT_FOUND without the inode. */
  blocks(ino: number): Promise<BlockInfo[]>;
  /** One block, or undefined (block rows never change; they go when their file's content does). */
  block(blockId: number): Promise<BlockRecord | undefined>;
  /** How many inodes exist (the root included). */
  nodeCount(): Promise<number>;
  /** Whether `name` in `parent` is the link whose path holds the file's bytes in the store. */
  isPrimaryLink(parent: number, name: string): Promise<boolean>;
  /** Another link of the inode than `name` in `parent` (the one that becomes primary if this one goes), or undefined. */
  otherLink(ino: number, parent: number, name: string): Promise<LinkRef | undefined>;
  /** True when a file at or below `ino` has bytes not yet in its under-store. */
  hasUnpersisted(ino: number): Promise<boolean>;

  // ---- namespace changes ---------------------------------------------------

  /**
   * Links a new inode as `name` under `parent` and touches the parent's mtime and
   * ctime. NOT_FOUND (no parent), NOT_DIRECTORY (parent is not one), ALREADY_EXISTS
   * (the name is taken; nothing changes). A new directory adds one to the parent's
   * nlink. A persisted file with a size gets fresh blocks without locations. The
   * new node is pinned when the parent is. `begin` (files only): a write of the new
   * file is begun in the same transaction, as beginWrite would (`begun`).
   */
  createChild(parent: number, name: string, node: NewNode, empty?: CreatedEmpty, begin?: boolean): Promise<CreatedNode>;
  /**
   * Links nodes discovered in the under-store, skipping names that exist by then
   * (never replacing); parent times stay. Nothing happens when the parent is gone
   * or not a directory.
   */
  loadChildren(parent: number, nodes: { name: string; node: NewNode }[]): Promise<void>;
  /**
   * Removes the entry `name` of `parent` and frees the inode when no link is left
   * (its cached copies are queued for deletion on their workers); touches the
   * parent. NOT_FOUND, IS_DIRECTORY (expect 'file'), NOT_DIRECTORY (expect
   * 'directory'), NOT_EMPTY (a directory with entries). Answers the node as it was.
   * Removing a file's primary link makes another link primary.
   * With `ino` (the inode the caller checked and acted on in the under-store),
   * only while `name` still names that inode: NOT_FOUND otherwise, and nothing
   * changes (a name dropped and taken again meanwhile is someone else's file).
   */
  removeChild(parent: number, name: string, expect: 'file' | 'directory' | 'any', ino?: number): Promise<NodeRecord>;
  /**
   * link(2): a new name for an existing non-directory inode; nlink + 1, ctime of
   * the inode and times of the new parent touched. NOT_FOUND, NOT_PERMITTED (a
   * directory), NOT_DIRECTORY (new parent), ALREADY_EXISTS. The new link is not primary.
   */
  link(ino: number, newParent: number, newName: string): Promise<NodeRecord>;
  /**
   * POSIX rename(2) in one step: NOT_FOUND (no source), NOT_DIRECTORY (destination
   * parent not a directory, or a directory onto a non-directory), IS_DIRECTORY (a
   * non-directory onto a directory), NOT_EMPTY (onto a directory with entries),
   * INVALID_ARGUMENT (a directory into itself or its own subtree). An existing
   * compatible destination is replaced atomically (unlinked as removeChild would).
   * Renaming onto another name of the same inode changes nothing. The moved link
   * keeps its primary flag; directory nlinks follow the move; both parents' times
   * and the node's ctime are touched. Answers the moved node. With `srcIno` (the
   * inode the caller checked and moved in the under-store), only while `srcName`
   * still names that inode: NOT_FOUND otherwise, and nothing changes.
   */
  rename(srcParent: number, srcName: string, dstParent: number, dstName: string, srcIno?: number): Promise<NodeRecord>;
  /**
   * renameat2(RENAME_EXCHANGE) in one step: the two names swap the inodes they
   * point at. NOT_FOUND (either missing), INVALID_ARGUMENT (a directory would move
   * into its own subtree). Two names of one inode change nothing. Each link keeps its
   * primary flag with its inode; directory nlinks of the parents follow the
   * directories; both parents' times and both nodes' ctimes are touched. With
   * `expect` (the inodes the caller checked and swapped in the under-store), only
   * while the names still name those inodes: NOT_FOUND otherwise, nothing changes.
   */
  exchange(aParent: number, aName: string, bParent: number, bName: string, expect?: { a: number; b: number }): Promise<void>;
  /** setattr: mode (permission bits only), owner, times; ctime becomes now. NOT_FOUND. */
  setAttributes(ino: number, attrs: AttributeChanges): Promise<NodeRecord>;

  // ---- writes --------------------------------------------------------------

  /**
   * Starts a new version of a file's content: a fresh container of block ids,
   * recorded as a write in flight (its reported copies are not orphans until it
   * commits or expires). NOT_FOUND, IS_DIRECTORY (not a regular file).
   */
  beginWrite(ino: number): Promise<{ containerId: number; blockSize: number }>;
  /** The inode whose write in flight `container` is (begun, not committed or expired), if any. */
  openWriteOf(container: number): Promise<number | undefined>;
  /**
   * Of `containers`, those whose blocks may exist only on the workers that wrote them:
   * the current version of a file not persisted yet, or a write in flight (begun, not
   * committed or expired). One snapshot of both, so a commit running meanwhile is seen
   * as one or the other, never as neither.
   */
  unpersistedContainers(containers: number[]): Promise<number[]>;
  /**
   * Makes a file empty as one write: old blocks dropped (copies queued for
   * deletion), a fresh container, persisted when `ufsFingerprint` is set; an
   * ASYNC_THROUGH write without one is queued for persisting (after
   * `persistDelayMs` when that is longer than the configured wait), any other
   * write leaves the queue. NOT_FOUND, IS_DIRECTORY.
   */
  commitEmpty(req: CommitEmptyRequest): Promise<NodeRecord>;
  /**
   * Replaces a file's content with the blocks a worker wrote (the write begun with
   * `containerId`), as one transaction with the persist-queue entry of an
   * ASYNC_THROUGH write. BAD_REQUEST (block count, ids or lengths do not match the
   * size), TIMEOUT (the write is not in flight: committed already, expired, or
   * begun for another inode), NOT_FOUND, IS_DIRECTORY. The old blocks' copies and
   * copies of this write on other workers are queued for deletion.
   */
  commitWrite(req: WriteCommitRequest): Promise<NodeRecord>;
  /**
   * Brings a file in line with its under-store object after an out-of-band change:
   * new size, mtime and fingerprint, fresh blocks, cached copies dropped, persisted.
   * With `guard`, only while the node still matches it (see SyncGuard). Answers
   * whether it changed anything (false also for a missing or non-file inode).
   */
  refreshFromUfs(ino: number, size: number, mtime: Timespec, fingerprint: string, guard?: Omit<SyncGuard, 'ino'>): Promise<boolean>;
  /**
   * Sets syncedAt of one node to `at` (default now); a missing node is ignored. Never touches content.
   * At 0 (list it again) the feed also reports the node's empty name: a client that knows a directory's
   * names whole must forget them, as names may appear without a change of a name.
   */
  markSynced(ino: number, at?: number): Promise<void>;
  /** Sets syncedAt of many nodes to `at` (default now) in one transaction; at 0, as markSynced. */
  markSyncedMany(inos: number[], at?: number): Promise<void>;
  /**
   * Removes a child that vanished from the under-store: a directory with its whole
   * subtree, a file's link as an unlink would (other hard links keep the inode).
   * With `guard`, only while `name` still names guard.ino, the node still matches
   * the guard and, for a file, `name` is its primary link. Answers whether it removed.
   */
  forgetChild(parent: number, name: string, guard?: SyncGuard): Promise<boolean>;

  // ---- extended attributes -------------------------------------------------

  /** setxattr(2): flags 1 = XATTR_CREATE (ALREADY_EXISTS if set), 2 = XATTR_REPLACE (NO_ATTRIBUTE if not). NOT_FOUND. Touches ctime. */
  setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void>;
  /** NOT_FOUND (no inode), NO_ATTRIBUTE. */
  getXattr(ino: number, name: string): Promise<Buffer>;
  /** Names in byte order. NOT_FOUND. */
  listXattrs(ino: number): Promise<string[]>;
  /** NOT_FOUND, NO_ATTRIBUTE. Touches ctime. */
  removeXattr(ino: number, name: string): Promise<void>;

  // ---- persist queue (ASYNC_THROUGH) ----------------------------------------

  /** Queues a file for persisting now (an entry already queued is due now, its attempts reset). */
  enqueuePersist(ino: number): Promise<void>;
  /** Files due for persisting at `now`, earliest due first. */
  duePersists(now: number, limit: number): Promise<DuePersist[]>;
  /** The whole queue, oldest first. */
  persistQueue(): Promise<QueuedPersist[]>;
  /** Records a failed attempt; the next waits with exponential backoff (1 s … 5 min). No entry: nothing happens. */
  persistFailed(ino: number, error: string): Promise<void>;
  /**
   * If the file's content is still `container` (the version that was persisted),
   * marks it persisted with `fingerprint` and takes it off the queue; answers
   * whether it did. A newer version keeps its queue entry (its commit queued it
   * and its bytes are not in the store yet); a gone inode leaves the queue.
   */
  markPersisted(ino: number, container: number, fingerprint: string): Promise<boolean>;
  /**
   * NodeRecord.inStore becomes true (durably, before the caller writes anything to the store at
   * the file's path). Also true after markPersisted, even of an older version (its object is there).
   */
  markInStore(ino: number): Promise<void>;
  /**
   * Drops the queue entry of a node that no longer needs persisting: gone, not a
   * regular file, or persisted. The check is in the same transaction, so a write
   * that queued the file again meanwhile keeps its entry. Answers whether it dropped.
   */
  dropPersist(ino: number): Promise<boolean>;

  // ---- workers -------------------------------------------------------------

  /**
   * Registers a worker by its persistent uuid (a known uuid keeps its id) and
   * makes it live; a live worker that had the same address is marked lost. The
   * block report is full: it replaces the worker's locations; reported blocks of no
   * file (and of no write in flight) are queued for deletion. Answers the worker id.
   */
  registerWorker(req: RegisterWorkerRequest): Promise<number>;
  /**
   * Records a heartbeat: usage, tiers, removed then added blocks, renewed writes
   * in flight. Answers the blocks to delete and, when the worker's pin version is
   * out of date, the pinned set; null for an unknown or lost worker (it must register again).
   */
  heartbeat(req: HeartbeatRequest): Promise<HeartbeatAnswer | null>;
  /** Marks live workers silent since `before` lost and drops their locations; answers their ids. */
  expireWorkers(before: number): Promise<number[]>;
  /** A worker that is stopping: lost now, its locations dropped. Whether it was live. */
  workerLeft(workerId: number): Promise<boolean>;
  /**
   * Ends writes in flight not renewed since `before`; their reported copies are queued
   * for deletion, and their files that are left unwritten are queued to be stored empty
   * (see abandonWrite), in the same transaction. Answers how many writes ended, how many
   * copies they had, and the files queued.
   */
  expireOpenWrites(before: number): Promise<{ writes: number; copies: number; queued: number[] }>;
  /**
   * Ends a write in flight that will never be committed; its reported copies are queued for
   * deletion. With `storeIfUnwritten` (the writer gave up), its file is queued to be stored
   * empty in the same transaction if every write of it ended uncommitted: created for a
   * write-through (inStore), empty, unpersisted, no write of it open, and not queued already
   * (a queued file keeps its retry schedule). Without it (a write-through a rename overtook,
   * which its client writes again), nothing is queued. Whether the file was queued.
   */
  abandonWrite(container: number, opts?: { storeIfUnwritten?: boolean }): Promise<boolean>;
  /** Every worker, live or lost, by id. */
  workers(): Promise<WorkerInfo[]>;

  // ---- pins, TTL, free, du ---------------------------------------------------

  /** Version of the pinned-block set; it changes whenever the set may have, and at every open of the store. */
  pinVersion(): Promise<number>;
  /** Every block of a pinned file, by id. */
  pinnedBlocks(): Promise<number[]>;
  /** Pins or unpins a node and everything below it; answers how many files changed state. NOT_FOUND. */
  setPinned(ino: number, pinned: boolean): Promise<{ files: number }>;
  /** Sets (epoch ms) or clears (null) a node's TTL. NOT_FOUND. */
  setTtl(ino: number, expiresAtMs: number | null, action: TtlAction): Promise<void>;
  /** Nodes whose TTL passed at `now`, earliest first. */
  expiredTtls(now: number, limit?: number): Promise<ExpiredTtl[]>;
  /** Clears a TTL that fired, unless it was set again meanwhile (expiresAtMs differs). */
  clearTtl(ino: number, expiresAtMs: number): Promise<void>;
  /** Moves a TTL whose action failed to `at`, unless it was set again meanwhile. */
  rescheduleTtl(ino: number, expiresAtMs: number, at: number): Promise<void>;
  /**
   * Drops every cached copy of the persisted files at or below `ino` (queued for
   * deletion on their workers); files not yet persisted keep theirs. NOT_FOUND.
   */
  free(ino: number): Promise<FreeResponse>;
  /** Files, directories, size and cached bytes (per block the largest copy on a live worker) at or below `ino`. NOT_FOUND. */
  du(ino: number): Promise<DuResponse>;
  /** Bytes of these files cached on live workers (per block the largest copy), each inode counted once; unknown ones count 0. */
  cachedBytes(inos: readonly number[]): Promise<number>;

  // ---- mount table ---------------------------------------------------------

  /** Every mount, by path. */
  mounts(): Promise<MountRecord[]>;
  /** Adds or replaces the mount at `path`. */
  setMount(path: string, uri: string, options?: string): Promise<void>;
  /**
   * Records the mount at `path` unless one is recorded there (never replaces);
   * answers the row recorded afterwards: this one, or the one found.
   */
  claimMount(path: string, uri: string, options: string): Promise<MountRecord>;
  /** Removes the mount at `path` (none: nothing happens). */
  removeMount(path: string): Promise<void>;
  /**
   * Unmounts the store mounted at `path`, whose mount point is the directory
   * `name` of `parent`, in one transaction: BUSY when a file at or below that
   * directory has bytes not yet in its under-store (nothing changes then);
   * otherwise the mount row goes, and the directory with everything below it
   * (as forgetChild). A missing name only removes the row.
   */
  unmount(path: string, parent: number, name: string): Promise<void>;
}

/** The public view of a node, without sync bookkeeping. */
export function toAttributes(n: NodeRecord): FileAttributes {
  const { ufsFingerprint: _f, syncedAt: _s, container: _c, pinned: _p, ttl: _t, inStore: _i, ...attrs } = n;
  return attrs;
}

export function toDirEntry(n: NamedNodeRecord | ListedNodeRecord): DirEntry {
  return { ...toAttributes(n), name: n.name };
}

/** How both engines store a file type (the node table's `type` column). */
export const NODE_TYPE_CODE: Record<FileType, number> = { file: 1, directory: 2, symlink: 3, fifo: 4, socket: 5, chardev: 6, blockdev: 7 };
const NODE_TYPE_NAME: Record<number, FileType> = { 1: 'file', 2: 'directory', 3: 'symlink', 4: 'fifo', 5: 'socket', 6: 'chardev', 7: 'blockdev' };

/** A row of the node table as either engine returns it (SQLite gives flags as 0/1, PostgreSQL as booleans). */
export interface NodeRow {
  ino: number;
  type: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atime_s: number;
  atime_ns: number;
  mtime_s: number;
  mtime_ns: number;
  ctime_s: number;
  ctime_ns: number;
  target: string | null;
  rdev: number;
  block_size: number;
  persisted: number | boolean;
  ufs_fingerprint: string | null;
  synced_at: number;
  container: number;
  pinned: number | boolean;
  ttl_expires_at: number | null;
  ttl_action: string | null;
  in_store: number | boolean;
}

/**
 * The columns of a NodeRow in the order nodeRecordFromValues reads them. SQLite answers
 * rows as arrays (better-sqlite3's raw mode) twice as fast as objects: a node read went
 * from 8-10 to 4.6-5.3 µs here, a 10,000-name listing from 103-116 to 62-64 ms.
 */
export const NODE_COLUMNS = ['ino', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'atime_s', 'atime_ns', 'mtime_s', 'mtime_ns', 'ctime_s', 'ctime_ns', 'target', 'rdev', 'block_size', 'persisted', 'ufs_fingerprint', 'synced_at', 'container', 'pinned', 'ttl_expires_at', 'ttl_action', 'in_store'] as const;

/** A node from `v[at…]`, the NODE_COLUMNS of a raw row. */
export function nodeRecordFromValues(v: unknown[], at = 0): NodeRecord {
  const c = (i: number) => v[at + i];
  return nodeRecordFromRow({
    ino: c(0) as number,
    type: c(1) as number,
    mode: c(2) as number,
    uid: c(3) as number,
    gid: c(4) as number,
    size: c(5) as number,
    nlink: c(6) as number,
    atime_s: c(7) as number,
    atime_ns: c(8) as number,
    mtime_s: c(9) as number,
    mtime_ns: c(10) as number,
    ctime_s: c(11) as number,
    ctime_ns: c(12) as number,
    target: c(13) as string | null,
    rdev: c(14) as number,
    block_size: c(15) as number,
    persisted: c(16) as number,
    ufs_fingerprint: c(17) as string | null,
    synced_at: c(18) as number,
    container: c(19) as number,
    pinned: c(20) as number,
    ttl_expires_at: c(21) as number | null,
    ttl_action: c(22) as string | null,
    in_store: c(23) as number,
  });
}

export function nodeRecordFromRow(r: NodeRow): NodeRecord {
  const rec: NodeRecord = {
    ino: r.ino,
    type: NODE_TYPE_NAME[r.type]!,
    mode: r.mode,
    uid: r.uid,
    gid: r.gid,
    size: r.size,
    nlink: r.nlink,
    atime: { sec: r.atime_s, nsec: r.atime_ns },
    mtime: { sec: r.mtime_s, nsec: r.mtime_ns },
    ctime: { sec: r.ctime_s, nsec: r.ctime_ns },
    blockSize: r.block_size,
    persistState: r.persisted === true || r.persisted === 1 ? 'persisted' : 'not_persisted',
    ufsFingerprint: r.ufs_fingerprint,
    syncedAt: r.synced_at,
    container: r.container,
    pinned: r.pinned === true || r.pinned === 1,
    // Persisted implies in the store, whatever the column says (a master from before the column persisted it).
    inStore: r.in_store === true || r.in_store === 1 || r.persisted === true || r.persisted === 1,
    ttl: r.ttl_expires_at === null ? null : { expiresAtMs: r.ttl_expires_at, action: r.ttl_action === 'delete' ? 'delete' : 'free' },
  };
  if (r.target !== null) rec.target = r.target;
  if (r.rdev) rec.rdev = r.rdev;
  return rec;
}
