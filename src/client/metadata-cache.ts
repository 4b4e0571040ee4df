/**
 * A mount's cache of master answers (lookups, attributes, block lists), kept
 * exact by the master's change feed (see master/change-feed.ts) instead of by
 * timeouts: the client long-polls the inodes that changed and drops them.
 *
 * The rules that make it safe:
 * - An answer is stored only when the request started after every change this
 *   cache has applied (`applied <= start`): it reflects all of them, and every
 *   later change will still arrive and drop it.
 * - After this mount changes something, the cache answers only from entries at
 *   least as new as that change until the feed has applied it (`applied >=
 *   barrier`), so it never answers from before its own write. The answer to the change itself is stored as of
 *   the seq after it (the master reads it in the same step as it writes), so the
 *   feed's report of that very change does not drop it again.
 * - Every cached answer carries the seq it is valid as of; a change drops it
 *   only when it is newer.
 * - A feed error, a restarted master (new epoch) or a reset drops everything;
 *   until the feed answers again every call goes to the master.
 * The kernel keeps its own cache on top of this; the FUSE adapter follows the
 * feed too (`subscribe`), so the kernel's copy can be kept exact the same way.
 *
 * Directories this mount made are known whole (`#dirs`): empty when made, every
 * name changed in them since (here or, through the feed, anywhere) is noted, so
 * a name never noted does not exist. That answers the kernel's lookup before
 * each create (it always asks first) without a request. Own changes are noted
 * when sent, so unlike the entries above this needs no barrier. The master marks
 * a directory whose names may change without a name change (a store mounted on
 * it, a listing to be read again) with the empty name, which drops it here.
 */

import { LRUCache } from 'lru-cache';
import type { ChangesResponse, DirEntry, FileAttributes, FileBlocksResponse } from '../common/protocol';

/** What a master answer's `strata-changes` header says. */
export interface ChangeStamp {
  epoch: string;
  start: number;
  end: number;
}

export function parseChangeStamp(v: string | string[] | undefined): ChangeStamp | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const [epoch, start, end] = s.split(':');
  const a = Number(start);
  const b = Number(end);
  return epoch && Number.isSafeInteger(a) && Number.isSafeInteger(b) ? { epoch, start: a, end: b } : undefined;
}

const MAX_ENTRIES = 200_000;
/**
 * Lookups of names whose cached entry had run out of time, per directory, before this mount
 * reads the names after one from a listing page instead (MasterClient.lookup). A few, so a
 * lone stat now and then costs one lookup and no page.
 */
export const EXPIRED_LOOKUPS_PER_PAGE = 8;
/** Names noted in all known-whole directories together; past it, the directory noting one more is let go (~15 MB). */
const MAX_DIR_NAMES = 200_000;

/** Told of what the feed applied, so copies kept elsewhere (the kernel's) can follow. */
export interface FeedListener {
  /** A batch of changes was applied; what the cache still holds is current as of it. */
  changed(r: ChangesResponse): void;
  /** Everything was dropped (a reset, a new master, a lost feed): trust no copy. */
  reset(): void;
}

export class MetadataCache {
  #epoch = '';
  #applied = 0;
  #barrier = 0;
  #healthy = false;
  /** From the feed: how long an answer may be kept (ms; -1 = no limit, 0 = not at all). */
  #ttlMs = 0;
  /** `${parent}/${name}` → the inode it names, or null for a name that does not exist; `v`: valid as of this seq. */
  readonly #entries = new LRUCache<string, { ino: number | null; v: number; exp: number }>({ max: MAX_ENTRIES });
  readonly #attrs = new LRUCache<number, { attrs: FileAttributes; v: number; exp: number }>({ max: MAX_ENTRIES });
  readonly #blocks = new LRUCache<number, { info: FileBlocksResponse; v: number; exp: number; locationsStale?: boolean }>({ max: 20_000 });
  /** Directories known whole: empty as of seq `v`, plus `names`, every name changed in them since (existing or not). */
  readonly #dirs = new LRUCache<number, { names: Set<string>; v: number; exp: number }>({ max: 10_000, dispose: (d) => (this.#dirNames -= d.names.size) });
  #dirNames = 0;
  /**
   * Per directory, since its last page read (refreshDue): lookups that found the name's entry run out
   * of time, and opens of files listed there whose blocks were not here (noteMissIn).
   */
  readonly #expiredLookups = new Map<number, number>();
  /** Whether the master marks directories whose names change without a name changing (ChangesResponse.listingMarks). */
  #listingMarks = false;
  /** Bumped by every request naming paths: a mkdir answered after one cannot know what it changed. */
  #unknownChanges = 0;
  readonly stats = { hits: 0, misses: 0, invalidations: 0, resets: 0 };
  readonly #listeners = new Set<FeedListener>();

  /** Follows the feed; returns the unsubscribe function. */
  subscribe(l: FeedListener): () => void {
    this.#listeners.add(l);
    return () => void this.#listeners.delete(l);
  }

  get epoch(): string {
    return this.#epoch;
  }

  get applied(): number {
    return this.#applied;
  }

  /** How long an answer may be kept (ms; -1 = no limit, 0 = not at all): the feed's ttlMs. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Is an answer with this stamp from the feed this cache follows (and is it following it)? */
  follows(s: ChangeStamp): boolean {
    return this.#healthy && s.epoch === this.#epoch;
  }

  /** May answers be served from here right now? */
  usable(): boolean {
    return this.#healthy && this.#applied >= this.#barrier;
  }

  /**
   * May this answer, valid as of seq `v`, be served? Before the feed has caught up
   * with this mount's last change, only answers at least as new as that change
   * are: typically the answer to the change itself (a getattr right after create).
   */
  #servable(v: number): boolean {
    return this.#healthy && (this.#applied >= this.#barrier || v >= this.#barrier);
  }

  /** The seq an answer is valid as of, or undefined when it must not be stored. `own`: the answer to this mount's change. */
  #version(s: ChangeStamp | undefined, own: boolean): number | undefined {
    if (s === undefined || !this.#healthy || s.epoch !== this.#epoch || this.#ttlMs === 0) return undefined;
    // The feed may have applied later changes before this answer came in: they could not drop it.
    if (own) return this.#applied <= s.end ? s.end : undefined;
    return this.#applied <= s.start ? s.start : undefined;
  }

  #exp(): number {
    return this.#ttlMs < 0 ? Infinity : Date.now() + this.#ttlMs;
  }

  /** An entry still within its time to live (expired ones are dropped). */
  #fresh<K extends string | number, V extends { exp: number }>(c: LRUCache<K, V>, k: K): V | undefined {
    const e = c.get(k);
    if (e && e.exp <= Date.now()) {
      c.delete(k);
      return undefined;
    }
    return e;
  }

  /** Any answer to a request that may have changed something. */
  sawChange(s: ChangeStamp | undefined): void {
    if (!s || s.epoch !== this.#epoch) {
      // Another master (restart): the feed will reset; until then nothing is trusted.
      this.#healthy = false;
      return;
    }
    if (s.end > this.#barrier) this.#barrier = s.end;
  }

  /** A lookup's answer: attributes, null for "no such name", undefined when not cached. */
  getEntry(parent: number, name: string): { attrs: FileAttributes | null } | undefined {
    if (!this.#healthy) return undefined;
    const key = `${parent}/${name}`;
    const had = this.#entries.peek(key);
    const e = this.#fresh(this.#entries, key);
    const a = e && e.ino !== null ? this.#fresh(this.#attrs, e.ino) : undefined;
    if (!e || (e.ino !== null && !a) || !this.#servable(Math.min(e.v, a?.v ?? Infinity))) {
      this.stats.misses++;
      if (had && !e) this.#noteExpired(parent);
      return undefined;
    }
    this.stats.hits++;
    return { attrs: a ? { ...a.attrs } : null };
  }

  /**
   * What the cache vouches for right now, without counting a hit or miss: the inode
   * `name` names (null: no such name), or undefined when it holds nothing it may serve.
   */
  peekEntry(parent: number, name: string): number | null | undefined {
    if (!this.#healthy) return undefined;
    const e = this.#entries.peek(`${parent}/${name}`);
    return e && e.exp > Date.now() && this.#servable(e.v) ? e.ino : undefined;
  }

  /** The feed seq the cached attributes of `ino` are valid as of, when they may be served. */
  attrsAsOf(ino: number): number | undefined {
    if (!this.#healthy) return undefined;
    const a = this.#attrs.peek(ino);
    return a && a.exp > Date.now() && this.#servable(a.v) ? a.v : undefined;
  }

  /** The attributes the cache vouches for right now (as peekEntry). */
  peekAttrs(ino: number): FileAttributes | undefined {
    if (!this.#healthy) return undefined;
    const a = this.#attrs.peek(ino);
    return a && a.exp > Date.now() && this.#servable(a.v) ? a.attrs : undefined;
  }

  /**
   * How much longer (ms) the cache may vouch for the name and the attributes of its
   * inode: their time to live, after which the master re-checks the under-store.
   */
  vouchesFor(ino: number, parent?: number, name?: string): number {
    const a = this.#attrs.peek(ino);
    let exp = a ? a.exp : 0;
    if (parent !== undefined && name !== undefined) exp = Math.min(exp, this.#entries.peek(`${parent}/${name}`)?.exp ?? 0);
    return Math.max(0, exp - Date.now());
  }

  putEntry(parent: number, name: string, attrs: FileAttributes | null, s: ChangeStamp | undefined, own = false): void {
    const v = this.#version(s, own);
    if (v === undefined) return;
    const key = `${parent}/${name}`;
    this.#entries.set(key, { ino: attrs ? attrs.ino : null, v, exp: this.#exp() });
    if (attrs) this.#attrs.set(attrs.ino, { attrs: { ...attrs }, v, exp: this.#exp() });
  }

  #noteExpired(parent: number): void {
    if (this.#expiredLookups.size >= 10_000) this.#expiredLookups.clear();
    this.#expiredLookups.set(parent, (this.#expiredLookups.get(parent) ?? 0) + 1);
  }

  /** A file listed in `parent` was opened without a lookup and its blocks were not here: counts as an expired lookup (refreshDue). */
  noteMissIn(parent: number): void {
    this.#noteExpired(parent);
  }

  /**
   * Whether enough lookups in `parent` found their entry run out of time that the names around
   * them are worth reading as a page (putListed); counting starts again when it says so.
   * Entries run out together (an interval after they were cached), so one such lookup is
   * usually followed by many more in the same directory: a stat of every file, a training epoch.
   */
  refreshDue(parent: number): boolean {
    if ((this.#expiredLookups.get(parent) ?? 0) < EXPIRED_LOOKUPS_PER_PAGE) return false;
    this.#expiredLookups.delete(parent);
    return true;
  }

  /**
   * Entries of one listing page of `parent`, asked for at `askedAt` (Date.now()) and read as of
   * feed seq `seq` (ListResponse.seq) in an answer stamped `s`. The master answers that listing
   * without asking its store for `freshForMs` more (-1: never asks; 0: asks every time, and then
   * nothing is kept), so they are kept no longer than that, small files' blocks (DirEntry.fileBlocks)
   * too. Newer cached answers win. Returns how many were kept.
   */
  putListed(parent: number, entries: readonly DirEntry[], s: ChangeStamp | undefined, seq: number | undefined, freshForMs: number | undefined, askedAt: number): number {
    if (s === undefined || seq === undefined || freshForMs === undefined || freshForMs === 0) return 0;
    if (!this.#healthy || s.epoch !== this.#epoch || this.#ttlMs === 0 || !Number.isSafeInteger(seq) || this.#applied > seq) return 0;
    const ttl = this.#ttlMs < 0 ? Infinity : this.#ttlMs;
    const exp = askedAt + (freshForMs < 0 ? ttl : Math.min(ttl, freshForMs));
    let kept = 0;
    for (const e of entries) {
      const key = `${parent}/${e.name}`;
      if ((this.#entries.peek(key)?.v ?? -1) > seq || (this.#attrs.peek(e.ino)?.v ?? -1) > seq) continue;
      const { name: _name, xattrs: _xattrs, fileBlocks, ...attrs } = e;
      this.#entries.set(key, { ino: e.ino, v: seq, exp });
      this.#attrs.set(e.ino, { attrs, v: seq, exp });
      if (fileBlocks && (this.#blocks.peek(e.ino)?.v ?? -1) <= seq) this.#blocks.set(e.ino, { info: { ...fileBlocks, attrs: { ...attrs } }, v: seq, exp });
      kept++;
    }
    return kept;
  }

  /** A mark taken before sending a mkdir, for putNewDir. */
  get unknownChanges(): number {
    return this.#unknownChanges;
  }

  /**
   * This mount made directory `ino` (the mkdir's answer): it is empty as of that change.
   * `mark`: unknownChanges when the mkdir was sent; a path-based request since may have changed names in it.
   */
  putNewDir(ino: number, s: ChangeStamp | undefined, mark: number): void {
    const v = this.#version(s, true);
    if (v !== undefined && mark === this.#unknownChanges && this.#listingMarks) this.#dirs.set(ino, { names: new Set(), v, exp: this.#exp() });
  }

  /** Names this mount is changing (sent, whatever the answer): no longer known absent. */
  changingNames(names: readonly (readonly [dir: number, name: string])[]): void {
    for (const [dir, name] of names) this.#noteName(dir, name);
  }

  /** This mount changed names it cannot tell (a path-based request): no directory is known whole any more. */
  changingUnknownNames(): void {
    this.#unknownChanges++;
    this.#dirs.clear();
  }

  #noteName(dir: number, name: string): void {
    const d = this.#dirs.peek(dir);
    if (!d || d.names.has(name)) return;
    if (name === '' || this.#dirNames >= MAX_DIR_NAMES) {
      this.#dirs.delete(dir);
    } else {
      d.names.add(name);
      this.#dirNames++;
    }
  }

  /** True when `name` is known not to exist in `dir` (a directory this mount made, followed since). */
  isAbsent(dir: number, name: string): boolean {
    if (!this.#healthy || !this.#listingMarks) return false;
    const d = this.#fresh(this.#dirs, dir);
    if (!d || d.names.has(name)) return false;
    this.stats.hits++;
    return true;
  }

  getAttrs(ino: number): FileAttributes | undefined {
    if (!this.#healthy) return undefined;
    let a = this.#fresh(this.#attrs, ino);
    if (a && !this.#servable(a.v)) a = undefined;
    if (a) this.stats.hits++;
    else this.stats.misses++;
    return a && { ...a.attrs };
  }

  putAttrs(attrs: FileAttributes, s: ChangeStamp | undefined, own = false): void {
    const v = this.#version(s, own);
    if (v !== undefined) this.#attrs.set(attrs.ino, { attrs: { ...attrs }, v, exp: this.#exp() });
  }

  /**
   * Attributes a change's answer reports as of `seq` (≤ the answer's end): the
   * directories it changed (DirAfterChange). Kept unless the cache has newer ones.
   */
  putAttrsAsOf(attrs: FileAttributes, s: ChangeStamp | undefined, seq: number): void {
    const end = this.#version(s, true);
    if (end === undefined || !Number.isSafeInteger(seq) || seq > end || this.#applied > seq) return;
    if ((this.#attrs.peek(attrs.ino)?.v ?? -1) > seq) return;
    this.#attrs.set(attrs.ino, { attrs: { ...attrs }, v: seq, exp: this.#exp() });
  }

  /**
   * A file's blocks. `forOpen`: also when only where they are cached changed since
   * (the block list, size and times are current; the locations are hints, and a
   * reader routed by old ones still gets the right bytes, through another worker).
   */
  getBlocks(ino: number, forOpen = false): FileBlocksResponse | undefined {
    if (!this.#healthy) return undefined;
    let b = this.#fresh(this.#blocks, ino);
    if (b && (!this.#servable(b.v) || (b.locationsStale && !forOpen))) b = undefined;
    if (b) this.stats.hits++;
    else this.stats.misses++;
    return b && { ...b.info, attrs: { ...b.info.attrs } };
  }

  putBlocks(info: FileBlocksResponse, s: ChangeStamp | undefined): void {
    const v = this.#version(s, false);
    if (v === undefined) return;
    this.#blocks.set(info.attrs.ino, { info: { ...info, attrs: { ...info.attrs } }, v, exp: this.#exp() });
    this.#attrs.set(info.attrs.ino, { attrs: { ...info.attrs }, v, exp: this.#exp() });
  }

  /** Applies one answer of the feed. */
  apply(r: ChangesResponse): void {
    if (r.ttlMs !== undefined && r.ttlMs !== this.#ttlMs) {
      // Shorter now (a mount with a shorter sync interval): what is cached may be kept too long.
      if (r.ttlMs >= 0 && (this.#ttlMs < 0 || r.ttlMs < this.#ttlMs)) this.clear();
      this.#ttlMs = r.ttlMs;
    }
    if (r.reset || r.epoch !== this.#epoch) {
      this.clear();
      this.stats.resets++;
      this.#epoch = r.epoch;
      this.#applied = r.seq;
      this.#barrier = 0;
      this.#healthy = true;
      this.#listingMarks = r.listingMarks === true;
      return;
    }
    // The same epoch picks up where the feed stopped (nothing missed): trusted again after a lost feed.
    this.#healthy = true;
    this.#listingMarks = r.listingMarks === true;
    if (!this.#listingMarks) this.#dirs.clear();
    r.inos.forEach((ino, i) => {
      const seq = r.seqs[i] ?? r.seq;
      if ((this.#attrs.peek(ino)?.v ?? -1) < seq) this.#attrs.delete(ino);
      if ((this.#blocks.peek(ino)?.v ?? -1) < seq) this.#blocks.delete(ino);
    });
    for (const [ino, seq] of r.located ?? []) {
      const b = this.#blocks.peek(ino);
      if (b && b.v < seq) b.locationsStale = true;
    }
    for (const [dir, name, seq] of r.names) {
      const k = `${dir}/${name}`;
      if ((this.#entries.peek(k)?.v ?? Infinity) < seq) this.#entries.delete(k);
      if ((this.#dirs.peek(dir)?.v ?? Infinity) < seq) this.#noteName(dir, name);
    }
    this.stats.invalidations += r.inos.length + r.names.length;
    this.#applied = Math.max(this.#applied, r.seq);
    for (const l of this.#listeners) l.changed(r);
  }

  /** The feed failed: trust nothing until it answers again. */
  lost(): void {
    this.#healthy = false;
    this.clear();
  }

  clear(): void {
    this.#expiredLookups.clear();
    this.#entries.clear();
    this.#attrs.clear();
    this.#blocks.clear();
    this.#dirs.clear();
    for (const l of this.#listeners) l.reset();
  }
}
