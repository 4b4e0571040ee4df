/**
 * One typed configuration registry: every key with its type, default, env var and
 * description. Sources merge as defaults < environment (STRATA_…) < flags.
 * Invalid values fail at start with the key, the value and what is allowed.
 */

import * as os from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import * as nodePath from 'node:path';
import { StrataError } from './errors';
import { PAGE_TRAILER_BYTES } from './page-file';

type Kind = 'string' | 'int' | 'bytes' | 'url' | 'urls';

export interface ConfigKey {
  key: string;
  /** The command-line flag(s), for docs; '' when there is none. */
  flag: string;
  env: string;
  kind: Kind;
  description: string;
  default: (c: Partial<Record<string, unknown>>) => unknown;
}

const DEFAULT_HOME = nodePath.join(os.homedir(), '.strata');

/** Every configuration key Strata reads. The README's table lists the same keys. */
export const CONFIG_KEYS: ConfigKey[] = [
  { key: 'home', flag: '--home', env: 'STRATA_HOME', kind: 'string', description: 'Directory for metadata, cached blocks and staged writes.', default: () => DEFAULT_HOME },
  { key: 'mount', flag: '--mount', env: 'STRATA_MOUNT', kind: 'string', description: 'Where `strata local` mounts the file system.', default: () => '/mnt/strata' },
  { key: 'ufs', flag: '--ufs', env: 'STRATA_UFS', kind: 'string', description: 'Under-store URI mounted at / (file:///dir).', default: (c) => `file://${nodePath.join(String(c.home ?? DEFAULT_HOME), 'ufs')}` },
  { key: 'bind', flag: '--bind', env: 'STRATA_BIND', kind: 'string', description: 'Address the master and worker listen on.', default: () => '127.0.0.1' },
  { key: 'masterPort', flag: '--master-port / --port', env: 'STRATA_MASTER_PORT', kind: 'int', description: 'Master API port (0 = any free port).', default: () => 19998 },
  { key: 'workerPort', flag: '--worker-port / --port', env: 'STRATA_WORKER_PORT', kind: 'int', description: 'Worker data port (0 = any free port).', default: () => 29999 },
  { key: 'master', flag: '--master', env: 'STRATA_MASTER', kind: 'urls', description: 'Master URL used by workers, mounts and `strata fs`; with standby masters, all of them comma-separated (URL1,URL2): calls follow the leader.', default: () => 'http://127.0.0.1:19998' },
  { key: 'masterFailoverTimeoutMs', flag: '', env: 'STRATA_MASTER_FAILOVER_TIMEOUT_MS', kind: 'int', description: 'How long a mount or `strata fs` call keeps looking for a leading master (other URLs, a restarting master) before it fails with EIO.', default: () => 15000 },
  { key: 'leaderElection', flag: '--leader-election', env: 'STRATA_LEADER_ELECTION', kind: 'string', description: 'Masters sharing this PostgreSQL database (postgres://user@host:port/db) elect one leader by a lease; the others stand by and answer NOT_LEADER. metastore = the database of a postgres:// metastore, which then also fences the writes of a master that lost the lease. none = this master always leads.', default: () => 'none' },
  { key: 'leaderLeaseMs', flag: '', env: 'STRATA_LEADER_LEASE_MS', kind: 'int', description: 'Leader lease length: a leader that cannot renew steps down within 5/6 of it, and a standby takes over within 4/3 of it after the leader dies or stalls.', default: () => 6000 },
  { key: 'masterAdvertiseUrl', flag: '--advertise-url', env: 'STRATA_MASTER_ADVERTISE_URL', kind: 'url', description: 'The URL standbys send clients to while this master leads; default its listen address (http://bind:port).', default: () => '' },
  { key: 'blockSize', flag: '--block-size', env: 'STRATA_BLOCK_SIZE', kind: 'bytes', description: 'Block size of new files (power of two).', default: () => 64 * 1024 ** 2 },
  { key: 'workerCapacity', flag: '--capacity', env: 'STRATA_WORKER_CAPACITY', kind: 'bytes', description: 'Byte quota of the worker block cache.', default: () => 8 * 1024 ** 3 },
  { key: 'workerTiers', flag: '--tier NAME:DIR:SIZE (repeatable) / --tiers a,b', env: 'STRATA_WORKER_TIERS', kind: 'string', description: 'Worker cache tiers, top first, comma-separated NAME:DIR:SIZE (e.g. mem:/dev/shm/strata:4GiB,ssd:/var/lib/strata:200GiB); "default" = one SSD tier <home>/worker/blocks of workerCapacity.', default: () => 'default' },
  { key: 'pageSize', flag: '--page-size', env: 'STRATA_PAGE_SIZE', kind: 'bytes', description: 'Unit of caching inside a block: a cold read fetches whole pages (power of two, 4KiB-64MiB). A worker restarted with another page size empties its tiers, or refuses to start while they hold the only copy of unpersisted data.', default: () => 1024 * 1024 },
  { key: 'workerReadMemory', flag: '--read-memory', env: 'STRATA_WORKER_READ_MEMORY', kind: 'bytes', description: "Memory a worker may hold for the reads it does not cache (NO_CACHE, or no room in the cache), all together: pages fetched ahead of their clients. Past it, each such read fetches only the page its client takes next.", default: () => 256 * 1024 ** 2 },
  { key: 'evictionPolicy', flag: '--eviction-policy', env: 'STRATA_EVICTION_POLICY', kind: 'string', description: 'Which cached page a full worker tier gives up first: LRU, FIFO or LFU.', default: () => 'LRU' },
  { key: 'readType', flag: '--read-type', env: 'STRATA_READ_TYPE', kind: 'string', description: 'How workers cache what a mount reads: CACHE, CACHE_PROMOTE (also move to the top tier), NO_CACHE.', default: () => 'CACHE' },
  { key: 'hostId', flag: '--host-id', env: 'STRATA_HOST_ID', kind: 'string', description: "This host's identity, which a worker reports and a mount or `strata fs` compares with it: the same id means the same disks, so page files are read directly (short-circuit). Default /etc/machine-id, else the host name; set it where several hosts share one machine id (cloned images, containers, network namespaces), the same for a worker and the mounts beside it.", default: () => '' },
  { key: 'shortCircuit', flag: '', env: 'STRATA_SHORT_CIRCUIT', kind: 'string', description: 'Mounts read page files of workers on the same host directly: true or false.', default: () => 'true' },
  { key: 'attrTimeoutMs', flag: '--attr-timeout-ms', env: 'STRATA_ATTR_TIMEOUT_MS', kind: 'int', description: "Mounts: how long the kernel answers stat from its own cache; a change made through another mount can go unseen by stat for this long (an open still sees it: close-to-open).", default: () => 1000 },
  { key: 'entryTimeoutMs', flag: '--entry-timeout-ms', env: 'STRATA_ENTRY_TIMEOUT_MS', kind: 'int', description: 'Mounts: how long the kernel keeps a name -> inode lookup; a rename or unlink through another mount can go unseen by path lookups for this long.', default: () => 1000 },
  { key: 'feedTimeoutMs', flag: '--feed-timeout-ms', env: 'STRATA_FEED_TIMEOUT_MS', kind: 'int', description: "Mounts: how long the kernel keeps attributes and lookups that the metadata cache vouches for; the master's change feed reports every change and the mount then drops the kernel's copy at once, so a change made through another mount shows within the feed's delay. attrTimeoutMs and entryTimeoutMs apply to everything else (and to all while the feed is down). 0 = off.", default: () => 60_000 },
  { key: 'feedLeaseMs', flag: '--feed-lease-ms', env: 'STRATA_FEED_LEASE_MS', kind: 'int', description: "Mounts: a lease on the master's change feed; while it runs, opens are answered from the metadata cache, and the master answers no change (a close) before every mount holding a lease has applied it, so close-to-open holds. A mount that stops polling delays others' changes by at most this, once. 0 = every open asks the master.", default: () => 1000 },
  { key: 'metadataCache', flag: '', env: 'STRATA_METADATA_CACHE', kind: 'string', description: "Mounts cache lookups, attributes and block lists, kept exact by the master's change feed: true or false.", default: () => 'true' },
  { key: 'syncIntervalMs', flag: '--sync-interval-ms', env: 'STRATA_SYNC_INTERVAL_MS', kind: 'int', description: 'Re-check under-store metadata older than this (0 = always, -1 = never after a directory is first listed). Changes made through Strata are always current; this bounds how late changes made directly in the store appear.', default: () => 60_000 },
  { key: 'workerTimeoutMs', flag: '', env: 'STRATA_WORKER_TIMEOUT_MS', kind: 'int', description: 'A worker silent this long is marked lost.', default: () => 30000 },
  { key: 'workerProbeIntervalMs', flag: '', env: 'STRATA_WORKER_PROBE_INTERVAL_MS', kind: 'int', description: 'While a mount or `strata fs` waits on a worker, it checks /healthz of that worker this often and gives up on it (reading or writing elsewhere) when the check gets no answer in 5 s (0 = never; then only the 120 s request timeout applies).', default: () => 3000 },
  { key: 'workerTierCheckIntervalMs', flag: '', env: 'STRATA_WORKER_TIER_CHECK_INTERVAL_MS', kind: 'int', description: "How often a worker checks each cache tier's disk with a 4 KiB write and fdatasync (0 = never).", default: () => 5000 },
  { key: 'workerTierStallMs', flag: '', env: 'STRATA_WORKER_TIER_STALL_MS', kind: 'int', description: "A tier check still running after this long marks the tier stalled (a hung disk or NFS mount): the worker's /healthz answers 503 until it finishes, so clients waiting on the worker give up on it and read elsewhere.", default: () => 30_000 },
  { key: 'heartbeatIntervalMs', flag: '', env: 'STRATA_HEARTBEAT_INTERVAL_MS', kind: 'int', description: 'Worker heartbeat period.', default: () => 2000 },
  { key: 'writeType', flag: '--write-type', env: 'STRATA_WRITE_TYPE', kind: 'string', description: 'Write type of mounts that set none: MUST_CACHE, CACHE_THROUGH, THROUGH, ASYNC_THROUGH.', default: () => 'CACHE_THROUGH' },
  { key: 'metastore', flag: '--metastore', env: 'STRATA_METASTORE', kind: 'string', description: "Where the master keeps its metadata: sqlite:///path/to/file.db, or PostgreSQL as postgres://user@host:port/db (an existing database; a password is better in $PGPASSWORD or ~/.pgpass than in the URL).", default: (c) => `sqlite://${nodePath.resolve(String(c.home ?? DEFAULT_HOME), 'master', 'strata.db')}` },
  { key: 'persistInitialWaitMs', flag: '', env: 'STRATA_PERSIST_INITIAL_WAIT_MS', kind: 'int', description: 'Wait before the first persist attempt of an ASYNC_THROUGH file.', default: () => 0 },
  { key: 'allowOther', flag: '--allow-other', env: 'STRATA_ALLOW_OTHER', kind: 'string', description: 'Let users other than the mounting one use the mount (the kernel still checks permissions): true, false, or auto (= when mounted by root).', default: () => 'auto' },
  { key: 'dashboard', flag: '', env: 'STRATA_DASHBOARD', kind: 'string', description: 'The master serves its read-only web dashboard at / on its API port: true or false.', default: () => 'true' },
  { key: 'auth', flag: '--auth', env: 'STRATA_AUTH', kind: 'string', description: 'Whether the APIs require the cluster token: token, none, or auto (= token when bind is not a loopback address).', default: () => 'auto' },
  { key: 'tokenFile', flag: '--token-file', env: 'STRATA_TOKEN_FILE', kind: 'string', description: 'File holding the cluster token (mode 0600); a daemon with auth on creates it when missing.', default: (c) => nodePath.join(String(c.home ?? DEFAULT_HOME), 'token') },
  { key: 'token', flag: '', env: 'STRATA_TOKEN', kind: 'string', description: 'The cluster token itself, in place of tokenFile (the environment is easier to leak than a 0600 file).', default: () => '' },
  { key: 'metricsAuth', flag: '', env: 'STRATA_METRICS_AUTH', kind: 'string', description: 'With auth on, /metrics needs the token too: true, or false for a Prometheus without credentials.', default: () => 'true' },
  { key: 'maxConnections', flag: '', env: 'STRATA_MAX_CONNECTIONS', kind: 'int', description: 'Most open connections per daemon; more are closed at once.', default: () => 1024 },
  { key: 'maxHeaderBytes', flag: '', env: 'STRATA_MAX_HEADER_BYTES', kind: 'bytes', description: 'Largest request line plus headers; larger get 431 and a closed connection.', default: () => 16 * 1024 },
  { key: 'maxBodyBytes', flag: '', env: 'STRATA_MAX_BODY_BYTES', kind: 'bytes', description: 'Largest JSON request body (worker block reports may be 64 times this); larger get 413. Streamed file writes are bounded by their declared size instead.', default: () => 1024 * 1024 },
  { key: 'headersTimeoutMs', flag: '', env: 'STRATA_HEADERS_TIMEOUT_MS', kind: 'int', description: 'A request whose headers are not all in after this long gets 408 and a closed connection.', default: () => 10_000 },
  { key: 'requestTimeoutMs', flag: '', env: 'STRATA_REQUEST_TIMEOUT_MS', kind: 'int', description: 'Master: a whole request (headers and body) must arrive within this. Worker: a streamed write body must not stall longer than this.', default: () => 60_000 },
  { key: 'logLevel', flag: '--log-level', env: 'STRATA_LOG_LEVEL', kind: 'string', description: 'Log level: fatal, error, warn, info, debug, trace, silent.', default: () => 'info' },
];

export interface StrataConfig {
  home: string;
  mount: string;
  ufs: string;
  bind: string;
  masterPort: number;
  workerPort: number;
  master: string;
  masterFailoverTimeoutMs: number;
  leaderElection: string;
  leaderLeaseMs: number;
  masterAdvertiseUrl: string;
  blockSize: number;
  workerCapacity: number;
  workerTiers: string;
  pageSize: number;
  evictionPolicy: string;
  workerReadMemory: number;
  readType: string;
  hostId: string;
  shortCircuit: string;
  attrTimeoutMs: number;
  entryTimeoutMs: number;
  feedTimeoutMs: number;
  feedLeaseMs: number;
  metadataCache: string;
  syncIntervalMs: number;
  workerTimeoutMs: number;
  workerProbeIntervalMs: number;
  workerTierCheckIntervalMs: number;
  workerTierStallMs: number;
  heartbeatIntervalMs: number;
  writeType: string;
  metastore: string;
  persistInitialWaitMs: number;
  allowOther: string;
  dashboard: string;
  auth: string;
  tokenFile: string;
  token: string;
  metricsAuth: string;
  maxConnections: number;
  maxHeaderBytes: number;
  maxBodyBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  logLevel: string;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** Parses "64MiB", "8g", "1048576" into bytes. */
export function parseBytes(v: string): number | undefined {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

function parseValue(k: ConfigKey, raw: unknown, source: string): unknown {
  // A number from a JSON config file goes through the same checks as the same value written as a string.
  const v = String(raw);
  const bad = (allowed: string) => new StrataError('CONFIG', `invalid ${k.key}='${v}' (from ${source}): expected ${allowed}`);
  switch (k.kind) {
    case 'string':
      if (v.length === 0) throw bad('a non-empty string');
      if ((k.key === 'shortCircuit' || k.key === 'metadataCache' || k.key === 'dashboard' || k.key === 'metricsAuth') && !['true', 'false'].includes(v)) throw bad('true or false');
      if (k.key === 'auth' && !['token', 'none', 'auto'].includes(v)) throw bad('token, none or auto');
      if (k.key === 'leaderElection' && v !== 'none' && v !== 'metastore' && !/^postgres(ql)?:\/\/[^\s]+$/.test(v)) throw bad('none, metastore or a postgres:// URL');
      // The master keeps at most 256 characters of a worker's host, and compares it byte for byte.
      if (k.key === 'hostId' && !/^[\x21-\x7e]{1,256}$/.test(v)) throw bad('1-256 printable characters without spaces');
      if (k.key === 'allowOther' && !['true', 'false', 'auto'].includes(v)) throw bad('true, false or auto');
      if (k.key === 'evictionPolicy' && !['LRU', 'FIFO', 'LFU'].includes(v)) throw bad('LRU, FIFO or LFU');
      if (k.key === 'readType' && !['CACHE', 'CACHE_PROMOTE', 'NO_CACHE'].includes(v)) throw bad('CACHE, CACHE_PROMOTE or NO_CACHE');
      if (k.key === 'writeType' && !['MUST_CACHE', 'CACHE_THROUGH', 'THROUGH', 'ASYNC_THROUGH'].includes(v)) throw bad('MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH');
      if (k.key === 'logLevel' && !['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v)) throw bad('fatal, error, warn, info, debug, trace or silent');
      return v;
    case 'int': {
      if (!/^-?[0-9]+$/.test(v.trim())) throw bad('an integer');
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw bad('an integer');
      if ((k.key.endsWith('Port') && (n < 0 || n > 65535))) throw bad('a port number 0-65535');
      if (['maxConnections', 'headersTimeoutMs', 'requestTimeoutMs'].includes(k.key) && n < 1) throw bad('a positive integer');
      if ((k.key === 'attrTimeoutMs' || k.key === 'entryTimeoutMs' || k.key === 'feedTimeoutMs') && (n < 0 || n > 3_600_000)) throw bad('0 (no kernel caching) up to 3600000 ms');
      if (k.key === 'feedLeaseMs' && n !== 0 && (n < 100 || n > 60_000)) throw bad('0 (off) or 100 up to 60000 ms');
      if (k.key === 'workerProbeIntervalMs' && (n < 0 || n > 600_000)) throw bad('0 (off) or a period in ms up to 600000');
      if (k.key === 'leaderLeaseMs' && (n < 300 || n > 600_000)) throw bad('a lease in ms from 300 to 600000');
      if (k.key === 'masterFailoverTimeoutMs' && (n < 0 || n > 3_600_000)) throw bad('a time in ms from 0 to 3600000');
      // A heartbeat of 0 ms sent hundreds a second; a negative worker timeout lost every worker at once, again and again.
      if (k.key === 'heartbeatIntervalMs' && (n < 10 || n > 600_000)) throw bad('a period in ms from 10 to 600000');
      if (k.key === 'workerTimeoutMs' && (n < 100 || n > 3_600_000)) throw bad('a time in ms from 100 to 3600000');
      if (k.key === 'syncIntervalMs' && n < -1) throw bad('-1 (never), 0 (always) or a time in ms');
      if (k.key === 'persistInitialWaitMs' && n < 0) throw bad('0 or a time in ms');
      if (k.key === 'workerTierCheckIntervalMs' && (n < 0 || n > 3_600_000)) throw bad('0 (off) or a period in ms up to 3600000');
      if (k.key === 'workerTierStallMs' && (n < 100 || n > 3_600_000)) throw bad('a time in ms from 100 to 3600000');
      return n;
    }
    case 'bytes': {
      const n = parseBytes(v);
      if (n === undefined || n <= 0) throw bad('a byte size such as 64MiB or 8GiB');
      if (k.key === 'blockSize' && (!Number.isInteger(Math.log2(n)) || n < 4096 || n > 2 ** 30)) throw bad('a power of two between 4KiB and 1GiB');
      if (k.key === 'pageSize' && (!Number.isInteger(Math.log2(n)) || n < 4096 || n > 64 * 1024 ** 2)) throw bad('a power of two between 4KiB and 64MiB');
      return n;
    }
    case 'url':
    case 'urls': {
      const list = k.kind === 'urls' ? v.split(',').map((u) => u.trim()) : [v];
      for (const one of list) {
        try {
          const u = new URL(one);
          if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
        } catch {
          throw bad(k.kind === 'urls' ? 'an http:// URL, or several separated by commas' : 'an http:// URL');
        }
      }
      return list.map((u) => u.replace(/\/+$/, '')).join(',');
    }
  }
}

/** Where a key's effective value came from. */
export type ConfigSource = 'default' | `file ${string}` | `env ${string}` | `flag ${string}`;

export interface ResolvedConfig {
  config: StrataConfig;
  sources: Record<keyof StrataConfig, ConfigSource>;
  /** The config file read, if any. */
  file: string | undefined;
}

/**
 * Merges defaults < file < env < flags. The file is `flags.config`, else
 * `$STRATA_CONFIG`, else `<home>/strata.json` when it exists (home from flags, env
 * or the default): a JSON object of config keys, e.g. {"blockSize": "128MiB"}.
 */
export function resolveConfigSources(flags: Partial<Record<keyof StrataConfig | 'config', unknown>> = {}, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const homeGuess = nodePath.resolve(String(flags.home ?? (env.STRATA_HOME || DEFAULT_HOME)));
  const explicit = (flags.config as string | undefined) ?? (env.STRATA_CONFIG || undefined);
  const file = explicit ? nodePath.resolve(explicit) : existsSync(nodePath.join(homeGuess, 'strata.json')) ? nodePath.join(homeGuess, 'strata.json') : undefined;
  const fromFile = file ? readConfigFile(file) : {};
  const out: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  for (const k of CONFIG_KEYS) {
    const flag = (flags as Record<string, unknown>)[k.key];
    if (flag !== undefined) {
      out[k.key] = parseValue(k, flag, `--${kebab(k.key)}`);
      sources[k.key] = `flag --${kebab(k.key)}`;
    } else if (env[k.env] !== undefined && env[k.env] !== '') {
      out[k.key] = parseValue(k, env[k.env], `$${k.env}`);
      sources[k.key] = `env ${k.env}`;
    } else if (fromFile[k.key] !== undefined) {
      out[k.key] = parseValue(k, fromFile[k.key], file!);
      sources[k.key] = `file ${file!}`;
    } else {
      out[k.key] = k.default(out);
      sources[k.key] = 'default';
    }
  }
  out.home = nodePath.resolve(String(out.home));
  out.tokenFile = nodePath.resolve(String(out.tokenFile));
  out.mount = nodePath.resolve(String(out.mount));
  return { config: out as unknown as StrataConfig, sources: sources as Record<keyof StrataConfig, ConfigSource>, file };
}

/**
 * For the commands that run a worker: its default tier must hold one page (and its trailer),
 * or every fill fails. Checked before anything starts, so `strata local` says it in one line.
 */
export function checkWorkerCapacity(r: ResolvedConfig): void {
  const c = r.config;
  if (c.workerTiers === 'default' && c.workerCapacity < c.pageSize + PAGE_TRAILER_BYTES) {
    throw new StrataError('CONFIG', `invalid workerCapacity=${c.workerCapacity} (from ${r.sources.workerCapacity}): expected at least one page (pageSize ${c.pageSize} bytes, plus ${PAGE_TRAILER_BYTES})`);
  }
}

/** Merges defaults < file < env < flags (see resolveConfigSources). */
export function resolveConfig(flags: Partial<Record<keyof StrataConfig | 'config', unknown>> = {}, env: NodeJS.ProcessEnv = process.env): StrataConfig {
  return resolveConfigSources(flags, env).config;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StrataError('CONFIG', `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StrataError('CONFIG', `config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new StrataError('CONFIG', `config file ${file} must hold a JSON object of keys`);
  const known = new Set(CONFIG_KEYS.map((k) => k.key));
  for (const [k, v] of Object.entries(parsed)) {
    if (!known.has(k)) throw new StrataError('CONFIG', `config file ${file}: unknown key '${k}'; keys are ${[...known].join(', ')}`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new StrataError('CONFIG', `config file ${file}: '${k}' must be a string or a number`);
  }
  return parsed as Record<string, unknown>;
}

/** Hides credentials in a value shown to people (URL passwords, secret-looking keys). */
export function maskSecret(key: string, value: unknown): string {
  const v = String(value);
  // A file that holds a secret is named, not hidden: `tokenFile` shows its path.
  if (/secret|password|token|credential/i.test(key) && !/file$/i.test(key)) return v === '' ? '' : '****';
  return v.replace(/(\/\/[^/:@\s]+:)[^@/\s]+@/, '$1****@');
}

/** The README's configuration table, generated from the registry. */
export function configTableMarkdown(): string {
  const shown = (k: ConfigKey): string => {
    const d = k.default({});
    if (k.key === 'home') return '`~/.strata`';
    if (k.key === 'ufs') return '`file://<home>/ufs`';
    if (k.key === 'tokenFile') return '`<home>/token`';
    if (k.key === 'metastore') return '`sqlite://<home>/master/strata.db`';
    if (k.key === 'token') return '(none)';
    if (k.key === 'masterAdvertiseUrl') return '(listen URL)';
    if (k.key === 'hostId') return '(machine id)';
    if (k.kind === 'bytes' && typeof d === 'number') return '`' + humanBytes(d) + '`';
    return '`' + String(d) + '`';
  };
  const rows = CONFIG_KEYS.map((k) => `| ${k.key} | \`${k.env}\` | ${k.flag ? k.flag.split(' / ').map((f) => '`' + f + '`').join(' / ') : ''} | ${shown(k)} | ${k.description.replace(/\|/g, '\\|')} |`);
  return ['| key | env | flag | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

function humanBytes(n: number): string {
  for (const [u, m] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n % m === 0) return `${n / m}${u}`;
  return String(n);
}

export function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
