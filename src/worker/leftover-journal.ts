/**
 * The worker's record of under-store writes in flight that would leave remains in
 * the store if the worker died (an S3 multipart upload, a temp file; see
 * UfsWriter.leftover): one small file per such write in `<home>/worker/leftovers`,
 * written when the writer first names its remains and removed once it completed or
 * aborted. A stopping worker aborts its writes itself; after a crash, the next run
 * hands what is recorded to the master, which discards it through the mount's store.
 * Without this an open S3 upload is kept, and billed, until someone aborts it.
 */

import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../common/log';
import { LEFTOVER_HANDLE_MAX, LEFTOVER_URI_MAX, type UfsLeftover } from '../common/protocol';
import type { UfsWriter } from '../ufs/ufs';
import { syncDir } from './page-store';

export interface StaleLeftover extends UfsLeftover {
  /** The record's file, removed once the master has the entry. */
  file: string;
}

/**
 * A record whole, under its name, even after a power loss: its bytes reach the disk before the
 * rename gives it its name, and the rename before the write it records goes on (a record that
 * comes back empty would be dropped, and an S3 upload it named kept). Removals are not synced:
 * a removed record that comes back names something completed or aborted, and discarding that
 * again does nothing.
 */
async function writeDurably(dir: string, file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  await syncDir(dir);
}

export class LeftoverJournal {
  readonly #dir: string;
  readonly #log: Logger;

  private constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  /** Opens the journal; answers what a previous run left recorded (call before any write starts). */
  static async open(dir: string, log: Logger): Promise<{ journal: LeftoverJournal; stale: StaleLeftover[] }> {
    await fsp.mkdir(dir, { recursive: true });
    const stale: StaleLeftover[] = [];
    for (const name of await fsp.readdir(dir)) {
      const file = nodePath.join(dir, name);
      if (!name.endsWith('.json')) {
        // A record cut off while it was written.
        await fsp.rm(file, { force: true });
        continue;
      }
      try {
        const v = JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<UfsLeftover>;
        if (typeof v.mountUri === 'string' && typeof v.handle === 'string' && v.mountUri.length > 0 && v.mountUri.length <= LEFTOVER_URI_MAX && v.handle.length > 0 && v.handle.length <= LEFTOVER_HANDLE_MAX) {
          stale.push({ mountUri: v.mountUri, handle: v.handle, file });
        } else {
          // Nothing the master would take: what it names stays in the store.
          log.warn({ file, record: JSON.stringify(v).slice(0, 300) }, 'dropped a leftover record the master cannot take');
          await fsp.rm(file, { force: true });
        }
      } catch {
        await fsp.rm(file, { force: true });
      }
    }
    return { journal: new LeftoverJournal(dir, log), stale };
  }

  /** Removes records the master has taken over. */
  async forget(stale: StaleLeftover[]): Promise<void> {
    await Promise.all(stale.map((s) => fsp.rm(s.file, { force: true })));
  }

  /**
   * The writer, with its remains recorded while there are any. Recording is best
   * effort: a journal that cannot be written (a full disk) never fails the write.
   */
  async track(mountUri: string, w: UfsWriter): Promise<UfsWriter> {
    if (!w.leftover) return w;
    const file = nodePath.join(this.#dir, `${randomBytes(8).toString('hex')}.json`);
    let recorded: string | undefined;
    let chain: Promise<void> = Promise.resolve();
    const note = (): Promise<void> => {
      const handle = w.leftover!();
      if (handle === recorded) return chain;
      recorded = handle;
      chain = chain.then(async () => {
        try {
          if (handle === undefined) await fsp.rm(file, { force: true });
          else await writeDurably(this.#dir, file, JSON.stringify({ mountUri, handle }));
        } catch (err) {
          this.#log.warn({ file, err: (err as Error).message }, 'could not record an under-store write in flight');
        }
      });
      return chain;
    };
    // A store may hold remains from the start (a local temp file), or from the middle of a write on.
    w.onLeftover = note;
    await note();
    return {
      write: async (chunk) => {
        await w.write(chunk);
        await note();
      },
      ...(w.skip ? { skip: async (n: number) => w.skip!(n) } : {}),
      complete: async () => {
        await note();
        try {
          return await w.complete();
        } finally {
          await note();
        }
      },
      abort: async () => {
        try {
          await w.abort();
        } finally {
          await note();
        }
      },
      leftover: () => w.leftover!(),
    };
  }
}
