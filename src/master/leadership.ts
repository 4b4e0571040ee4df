/**
 * Leader election of masters that share one PostgreSQL: a lease in one row of the
 * `leader_lease` table. One master holds it and leads; the others stand by and try
 * to take it every `leaseMs / 3`.
 *
 * Why a lease and not `pg_advisory_lock`: an advisory lock lives as long as its
 * session. A leader that is SIGSTOPped (or stalls in a long GC pause, or is cut off
 * behind a half-open TCP connection) keeps its connection, so it keeps the lock
 * forever: no standby could ever take over, and when the process wakes it would
 * still believe it leads. A lease expires by the database's clock whatever the
 * holder does, and the holder measures its own validity without asking anyone.
 *
 * Timing, with `leaseMs` L (default 6000):
 * - Acquire and renew are one conditional UPDATE that sets `expires_at = now() + L`
 *   with the database's clock, so the hosts' clocks never matter.
 * - The holder renews every L/3. It counts its lease as valid until
 *   `start + L - L/6` on its own monotonic clock, where `start` is when it sent the
 *   renew that succeeded. The database granted the lease at `now()`, which is after
 *   `start`, so the holder's deadline always comes at least L/6 before anyone else
 *   can take the row. The L/6 margin covers clock-rate differences and requests
 *   that passed the leader check just before the deadline.
 * - At the deadline, without a newer renew, the holder steps down at once (a timer
 *   emits 'demoted'), and `isLeader()` checks the deadline itself, so a process that
 *   was stopped and wakes up after its deadline answers false before any timer runs.
 * - A standby takes an expired row within L/3, so after a leader's SIGKILL or
 *   SIGSTOP a standby leads within L + L/3 (8 s at the default); a clean close()
 *   releases the row and NOTIFYs the standbys, which take it at once.
 * - Each leadership gets a new term (a counter in the row): the fencing token. A
 *   store shared by the masters can refuse writes of an old term (see
 *   `leaseHeldCondition`).
 * - `term` is a key column of the row (a unique index on name and term), so a
 *   fenced write can lock the row FOR KEY SHARE: that lock makes a takeover (an
 *   UPDATE that changes the term, a key update) wait until the write is done,
 *   but not a renew, which keeps the term. A busy leader's renewals never queue
 *   behind its own writes (with FOR SHARE they did, and a write transaction
 *   longer than the margin, or a steady overlap of them, cost the lease).
 * - The lease has a connection of its own, not one of the namespace's pool, and
 *   every statement on it is cancelled on the server after leaseMs/3: a renew
 *   that could not run in time never runs later.
 * - A takeover waits for a fenced write of the old term in flight at most
 *   0.8 × L/3 (lock_timeout) and tries again at the next period. The masters'
 *   metastore ends a transaction left idle for L/2, so a leader stopped in the
 *   middle of a write releases the row before its lease could have expired, and
 *   the L + L/3 bound above holds for it too.
 *
 * Known limit: Node's monotonic clock (CLOCK_MONOTONIC) does not advance while the
 * whole host is suspended (a laptop asleep, a paused VM); a host suspended longer
 * than the margin may act as leader briefly after it resumes. SIGSTOP, GC pauses
 * and overloaded hosts are covered.
 */

import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import type * as PgModule from 'pg';
import type { Client } from 'pg';

/** The pg driver, loaded on first use: a master on SQLite never needs it, and it was a tenth of that master's start. */
export const pgDriver = (): typeof PgModule => require('pg') as typeof PgModule;
import type { Logger } from '../common/log';
import { StrataError } from '../common/errors';

export const LEADER_LEASE_TABLE = 'leader_lease';
/** The lease length when none is given (ms). */
export const DEFAULT_LEADER_LEASE_MS = 6000;
/** SQLSTATE of a statement that gave up waiting for a row lock (lock_timeout). */
const LOCK_NOT_AVAILABLE = '55P03';
/** The unique index on (name, term) that makes the term a key column of the lease row. */
export const LEADER_LEASE_TERM_INDEX = 'leader_lease_name_term';
/** The NOTIFY channel on which a releasing leader wakes the standbys. */
const RELEASE_CHANNEL = 'strata_leader_released';

export interface LeaderElectionOptions {
  /** The PostgreSQL database, `postgres://user@host:port/db`. */
  url: string;
  /** What clients are told to use while this contender leads (the master's URL). */
  address: string;
  /** How long a lease lasts (ms, by the database's clock). Default 6000. */
  leaseMs?: number;
  /** Which lease: contenders with the same name elect one leader. Default 'master'. */
  name?: string;
  /** This contender's identity in the row. Default `<host>:<pid>:<random>`. */
  holderId?: string;
  logger?: Logger;
}

/** The leader as the row last said: its advertised address and term. */
export interface LeaderInfo {
  address: string;
  term: number;
}

interface LeaseRow {
  holder: string;
  address: string;
  term: string;
  won: boolean;
  remaining_ms: number;
}

export interface LeaderElectionEvents {
  /** This contender now leads with the given term. */
  elected: [term: number];
  /** This contender stopped leading (lost or failed to renew the lease, or closed). */
  demoted: [reason: string];
}

/**
 * One contender for the lease. `start()` begins trying; 'elected' and 'demoted'
 * report the changes; `close()` steps down and releases the lease.
 */
export class LeaderElection extends EventEmitter<LeaderElectionEvents> {
  readonly holderId: string;
  readonly address: string;
  readonly leaseMs: number;
  readonly #name: string;
  readonly #url: string;
  readonly #log: Logger | undefined;
  readonly #renewEveryMs: number;
  readonly #marginMs: number;
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  /** The term we lead with, or undefined as a standby. */
  #term: number | undefined;
  /** performance.now() after which our lease may no longer be ours. */
  #deadline = 0;
  #stepDownTimer: NodeJS.Timeout | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #closed = false;
  #leader: { info: LeaderInfo; knownUntil: number } | undefined;
  #schemaReady = false;

  constructor(opts: LeaderElectionOptions) {
    super();
    const leaseMs = opts.leaseMs ?? DEFAULT_LEADER_LEASE_MS;
    if (!Number.isInteger(leaseMs) || leaseMs < 300) throw new TypeError('leaseMs must be an integer of at least 300');
    if (!/^postgres(ql)?:\/\//.test(opts.url)) throw new TypeError('url must be a postgres:// URL');
    this.leaseMs = leaseMs;
    this.#renewEveryMs = Math.floor(leaseMs / 3);
    this.#marginMs = Math.floor(leaseMs / 6);
    this.#url = opts.url;
    this.address = opts.address;
    this.#name = opts.name ?? 'master';
    this.holderId = opts.holderId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#log = opts.logger;
  }

  /** Starts contending: the first attempt runs now, then every leaseMs/3. */
  start(): void {
    if (this.#tickTimer || this.#closed) return;
    this.#schedule(0);
  }

  /** True while this contender holds a lease that cannot have expired yet. */
  isLeader(): boolean {
    return this.#term !== undefined && performance.now() < this.#deadline;
  }

  /** How long this contender still leads for sure without another renew (ms; 0 when it does not lead). */
  msLeft(): number {
    return this.#term === undefined ? 0 : Math.max(0, Math.floor(this.#deadline - performance.now()));
  }

  /** The fencing token: our term while we lead, else undefined. */
  get fence(): number | undefined {
    return this.isLeader() ? this.#term : undefined;
  }

  /** Which lease this contender contends for (the row's name). */
  get name(): string {
    return this.#name;
  }

  /** The current leader as last read from the row; undefined when none is known to hold a live lease. */
  leader(): LeaderInfo | undefined {
    if (this.isLeader()) return { address: this.address, term: this.#term! };
    const l = this.#leader;
    return l && performance.now() < l.knownUntil ? l.info : undefined;
  }

  /** Steps down (if leading), releases the lease so a standby takes over at once, and disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#tickTimer);
    await this.#ticking;
    const term = this.#term;
    if (term !== undefined) this.#stepDown('closed');
    try {
      if (term !== undefined && this.#client) {
        await this.#client.query(
          `UPDATE ${LEADER_LEASE_TABLE} SET expires_at = '-infinity' WHERE name = $1 AND holder = $2 AND term = $3`,
          [this.#name, this.holderId, term],
        );
        await this.#client.query(`NOTIFY ${RELEASE_CHANNEL}`);
      }
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, 'could not release the leader lease; it expires by itself');
    }
    await this.#disconnect();
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#tickTimer);
    this.#tickTimer = setTimeout(() => {
      if (this.#ticking) return;
      this.#ticking = this.#tick().finally(() => {
        this.#ticking = undefined;
        this.#schedule(this.#renewEveryMs);
      });
    }, ms);
  }

  /** One acquire-or-renew attempt. */
  async #tick(): Promise<void> {
    const renewing = this.#term !== undefined;
    const started = performance.now();
    let row: LeaseRow | undefined;
    try {
      const client = await this.#connect();
      await this.#ensureSchema(client);
      row = await this.#tryLease(client, renewing);
    } catch (err) {
      if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) {
        // The row is share-locked by a fenced write in flight (a stalled leader's, until the database ends it).
        this.#log?.info({ leading: renewing }, 'leader lease: the row is locked by a write in flight; trying again');
      } else {
        this.#log?.warn({ err: (err as Error).message, leading: renewing }, 'leader lease: database unreachable');
        await this.#disconnect();
      }
      if (this.#term !== undefined && performance.now() >= this.#deadline) this.#stepDown('could not renew the lease in time');
      return;
    }
    if (this.#closed) return;
    const now = performance.now();
    const deadline = started + this.leaseMs - this.#marginMs;
    const term = Number(row.term);
    if (row.won && now < deadline) {
      if (this.#term !== undefined && this.#term !== term) this.#stepDown('the lease expired before its renew');
      this.#deadline = deadline;
      clearTimeout(this.#stepDownTimer);
      this.#stepDownTimer = setTimeout(() => {
        if (this.#term !== undefined && performance.now() >= this.#deadline) this.#stepDown('could not renew the lease in time');
      }, Math.max(0, deadline - now) + 1);
      this.#stepDownTimer.unref();
      if (this.#term === undefined) {
        this.#term = term;
        this.#log?.info({ term, holder: this.holderId }, 'elected leader');
        this.emit('elected', term);
      }
      return;
    }
    // Lost, or won too late to use (the answer came after the deadline its request allows).
    if (this.#term !== undefined) this.#stepDown(row.won ? 'the renew answered too late' : 'another master holds the lease');
    this.#leader = row.holder && row.remaining_ms > 0 && !row.won ? { info: { address: row.address, term }, knownUntil: now + row.remaining_ms } : undefined;
  }

  #stepDown(reason: string): void {
    if (this.#term === undefined) return;
    const term = this.#term;
    this.#term = undefined;
    this.#deadline = 0;
    clearTimeout(this.#stepDownTimer);
    this.#log?.warn({ term, reason }, 'no longer leader');
    this.emit('demoted', reason);
  }

  /**
   * Takes or renews the lease in one statement. A renew keeps the term; taking the
   * lease (ours expired, someone else's expired, or it was released) starts a new
   * one. When the UPDATE changes nothing, the row as it is says who leads.
   */
  async #tryLease(client: Client, renewing: boolean): Promise<LeaseRow> {
    const r = await client.query<LeaseRow>(
      `WITH taken AS (
         UPDATE ${LEADER_LEASE_TABLE}
            SET holder = $2, address = $3,
                term = CASE WHEN $5::boolean AND holder = $2 AND expires_at > now() THEN term ELSE term + 1 END,
                expires_at = now() + $4 * interval '1 millisecond'
          WHERE name = $1 AND (holder = $2 OR expires_at <= now())
          RETURNING holder, address, term, expires_at)
       SELECT holder, address, term::text AS term, true AS won, $4::float8 AS remaining_ms FROM taken
       UNION ALL
       SELECT holder, address, term::text, false, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::float8
         FROM ${LEADER_LEASE_TABLE} WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM taken)`,
      [this.#name, this.holderId, this.address, this.leaseMs, renewing],
    );
    const row = r.rows[0];
    if (!row) throw new StrataError('INTERNAL', `no ${LEADER_LEASE_TABLE} row '${this.#name}'`);
    return row;
  }

  async #ensureSchema(client: Client): Promise<void> {
    if (this.#schemaReady) return;
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${LEADER_LEASE_TABLE} (
           name text PRIMARY KEY,
           holder text NOT NULL,
           address text NOT NULL,
           term bigint NOT NULL,
           expires_at timestamptz NOT NULL)`,
      );
    } catch (err) {
      // Contenders starting together race on CREATE TABLE IF NOT EXISTS: the loser gets a
      // unique violation on the catalog (23505) or duplicate_table (42P07); the table is there.
      const code = (err as { code?: string }).code;
      if (code !== '23505' && code !== '42P07') throw err;
    }
    // Makes `term` a key column (see the module comment). Looked up first: CREATE INDEX locks the table even when the index exists.
    const indexed = await client.query(`SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1`, [LEADER_LEASE_TERM_INDEX]);
    if (indexed.rowCount === 0) {
      try {
        await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${LEADER_LEASE_TERM_INDEX} ON ${LEADER_LEASE_TABLE} (name, term)`);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '42P07') throw err;
      }
    }
    await client.query(
      `INSERT INTO ${LEADER_LEASE_TABLE} (name, holder, address, term, expires_at) VALUES ($1, '', '', 0, '-infinity') ON CONFLICT (name) DO NOTHING`,
      [this.#name],
    );
    this.#schemaReady = true;
  }

  async #connect(): Promise<Client> {
    if (this.#client) return this.#client;
    this.#connecting ??= (async () => {
      // Every statement must answer well within a renew period: a hung connection is dropped, not waited on.
      const client = new (pgDriver().Client)({
        connectionString: this.#url,
        connectionTimeoutMillis: this.#renewEveryMs,
        query_timeout: this.#renewEveryMs,
        // The server cancels it too: a renew the client gave up on must not run later, holding the row for a lost term.
        statement_timeout: this.#renewEveryMs,
        // A takeover that waits for a write of the old term gives up a little earlier, as such (55P03), keeping the connection.
        lock_timeout: Math.floor(this.#renewEveryMs * 0.8),
        keepAlive: true,
        application_name: 'strata-leader-election',
      });
      client.on('error', (err) => {
        this.#log?.warn({ err: err.message }, 'leader lease: connection lost');
        if (this.#client === client) this.#client = undefined;
        void client.end().catch(() => undefined);
      });
      client.on('notification', () => {
        // A leader released the lease: try now rather than at the next period.
        if (this.#term === undefined && !this.#ticking) this.#schedule(0);
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${RELEASE_CHANNEL}`);
      } catch (err) {
        void client.end().catch(() => undefined);
        throw err;
      }
      this.#client = client;
      return client;
    })().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #disconnect(): Promise<void> {
    const c = this.#client;
    this.#client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/**
 * A SQL condition true only while the lease `name` is held with `term`, for a store
 * shared by the masters to fence the writes of a leader that lost its lease:
 * `UPDATE … WHERE … AND ${leaseHeldCondition('$7', '$8')}`.
 */
export function leaseHeldCondition(nameParam: string, termParam: string): string {
  return `EXISTS (SELECT 1 FROM ${LEADER_LEASE_TABLE} WHERE name = ${nameParam} AND term = ${termParam} AND expires_at > now())`;
}
