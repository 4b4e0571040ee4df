/**
 * MemFs that hands the binding extents to answer reads from itself (serveReads), as
 * a Strata mount does with kept page files, so a test can tell who answered a read:
 * the first read of a handle of a file named "served…" is answered here and then
 * hands the binding its three 1 MiB units, each from a scratch file that holds only
 * 'C' bytes. Reading "drop-listed" drops that handle's first two extents by listing
 * them (dropReads with extents); reading "drop-all" drops all of its extents.
 * Run as a child process: `node servefs.js MOUNTPOINT`.
 */

import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FuseSession, RequestContext } from '../../src/fuse/native';
import { MemFs, memErrno } from './memfs';

const MiB = 1024 * 1024;
export const SERVED_UNITS = 3;

class ServeFs extends MemFs {
  readonly scratch: number;
  session: FuseSession | undefined;
  readonly #names = new Map<number, string>();
  readonly #served = new Set<number>();
  #lastServed = -1;

  constructor() {
    super();
    const file = path.join(tmpdir(), `strata-servefs-${process.pid}`);
    this.scratch = openSync(file, 'w+');
    unlinkSync(file);
    writeSync(this.scratch, Buffer.alloc(SERVED_UNITS * MiB, 'C'), 0, SERVED_UNITS * MiB, 0);
  }

  override async lookup(ctx: RequestContext, parent: number, name: string) {
    const e = await super.lookup(ctx, parent, name);
    this.#names.set(e.attr.ino, name);
    return e;
  }

  override async create(ctx: RequestContext, parent: number, name: string, mode: number) {
    const e = await super.create(ctx, parent, name, mode);
    this.#names.set(e.attr.ino, name);
    return e;
  }

  override async read(ctx: RequestContext, ino: number, fh: number, size: number, offset: number) {
    const name = this.#names.get(ino) ?? '';
    if (name === 'drop-listed') this.session!.dropReads(this.#lastServed, new Float64Array([0, MiB, MiB, MiB]));
    if (name === 'drop-all') this.session!.dropReads(this.#lastServed);
    const bytes = await super.read(ctx, ino, fh, size, offset);
    if (name.startsWith('served') && !this.#served.has(fh)) {
      this.#served.add(fh);
      this.#lastServed = fh;
      for (let u = 0; u < SERVED_UNITS; u++) this.session!.serveReads(fh, ino, u * MiB, MiB, this.scratch, u * MiB);
    }
    return bytes;
  }
}

if (require.main === module) {
  const mnt = process.argv[2]!;
  const fs = new ServeFs();
  fs.session = FuseSession.mount(mnt, fs, { options: ['default_permissions', 'fsname=servefs'], errnoOf: memErrno, maxRead: 512 * 1024 });
  const stop = () =>
    void fs.session?.unmount().then(() => {
      closeSync(fs.scratch);
      process.exit(0);
    });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`mounted ${mnt}\n`);
}
