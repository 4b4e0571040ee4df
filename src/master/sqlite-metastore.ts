/**
 * The SQLite engine of the Metastore: the synchronous InodeTable (better-sqlite3,
 * one db.transaction() per method) behind the asynchronous interface.
 *
 * Why a facade and not an async InodeTable: the table's methods call each other
 * inside their transactions (rename → lookup, #unlinkEdge → otherLink…), which
 * must stay synchronous; better-sqlite3 has no async API to gain from; and the
 * SQLite-specific tests (migration, crash, bench setup) keep driving the core
 * directly. Each method here is an `async` one-liner: the work runs at the call,
 * in the caller's tick, and a synchronous throw becomes a rejection. The only cost
 * is the microtask that resolves the promise: no queue, no mutex, no setImmediate.
 *
 * Durability is a group commit (wal-sync.ts): the table commits without syncing, and
 * each method answers once a sync of the WAL covers what it committed or read.
 */

import { InodeTable, type InodeTableOptions } from './inode-table';
import { WalSync, fdatasyncFile, syncAtOpen, type SyncFile } from './wal-sync';
import type { ChangeFeed } from './change-feed';
import type {
  AttributeChanges,
  BlockRecord,
  DuePersist,
  ExpiredTtl,
  HeartbeatAnswer,
  LinkRef,
  Metastore,
  MountRecord,
  NamedNodeRecord,
  ListedNodeRecord,
  NewNode,
  NodeRecord,
  QueuedPersist,
  SyncGuard,
  CommitEmptyRequest,
  CreatedEmpty,
  CreatedNode,
} from './metastore';
import type {
  BlockInfo,
  DuResponse,
  FreeResponse,
  HeartbeatRequest,
  RegisterWorkerRequest,
  Timespec,
  TtlAction,
  WorkerInfo,
  WriteCommitRequest,
  WriteType,
} from '../common/protocol';

export type SqliteMetastoreOptions = Omit<InodeTableOptions, 'syncEachCommit'> & {
  /** How the WAL file is made durable; tests give one they control. Default: fdatasync. */
  syncFile?: (walFile: string) => SyncFile;
};

export class SqliteMetastore implements Metastore {
  readonly #t: InodeTable;
  readonly changes: ChangeFeed;
  readonly blockSize: number;
  readonly #wal: WalSync;

  /** Opens (creating or migrating) the SQLite file; CONFIG for a schema newer than this Strata. */
  constructor(file: string, opts: SqliteMetastoreOptions) {
    const { syncFile, ...tableOpts } = opts;
    this.#t = new InodeTable(file, { ...tableOpts, syncEachCommit: false });
    // Opening wrote without syncing too (a new database, migrations, the pin version): on disk before any answer.
    syncAtOpen(this.#t.walFile);
    this.changes = this.#t.changes;
    this.blockSize = this.#t.blockSize;
    this.#wal = new WalSync(this.#t.walFile, () => this.#t.totalChanges(), (syncFile ?? fdatasyncFile)(this.#t.walFile));
    this.changes.answerWhen(() => this.#wal.durable());
  }

  /** WAL syncs run so far (each covers every commit before it began). */
  get walSyncs(): number {
    return this.#wal.syncs;
  }

  async close(): Promise<void> {
    if (this.#wal.failed) {
      // The connection stays open: closing the last one checkpoints the WAL into the database, which would
      // make durable the commits whose sync failed (their pages possibly dropped by the kernel). The master
      // is ending; its next start recovers from what the disk has.
      this.changes.stop();
      await this.#wal.close().catch(() => undefined);
      return;
    }
    try {
      await this.#wal.close();
    } finally {
      this.#t.close();
    }
  }

  /** Runs one table call; answers once what it committed or read is on disk, also when it failed. */
  async #do<T>(call: () => T): Promise<T> {
    this.#wal.check();
    let result: T;
    try {
      result = call();
    } catch (err) {
      // Its error may tell of another's change still unsynced (ALREADY_EXISTS of a name just made).
      await this.#wal.durable();
      throw err;
    }
    await this.#wal.durable();
    return result;
  }

  // ---- reads ---------------------------------------------------------------

  async getNode(ino: number): Promise<NodeRecord | undefined> {
    return this.#do(() => this.#t.getNode(ino));
  }

  async requireNode(ino: number): Promise<NodeRecord> {
    return this.#do(() => this.#t.requireNode(ino));
  }

  async lookup(parent: number, name: string): Promise<NodeRecord | undefined> {
    return this.#do(() => this.#t.lookup(parent, name));
  }

  async children(parent: number): Promise<NamedNodeRecord[]> {
    return this.#do(() => this.#t.children(parent));
  }

  async childrenPage(parent: number, after: string | null, limit: number): Promise<ListedNodeRecord[]> {
    return this.#do(() => this.#t.childrenPage(parent, after, limit));
  }

  async pathOf(ino: number): Promise<string> {
    return this.#do(() => this.#t.pathOf(ino));
  }

  async isDescendant(ino: number, ancestor: number): Promise<boolean> {
    return this.#do(() => this.#t.isDescendant(ino, ancestor));
  }

  async blocks(ino: number): Promise<BlockInfo[]> {
    return this.#do(() => this.#t.blocks(ino));
  }

  async block(blockId: number): Promise<BlockRecord | undefined> {
    return this.#do(() => this.#t.block(blockId));
  }

  async nodeCount(): Promise<number> {
    return this.#do(() => this.#t.nodeCount());
  }

  async isPrimaryLink(parent: number, name: string): Promise<boolean> {
    return this.#do(() => this.#t.isPrimaryLink(parent, name));
  }

  async otherLink(ino: number, parent: number, name: string): Promise<LinkRef | undefined> {
    return this.#do(() => this.#t.otherLink(ino, parent, name));
  }

  async hasUnpersisted(ino: number): Promise<boolean> {
    return this.#do(() => this.#t.hasUnpersisted(ino));
  }

  // ---- namespace changes ---------------------------------------------------

  async createChild(parent: number, name: string, node: NewNode, empty?: CreatedEmpty, begin?: boolean): Promise<CreatedNode> {
    return this.#do(() => this.#t.createChild(parent, name, node, empty, begin));
  }

  async loadChildren(parent: number, nodes: { name: string; node: NewNode }[]): Promise<void> {
    return this.#do(() => this.#t.loadChildren(parent, nodes));
  }

  async removeChild(parent: number, name: string, expect: 'file' | 'directory' | 'any', ino?: number): Promise<NodeRecord> {
    return this.#do(() => this.#t.removeChild(parent, name, expect, ino));
  }

  async link(ino: number, newParent: number, newName: string): Promise<NodeRecord> {
    return this.#do(() => this.#t.link(ino, newParent, newName));
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, srcIno?: number): Promise<NodeRecord> {
    return this.#do(() => this.#t.rename(srcParent, srcName, dstParent, dstName, srcIno));
  }

  async exchange(aParent: number, aName: string, bParent: number, bName: string, expect?: { a: number; b: number }): Promise<void> {
    return this.#do(() => this.#t.exchange(aParent, aName, bParent, bName, expect));
  }

  async setAttributes(ino: number, attrs: AttributeChanges): Promise<NodeRecord> {
    return this.#do(() => this.#t.setAttributes(ino, attrs));
  }

  // ---- writes --------------------------------------------------------------

  async beginWrite(ino: number): Promise<{ containerId: number; blockSize: number }> {
    return this.#do(() => this.#t.beginWrite(ino));
  }

  async openWriteOf(container: number): Promise<number | undefined> {
    return this.#do(() => this.#t.openWriteOf(container));
  }

  async unpersistedContainers(containers: number[]): Promise<number[]> {
    return this.#do(() => this.#t.unpersistedContainers(containers));
  }

  async commitEmpty(req: CommitEmptyRequest): Promise<NodeRecord> {
    return this.#do(() => this.#t.commitEmpty(req));
  }

  async commitWrite(req: WriteCommitRequest): Promise<NodeRecord> {
    return this.#do(() => this.#t.commitWrite(req));
  }

  async refreshFromUfs(ino: number, size: number, mtime: Timespec, fingerprint: string, guard?: Omit<SyncGuard, 'ino'>): Promise<boolean> {
    return this.#do(() => this.#t.refreshFromUfs(ino, size, mtime, fingerprint, guard));
  }

  async markSynced(ino: number, at?: number): Promise<void> {
    return this.#do(() => this.#t.markSynced(ino, at));
  }

  async markSyncedMany(inos: number[], at?: number): Promise<void> {
    return this.#do(() => this.#t.markSyncedMany(inos, at));
  }

  async forgetChild(parent: number, name: string, guard?: SyncGuard): Promise<boolean> {
    return this.#do(() => this.#t.forgetChild(parent, name, guard));
  }

  // ---- extended attributes -------------------------------------------------

  async setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    return this.#do(() => this.#t.setXattr(ino, name, value, flags));
  }

  async getXattr(ino: number, name: string): Promise<Buffer> {
    return this.#do(() => this.#t.getXattr(ino, name));
  }

  async listXattrs(ino: number): Promise<string[]> {
    return this.#do(() => this.#t.listXattrs(ino));
  }

  async removeXattr(ino: number, name: string): Promise<void> {
    return this.#do(() => this.#t.removeXattr(ino, name));
  }

  // ---- persist queue -------------------------------------------------------

  async enqueuePersist(ino: number): Promise<void> {
    return this.#do(() => this.#t.enqueuePersist(ino));
  }

  async duePersists(now: number, limit: number): Promise<DuePersist[]> {
    return this.#do(() => this.#t.duePersists(now, limit));
  }

  async persistQueue(): Promise<QueuedPersist[]> {
    return this.#do(() => this.#t.persistQueue());
  }

  async persistFailed(ino: number, error: string): Promise<void> {
    return this.#do(() => this.#t.persistFailed(ino, error));
  }

  async markPersisted(ino: number, container: number, fingerprint: string): Promise<boolean> {
    return this.#do(() => this.#t.markPersisted(ino, container, fingerprint));
  }

  async markInStore(ino: number): Promise<void> {
    return this.#do(() => this.#t.markInStore(ino));
  }

  async dropPersist(ino: number): Promise<boolean> {
    return this.#do(() => this.#t.dropPersist(ino));
  }

  // ---- workers -------------------------------------------------------------

  async registerWorker(req: RegisterWorkerRequest): Promise<number> {
    return this.#do(() => this.#t.registerWorker(req));
  }

  async heartbeat(req: HeartbeatRequest): Promise<HeartbeatAnswer | null> {
    return this.#do(() => this.#t.heartbeat(req));
  }

  async expireWorkers(before: number): Promise<number[]> {
    return this.#do(() => this.#t.expireWorkers(before));
  }

  async workerLeft(workerId: number): Promise<boolean> {
    return this.#do(() => this.#t.workerLeft(workerId));
  }

  async expireOpenWrites(before: number): Promise<{ writes: number; copies: number; queued: number[] }> {
    return this.#do(() => this.#t.expireOpenWrites(before));
  }

  async abandonWrite(container: number, opts?: { storeIfUnwritten?: boolean }): Promise<boolean> {
    return this.#do(() => this.#t.abandonWrite(container, opts));
  }

  async workers(): Promise<WorkerInfo[]> {
    return this.#do(() => this.#t.workers());
  }

  // ---- pins, TTL, free, du ---------------------------------------------------

  async pinVersion(): Promise<number> {
    return this.#do(() => this.#t.pinVersion());
  }

  async pinnedBlocks(): Promise<number[]> {
    return this.#do(() => this.#t.pinnedBlocks());
  }

  async setPinned(ino: number, pinned: boolean): Promise<{ files: number }> {
    return this.#do(() => this.#t.setPinned(ino, pinned));
  }

  async setTtl(ino: number, expiresAtMs: number | null, action: TtlAction): Promise<void> {
    return this.#do(() => this.#t.setTtl(ino, expiresAtMs, action));
  }

  async expiredTtls(now: number, limit?: number): Promise<ExpiredTtl[]> {
    return this.#do(() => this.#t.expiredTtls(now, limit));
  }

  async clearTtl(ino: number, expiresAtMs: number): Promise<void> {
    return this.#do(() => this.#t.clearTtl(ino, expiresAtMs));
  }

  async rescheduleTtl(ino: number, expiresAtMs: number, at: number): Promise<void> {
    return this.#do(() => this.#t.rescheduleTtl(ino, expiresAtMs, at));
  }

  async free(ino: number): Promise<FreeResponse> {
    return this.#do(() => this.#t.free(ino));
  }

  async du(ino: number): Promise<DuResponse> {
    return this.#do(() => this.#t.du(ino));
  }

  async cachedBytes(inos: readonly number[]): Promise<number> {
    return this.#do(() => this.#t.cachedBytes(inos));
  }

  // ---- mount table ---------------------------------------------------------

  async mounts(): Promise<MountRecord[]> {
    return this.#do(() => this.#t.mounts());
  }

  async setMount(path: string, uri: string, options?: string): Promise<void> {
    return this.#do(() => this.#t.setMount(path, uri, options));
  }

  async claimMount(path: string, uri: string, options: string): Promise<MountRecord> {
    return this.#do(() => this.#t.claimMount(path, uri, options));
  }

  async removeMount(path: string): Promise<void> {
    return this.#do(() => this.#t.removeMount(path));
  }

  async unmount(path: string, parent: number, name: string): Promise<void> {
    return this.#do(() => this.#t.unmount(path, parent, name));
  }
}
