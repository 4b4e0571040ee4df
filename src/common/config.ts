/**
 * One typed configuration registry: every key with its type, default, env var and
 * description. Sources merge as defaults < environment (STRATA_…) < flags.
 * Invalid values fail at start with the key, the value and what is allowed.
 */

import * as os from 'node:os';
import * as nodePath from 'node:path';
import { StrataError } from './errors';

type Kind = 'string' | 'int' | 'bytes' | 'url';

export interface ConfigKey {
  key: string;
  env: string;
  kind: Kind;
  description: string;
  default: (c: Partial<Record<string, unknown>>) => unknown;
}

const DEFAULT_HOME = nodePath.join(os.homedir(), '.strata');

/** Every configuration key Strata reads. The README's table lists the same keys. */
export const CONFIG_KEYS: ConfigKey[] = [
  { key: 'home', env: 'STRATA_HOME', kind: 'string', description: 'Directory for metadata, cached blocks and staged writes.', default: () => DEFAULT_HOME },
  { key: 'mount', env: 'STRATA_MOUNT', kind: 'string', description: 'Where `strata local` mounts the file system.', default: () => '/mnt/strata' },
  { key: 'ufs', env: 'STRATA_UFS', kind: 'string', description: 'Under-store URI mounted at / (file:///dir).', default: (c) => `file://${nodePath.join(String(c.home ?? DEFAULT_HOME), 'ufs')}` },
  { key: 'bind', env: 'STRATA_BIND', kind: 'string', description: 'Address the master and worker listen on.', default: () => '127.0.0.1' },
  { key: 'masterPort', env: 'STRATA_MASTER_PORT', kind: 'int', description: 'Master API port (0 = any free port).', default: () => 19998 },
  { key: 'workerPort', env: 'STRATA_WORKER_PORT', kind: 'int', description: 'Worker data port (0 = any free port).', default: () => 29999 },
  { key: 'master', env: 'STRATA_MASTER', kind: 'url', description: 'Master URL used by workers, mounts and `strata fs`.', default: () => 'http://127.0.0.1:19998' },
  { key: 'blockSize', env: 'STRATA_BLOCK_SIZE', kind: 'bytes', description: 'Block size of new files (power of two).', default: () => 64 * 1024 ** 2 },
  { key: 'workerCapacity', env: 'STRATA_WORKER_CAPACITY', kind: 'bytes', description: 'Byte quota of the worker block cache.', default: () => 8 * 1024 ** 3 },
  { key: 'workerTiers', env: 'STRATA_WORKER_TIERS', kind: 'string', description: 'Worker cache tiers, top first, comma-separated NAME:DIR:SIZE (e.g. mem:/dev/shm/strata:4GiB,ssd:/var/lib/strata:200GiB); "default" = one SSD tier <home>/worker/blocks of workerCapacity.', default: () => 'default' },
  { key: 'pageSize', env: 'STRATA_PAGE_SIZE', kind: 'bytes', description: 'Unit of caching inside a block: a cold read fetches whole pages (power of two, 4KiB-64MiB).', default: () => 1024 * 1024 },
  { key: 'evictionPolicy', env: 'STRATA_EVICTION_POLICY', kind: 'string', description: 'Which cached page a full worker tier gives up first: LRU, FIFO or LFU.', default: () => 'LRU' },
  { key: 'readType', env: 'STRATA_READ_TYPE', kind: 'string', description: 'How workers cache what a mount reads: CACHE, CACHE_PROMOTE (also move to the top tier), NO_CACHE.', default: () => 'CACHE' },
  { key: 'shortCircuit', env: 'STRATA_SHORT_CIRCUIT', kind: 'string', description: 'Mounts read page files of workers on the same host directly: true or false.', default: () => 'true' },
  { key: 'syncIntervalMs', env: 'STRATA_SYNC_INTERVAL_MS', kind: 'int', description: 'Re-check under-store metadata older than this (0 = always, -1 = never).', default: () => 5000 },
  { key: 'workerTimeoutMs', env: 'STRATA_WORKER_TIMEOUT_MS', kind: 'int', description: 'A worker silent this long is marked lost.', default: () => 30000 },
  { key: 'heartbeatIntervalMs', env: 'STRATA_HEARTBEAT_INTERVAL_MS', kind: 'int', description: 'Worker heartbeat period.', default: () => 2000 },
  { key: 'writeType', env: 'STRATA_WRITE_TYPE', kind: 'string', description: 'Write type of mounts that set none: MUST_CACHE, CACHE_THROUGH, THROUGH, ASYNC_THROUGH.', default: () => 'CACHE_THROUGH' },
  { key: 'persistInitialWaitMs', env: 'STRATA_PERSIST_INITIAL_WAIT_MS', kind: 'int', description: 'Wait before the first persist attempt of an ASYNC_THROUGH file.', default: () => 0 },
  { key: 'allowOther', env: 'STRATA_ALLOW_OTHER', kind: 'string', description: 'Let users other than the mounting one use the mount (the kernel still checks permissions): true, false, or auto (= when mounted by root).', default: () => 'auto' },
  { key: 'logLevel', env: 'STRATA_LOG_LEVEL', kind: 'string', description: 'Log level: fatal, error, warn, info, debug, trace, silent.', default: () => 'info' },
];

export interface StrataConfig {
  home: string;
  mount: string;
  ufs: string;
  bind: string;
  masterPort: number;
  workerPort: number;
  master: string;
  blockSize: number;
  workerCapacity: number;
  workerTiers: string;
  pageSize: number;
  evictionPolicy: string;
  readType: string;
  shortCircuit: string;
  syncIntervalMs: number;
  workerTimeoutMs: number;
  heartbeatIntervalMs: number;
  writeType: string;
  persistInitialWaitMs: number;
  allowOther: string;
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
  if (typeof raw === 'number' && (k.kind === 'int' || k.kind === 'bytes')) return raw;
  const v = String(raw);
  const bad = (allowed: string) => new StrataError('CONFIG', `invalid ${k.key}='${v}' (from ${source}): expected ${allowed}`);
  switch (k.kind) {
    case 'string':
      if (v.length === 0) throw bad('a non-empty string');
      if (k.key === 'shortCircuit' && !['true', 'false'].includes(v)) throw bad('true or false');
      if (k.key === 'allowOther' && !['true', 'false', 'auto'].includes(v)) throw bad('true, false or auto');
      if (k.key === 'evictionPolicy' && !['LRU', 'FIFO', 'LFU'].includes(v)) throw bad('LRU, FIFO or LFU');
      if (k.key === 'readType' && !['CACHE', 'CACHE_PROMOTE', 'NO_CACHE'].includes(v)) throw bad('CACHE, CACHE_PROMOTE or NO_CACHE');
      if (k.key === 'writeType' && !['MUST_CACHE', 'CACHE_THROUGH', 'THROUGH', 'ASYNC_THROUGH'].includes(v)) throw bad('MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH');
      return v;
    case 'int': {
      if (!/^-?[0-9]+$/.test(v.trim())) throw bad('an integer');
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw bad('an integer');
      if ((k.key.endsWith('Port') && (n < 0 || n > 65535))) throw bad('a port number 0-65535');
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
      try {
        const u = new URL(v);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
      } catch {
        throw bad('an http:// URL');
      }
      return v.replace(/\/+$/, '');
  }
}

/** Merges defaults < env < flags (flags keyed by config key; undefined = not given). */
export function resolveConfig(flags: Partial<Record<keyof StrataConfig, unknown>> = {}, env: NodeJS.ProcessEnv = process.env): StrataConfig {
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) {
    const flag = (flags as Record<string, unknown>)[k.key];
    if (flag !== undefined) out[k.key] = parseValue(k, flag, `--${kebab(k.key)}`);
    else if (env[k.env] !== undefined && env[k.env] !== '') out[k.key] = parseValue(k, env[k.env], `$${k.env}`);
    else out[k.key] = k.default(out);
  }
  out.home = nodePath.resolve(String(out.home));
  out.mount = nodePath.resolve(String(out.mount));
  return out as unknown as StrataConfig;
}

export function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
