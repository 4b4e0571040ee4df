/**
 * Mounts and unmounts on one mount point again and again, then unmounts a mount with a read
 * still unanswered, and reports how many binding sessions stayed allocated after each step
 * (sessionsAlive). Every unmount used to leave its session (about 2 MB of tables) behind.
 * With STRATA_FUSE_TEST_INVAL_DELAY_MS set it also unmounts right after an invalidation.
 * Prints one JSON line and exits. Run as a child process: `node sessionsfs.js MOUNTPOINT`.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FuseSession, loadNative } from '../../src/fuse/native';
import { memErrno } from './memfs';
import { StallFs } from './stallfs';

async function main(mnt: string): Promise<void> {
  const native = loadNative();
  const alive = () => native.sessionsAlive();
  const before = alive();
  const afterCycles: number[] = [];
  for (let i = 0; i < 5; i++) {
    const session = FuseSession.mount(mnt, new StallFs(), { options: ['fsname=sessionsfs'], errnoOf: memErrno });
    await fsp.writeFile(path.join(mnt, 'f'), `cycle ${i}`);
    if ((await fsp.readFile(path.join(mnt, 'f'), 'utf8')) !== `cycle ${i}`) throw new Error('read back something else');
    await session.unmount();
    // The kernel's last request (the release of the file just read) may still be on its way: the session goes with its reply.
    const until = Date.now() + 2000;
    while (alive() > before && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    afterCycles.push(alive());
  }

  // A read the file system has not answered when the unmount gives up waiting for it.
  const fs = new StallFs();
  const session = FuseSession.mount(mnt, fs, { options: ['fsname=sessionsfs'], errnoOf: memErrno });
  const p = path.join(mnt, 'stall');
  await fsp.writeFile(p, 'stalled bytes');
  const mounted = alive();
  const reader = fsp.readFile(p, 'utf8').then((s) => `read ${s.length}`, (e: NodeJS.ErrnoException) => `error ${e.code}`);
  while (fs.stallIno < 0 || !fs.stalled) await new Promise((r) => setTimeout(r, 10));
  await session.unmount(200);
  const unansweredAtUnmount = alive();
  fs.answerStalled();
  const deadline = Date.now() + 10_000;
  while (alive() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const afterAnswer = alive();
  const readerGot = await reader;

  // An unmount right after an invalidation (the binding's test hook holds its thread between
  // counting itself out and its last look at the session): the session must outlive that look.
  let heldByInvalidation: number | null = null;
  let afterInvalidation: number | null = null;
  if (process.env.STRATA_FUSE_TEST_INVAL_DELAY_MS) {
    const s2 = FuseSession.mount(mnt, new StallFs(), { options: ['fsname=sessionsfs'], errnoOf: memErrno });
    await fsp.writeFile(path.join(mnt, 'g'), 'x');
    const { ino } = await fsp.stat(path.join(mnt, 'g'));
    if (!(await s2.invalidateInode(ino, 0, 0))) throw new Error('the invalidation did not finish');
    await s2.unmount();
    heldByInvalidation = alive();
    // Past the hook's wait: the thread has had its last look by now (freed under it, this process faults).
    await new Promise((r) => setTimeout(r, 2 * Number(process.env.STRATA_FUSE_TEST_INVAL_DELAY_MS)));
    const until = Date.now() + 10_000;
    while (alive() > before && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    afterInvalidation = alive();
  }
  process.stdout.write(`${JSON.stringify({ before, afterCycles, mounted, unansweredAtUnmount, afterAnswer, readerGot, heldByInvalidation, afterInvalidation })}\n`);
}

main(process.argv[2]!).then(
  () => process.exit(0),
  (err) => {
    process.stdout.write(`failed: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
