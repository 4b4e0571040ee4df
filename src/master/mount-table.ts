/**
 * The mount table: which under-store is mounted at which Strata path, with its
 * options. Stored in the master's metastore (so it survives restarts) and kept in
 * memory (resolving a path never waits); the longest mounted prefix of a path
 * decides its store. Changes (add, remove) run under the Namespace's mutation
 * lock, so the memory copy and the store change in the same order.
 */

import { StrataError } from '../common/errors';
import { maskSecret } from '../common/config';
import type { Logger } from '../common/log';
import { parsePath } from '../common/paths';
import { checkUfsOptions, createUfs } from '../ufs';
import type { UfsMeter } from '../ufs';
import type { UnderFileSystem } from '../ufs/ufs';
import type { Metastore } from './metastore';

import { MOUNT_OWN_OPTIONS, WRITE_TYPES, WriteType } from '../common/protocol';

/**
 * Options of one mount. Strata's own keys: `readonly` (true|false), `sync.interval.ms`,
 * `write.type`; everything else goes to the driver (`s3.endpoint`, `hdfs.user`, …).
 */
export type MountOptions = Record<string, string>;

export interface Mount {
  path: string;
  parts: string[];
  uri: string;
  options: MountOptions;
  ufs: UnderFileSystem;
  readOnly: boolean;
  /** Per-mount sync interval; undefined = the global one. */
  syncIntervalMs: number | undefined;
  writeType: WriteType | undefined;
}

const SECRET = /secret|password|token|credential|session/i;

/** Options with secret values masked, for listings and logs. */
export function maskOptions(o: MountOptions): MountOptions {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, SECRET.test(k) ? '******' : v]));
}

/** Validates Strata's own option keys; driver keys are checked by the driver. */
export function parseMountOptions(o: MountOptions): { readOnly: boolean; syncIntervalMs: number | undefined; writeType: WriteType | undefined } {
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== 'string') throw new StrataError('CONFIG', `mount option ${k} must be a string`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k)) throw new StrataError('CONFIG', `bad mount option name '${k.slice(0, 64)}'`);
  }
  const ro = o.readonly;
  if (ro !== undefined && ro !== 'true' && ro !== 'false') throw new StrataError('CONFIG', `mount option readonly must be true or false, got '${ro}'`);
  let sync: number | undefined;
  if (o['sync.interval.ms'] !== undefined) {
    sync = Number(o['sync.interval.ms']);
    if (!Number.isSafeInteger(sync) || sync < -1) throw new StrataError('CONFIG', `mount option sync.interval.ms must be an integer >= -1`);
  }
  const wt = o['write.type'];
  if (wt !== undefined && !(WRITE_TYPES as readonly string[]).includes(wt)) {
    throw new StrataError('CONFIG', `mount option write.type must be one of ${WRITE_TYPES.join(', ')}, got '${wt}'`);
  }
  return { readOnly: ro === 'true', syncIntervalMs: sync, writeType: wt as WriteType | undefined };
}

export function driverOptions(o: MountOptions): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !MOUNT_OWN_OPTIONS.includes(k)));
}

/** How `MountTable.open` treats the root store it is given. */
export interface MountTableOpenOptions {
  /**
   * The metastore is shared with other masters (a standby, or the leader of
   * one): its stored mount table wins. The first master records the root; a
   * master given another root URI is refused (CONFIG), one given other root
   * options uses the stored ones and says so. Default false: the one master's
   * --ufs and options replace a stored root that differs (with a warning when
   * the URI changes).
   */
  shared?: boolean;
  /** Where the warnings go. Default: nowhere. */
  logger?: Logger;
  /** Times and counts the stores' calls (metered.ts). Default: not metered. */
  meter?: UfsMeter;
}

/** Whether two JSON option objects hold the same keys and values, in whatever order. */
function sameOptions(a: string, b: string): boolean {
  const norm = (j: string) => JSON.stringify(Object.entries(JSON.parse(j || '{}') as MountOptions).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  return norm(a) === norm(b);
}

export class MountTable {
  readonly #store: Metastore;
  readonly #meter: UfsMeter | undefined;
  #mounts: Mount[] = [];

  private constructor(store: Metastore, meter: UfsMeter | undefined) {
    this.#store = store;
    this.#meter = meter;
  }

  /**
   * Records `rootUri` as the store at '/' (see `MountTableOpenOptions.shared` for a
   * shared metastore that has one already) and loads every mount; CONFIG for a bad
   * URI or options (drivers of mounts already made are closed then), or for a root
   * URI other than the one a shared metastore holds.
   */
  static async open(store: Metastore, rootUri: string, rootOptions: MountOptions, opts: MountTableOpenOptions = {}): Promise<MountTable> {
    // Given now (--ufs, --ufs-option): a misspelt key is refused, not stored to do nothing.
    parseMountOptions(rootOptions);
    checkUfsOptions(rootUri, rootOptions, MOUNT_OWN_OPTIONS);
    const table = new MountTable(store, opts.meter);
    const options = JSON.stringify(rootOptions);
    const root = (await store.mounts()).find((m) => m.path === '/');
    if (opts.shared) {
      // The namespace in a shared metastore belongs to the store it was built on, whichever master runs it: a standby
      // started with another --ufs would switch every master to that store when elected. The stored root wins, and a
      // standby writes nothing at start; only the first master of an empty metastore records its root (never replacing).
      const stored = root ?? (await store.claimMount('/', rootUri, options));
      if (stored.uri !== rootUri) {
        throw new StrataError(
          'CONFIG',
          `the shared metastore's root store is ${maskSecret('ufs', stored.uri)}, but this master was started with --ufs ${maskSecret('ufs', rootUri)}: every master sharing a metastore must be started with the same --ufs (the root store of an existing namespace does not change with a flag)`,
        );
      }
      if (!sameOptions(stored.options, options)) {
        opts.logger?.warn(
          { stored: maskOptions(JSON.parse(stored.options || '{}') as MountOptions), given: maskOptions(rootOptions) },
          'the root store options (--ufs-option) differ from those in the shared metastore; using the stored ones',
        );
      }
    } else if (!root || root.uri !== rootUri || !sameOptions(root.options, options)) {
      if (root && root.uri !== rootUri) {
        opts.logger?.warn({ was: maskSecret('ufs', root.uri), now: maskSecret('ufs', rootUri) }, 'the root store (--ufs) changed: the namespace now syncs with the new store, and drops persisted files it lacks as they are found missing');
      }
      await store.setMount('/', rootUri, options);
    }
    try {
      for (const row of await store.mounts()) table.#mounts.push(table.#make(row.path, row.uri, JSON.parse(row.options || '{}') as MountOptions));
    } catch (err) {
      await table.close();
      throw err;
    }
    table.#sort();
    return table;
  }

  #make(path: string, uri: string, options: MountOptions): Mount {
    const parsed = parseMountOptions(options);
    return { path, parts: parsePath(path), uri, options, ufs: createUfs(uri, driverOptions(options), this.#meter), ...parsed };
  }

  #sort(): void {
    // Longest first, so the first prefix match is the innermost mount.
    this.#mounts.sort((a, b) => b.parts.length - a.parts.length);
  }

  /** The mount a path belongs to, and the path inside its store. */
  resolve(parts: string[]): { mount: Mount; ufsPath: string } {
    for (const m of this.#mounts) {
      if (m.parts.length <= parts.length && m.parts.every((p, i) => p === parts[i])) {
        return { mount: m, ufsPath: '/' + parts.slice(m.parts.length).join('/') };
      }
    }
    throw new StrataError('INTERNAL', 'no mount covers the root');
  }

  isMountPoint(parts: string[]): boolean {
    return this.#mounts.some((m) => m.parts.length === parts.length && m.parts.every((p, i) => p === parts[i]));
  }

  /** Mounts strictly below `parts`. */
  below(parts: string[]): Mount[] {
    return this.#mounts.filter((m) => m.parts.length > parts.length && parts.every((p, i) => p === m.parts[i]));
  }

  list(): Mount[] {
    return [...this.#mounts].sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /**
   * Creates the driver of a new mount (throws CONFIG for bad URIs and options, unknown
   * keys too) without adding it. Mounts read back from the metastore are not checked for
   * unknown keys: one a later version no longer reads must not keep the master down.
   */
  prepare(path: string, uri: string, options: MountOptions): Mount {
    checkUfsOptions(uri, options, MOUNT_OWN_OPTIONS);
    return this.#make(path, uri, options);
  }

  /** Records the mount, then resolves paths through it. */
  async add(m: Mount): Promise<void> {
    await this.#store.setMount(m.path, m.uri, JSON.stringify(m.options));
    this.#mounts.push(m);
    this.#sort();
  }

  /** Forgets the mount at `path` (in the store first) and answers it, so the caller closes its driver. */
  async remove(path: string): Promise<Mount | undefined> {
    const m = this.#mounts.find((x) => x.path === path);
    if (!m) return undefined;
    await this.#store.removeMount(path);
    this.#mounts = this.#mounts.filter((x) => x !== m);
    return m;
  }

  /** Forgets the mount at `path` in memory only, after the store dropped it (Metastore.unmount); answers it, so the caller closes its driver. */
  forget(path: string): Mount | undefined {
    const m = this.#mounts.find((x) => x.path === path);
    this.#mounts = this.#mounts.filter((x) => x !== m);
    return m;
  }

  /**
   * Loads the mounts again from the store (a standby master taking over a store
   * another master changed): mounts that are the same keep their drivers, the
   * others are closed or created. CONFIG for a bad stored mount (nothing changes then).
   */
  async reload(): Promise<void> {
    const rows = await this.#store.mounts();
    const same = (m: Mount, r: { path: string; uri: string; options: string }) => m.path === r.path && m.uri === r.uri && JSON.stringify(m.options) === JSON.stringify(JSON.parse(r.options || '{}'));
    const made: Mount[] = [];
    const next: Mount[] = [];
    try {
      for (const r of rows) {
        const kept = this.#mounts.find((m) => same(m, r));
        if (kept) {
          // Another master may have led meanwhile: what a kept driver remembers of its store may be stale.
          kept.ufs.forgetCaches?.();
          next.push(kept);
        } else {
          const m = this.#make(r.path, r.uri, JSON.parse(r.options || '{}') as MountOptions);
          made.push(m);
          next.push(m);
        }
      }
    } catch (err) {
      for (const m of made) await m.ufs.close();
      throw err;
    }
    const dropped = this.#mounts.filter((m) => !next.includes(m));
    this.#mounts = next;
    this.#sort();
    for (const m of dropped) await m.ufs.close();
  }

  async close(): Promise<void> {
    for (const m of this.#mounts) await m.ufs.close();
  }
}
