/**
 * The kernel's FUSE control file system (fusectl): one directory per FUSE connection
 * under /sys/fs/fuse/connections, named by the minor device number of the mount.
 * Writing its `abort` file ends every request of that connection at once, in the
 * kernel, whatever the daemon does: the one way out when a request can no longer be
 * answered (see FuseSession.unmount).
 */

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export const FUSECTL_DIR = '/sys/fs/fuse/connections';

/** Octal escapes (\040 for a space) of /proc/self/mountinfo. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The device ("0:53") of the FUSE file system mounted on `mountPoint` (the topmost one), or
 * undefined when none is. Read from mountinfo: a stat of the mount point from the process that
 * serves it would wait on that very process.
 */
export function fuseDeviceOf(mountPoint: string, mountinfo = '/proc/self/mountinfo'): string | undefined {
  const want = path.resolve(mountPoint);
  let found: string | undefined;
  for (const line of readFileSync(mountinfo, 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const fields = before.split(' ');
    const fstype = after.split(' ')[0] ?? '';
    if (fstype !== 'fuse' && !fstype.startsWith('fuse.')) continue;
    if (unescapeMountField(fields[4] ?? '') !== want) continue;
    if (/^\d+:\d+$/.test(fields[2] ?? '')) found = fields[2];
  }
  return found;
}

/** A FUSE connection's number in fusectl: the minor of its device. */
export function connectionOfDevice(dev: string): number {
  return Number(dev.split(':')[1]);
}

/**
 * Aborts FUSE connection `id`: every request of it in flight or queued fails at once.
 * Mounts fusectl first when it is not (containers often lack it; systemd mounts it at boot
 * elsewhere), which needs root. Returns what it did, for the log.
 */
export function abortFuseConnection(id: number): 'aborted' | 'gone' | string {
  const file = path.join(FUSECTL_DIR, String(id), 'abort');
  if (!existsSync(file)) {
    if (!existsSync(path.join(FUSECTL_DIR, '..'))) return 'no FUSE control file system in this kernel';
    try {
      execFileSync('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR], { stdio: 'ignore' });
    } catch {
      // Already mounted (then the connection is gone), or not root: the check below says which.
    }
    if (!existsSync(file)) return fusectlMounted() ? 'gone' : `cannot mount fusectl on ${FUSECTL_DIR}`;
  }
  try {
    writeFileSync(file, '1');
    return 'aborted';
  } catch (err) {
    return `cannot write ${file}: ${(err as Error).message}`;
  }
}

/** Whether fusectl is mounted (then a connection without a directory there is gone). */
function fusectlMounted(): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === FUSECTL_DIR && l.split(' ')[2] === 'fusectl');
  } catch {
    return false;
  }
}

/** Lazily unmounts `dir` (an aborted connection is not unmounted by libfuse). */
export function unmountLazily(dir: string): boolean {
  for (const [cmd, args] of [['fusermount3', ['-uz', dir]], ['fusermount', ['-uz', dir]], ['umount', ['-l', dir]]] as const) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
      return true;
    } catch {
      // try the next way
    }
  }
  return false;
}
