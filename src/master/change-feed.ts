/**
 * The namespace change feed: which inodes changed, in commit order, so clients
 * can cache metadata and drop exactly what changed instead of asking the master
 * on every lookup.
 *
 * Changes are recorded by SQLite triggers on the node, edge and block_location
 * tables, so no code path that changes the namespace can forget to report
 * (creates, renames, commits, under-store syncs, TTL actions, cache fills…). The
 * log is a TEMP table: in memory, per process. A restarted master starts a new
 * epoch, and clients that followed the old one drop their caches.
 *
 * Every master response carries `strata-changes: <epoch>:<seq at request start>:<seq at response>`:
 * an answer read after change S reflects every change up to S, and a client that
 * made a change knows which seq its feed must reach before its cache is trusted.
 */

import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { ChangesResponse } from '../common/protocol';
import type { ChangeLog } from './metastore';

/** Changes kept for clients that fall behind; one further behind starts over (reset). */
const KEEP = 200_000;

/**
 * How often the log is polled while a mount waits: every POLL_MIN_MS after a change,
 * twice as long after each poll that found none, up to POLL_MAX_MS. Changes made by
 * requests wake waiters at once (notify); the poll only catches those made outside
 * a request (timers, a GET that synced from the store). Polling every 5 ms all the
 * time was three quarters of an idle master's wake-ups (about 200/s with a mount up).
 */
const POLL_MIN_MS = 5;
const POLL_MAX_MS = 100;

/**
 * Columns of `node` that neither stat nor the file's bytes show: a change of these
 * alone is reported as quiet (ChangesResponse.quiet), so a mount keeps the kernel's
 * copy; persisting files in the background would otherwise make every stat of them
 * ask the master again.
 */
export const QUIET_COLUMNS: ReadonlySet<string> = new Set(['persisted', 'ufs_fingerprint', 'synced_at', 'pinned', 'ttl_expires_at', 'ttl_action', 'in_store']);

/** The change log of the SQLite metastore: triggers into a TEMP table of its connection. */
export class ChangeFeed implements ChangeLog {
  readonly epoch = randomBytes(6).toString('hex');
  readonly #db: Database.Database;
  readonly #seq: Database.Statement;
  readonly #since: Database.Statement;
  readonly #oldest: Database.Statement;
  readonly #prune: Database.Statement;
  readonly #listing: Database.Statement;
  readonly #waiters = new Set<() => void>();
  #timer: NodeJS.Timeout | undefined;
  #pollMs = POLL_MIN_MS;
  #lastSeen = 0;
  #prunedAt = 0;
  #durable: (() => Promise<void>) | undefined;

  constructor(db: Database.Database) {
    this.#db = db;
    // kind 0: the inode's attributes changed; 1: the name `name` in the directory `ino` changed; 2: where the file's blocks are cached changed;
    // 3: only attributes that neither stat nor the file's bytes show changed (QUIET_COLUMNS).
    const cols = (db.prepare(`SELECT name FROM pragma_table_info('node')`).all() as { name: string }[]).map((c) => c.name);
    // A column added later counts as shown until it is listed as quiet.
    const same = cols.filter((c) => !QUIET_COLUMNS.has(c)).map((c) => `OLD."${c}" IS NEW."${c}"`).join(' AND ');
    db.exec(`
      CREATE TEMP TABLE IF NOT EXISTS change (seq INTEGER PRIMARY KEY AUTOINCREMENT, ino INTEGER NOT NULL, kind INTEGER NOT NULL, name TEXT);
      CREATE TEMP TRIGGER IF NOT EXISTS change_node_ins AFTER INSERT ON main.node BEGIN INSERT INTO change (ino, kind) VALUES (NEW.ino, 0); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_node_upd AFTER UPDATE ON main.node WHEN NOT (${same}) BEGIN INSERT INTO change (ino, kind) VALUES (NEW.ino, 0); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_node_upd_quiet AFTER UPDATE ON main.node WHEN ${same} BEGIN INSERT INTO change (ino, kind) VALUES (NEW.ino, 3); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_node_del AFTER DELETE ON main.node BEGIN INSERT INTO change (ino, kind) VALUES (OLD.ino, 0); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_edge_ins AFTER INSERT ON main.edge BEGIN INSERT INTO change (ino, kind, name) VALUES (NEW.parent, 1, NEW.name); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_edge_del AFTER DELETE ON main.edge BEGIN INSERT INTO change (ino, kind, name) VALUES (OLD.parent, 1, OLD.name); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_edge_upd AFTER UPDATE ON main.edge BEGIN INSERT INTO change (ino, kind, name) VALUES (OLD.parent, 1, OLD.name), (NEW.parent, 1, NEW.name); END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_loc_ins AFTER INSERT ON main.block_location BEGIN INSERT INTO change (ino, kind) SELECT ino, 2 FROM main.block WHERE block_id = NEW.block_id; END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_loc_upd AFTER UPDATE ON main.block_location BEGIN INSERT INTO change (ino, kind) SELECT ino, 2 FROM main.block WHERE block_id = NEW.block_id; END;
      CREATE TEMP TRIGGER IF NOT EXISTS change_loc_del AFTER DELETE ON main.block_location BEGIN INSERT INTO change (ino, kind) SELECT ino, 2 FROM main.block WHERE block_id = OLD.block_id; END;
    `);
    this.#seq = db.prepare(`SELECT coalesce(max(seq), 0) AS seq FROM temp.change`);
    this.#since = db.prepare(`SELECT seq, ino, kind, name FROM temp.change WHERE seq > ? ORDER BY seq LIMIT 10000`);
    this.#oldest = db.prepare(`SELECT coalesce(min(seq), 0) AS seq FROM temp.change`);
    this.#prune = db.prepare(`DELETE FROM temp.change WHERE seq <= ?`);
    this.#listing = db.prepare(`INSERT INTO temp.change (ino, kind, name) VALUES (?, 1, '')`);
  }

  /**
   * The names in directory `ino` may change without a change of a name (a store
   * mounted on it, its listing to be read again): reported as its empty name.
   * Run inside the transaction that causes it.
   */
  listingChanged(ino: number): void {
    this.#listing.run(ino);
  }

  /**
   * Answers wait for `durable` (the owner's group commit, wal-sync.ts): a change is
   * reported no sooner than the answer to the request that made it, which waits for
   * the same sync and is sent first. A mount that made the change then hears of it from its own answer
   * first (and tells the kernel nothing more), as when commits synced as they returned.
   */
  answerWhen(durable: () => Promise<void>): void {
    this.#durable = durable;
  }

  /** The seq of the last change committed. */
  async seq(): Promise<number> {
    return this.#currentSeq();
  }

  #currentSeq(): number {
    return (this.#seq.get() as { seq: number }).seq;
  }

  /** The value of the `strata-changes` response header. */
  async header(startSeq: number): Promise<string> {
    return `${this.epoch}:${startSeq}:${this.#currentSeq()}`;
  }

  /**
   * Changes after `since`; waits up to `waitMs` for one when there are none. A
   * client of another epoch, or one the log no longer reaches, gets `reset`.
   */
  async changes(epoch: string, since: number, waitMs: number, signal?: AbortSignal): Promise<ChangesResponse> {
    const now = this.#currentSeq();
    const oldest = (this.#oldest.get() as { seq: number }).seq;
    if (epoch !== this.epoch || since > now || (oldest > 0 && since < oldest - 1)) return { epoch: this.epoch, seq: now, reset: true, inos: [], seqs: [], names: [], located: [] };
    if (since === now && waitMs > 0) await this.#wait(waitMs, signal);
    const rows = this.#since.all(since) as { seq: number; ino: number; kind: number; name: string | null }[];
    if (rows.length > 0 && this.#durable) {
      // Read first: the sync waited for then covers every row read. Then a turn of the event loop, so the
      // answers that sync released (the change's own among them) are sent before this report of it.
      await this.#durable();
      await new Promise((r) => setImmediate(r));
    }
    const seq = rows.length > 0 ? rows[rows.length - 1]!.seq : since;
    // Each inode (and each name) once, with its last change in this batch.
    const nodes = new Map<number, number>();
    const names = new Map<string, [number, string, number]>();
    const located = new Map<number, number>();
    const shown = new Set<number>();
    for (const r of rows) {
      if (r.kind === 1) names.set(`${r.ino}/${r.name}`, [r.ino, r.name ?? '', r.seq]);
      else if (r.kind === 2) located.set(r.ino, r.seq);
      else {
        nodes.set(r.ino, r.seq);
        if (r.kind === 0) shown.add(r.ino);
      }
    }
    return {
      epoch: this.epoch,
      seq,
      reset: false,
      inos: [...nodes.keys()],
      seqs: [...nodes.values()],
      names: [...names.values()],
      located: [...located.entries()],
      quiet: [...nodes.keys()].filter((ino) => !shown.has(ino)),
    };
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
      this.#poll();
    });
  }

  /** Wakes waiters when something committed; polls the log while anyone waits (changes come from every code path). */
  #poll(): void {
    if (this.#timer) return;
    this.#lastSeen = this.#currentSeq();
    this.#pollMs = POLL_MIN_MS;
    this.#nextPoll();
  }

  #nextPoll(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#waiters.size === 0) return;
      if (!this.notify()) this.#pollMs = Math.min(POLL_MAX_MS, this.#pollMs * 2);
      this.#nextPoll();
    }, this.#pollMs);
    this.#timer.unref();
  }

  /** Called after requests that may have changed something: wakes waiters at once. Whether there was a change. */
  notify(): boolean {
    const s = this.#currentSeq();
    if (s === this.#lastSeen) return false;
    this.#lastSeen = s;
    // Changes come in runs (a job's creates, a sync's listing): look again soon, also when a
    // backed-off poll is already set (from a request: the timer's own calls have none pending).
    if (this.#pollMs !== POLL_MIN_MS) {
      this.#pollMs = POLL_MIN_MS;
      if (this.#timer) {
        clearTimeout(this.#timer);
        this.#nextPoll();
      }
    }
    for (const w of [...this.#waiters]) w();
    if (s - this.#prunedAt > KEEP / 2) {
      this.#prunedAt = s;
      this.#prune.run(s - KEEP);
    }
    return true;
  }

  async close(): Promise<void> {
    this.stop();
  }

  /** close() for the synchronous owner (InodeTable.close). */
  stop(): void {
    for (const w of [...this.#waiters]) w();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
