/**
 * The data runs of an open file, holes skipped, through lseek(2) SEEK_DATA and
 * SEEK_HOLE (the strata_sparse addon): storing a sparse file then costs what its
 * data costs, not what its size is. Without the addon, or on a file system that
 * cannot tell, the whole range counts as data (read, and zero pieces still left
 * out by the caller), as before.
 */

import { existsSync } from 'node:fs';
import * as path from 'node:path';

interface SparseAddon {
  dataAfter(fd: number, offset: number, end: number): [number, number] | null | number;
}

let addon: SparseAddon | null | undefined;

function load(): SparseAddon | null {
  if (addon !== undefined) return addon;
  const file = path.join(path.resolve(__dirname, '..', '..', '..'), 'build', 'Release', 'strata_sparse.node');
  try {
    addon = existsSync(file) ? (require(file) as SparseAddon) : null;
  } catch {
    addon = null;
  }
  return addon;
}

/** Whether holes are found without reading them (the addon loaded). */
export function sparseAware(): boolean {
  return load() !== null;
}

/** `[start, stop)` runs of `[from, to)` of the open file `fd` that may hold data, in order. */
export function* dataSegments(fd: number, from: number, to: number): Generator<[number, number]> {
  const a = load();
  if (!a) {
    if (from < to) yield [from, to];
    return;
  }
  for (let pos = from; pos < to; ) {
    const r = a.dataAfter(fd, pos, to);
    if (r === null) return;
    if (typeof r === 'number') {
      // The file system cannot say (EINVAL on some): all the rest may be data.
      yield [pos, to];
      return;
    }
    const [start, stop] = r;
    if (stop <= start) return;
    yield [start, stop];
    pos = stop;
  }
}
