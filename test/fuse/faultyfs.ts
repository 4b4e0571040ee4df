/**
 * MemFs with faulty lookups, for the binding's error paths: looking up one of the
 * FAULTS names makes the handler throw synchronously, reject with odd values, or
 * resolve with a malformed entry. Every other operation is MemFs's. Errors go
 * through Strata's own errno table (the face's default), MemFs's errors through
 * memErrno. Run as a child process: `node faultyfs.js MOUNTPOINT`.
 */

import { constants as os } from 'node:os';
import { StrataError, toErrno } from '../../src/common/errors';
import { Entry, FuseSession, RequestContext } from '../../src/fuse/native';
import { MemFs, memErrno } from './memfs';

const E = os.errno;

/** Name → [what the lookup handler does, the errno the caller must see]. */
export const FAULTS: Record<string, [() => Promise<Entry>, number]> = {
  'throw-sync-strata': [() => { throw new StrataError('NOT_PERMITTED', 'thrown synchronously'); }, E.EPERM],
  'throw-sync-plain': [() => { throw new Error('a plain error thrown synchronously'); }, E.EIO],
  'throw-sync-string': [() => { throw 'a string'; }, E.EIO],
  'reject-strata': [() => Promise.reject(new StrataError('NAME_TOO_LONG', 'rejected')), E.ENAMETOOLONG],
  'reject-system': [() => Promise.reject(Object.assign(new Error('EACCES from Node'), { code: 'EACCES' })), E.EACCES],
  'reject-plain': [() => Promise.reject(new TypeError('a plain rejection')), E.EIO],
  'reject-undefined': [() => Promise.reject(undefined), E.EIO],
  'reject-null': [() => Promise.reject(null), E.EIO],
  'reject-later': [() => new Promise((_, reject) => setTimeout(() => reject(new StrataError('NOT_FOUND', 'late')), 50)), E.ENOENT],
  'resolve-undefined': [() => Promise.resolve(undefined as unknown as Entry), E.EIO],
  'resolve-malformed': [() => Promise.resolve({ attr: { ino: 99 } } as unknown as Entry), E.EIO],
};

/** A file by this name answers fsync and flush with an error whose errno is ENOSYS (a peer's 404 route). */
export const ENOSYS_FILE = 'enosys-sync';

class FaultyFs extends MemFs {
  readonly #enosys = new Set<number>();

  override lookup(ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    const f = FAULTS[name];
    if (f) return f[0]();
    return super.lookup(ctx, parent, name);
  }

  override async create(ctx: RequestContext, parent: number, name: string, mode: number) {
    const e = await super.create(ctx, parent, name, mode);
    if (name === ENOSYS_FILE) this.#enosys.add(e.attr.ino);
    return e;
  }

  override async fsync(_ctx?: unknown, ino?: number) {
    if (ino !== undefined && this.#enosys.has(ino)) throw new StrataError('ROUTE_NOT_FOUND', 'a peer without this route');
  }

  override async flush(_ctx?: unknown, ino?: number) {
    if (ino !== undefined && this.#enosys.has(ino)) throw new StrataError('ROUTE_NOT_FOUND', 'a peer without this route');
  }
}

if (require.main === module) {
  const mnt = process.argv[2]!;
  const session = FuseSession.mount(mnt, new FaultyFs(), {
    options: ['default_permissions', 'fsname=faultyfs'],
    errnoOf: (err) => {
      const m = memErrno(err);
      return m !== E.EIO ? m : -toErrno(err);
    },
  });
  const stop = () => void session.unmount().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`mounted ${mnt}\n`);
}
