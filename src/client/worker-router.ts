/**
 * Picks the worker for each block: one that caches it, else the one it maps to
 * under rendezvous (highest-random-weight) hashing over live workers, so every
 * client sends a cold block to the same worker and the cluster caches it once.
 */

import { createHash } from 'node:crypto';
import { StrataError } from '../common/errors';
import type { BlockInfo, WorkerInfo } from '../common/protocol';
import type { MasterClient } from './master-client';

export class WorkerRouter {
  readonly #master: MasterClient;
  readonly #refreshMs: number;
  #workers: WorkerInfo[] = [];
  #fetchedAt = 0;
  #pending: Promise<WorkerInfo[]> | undefined;
  /**
   * Workers that just failed to answer, by id, with their address then and until when they are
   * skipped. A worker that restarts comes back under a new address and is used again at once.
   */
  readonly #failed = new Map<number, { address: string; until: number }>();

  constructor(master: MasterClient, refreshMs = 5000) {
    this.#master = master;
    this.#refreshMs = refreshMs;
  }

  async #live(force = false): Promise<WorkerInfo[]> {
    if (!force && this.#workers.length > 0 && Date.now() - this.#fetchedAt < this.#refreshMs) return this.#workers;
    if (!this.#pending) {
      this.#pending = this.#master
        .workers()
        .then((ws) => {
          this.#workers = ws.filter((w) => w.live);
          this.#fetchedAt = Date.now();
          return this.#workers;
        })
        .finally(() => (this.#pending = undefined));
    }
    const ws = await this.#pending;
    if (ws.length === 0) throw new StrataError('UNAVAILABLE', 'no live worker is registered with the master');
    return ws;
  }

  /** Forgets the cached worker list, e.g. after a worker failed to answer. */
  invalidate(): void {
    this.#fetchedAt = 0;
  }

  /** Skips a worker that failed to answer for `ms`, and refreshes the list soon. */
  markFailed(worker: WorkerInfo, ms = 10_000): void {
    this.#failed.set(worker.id, { address: worker.address, until: Date.now() + ms });
    this.invalidate();
  }

  #recentlyFailed(w: WorkerInfo, now = Date.now()): boolean {
    const f = this.#failed.get(w.id);
    return !!f && f.until >= now && f.address === w.address;
  }

  /**
   * Live workers minus recently failed ones and those reporting a stalled tier (a disk that
   * hangs: what touches it may hang too); all live ones if that leaves none.
   */
  async #usable(): Promise<WorkerInfo[]> {
    const live = await this.#live();
    const now = Date.now();
    const ok = live.filter((w) => !stalled(w) && !this.#recentlyFailed(w, now));
    return ok.length > 0 ? ok : live;
  }

  /**
   * Whether, as last heard, a worker other than `workerId` is live, answering and without a
   * stalled tier: then a request waiting on `workerId` while it reports a hung disk is better
   * given up and sent there. Without one, waiting is the only way to the bytes.
   */
  hasOtherUsable(workerId: number): boolean {
    const now = Date.now();
    return this.#workers.some((w) => w.id !== workerId && !stalled(w) && !this.#recentlyFailed(w, now));
  }

  async forBlock(block: BlockInfo): Promise<WorkerInfo> {
    const usable = await this.#usable();
    for (const id of block.locations) {
      const w = usable.find((x) => x.id === id);
      if (w) return w;
    }
    // A copy on a worker whose stalled tier is another one (pages in memory while its disk hangs)
    // is still served; it may be the only copy of bytes not in the store yet.
    for (const c of block.cached ?? []) {
      const w = this.#workers.find((x) => x.id === c.workerId);
      if (w && stalled(w) && !this.#recentlyFailed(w) && !w.tiers.some((t) => t.name === c.tier && t.state === 'stalled')) return w;
    }
    return rendezvous(usable, `block:${block.id}`);
  }

  async forWrite(ino: number): Promise<WorkerInfo> {
    return rendezvous(await this.#usable(), `ino:${ino}`);
  }
}

function stalled(w: WorkerInfo): boolean {
  return w.tiers.some((t) => t.state === 'stalled');
}

export function rendezvous(workers: WorkerInfo[], key: string): WorkerInfo {
  // One candidate: it wins whatever the hashes. (A SHA-1 per block read was 4% of a one-worker
  // mount's JS thread in a profile of warm small-file reads; the throughput did not move beyond noise.)
  if (workers.length === 1) return workers[0]!;
  let best: WorkerInfo | undefined;
  let bestScore = -1n;
  for (const w of workers) {
    const score = createHash('sha1').update(`${key}|${w.address}`).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      best = w;
      bestScore = score;
    }
  }
  if (!best) throw new StrataError('UNAVAILABLE', 'no live worker');
  return best;
}
