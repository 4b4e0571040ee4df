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
 */

import { InodeTable, type InodeTableOptions } from './inode-table';
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

export type SqliteMetastoreOptions = InodeTableOptions;

export class SqliteMetastore implements Metastore {
  readonly #t: InodeTable;
  readonly changes: ChangeFeed;
  readonly blockSize: number;

  /** Opens (creating or migrating) the SQLite file; CONFIG for a schema newer than this Strata. */
  constructor(file: string, opts: SqliteMetastoreOptions) {
    this.#t = new InodeTable(file, opts);
    this.changes = this.#t.changes;
    this.blockSize = this.#t.blockSize;
  }

  async close(): Promise<void> {
    this.#t.close();
  }

  // ---- reads ---------------------------------------------------------------

  async getNode(ino: number): Promise<NodeRecord | undefined> {
    return this.#t.getNode(ino);
  }

  async requireNode(ino: number): Promise<NodeRecord> {
    return this.#t.requireNode(ino);
  }

  async lookup(parent: number, name: string): Promise<NodeRecord | undefined> {
    return this.#t.lookup(parent, name);
  }

  async children(parent: number): Promise<NamedNodeRecord[]> {
    return this.#t.children(parent);
  }

  async childrenPage(parent: number, after: string | null, limit: number): Promise<ListedNodeRecord[]> {
    return this.#t.childrenPage(parent, after, limit);
  }

  async pathOf(ino: number): Promise<string> {
    return this.#t.pathOf(ino);
  }

  async isDescendant(ino: number, ancestor: number): Promise<boolean> {
    return this.#t.isDescendant(ino, ancestor);
  }

  async blocks(ino: number): Promise<BlockInfo[]> {
    return this.#t.blocks(ino);
  }

  async block(blockId: number): Promise<BlockRecord | undefined> {
    return this.#t.block(blockId);
  }

  async nodeCount(): Promise<number> {
    return this.#t.nodeCount();
  }

  async isPrimaryLink(parent: number, name: string): Promise<boolean> {
    return this.#t.isPrimaryLink(parent, name);
  }

  async otherLink(ino: number, parent: number, name: string): Promise<LinkRef | undefined> {
    return this.#t.otherLink(ino, parent, name);
  }

  async hasUnpersisted(ino: number): Promise<boolean> {
    return this.#t.hasUnpersisted(ino);
  }

  // ---- namespace changes ---------------------------------------------------

  async createChild(parent: number, name: string, node: NewNode, empty?: CreatedEmpty, begin?: boolean): Promise<CreatedNode> {
    return this.#t.createChild(parent, name, node, empty, begin);
  }

  async loadChildren(parent: number, nodes: { name: string; node: NewNode }[]): Promise<void> {
    this.#t.loadChildren(parent, nodes);
  }

  async removeChild(parent: number, name: string, expect: 'file' | 'directory' | 'any', ino?: number): Promise<NodeRecord> {
    return this.#t.removeChild(parent, name, expect, ino);
  }

  async link(ino: number, newParent: number, newName: string): Promise<NodeRecord> {
    return this.#t.link(ino, newParent, newName);
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, srcIno?: number): Promise<NodeRecord> {
    return this.#t.rename(srcParent, srcName, dstParent, dstName, srcIno);
  }

  async exchange(aParent: number, aName: string, bParent: number, bName: string, expect?: { a: number; b: number }): Promise<void> {
    this.#t.exchange(aParent, aName, bParent, bName, expect);
  }

  async setAttributes(ino: number, attrs: AttributeChanges): Promise<NodeRecord> {
    return this.#t.setAttributes(ino, attrs);
  }

  // ---- writes --------------------------------------------------------------

  async beginWrite(ino: number): Promise<{ containerId: number; blockSize: number }> {
    return this.#t.beginWrite(ino);
  }

  async openWriteOf(container: number): Promise<number | undefined> {
    return this.#t.openWriteOf(container);
  }

  async unpersistedContainers(containers: number[]): Promise<number[]> {
    return this.#t.unpersistedContainers(containers);
  }

  async commitEmpty(req: CommitEmptyRequest): Promise<NodeRecord> {
    return this.#t.commitEmpty(req);
  }

  async commitWrite(req: WriteCommitRequest): Promise<NodeRecord> {
    return this.#t.commitWrite(req);
  }

  async refreshFromUfs(ino: number, size: number, mtime: Timespec, fingerprint: string, guard?: Omit<SyncGuard, 'ino'>): Promise<boolean> {
    return this.#t.refreshFromUfs(ino, size, mtime, fingerprint, guard);
  }

  async markSynced(ino: number, at?: number): Promise<void> {
    this.#t.markSynced(ino, at);
  }

  async markSyncedMany(inos: number[], at?: number): Promise<void> {
    this.#t.markSyncedMany(inos, at);
  }

  async forgetChild(parent: number, name: string, guard?: SyncGuard): Promise<boolean> {
    return this.#t.forgetChild(parent, name, guard);
  }

  // ---- extended attributes -------------------------------------------------

  async setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    this.#t.setXattr(ino, name, value, flags);
  }

  async getXattr(ino: number, name: string): Promise<Buffer> {
    return this.#t.getXattr(ino, name);
  }

  async listXattrs(ino: number): Promise<string[]> {
    return this.#t.listXattrs(ino);
  }

  async removeXattr(ino: number, name: string): Promise<void> {
    this.#t.removeXattr(ino, name);
  }

  // ---- persist queue -------------------------------------------------------

  async enqueuePersist(ino: number): Promise<void> {
    this.#t.enqueuePersist(ino);
  }

  async duePersists(now: number, limit: number): Promise<DuePersist[]> {
    return this.#t.duePersists(now, limit);
  }

  async persistQueue(): Promise<QueuedPersist[]> {
    return this.#t.persistQueue();
  }

  async persistFailed(ino: number, error: string): Promise<void> {
    this.#t.persistFailed(ino, error);
  }

  async markPersisted(ino: number, container: number, fingerprint: string): Promise<boolean> {
    return this.#t.markPersisted(ino, container, fingerprint);
  }

  async markInStore(ino: number): Promise<void> {
    this.#t.markInStore(ino);
  }

  async dropPersist(ino: number): Promise<boolean> {
    return this.#t.dropPersist(ino);
  }

  // ---- workers -------------------------------------------------------------

  async registerWorker(req: RegisterWorkerRequest): Promise<number> {
    return this.#t.registerWorker(req);
  }

  async heartbeat(req: HeartbeatRequest): Promise<HeartbeatAnswer | null> {
    return this.#t.heartbeat(req);
  }

  async expireWorkers(before: number): Promise<number[]> {
    return this.#t.expireWorkers(before);
  }

  async workerLeft(workerId: number): Promise<boolean> {
    return this.#t.workerLeft(workerId);
  }

  async expireOpenWrites(before: number): Promise<{ writes: number; copies: number }> {
    return this.#t.expireOpenWrites(before);
  }

  async abandonWrite(container: number): Promise<void> {
    this.#t.abandonWrite(container);
  }

  async workers(): Promise<WorkerInfo[]> {
    return this.#t.workers();
  }

  // ---- pins, TTL, free, du ---------------------------------------------------

  async pinVersion(): Promise<number> {
    return this.#t.pinVersion();
  }

  async pinnedBlocks(): Promise<number[]> {
    return this.#t.pinnedBlocks();
  }

  async setPinned(ino: number, pinned: boolean): Promise<{ files: number }> {
    return this.#t.setPinned(ino, pinned);
  }

  async setTtl(ino: number, expiresAtMs: number | null, action: TtlAction): Promise<void> {
    this.#t.setTtl(ino, expiresAtMs, action);
  }

  async expiredTtls(now: number, limit?: number): Promise<ExpiredTtl[]> {
    return this.#t.expiredTtls(now, limit);
  }

  async clearTtl(ino: number, expiresAtMs: number): Promise<void> {
    this.#t.clearTtl(ino, expiresAtMs);
  }

  async rescheduleTtl(ino: number, expiresAtMs: number, at: number): Promise<void> {
    this.#t.rescheduleTtl(ino, expiresAtMs, at);
  }

  async free(ino: number): Promise<FreeResponse> {
    return this.#t.free(ino);
  }

  async du(ino: number): Promise<DuResponse> {
    return this.#t.du(ino);
  }

  async cachedBytes(inos: readonly number[]): Promise<number> {
    return this.#t.cachedBytes(inos);
  }

  // ---- mount table ---------------------------------------------------------

  async mounts(): Promise<MountRecord[]> {
    return this.#t.mounts();
  }

  async setMount(path: string, uri: string, options?: string): Promise<void> {
    this.#t.setMount(path, uri, options);
  }

  async claimMount(path: string, uri: string, options: string): Promise<MountRecord> {
    return this.#t.claimMount(path, uri, options);
  }

  async removeMount(path: string): Promise<void> {
    this.#t.removeMount(path);
  }

  async unmount(path: string, parent: number, name: string): Promise<void> {
    this.#t.unmount(path, parent, name);
  }
}
