/**
 * Sparse file content: the runs of a buffer that hold data, with runs of all-zero
 * pieces left out, so a mostly-empty file costs what its data costs (written
 * zeros become holes too; they read back the same).
 */

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
