/**
 * Which cached page a full tier gives up first. One small interface, one class per
 * policy; a tier keeps one instance over its pages. Candidates are offered best
 * victim first; the page store skips the ones it may not drop (pinned, moving).
 */

import { StrataError } from '../common/errors';

export interface EvictionOrder<T> {
  /** A page arrived in the tier (written, filled, or moved in). */
  add(key: string, item: T): void;
  /** A page was read. */
  touch(key: string): void;
  delete(key: string): boolean;
  /** Pages, best victim first. */
  candidates(): Iterable<T>;
  readonly size: number;
}

/** Least recently used first (the default): a Map's insertion order, re-inserted on access. */
export class LruOrder<T> implements EvictionOrder<T> {
  readonly #m = new Map<string, T>();
  add(key: string, item: T): void {
    this.#m.delete(key);
    this.#m.set(key, item);
  }
  touch(key: string): void {
    const v = this.#m.get(key);
    if (v === undefined) return;
    this.#m.delete(key);
    this.#m.set(key, v);
  }
  delete(key: string): boolean {
    return this.#m.delete(key);
  }
  candidates(): Iterable<T> {
    return this.#m.values();
  }
  get size(): number {
    return this.#m.size;
  }
}

/** First in, first out: reads do not keep a page; good for scans that should not flush hot data by touching it. */
export class FifoOrder<T> extends LruOrder<T> {
  override touch(): void {}
}

/**
 * Least frequently used first, ties by age: a page read many times outlives a scan.
 * Counts are halved every `decayEvery` accesses so old popularity fades.
 */
export class LfuOrder<T> implements EvictionOrder<T> {
  readonly #m = new Map<string, { item: T; hits: number }>();
  #accesses = 0;
  constructor(readonly decayEvery = 100_000) {}
  add(key: string, item: T): void {
    this.#m.delete(key);
    this.#m.set(key, { item, hits: 1 });
  }
  touch(key: string): void {
    const e = this.#m.get(key);
    if (!e) return;
    e.hits++;
    if (++this.#accesses >= this.decayEvery) {
      this.#accesses = 0;
      for (const v of this.#m.values()) v.hits = Math.max(1, v.hits >> 1);
    }
  }
  delete(key: string): boolean {
    return this.#m.delete(key);
  }
  *candidates(): Iterable<T> {
    // Sorting on demand: eviction is rare next to reads, and tiers hold thousands of pages, not millions.
    const all = [...this.#m.values()];
    all.sort((a, b) => a.hits - b.hits);
    for (const e of all) yield e.item;
  }
  get size(): number {
    return this.#m.size;
  }
}

export type EvictionPolicy = 'LRU' | 'FIFO' | 'LFU';
export const EVICTION_POLICIES: readonly EvictionPolicy[] = ['LRU', 'FIFO', 'LFU'];

export function createEvictionOrder<T>(policy: string): EvictionOrder<T> {
  switch (policy.toUpperCase()) {
    case 'LRU':
      return new LruOrder<T>();
    case 'FIFO':
      return new FifoOrder<T>();
    case 'LFU':
      return new LfuOrder<T>();
    default:
      throw new StrataError('CONFIG', `eviction policy must be one of ${EVICTION_POLICIES.join(', ')}, got '${policy}'`);
  }
}
