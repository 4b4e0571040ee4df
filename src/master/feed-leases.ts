/**
 * Leases on the change feed, so a mount can answer open() from its metadata cache
 * and still give close-to-open consistency.
 *
 * A mount that follows the feed names itself (a subscriber id) and a lease: it
 * polls at least every lease/3 (sooner on a slow link, so each answer comes before
 * the lease it renews ran out: the answer says how long it was held here, the
 * mount measures the rest), and it answers opens from its cache only until
 * `lease` ms after it *sent* its last poll that was answered. Every poll says
 * which changes the mount has applied (`since`). A request that changed the
 * namespace is answered only once every subscriber that may still hold a lease
 * has applied that change, or its lease ran out (it polled last more than a lease
 * ago, so it no longer answers from its cache). So when a writer's close returns,
 * no other mount can open the file from a cache that predates it.
 *
 * This is AFS's callback break, done with the feed: a healthy mount acknowledges
 * within one poll round trip; a stopped or cut-off mount delays writers by at most
 * its lease, once (afterwards its lease is known to have lapsed).
 */

/** A subscriber that has not polled for this long is forgotten. */
const FORGET_AFTER_MS = 60_000;

/** Slack on a subscriber's lease for clock rates and the poll's own latency. */
const LEASE_SLACK = 1.1;
const LEASE_SLACK_MS = 20;

interface Subscriber {
  epoch: string;
  /** The feed position the mount has applied. */
  applied: number;
  /** When its last poll arrived (this process's monotonic clock, ms). */
  polledAt: number;
  leaseMs: number;
}

export class FeedLeases {
  readonly #subs = new Map<string, Subscriber>();
  readonly #waiters = new Set<() => void>();
  /** Waits that ended because a subscriber's lease ran out rather than it acknowledging. */
  lapsed = 0;

  /** A poll from `id` arrived: it has applied the feed up to `since` of `epoch`. */
  polled(id: string, epoch: string, since: number, leaseMs: number): void {
    const now = performance.now();
    this.#subs.set(id, { epoch, applied: since, polledAt: now, leaseMs });
    if (this.#subs.size > 64) for (const [k, s] of this.#subs) if (now - s.polledAt > FORGET_AFTER_MS) this.#subs.delete(k);
    for (const w of [...this.#waiters]) w();
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  /** Subscribers other than `except` that may hold a lease and have not applied `seq` of `epoch`, with when their lease ends. */
  #pending(epoch: string, seq: number, except: string | undefined, now: number): number {
    let until = 0;
    for (const [id, s] of this.#subs) {
      if (id === except) continue;
      const leaseEnd = s.polledAt + s.leaseMs * LEASE_SLACK + LEASE_SLACK_MS;
      if (leaseEnd <= now) continue;
      if (s.epoch === epoch && s.applied >= seq) continue;
      until = Math.max(until, leaseEnd);
    }
    return until;
  }

  /**
   * Resolves once every other subscriber that may hold a lease has applied change
   * `seq` (polled with since ≥ seq), or its lease has run out.
   */
  async waitApplied(epoch: string, seq: number, except?: string): Promise<void> {
    for (;;) {
      const now = performance.now();
      const until = this.#pending(epoch, seq, except, now);
      if (until === 0) return;
      const woken = await new Promise<boolean>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve(true);
        };
        const timer = setTimeout(() => {
          this.#waiters.delete(wake);
          resolve(false);
        }, Math.max(1, Math.ceil(until - now)));
        this.#waiters.add(wake);
      });
      if (!woken && this.#pending(epoch, seq, except, performance.now()) === 0) this.lapsed++;
    }
  }
}
