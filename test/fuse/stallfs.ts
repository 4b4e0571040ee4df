/**
 * MemFs whose reads of a file named "stall" wait, the way a Strata mount's read waits
 * on a stopped worker, so a test can unmount while the kernel holds that file's pages
 * locked for the read. It prints "stalled" when such a read arrives. On SIGHUP it
 * starts a data invalidation of "stall" (a feed's change does that), which waits for
 * the page lock, and prints "invalidating". On SIGTERM it unmounts; 300 ms after the
 * unmount began the worker "comes back": stalled reads are answered and later ones no
 * longer stall. With a second argument "forever" it never comes back, and the unmount
 * waits only 500 ms. It prints "unmounted: OUTCOME" and exits once the unmount is done.
 * Run as a child process: `node stallfs.js MOUNTPOINT [forever]`.
 */

import { FuseSession, RequestContext } from '../../src/fuse/native';
import { MemFs, memErrno } from './memfs';

export class StallFs extends MemFs {
  stallIno = -1;
  readonly #waiting: (() => void)[] = [];

  override async lookup(ctx: RequestContext, parent: number, name: string) {
    const e = await super.lookup(ctx, parent, name);
    if (name === 'stall') this.stallIno = e.attr.ino;
    return e;
  }

  override async create(ctx: RequestContext, parent: number, name: string, mode: number) {
    const e = await super.create(ctx, parent, name, mode);
    if (name === 'stall') this.stallIno = e.attr.ino;
    return e;
  }

  /** Set once the worker "came back": reads no longer stall. */
  answering = false;
  /** Whether a read is waiting. */
  get stalled(): boolean {
    return this.#waiting.length > 0;
  }

  override async read(ctx: RequestContext, ino: number, fh: number, size: number, offset: number) {
    if (ino === this.stallIno && !this.answering) {
      process.stdout.write('stalled\n');
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    return super.read(ctx, ino, fh, size, offset);
  }

  answerStalled(): void {
    this.answering = true;
    for (const go of this.#waiting.splice(0)) go();
  }
}

if (require.main === module) {
  const mnt = process.argv[2]!;
  const fs = new StallFs();
  const session = FuseSession.mount(mnt, fs, { options: ['default_permissions', 'fsname=stallfs'], errnoOf: memErrno });
  process.on('SIGHUP', () => {
    void session.invalidateInode(fs.stallIno, 0, 0, 60_000);
    process.stdout.write('invalidating\n');
  });
  const forever = process.argv[3] === 'forever';
  process.on('SIGTERM', () => {
    if (!forever) setTimeout(() => fs.answerStalled(), 300);
    void session.unmount(forever ? 500 : 5000).then((outcome) => {
      process.stdout.write(`unmounted: ${outcome ?? 'clean'}\n`);
      process.exit(0);
    });
  });
  process.stdout.write(`mounted ${mnt}\n`);
}
