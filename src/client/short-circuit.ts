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

interface OpenBlock {
  fh: Promise<fsp.FileHandle>;
  refs: number;
}

export class ShortCircuitReader {
  readonly #host = hostIdentity();
  /** Workers whose block dir we could not read (other user, container): HTTP only. */
  readonly #unusable = new Set<string>();
  /** Open block files, most recently used last; a random reader should not pay open+close per 4 KiB. */
  readonly #open = new Map<string, OpenBlock>();
  readonly #maxOpen: number;
  /** Bytes served from local block files, for metrics and tests. */
  bytesRead = 0;

  constructor(maxOpen = 64) {
    this.#maxOpen = maxOpen;
  }

  isLocal(w: WorkerInfo): boolean {
    return w.host === this.#host && !!w.blockDir && !this.#unusable.has(w.blockDir);
  }

  async #acquire(file: string): Promise<OpenBlock> {
    let ob = this.#open.get(file);
    if (ob) {
      this.#open.delete(file);
      this.#open.set(file, ob);
    } else {
      ob = { fh: fsp.open(file, 'r'), refs: 0 };
      this.#open.set(file, ob);
      ob.fh.catch(() => this.#open.delete(file));
      this.#trim();
    }
    ob.refs++;
    await ob.fh; // throws for a missing block: the caller falls back to HTTP
    return ob;
  }

  #trim(): void {
    for (const [file, ob] of this.#open) {
      if (this.#open.size <= this.#maxOpen) break;
      if (ob.refs > 0) continue;
      this.#open.delete(file);
      void ob.fh.then((h) => h.close()).catch(() => undefined);
    }
  }

  /** Reads into `into`; undefined when the block is not on local disk (use HTTP then). */
  async readInto(w: WorkerInfo, blockId: number, offset: number, length: number, into: Buffer, at: number): Promise<number | undefined> {
    const file = nodePath.join(w.blockDir, String(blockId));
    let ob: OpenBlock;
    try {
      ob = await this.#acquire(file);
    } catch (err) {
      const e = this.#open.get(file);
      if (e) e.refs = Math.max(0, e.refs - 1);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') this.#unusable.add(w.blockDir);
      return undefined;
    }
    try {
      const fh = await ob.fh;
      let n = 0;
      while (n < length) {
        const { bytesRead } = await fh.read(into, at + n, length - n, offset + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      this.bytesRead += n;
      return n;
    } finally {
      ob.refs--;
      this.#trim();
    }
  }

  /** Closes every cached block file. */
  async close(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(all.map((ob) => ob.fh.then((h) => h.close()).catch(() => undefined)));
  }
}
