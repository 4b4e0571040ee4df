/**
 * Sparse file content: the runs of a buffer that hold data, with runs of all-zero
 * pieces left out, so a mostly-empty file costs what its data costs (written
 * zeros become holes too; they read back the same).
 */

import type { FileHandle } from 'node:fs/promises';
import { dataSegments } from './sparse';

const ZERO = Buffer.alloc(1024 * 1024);

/** `[start, stop)` offsets of the runs of `buf` made of pieces (`piece` bytes, at most 1 MiB) that are not all zero. */
export function dataRuns(buf: Buffer, piece = ZERO.length): [number, number][] {
  const runs: [number, number][] = [];
  let runStart = -1;
  for (let off = 0; off <= buf.length; off += piece) {
    const end = Math.min(off + piece, buf.length);
    const isZero = off >= buf.length || buf.subarray(off, end).equals(ZERO.subarray(0, end - off));
    if (!isZero && runStart < 0) runStart = off;
    if ((isZero || end === buf.length) && runStart >= 0) {
      runs.push([runStart, isZero ? off : end]);
      runStart = -1;
    }
  }
  return runs;
}

/**
 * `[from, to)` of an open file as data extents: its holes skipped without reading them
 * (dataSegments), and runs of all-zero 1 MiB pieces left out. Each extent is a view of a
 * fresh buffer (a store writer may keep what it is given). A read that comes up short
 * (the file ended early) is `onShort`: zeros, or an error.
 */
export async function* fileDataExtents(fh: FileHandle, from: number, to: number, onShort: 'zeros' | (() => Error)): AsyncGenerator<{ offset: number; data: Buffer }> {
  const PIECE = ZERO.length;
  const CHUNK = 4 * PIECE;
  for (const [segStart, segStop] of dataSegments(fh.fd, from, to)) {
    for (let pos = segStart; pos < segStop; ) {
      const want = Math.min(CHUNK, segStop - pos);
      const buf = Buffer.allocUnsafe(want);
      let n = 0;
      while (n < want) {
        const { bytesRead } = await fh.read(buf, n, want - n, pos + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      if (n < want) {
        if (onShort !== 'zeros') throw onShort();
        buf.fill(0, n, want);
      }
      for (const [start, stop] of dataRuns(buf, PIECE)) yield { offset: pos + start, data: buf.subarray(start, stop) };
      pos += want;
    }
  }
}
