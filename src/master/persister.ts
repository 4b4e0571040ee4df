/**
 * Persists ASYNC_THROUGH files from the queue kept in the master's database: a
 * worker that caches every block of the file streams them into the under-store.
 * The queue survives master and worker restarts; failures retry with backoff; the
 * blocks stay pinned on the worker until the persist succeeded.
 */

import { WorkerClients } from './worker-clients';
import { StrataError } from '../common/errors';
import type { Logger } from '../common/log';
import type { PersistResponse } from '../common/protocol';
import type { Metastore } from './metastore';

export interface PersisterOptions {
  table: Metastore;
  logger: Logger;
  /** How often the queue is polled (ms). Default 500. */
  intervalMs?: number;
  /** Files persisted at the same time. Default 2. */
  concurrency?: number;
  /** The cluster token, sent to workers. */
  token?: string;
  /**
   * Counts a finished upload: true when it made the file persisted. Default: the
   * store's markPersisted; the master passes Namespace.settlePersist, which also checks
   * that the file is still at the path the worker wrote.
   */
  settle?: (ino: number, container: number, r: PersistResponse) => Promise<boolean>;
  /**
   * Persists a file that has no blocks (empty as of `container`) without a worker: true
   * when that made it persisted. Without it, a live worker is asked as for any file.
   */
  persistEmpty?: (ino: number, container: number) => Promise<boolean>;
}

export class Persister {
  readonly #table: Metastore;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #concurrency: number;
  readonly #settle: (ino: number, container: number, r: PersistResponse) => Promise<boolean>;
  readonly #persistEmpty: ((ino: number, container: number) => Promise<boolean>) | undefined;
  readonly #running = new Map<number, Promise<void>>();
  /** One keep-alive pool per worker: a connection per upload cost more than small files' uploads. */
  readonly #workers: WorkerClients;
  #timer: NodeJS.Timeout | undefined;
  /** The poll of the queue in flight: one at a time, and stop() waits for it. */
  #tickInFlight: Promise<void> | undefined;
  #again = false;

  constructor(opts: PersisterOptions) {
    this.#table = opts.table;
    this.#log = opts.logger;
    this.#intervalMs = opts.intervalMs ?? 500;
    this.#concurrency = opts.concurrency ?? 2;
    this.#workers = new WorkerClients({ timeoutMs: 600_000, token: opts.token });
    this.#settle = opts.settle ?? ((ino, container, r) => this.#table.markPersisted(ino, container, r.ufsFingerprint));
    this.#persistEmpty = opts.persistEmpty;
  }

  /** Starts polling the queue; again while running (a master elected twice over) changes nothing. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#poll(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Looks at the queue now; during a look in flight, once more after it (a slot it did not see may be free). */
  #poll(): void {
    if (this.#tickInFlight) {
      this.#again = true;
      return;
    }
    this.#again = false;
    this.#tickInFlight = this.#tick()
      .catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'persist queue poll failed'))
      .finally(() => {
        this.#tickInFlight = undefined;
        if (this.#again && this.#timer) this.#poll();
      });
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#tickInFlight;
    await Promise.allSettled([...this.#running.values()]);
    await this.#workers.close();
  }

  async #tick(): Promise<void> {
    const free = this.#concurrency - this.#running.size;
    if (free <= 0) return;
    // #running is checked after the await: persist() calls from the API may have started some meanwhile.
    for (const job of await this.#table.duePersists(Date.now(), free + this.#running.size)) {
      if (this.#running.has(job.ino) || this.#running.size >= this.#concurrency) continue;
      void this.persist(job.ino).catch(() => undefined);
    }
  }

  /** Persists one file now (or joins a persist already running); resolves when it is in the store. */
  persist(ino: number): Promise<void> {
    let p = this.#running.get(ino);
    if (!p) {
      const once = this.#persistOnce(ino).finally(() => this.#running.delete(ino));
      // After a file is done the next due one starts at once, not at the next poll: with small files a poll per
      // free slot capped the queue at concurrency / interval (4 files/s by default). A failure, or an upload the
      // file outran (rewritten meanwhile: it is due again), waits for the poll, so neither repeats back to back.
      once.then(
        (done) => done && this.#timer && this.#poll(),
        () => undefined,
      );
      p = once.then(() => undefined);
      this.#running.set(ino, p);
    }
    return p;
  }

  /** True when the file left the queue (persisted, or nothing to do); false when it is still to be uploaded. */
  async #persistOnce(ino: number): Promise<boolean> {
    const node = await this.#table.getNode(ino);
    if (!node || node.type !== 'file' || node.persistState === 'persisted') {
      // dropPersist checks again in its transaction: a commit queued since getNode keeps its entry.
      return this.#table.dropPersist(ino);
    }
    // Blocks read after the node: if a commit came between, the container check of markPersisted refuses the result.
    const blocks = await this.#table.blocks(ino);
    try {
      if (blocks.length === 0 && node.size === 0 && this.#persistEmpty) {
        const persisted = await this.#persistEmpty(ino, node.container);
        if (persisted) this.#log.info({ ino }, 'persisted (empty)');
        return persisted;
      }
      const live = (await this.#table.workers()).filter((w) => w.live);
      const worker = live.find((w) => blocks.every((b) => b.locations.includes(w.id))) ?? (blocks.length === 0 ? live[0] : undefined);
      if (!worker) throw new StrataError('UNAVAILABLE', `no live worker holds every block of inode ${ino}`);
      const r = await this.#workers.get(worker.address).post<PersistResponse>(`/persist/${ino}?container=${node.container}&blocks=${blocks.length}`, {});
      // The settle step re-checks container and path: content committed, or a rename or unlink, during the upload leaves it unpersisted.
      const persisted = await this.#settle(ino, node.container, r);
      if (persisted) this.#log.info({ ino, worker: worker.id }, 'persisted');
      return persisted;
    } catch (err) {
      const msg = (err as Error).message;
      await this.#table.persistFailed(ino, msg).catch((e: unknown) => this.#log.warn({ ino, err: (e as Error).message }, 'could not record a failed persist'));
      this.#log.warn({ ino, err: msg }, 'persist failed; will retry');
      throw err;
    }
  }
}
