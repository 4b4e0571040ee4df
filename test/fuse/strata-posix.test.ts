/**
 * The POSIX suite against a real `strata local` mount, with the features Strata's
 * FUSE adapter (src/fuse/fuse-mount.ts, strataHandlers) implements. Whether the
 * adapter has a handler decides symlink, link, xattr and fallocate, so the suite
 * follows the adapter as it grows; for a missing one it checks that the operation
 * fails cleanly. Always on: mknod of every type (FIFOs and device nodes live in the
 * namespace only), RENAME_NOREPLACE, RENAME_EXCHANGE, and writes to an open file
 * after its unlink. Off: 'statfs64' (Strata reports its real capacity and a 2^32
 * file count, nothing beyond 32 bits to check). flock works (the kernel keeps flock locks itself when
 * the file system does not implement them), and so do fsync and statfs.
 */

import t from 'tap';
import type { StrataFileSystem } from '../../src/client/file-system';
import { strataHandlers } from '../../src/fuse/fuse-mount';
import { startLocal } from '../helpers/cluster';
import { posixSuite, type Feature } from './posix-suite';

/** The features of the adapter as it is: building the handlers touches no file system. */
function strataFeatures(): Set<Feature> {
  const h = strataHandlers({} as StrataFileSystem);
  const f = new Set<Feature>(['mknod', 'rename-noreplace', 'rename-exchange', 'write-unlinked']);
  if (h.symlink && h.readlink) f.add('symlink');
  if (h.link) f.add('link');
  if (h.setxattr && h.getxattr && h.listxattr && h.removexattr) f.add('xattr');
  if (h.fallocate) f.add('fallocate');
  return f;
}

/** Known bugs: their subtests are reported as TAP todos (not run) until they are fixed. */
/** Features whose subtests are known to fail on Strata, with the reason (none today). */
const KNOWN_BUGS: Partial<Record<Feature, string>> = {};

// A write at 5 GiB makes Strata store the whole sparse file (its holes too) at close: minutes on a busy disk.
t.setTimeout(900_000);

t.test('Strata mount: the POSIX suite', async (t) => {
  const features = strataFeatures();
  t.comment(`features: ${[...features].sort().join(', ')}`);
  const c = await startLocal(t);
  posixSuite(t, c.mnt, features, { todo: KNOWN_BUGS });
});
