/**
 * The namespace operations at the level of whole operations: path resolution with
 * lazy loading from the under-store, metadata sync, and the under-store side of
 * each change (mkdir, delete, rename). The Metastore below commits each change in
 * one transaction; this layer adds the under-store calls.
 *
 * Atomicity: the store is asynchronous, so between two of its calls other
 * requests run. A check that must hold when the change commits is made by the
 * store method itself (createChild's ALREADY_EXISTS, rename's NOT_EMPTY and
 * own-subtree checks, removeChild's NOT_EMPTY…) or passed to it as a guard
 * (forgetChild and refreshFromUfs after a look at the under-store). Changes that
 * touch the under-store hold the paths they change (#mutate, PathLocks): two of them
 * on the same names, or one on a directory above the other's, run one after the
 * other, so store and table agree; changes elsewhere run meanwhile. Checks made
 * here before such a change only decide what to do in the under-store, and the
 * store re-checks them when the change commits.
 *
 * Such a change acts in the under-store first and in the table next, by name.
 * Between the two the store already shows the change and the table does not: a
 * sync that read the store then would take it for an out-of-band change (forget
 * the file an unlink just deleted, or the source a rename just moved, and let a
 * create take the name), and the table change would then hit another inode. So
 * the names such a change is changing are in flight (#inFlight) and syncs leave
 * them alone until it commits; and the table change names the inode it checked
 * (removeChild's and rename's expected inode), so it never lands on another one.
 */

import { StrataError, storeWriteError } from '../common/errors';
import { PathLocks, covers, type LockScope } from './path-locks';
import { isValidUtf8Text, joinPath, normalizePath, parsePath } from '../common/paths';
import type {
  BlockInfo,
  BlockSource,
  DirEntry,
  DuResponse,
  FileAttributes,
  FileBlocksResponse,
  FileType,
  FreeResponse,
  LookupResponse,
  MountInfo,
  PersistResponse,
  Timespec,
  TtlAction,
  UfsLeftover,
  UfsLocation,
  UnderStoreRef,
  WriteCommitRequest,
  WriteType,
} from '../common/protocol';
import { BLOCKS_PER_CONTAINER, LIST_PAGE_MAX, LOOKUP_BLOCKS_MAX, POSIX_ACL_XATTRS, timespecFromMs, timespecNow, type UfsPlace, type WriteBeginResponse } from '../common/protocol';
import type { Logger } from '../common/log';
import type { UfsStatus, UfsWriter, UnderFileSystem } from '../ufs/ufs';
import { ROOT_INO, toAttributes, toDirEntry, type ListedNodeRecord, type Metastore, type NamedNodeRecord, type NewNode, type NodeRecord } from './metastore';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Mount, MountOptions, MountTable, driverOptions, maskOptions } from './mount-table';

/** What the table answers when its own checks refuse a rename: nothing changed in it. */
const REFUSALS = new Set<string>(['NOT_EMPTY', 'NOT_DIRECTORY', 'IS_DIRECTORY', 'INVALID_ARGUMENT']);

/** Entries a directory merge reads, compares or writes between two turns of the event loop. */
const MERGE_BATCH = 1000;
/** Entries of a directory listing read and sent at once; a bigger directory goes in pages of this many. */
export const LIST_PAGE = LIST_PAGE_MAX;

/**
 * How long a file created empty for a program (see `create`) waits before ASYNC_THROUGH
 * persists it: long enough that one written and closed right away is uploaded once,
 * with its content, not first empty.
 */
const CREATED_EMPTY_PERSIST_DELAY_MS = 5000;

/** How long a vouch of #noDirectoryFor lasts with a sync interval of -1 (never re-check): a day. */
const VOUCH_FOREVER_MS = 86_400_000;

export interface NamespaceOptions {
  table: Metastore;
  /** Which under-store is mounted where ('/' always is). */
  mounts: MountTable;
  /**
   * How old (ms) cached metadata of under-store files may get before it is checked
   * against the store again; 0 checks on every access, -1 never re-checks.
   */
  syncIntervalMs: number;
  logger: Logger;
  /**
   * Whether this master leads (default: always). A deposed leader must not change the
   * under-store: what is at a path there may be the new leader's by now.
   */
  leading?: () => boolean;
}

/** What a merge with a store listing reads of a child the table has. */
type MergedChild = Pick<NodeRecord, 'ino' | 'type' | 'persistState' | 'syncedAt' | 'ufsFingerprint' | 'inStore'>;

/** Paths per store whose last removal or move a master remembers (Namespace.#touched); about 100 bytes each. */
const TOUCHED_MAX = 100_000;
/** Writes told where to go whose commit has not come (Namespace.#handouts); those beyond are looked at in the store. */
const HANDOUTS_MAX = 100_000;

/** A place in a store (mount URI and path there), as a map key. */
function storePlaceKey(at: UfsPlace): string {
  return `${at.mountUri}\0${at.path}`;
}

/**
 * A mount's store as workers name their drivers: built in one place, so the drivers a worker makes
 * at registration (underStores) are the ones the locations of its reads and writes find.
 */
function storeRef(mount: Mount): UnderStoreRef {
  return { mountUri: mount.uri, options: driverOptions(mount.options) };
}

export class Namespace {
  readonly #table: Metastore;
  readonly #mounts: MountTable;
  readonly #syncIntervalMs: number;
  readonly #log: Logger;
  /** Changes that touch the under-store hold the paths they change (#mutate), so store and table agree. */
  readonly #locks = new PathLocks();
  readonly #uid = process.getuid?.() ?? 0;
  readonly #gid = process.getgid?.() ?? 0;
  /** `parent/name` of the entries a change (#mutate) is changing, from its under-store call to its commit. */
  readonly #inFlight = new Set<string>();
  readonly #leading: () => boolean;
  /** Exchanges asked so far: part of each one's parking name. */
  #exchanges = 0;

  constructor(opts: NamespaceOptions) {
    this.#leading = opts.leading ?? (() => true);
    this.#table = opts.table;
    this.#mounts = opts.mounts;
    this.#syncIntervalMs = opts.syncIntervalMs;
    this.#log = opts.logger;
  }

  /** Changes acting in an under-store now, running or waiting for their paths (a pile-up shows a slow store). */
  get storeChanges(): number {
    return this.#locks.size;
  }

  get ufsUri(): string {
    return this.#mounts.resolve([]).mount.uri;
  }

  /** The store of a path and the path inside it. */
  #store(parts: string[]): { mount: Mount; ufs: UnderFileSystem; ufsPath: string } {
    const { mount, ufsPath } = this.#mounts.resolve(parts);
    return { mount, ufs: this.#watchedUfs(mount.ufs), ufsPath };
  }

  /** READ_ONLY when the path lies in a read-only mount. */
  #writable(parts: string[]): void {
    const { mount } = this.#mounts.resolve(parts);
    if (mount.readOnly) throw new StrataError('READ_ONLY', `${mount.path} is mounted read-only`);
  }

  /**
   * A new name must be one its store can hold (HDFS refuses ':', S3 keys over 1,024 bytes): checked when it is made,
   * since a file written ASYNC_THROUGH is acknowledged long before its store sees it, and
   * would then never persist. Names already there are left alone (they can still go).
   */
  #storable(parts: string[]): void {
    const name = parts[parts.length - 1];
    if (name === undefined) return;
    const { mount, ufsPath } = this.#mounts.resolve(parts);
    mount.ufs.checkName?.(name);
    const max = mount.ufs.maxPathBytes;
    const bytes = Buffer.byteLength(ufsPath);
    if (max !== undefined && bytes > max) throw new StrataError('NAME_TOO_LONG', `${ufsPath} is ${bytes} bytes long in its store (${mount.uri}), which allows ${max}`);
  }

  /**
   * NAME_TOO_LONG when a node moving from store path `from` to `to` of `mount`'s store, or a name
   * below it (a directory `dirIno`), would be longer than the store allows. Names below it that are
   * not in the store yet (written ASYNC_THROUGH, open, a hard link's bytes) would otherwise be
   * refused only when they get there, and nobody would be told. Only a move that lengthens paths is
   * looked at: names that fit at `from` fit at a `to` no longer.
   */
  async #fitsMoved(mount: Mount, from: string, to: string, dirIno: number | undefined): Promise<void> {
    const max = mount.ufs.maxPathBytes;
    const base = Buffer.byteLength(to);
    if (max === undefined || base <= Buffer.byteLength(from)) return;
    let longest = 0;
    const dirs: Array<[ino: number, bytes: number]> = dirIno === undefined ? [] : [[dirIno, 0]];
    // In pages, giving other requests their turn between them, as a merge does: a tree can be large.
    for (let d = dirs.pop(); d !== undefined && base + longest <= max; d = dirs.pop()) {
      for (let after: string | null = null; base + longest <= max; ) {
        const page = await this.#table.childrenPage(d[0], after, MERGE_BATCH);
        for (const child of page) {
          // Only files and directories reach the store (other nodes live in the table alone).
          if (child.type !== 'file' && child.type !== 'directory') continue;
          const bytes = d[1] + 1 + Buffer.byteLength(child.name);
          if (bytes > longest) longest = bytes;
          if (child.type === 'directory') dirs.push([child.ino, bytes]);
        }
        if (page.length < MERGE_BATCH) break;
        after = page[page.length - 1]!.name;
        await nextTurn();
      }
    }
    if (base + longest > max) {
      throw new StrataError('NAME_TOO_LONG', `moved to ${to}, ${longest ? 'a path below it' : 'it'} would be ${base + longest} bytes long in its store (${mount.uri}), which allows ${max}`);
    }
  }

  /** Whether a change (#mutate) is changing `name` of `parent` (see the module comment). */
  #busy(parent: number, name: string): boolean {
    return this.#inFlight.has(`${parent}/${name}`);
  }

  /**
   * Directories being merged with a store listing, each with the names a change had in flight at
   * any time since the merge started. The listing may predate such a change and the table pages
   * read after it, so the merge leaves those names alone (the next sync sees them as they are).
   */
  readonly #merging = new Map<number, Set<string>>();

  /**
   * Runs a change's under-store call and its table change with `names` in flight:
   * syncs neither forget, refresh nor load them meanwhile. Callers hold the paths
   * of those names (#mutate), so no two changes mark the same name. `also` marks
   * one more name the change turns out to change in the store (a hard link's bytes
   * moving to it: such changes hold the whole namespace).
   */
  async #changing<T>(names: [parent: number, name: string][], fn: (also: (parent: number, name: string) => void) => Promise<T>): Promise<T> {
    this.#lead();
    const keys = names.map(([p, n]) => `${p}/${n}`);
    for (const k of keys) this.#inFlight.add(k);
    for (const [p, n] of names) this.#merging.get(p)?.add(n);
    const also = (parent: number, name: string): void => {
      const k = `${parent}/${name}`;
      if (!this.#inFlight.has(k)) {
        this.#inFlight.add(k);
        keys.push(k);
      }
      this.#merging.get(parent)?.add(name);
    };
    try {
      return await fn(also);
    } catch (err) {
      // Refused by the fenced table after its store side may have run: not the standby's "nothing applied",
      // which a client sends again to the new leader (it would then move or delete a second time).
      if (err instanceof StrataError && err.code === 'NOT_LEADER') throw new StrataError('UNAVAILABLE', `this master lost its lead during the change, which may be done in the under-store and not recorded: look, then try again (${err.message})`, { cause: err });
      throw err;
    } finally {
      for (const k of keys) this.#inFlight.delete(k);
    }
  }

  /**
   * Runs a change that acts in the under-store with the paths it changes held (see
   * PathLocks). `scope` names them; for a change named by inode it is read before the
   * lock and again under it, and the change asks again when they moved meanwhile. A
   * change that finds, before changing anything, that it reaches beyond them (a stray
   * object at a path the file left; a hard link's bytes moving between the links'
   * paths) calls `needs(more)`, and runs again holding those paths too.
   */
  async #mutate<T>(scope: () => LockScope | Promise<LockScope>, fn: (lock: { needs(more: LockScope): void }) => Promise<T>): Promise<T> {
    let base = await scope();
    let extra: LockScope = [];
    for (let attempt = 1; ; attempt++) {
      const held = union(base, extra);
      const lock = {
        needs: (more: LockScope) => {
          if (!covers(held, more)) throw new NeedsMore(more);
        },
      };
      const outcome = await this.#locks.run(held, async (): Promise<{ done: T } | { again: LockScope; more?: LockScope }> => {
        if (held !== 'all') {
          const now = await scope();
          if (!sameScope(now, base)) return { again: now };
        }
        try {
          return { done: await fn(lock) };
        } catch (err) {
          if (err instanceof NeedsMore) return { again: base, more: union(extra, err.scope) };
          throw err;
        }
      });
      if ('done' in outcome) return outcome.done;
      base = outcome.again;
      if (outcome.more) extra = outcome.more;
      // Moved again and again by renames: the whole namespace holds whatever the paths are.
      if (attempt >= 3) base = 'all';
    }
  }

  /** The mount of the store `uri` (the first, should two mounts name one store). */
  #mountOf(uri: string): Mount | undefined {
    return this.#mounts.list().find((m) => m.uri === uri);
  }

  /** Where a stray object at `at` is in the namespace, as a lock scope (the whole namespace if no mount has its store). */
  #strayScope(at: UfsPlace): LockScope {
    const mount = this.#mountOf(at.mountUri);
    return mount ? [[...mount.parts, ...parsePath(at.path)]] : 'all';
  }

  /** The path of inode `ino` as a lock scope; the whole namespace when it has none (gone). */
  async #inodeScope(ino: number): Promise<LockScope> {
    try {
      return [parsePath(await this.#table.pathOf(ino))];
    } catch (err) {
      if (err instanceof StrataError && err.code === 'NOT_FOUND') return 'all';
      throw err;
    }
  }

  /** Right before an under-store change: NOT_LEADER once this master no longer leads (it changed nothing yet). */
  #lead(): void {
    if (!this.#leading()) throw new StrataError('NOT_LEADER', 'this master does not lead any more');
  }

  // ---- resolution ----------------------------------------------------------

  /** How long metadata under `mount` is answered without asking its store again (0: asks every time; -1: never, once listed). */
  #intervalOf(mount: Mount): number {
    return mount.syncIntervalMs ?? this.#syncIntervalMs;
  }

  #isStale(n: NodeRecord, mount: Mount): boolean {
    const interval = this.#intervalOf(mount);
    // Never re-checked, but loaded once: syncedAt 0 is never listed, or marked to be listed again (a store mounted
    // there); 1 is a directory whose listing an unmount left short (see unmount).
    if (interval < 0) return n.syncedAt <= 1;
    return Date.now() - n.syncedAt > interval;
  }

  #fromUfs(st: UfsStatus, syncedAt: number): NewNode {
    return {
      type: st.type,
      mode: st.type === 'directory' ? 0o755 : 0o644,
      uid: this.#uid,
      gid: this.#gid,
      size: st.size,
      mtime: timespecFromMs(st.mtimeMs),
      persisted: true,
      ufsFingerprint: st.type === 'file' ? st.fingerprint : null,
      // A directory's syncedAt means "listing loaded"; a lazily found one has not been listed yet.
      syncedAt: st.type === 'directory' ? 0 : syncedAt,
    };
  }

  /** Resolves a path to its node, loading missing components from the under-store. */
  async resolve(path: string): Promise<NodeRecord> {
    return this.#resolveParts(parsePath(path));
  }

  async #resolveParts(parts: string[]): Promise<NodeRecord> {
    let node = await this.#table.requireNode(ROOT_INO);
    for (let i = 0; i < parts.length; i++) {
      if (node.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `/${parts.slice(0, i).join('/')} is not a directory`);
      node = await this.#child(node, parts.slice(0, i + 1));
    }
    return node;
  }

  /** The child named by the last of `parts` under `parent`, consulting the under-store as needed. */
  async #child(parent: NodeRecord, parts: string[]): Promise<NodeRecord> {
    const name = parts[parts.length - 1]!;
    const { mount, ufs, ufsPath } = this.#store(parts);
    const existing = await this.#table.lookup(parent.ino, name);
    if (existing) {
      // Only the primary link of a hard-linked file has an object at its own path in the store.
      if (existing.type === 'file' && existing.persistState === 'persisted' && this.#isStale(existing, mount) && (await this.#table.isPrimaryLink(parent.ino, name))) {
        // Many stale files in one directory (ls -l, a training epoch): one listing re-checks them all.
        const p = await this.#table.getNode(parent.ino);
        if (p && p.syncedAt > 0 && this.#isStale(p, mount) && p.persistState === 'persisted' && this.#cheapToList(p.ino, mount)) {
          await this.#syncListing(p, parts.slice(0, -1));
          const now = await this.#table.lookup(parent.ino, name);
          if (!now) throw notFound('/' + parts.join('/'));
          if (!this.#isStale(now, mount)) return now;
        }
        return this.#revalidate(parent, name, existing, parts);
      }
      return existing;
    }
    if (parent.persistState !== 'persisted') throw notFound('/' + parts.join('/'));
    // The parent's listing is fresh: a name it did not have is not in the store either.
    if (parent.syncedAt > 0 && !this.#isStale(parent, mount)) throw notFound('/' + parts.join('/'));
    // A listed directory gone stale is listed again (one call answers the next misses too).
    if (parent.syncedAt > 0 && parent.type === 'directory' && this.#cheapToList(parent.ino, mount)) {
      await this.#syncListing(parent, parts.slice(0, -1));
      const found = await this.#table.lookup(parent.ino, name);
      if (found) return found;
      const p = await this.#table.getNode(parent.ino);
      if (p && !this.#isStale(p, mount)) throw notFound('/' + parts.join('/'));
    }
    const loaded = await this.#loadFromStore(parent, parts, ufs, ufsPath);
    if (!loaded) throw notFound('/' + parts.join('/'));
    return loaded;
  }

  /** The entry for what the store has at `parts` (a name the table lacks), loaded into the table; undefined when there is none. */
  async #loadFromStore(parent: NodeRecord, parts: string[], ufs: UnderFileSystem, ufsPath: string): Promise<NodeRecord | undefined> {
    const name = parts[parts.length - 1]!;
    const started = Date.now();
    const stamp = this.#dirMoves;
    const st = await ufs.stat(ufsPath);
    // A directory above moved meanwhile: the store answered for what the path names now, not for `parent`.
    if (!(await this.#stillNames(stamp, parts.slice(0, -1), parent.ino))) return undefined;
    if (!st) return undefined;
    // A rename in flight put this object here; the name is in the table once it commits, with the moved inode.
    if (this.#busy(parent.ino, name)) return undefined;
    // loadChildren skips a name that exists by now (created meanwhile): the lookup answers whichever won.
    await this.#table.loadChildren(parent.ino, [{ name, node: this.#fromUfs(st, started) }]);
    const loaded = await this.#table.lookup(parent.ino, name);
    if (loaded) this.#log.debug({ path: '/' + parts.join('/') }, 'loaded metadata from the under-store');
    return loaded;
  }

  /** Checks a cached under-store file against the store; drops or refreshes it when it changed. */
  async #revalidate(parent: NodeRecord, name: string, node: NodeRecord, parts: string[]): Promise<NodeRecord> {
    const started = Date.now();
    const { ufs, ufsPath } = this.#store(parts);
    const stamp = this.#dirMoves;
    const st = await ufs.stat(ufsPath);
    const now = await this.#table.getNode(node.ino);
    // Changed through Strata while we asked the store: the namespace is newer.
    if (!now) throw notFound(ufsPath);
    if (now.syncedAt > started || now.ufsFingerprint !== node.ufsFingerprint) return now;
    // Its directory (or one above) moved meanwhile: the answer was about another file. Checked again at the next access.
    if (!(await this.#stillNames(stamp, parts.slice(0, -1), parent.ino))) return now;
    // An unlink or rename of this name in flight made the store's answer: the table follows when it commits.
    if (this.#busy(parent.ino, name)) return now;
    // The same check again inside each change below (a guard): a commit or rename may land between these calls.
    const guard = { ino: node.ino, ufsFingerprint: node.ufsFingerprint, syncedBefore: started + 1 };
    if (!st || st.type !== 'file') {
      if (await this.#table.forgetChild(parent.ino, name, guard)) this.#log.info({ path: ufsPath }, 'file vanished from the under-store; dropped it');
      if (!st) {
        // Unless something newer took the name meanwhile, it is gone.
        const taken = await this.#table.lookup(parent.ino, name);
        if (!taken) throw notFound(ufsPath);
        return taken;
      }
      return this.#child(parent, parts);
    }
    if (st.fingerprint !== node.ufsFingerprint) {
      if (await this.#table.refreshFromUfs(node.ino, st.size, timespecFromMs(st.mtimeMs), st.fingerprint, guard)) {
        this.#log.info({ path: ufsPath }, 'file changed in the under-store; dropped cached blocks');
      }
    } else {
      // Only moves syncedAt: harmless after a concurrent commit (that one's content is in the table and the store).
      await this.#table.markSynced(node.ino, started);
    }
    return this.#table.requireNode(node.ino);
  }

  async #resolveParent(path: string): Promise<{ parent: NodeRecord; name: string; parts: string[] }> {
    const parts = parsePath(path);
    if (parts.length === 0) throw new StrataError('INVALID_ARGUMENT', 'the root has no parent');
    const parent = await this.#resolveParts(parts.slice(0, -1));
    if (parent.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${'/' + parts.slice(0, -1).join('/')} is not a directory`);
    return { parent, name: parts[parts.length - 1]!, parts };
  }

  /** Like #child, but undefined instead of NOT_FOUND. */
  async #maybeChild(parent: NodeRecord, parts: string[]): Promise<NodeRecord | undefined> {
    try {
      return await this.#child(parent, parts);
    } catch (err) {
      if (err instanceof StrataError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  /**
   * Directory moves (rename, exchange), counted when each starts and when it ends, and how many run.
   * A sync asks the store about a path and applies the answer to the inode it resolved that path to
   * before; a move of that directory or of one above it in between (mv D E; mv F D) would make the
   * answer about F apply to E. Syncs take no path lock, so they check afterwards (#stillNames).
   */
  #dirMoves = 0;
  #dirMovesRunning = 0;

  async #movingDirectories<T>(moves: boolean, fn: () => Promise<T>): Promise<T> {
    if (!moves) return fn();
    this.#dirMoves++;
    this.#dirMovesRunning++;
    try {
      return await fn();
    } finally {
      this.#dirMovesRunning--;
      this.#dirMoves++;
    }
  }

  /**
   * After a store call about `parts` that started at `stamp` (#dirMoves then): whether the path named
   * `ino` all along. No directory moved since the stamp and none is moving, so what it names now is
   * what it named during the call.
   */
  async #stillNames(stamp: number, parts: string[], ino: number): Promise<boolean> {
    const unmoved = () => this.#dirMovesRunning === 0 && this.#dirMoves === stamp;
    if (!unmoved()) return false;
    let cur = ROOT_INO;
    for (const name of parts) {
      const n = await this.#table.lookup(cur, name);
      if (!n) return false;
      cur = n.ino;
    }
    return cur === ino && unmoved();
  }

  /** Loads a directory's listing from the under-store when it is stale. */
  /** Listings in flight by directory: concurrent lookups in one stale directory share one listing. */
  readonly #listings = new Map<number, { started: number; done: Promise<void> }>();

  /**
   * `force`: even when not stale. `fresh`: by a listing that starts after this call (one already
   * running may predate a store change the caller knows of: it is waited for, then another runs).
   */
  async #syncListing(dir: NodeRecord, parts: string[], force = false, fresh = false): Promise<void> {
    const { mount } = this.#store(parts);
    if (dir.persistState !== 'persisted' || (!force && !this.#isStale(dir, mount))) return;
    const asked = Date.now();
    for (;;) {
      const running = this.#listings.get(dir.ino);
      if (running && (!fresh || running.started > asked)) return running.done;
      if (running) {
        await running.done.catch(() => undefined);
        continue;
      }
      const entry = { started: Date.now(), done: Promise.resolve() };
      entry.done = this.#listAndMerge(dir, parts).finally(() => {
        if (this.#listings.get(dir.ino) === entry) this.#listings.delete(dir.ino);
      });
      this.#listings.set(dir.ino, entry);
      return entry.done;
    }
  }

  /** How long the last listing of a directory took (ms): too slow to re-list on every lookup? */
  readonly #listCost = new Map<number, number>();

  /** Re-listing a stale directory beats one store call per name, unless a listing takes most of an interval. */
  #cheapToList(ino: number, mount: Mount): boolean {
    const interval = this.#intervalOf(mount);
    return interval > 0 && (this.#listCost.get(ino) ?? 0) < interval / 2;
  }

  async #listAndMerge(dir: NodeRecord, parts: string[]): Promise<void> {
    // Listings of one directory are shared (#syncListing), so one merge per directory at a time.
    const touched = new Set<string>();
    const prefix = `${dir.ino}/`;
    for (const k of this.#inFlight) if (k.startsWith(prefix)) touched.add(k.slice(prefix.length));
    this.#merging.set(dir.ino, touched);
    try {
      await this.#mergeListing(dir, parts, touched);
    } finally {
      this.#merging.delete(dir.ino);
    }
  }

  async #mergeListing(dir: NodeRecord, parts: string[], touched: Set<string>): Promise<void> {
    const { ufs, ufsPath } = this.#store(parts);
    const started = Date.now();
    const stamp = this.#dirMoves;
    let listing: UfsStatus[];
    try {
      listing = await ufs.list(ufsPath);
      if (this.#listCost.size > 10_000) this.#listCost.clear();
      this.#listCost.set(dir.ino, Date.now() - started);
    } catch (err) {
      if (err instanceof StrataError && (err.code === 'NOT_FOUND' || err.code === 'NOT_DIRECTORY')) {
        // Listed: the store has nothing there now. Not asked again before the interval (with -1, never).
        await this.#table.markSynced(dir.ino, started).catch(() => undefined);
        return;
      }
      throw err;
    }
    // The directory (or one above) moved while the store listed its old path: that listing is another
    // directory's. Nothing is merged, and the directory stays stale, so its next access lists it again.
    if (!(await this.#stillNames(stamp, parts, dir.ino))) {
      this.#log.debug({ path: ufsPath }, 'a directory moved while its listing was read; listing it again later');
      return;
    }
    const inUfs = new Map(listing.map((s) => [s.name, s]));
    // Names a change has had in flight since the merge started are left alone (see the module comment
    // and #merging); checked right before each call.
    const busy = (name: string) => touched.has(name) || this.#busy(dir.ino, name);
    // The directory as the table has it, read in pages (and merged in batches) with other requests
    // served between them: a directory of 140k names held the master 5 s in one turn. What changes
    // through Strata meanwhile is newer than the listing, and the guards below (per node: still it,
    // unchanged, not synced since the listing started, no change in flight) make every change of
    // this merge give way to it, whichever page saw it.
    // Only what the merge reads of each child: whole records of 140k children held the master at 450 MB.
    const inTable = new Map<string, MergedChild>();
    for (let after: string | null = null; ; ) {
      const page = await this.#table.childrenPage(dir.ino, after, MERGE_BATCH);
      for (const c of page) inTable.set(c.name, { ino: c.ino, type: c.type, persistState: c.persistState, syncedAt: c.syncedAt, ufsFingerprint: c.ufsFingerprint, inStore: c.inStore });
      if (page.length < MERGE_BATCH) break;
      after = page[page.length - 1]!.name;
      await nextTurn();
    }
    const toLoad: { name: string; node: NewNode }[] = [];
    const unchanged: number[] = [];
    const shadowing = new Set<string>();
    /** Listed as directories, not in the table when it was read: a create may take one of them meanwhile. */
    const newDirectories: string[] = [];
    let n = 0;
    for (const s of listing) {
      if (++n % MERGE_BATCH === 0) await nextTurn();
      try {
        parsePath('/' + s.name);
      } catch {
        continue; // a name Strata cannot represent (too long, not UTF-8): not shown
      }
      const cur = inTable.get(s.name);
      if (s.type === 'directory' && cur && cur.type !== 'directory') shadowing.add(s.name);
      else if (s.type === 'directory' && !cur) newDirectories.push(s.name);
      // loadChildren skips names that exist by the time it runs.
      if (!cur) toLoad.push({ name: s.name, node: this.#fromUfs(s, started) });
      else if (cur.type === 'file' && s.type === 'file' && cur.persistState === 'persisted' && cur.syncedAt < started) {
        if (cur.ufsFingerprint === s.fingerprint) unchanged.push(cur.ino);
        else if (!busy(s.name)) await this.#table.refreshFromUfs(cur.ino, s.size, timespecFromMs(s.mtimeMs), s.fingerprint, { ufsFingerprint: cur.ufsFingerprint, syncedBefore: started });
      } else if (cur.type === 'file' && s.type === 'file' && !cur.inStore) {
        // An object at the path of a file never stored (written there directly, or an upload whose answer was lost
        // after its file moved away): removing or moving the name must now look in the store, or it comes back.
        await this.#table.markInStore(cur.ino);
      }
    }
    for (const [name, c] of inTable) {
      if (++n % MERGE_BATCH === 0) await nextTurn();
      // Only what the store had before this listing started can be missing from it for real.
      if (!inUfs.has(name) && c.persistState === 'persisted' && c.syncedAt < started && c.type !== 'symlink') {
        if (c.type === 'directory' && c.syncedAt !== 0) continue;
        // A mount point lives in the mount table, not in its parent's store.
        if (this.#mounts.isMountPoint([...parts, name])) continue;
        if (busy(name)) continue;
        // The guard: still this node, unchanged, and (a second hard link has no object of its own in the store) its primary link.
        await this.#table.forgetChild(dir.ino, name, { ino: c.ino, ufsFingerprint: c.ufsFingerprint, syncedBefore: started });
      }
    }
    for (let i = 0; i < toLoad.length; i += MERGE_BATCH) {
      if (i > 0) await nextTurn();
      await this.#table.loadChildren(dir.ino, toLoad.slice(i, i + MERGE_BATCH).filter((l) => !busy(l.name)));
    }
    // Only moves syncedAt of files found unchanged: harmless if one was committed meanwhile. The
    // directory's own last: until then its listing counts as not read.
    for (let i = 0; i < unchanged.length; i += MERGE_BATCH) {
      await this.#table.markSyncedMany(unchanged.slice(i, i + MERGE_BATCH), started);
      await nextTurn();
    }
    // A create that landed after the table was read kept its name (loadChildren skips it): a file where the
    // store has a directory. Many new directories are not looked up one by one: none is vouched for then.
    let shadowed: Set<string> | 'all' = shadowing;
    if (newDirectories.length > MERGE_BATCH) shadowed = 'all';
    else {
      for (const name of newDirectories) {
        // A change still in flight may yet make it a file: count it as one.
        if (busy(name)) {
          shadowing.add(name);
          continue;
        }
        const now = await this.#table.lookup(dir.ino, name);
        if (now && now.type !== 'directory') shadowing.add(name);
      }
    }
    if (shadowed === 'all' || shadowed.size > 0) {
      if (this.#storeDirectories.size >= 10_000) {
        // Forgotten, and with them what listings before now showed: those no longer count (#noDirectoryFor).
        this.#storeDirectories.clear();
        this.#vouchSince = Date.now();
      }
      this.#storeDirectories.set(dir.ino, shadowed);
    } else this.#storeDirectories.delete(dir.ino);
    await this.#table.markSyncedMany([dir.ino], started);
  }

  // ---- operations ------------------------------------------------------------

  async stat(path: string): Promise<FileAttributes> {
    return toAttributes(await this.resolve(path));
  }

  /** A whole directory at once (see listPages, which the master's own callers use). */
  async list(path: string): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    for await (const page of this.listPages(path, LIST_PAGE)) entries.push(...page);
    return entries;
  }

  /** A directory's entries in pages (see listPagesAsOf). */
  async *listPages(path: string, pageSize: number): AsyncGenerator<DirEntry[]> {
    for await (const page of this.listPagesAsOf(path, pageSize)) yield page.entries;
  }

  /**
   * A directory's entries in pages of `pageSize`, each read in its own turn of the event
   * loop, so that a huge directory is answered without holding the master for all of it
   * (140k entries took 2.2 s of one turn). Like readdir, a name made or removed while the
   * pages are read may or may not be in them; every other name is in exactly one page.
   * Each page comes with the change feed's seq read right before it: it shows every change
   * up to that seq (and maybe later ones). `after`: start past this name, without syncing
   * the directory with its store (the listing that started at the first page did), unless
   * `syncFirst` and its listing is due and cheap to repeat (a page read on its own, as a
   * lookup would sync it).
   */
  async *listPagesAsOf(path: string, pageSize: number, after: string | null = null, withBlocks = false, syncFirst = false): AsyncGenerator<{ entries: DirEntry[]; seq: number; freshForMs: number }> {
    const parts = parsePath(path);
    const dir = await this.#resolveParts(parts);
    if (dir.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${path} is not a directory`);
    if (after === null) await this.#syncListing(dir, parts);
    else if (syncFirst && dir.syncedAt > 0 && this.#cheapToList(dir.ino, this.#store(parts).mount)) await this.#syncListing(dir, parts);
    const freshForMs = await this.#listingFreshFor(dir.ino, parts);
    for (;;) {
      const seq = await this.#table.changes.seq();
      const page = await this.#table.childrenPage(dir.ino, after, pageSize);
      const pageFresh = this.#pageFreshFor(page, parts, freshForMs);
      let entries: DirEntry[];
      // Blocks only for a page a mount may keep (one it must not is thrown away).
      if (withBlocks && pageFresh !== 0) {
        // One at a time: a page of a thousand is a thousand reads, not to be sent to PostgreSQL at once.
        entries = [];
        for (const n of page) entries.push(await this.#withBlocks(n));
      } else entries = page.map(toDirEntry);
      yield { entries, seq, freshForMs: pageFresh };
      if (page.length < pageSize) return;
      after = page[page.length - 1]!.name;
      await nextTurn();
    }
  }

  /** How much longer listings of directory `ino` are answered without asking its store (ListResponse.freshForMs). */
  async #listingFreshFor(ino: number, parts: string[]): Promise<number> {
    const dir = await this.#table.getNode(ino);
    // Not in a store (made here, not persisted): nothing there to re-check.
    if (!dir || dir.persistState !== 'persisted') return -1;
    const interval = this.#intervalOf(this.#store(parts).mount);
    if (interval < 0) return dir.syncedAt <= 1 ? 0 : -1;
    return Math.max(0, dir.syncedAt + interval - Date.now());
  }

  /**
   * What a page of a directory's listing vouches for (ListResponse.freshForMs): the directory's
   * listing (`dirFresh`), and no longer than every stored file in the page is current. A file can
   * be older than its directory's listing (a merge left it alone while a change of it was in flight;
   * the store's directory vanished, which leaves the table's children to their own lookups), and
   * then its next lookup asks the store, so no copy of the page may answer for it meanwhile.
   */
  #pageFreshFor(page: readonly NodeRecord[], parts: string[], dirFresh: number): number {
    if (dirFresh === 0) return 0;
    const interval = this.#intervalOf(this.#store(parts).mount);
    const now = Date.now();
    let fresh = dirFresh;
    for (const n of page) {
      if (n.type !== 'file' || n.persistState !== 'persisted') continue;
      if (interval < 0) {
        if (n.syncedAt <= 1) return 0;
        continue;
      }
      const left = Math.max(0, n.syncedAt + interval - now);
      if (left === 0) return 0;
      if (fresh < 0 || left < fresh) fresh = left;
    }
    return fresh;
  }

  /** Whether a directory has any entry (without reading them all). */
  async #hasChildren(ino: number): Promise<boolean> {
    return (await this.#table.childrenPage(ino, null, 1)).length > 0;
  }

  mkdir(path: string, mode: number, uid = this.#uid, gid = this.#gid): Promise<FileAttributes> {
    return this.#mutate(() => [parsePath(path)], async () => {
      // mkdir(2) of "/" is EEXIST, as of any directory that exists.
      if (parsePath(path).length === 0) throw new StrataError('ALREADY_EXISTS', '/ already exists');
      const { parent, name, parts } = await this.#resolveParent(path);
      this.#writable(parts);
      this.#storable(parts);
      if (await this.#maybeChild(parent, parts)) throw new StrataError('ALREADY_EXISTS', `${path} already exists`);
      // In flight from the store's mkdir to the table's: a sync in between must not load the new directory first.
      return this.#changing([[parent.ino, name]], async () => {
        // Made here, the directory is known empty: as good as listed now.
        let syncedAt = Date.now();
        if (parent.persistState === 'persisted') {
          const { ufs, ufsPath } = this.#store(parts);
          try {
            await ufs.mkdir(ufsPath);
          } catch (err) {
            if (!(err instanceof StrataError && err.code === 'ALREADY_EXISTS')) throw err;
            // The store had it already (made there since the parent's listing): what it holds is not known yet.
            syncedAt = 0;
          }
        }
        const g = this.#inherit(parent, gid, mode, true);
        // createChild checks the name again in its transaction (ALREADY_EXISTS): create/symlink/mknod take no path lock.
        const node = await this.#table.createChild(parent.ino, name, { type: 'directory', mode: g.mode, uid, gid: g.gid, persisted: parent.persistState === 'persisted', syncedAt });
        return toAttributes(node);
      });
    });
  }

  /**
   * Creates an empty regular file; its bytes reach the under-store on the first committed write.
   * `closeEmpty`: the creator (a mount, for open with O_CREAT) would close it unwritten with
   * commitEmpty. Where that needs no under-store call (MUST_CACHE, ASYNC_THROUGH) it is done here,
   * in the same request, and the answer says `committed`: an untouched new file then costs one
   * request instead of two, and a written one commits over it as usual. `begin`: the new
   * file's first write is begun in the create's own transaction (as beginWrite), sparing a
   * program that writes the file and closes it one request.
   * `lookInStore`: a name the store has counts as taken even while the directory's listing
   * is fresh (within the sync interval, a name put into the store directly is not listed
   * yet); it is loaded and the create fails ALREADY_EXISTS. For creates that must not
   * replace what is there (O_EXCL) or keep it (no O_TRUNC); one store call each.
   */
  async create(
    path: string,
    mode: number,
    uid = this.#uid,
    gid = this.#gid,
    closeEmpty?: { writeType?: WriteType },
    begin?: boolean,
    lookInStore?: boolean,
  ): Promise<FileAttributes & { committed?: true; begin?: WriteBeginResponse }> {
    const { parent, name, parts } = await this.#resolveParent(path);
    this.#writable(parts);
    this.#storable(parts);
    const { mount, ufs, ufsPath } = this.#store(parts);
    // A stale or unlisted directory: the lookup below asks the store itself.
    const listed = parent.persistState === 'persisted' && parent.syncedAt > 0 && !this.#isStale(parent, mount);
    if (await this.#maybeChild(parent, parts)) throw new StrataError('ALREADY_EXISTS', `${path} already exists`);
    if (lookInStore && listed && (await this.#loadFromStore(parent, parts, ufs, ufsPath))) throw new StrataError('ALREADY_EXISTS', `${path} already exists (in the under-store, not listed yet)`);
    const g = this.#inherit(parent, gid, mode, false);
    const mountType = closeEmpty?.writeType ?? this.#writeTypeAt(parts);
    const writeType = closeEmpty && mountType;
    // A program that writes the file soon commits over this; only an untouched one is ever persisted empty.
    const empty = writeType === 'MUST_CACHE' || writeType === 'ASYNC_THROUGH' ? { writeType, persistDelayMs: CREATED_EMPTY_PERSIST_DELAY_MS } : undefined;
    // Written through at its close: in the store from then on (NodeRecord.inStore), said now rather than in one more transaction then.
    const inStore = mountType === 'CACHE_THROUGH' || mountType === 'THROUGH';
    // The check above only saves a store call; createChild checks again in its transaction.
    const { begun, ...node } = await this.#table.createChild(parent.ino, name, { type: 'file', mode: g.mode, uid, gid: g.gid, persisted: false, inStore, syncedAt: Date.now() }, empty, begin);
    return { ...toAttributes(node), ...(empty ? { committed: true as const } : {}), ...(begun ? { begin: { ino: node.ino, ...begun, writeType: this.#writeTypeAt(parts) } } : {}) };
  }

  /**
   * Before the link that holds a hard-linked file's bytes in the store goes away,
   * move the bytes to the path of the link that takes over.
   */
  async #handOverBytes(parent: NodeRecord, name: string, node: NodeRecord, parts: string[], also: (parent: number, name: string) => void): Promise<void> {
    // Runs with the whole namespace held (unlink, rename of a hard-linked file): links are added only by link (which
    // holds the file's path) and removed only by changes that hold the whole namespace, so these reads agree.
    if (!(await this.#table.isPrimaryLink(parent.ino, name))) return;
    const from = this.#store(parts);
    if (node.persistState !== 'persisted') {
      // Its new version goes to the other link's path when it persists; an older one at this path would be
      // nobody's, and the next listing would load it back as a file of its own.
      if (node.inStore) await this.#dropOlderVersion(from.ufs, from.ufsPath);
      return;
    }
    const other = await this.#table.otherLink(node.ino, parent.ino, name);
    if (!other) return;
    const otherParts = parsePath(joinPath(await this.#table.pathOf(other.parent), other.name));
    const to = this.#store(otherParts);
    also(other.parent, other.name);
    await from.ufs.rename(from.ufsPath, to.ufsPath);
  }

  /** link(2): another name for a file; the bytes stay at the first name's path in the store. */
  link(ino: number, newPath: string): Promise<FileAttributes> {
    // The file's path (its first link's) and the new name. Changes that read a file's links (#handOverBytes)
    // hold the whole namespace, so none of them runs beside this.
    return this.#mutate(async () => union(await this.#inodeScope(ino), [parsePath(newPath)]), async () => {
      const { parent, name, parts } = await this.#resolveParent(newPath);
      this.#writable(parts);
      this.#storable(parts);
      const node = await this.#table.requireNode(ino);
      if (node.type === 'directory') throw new StrataError('NOT_PERMITTED', 'hard links to directories are not allowed');
      const here = this.#store(parsePath(await this.#table.pathOf(ino)));
      if (here.mount !== this.#store(parts).mount) throw new StrataError('CROSS_DEVICE', 'hard links cannot cross mounts');
      if (await this.#maybeChild(parent, parts)) throw new StrataError('ALREADY_EXISTS', `${newPath} already exists`);
      // link re-checks the inode, its type and the name in its transaction.
      return toAttributes(await this.#table.link(ino, parent.ino, name));
    });
  }

  /** BSD group semantics of a set-group-ID directory: new entries take its group (and dirs its bit). */
  #inherit(parent: NodeRecord, gid: number, mode: number, dir: boolean): { gid: number; mode: number } {
    if (!(parent.mode & 0o2000)) return { gid, mode };
    return { gid: parent.gid, mode: dir ? mode | 0o2000 : mode };
  }

  /** A symbolic link; it lives in the namespace only (object stores have no such thing). */
  async symlink(path: string, target: string, uid = this.#uid, gid = this.#gid): Promise<FileAttributes> {
    if (typeof target !== 'string' || target.length === 0) throw new StrataError('INVALID_ARGUMENT', 'empty symlink target');
    if (Buffer.byteLength(target) > 4095 || target.includes('\0')) throw new StrataError('NAME_TOO_LONG', 'symlink target is too long');
    if (!isValidUtf8Text(target)) throw new StrataError('INVALID_ARGUMENT', 'symlink target is not valid UTF-8');
    const { parent, name, parts } = await this.#resolveParent(path);
    this.#writable(parts);
    this.#storable(parts);
    if (await this.#maybeChild(parent, parts)) throw new StrataError('ALREADY_EXISTS', `${path} already exists`);
    return toAttributes(
      await this.#table.createChild(parent.ino, name, { type: 'symlink', mode: 0o777, uid, gid: this.#inherit(parent, gid, 0, false).gid, size: Buffer.byteLength(target), target, persisted: false, syncedAt: Date.now() }),
    );
  }

  /** A fifo, socket or device node; namespace only. */
  async mknod(path: string, type: FileType, mode: number, rdev: number, uid = this.#uid, gid = this.#gid): Promise<FileAttributes> {
    if (type === 'file' || type === 'directory' || type === 'symlink') throw new StrataError('INVALID_ARGUMENT', `mknod cannot make a ${type}`);
    const { parent, name, parts } = await this.#resolveParent(path);
    this.#writable(parts);
    this.#storable(parts);
    if (await this.#maybeChild(parent, parts)) throw new StrataError('ALREADY_EXISTS', `${path} already exists`);
    const g = this.#inherit(parent, gid, mode, false);
    return toAttributes(await this.#table.createChild(parent.ino, name, { type, mode: g.mode, uid, gid: g.gid, rdev, persisted: false, syncedAt: Date.now() }));
  }

  unlink(path: string): Promise<void> {
    return this.#mutate(() => [parsePath(path)], async (lock) => {
      const { parent, name, parts } = await this.#resolveParent(path);
      this.#writable(parts);
      const node = await this.#child(parent, parts);
      if (node.type === 'directory') throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
      if (node.type === 'file' && node.nlink > 1) lock.needs('all');
      const { ufs, ufsPath } = this.#store(parts);
      await this.#changing([[parent.ino, name]], async (also) => {
        if (node.type === 'file') {
          // Persisted: its object is there, no need to look first. Otherwise there may be none (an older
          // version's, or nothing): delete it only if it is there, so a store that keeps directories by
          // markers never writes one back for a directory removed outside Strata.
          // A file no version of which ever went to the store has nothing there: no store call at all.
          if (node.nlink > 1) await this.#handOverBytes(parent, name, node, parts, also);
          else if (node.persistState === 'persisted') await this.#ufsIgnoreMissing(() => ufs.delete(ufsPath, { missingOk: true }));
          else if (node.inStore) await this.#dropOlderVersion(ufs, ufsPath);
        }
        // Only while the name still names the inode checked above.
        await this.#removeChecked(parent.ino, name, 'file', node.ino, path);
      });
    });
  }

  /**
   * The table side of unlink and rmdir, guarded by the inode that was checked and
   * removed from the under-store. When the name no longer names it, the inode's
   * link went meanwhile (a sync dropped it after the store lost its object, which
   * may have been this very removal) and the name, if taken, is a newer file of
   * someone else's: the removal has happened, and the newer file stays. That is
   * POSIX's order of an unlink and a create that follows it, so the caller succeeds.
   */
  async #removeChecked(parent: number, name: string, expect: 'file' | 'directory', ino: number, path: string): Promise<void> {
    try {
      await this.#table.removeChild(parent, name, expect, ino);
    } catch (err) {
      if (!(err instanceof StrataError && err.code === 'NOT_FOUND')) throw err;
      this.#log.info({ path, ino }, 'removed from the under-store; its name had been dropped or taken meanwhile, and is left as it is');
    }
  }

  rmdir(path: string): Promise<void> {
    return this.#mutate(() => [parsePath(path)], async () => {
      const { parent, name, parts } = await this.#resolveParent(path);
      this.#writable(parts);
      if (this.#mounts.isMountPoint(parts)) throw new StrataError('BUSY', `${path} is a mount point; unmount it first`);
      const node = await this.#child(parent, parts);
      if (node.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${path} is not a directory`);
      await this.#syncListing(node, parts);
      if ((await this.#hasChildren(node.ino))) throw new StrataError('NOT_EMPTY', `${path} is not empty`);
      const { ufs, ufsPath } = this.#store(parts);
      await this.#changing([[parent.ino, name]], async () => {
        const inStore = node.persistState === 'persisted';
        if (inStore) await this.#ufsIgnoreMissing(() => ufs.rmdir(ufsPath));
        try {
          await this.#removeChecked(parent.ino, name, 'directory', node.ino, path);
        } catch (err) {
          // A create in the directory since the check above (creates take no path lock) makes this NOT_EMPTY. The
          // directory stays, so it goes back into the store (where its new file will be stored).
          if (inStore && err instanceof StrataError && err.code === 'NOT_EMPTY') await this.#restoreDirectory(ufs, ufsPath);
          throw err;
        }
      });
    });
  }

  /** The two names of a rename or exchange: writable, not mount points, in one mount. */
  async #twoNames(a: string, b: string) {
    const x = await this.#resolveParent(a);
    const y = await this.#resolveParent(b);
    this.#writable(x.parts);
    this.#writable(y.parts);
    this.#storable(y.parts);
    if (this.#mounts.isMountPoint(x.parts) || this.#mounts.isMountPoint(y.parts)) throw new StrataError('BUSY', `cannot rename a mount point`);
    // Nor a directory holding one: the mount table names the mount by its path, which would then lead elsewhere.
    if (this.#mounts.below(x.parts).length > 0 || this.#mounts.below(y.parts).length > 0) throw new StrataError('BUSY', `cannot rename a directory that holds a mount point`);
    const xs = this.#store(x.parts);
    const ys = this.#store(y.parts);
    if (xs.mount !== ys.mount) throw new StrataError('CROSS_DEVICE', `${a} and ${b} are in different mounts`);
    return { x, y, xs, ys };
  }

  rename(src: string, dst: string, noReplace = false): Promise<void> {
    return this.#mutate(() => [parsePath(src), parsePath(dst)], async (lock) => {
      const { x: s, y: d, xs: from, ys: to } = await this.#twoNames(src, dst);
      const node = await this.#child(s.parent, s.parts);
      // rename checks this again in its transaction; here it keeps the under-store untouched.
      if (node.type === 'directory' && (await this.#table.isDescendant(d.parent.ino, node.ino))) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move ${src} into itself`);
      }
      const target = await this.#maybeChild(d.parent, d.parts);
      if (target && noReplace) throw new StrataError('ALREADY_EXISTS', `${dst} exists`);
      if (target && target.ino === node.ino) return;
      if (target) {
        if (node.type === 'directory' && target.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${dst} is not a directory`);
        if (node.type !== 'directory' && target.type === 'directory') throw new StrataError('IS_DIRECTORY', `${dst} is a directory`);
        if (target.type === 'directory') {
          await this.#syncListing(target, d.parts);
          if ((await this.#hasChildren(target.ino))) throw new StrataError('NOT_EMPTY', `${dst} is not empty`);
        }
      }
      if (node.type === 'directory') await this.#fitsMoved(to.mount, from.ufsPath, to.ufsPath, node.ino);
      // Hard links: which link holds the bytes, and where they go, is read from the links (#handOverBytes).
      if ((node.type === 'file' && node.nlink > 1) || (target?.type === 'file' && target.nlink > 1)) lock.needs('all');
      const ufs = from.ufs;
      const srcUfs = from.ufsPath;
      const dstUfs = to.ufsPath;
      await this.#movingDirectories(node.type === 'directory' || target?.type === 'directory', () => this.#changing([[s.parent.ino, s.name], [d.parent.ino, d.name]], async (also) => {
        let movedInStore = false;
        /** The destination: an empty directory in the store, removed for the move. */
        let removedTarget = false;
        let movedTo: UfsStatus | undefined;
        // A replaced file that lives on through another hard link keeps its bytes.
        if (target && target.type === 'file' && target.nlink > 1) await this.#handOverBytes(d.parent, d.name, target, d.parts, also);
        // The replaced file's object, when the name held its only link: stored, or maybe an older version of it.
        const replacedGoes = target && target.type === 'file' && target.nlink <= 1 && (target.persistState === 'persisted' || target.inStore);
        const dropReplaced = () => (target!.persistState === 'persisted' ? ufs.delete(dstUfs, { missingOk: true }) : this.#dropOlderVersion(ufs, dstUfs));
        if ((node.type !== 'file' && node.type !== 'directory') || (node.type === 'file' && !(await this.#table.isPrimaryLink(s.parent.ino, s.name)))) {
          // Namespace-only nodes and secondary hard links move in the table alone.
          if (replacedGoes) await this.#ufsIgnoreMissing(dropReplaced);
        } else if (node.type === 'file' && node.persistState !== 'persisted') {
          // Its bytes go to the new path when it persists. An older version may still be at the old one (it was
          // rewritten since it was stored, ASYNC_THROUGH): nobody's once the name moves, and the next listing would
          // load it back as a file of its own. A file never stored has nothing there.
          if (node.inStore) await this.#dropOlderVersion(ufs, srcUfs);
          if (replacedGoes) await this.#ufsIgnoreMissing(dropReplaced);
        } else if (node.persistState === 'persisted') {
          if (target?.type === 'directory') {
            await this.#ufsIgnoreMissing(() => ufs.rmdir(dstUfs));
            removedTarget = target.persistState === 'persisted';
          }
          // A file stored at its path, into a directory listed within the sync interval: the store need not look first.
          const known = node.type === 'file' && (await this.#noDirectoryFor(d.parts)) > 0 ? { knownFile: { size: node.size } } : undefined;
          movedTo = (await ufs.rename(srcUfs, dstUfs, known)) ?? undefined;
          movedInStore = true;
        } else if (target && target.persistState === 'persisted' && (target.type === 'directory' || target.nlink <= 1)) {
          await this.#ufsIgnoreMissing(() => (target.type === 'directory' ? ufs.rmdir(dstUfs) : ufs.delete(dstUfs, { missingOk: true })));
          removedTarget = target.type === 'directory';
        }
        // rename re-checks source, destination type, emptiness and the subtree in its transaction, and moves only the
        // inode checked above. The destination is not guarded: rename(2) replaces whatever the name holds when it runs.
        try {
          await this.#table.rename(s.parent.ino, s.name, d.parent.ino, d.name, node.ino);
        } catch (err) {
          if (!(movedInStore && err instanceof StrataError && err.code === 'NOT_FOUND')) {
            // Refused by the table's own checks (a file created in the destination directory meanwhile: NOT_EMPTY):
            // the store goes back to what the table still says, the source where it was and the destination
            // directory as it was. Not on other errors: a commit whose answer was lost may have landed.
            const refused = err instanceof StrataError && REFUSALS.has(err.code);
            if (refused && movedInStore) {
              await ufs.rename(dstUfs, srcUfs).catch((e: unknown) => this.#log.error({ err: e, from: dstUfs, to: srcUfs }, 'could not undo an under-store move of a refused rename'));
            }
            if (refused && removedTarget) await this.#restoreDirectory(ufs, dstUfs);
            throw err;
          }
          // The source name no longer names the inode moved above: a sync dropped it after the move emptied its path
          // in the store (and a create may have taken the name since: that file stays). The move has happened in the
          // store, so the rename succeeds and the destination follows the store: the entry it replaced is stale, and
          // the destination directory is listed again at its next lookup, which finds the moved object.
          if (target) {
            await this.#table.forgetChild(d.parent.ino, d.name, { ino: target.ino, ufsFingerprint: target.ufsFingerprint, syncedBefore: Number.MAX_SAFE_INTEGER });
          }
          await this.#table.markSynced(d.parent.ino, 0);
          this.#log.warn({ src, dst, ino: node.ino }, 'renamed in the under-store; the source had been dropped meanwhile, so the destination is loaded again from the store');
          return;
        }
        // An object store moves by copying, which can give the object a new fingerprint (S3: the ETag of a
        // multipart upload, or any object under SSE-KMS). Same bytes: record it, or the next sync would take
        // the file for changed out of band and drop its cached blocks and its mtime.
        if (movedInStore && node.type === 'file') {
          const st = movedTo ?? (await ufs.stat(dstUfs).catch(() => null));
          if (st?.type === 'file' && st.size === node.size && st.fingerprint !== node.ufsFingerprint) await this.#table.markPersisted(node.ino, node.container, st.fingerprint);
        }
      }));
    });
  }

  /**
   * renameat2(RENAME_EXCHANGE): `a` and `b` swap what they name, atomically in the
   * namespace. In the under-store the persisted objects swap through a temporary
   * name beside `a` (stores have no exchange); a failure there is undone before the
   * error is answered, so the store keeps matching the namespace.
   */
  exchange(a: string, b: string): Promise<void> {
    // Both names, and the third one beside `a` that the swap parks an object under.
    const parkedName = `.strata-exchange-${Date.now().toString(36)}-${++this.#exchanges}`;
    return this.#mutate(() => [parsePath(a), parsePath(b), [...parsePath(a).slice(0, -1), parkedName]], async () => {
      const { x, y, xs, ys } = await this.#twoNames(a, b);
      const xNode = await this.#child(x.parent, x.parts);
      const yNode = await this.#child(y.parent, y.parts);
      if (xNode.ino === yNode.ino) return;
      // exchange checks these again in its transaction; here they keep the under-store untouched.
      if ((xNode.type === 'directory' && (await this.#table.isDescendant(y.parent.ino, xNode.ino))) || (yNode.type === 'directory' && (await this.#table.isDescendant(x.parent.ino, yNode.ino)))) {
        throw new StrataError('INVALID_ARGUMENT', `cannot move ${a} and ${b} into each other`);
      }
      // Which names hold bytes (or a directory) in the store at their path.
      const holdsBytes = async (parent: number, name: string, n: NodeRecord) =>
        n.persistState === 'persisted' && (n.type === 'directory' || (n.type === 'file' && (await this.#table.isPrimaryLink(parent, name))));
      // Each goes to the other's path. (Where `a`'s is parked on the way, the store itself refuses a key too long
      // before it copies anything, and the swap is undone.)
      const parkedPath = joinPath(xs.ufsPath.slice(0, xs.ufsPath.lastIndexOf('/')) || '/', parkedName);
      await this.#fitsMoved(xs.mount, xs.ufsPath, ys.ufsPath, xNode.type === 'directory' ? xNode.ino : undefined);
      await this.#fitsMoved(ys.mount, ys.ufsPath, xs.ufsPath, yNode.type === 'directory' ? yNode.ino : undefined);
      const xMoves = await holdsBytes(x.parent.ino, x.name, xNode);
      const yMoves = await holdsBytes(y.parent.ino, y.name, yNode);
      // An unpersisted file with an older version still at its path: after the swap that object would sit under the
      // other name, nobody's (and a directory could not move onto it).
      const stale = async (parent: number, name: string, n: NodeRecord) =>
        n.type === 'file' && n.persistState !== 'persisted' && n.inStore && (await this.#table.isPrimaryLink(parent, name));
      const xStale = await stale(x.parent.ino, x.name, xNode);
      const yStale = await stale(y.parent.ino, y.name, yNode);
      const ufs = xs.ufs;
      const xPath = xs.ufsPath;
      const yPath = ys.ufsPath;
      const done: Array<[string, string]> = [];
      const move = async (from: string, to: string) => {
        await ufs.rename(from, to);
        done.push([from, to]);
      };
      // Both names, and the temporary one beside `a`, are in flight: a sync in between would take the swap for an
      // out-of-band change (refresh a name with the other's object, forget a name whose object is parked, load the parked one).
      await this.#movingDirectories(xNode.type === 'directory' || yNode.type === 'directory', () => this.#changing([[x.parent.ino, x.name], [y.parent.ino, y.name], [x.parent.ino, parkedName]], async () => {
        try {
          if (xStale) await this.#dropOlderVersion(ufs, xPath);
          if (yStale) await this.#dropOlderVersion(ufs, yPath);
          if (xMoves && yMoves) {
            await move(xPath, parkedPath);
            await move(yPath, xPath);
            await move(parkedPath, yPath);
          } else if (xMoves) {
            await move(xPath, yPath);
          } else if (yMoves) {
            await move(yPath, xPath);
          }
          // Only while both names still name the inodes checked above (NOT_FOUND otherwise: the swap is undone below).
          await this.#table.exchange(x.parent.ino, x.name, y.parent.ino, y.name, { a: xNode.ino, b: yNode.ino });
        } catch (err) {
          for (const [from, to] of done.reverse()) {
            await ufs.rename(to, from).catch((e: unknown) => this.#log.error({ err: e, from: to, to: from }, 'could not undo an under-store move of a failed exchange'));
          }
          if (done.length > 0 && err instanceof StrataError && err.code === 'NOT_FOUND') {
            // A name was dropped meanwhile (and may be someone's new file now): its object is back at its path, and
            // both directories are listed again at their next lookup, so the store's objects show again.
            await this.#table.markSynced(x.parent.ino, 0);
            await this.#table.markSynced(y.parent.ino, 0);
          }
          throw err;
        }
      }));
    });
  }

  async setAttributes(path: string, attrs: { mode?: number; uid?: number; gid?: number; atime?: Timespec | 'now'; mtime?: Timespec | 'now' }): Promise<FileAttributes> {
    this.#writable(parsePath(path));
    const node = await this.resolve(path);
    const now = timespecNow();
    return toAttributes(
      await this.#table.setAttributes(node.ino, {
        ...(attrs.mode !== undefined ? { mode: attrs.mode } : {}),
        ...(attrs.uid !== undefined ? { uid: attrs.uid } : {}),
        ...(attrs.gid !== undefined ? { gid: attrs.gid } : {}),
        ...(attrs.atime !== undefined ? { atime: attrs.atime === 'now' ? now : attrs.atime } : {}),
        ...(attrs.mtime !== undefined ? { mtime: attrs.mtime === 'now' ? now : attrs.mtime } : {}),
      }),
    );
  }

  /** A file's blocks and cache state; a directory (no blocks) only when `allowDirectory`, for `fs stat`. */
  async fileBlocks(path: string, allowDirectory = false): Promise<FileBlocksResponse> {
    const node = await this.resolve(path);
    if (node.type === 'directory' && !allowDirectory) throw new StrataError('IS_DIRECTORY', `${path} is a directory`);
    return this.#fileBlocks(node);
  }

  /** A lookup; with `withBlocks`, a small regular file's blocks too (LookupResponse). */
  async lookup(path: string, withBlocks: boolean): Promise<LookupResponse> {
    const node = await this.resolve(path);
    if (!withBlocks || !hasFewBlocks(node)) return toAttributes(node);
    const { attrs, ...fileBlocks } = await this.#fileBlocks(node);
    return { ...attrs, fileBlocks };
  }

  /** A listed child with its blocks when it is a small regular file (DirEntry.fileBlocks). */
  async #withBlocks(n: ListedNodeRecord): Promise<DirEntry> {
    if (!hasFewBlocks(n)) return toDirEntry(n);
    try {
      // Its attributes as #fileBlocks read them: a commit after the page was read gives both anew.
      const { attrs, ...fileBlocks } = await this.#fileBlocks(n);
      return { ...attrs, name: n.name, xattrs: n.xattrs, fileBlocks };
    } catch (err) {
      // Removed since the page was read: listed as it was, as readdir may (the feed reports the unlink).
      if (err instanceof StrataError && err.code === 'NOT_FOUND') return toDirEntry(n);
      throw err;
    }
  }

  async fileBlocksByIno(ino: number): Promise<FileBlocksResponse> {
    return this.#fileBlocks(await this.#table.requireNode(ino));
  }

  /**
   * The node's attributes with its blocks. They come from two reads, and a commit
   * between them would pair a size with another version's blocks; every block of
   * a version has an id in the node's container, so a mismatch shows without a
   * further read, and then both are read again.
   */
  async #fileBlocks(node: NodeRecord): Promise<FileBlocksResponse> {
    let blocks = await this.#table.blocks(node.ino);
    for (let attempt = 0; attempt < 3 && !blocksMatch(node, blocks); attempt++) {
      node = await this.#table.requireNode(node.ino);
      blocks = await this.#table.blocks(node.ino);
    }
    return { attrs: toAttributes(node), blocks, pinned: node.pinned, ttl: node.ttl };
  }

  async beginWrite(ino: number): Promise<{ ino: number; containerId: number; blockSize: number; writeType: WriteType }> {
    const parts = parsePath(await this.#table.pathOf(ino));
    this.#writable(parts);
    const writeType = this.#writeTypeAt(parts);
    return { ino, ...(await this.#table.beginWrite(ino)), writeType };
  }

  /**
   * A client gave up a write it began (its worker failed to write or store the bytes):
   * the copies reported for it go now, not when the write would expire, and the file is
   * queued to be stored empty if it is left unwritten (see writeEnded). A write that is
   * not the file's open one is ignored.
   */
  abandonWrite(ino: number, container: number): Promise<void> {
    return this.#mutate(() => this.#inodeScope(ino), async () => {
      if ((await this.#table.openWriteOf(container)) !== ino) return;
      if (await this.#table.abandonWrite(container, { storeIfUnwritten: true })) this.writeEnded(ino);
    });
  }

  /**
   * A write of `ino` ended without a commit (abandoned, or expired), and the metastore queued
   * the file to be stored empty in the same transaction. A file created for a write-through
   * whose every write failed (its store full or stalled) was left in the namespace empty,
   * unpersisted and in no queue: never stored, never dropped, and its mount busy for good.
   * It is queued as a file created and closed unwritten is, unless another write of it is
   * open (a retry); a write committed meanwhile makes that persist a no-op.
   */
  writeEnded(ino: number): void {
    this.#log.info({ ino }, 'a file created for a write-through was never written; it is stored empty');
  }

  #defaultWriteType: WriteType = 'CACHE_THROUGH';

  /** The write type of files at `parts`: their mount's, else the default. */
  #writeTypeAt(parts: string[]): WriteType {
    return this.#store(parts).mount.writeType ?? this.#defaultWriteType;
  }

  /** The write type of files in mounts that do not set one. */
  setDefaultWriteType(t: WriteType): void {
    this.#defaultWriteType = t;
  }

  /**
   * Closes a file written empty: the master stores the empty object itself (there
   * are no bytes for a worker to move), so a create+close costs one request.
   */
  commitEmpty(ino: number, writeTypeOverride: WriteType | undefined, mtime: Timespec | undefined): Promise<FileAttributes> {
    return this.#mutate(() => this.#inodeScope(ino), async () => {
      const parts = parsePath(await this.#table.pathOf(ino));
      this.#writable(parts);
      const n = await this.#table.requireNode(ino);
      if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${ino} is not a regular file`);
      const writeType = writeTypeOverride ?? this.#writeTypeAt(parts);
      const fingerprint = writeType === 'CACHE_THROUGH' || writeType === 'THROUGH' ? await this.#storeEmpty(n, parts) : null;
      // commitEmpty re-checks the inode and its type in its transaction.
      return toAttributes(await this.#table.commitEmpty({ ino, ufsFingerprint: fingerprint, writeType, ...(mtime ? { mtime } : {}) }));
    });
  }

  /**
   * Writes file `n`'s empty object where a worker would write it (ufsLocation: the path
   * of its first link, `parts`); its fingerprint. The caller holds that path.
   */
  async #storeEmpty(n: NodeRecord, parts: string[]): Promise<string> {
    const { ufs, ufsPath: at } = this.#store(parts);
    this.#lead();
    // On disk before the object can be: an unlink or rename then looks in the store.
    if (!n.inStore) await this.#table.markInStore(n.ino);
    const vouched = await this.#noDirectoryFor(parts);
    // Again right before the write: a master deposed during the reads above writes nothing.
    this.#lead();
    try {
      const w = await ufs.create(at, vouched > 0 ? { noDirectoryUntil: Date.now() + vouched } : undefined);
      try {
        return (await w.complete()).fingerprint;
      } catch (err) {
        await w.abort();
        throw err;
      }
    } catch (err) {
      throw storeWriteError(err, at);
    }
  }

  /**
   * Persists an ASYNC_THROUGH file that is empty as of `container` (a touch, a lock or
   * _SUCCESS file): the master writes the empty object itself, holding the file's path, as
   * the close of an empty CACHE_THROUGH file does. No worker has bytes to move, so none is
   * asked (two round trips less; and it persists while no worker is up), and nothing can
   * move the file between the write and the count. False when the file is not that empty
   * version any more (its newer content stays queued).
   */
  persistEmpty(ino: number, container: number): Promise<boolean> {
    return this.#mutate(() => this.#inodeScope(ino), async () => {
      const n = await this.#table.getNode(ino);
      if (!n || n.type !== 'file' || n.container !== container || n.size !== 0) return false;
      if (n.persistState === 'persisted') return true;
      const parts = parsePath(await this.#table.pathOf(ino));
      // As a worker's ufsLocation would: a store made read-only since the file was queued keeps it queued.
      this.#writable(parts);
      const fingerprint = await this.#storeEmpty(n, parts);
      // markPersisted re-checks the container in its transaction.
      return this.#table.markPersisted(ino, container, fingerprint);
    });
  }

  /** A file's node and store place now, and whether that is still `at` (where a worker wrote it). */
  async #fileAt(ino: number, at: UfsPlace): Promise<{ n: NodeRecord | undefined; here: UfsLocation | undefined; stillThere: boolean }> {
    const n = await this.#table.getNode(ino);
    const here = n && n.type === 'file' ? this.#location(await this.#table.pathOf(ino)) : undefined;
    return { n, here, stillThere: here !== undefined && here.mountUri === at.mountUri && here.path === at.path };
  }

  /**
   * Removals, moves and writes this master made in its stores (delete, rmdir, rename's both ends, create), by
   * store and path: the #touchSeq after each ended. A write's object reported at a place may
   * have been taken away since it landed (its file renamed away and back, a stray's removal
   * beside it): a commit then looks in the store (#objectLost) only when something was removed
   * or moved at that place, or above it, since the worker was told to write there.
   */
  readonly #touched = new WeakMap<UnderFileSystem, Map<string, number>>();
  #touchSeq = 0;
  /** The newest seq #touched forgot (it keeps TOUCHED_MAX paths per store): a handout older than that is looked at. */
  #touchedFloor = 0;
  /** #touchSeq when a worker was first told to write `${ino}:${container}` (ufsLocation with a check). */
  readonly #handouts = new Map<string, number>();
  readonly #watched = new WeakMap<UnderFileSystem, UnderFileSystem>();

  /** `ufs`, recording in #touched where its deletes, rmdirs and renames acted. */
  #watchedUfs(ufs: UnderFileSystem): UnderFileSystem {
    let w = this.#watched.get(ufs);
    if (w) return w;
    const touch = (...paths: string[]) => {
      for (const p of paths) this.#touch(ufs, p);
    };
    w = new Proxy(ufs, {
      get: (target, prop) => {
        const v: unknown = Reflect.get(target, prop, target);
        if (typeof v !== 'function') return v;
        const f = v as (...args: unknown[]) => Promise<unknown>;
        // Recorded once the call ended (or failed, maybe halfway): a handout taken while it ran sees it.
        if (prop === 'delete' || prop === 'rmdir') return (path: string, ...rest: unknown[]) => f.call(target, path, ...rest).finally(() => touch(path));
        if (prop === 'rename') return (from: string, to: string, ...rest: unknown[]) => f.call(target, from, to, ...rest).finally(() => touch(from, to));
        // This master's own writes (an empty file's close) replace what is there once they complete.
        if (prop === 'create')
          return async (path: string, ...rest: unknown[]) => {
            const w = (await f.call(target, path, ...rest)) as UfsWriter;
            const complete = w.complete.bind(w);
            w.complete = () => complete().finally(() => touch(path));
            return w;
          };
        return f.bind(target);
      },
    });
    this.#watched.set(ufs, w);
    return w;
  }

  #touch(ufs: UnderFileSystem, path: string): void {
    const seq = ++this.#touchSeq;
    let m = this.#touched.get(ufs);
    if (!m) this.#touched.set(ufs, (m = new Map()));
    m.delete(path);
    m.set(path, seq);
    if (m.size > TOUCHED_MAX) {
      const [oldest, at] = m.entries().next().value as [string, number];
      m.delete(oldest);
      this.#touchedFloor = Math.max(this.#touchedFloor, at);
    }
  }

  #noteHandout(ino: number, container: number): void {
    const k = `${ino}:${container}`;
    // The first: the object can land any time after it.
    if (this.#handouts.has(k)) return;
    this.#handouts.set(k, this.#touchSeq);
    if (this.#handouts.size > HANDOUTS_MAX) this.#handouts.delete(this.#handouts.keys().next().value as string);
  }

  /**
   * Whether the object a worker reported at `at` (for `ino`'s `container`) is not there any more
   * or was replaced: looked at in the store only when this master removed or moved something at
   * that place or above it since the worker was told to write there, or cannot tell (the handout
   * is not known: a restart, or forgotten). Callers hold the place's path lock.
   */
  async #objectLost(at: UfsPlace, ino: number, container: number, fingerprint: string): Promise<boolean> {
    const k = `${ino}:${container}`;
    const since = this.#handouts.get(k);
    this.#handouts.delete(k);
    const mount = this.#mountOf(at.mountUri);
    if (!mount) return false;
    if (since !== undefined && since >= this.#touchedFloor) {
      const touched = this.#touched.get(mount.ufs);
      const parts = parsePath(at.path);
      let moved = false;
      for (let i = parts.length; i >= 0 && touched && !moved; i--) moved = (touched.get('/' + parts.slice(0, i).join('/')) ?? 0) > since;
      if (!moved) return false;
    }
    const st = await mount.ufs.stat(at.path);
    return !(st && st.type === 'file' && st.fingerprint === fingerprint);
  }

  /** Workers' ufsLocation checks in flight, by store place (storePlaceKey): each ends once its file's inStore mark is on disk. */
  readonly #placesAsked = new Map<string, Set<Promise<UfsLocation>>>();
  /** Stray objects' removals in progress, by store place: a worker asking to write there waits for them. */
  readonly #strayRemovals = new Map<string, Promise<void>>();

  /**
   * Removes the object a late write left at `at`: only that very object (a newer one there
   * belongs to someone else). The look and the delete are two store calls, and another
   * file's worker could land its object at that place in between. So a removal and a
   * worker's ufsLocation for the same place never overlap (each waits for the other's
   * in flight), and the object is left alone when the file now there may be in the store
   * (its own write replaces the object, its unlink removes it): the file whose bytes
   * belong at that place, so the primary link of a name in the stray's own store.
   */
  async #removeStray(at: UfsPlace, fingerprint: string): Promise<void> {
    const mount = this.#mountOf(at.mountUri);
    if (!mount) return;
    const key = storePlaceKey(at);
    // Callers hold the place's path lock: no other removal of it runs.
    const removal = (async () => {
      const asked = this.#placesAsked.get(key);
      if (asked) await Promise.allSettled([...asked]);
      const parts = [...mount.parts, ...parsePath(at.path)];
      const now = await this.#tableNodeAt(parts);
      // A stored file there is not being written for the first time: its object, if the stray replaced it, is
      // lost either way, and keeping the stray would show another file's bytes under its name.
      if (now && now.node.type === 'file' && now.node.inStore && now.node.persistState !== 'persisted' && this.#store(parts).mount.uri === mount.uri && (await this.#table.isPrimaryLink(now.parent, parts[parts.length - 1]!))) {
        this.#log.info({ ino: now.node.ino, path: at.path }, "a late write's object is left where another file now is: that file's write replaces it");
        return;
      }
      const ufs = this.#watchedUfs(mount.ufs);
      const st = await ufs.stat(at.path);
      if (!st || st.type !== 'file' || st.fingerprint !== fingerprint) return;
      // A master deposed since its look must not delete what the new leader's writers put there meanwhile.
      this.#lead();
      // Its directory may be gone from the table (renamed or removed since): the delete must not bring it back.
      await this.#ufsIgnoreMissing(() => ufs.delete(at.path, { parentMayGo: true }));
    })();
    this.#strayRemovals.set(key, removal);
    try {
      await removal;
    } finally {
      if (this.#strayRemovals.get(key) === removal) this.#strayRemovals.delete(key);
    }
  }

  /** The node at `parts` (not the root) and its directory, as the table has them now, without asking any store. */
  async #tableNodeAt(parts: string[]): Promise<{ node: NodeRecord; parent: number } | undefined> {
    let node: NodeRecord | undefined = await this.#table.requireNode(ROOT_INO);
    let parent = ROOT_INO;
    for (const name of parts) {
      if (node.type !== 'directory') return undefined;
      parent = node.ino;
      node = await this.#table.lookup(node.ino, name);
      if (!node) return undefined;
    }
    return parts.length ? { node, parent } : undefined;
  }

  /**
   * Records a written file. A write-through names where its object went (`ufsAt`): when a
   * rename moved the file between the worker's last check and this commit, that object is
   * at the old path. Then the stray object goes and the write fails (NOT_FOUND): the client,
   * which still holds the bytes, writes the file again to where it is now, so its close
   * returns once the file is in the store, as any write-through's does. Recording it as
   * written and queued for a persist instead (what this did, with a cached copy) made the
   * worker's blocks its only copy after a successful close: written as a write-through's
   * copy, not fsync'd and maybe on the memory tier, so lost with that worker.
   */
  async commitWrite(req: WriteCommitRequest): Promise<FileAttributes> {
    const at = req.ufsAt;
    if (!req.ufsFingerprint || !at) return toAttributes(await this.#table.commitWrite(req));
    return this.#mutate(() => this.#inodeScope(req.ino), async (lock) => {
      const { here, stillThere } = await this.#fileAt(req.ino, at);
      if (stillThere && !(await this.#objectLost(at, req.ino, req.containerId, req.ufsFingerprint!))) return toAttributes(await this.#table.commitWrite(req));
      if (stillThere) {
        // Back at that path after a rename or an unlink's delete took its object away: nothing of it is stored.
        if ((await this.#table.openWriteOf(req.containerId)) === req.ino) await this.#table.abandonWrite(req.containerId);
        this.#log.info({ ino: req.ino, path: at.path }, 'a write-through\'s object was removed or replaced before its commit; the client writes it again');
        throw new StrataError('NOT_FOUND', `the object of inode ${req.ino} at ${at.path} was removed or replaced before its commit; nothing was stored`);
      }
      // The stray is at a path the file left, which this change does not hold yet.
      lock.needs(this.#strayScope(at));
      await this.#removeStray(at, req.ufsFingerprint!);
      // Never committed now: its cached copies go at once, not when the write would expire (only this file's write).
      if ((await this.#table.openWriteOf(req.containerId)) === req.ino) await this.#table.abandonWrite(req.containerId);
      this.#log.info({ ino: req.ino, path: at.path, now: here?.path ?? null }, 'a write-through finished after its file was renamed or removed; its object is removed and the client writes it again');
      throw new StrataError('NOT_FOUND', `inode ${req.ino} moved or went away while it was written; nothing was stored`);
    });
  }

  /**
   * Discards what a worker's writes left in their stores when the worker died (open
   * multipart uploads, temp files), through the store of the mount they were for,
   * for up to `waitMs`. Answers the indices it is done with: discarded, or beyond
   * help (no such mount any more, a handle the store refuses). The rest (the store
   * failed, or time ran out) the worker keeps and sends again.
   */
  async discardLeftovers(list: UfsLeftover[], worker: number, waitMs: number): Promise<number[]> {
    const done: number[] = [];
    const deadline = Date.now() + waitMs;
    for (const [i, l] of list.entries()) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const mount = this.#mountOf(l.mountUri);
      if (!mount?.ufs.discardLeftover) {
        this.#log.warn({ worker, mountUri: l.mountUri }, 'cannot discard what an unfinished write left: its mount is gone');
        done.push(i);
        continue;
      }
      try {
        await mount.ufs.discardLeftover(l.handle, { signal: AbortSignal.timeout(left) });
        this.#log.info({ worker, mount: mount.path, handle: l.handle }, 'discarded what an unfinished write left in the store');
        done.push(i);
      } catch (err) {
        const refused = err instanceof StrataError && err.code === 'INVALID_ARGUMENT';
        if (refused) done.push(i);
        this.#log.warn({ worker, mount: mount.path, handle: l.handle, err: (err as Error).message }, refused ? 'refused a handle of an unfinished write' : 'could not discard what an unfinished write left in the store yet');
      }
    }
    return done;
  }

  /** Where an inode's bytes live in the under-store; asked by workers, never by clients. */
  /**
   * Where a worker writes a file's bytes. With a `purpose`, only for the write that may:
   * a write-through of a write in flight of this file (`container` begun for it), or a
   * persist of its current version (its container and block count); never in a read-only
   * mount. A worker asks this before anything reaches the store.
   */
  async ufsLocation(ino: number, check?: { purpose: 'write'; container: number } | { purpose: 'persist'; container: number; blocks: number }): Promise<UfsLocation> {
    for (;;) {
      const n = await this.#table.requireNode(ino);
      if (n.type !== 'file') throw new StrataError('IS_DIRECTORY', `inode ${ino} is not a regular file`);
      const path = await this.#table.pathOf(ino);
      if (!check) return this.#location(path);
      const at = this.#location(path);
      const key = storePlaceKey(at);
      // A stray object's removal at this place: this writer's object must not land between its look and its delete.
      const removal = this.#strayRemovals.get(key);
      if (removal) {
        await removal.catch(() => undefined);
        continue;
      }
      // Seen by a removal that starts from here on, which waits for this mark to be on disk.
      const asked = this.#writeLocation(ino, check, n, path, at);
      let set = this.#placesAsked.get(key);
      if (!set) this.#placesAsked.set(key, (set = new Set()));
      set.add(asked);
      try {
        return await asked;
      } finally {
        set.delete(asked);
        if (set.size === 0 && this.#placesAsked.get(key) === set) this.#placesAsked.delete(key);
      }
    }
  }

  async #writeLocation(ino: number, check: { purpose: 'write'; container: number } | { purpose: 'persist'; container: number; blocks: number }, n: NodeRecord, path: string, at: UfsLocation): Promise<UfsLocation> {
    this.#writable(parsePath(path));
    if (check.purpose === 'write' && (await this.#table.openWriteOf(check.container)) !== ino) {
      // NOT_FOUND: a client then begins a new write and sends the file again (as after a rename).
      throw new StrataError('NOT_FOUND', `no write ${check.container} of inode ${ino} is in flight (never begun, expired or committed)`);
    }
    if (check.purpose === 'persist' && (n.container !== check.container || check.blocks !== Math.ceil(n.size / n.blockSize))) {
      throw new StrataError('BUSY', `inode ${ino} is not at version ${check.container} with ${check.blocks} blocks any more`);
    }
    // The worker writes there next: on disk first, so an unlink or rename then looks in the store.
    if (!n.inStore) await this.#table.markInStore(ino);
    this.#noteHandout(ino, check.container);
    const vouched = await this.#noDirectoryFor(parsePath(path));
    return vouched > 0 ? { ...at, noDirectoryForMs: vouched } : at;
  }

  /**
   * For how many more ms this namespace knows no directory is at `parts` in its store (0: it
   * does not): the directory holding it was listed (or made here) within the sync interval,
   * the name is not a directory in it (or not there at all), and that listing, made by this
   * namespace, did not show a directory under the name (#storeDirectories, #vouchSince).
   * Only a change made directly in the store since could put one there, which the sync
   * interval lets this namespace miss anyway. A writer then need not look before it
   * completes (UfsCallOptions.noDirectoryUntil); with a sync interval of 0 it always looks.
   */
  async #noDirectoryFor(parts: string[]): Promise<number> {
    if (parts.length === 0) return 0;
    const { mount } = this.#store(parts);
    let dir = await this.#table.requireNode(ROOT_INO);
    for (const name of parts.slice(0, -1)) {
      const next = await this.#table.lookup(dir.ino, name);
      if (!next || next.type !== 'directory') return 0;
      dir = next;
    }
    const name = parts[parts.length - 1]!;
    const here = await this.#table.lookup(dir.ino, name);
    if (here?.type === 'directory' || dir.persistState !== 'persisted' || dir.syncedAt < this.#vouchSince) return 0;
    const shadowed = this.#storeDirectories.get(dir.ino);
    if (shadowed === 'all' || shadowed?.has(name)) return 0;
    const interval = this.#intervalOf(mount);
    if (interval < 0) return VOUCH_FOREVER_MS;
    return Math.max(0, dir.syncedAt + interval - Date.now());
  }

  /**
   * Names the last listing of a directory showed as directories where the table keeps a
   * file (one not stored yet, or one the store replaced with a directory: the merge leaves
   * those to the table). A write of such a file must look in the store first (S3 would
   * hold both). Only directories with such names are kept.
   */
  readonly #storeDirectories = new Map<number, Set<string> | 'all'>();
  /**
   * Only listings from then on count for #noDirectoryFor: what earlier ones showed is not in
   * #storeDirectories (made by another master, before a restart, or forgotten since), though
   * the directory's syncedAt outlives it. A directory made here counts from its mkdir.
   */
  #vouchSince = Date.now();

  /** From now on only this namespace's own listings count for #noDirectoryFor (a leader elected: see #vouchSince). */
  forgetListings(): void {
    this.#storeDirectories.clear();
    this.#vouchSince = Date.now();
    // Another leader may have removed or moved objects since: hand-outs from before are looked at in the store.
    this.#touchedFloor = ++this.#touchSeq;
  }

  /**
   * Counts a finished ASYNC_THROUGH upload of `ino` if the file still is what and where it
   * was uploaded as. An upload races the namespace: the file may have been unlinked or
   * renamed (unpersisted files move in the table alone) while its bytes were on the way.
   * Then the object it left is nobody's: it is removed (unless something else has
   * replaced it since) and a file that still exists is queued again for its new path.
   * Holds the file's path like the other under-store changes, so none of them on it interleaves.
   */
  settlePersist(ino: number, container: number, r: PersistResponse): Promise<boolean> {
    return this.#mutate(() => this.#inodeScope(ino), async (lock) => {
      const { n, here, stillThere } = await this.#fileAt(ino, r);
      if (stillThere && (await this.#objectLost(r, ino, container, r.ufsFingerprint))) {
        this.#log.info({ ino, path: r.path }, "an upload's object was removed or replaced before it was counted; the file is queued again");
        if (n && n.persistState !== 'persisted') await this.#table.enqueuePersist(ino);
        return false;
      }
      if (stillThere) {
        // markPersisted re-checks the container: content committed during the upload stays queued,
        // and its next upload overwrites this one at the same path.
        return this.#table.markPersisted(ino, container, r.ufsFingerprint);
      }
      // The stray is at a path the file left (or it is gone), which this change does not hold yet.
      lock.needs(this.#strayScope(r));
      await this.#removeStray(r, r.ufsFingerprint);
      this.#log.info({ ino, path: r.path, now: here?.path ?? null }, 'an upload finished after its file was renamed or removed; its object is removed');
      if (n && here && n.persistState !== 'persisted') await this.#table.enqueuePersist(ino);
      return false;
    });
  }

  #location(path: string): UfsLocation {
    const { mount, ufsPath } = this.#store(parsePath(path));
    return { ...storeRef(mount), path: ufsPath };
  }

  async blockSource(blockId: number): Promise<BlockSource> {
    const b = await this.#table.block(blockId);
    if (!b) throw new StrataError('NOT_FOUND', `no block ${blockId}`);
    // Block rows never change, so block and node may come from two reads; a node deleted between them is NOT_FOUND.
    const n = await this.#table.requireNode(b.ino);
    // The file exists; its only copies are on workers that are down (MUST_CACHE, or ASYNC_THROUGH not yet
    // persisted). That is an I/O error until one comes back, not a missing file (ENOENT would say it was deleted).
    if (n.persistState !== 'persisted') throw new StrataError('UNAVAILABLE', `block ${blockId} is not persisted and no live worker reachable here holds it; it is readable again once its worker is back`);
    return {
      blockId,
      ino: b.ino,
      offset: b.index * n.blockSize,
      length: b.length,
      ufs: this.#location(await this.#table.pathOf(b.ino)),
      // The version the file's current blocks hold; a block of an earlier one (a commit landed
      // between the two reads above) gets none, as it would not match.
      ...(n.ufsFingerprint && Math.floor(blockId / BLOCKS_PER_CONTAINER) === n.container ? { fingerprint: n.ufsFingerprint } : {}),
    };
  }

  /**
   * Checks a path against its store now: a directory is listed again, a file re-checked. A path
   * the namespace does not know yet (new in the store) is found by listing its deepest known
   * directory, then each one below it. NOT_FOUND only when neither the namespace had the path
   * nor the store has it: a file the check found deleted in the store is a sync done.
   */
  async forceSync(path: string): Promise<void> {
    const parts = parsePath(path);
    // Asked of the table alone: resolving re-checks a stale file, and one deleted in the store is gone after it.
    const knewIt = await this.#inTable(parts);
    let known = await this.#resolveKnown(parts);
    while (known.depth < parts.length) {
      if (known.node.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `/${parts.slice(0, known.depth).join('/')} is not a directory`);
      await this.#listNow(known.node, parts.slice(0, known.depth));
      const deeper = await this.#resolveKnown(parts);
      if (deeper.depth <= known.depth) {
        if (knewIt) return; // gone from the store, and now from the namespace
        throw notFound('/' + parts.join('/'));
      }
      known = deeper;
    }
    const node = known.node;
    if (node.type === 'directory' && !knewIt) return; // listed just now
    if (node.type === 'directory') await this.#listNow(node, parts);
    else if (parts.length > 0 && node.persistState === 'persisted') {
      const parent = await this.#resolveParts(parts.slice(0, -1));
      try {
        await this.#revalidate(parent, parts[parts.length - 1]!, node, parts);
      } catch (err) {
        if (!(err instanceof StrataError && err.code === 'NOT_FOUND')) throw err;
      }
    }
  }

  /** Lists a directory again now, even under a mount with sync disabled (-1), by a listing that starts now, not one already running. */
  async #listNow(node: NodeRecord, parts: string[]): Promise<void> {
    await this.#table.markSynced(node.ino, 0);
    await this.#syncListing(await this.#table.requireNode(node.ino), parts, true, true);
  }

  /** Whether the inode table has `parts`, without asking any store. */
  async #inTable(parts: string[]): Promise<boolean> {
    let ino = ROOT_INO;
    for (const name of parts) {
      const n = await this.#table.lookup(ino, name);
      if (!n) return false;
      ino = n.ino;
    }
    return true;
  }

  /** The deepest prefix of `parts` the namespace resolves now (the store asked as lookups would), and how many parts it has. */
  async #resolveKnown(parts: string[]): Promise<{ node: NodeRecord; depth: number }> {
    let node = await this.#table.requireNode(ROOT_INO);
    for (let i = 0; i < parts.length; i++) {
      if (node.type !== 'directory') return { node, depth: i };
      try {
        node = await this.#child(node, parts.slice(0, i + 1));
      } catch (err) {
        if (err instanceof StrataError && err.code === 'NOT_FOUND') return { node, depth: i };
        throw err;
      }
    }
    return { node, depth: parts.length };
  }

  // ---- cache control: pin, TTL, free, du ---------------------------------------

  /**
   * Pins (or unpins) a file, or with `recursive` a directory and everything below
   * it; files created or loaded later under a pinned directory start pinned.
   */
  async setPinned(path: string, pinned: boolean, recursive: boolean): Promise<{ files: number }> {
    const node = await this.resolve(path);
    if (node.type === 'directory' && !recursive) throw new StrataError('IS_DIRECTORY', `${path} is a directory: pinning it needs recursive`);
    const r = await this.#table.setPinned(node.ino, pinned);
    this.#log.info({ path, pinned, files: r.files }, pinned ? 'pinned' : 'unpinned');
    return r;
  }

  /** Sets a time to live (ms from now) on a file or directory, or clears it (null). */
  async setTtl(path: string, ttlMs: number | null, action: TtlAction): Promise<FileBlocksResponse['ttl']> {
    const node = await this.resolve(path);
    if (ttlMs !== null && action === 'delete' && node.ino === ROOT_INO) throw new StrataError('INVALID_ARGUMENT', 'the root cannot expire');
    const expiresAtMs = ttlMs === null ? null : Date.now() + ttlMs;
    await this.#table.setTtl(node.ino, expiresAtMs, action);
    return expiresAtMs === null ? null : { expiresAtMs, action };
  }

  /** Drops cached copies of the persisted files at `path` (a directory needs `recursive`). */
  async free(path: string, recursive: boolean): Promise<FreeResponse> {
    const node = await this.resolve(path);
    if (node.type === 'directory' && !recursive) throw new StrataError('IS_DIRECTORY', `${path} is a directory: freeing it needs recursive`);
    const r = await this.#table.free(node.ino);
    this.#log.info({ path, ...r }, 'freed cached copies');
    return r;
  }

  /**
   * Size and cached bytes below `path`, summed over its listings (loading those the namespace does
   * not have yet) page by page, other requests served between pages: one query over the whole
   * subtree held them up for as long as it ran (stats sent every 10 ms during a du of 110,000
   * files waited up to 143-227 ms, now 31-41 ms). Like du(1) on a live tree, what changes during the
   * walk may or may not be counted; a file with several links below `path` counts once.
   */
  async du(path: string): Promise<DuResponse> {
    const node = await this.resolve(path);
    if (node.type !== 'directory') return await this.#table.du(node.ino);
    const r: DuResponse = { files: 0, directories: 1, size: 0, cachedBytes: 0 };
    const linked = new Set<number>();
    const dirs = [normalizePath(path)];
    for (let d = dirs.pop(); d !== undefined; d = dirs.pop()) {
      for await (const page of this.listPages(d, LIST_PAGE)) {
        const files: number[] = [];
        for (const e of page) {
          if (e.type === 'directory') {
            r.directories++;
            dirs.push(joinPath(d, e.name));
          } else if (e.type === 'file' && !(e.nlink > 1 && linked.has(e.ino))) {
            if (e.nlink > 1) linked.add(e.ino);
            r.files++;
            r.size += e.size;
            files.push(e.ino);
          }
        }
        if (files.length > 0) r.cachedBytes += await this.#table.cachedBytes(files);
      }
    }
    return r;
  }

  /** Removes a file, or a directory with everything below it, from the namespace and its under-store. */
  async removeTree(path: string): Promise<void> {
    const p = normalizePath(path);
    const node = await this.resolve(p);
    if (node.type !== 'directory') return this.unlink(p);
    // Page by page: each page's names are removed before the next page, which starts after them.
    for await (const page of this.listPages(p, LIST_PAGE)) for (const e of page) await this.removeTree(joinPath(p, e.name));
    await this.rmdir(p);
  }

  /**
   * Applies the TTLs that passed: `free` drops cached copies below the node,
   * `delete` removes it (from the under-store too). A fired TTL is cleared; one
   * whose action failed for a passing reason (store unreachable) is tried again later.
   */
  async applyExpiredTtls(now = Date.now()): Promise<number> {
    let fired = 0;
    // clearTtl and rescheduleTtl apply only while the TTL is still the one found here: one set meanwhile stays.
    for (const e of await this.#table.expiredTtls(now)) {
      let path: string;
      try {
        path = await this.#table.pathOf(e.ino);
      } catch (err) {
        if (!(err instanceof StrataError && err.code === 'NOT_FOUND')) throw err;
        await this.#table.clearTtl(e.ino, e.expiresAtMs); // unlinked but still open somewhere: nothing to name
        continue;
      }
      try {
        if (e.action === 'delete') {
          await this.removeTree(path);
          this.#log.info({ path, action: e.action }, 'TTL expired: deleted');
        } else {
          const r = await this.#table.free(e.ino);
          this.#log.info({ path, action: e.action, ...r }, 'TTL expired: freed cached copies');
        }
        await this.#table.clearTtl(e.ino, e.expiresAtMs);
        fired++;
      } catch (err) {
        const code = err instanceof StrataError ? err.code : 'IO_ERROR';
        const passing = code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'IO_ERROR';
        this.#log.warn({ path, action: e.action, err: (err as Error).message, code }, passing ? 'TTL action failed; trying again in 30 s' : 'TTL action failed; TTL cleared');
        if (passing) await this.#table.rescheduleTtl(e.ino, e.expiresAtMs, now + 30_000);
        else await this.#table.clearTtl(e.ino, e.expiresAtMs);
      }
    }
    return fired;
  }

  // ---- extended attributes (namespace only) ------------------------------------

  async setXattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    this.#writable(parsePath(path));
    validateXattrName(name);
    if (POSIX_ACL_XATTRS.has(name)) throw new StrataError('NOT_SUPPORTED', `POSIX ACLs are not supported (${name}): Strata keeps mode bits only`);
    // setxattr(2): XATTR_CREATE (1) and XATTR_REPLACE (2); anything else is EINVAL.
    if (flags & ~3) throw new StrataError('INVALID_ARGUMENT', `setxattr flags ${flags} are not supported`);
    if (value.length > 64 * 1024) throw new StrataError('FILE_TOO_LARGE', 'extended attribute values are limited to 64 KiB');
    await this.#table.setXattr((await this.resolve(path)).ino, name, value, flags);
  }

  async getXattr(path: string, name: string): Promise<Buffer> {
    validateXattrName(name);
    return await this.#table.getXattr((await this.resolve(path)).ino, name);
  }

  async listXattrs(path: string): Promise<string[]> {
    return await this.#table.listXattrs((await this.resolve(path)).ino);
  }

  async removeXattr(path: string, name: string): Promise<void> {
    this.#writable(parsePath(path));
    validateXattrName(name);
    await this.#table.removeXattr((await this.resolve(path)).ino, name);
  }

  // ---- mount table -----------------------------------------------------------

  /**
   * How long a client may cache what it learned from this master (the change feed
   * tells it about changes made through Strata; this bounds how late it sees
   * changes made directly in an under-store): the shortest sync interval of any
   * mount; 0 = do not cache, -1 = no limit.
   */
  cacheTtlMs(): number {
    const intervals = [this.#syncIntervalMs, ...this.#mounts.list().map((m) => this.#intervalOf(m))];
    if (intervals.some((i) => i === 0)) return 0;
    const positive = intervals.filter((i) => i > 0);
    return positive.length > 0 ? Math.min(...positive) : -1;
  }

  /** The store of each mount with its driver options (for workers only; a worker makes one driver per distinct store). */
  underStores(): UnderStoreRef[] {
    return this.#mounts.list().map((m) => storeRef(m));
  }

  mounts(): MountInfo[] {
    return this.#mounts.list().map((m) => ({ path: m.path, uri: m.uri, readOnly: m.readOnly, options: maskOptions(m.options) }));
  }

  /**
   * Mounts `uri` at `path`: the store must answer, and `path` must be missing or an
   * empty directory. Nothing changes when any check fails.
   */
  mount(path: string, uri: string, options: MountOptions): Promise<MountInfo> {
    // The whole namespace: the mount table decides which store every path is in.
    return this.#mutate(() => 'all', async () => {
      const parts = parsePath(path);
      if (parts.length === 0) throw new StrataError('INVALID_ARGUMENT', 'the root store is set when the master starts (--ufs)');
      if (this.#mounts.isMountPoint(parts)) throw new StrataError('ALREADY_EXISTS', `something is already mounted at ${path}`);
      // A bad URI or option is CONFIG: the caller's usage, not the namespace (the CLI exits 2).
      const m = this.#mounts.prepare('/' + parts.join('/'), uri, options);
      try {
        await m.ufs.list('/', { signal: AbortSignal.timeout(15_000) });
      } catch (err) {
        await m.ufs.close();
        throw new StrataError('UNAVAILABLE', `cannot mount ${uri}: the store did not answer a listing of its root (${(err as Error).message})`);
      }
      let parent: NodeRecord, name: string, existing: NodeRecord | undefined;
      try {
        ({ parent, name } = await this.#resolveParent(path));
        existing = await this.#maybeChild(parent, parts);
        if (existing) {
          if (existing.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${path} is not a directory`);
          await this.#syncListing(existing, parts);
          if ((await this.#hasChildren(existing.ino))) throw new StrataError('NOT_EMPTY', `cannot mount over ${path}: it is not empty`);
        }
      } catch (err) {
        await m.ufs.close(); // not mounted: its driver (connection pools) goes
        throw err;
      }
      try {
        await this.#mounts.add(m);
      } catch (err) {
        await m.ufs.close();
        throw err;
      }
      try {
        if (existing) await this.#table.markSynced(existing.ino, 0);
        else await this.#table.createChild(parent.ino, name, { type: 'directory', mode: 0o755, uid: this.#uid, gid: this.#gid, persisted: true, syncedAt: 0 });
      } catch (err) {
        // Taken since the check (creates take no path lock): by a lookup that loaded the mounted root (fine),
        // or by a file created there (the mount is undone).
        const now = err instanceof StrataError && err.code === 'ALREADY_EXISTS' ? await this.#table.lookup(parent.ino, name) : undefined;
        if (now?.type !== 'directory') {
          await this.#mounts.remove(m.path);
          await m.ufs.close();
          throw err;
        }
        await this.#table.markSynced(now.ino, 0);
      }
      this.#log.info({ path: m.path, uri: m.uri, options: maskOptions(m.options) }, 'mounted an under-store');
      return { path: m.path, uri: m.uri, readOnly: m.readOnly, options: maskOptions(m.options) };
    });
  }

  unmount(path: string): Promise<void> {
    return this.#mutate(() => 'all', async () => {
      const parts = parsePath(path);
      if (parts.length === 0) throw new StrataError('INVALID_ARGUMENT', 'the root store cannot be unmounted');
      if (!this.#mounts.isMountPoint(parts)) throw new StrataError('NOT_FOUND', `nothing is mounted at ${path}`);
      if (this.#mounts.below(parts).length > 0) throw new StrataError('BUSY', `other stores are mounted below ${path}; unmount them first`);
      const parent = await this.#resolveParts(parts.slice(0, -1));
      const name = parts[parts.length - 1]!;
      const at = '/' + parts.join('/');
      await this.#changing([[parent.ino, name]], async () => {
        // One transaction checks that nothing below is unpersisted and drops the mount row and the tree: a create or
        // write below (they take no path lock) commits either before it (BUSY, nothing changes) or after, when
        // its parent is gone (NOT_FOUND); none is dropped with the tree unseen. Mounts hold the whole namespace, as this does.
        await this.#table.unmount(at, parent.ino, name);
        // The parent's listing did not show what its own store has at the mount point's name (the mount hid it):
        // listed long ago (1, not 0: a stale listed directory is listed again at its next lookup).
        await this.#table.markSynced(parent.ino, 1);
        // Until the mount goes from memory too, a lookup of the mount point finds its store: the name in flight keeps
        // that lookup from loading the mount point back into the table.
        await this.#mounts.forget(at)?.ufs.close();
      });
      this.#log.info({ path }, 'unmounted an under-store');
    });
  }

  async close(): Promise<void> {
    await this.#mounts.close();
  }

  /**
   * Deletes what an unpersisted file may have left at `path` (an older version), if it is there. A
   * directory there is not that (made in the store since) and stays.
   */
  async #dropOlderVersion(ufs: UnderFileSystem, path: string): Promise<void> {
    try {
      await ufs.delete(path, { ifPresent: true });
    } catch (err) {
      if (!(err instanceof StrataError && (err.code === 'NOT_FOUND' || err.code === 'IS_DIRECTORY'))) throw err;
    }
  }

  /** Puts back a directory removed from the store for a change the table then refused. */
  async #restoreDirectory(ufs: UnderFileSystem, ufsPath: string): Promise<void> {
    try {
      await ufs.mkdir(ufsPath);
    } catch (err) {
      if (err instanceof StrataError && err.code === 'ALREADY_EXISTS') return; // put back meanwhile (a file stored in it)
      this.#log.error({ err, path: ufsPath }, 'could not put back an under-store directory removed for a refused change');
    }
  }

  async #ufsIgnoreMissing(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (!(err instanceof StrataError && err.code === 'NOT_FOUND')) throw err;
    }
  }
}

/** Linux namespaces an attribute name must use; at most 255 bytes. */
function validateXattrName(name: string): void {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255 || !isValidUtf8Text(name)) throw new StrataError('INVALID_ARGUMENT', 'bad extended attribute name');
  if (!/^(user|trusted|security|system)\./.test(name)) throw new StrataError('NOT_SUPPORTED', `attribute namespace of ${name} is not supported`);
}

/** A regular file whose blocks come along with its lookup or listing (LOOKUP_BLOCKS_MAX). */
function hasFewBlocks(n: NodeRecord): boolean {
  return n.type === 'file' && Math.ceil(n.size / n.blockSize) <= LOOKUP_BLOCKS_MAX;
}

/** Whether `blocks` are the blocks of the version of the file `node` describes (its container, its size). */
function blocksMatch(node: NodeRecord, blocks: BlockInfo[]): boolean {
  if (node.type !== 'file') return blocks.length === 0;
  if (blocks.length !== Math.ceil(node.size / node.blockSize)) return false;
  return blocks.every((b) => Math.floor(b.id / BLOCKS_PER_CONTAINER) === node.container);
}

function notFound(path: string): StrataError {
  return new StrataError('NOT_FOUND', `${path} does not exist`);
}

/** Thrown by `needs()` inside #mutate when the change holds less than `scope`; it has changed nothing yet. */
class NeedsMore extends Error {
  constructor(readonly scope: LockScope) {
    super('the change needs more paths held');
  }
}

function union(a: LockScope, b: LockScope): LockScope {
  return a === 'all' || b === 'all' ? 'all' : [...a, ...b];
}

function sameScope(a: LockScope, b: LockScope): boolean {
  if (a === 'all' || b === 'all') return a === b;
  return a.length === b.length && a.every((p, i) => p.length === b[i]!.length && p.every((x, j) => x === b[i]![j]));
}
