/**
 * dataSegments: the data runs of a sparse file, found with SEEK_DATA / SEEK_HOLE
 * instead of reading its holes (the strata_sparse addon, built by `npm ci`).
 */

import t from 'tap';
import { mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataSegments, sparseAware } from '../../src/common/sparse';

t.test('a sparse file: its data runs, holes and the end skipped', async (t) => {
  t.ok(sparseAware(), 'the addon is built and loads');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-sparse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fd = openSync(path.join(dir, 'f'), 'w+');
  try {
    const MiB = 1024 * 1024;
    writeSync(fd, Buffer.alloc(10, 1), 0, 10, 0);
    writeSync(fd, Buffer.alloc(10, 2), 0, 10, 100 * MiB);
    ftruncateSync(fd, 2 ** 40);
    const segs = [...dataSegments(fd, 0, 2 ** 40)];
    t.equal(segs.length, 2, 'two runs of data in 1 TiB');
    t.ok(segs[0]![0] === 0 && segs[0]![1] >= 10 && segs[0]![1] < MiB, 'the first at 0, one file system block or so');
    t.ok(segs[1]![0] <= 100 * MiB && segs[1]![0] > MiB && segs[1]![1] >= 100 * MiB + 10 && segs[1]![1] < 101 * MiB, 'the second around 100 MiB');
    t.same([...dataSegments(fd, 0, 5)], [[0, 5]], 'cut at the end asked for');
    t.same([...dataSegments(fd, MiB, 2 * MiB)], [], 'a range of hole: nothing');
    t.same([...dataSegments(fd, 2 ** 40, 2 ** 40 + 10)], [], 'past the end: nothing');
    const inner = [...dataSegments(fd, 100 * MiB + 5, 2 ** 40)];
    t.equal(inner[0]![0], 100 * MiB + 5, 'a range starting inside data starts there');
  } finally {
    closeSync(fd);
  }
});
