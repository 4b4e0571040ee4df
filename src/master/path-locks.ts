/**
 * Locks on subtrees of the namespace, for the changes that act in an under-store and then
 * in the table (unlink, rename, mkdir, a write-through's commit…). Such a change must not
 * interleave with another one on the same names, or on a directory above them (a rename or
 * rmdir of it): store and table would then disagree. Two changes whose paths are disjoint
 * (neither is a prefix of the other) run at the same time, so a slow store call holds up
 * only the changes under the same names, not the whole cluster's.
 *
 * Fair: a change waits only for the conflicting changes that asked before it, so none
 * starves and conflicting changes run in the order they came in (as a FIFO mutex would
 * run them). Waits only ever point at earlier requests, so there is no deadlock.
 */

/** The paths (as their parts) a change takes, or the whole namespace. */
export type LockScope = readonly (readonly string[])[] | 'all';

interface Request {
  readonly scope: LockScope;
  readonly done: Promise<void>;
}

export class PathLocks {
  /** Running and waiting requests, in the order they asked (a Set iterates in insertion order). */
  readonly #requests = new Set<Request>();

  /** Runs `fn` once no earlier request whose scope overlaps `scope` is running or waiting. */
  async run<T>(scope: LockScope, fn: () => Promise<T>): Promise<T> {
    const before: Promise<void>[] = [];
    for (const r of this.#requests) if (overlaps(r.scope, scope)) before.push(r.done);
    let release!: () => void;
    const request: Request = { scope, done: new Promise<void>((resolve) => (release = resolve)) };
    this.#requests.add(request);
    try {
      // `done` promises only ever resolve.
      if (before.length > 0) await Promise.all(before);
      return await fn();
    } finally {
      this.#requests.delete(request);
      release();
    }
  }

  /** Requests running or waiting (for metrics and tests). */
  get size(): number {
    return this.#requests.size;
  }
}

/** Whether two scopes share a path: one path of one is the other's or a directory above it. */
export function overlaps(a: LockScope, b: LockScope): boolean {
  if (a === 'all' || b === 'all') return true;
  for (const p of a) for (const q of b) if (isPrefix(p, q) || isPrefix(q, p)) return true;
  return false;
}

function isPrefix(p: readonly string[], q: readonly string[]): boolean {
  if (p.length > q.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) return false;
  return true;
}
