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
  prev: Request | null;
  next: Request | null;
}

export class PathLocks {
  /** The newest of the running and waiting requests, linked to older ones (a request leaves from anywhere in the list). */
  #newest: Request | null = null;
  #size = 0;
  #waits = 0;

  /** Runs `fn` once no earlier request whose scope overlaps `scope` is running or waiting. */
  async run<T>(scope: LockScope, fn: () => Promise<T>): Promise<T> {
    // Newest first. Per path of this scope, down to the newest earlier request holding that path or a
    // directory above it: that one already waits for every older request overlapping the path, so those
    // need no wait of their own. Requests piling up on one path (or on the whole namespace), or sharing
    // one path among others (links to one file), then wait for one request each, not for all before them.
    const before: Promise<void>[] = [];
    const open = new Set(pathsOf(scope));
    for (let r = this.#newest; r && open.size > 0; r = r.prev) {
      const held = pathsOf(r.scope);
      let meets = false;
      for (const q of open) if (held.some((p) => isPrefix(p, q) || isPrefix(q, p))) meets = true;
      if (!meets) continue;
      before.push(r.done);
      for (const q of open) if (held.some((p) => isPrefix(p, q))) open.delete(q);
    }
    this.#waits += before.length;
    let release!: () => void;
    const request: Request = { scope, done: new Promise<void>((resolve) => (release = resolve)), prev: this.#newest, next: null };
    if (this.#newest) this.#newest.next = request;
    this.#newest = request;
    this.#size++;
    try {
      // `done` promises only ever resolve.
      if (before.length === 1) await before[0];
      else if (before.length > 1) await Promise.all(before);
      return await fn();
    } finally {
      if (request.prev) request.prev.next = request.next;
      if (request.next) request.next.prev = request.prev;
      else this.#newest = request.prev;
      this.#size--;
      release();
    }
  }

  /** Requests running or waiting (for metrics and tests). */
  get size(): number {
    return this.#size;
  }

  /** Earlier requests waited for, over all requests so far (for tests: it grows linearly, not quadratically). */
  get waits(): number {
    return this.#waits;
  }
}

/** Whether two scopes share a path: one path of one is the other's or a directory above it. */
export function overlaps(a: LockScope, b: LockScope): boolean {
  if (a === 'all' || b === 'all') return true;
  for (const p of a) for (const q of b) if (isPrefix(p, q) || isPrefix(q, p)) return true;
  return false;
}

/**
 * Whether whatever overlaps `b` also overlaps `a`: every path of `b` is a path of `a` or lies below
 * one. (A path overlapping `q` lies on the way to `q` or below it; either way it meets `q`'s
 * ancestor `p`.)
 */
export function covers(a: LockScope, b: LockScope): boolean {
  if (a === 'all') return true;
  if (b === 'all') return false;
  return b.every((q) => a.some((p) => isPrefix(p, q)));
}

const ROOT: readonly (readonly string[])[] = [[]];

/** The paths of a scope; the whole namespace is the root, above every path. */
function pathsOf(scope: LockScope): readonly (readonly string[])[] {
  return scope === 'all' ? ROOT : scope;
}

function isPrefix(p: readonly string[], q: readonly string[]): boolean {
  if (p.length > q.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) return false;
  return true;
}
