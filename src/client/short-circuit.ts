/**
 * Short-circuit reads: when a worker runs on this host, read its block files
 * directly instead of over HTTP. Block files appear only when complete (they are
 * renamed into place) and a block id never changes content, so a file found here
 * is always right; a missing one (not cached yet, or evicted) falls back to HTTP,
 * which fills it.
 */

import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { hostIdentity } from '../common/host';
import type { WorkerInfo } from '../common/protocol';

export class ShortCircuitReader {
  readonly #host = hostIdentity();
  /** Workers whose block dir we could not read (other user, container): HTTP only. */
  readonly #unusable = new Set<string>();
  /** Bytes served from local block files, for metrics and tests. */
  bytesRead = 0;

  isLocal(w: WorkerInfo): boolean {
    return w.host === this.#host && !!w.blockDir && !this.#unusable.has(w.blockDir);
  }

  /** Reads into `into`; undefined when the block is not on local disk (use HTTP then). */
  async readInto(w: WorkerInfo, blockId: number, offset: number, length: number, into: Buffer, at: number): Promise<number | undefined> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(nodePath.join(w.blockDir, String(blockId)), 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') this.#unusable.add(w.blockDir);
      return undefined;
    }
    try {
      let n = 0;
      while (n < length) {
        const { bytesRead } = await fh.read(into, at + n, length - n, offset + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      this.bytesRead += n;
      return n;
    } finally {
      await fh.close();
    }
  }
}
