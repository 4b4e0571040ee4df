/** Typed calls of the master's namespace API, for the FUSE client and the CLI. */

import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallOptions, JsonClient, JsonClientOptions, ResponseMeta } from '../common/json-client';
import { StrataError } from '../common/errors';
import { ChangeStamp, MetadataCache, parseChangeStamp } from './metadata-cache';
import {
  DirEntry,
  DuResponse,
  FileAttributes,
  LookupResponse,
  FileBlocksResponse,
  FreeResponse,
  ListResponse,
  LIST_PAGE_MAX,
  LOOKUP_BLOCKS_MAX,
  MASTER_API,
  CHANGES_HEADER,
  SUBSCRIBER_HEADER,
  ChangesResponse,
  DirsAfterChange,
  MountInfo,
  SetAttrRequest,
  TtlAction,
  WorkerInfo,
  WriteBeginResponse,
  WriteCommitRequest,
  WriteType,
  Timespec,
} from '../common/protocol';

/** The change-feed position an answer reflects (its `strata-changes` header). */
const stampOf = (meta: ResponseMeta): ChangeStamp | undefined => parseChangeStamp(meta.headers?.[CHANGES_HEADER]);

/** After a page read the master would not vouch for, how long lookups in that directory go without one. */
const USELESS_PAGE_BACKOFF_MS = 10_000;

/** The names (directory inode, name) a request may change; 'unknown' when it names paths. */
type ChangedNames = readonly (readonly [number, string])[] | 'unknown';
const NO_NAMES: ChangedNames = [];
/** How long a client waits for a persist it asked for (the master answers once the bytes are stored). */
const PERSIST_TIMEOUT_MS = 6 * 3600_000;

export interface MasterClientOptions extends JsonClientOptions {
  /** Cache lookups, attributes and block lists, kept exact by the change feed (the FUSE mount). */
  metadataCache?: boolean;
  /**
   * With the metadata cache: hold a change-feed lease of this many ms and answer
   * opens from the cache while it runs (close-to-open still holds: master/feed-leases.ts).
   * 0: every open asks the master. Default 0.
   */
  feedLeaseMs?: number;
}

/**
 * How long the next change-feed poll may be held (ms), so that its answer renews the
 * lease before the running one (`leaseLeftMs` more) ends, given the round trip beyond
 * the hold (`overheadMs`). At most a third of the lease, as on a local link: an answer
 * lost then leaves time for another poll. A link slower than about a sixth of the lease
 * each way needs the shorter waits: with a third every time, a proxy holding each poll
 * 250 ms lapsed a 1 s lease for up to 226 ms of each 600 ms round, and opens went to
 * the master then.
 */
export function feedPollWait(grantedMs: number, leaseLeftMs: number, overheadMs: number): number {
  return Math.max(20, Math.min(Math.floor(grantedMs / 3), Math.floor(leaseLeftMs - 1.5 * overheadMs - 10)));
}

export class MasterClient {
  readonly #http: JsonClient;
  /** The feed's own connections: held requests (changes waiting for other mounts' leases) must never queue a poll. */
  readonly #feedHttp: JsonClient;
  /** Set when caching: see metadata-cache.ts. */
  readonly cache: MetadataCache | undefined;
  readonly #stopFeed = new AbortController();
  #feed: Promise<void> | undefined;
  readonly #leaseMs: number;
  readonly #subscriber = randomBytes(12).toString('hex');
  /** Until when (performance.now()) the feed lease runs: sent time of the last answered poll + the lease. */
  #leaseUntil = 0;
  #granted = 0;

  constructor(url: string, opts: MasterClientOptions = {}) {
    this.#leaseMs = opts.metadataCache ? (opts.feedLeaseMs ?? 0) : 0;
    this.#http = new JsonClient(url, this.#leaseMs > 0 ? { ...opts, postHeaders: { ...opts.postHeaders, [SUBSCRIBER_HEADER]: this.#subscriber } } : opts);
    // A feed poll that failed (the master restarting, a failover) ends the lease and what the cache vouched for at
    // once, while the client keeps trying: a restarted or new master knows nothing of this mount's lease.
    this.#feedHttp = new JsonClient(url, {
      ...opts,
      // Beyond the longest hold a poll asks for (20 s, without a lease).
      timeoutMs: 30_000,
      stop: this.#stopFeed.signal,
      onRetry: () => {
        this.#setLease(0);
        this.cache?.lost();
      },
    });
    if (opts.metadataCache) {
      this.cache = new MetadataCache();
      this.#feed = this.#followChanges();
    }
  }

  /** Long-polls the master's change feed into the cache until closed. */
  async #followChanges(): Promise<void> {
    const cache = this.cache!;
    const signal = this.#stopFeed.signal;
    // A poll's round trip beyond the master's hold (ms): the largest of late, fading by a fifth per poll.
    let overheadMs = 0;
    while (!signal.aborted) {
      try {
        const lease = this.#leaseMs;
        const sent = performance.now();
        // With a lease granted: each answer must come before the lease the last one renewed ends.
        const wait = this.#granted > 0 ? feedPollWait(this.#granted, this.#leaseUntil - sent, overheadMs) : Math.max(50, Math.floor(lease / 3));
        const q: Record<string, string | number> = lease > 0 ? { wait, subscriber: this.#subscriber, lease } : { wait: 20_000 };
        const r = await this.#feedHttp.get<ChangesResponse>(`${MASTER_API}/changes`, { epoch: cache.epoch || '-', since: cache.applied, ...q });
        if (typeof r.heldMs === 'number' && Number.isFinite(r.heldMs)) overheadMs = Math.max(0, performance.now() - sent - r.heldMs, overheadMs * 0.8);
        cache.apply(r);
        // As long as the master granted (never longer than asked); a master that grants none gives none.
        this.#granted = lease > 0 && r.leaseMs ? Math.min(lease, r.leaseMs) : 0;
        this.#setLease(this.#granted > 0 ? sent + this.#granted : 0);
      } catch {
        this.#setLease(0);
        cache.lost();
        if (signal.aborted) return;
        await sleep(500, undefined, { signal, ref: false }).catch(() => undefined);
      }
    }
  }

  /**
   * A request that may change the namespace: the cache waits for the feed to show
   * it. `store` keeps the answer (the attributes after the change) in the cache.
   */
  async #post<T>(path: string, body: unknown, names: ChangedNames, store?: (answer: T, stamp: ChangeStamp | undefined) => void, opts?: CallOptions): Promise<T> {
    if (!this.cache) return this.#http.post<T>(path, body, undefined, undefined, opts);
    // Before it is sent: from then on the change may have happened.
    if (names === 'unknown') this.cache.changingUnknownNames();
    else this.cache.changingNames(names);
    const meta: ResponseMeta = {};
    try {
      const answer = await this.#http.post<T & DirsAfterChange>(path, body, undefined, meta, opts);
      const stamp = stampOf(meta);
      if (answer && typeof answer === 'object' && 'dirs' in answer) {
        for (const d of answer.dirs ?? []) this.cache.putAttrsAsOf(d.attrs, stamp, d.seq);
        delete answer.dirs;
      }
      store?.(answer, stamp);
      return answer;
    } finally {
      this.cache.sawChange(stampOf(meta));
    }
  }

  /** Keeps the new entry a create-like answer describes. */
  #entry(parent: number, name: string) {
    return (a: FileAttributes, s: ChangeStamp | undefined) => this.cache?.putEntry(parent, name, a, s, true);
  }

  #attrs = (a: FileAttributes, s: ChangeStamp | undefined) => this.cache?.putAttrs(a, s, true);

  readonly #leaseListeners = new Set<(msLeft: number) => void>();

  /**
   * Calls `l` with how many ms the change-feed lease still runs (0: none) whenever it is renewed or
   * lost. While it runs, every change another client finished has been applied here (master/feed-leases.ts).
   */
  onLease(l: (msLeft: number) => void): () => void {
    this.#leaseListeners.add(l);
    return () => void this.#leaseListeners.delete(l);
  }

  #setLease(until: number): void {
    this.#leaseUntil = until;
    const left = Math.max(0, until - performance.now());
    for (const l of this.#leaseListeners) l(left);
  }

  /** Whether the change-feed lease runs: every change another client finished has been applied here. */
  leaseRuns(): boolean {
    return this.#leaseMs > 0 && performance.now() < this.#leaseUntil;
  }

  get url(): string {
    return this.#http.baseUrl;
  }

  stat(path: string): Promise<FileAttributes> {
    return this.#http.get(`${MASTER_API}/stat`, { path });
  }

  async lookup(parent: number, name: string): Promise<FileAttributes> {
    const cache = this.cache;
    if (!cache) return this.#http.get(`${MASTER_API}/lookup`, { parent, name });
    // Not cached, while the names after one looked up recently are read as a page: this one may be among them.
    const page = this.#pageReads.get(parent);
    if (page && name > page.after && cache.peekEntry(parent, name) === undefined) await page.read;
    const hit = cache.getEntry(parent, name);
    if (hit) {
      if (this.#nextPages.size > 0) this.#readAhead(cache, parent, name);
      if (!hit.attrs) throw new StrataError('NOT_FOUND', `no entry '${name}' in inode ${parent}`);
      return hit.attrs;
    }
    // Under the lease only: then every change another client finished has been applied here (master/feed-leases.ts).
    // A name too long for the master is its error to give (NAME_TOO_LONG), not ENOENT.
    if (Buffer.byteLength(name) <= 255 && this.leaseRuns() && cache.isAbsent(parent, name)) throw new StrataError('NOT_FOUND', `no entry '${name}' in inode ${parent}`);
    const meta: ResponseMeta = {};
    try {
      // A small file's blocks come along: the open the kernel sends next is then answered from the cache.
      const { fileBlocks, ...a } = await this.#http.get<LookupResponse>(`${MASTER_API}/lookup`, { parent, name, blocks: 'true' }, undefined, meta);
      cache.putEntry(parent, name, a, stampOf(meta));
      if (fileBlocks) cache.putBlocks({ attrs: a, ...fileBlocks }, stampOf(meta));
      // Past the time to live, a stat (or an open) of every file in a directory would ask the master once per
      // name. This lookup made the master re-check the directory with its store if it was due, so a page of the
      // names after this one, small files' blocks with them, is as current as the answer was; lookups in the
      // directory wait for it (not this one).
      this.#readPageAfter(cache, parent, name);
      return a;
    } catch (err) {
      if (err instanceof StrataError && err.code === 'NOT_FOUND') cache.putEntry(parent, name, null, stampOf(meta));
      throw err;
    }
  }

  /** Where files listed here (listPage by inode: the kernel's readdir) were listed, by inode. */
  readonly #listed = new LRUCache<number, { parent: number; name: string }>({ max: 20_000 });

  /** Page reads in flight (#readPageAfter), by directory, with the name they start after. */
  readonly #pageReads = new Map<number, { after: string; read: Promise<void> }>();
  /** Directories whose last page read could not be kept (freshForMs 0), and until when none is tried again. */
  readonly #pagesUseless = new Map<number, number>();

  /**
   * Per directory whose last page read was kept and has names after it: the name from which a
   * hit reads the next page ahead (#readAhead), and the name that page starts after.
   */
  readonly #nextPages = new Map<number, { from: string; after: string }>();

  /**
   * A stat (or open) of every file of a directory, in name order, that reached the middle of
   * the last page read there has the next page read now: by the time it gets there, its names
   * are cached, and neither that page's read nor the lookups that would have started it are waited for.
   */
  #readAhead(cache: MetadataCache, parent: number, name: string): void {
    const next = this.#nextPages.get(parent);
    // Only a name in the second half of that page: a hit elsewhere in the directory says nothing of the order.
    if (!next || name < next.from || name > next.after) return;
    if (this.#readPageAfter(cache, parent, next.after, true)) this.#nextPages.delete(parent);
  }

  /**
   * `ahead`: asked by #readAhead, which knows a page is wanted; else only when lookups found enough
   * entries run out (refreshDue). Whether a read started.
   */
  #readPageAfter(cache: MetadataCache, parent: number, name: string, ahead = false): boolean {
    if (this.#pageReads.has(parent) || (!ahead && !cache.refreshDue(parent))) return false;
    const askedAt = Date.now();
    if ((this.#pagesUseless.get(parent) ?? 0) > askedAt) return false;
    const meta: ResponseMeta = {};
    const read = this.#http
      // `sync`: re-checked with the store first if due (an open sends no lookup that would have).
      .get<ListResponse>(`${MASTER_API}/list`, { ino: parent, after: name, limit: LIST_PAGE_MAX, blocks: 'true', sync: 'true' }, undefined, meta)
      .then((r) => {
        // A directory the master does not re-list on lookups (its listing is too slow to repeat): its
        // pages stay unkept until something lists it, so the lookups in it go one by one meanwhile.
        if (r.freshForMs === 0 && r.entries.length > 0) {
          if (this.#pagesUseless.size >= 10_000) this.#pagesUseless.clear();
          this.#pagesUseless.set(parent, askedAt + USELESS_PAGE_BACKOFF_MS);
        }
        const kept = cache.putListed(parent, r.entries, stampOf(meta), r.seq, r.freshForMs, askedAt);
        if (kept > 0 && r.next !== undefined && r.entries.length > 1) {
          if (this.#nextPages.size >= 10_000) this.#nextPages.clear();
          this.#nextPages.set(parent, { from: r.entries[r.entries.length >> 1]!.name, after: r.next });
        }
      })
      // Only a shortcut: the lookups it would have answered ask the master themselves.
      .catch(() => undefined)
      .finally(() => this.#pageReads.delete(parent));
    this.#pageReads.set(parent, { after: name, read });
    return true;
  }

  async statIno(ino: number): Promise<FileAttributes> {
    const cache = this.cache;
    if (!cache) return this.#http.get(`${MASTER_API}/stat`, { ino });
    const hit = cache.getAttrs(ino);
    if (hit) return hit;
    const meta: ResponseMeta = {};
    const a = await this.#http.get<FileAttributes>(`${MASTER_API}/stat`, { ino }, undefined, meta);
    cache.putAttrs(a, stampOf(meta));
    return a;
  }

  /**
   * One page of a directory, past `after` (the last page's `next`; null: the first page, which
   * syncs the directory with its store). `next` null: no more pages (a master without pages sends
   * the whole directory at once). `asOf`: the change-feed seq the entries show every change up to,
   * when it is of the feed this mount's cache follows.
   */
  async listPage(dir: { ino: number } | { path: string }, after: string | null, limit = LIST_PAGE_MAX): Promise<{ entries: DirEntry[]; next: string | null; asOf?: number; freshForMs?: number }> {
    const meta: ResponseMeta = {};
    const r = await this.#http.get<ListResponse>(`${MASTER_API}/list`, { ...dir, limit, ...(after !== null && { after }) }, undefined, meta);
    const st = stampOf(meta);
    const asOf = st && r.seq !== undefined && this.cache?.follows(st) ? r.seq : undefined;
    if (this.cache && 'ino' in dir) for (const e of r.entries) if (e.type === 'file') this.#listed.set(e.ino, { parent: dir.ino, name: e.name });
    return { entries: r.entries, next: r.next ?? null, ...(asOf !== undefined && { asOf }), ...(typeof r.freshForMs === 'number' && { freshForMs: r.freshForMs }) };
  }

  mkdirAt(parent: number, name: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    const mark = this.cache?.unknownChanges ?? 0;
    return this.#post(`${MASTER_API}/mkdir`, { parent, name, mode, ...owner }, [[parent, name]], (a: FileAttributes, st) => {
      this.cache?.putEntry(parent, name, a, st, true);
      this.cache?.putNewDir(a.ino, st, mark);
    });
  }

  /**
   * `closeEmpty`: the file is created for a program that may close it unwritten; the master
   * records it as complete and empty at once where that needs no under-store call, and then
   * answers `committed` (see Namespace.create). `changeSeq`: the feed seq of the create's
   * own change, when it follows the cache's feed. `begin`: the master begins the file's
   * first write in the create's transaction and answers it (`begin`), as beginWrite would.
   */
  createAt(
    parent: number,
    name: string,
    mode: number,
    opts: { owner?: { uid: number; gid: number }; closeEmpty?: { writeType?: WriteType }; begin?: boolean; lookInStore?: boolean } = {},
  ): Promise<FileAttributes & { committed?: boolean; changeSeq?: number; begin?: WriteBeginResponse }> {
    const { owner, closeEmpty, begin, lookInStore } = opts;
    const body = {
      parent,
      name,
      mode,
      ...owner,
      ...(closeEmpty ? { closeEmpty: true, ...(closeEmpty.writeType ? { writeType: closeEmpty.writeType } : {}) } : {}),
      ...(begin ? { begin: true } : {}),
      ...(lookInStore ? { lookInStore: true } : {}),
    };
    return this.#post<FileAttributes & { committed?: boolean; changeSeq?: number; begin?: WriteBeginResponse }>(`${MASTER_API}/create`, body, [[parent, name]], (a, s) => {
      const { committed: _committed, begin: _begin, ...attrs } = a;
      this.cache?.putEntry(parent, name, attrs, s, true);
      if (s && this.cache && s.epoch === this.cache.epoch) a.changeSeq = s.end;
    });
  }

  linkAt(ino: number, newParent: number, newName: string): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/link`, { ino, newParent, newName }, [[newParent, newName]]);
  }

  symlinkAt(parent: number, name: string, target: string, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/symlink`, { parent, name, target, ...owner }, [[parent, name]], this.#entry(parent, name));
  }

  mknodAt(parent: number, name: string, type: string, mode: number, rdev: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/mknod`, { parent, name, type, mode, rdev, ...owner }, [[parent, name]]);
  }

  async setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    await this.#post(`${MASTER_API}/xattr/set`, { ino, name, value: value.toString('base64'), flags }, NO_NAMES);
  }

  async getXattr(ino: number, name: string): Promise<Buffer> {
    // Reads sent as POST: safe to send again after a broken connection.
    const r = await this.#http.post<{ value: string }>(`${MASTER_API}/xattr/get`, { ino, name }, undefined, undefined, { idempotent: true });
    return Buffer.from(r.value, 'base64');
  }

  async listXattrs(ino: number): Promise<string[]> {
    return (await this.#http.post<{ names: string[] }>(`${MASTER_API}/xattr/list`, { ino }, undefined, undefined, { idempotent: true })).names;
  }

  async removeXattr(ino: number, name: string): Promise<void> {
    await this.#post(`${MASTER_API}/xattr/remove`, { ino, name }, NO_NAMES);
  }

  async unlinkAt(parent: number, name: string): Promise<void> {
    await this.#post(`${MASTER_API}/unlink`, { parent, name }, [[parent, name]]);
  }

  async rmdirAt(parent: number, name: string): Promise<void> {
    await this.#post(`${MASTER_API}/rmdir`, { parent, name }, [[parent, name]]);
  }

  async renameAt(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    await this.#post(`${MASTER_API}/rename`, { parent, name, newParent, newName, flags }, [
      [parent, name],
      [newParent, newName],
    ]);
  }

  setAttributesIno(ino: number, req: Omit<SetAttrRequest, 'path'>): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/setattr`, { ino, ...req }, NO_NAMES, this.#attrs);
  }

  /**
   * A whole directory, asked for page by page: each page is a request of its own, so a failure
   * midway is an error, not a cut answer, and the master serves others between pages.
   */
  async list(path: string): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    for (let after: string | null = null; ; ) {
      const page = await this.listPage({ path }, after);
      for (const e of page.entries) entries.push(e);
      if (page.next === null) return entries;
      after = page.next;
    }
  }

  mkdir(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/mkdir`, { path, mode, ...owner }, 'unknown');
  }

  create(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/create`, { path, mode, ...owner }, 'unknown');
  }

  async unlink(path: string): Promise<void> {
    await this.#post(`${MASTER_API}/unlink`, { path }, 'unknown');
  }

  async rmdir(path: string): Promise<void> {
    await this.#post(`${MASTER_API}/rmdir`, { path }, 'unknown');
  }

  async rename(src: string, dst: string): Promise<void> {
    await this.#post(`${MASTER_API}/rename`, { src, dst }, 'unknown');
  }

  setAttributes(req: SetAttrRequest): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/setattr`, req, NO_NAMES);
  }

  /** A file's blocks and cache state; with `allowDirectory`, a directory answers too (no blocks). */
  fileBlocks(path: string, opts: { allowDirectory?: boolean } = {}): Promise<FileBlocksResponse> {
    return this.#http.get(`${MASTER_API}/blocks`, opts.allowDirectory ? { path, allowDirectory: 'true' } : { path });
  }

  /**
   * The blocks of a file being opened. Close-to-open: from the master, unless the
   * feed lease runs, in which case every close that returned before now has reached
   * the cache already and a cached answer is current.
   */
  async fileBlocksForOpen(ino: number): Promise<FileBlocksResponse> {
    const cache = this.leaseRuns() ? this.cache : undefined;
    if (!cache) return this.fileBlocksByIno(ino, true);
    const hit = cache.getBlocks(ino, true);
    if (hit) {
      if (this.#nextPages.size > 0) {
        const listed = this.#listed.get(ino);
        if (listed) this.#readAhead(cache, listed.parent, listed.name);
      }
      return hit;
    }
    // Opened by a name the kernel took from a listing (READDIRPLUS), with no lookup first: like a
    // lookup, a miss here counts toward reading the page of names after it (#readPageAfter).
    let listed = this.#listed.get(ino);
    // Renamed or unlinked since it was listed: the name now names something else (or nothing).
    const now = listed && cache.peekEntry(listed.parent, listed.name);
    if (now !== undefined && now !== ino) {
      this.#listed.delete(ino);
      listed = undefined;
    }
    const page = listed && this.#pageReads.get(listed.parent);
    if (page && listed!.name > page.after) {
      await page.read;
      const got = cache.getBlocks(ino, true);
      if (got) return got;
    }
    const info = await this.fileBlocksByIno(ino, true);
    // Only a file whose blocks a page brings (a lookup's too: LOOKUP_BLOCKS_MAX) makes one worth reading.
    if (listed && info.blocks.length <= LOOKUP_BLOCKS_MAX) {
      cache.noteMissIn(listed.parent);
      this.#readPageAfter(cache, listed.parent, listed.name);
    }
    return info;
  }

  /** `fresh`: ask the master even when cached (a reader whose worker failed wants current locations). */
  async fileBlocksByIno(ino: number, fresh = false): Promise<FileBlocksResponse> {
    const cache = this.cache;
    if (!cache) return this.#http.get(`${MASTER_API}/blocks`, { ino });
    const hit = fresh ? undefined : cache.getBlocks(ino);
    if (hit) return hit;
    const meta: ResponseMeta = {};
    const info = await this.#http.get<FileBlocksResponse>(`${MASTER_API}/blocks`, { ino }, undefined, meta);
    cache.putBlocks(info, stampOf(meta));
    return info;
  }

  beginWrite(ino: number): Promise<WriteBeginResponse> {
    return this.#post(`${MASTER_API}/write/begin`, { ino }, NO_NAMES);
  }

  /** Gives up a write begun with beginWrite that will not be committed. */
  async abandonWrite(ino: number, containerId: number): Promise<void> {
    await this.#post(`${MASTER_API}/write/abandon`, { ino, containerId }, NO_NAMES);
  }

  /** Closes a file written empty: one request, no worker (see Namespace.commitEmpty). */
  commitEmpty(ino: number, writeType?: WriteType, mtime?: Timespec): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/write/empty`, { ino, ...(writeType ? { writeType } : {}), ...(mtime ? { mtime } : {}) }, NO_NAMES, this.#attrs);
  }

  commitWrite(req: WriteCommitRequest): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/write/commit`, req, NO_NAMES, this.#attrs);
  }

  mounts(): Promise<MountInfo[]> {
    return this.#http.get(`${MASTER_API}/mounts`);
  }

  mount(path: string, uri: string, options: Record<string, string>, readOnly: boolean): Promise<MountInfo> {
    return this.#post(`${MASTER_API}/mount`, { path, uri, options, readOnly }, 'unknown');
  }

  async unmount(path: string): Promise<void> {
    await this.#post(`${MASTER_API}/unmount`, { path }, 'unknown');
  }

  /**
   * Persists a file now; resolves with its attributes once its bytes are in the under-store. The master
   * answers only then, so the call may take as long as the upload (a GiB to S3 at 50 MB/s: 20 s); the
   * store's own bounds (retries, request timeouts) end a stalled one first.
   */
  persist(path: string): Promise<FileAttributes> {
    return this.#post(`${MASTER_API}/persist`, { path }, NO_NAMES, undefined, { timeoutMs: PERSIST_TIMEOUT_MS });
  }

  async sync(path: string): Promise<void> {
    await this.#post(`${MASTER_API}/sync`, { path }, 'unknown');
  }

  workers(): Promise<WorkerInfo[]> {
    return this.#http.get(`${MASTER_API}/workers`);
  }

  /** Pins or unpins a file; a directory needs `recursive` and then covers everything below it. */
  pin(path: string, pinned: boolean, recursive = false): Promise<{ path: string; pinned: boolean; files: number }> {
    return this.#post(`${MASTER_API}/pin`, { path, pinned, recursive }, NO_NAMES);
  }

  /** Sets a time to live (ms from now) and what happens then, or clears it with `null`. */
  setTtl(path: string, ttlMs: number | null, action: TtlAction = 'free'): Promise<{ path: string; ttl: FileBlocksResponse['ttl'] }> {
    return this.#post(`${MASTER_API}/ttl`, { path, ttlMs, action }, NO_NAMES);
  }

  /** Drops cached copies of persisted files; a directory needs `recursive`. */
  free(path: string, recursive = false): Promise<FreeResponse> {
    return this.#post(`${MASTER_API}/free`, { path, recursive }, NO_NAMES);
  }

  /** Size and cached bytes of a file or subtree. */
  du(path: string): Promise<DuResponse> {
    return this.#http.get(`${MASTER_API}/du`, { path });
  }

  async close(): Promise<void> {
    this.#stopFeed.abort();
    await this.#feed;
    await this.#feedHttp.close();
    return this.#http.close();
  }
}
