/**
 * MemFs whose reads answer in parts, the way a Strata mount answers bytes it has
 * in a same-host worker's page files: each read's bytes are written to a scratch
 * file at an unaligned offset, and the reply is a few bytes from memory, the rest
 * as a range of the scratch file (spliced into the kernel from 2 pages up), and
 * the last bytes from memory again. So every read of the POSIX suite goes through
 * replyData. A file whose name starts with "bad-range" answers a range of a
 * descriptor that is not open, one whose name starts with "short-range" a range
 * running past the end of the scratch file. On SIGTERM it prints how many replies were never
 * let go ("unreleased N"): every reply must be, sent or not.
 * Run as a child process: `node rangefs.js MOUNTPOINT`.
 */

import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { ReadParts } from '../../src/common/file-range';
import { Entry, FuseSession, OpenReply, RequestContext } from '../../src/fuse/native';
import { MemFs, memErrno } from './memfs';

/** Larger than any descriptor this process can have: reading it fails with EBADF. */
const NOT_OPEN = 1 << 30;
/** Where the next read's bytes go in the scratch file: moves on, never page-aligned. */
const SCRATCH_SPAN = 64 * 1024 * 1024;

class RangeFs extends MemFs {
  readonly #scratch: number;
  #next = 123;
  readonly #bad = new Set<number>();
  readonly #short = new Set<number>();
  unreleased = 0;

  constructor() {
    super();
    const file = path.join(tmpdir(), `strata-rangefs-${process.pid}`);
    this.#scratch = openSync(file, 'w+');
    unlinkSync(file);
  }

  #note(name: string, ino: number): void {
    if (name.startsWith('bad-range')) this.#bad.add(ino);
    if (name.startsWith('short-range')) this.#short.add(ino);
  }

  override async lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    const e = await super.lookup(ctx, parent, name);
    this.#note(name, e.attr.ino);
    return e;
  }

  override async create(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry & { open: OpenReply }> {
    const e = await super.create(ctx, parent, name, mode);
    this.#note(name, e.attr.ino);
    return e;
  }

  // @ts-expect-error MemFs answers buffers; this file system answers parts.
  override async read(ctx: RequestContext, ino: number, fh: number, size: number, offset: number): Promise<ReadParts> {
    const bytes = await super.read(ctx, ino, fh, size, offset);
    this.unreleased++;
    let released = false;
    const done = () => {
      if (released) throw new Error('a read reply was let go twice');
      released = true;
      this.unreleased--;
    };
    if (this.#bad.has(ino)) return { parts: [Buffer.from('x'), { fd: NOT_OPEN, pos: 0, len: 64 * 1024 }], done };
    if (this.#short.has(ino)) return { parts: [Buffer.from('x'), { fd: this.#scratch, pos: SCRATCH_SPAN * 4, len: 64 * 1024 }], done };
    const head = Math.min(7, bytes.length);
    const tail = Math.min(5, bytes.length - head);
    const mid = bytes.length - head - tail;
    if (this.#next + mid > SCRATCH_SPAN) this.#next = 123;
    const at = this.#next;
    this.#next += mid + 4099;
    writeSync(this.#scratch, bytes, head, mid, at);
    return { parts: [bytes.subarray(0, head), { fd: this.#scratch, pos: at, len: mid }, bytes.subarray(head + mid)], done };
  }

  close(): void {
    closeSync(this.#scratch);
  }
}

if (require.main === module) {
  const mnt = process.argv[2]!;
  const fs = new RangeFs();
  // As Strata's mount: requests small enough for a spliced reply to fit one pipe.
  const session = FuseSession.mount(mnt, fs as unknown as MemFs, { options: ['default_permissions', 'fsname=rangefs'], errnoOf: memErrno, maxRead: 512 * 1024 });
  const stop = () =>
    void session.unmount().then(() => {
      process.stdout.write(`unreleased ${fs.unreleased}\n`);
      fs.close();
      process.exit(0);
    });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`mounted ${mnt}\n`);
}
