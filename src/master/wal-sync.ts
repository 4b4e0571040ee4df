/**
 * Group commit for the SQLite metastore.
 *
 * With `synchronous = FULL` every commit fsyncs the WAL inside better-sqlite3's
 * synchronous call: the master's one thread waits on the disk at every commit, no
 * other request is served meanwhile, and requests that commit together pay a sync each. Instead the table commits with `synchronous = NORMAL` (written to the WAL,
 * not synced; SQLite still syncs around its checkpoints), and every answer that
 * reports a commit waits for an fdatasync of the WAL that began after it, run in
 * libuv's thread pool. Commits made while one sync runs share the next one.
 *
 * What an answer said is on disk, as with FULL: a power loss can take back only
 * changes nobody was told about. Reads wait too when something is committed and not
 * yet synced, so no answer shows a change a power loss could take back. The change feed
 * may name such a change a little early; its epoch ends with the process, and clients of
 * an ended epoch drop everything it told them.
 *
 * A sync that fails leaves committed pages whose fate is unknown (after a failed
 * fsync the kernel may drop them and report success the next time), so the store
 * refuses every later call; restarting the master reopens the database from what is
 * on disk.
 */

import { closeSync, existsSync, fdatasyncSync, fsyncSync, openSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { StrataError } from '../common/errors';

/** Makes what was written to a file durable; `close` lets go of the file. */
export interface SyncFile {
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * fdatasync of `file` through a descriptor kept open. SQLite removes the WAL only when its
 * last connection closes, and the table's stays open until after the last sync, so the
 * descriptor names the live WAL for as long as it is used.
 */
export function fdatasyncFile(file: string): SyncFile {
  let handle: Promise<FileHandle> | undefined;
  return {
    async sync() {
      handle ??= open(file, 'r');
      await (await handle).datasync();
    },
    async close() {
      const h = handle;
      handle = undefined;
      if (h) await (await h).close();
    },
  };
}

/**
 * At open, before any answer: the WAL as opening left it (written without a sync), and the
 * directory entry of a WAL just created, which no fdatasync of the file covers.
 */
export function syncAtOpen(walFile: string): void {
  if (!existsSync(walFile)) return;
  for (const [file, sync] of [
    [walFile, fdatasyncSync],
    [path.dirname(walFile), fsyncSync],
  ] as const) {
    const fd = openSync(file, 'r');
    try {
      sync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

export class WalSync {
  readonly #file: string;
  readonly #mark: () => number;
  readonly #sync: SyncFile;
  /** Changes (by `#mark`) that a finished sync covers. */
  #synced: number;
  #running: Promise<void> | undefined;
  #failed: StrataError | undefined;
  #syncs = 0;

  /**
   * `mark`: a number that grows with every change committed (SQLite's total_changes());
   * what it reads at construction counts as durable.
   */
  constructor(file: string, mark: () => number, sync: SyncFile = fdatasyncFile(file)) {
    this.#file = file;
    this.#mark = mark;
    this.#sync = sync;
    this.#synced = mark();
  }

  /** Whether a sync has failed (every call is refused since). */
  get failed(): boolean {
    return this.#failed !== undefined;
  }

  /** Syncs run so far. */
  get syncs(): number {
    return this.#syncs;
  }

  /** Resolves once everything committed so far is on disk. */
  async durable(): Promise<void> {
    if (this.#failed) throw this.#failed;
    const needed = this.#mark();
    while (this.#synced < needed) {
      // A sync that is running may have begun before the commit waited for: wait for it, then start another.
      this.#running ??= this.#run();
      await this.#running;
    }
  }

  async #run(): Promise<void> {
    const covers = this.#mark();
    this.#syncs++;
    try {
      await this.#sync.sync();
      this.#synced = Math.max(this.#synced, covers);
    } catch (err) {
      this.#failed ??= new StrataError('IO_ERROR', `the metadata store could not sync ${this.#file} (${(err as Error).message}); restart the master`, { cause: err });
      throw this.#failed;
    } finally {
      this.#running = undefined;
    }
  }

  /** Waits for what is committed, then lets go of the file. */
  async close(): Promise<void> {
    try {
      if (!this.#failed) await this.durable();
    } finally {
      await this.#sync.close();
    }
  }

  /** Refuses further calls when a sync has failed. */
  check(): void {
    if (this.#failed) throw this.#failed;
  }
}
