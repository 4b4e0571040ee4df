/**
 * The master: the namespace and the cluster registry behind an HTTP/JSON API.
 * It never reads or writes file bytes; workers and clients move those.
 */

import { mkdirSync } from 'node:fs';
import * as nodePath from 'node:path';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { StrataError } from '../common/errors';
import { maskSecret } from '../common/config';
import { HttpAuthOptions, HttpLimits, createHttpServer, field, intParam, optionalInt, requiredInt, requiredString } from '../common/http';
import { joinPath, validateName } from '../common/paths';
import type { Logger } from '../common/log';
import {
  BlockReport,
  CommittedBlock,
  DuResponse,
  FreeResponse,
  HeartbeatResponse,
  TierInfo,
  TierState,
  TIER_STATES,
  UfsLeftover,
  MASTER_API,
  CHANGES_HEADER,
  SUBSCRIBER_HEADER,
  DirAfterChange,
  DirsAfterChange,
  RegisterWorkerResponse,
  FileType,
  Timespec,
  WriteCommitRequest,
  WriteType,
  WRITE_TYPES,
  LEFTOVERS_MAX,
  LEFTOVER_HANDLE_MAX,
  LEFTOVER_URI_MAX,
  BLOCKS_PER_CONTAINER,
  PINNED_REPORT_MAX,
  LIST_PAGE_MAX,
  MAX_TTL_MS,
} from '../common/protocol';
import { createUfs, UfsMeter } from '../ufs';
import { Metastore, toAttributes } from './metastore';
import { SqliteMetastore } from './sqlite-metastore';
import { PgMetastore } from './pg-metastore';
import { LIST_PAGE, Namespace } from './namespace';
import { MountTable } from './mount-table';
import { FeedLeases } from './feed-leases';
import { Persister } from './persister';
import { WorkerClients } from './worker-clients';
import { Dashboard, DashboardOptions, registerDashboard } from './dashboard';
import { LeaderElectionConfig, registerLeaderGate } from './leader-gate';
import { DEFAULT_LEADER_LEASE_MS } from './leadership';
import { Gauge } from 'prom-client';
import { createDaemonMetrics } from '../common/metrics';

export interface MasterOptions {
  /** Directory for the metadata database (`<home>/master/strata.db`). */
  home: string;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Port of the API; 0 picks a free one. Default 19998. */
  port?: number;
  /** Under-store mounted at '/'. */
  ufsUri: string;
  /** Options of the root mount (driver keys like s3.endpoint, and readonly/write.type/sync.interval.ms). */
  ufsOptions?: Record<string, string>;
  /** Write type of mounts that set none. Default CACHE_THROUGH. */
  writeType?: WriteType;
  /** Wait before the first persist attempt of an ASYNC_THROUGH file (ms). Default 0. */
  persistInitialWaitMs?: number;
  /** Block size of new files. Default 64 MiB. */
  blockSize?: number;
  /**
   * Where the metadata lives: `sqlite:///path/to/file.db` (created when missing) or
   * a PostgreSQL URL `postgres://user@host:port/db` (an existing database; the schema
   * is created on first start). Default: SQLite in `<home>/master/strata.db`.
   */
  metastore?: string;
  /** Re-check under-store metadata older than this (ms); 0 always, -1 never. Default 5000. */
  syncIntervalMs?: number;
  /** A worker silent for this long (ms) is marked lost. Default 30000. */
  workerTimeoutMs?: number;
  /** How often expired TTLs are looked for and applied (ms). Default 1000. */
  ttlCheckIntervalMs?: number;
  /**
   * The read-only web dashboard at `/` on the API's port, with its sampler of the
   * workers' cache hit counters; false turns both off. Default true.
   */
  dashboard?: boolean | DashboardOptions;
  /** Require the cluster token (also sent to workers). Default: no auth. */
  auth?: HttpAuthOptions;
  /** Connection, header and timeout limits of the API server (see HttpLimits for defaults). */
  limits?: HttpLimits;
  /** Largest JSON body; block reports may be 64 times this. Default 1 MiB. */
  maxBodyBytes?: number;
  /** A whole request must arrive within this (ms). Default 60000. */
  requestTimeoutMs?: number;
  /** Lead only while holding a lease shared with other masters (see leader-gate.ts). Default: always lead. */
  leaderElection?: LeaderElectionConfig;
  logger: Logger;
}

export interface RunningMaster {
  url: string;
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_BLOCK_SIZE = 64 * 1024 * 1024;
/** Largest uid or gid: uid_t is 32 bits and (uid_t)-1 means "unchanged", never an owner. */
const MAX_ID = 0xfffffffe;
/** Timestamps must fit a JS Date (±8.64e15 ms). */
const MAX_TIME_SEC = 8.64e12;
/** How long a worker's register waits for the master to discard what its last run's writes left. */
const LEFTOVERS_WAIT_MS = 10_000;
/** How long a free waits for a worker to take its deletes. */
const NUDGE_TIMEOUT_MS = 5000;

/**
 * The one place the master chooses its metadata engine, from the `metastore` URI;
 * everything else sees only the Metastore interface. CONFIG for a URI it cannot use.
 */
export async function openMetastore(
  uri: string,
  opts: { blockSize: number; persistInitialWaitMs: number; logger?: Logger; shared?: boolean; idleInTransactionTimeoutMs?: number },
): Promise<Metastore> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'sqlite') {
    const file = uri.slice('sqlite://'.length);
    if (!nodePath.isAbsolute(file)) throw new StrataError('CONFIG', `metastore ${uri}: a SQLite metastore is sqlite:// and an absolute file path, as in sqlite:///var/lib/strata/master/strata.db`);
    mkdirSync(nodePath.dirname(file), { recursive: true });
    return new SqliteMetastore(file, { blockSize: opts.blockSize, persistInitialWaitMs: opts.persistInitialWaitMs });
  }
  // A standby master on another host can take over a namespace kept in PostgreSQL.
  if (scheme === 'postgres' || scheme === 'postgresql') return PgMetastore.open(uri, { ...opts, bumpPinVersionAtOpen: !opts.shared });
  throw new StrataError('CONFIG', `metastore '${maskSecret('metastore', uri)}' is not supported: use sqlite:///path/to/file.db or postgres://user@host:port/db`);
}

export async function startMaster(opts: MasterOptions): Promise<RunningMaster> {
  const log = opts.logger;
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(Math.log2(blockSize)) || blockSize < 4096 || blockSize > 2 ** 30) {
    throw new StrataError('CONFIG', `blockSize must be a power of two between 4 KiB and 1 GiB, got ${blockSize}`);
  }
  createUfs(opts.ufsUri, opts.ufsOptions ?? {}); // a bad root URI fails before anything is created
  const metastoreUri = opts.metastore ?? `sqlite://${nodePath.join(opts.home, 'master', 'strata.db')}`;
  let election = opts.leaderElection;
  if (election?.url === 'metastore') {
    if (!/^postgres(ql)?:\/\//i.test(metastoreUri)) {
      throw new StrataError('CONFIG', `leaderElection 'metastore' needs a postgres:// metastore, not '${maskSecret('metastore', metastoreUri)}'`);
    }
    election = { ...election, url: metastoreUri };
  }
  // Masters sharing one PostgreSQL for the namespace and the lease: writes are fenced by the lease, and a standby writes nothing until elected.
  const shared = election !== undefined && election.url === metastoreUri;
  // A leader stopped in the middle of a fenced write holds a lock on the lease row: the database ends that
  // transaction after half a lease, before the lease can expire (its last renew was at most a third of a lease
  // earlier), so a standby still takes over within 4/3 of the lease.
  const idleInTransactionTimeoutMs = shared ? Math.floor((election!.leaseMs ?? DEFAULT_LEADER_LEASE_MS) / 2) : undefined;
  const table = await openMetastore(metastoreUri, { blockSize, persistInitialWaitMs: opts.persistInitialWaitMs ?? 0, logger: log, shared, idleInTransactionTimeoutMs });
  const metrics = createDaemonMetrics('master');
  let mounts: MountTable;
  try {
    mounts = await MountTable.open(table, opts.ufsUri, opts.ufsOptions ?? {}, { shared, logger: log, meter: new UfsMeter(metrics.registry) });
  } catch (err) {
    await table.close();
    throw err;
  }
  const ns = new Namespace({ table, mounts, syncIntervalMs: opts.syncIntervalMs ?? 5000, logger: log, leading: () => leadership.isLeader() });
  if (opts.writeType) ns.setDefaultWriteType(opts.writeType);
  /**
   * Has the live workers take their queued deletes now instead of with their next
   * heartbeat, so a free is done when it answers: a `load` right after it caches the
   * bytes again, where before the worker still had them (loading nothing) and then
   * dropped them with its next heartbeat. Bounded; a worker that does not answer
   * gets its deletes with its next heartbeat, as before.
   */
  const nudges = new WorkerClients({ timeoutMs: NUDGE_TIMEOUT_MS, token: opts.auth?.token });
  const dropNow = async (): Promise<void> => {
    const live = (await table.workers().catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'could not list workers to have them take their deletes now');
      return [];
    })).filter((w) => w.live);
    const results = await Promise.allSettled(live.map((w) => nudges.get(w.address).post('/report', {})));
    results.forEach((r, i) => {
      if (r.status === 'rejected') log.warn({ worker: live[i]!.id, err: (r.reason as Error).message }, 'worker did not take its deletes now; it gets them with its next heartbeat');
    });
  };
  const persister = new Persister({ table, logger: log, token: opts.auth?.token, settle: (ino, container, r) => ns.settlePersist(ino, container, r), persistEmpty: (ino, container) => ns.persistEmpty(ino, container) });
  const workerTimeoutMs = opts.workerTimeoutMs ?? 30_000;
  // Heartbeats renew a write in flight every few seconds; one silent this long lost its client or worker.
  const openWriteTimeoutMs = Math.max(60_000, 4 * workerTimeoutMs);

  // Gauges read at scrape time from the database, so they never drift (prom-client awaits an async collect).
  new Gauge({ name: 'strata_master_inodes', help: 'Inodes in the namespace', registers: [metrics.registry], async collect() { this.set(await table.nodeCount()); } });
  new Gauge({
    name: 'strata_master_workers',
    help: 'Registered workers by state',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    async collect() {
      const ws = await table.workers();
      this.set({ state: 'live' }, ws.filter((w) => w.live).length);
      this.set({ state: 'lost' }, ws.filter((w) => !w.live).length);
    },
  });
  new Gauge({
    name: 'strata_master_store_changes',
    help: 'Changes acting in an under-store (unlink, rename, mkdir, write-through commits…), running or waiting for a path another one holds',
    registers: [metrics.registry],
    collect() {
      this.set(ns.storeChanges);
    },
  });
  new Gauge({ name: 'strata_master_persist_queue_length', help: 'Files waiting to be persisted (ASYNC_THROUGH)', registers: [metrics.registry], async collect() { this.set((await table.persistQueue()).length); } });
  new Gauge({
    name: 'strata_master_persist_queue_oldest_seconds',
    help: 'Age of the oldest file waiting to be persisted',
    registers: [metrics.registry],
    async collect() {
      const q = await table.persistQueue();
      // A loop, not Math.min(...q): spreading 125k entries overflowed the stack and failed every scrape.
      let oldest = Infinity;
      for (const j of q) oldest = Math.min(oldest, j.enqueuedAt);
      this.set(q.length ? (Date.now() - oldest) / 1000 : 0);
    },
  });
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  const app = createHttpServer({ logger: log, metrics, auth: opts.auth, limits: opts.limits, bodyLimit: maxBody, requestTimeoutMs: opts.requestTimeoutMs ?? 60_000 });
  const api = MASTER_API;
  // A standby answers NOT_LEADER and runs none of the leader's jobs (persisting, expiring workers and TTLs).
  /** Counts elections and demotions: the leader's jobs start only if no demotion came while they got ready. */
  let term = 0;
  const onElected = (): void => {
    const elected = ++term;
    // Listings another leader made meanwhile moved directories' syncedAt; what they showed is not known here.
    ns.forgetListings();
    if (!(shared && table instanceof PgMetastore)) return persister.start();
    const startJobs = () => {
      if (term === elected) persister.start();
    };
    // A new pin version and change-log epoch, and the mounts another leader may have changed, before the leader's jobs start.
    table
      .elected()
      .then(() => mounts.reload())
      .then(startJobs, (err: unknown) => {
        log.warn({ err: (err as Error).message }, 'could not start leading the shared metastore');
        startJobs();
      });
  };
  const onDemoted = (): void => {
    term++;
    void persister.stop();
  };
  const leadership = registerLeaderGate(app, election, log, { onElected, onDemoted });
  if (shared && table instanceof PgMetastore) table.setFence(() => leadership.fence());

  // The change feed: every answer says which changes it reflects; changes wake the long polls.
  const feed = table.changes;
  const startSeq = new WeakMap<object, number>();
  /**
   * For answers that carry what a change made (a new entry's attributes): the seq read right after
   * the change, so the mount stores them as of then, not as of the response (the metastore may take
   * more round trips before it, in which others' changes to the same inode would go unnoticed).
   */
  const answeredAt = new WeakMap<object, number>();
  const answered = async <T>(req: object, answer: T): Promise<T> => {
    answeredAt.set(req, await feed.seq());
    return answer;
  };
  app.addHook('onRequest', async (req) => {
    startSeq.set(req, await feed.seq());
  });
  const leases = new FeedLeases();
  // A mount's feed lease must run out before another master can take over (the old leader may be
  // cut off, not dead, and a new one knows no leases): at most half the leader lease, 10 s alone.
  const maxFeedLeaseMs = election ? Math.max(100, Math.floor((election.leaseMs ?? DEFAULT_LEADER_LEASE_MS) / 2)) : 10_000;
  new Gauge({ name: 'strata_master_feed_subscribers', help: 'Mounts holding change-feed leases (they answer opens from their caches)', registers: [metrics.registry], collect() { this.set(leases.subscribers); } });
  new Gauge({ name: 'strata_master_feed_lease_lapses_total', help: 'Changes answered only after a mount\'s feed lease ran out (the mount stopped polling), since start', registers: [metrics.registry], collect() { this.set(leases.lapsed); } });
  app.addHook('onSend', async (req, reply, payload) => {
    const start = startSeq.get(req);
    // Refused before our hooks ran (no token): such a caller learns nothing of the feed, and waits for no lease.
    if (start === undefined) return payload;
    // Read before any wait below: the answer reflects the changes up to now, not others made meanwhile.
    const at = answeredAt.get(req);
    const header = at === undefined ? await feed.header(start) : `${feed.epoch}:${start}:${at}`;
    // Workers' reports change where blocks are cached, never what a file holds: they need not wait.
    if (req.method !== 'GET' && leases.subscribers > 0 && reply.statusCode < 500 && !req.url.startsWith(`${api}/workers/`)) {
      // Close-to-open for mounts that answer opens from their caches: a change is answered only
      // once every other mount holding a feed lease has applied it (see feed-leases.ts).
      const now = await feed.seq();
      if (now > start) {
        feed.notify();
        const by = req.headers[SUBSCRIBER_HEADER];
        await leases.waitApplied(feed.epoch, now, typeof by === 'string' ? by : undefined);
      }
    }
    void reply.header(CHANGES_HEADER, header);
    return payload;
  });
  app.addHook('onResponse', async (req) => {
    if (req.method !== 'GET') feed.notify();
  });
  app.get(`${api}/changes`, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const epoch = typeof q.epoch === 'string' ? q.epoch : '';
    const since = intParam(q.since, 'since', 0);
    const waitMs = Math.min(intParam(q.wait, 'wait', 0), 60_000);
    let granted = 0;
    if (q.subscriber !== undefined) {
      if (typeof q.subscriber !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/.test(q.subscriber)) throw new StrataError('BAD_REQUEST', 'subscriber is 8-64 letters, digits, _ or -');
      const asked = intParam(q.lease, 'lease', 0);
      if (asked < 100 || asked > 60_000) throw new StrataError('BAD_REQUEST', 'lease must be 100…60000 ms');
      // Nor past this master's own lead: the mount counts its lease from when it sent this poll, so a lease
      // granted here ends before the leader lease could pass to another master, which knows no feed leases.
      granted = Math.min(asked, maxFeedLeaseMs, leadership.msLeft());
      leases.polled(q.subscriber, epoch, since, granted);
    }
    const ac = new AbortController();
    // A client that went away stops the wait (the response's close, not the request's: that one fires once the request is read).
    // Only while waiting: every answered poll closes its response too, and an abort builds a DOMException (a feed poll per change).
    const gone = () => ac.abort();
    reply.raw.once('close', gone);
    try {
      const start = performance.now();
      const changes = await feed.changes(epoch, since, waitMs, ac.signal);
      return { ...changes, ttlMs: ns.cacheTtlMs(), listingMarks: true, ...(granted > 0 ? { leaseMs: granted } : {}), heldMs: Math.round(performance.now() - start) };
    } finally {
      reply.raw.off('close', gone);
    }
  });

  /**
   * The path a request names: `path`, or `parent` + `name` (the FUSE client speaks
   * inodes), or `ino` alone. Inode forms are turned into paths here, because the
   * under-store is addressed by path.
   */
  const target = async (src: unknown, where: 'query' | 'body'): Promise<string> => {
    const o = (src ?? {}) as Record<string, unknown>;
    if (typeof o.path === 'string') return o.path;
    const int = (k: string) => (where === 'query' ? intParam(o[k], k) : requiredInt(o, k, 1));
    if (o.parent !== undefined) {
      if (typeof o.name !== 'string') throw new StrataError('BAD_REQUEST', `missing '${'name'}' beside 'parent'`);
      return joinPath(await table.pathOf(int('parent')), validateName(o.name));
    }
    if (o.ino !== undefined) return table.pathOf(int('ino'));
    throw new StrataError('BAD_REQUEST', `missing 'path' (or 'parent' and 'name', or 'ino')`);
  };
  const pathQuery = (q: unknown): Promise<string> => target(q, 'query');
  const writeTypeField = (body: unknown): WriteType | undefined => {
    const v = field(body, 'writeType', 'string', true) as string | undefined;
    if (v !== undefined && !(WRITE_TYPES as readonly string[]).includes(v)) throw new StrataError('BAD_REQUEST', `writeType must be one of ${WRITE_TYPES.join(', ')}`);
    return v as WriteType | undefined;
  };
  /**
   * The directories named by inode in a change request (`parent`, `newParent`), as
   * they are now that it is done: see DirAfterChange. The seq is read first, so the
   * attributes are at least as new as it says (a change after it only makes the
   * mount drop them sooner than needed).
   */
  const dirsAfter = async (body: unknown, ...keys: ('parent' | 'newParent')[]): Promise<DirsAfterChange> => {
    const b = (body ?? {}) as Record<string, unknown>;
    const inos = new Set(keys.map((k) => b[k]).filter((v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0));
    if (inos.size === 0) return {};
    try {
      const seq = await feed.seq();
      const dirs: DirAfterChange[] = [];
      for (const ino of inos) {
        const n = await table.getNode(ino);
        if (n?.type === 'directory') dirs.push({ attrs: toAttributes(n), seq });
      }
      return { dirs };
    } catch (err) {
      // The change is done: a failure to read what it left must not make it look failed.
      log.warn({ err: (err as Error).message }, 'could not read the directories a change left; answered without them');
      return {};
    }
  };
  /** The answer to a change that made an entry: its attributes as of right after it, and its directories. */
  const madeEntry = async <T extends object>(req: { body: unknown }, answer: T, ...dirKeys: ('parent' | 'newParent')[]): Promise<T & DirsAfterChange> => ({
    ...(await answered(req, answer)),
    ...(await dirsAfter(req.body, ...dirKeys)),
  });
  const timespec = (body: unknown, name: string): Timespec | 'now' | undefined => {
    const v = (body as Record<string, unknown>)[name];
    if (v === undefined || v === null) return undefined;
    if (v === 'now') return 'now';
    const sec = field(v, 'sec', 'number') as number;
    const nsec = field(v, 'nsec', 'number') as number;
    if (nsec < 0 || nsec >= 1e9) throw new StrataError('BAD_REQUEST', `${name}.nsec must be in [0, 1e9)`);
    // Beyond what a JS Date holds, every reader's toISOString() would throw.
    if (Math.abs(sec) >= MAX_TIME_SEC) throw new StrataError('BAD_REQUEST', `${name}.sec must be within ±${MAX_TIME_SEC}`);
    return { sec, nsec };
  };
  /** Permission bits only: type bits or more would corrupt st_mode. */
  const modeField = (body: unknown): number | undefined => {
    const mode = optionalInt(body, 'mode');
    if (mode !== undefined && mode > 0o7777) throw new StrataError('BAD_REQUEST', 'mode must be at most 07777');
    return mode;
  };
  /** uid_t and gid_t are 32 bits; a larger id would wrap (2**32 shows as root). */
  const idField = (body: unknown, name: 'uid' | 'gid'): number | undefined => {
    const id = optionalInt(body, name);
    if (id !== undefined && id > MAX_ID) throw new StrataError('BAD_REQUEST', `${name} must be at most ${MAX_ID}`);
    return id;
  };
  const intList = (body: unknown, name: string): number[] => {
    const v = (body as Record<string, unknown>)[name];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new StrataError('BAD_REQUEST', `'${name}' must be an array of block ids`);
    return v as number[];
  };

  // Every POST of the API takes a JSON object; anything else (null, an array, no body) stops here, not in a handler.
  app.addHook('preHandler', async (req) => {
    if (req.method !== 'POST' || !req.url.startsWith(`${api}/`)) return;
    const b = req.body;
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw new StrataError('BAD_REQUEST', 'request body must be a JSON object');
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get(`${api}/info`, async () => ({ ufs: ns.ufsUri, blockSize, inodes: await table.nodeCount(), workers: await table.workers() }));

  app.get(`${api}/stat`, async (req) => ns.stat(await pathQuery(req.query)));
  app.get(`${api}/list`, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    if (q.after !== undefined && q.limit === undefined) throw new StrataError('BAD_REQUEST', 'after needs limit');
    // One page: from past `after` (a name, from the last page's `next`), at most `limit` entries.
    if (q.limit !== undefined) {
      const limit = intParam(q.limit, 'limit');
      if (limit < 1 || limit > LIST_PAGE_MAX) throw new StrataError('BAD_REQUEST', `limit must be 1…${LIST_PAGE_MAX}`);
      if (q.after !== undefined && (typeof q.after !== 'string' || q.after === '')) throw new StrataError('BAD_REQUEST', 'after must be a name');
      const pages = ns.listPagesAsOf(await pathQuery(q), limit, (q.after as string | undefined) ?? null, q.blocks === 'true', q.sync === 'true');
      const first = await pages.next();
      await pages.return(undefined);
      const page = first.done ? { entries: [], seq: 0, freshForMs: 0 } : first.value;
      const last = page.entries.length === limit ? page.entries[limit - 1]!.name : undefined;
      return { entries: page.entries, seq: page.seq, freshForMs: page.freshForMs, ...(last !== undefined && { next: last }) };
    }
    const pages = ns.listPagesAsOf(await pathQuery(q), LIST_PAGE);
    // The first page before anything is sent: a missing or non-directory path is still a 4xx.
    const first = await pages.next();
    const { entries, seq } = first.done ? { entries: [], seq: 0 } : first.value;
    if (entries.length < LIST_PAGE) {
      await pages.return(undefined);
      return { entries, seq };
    }
    // A bigger directory is sent page by page, other requests served between pages. A failure
    // after the first page can only cut the answer: the client takes that for a lost connection
    // and asks again (within its failover time), as it would of a master that went away. The
    // seq is the first page's: the whole answer shows every change up to it.
    async function* json(): AsyncGenerator<string> {
      yield `{"seq":${seq},"entries":${JSON.stringify(entries).slice(0, -1)}`;
      for (;;) {
        const next = await pages.next();
        if (next.done) break;
        if (next.value.entries.length > 0) yield `,${JSON.stringify(next.value.entries).slice(1, -1)}`;
      }
      yield ']}';
    }
    void reply.type('application/json; charset=utf-8');
    return Readable.from(json(), { objectMode: false });
  });
  app.get(`${api}/lookup`, async (req) => ns.lookup(await pathQuery(req.query), (req.query as Record<string, unknown>).blocks === 'true'));
  app.post(`${api}/mkdir`, async (req) =>
    madeEntry(req, await ns.mkdir(await target(req.body, 'body'), modeField(req.body) ?? 0o755, idField(req.body, 'uid'), idField(req.body, 'gid')), 'parent'),
  );
  app.post(`${api}/create`, async (req) => {
    const closeEmpty = field(req.body, 'closeEmpty', 'boolean', true) as boolean | undefined;
    const begin = field(req.body, 'begin', 'boolean', true) as boolean | undefined;
    const lookInStore = field(req.body, 'lookInStore', 'boolean', true) as boolean | undefined;
    const writeType = writeTypeField(req.body);
    return madeEntry(
      req,
      await ns.create(await target(req.body, 'body'), modeField(req.body) ?? 0o644, idField(req.body, 'uid'), idField(req.body, 'gid'), closeEmpty ? { writeType } : undefined, begin, lookInStore),
      'parent',
    );
  });
  app.post(`${api}/link`, async (req) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    return madeEntry(req, await ns.link(requiredInt(b, 'ino', 1), await target({ parent: b.newParent, name: b.newName }, 'body')), 'newParent');
  });
  app.post(`${api}/symlink`, async (req) =>
    madeEntry(req, await ns.symlink(await target(req.body, 'body'), requiredString(req.body, 'target'), idField(req.body, 'uid'), idField(req.body, 'gid')), 'parent'),
  );
  app.post(`${api}/mknod`, async (req) => {
    const type = requiredString(req.body, 'type');
    if (!['fifo', 'socket', 'chardev', 'blockdev'].includes(type)) throw new StrataError('BAD_REQUEST', `type must be fifo, socket, chardev or blockdev`);
    return madeEntry(req, await ns.mknod(await target(req.body, 'body'), type as FileType, modeField(req.body) ?? 0o644, optionalInt(req.body, 'rdev') ?? 0, idField(req.body, 'uid'), idField(req.body, 'gid')), 'parent');
  });
  const xattrName = (b: unknown) => requiredString(b, 'name');
  app.post(`${api}/xattr/set`, async (req) => {
    const b = req.body as Record<string, unknown>;
    const v = requiredString(b, 'value');
    await ns.setXattr(await target({ ino: b.ino, path: b.path }, 'body'), xattrName(b), Buffer.from(v, 'base64'), optionalInt(b, 'flags') ?? 0);
    return {};
  });
  app.post(`${api}/xattr/get`, async (req) => {
    const b = req.body as Record<string, unknown>;
    return { value: (await ns.getXattr(await target({ ino: b.ino, path: b.path }, 'body'), xattrName(b))).toString('base64') };
  });
  app.post(`${api}/xattr/list`, async (req) => ({ names: await ns.listXattrs(await target(req.body, 'body')) }));
  app.post(`${api}/xattr/remove`, async (req) => {
    const b = req.body as Record<string, unknown>;
    await ns.removeXattr(await target({ ino: b.ino, path: b.path }, 'body'), xattrName(b));
    return {};
  });
  app.post(`${api}/unlink`, async (req) => {
    await ns.unlink(await target(req.body, 'body'));
    return dirsAfter(req.body, 'parent');
  });
  app.post(`${api}/rmdir`, async (req) => {
    await ns.rmdir(await target(req.body, 'body'));
    return dirsAfter(req.body, 'parent');
  });
  app.post(`${api}/rename`, async (req) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    const flags = optionalInt(b, 'flags') ?? 0;
    // renameat2: RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2, not both (as Linux); RENAME_WHITEOUT is for overlay file systems.
    if (flags & ~3 || flags === 3) throw new StrataError('INVALID_ARGUMENT', `rename flags ${flags}: only RENAME_NOREPLACE or RENAME_EXCHANGE are supported`);
    const src = b.src !== undefined ? requiredString(b, 'src') : await target({ parent: b.parent, name: b.name }, 'body');
    const dst = b.dst !== undefined ? requiredString(b, 'dst') : await target({ parent: b.newParent, name: b.newName }, 'body');
    if (flags === 2) await ns.exchange(src, dst);
    else await ns.rename(src, dst, flags === 1);
    return dirsAfter(b, 'parent', 'newParent');
  });
  app.post(`${api}/setattr`, async (req) => {
    const b = req.body;
    const mode = modeField(b);
    const attrs: Parameters<Namespace['setAttributes']>[1] = {};
    if (mode !== undefined) attrs.mode = mode;
    const uid = idField(b, 'uid');
    const gid = idField(b, 'gid');
    if (uid !== undefined) attrs.uid = uid;
    if (gid !== undefined) attrs.gid = gid;
    const atime = timespec(b, 'atime');
    const mtime = timespec(b, 'mtime');
    if (atime !== undefined) attrs.atime = atime;
    if (mtime !== undefined) attrs.mtime = mtime;
    return ns.setAttributes(await target(b, 'body'), attrs);
  });
  app.get(`${api}/blocks`, async (req) => {
    const q = req.query as Record<string, unknown>;
    // By path even for an inode, so a stale under-store file is checked before its blocks are handed out.
    return ns.fileBlocks(await pathQuery(q), q.allowDirectory === 'true');
  });
  app.post(`${api}/write/begin`, async (req) => ns.beginWrite(requiredInt(req.body, 'ino', 1)));
  app.post(`${api}/write/commit`, async (req) => {
    const b = req.body;
    const blocksRaw = (b as Record<string, unknown> | null)?.blocks;
    if (!Array.isArray(blocksRaw)) throw new StrataError('BAD_REQUEST', `'blocks' must be an array`);
    const blocks: CommittedBlock[] = blocksRaw.map((x) => ({ id: requiredInt(x, 'id'), length: requiredInt(x, 'length'), ...(field(x, 'uncached', 'boolean', true) === true ? { uncached: true } : {}) }));
    const fp = field(b, 'ufsFingerprint', 'string', true) as string | undefined;
    const mtime = timespec(b, 'mtime');
    const commit: WriteCommitRequest = {
      ino: requiredInt(b, 'ino', 1),
      containerId: requiredInt(b, 'containerId', 1),
      size: requiredInt(b, 'size'),
      blocks,
      workerId: requiredInt(b, 'workerId'),
      ufsFingerprint: fp ?? null,
    };
    if (mtime && mtime !== 'now') commit.mtime = mtime;
    const cached = field(b, 'cached', 'boolean', true) as boolean | undefined;
    if (cached !== undefined) commit.cached = cached;
    const writeType = field(b, 'writeType', 'string', true) as string | undefined;
    if (writeType !== undefined) {
      if (!(WRITE_TYPES as readonly string[]).includes(writeType)) throw new StrataError('BAD_REQUEST', `writeType must be one of ${WRITE_TYPES.join(', ')}`);
      commit.writeType = writeType as WriteType;
    }
    const ufsAt = (b as Record<string, unknown>).ufsAt;
    if (ufsAt !== undefined && ufsAt !== null) commit.ufsAt = { mountUri: field(ufsAt, 'mountUri', 'string') as string, path: field(ufsAt, 'path', 'string') as string };
    return ns.commitWrite(commit);
  });
  app.post(`${api}/write/abandon`, async (req) => {
    await ns.abandonWrite(requiredInt(req.body, 'ino', 1), requiredInt(req.body, 'containerId', 1));
    return {};
  });
  app.post(`${api}/write/empty`, async (req) => {
    const b = req.body;
    const mtime = timespec(b, 'mtime');
    return ns.commitEmpty(requiredInt(b, 'ino', 1), writeTypeField(b), mtime && mtime !== 'now' ? mtime : undefined);
  });
  app.get(`${api}/ufs-location`, async (req) => {
    const q = req.query as Record<string, unknown>;
    const ino = intParam(q.ino, 'ino');
    if (q.purpose === undefined) return ns.ufsLocation(ino);
    if (q.purpose === 'write') return ns.ufsLocation(ino, { purpose: 'write', container: intParam(q.container, 'container') });
    if (q.purpose === 'persist') return ns.ufsLocation(ino, { purpose: 'persist', container: intParam(q.container, 'container'), blocks: intParam(q.blocks, 'blocks') });
    throw new StrataError('BAD_REQUEST', 'purpose must be write or persist');
  });
  app.get(`${api}/block-source`, async (req) => ns.blockSource(intParam((req.query as Record<string, unknown>).id, 'id')));

  /** Each element of the array `name` through `parse`; errors name the element. */
  const items = <T>(body: unknown, name: string, max: number, parse: (x: unknown) => T): T[] => {
    const v = (body as Record<string, unknown>)[name];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.length > max) throw new StrataError('BAD_REQUEST', `'${name}' must be an array of at most ${max} entries`);
    return v.map((x, i) => {
      try {
        return parse(x);
      } catch (err) {
        throw err instanceof StrataError ? new StrataError(err.code, `${name}[${i}]: ${err.message}`) : err;
      }
    });
  };
  const shortString = (body: unknown, name: string, max: number): string => {
    const v = requiredString(body, name);
    if (v.length === 0 || v.length > max) throw new StrataError('BAD_REQUEST', `field '${name}' must have 1 to ${max} characters`);
    return v;
  };
  const tiers = (body: unknown): TierInfo[] => {
    if (!Array.isArray((body as Record<string, unknown>).tiers)) throw new StrataError('BAD_REQUEST', `'tiers' must be an array`);
    return items(body, 'tiers', 16, (x) => {
      // A state this master does not know (a newer worker's) is dropped, not a refused heartbeat: that would make the worker lost.
      const state = (x as Record<string, unknown>).state;
      const known = TIER_STATES.includes(state as TierState) && state !== 'ok' ? { state: state as TierState } : {};
      return { name: shortString(x, 'name', 64), dir: shortString(x, 'dir', 4096), capacityBytes: requiredInt(x, 'capacityBytes'), usedBytes: requiredInt(x, 'usedBytes'), ...known };
    });
  };
  const MAX_REPORT = 2_000_000;
  const blockReports = (body: unknown, name: string): BlockReport[] =>
    items(body, name, MAX_REPORT, (x) => ({ id: requiredInt(x, 'id'), tier: shortString(x, 'tier', 64), bytes: requiredInt(x, 'bytes') }));
  /** Optional `leftovers` of a register: [{mountUri, handle}]. */
  const leftovers = (body: unknown): UfsLeftover[] =>
    items(body, 'leftovers', LEFTOVERS_MAX, (x) => ({ mountUri: shortString(x, 'mountUri', LEFTOVER_URI_MAX), handle: shortString(x, 'handle', LEFTOVER_HANDLE_MAX) }));
  // Full block reports of big caches (many small files) outgrow the default 1 MiB body.
  const reportLimit = { bodyLimit: 64 * maxBody };

  app.post(`${api}/workers/register`, reportLimit, async (req): Promise<RegisterWorkerResponse> => {
    const b = req.body;
    const address = requiredString(b, 'address');
    if (!/^https?:\/\/[^\s/]+$/.test(address)) throw new StrataError('BAD_REQUEST', `worker address must be http(s)://host:port, got '${address.slice(0, 64)}'`);
    const uuid = requiredString(b, 'uuid');
    if (!/^[0-9a-f-]{8,64}$/.test(uuid)) throw new StrataError('BAD_REQUEST', 'worker uuid must be 8-64 hex digits or dashes');
    const host = (field(b, 'host', 'string', true) as string | undefined) ?? '';
    if (host.length > 256) throw new StrataError('BAD_REQUEST', 'host too long');
    const left = leftovers(b);
    const workerId = await table.registerWorker({
      uuid,
      address,
      host,
      tiers: tiers(b),
      pageSize: requiredInt(b, 'pageSize'),
      capacityBytes: requiredInt(b, 'capacityBytes'),
      usedBytes: requiredInt(b, 'usedBytes'),
      blocks: blockReports(b, 'blocks'),
    });
    log.info({ workerId, address }, 'worker registered');
    const underStores = ns.underStores();
    if (!left.length) return { workerId, underStores };
    // Bounded: the worker keeps what is not done by then and sends it again.
    return { workerId, leftoversDone: await ns.discardLeftovers(left, workerId, LEFTOVERS_WAIT_MS), underStores };
  });
  /**
   * Of a worker's pinned blocks, those it may evict again: their bytes are in the
   * under-store for the file's current version, or belong to no file any more. Only
   * the master can tell: an upload or write-through the worker saw complete may have
   * been undone since (a rename made its object a stray, the file is queued again).
   */
  /** A request's `pinned` block ids: a list, at most PINNED_REPORT_MAX. */
  const pinnedList = (body: unknown): number[] => {
    const pinned = intList(body, 'pinned');
    if (pinned.length > PINNED_REPORT_MAX) throw new StrataError('BAD_REQUEST', `'pinned' must have at most ${PINNED_REPORT_MAX} block ids`);
    return pinned;
  };
  const pinsToDrop = async (pinned: number[]): Promise<number[]> => {
    if (pinned.length === 0) return [];
    const containerOf = (id: number) => Math.floor(id / BLOCKS_PER_CONTAINER);
    const keep = new Set(await table.unpersistedContainers(pinned.map(containerOf)));
    return pinned.filter((id) => !keep.has(containerOf(id)));
  };
  app.post(`${api}/workers/heartbeat`, reportLimit, async (req): Promise<HeartbeatResponse> => {
    const b = req.body;
    const pinned = pinnedList(b);
    const r = await table.heartbeat({
      workerId: requiredInt(b, 'workerId'),
      capacityBytes: requiredInt(b, 'capacityBytes'),
      usedBytes: requiredInt(b, 'usedBytes'),
      tiers: tiers(b),
      addedBlocks: blockReports(b, 'addedBlocks'),
      removedBlocks: intList(b, 'removedBlocks'),
      ...(b && (b as Record<string, unknown>).openWrites !== undefined ? { openWrites: intList(b, 'openWrites') } : {}),
      // Any integer: a worker that has no pin set yet sends what it likes (0, -1).
      pinVersion: field(b, 'pinVersion', 'number') as number,
    });
    if (r === null) return { deleteBlocks: [], reregister: true };
    return { ...r, reregister: false, unpin: await pinsToDrop(pinned) };
  });
  app.get(`${api}/workers`, async () => table.workers());
  // A worker stopping cleanly: lost at once, so clients stop sending it reads and writes now, not after workerTimeoutMs.
  app.post(`${api}/workers/leave`, async (req): Promise<{ ok: true; wasLive: boolean }> => {
    const workerId = requiredInt(req.body, 'workerId');
    const wasLive = await table.workerLeft(workerId);
    if (wasLive) log.info({ workerId }, 'worker left (stopping)');
    return { ok: true, wasLive };
  });
  // A worker whose tier is full of pinned pages asks at once, between heartbeats (see askUnpins there).
  app.post(`${api}/workers/unpinnable`, reportLimit, async (req): Promise<{ unpin: number[] }> => {
    const pinned = pinnedList(req.body);
    return { unpin: await pinsToDrop(pinned) };
  });

  app.get(`${api}/mounts`, async () => ns.mounts());
  /** Persists a file now (any write type); answers when its bytes are in the under-store. */
  app.post(`${api}/persist`, async (req) => {
    const node = await ns.resolve(await target(req.body, 'body'));
    if (node.type !== 'file') throw new StrataError('IS_DIRECTORY', 'only files can be persisted');
    if (node.persistState !== 'persisted') {
      await table.enqueuePersist(node.ino);
      await persister.persist(node.ino);
    }
    return ns.stat(await table.pathOf(node.ino));
  });
  app.get(`${api}/persist-queue`, async () => table.persistQueue());
  /** Re-reads a path's metadata from its store now, whatever the sync interval. */
  app.post(`${api}/sync`, async (req) => {
    await ns.forceSync(await target(req.body, 'body'));
    return {};
  });
  app.post(`${api}/mount`, async (req) => {
    const b = req.body;
    const raw = (b as Record<string, unknown>).options ?? {};
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
      throw new StrataError('BAD_REQUEST', `'options' must be an object of strings`);
    }
    const options = { ...(raw as Record<string, string>) };
    if (field(b, 'readOnly', 'boolean', true)) options.readonly = 'true';
    return ns.mount(requiredString(b, 'path'), requiredString(b, 'uri'), options);
  });
  app.post(`${api}/unmount`, async (req) => {
    await ns.unmount(requiredString(req.body, 'path'));
    return {};
  });

  // ---- cache control ---------------------------------------------------------
  const recursiveFlag = (b: unknown): boolean => (field(b, 'recursive', 'boolean', true) as boolean | undefined) ?? false;
  /** Pins or unpins a file (or with `recursive` a directory's subtree): pinned blocks are never evicted. */
  app.post(`${api}/pin`, async (req) => {
    const b = req.body;
    const pinned = field(b, 'pinned', 'boolean') as boolean;
    const path = await target(b, 'body');
    return { path, pinned, ...(await ns.setPinned(path, pinned, recursiveFlag(b))) };
  });
  /** Sets `{ttlMs, action}` (ms from now; action free (default) or delete) or clears it (`ttlMs: null`). */
  app.post(`${api}/ttl`, async (req) => {
    const b = req.body;
    const path = await target(b, 'body');
    if ((b as Record<string, unknown>).ttlMs === undefined) throw new StrataError('BAD_REQUEST', `missing field 'ttlMs' (milliseconds from now, or null to clear the TTL)`);
    const ttlMs = (b as Record<string, unknown>).ttlMs === null ? null : requiredInt(b, 'ttlMs');
    if (ttlMs !== null && ttlMs > MAX_TTL_MS) throw new StrataError('BAD_REQUEST', `field 'ttlMs' must be at most ${MAX_TTL_MS} (100 years)`);
    const action = (field(b, 'action', 'string', true) as string | undefined) ?? 'free';
    if (action !== 'free' && action !== 'delete') throw new StrataError('BAD_REQUEST', `field 'action' must be 'free' or 'delete', got '${action.slice(0, 32)}'`);
    return { path, ttl: await ns.setTtl(path, ttlMs, action) };
  });
  app.post(`${api}/free`, async (req): Promise<FreeResponse> => {
    const r = await ns.free(await target(req.body, 'body'), recursiveFlag(req.body));
    if (r.bytes > 0) await dropNow();
    return r;
  });
  app.get(`${api}/du`, async (req): Promise<DuResponse> => ns.du(await pathQuery(req.query)));

  const dashboard: Dashboard | undefined =
    opts.dashboard === false ? undefined : registerDashboard(app, { table, ns, logger: log, token: opts.auth?.token }, opts.dashboard === true ? {} : opts.dashboard);

  // Expiry passes: one at a time (a slow store must not stack them up); close() waits for one in flight.
  // Two transactions, independent of each other: a worker lost and a write abandoned are separate facts.
  let expiryPass: Promise<void> | undefined;
  const expire = async (): Promise<void> => {
    for (const id of await table.expireWorkers(Date.now() - workerTimeoutMs)) log.warn({ workerId: id, timeoutMs: workerTimeoutMs }, 'worker lost: no heartbeat');
    const stale = await table.expireOpenWrites(Date.now() - openWriteTimeoutMs);
    for (const ino of stale.queued) ns.writeEnded(ino);
    // Most writes that end unused are a create's, begun for a first write that never came (touch, lock files).
    if (stale.copies > 0) log.warn({ ...stale, timeoutMs: openWriteTimeoutMs }, 'writes abandoned before their commit: their cached copies are deleted');
    else if (stale.writes > 0) log.debug({ writes: stale.writes, timeoutMs: openWriteTimeoutMs }, 'writes begun and never used expired');
  };
  const expiry = setInterval(() => {
    if (expiryPass || !leadership.isLeader()) return;
    expiryPass = expire()
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'expiry pass failed'))
      .finally(() => (expiryPass = undefined));
  }, Math.max(100, Math.min(5000, workerTimeoutMs / 3)));
  expiry.unref();

  // TTLs: one pass at a time over an indexed range of expired nodes; close() waits for a pass in flight.
  let ttlPass: Promise<void> | undefined;
  const ttlTimer = setInterval(() => {
    if (ttlPass || !leadership.isLeader()) return;
    ttlPass = ns
      .applyExpiredTtls()
      .then(
        // Freed or deleted: the workers drop the copies now, as after `fs free`, not at their next heartbeat.
        async (fired) => (fired > 0 ? dropNow() : undefined),
        (err: unknown) => log.warn({ err: (err as Error).message }, 'TTL pass failed'),
      )
      .finally(() => (ttlPass = undefined));
  }, opts.ttlCheckIntervalMs ?? 1000);
  ttlTimer.unref();

  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 19998 });
  const port = (app.server.address() as AddressInfo).port;
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  log.info({ url, ufs: opts.ufsUri, home: opts.home }, 'master started');
  leadership.start(url);
  return {
    url,
    port,
    async close() {
      // First, so a standby takes over while this one finishes its work.
      await leadership.close();
      clearInterval(expiry);
      clearInterval(ttlTimer);
      await dashboard?.close();
      await ttlPass;
      await expiryPass;
      await persister.stop();
      await app.close();
      await nudges.close();
      await table.close();
      await ns.close();
    },
  };
}
