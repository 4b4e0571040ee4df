/**
 * Fault: SIGKILL of the master while two mounts (separate processes) create, write
 * and rename files; the master restarts on the same home and port. Every operation
 * that returned success is there with its bytes, none is half-done, and the mounts
 * carry on by themselves (no remount).
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { startCluster } from '../helpers/multi-cluster';
import { contentOf, startWriter, WriterOp } from '../helpers/fault-writer';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('SIGKILL the master during creates, writes and renames from two mounts', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 2 });
  await fsp.mkdir(path.join(c.mounts[0]!, 'w'));
  const writers = c.mounts.map((m, i) => startWriter(t, path.join(m, 'w'), `m${i}`));
  await sleep(2500);
  const killedAt = Date.now();
  await c.master.kill();
  await sleep(1000);
  await c.master.restart();
  const restartedAt = Date.now();
  await sleep(4000);
  for (const w of writers) t.ok(await w.stop(), 'the writer stops: no operation hangs');

  const ops: WriterOp[] = writers.flatMap((w) => w.ops());
  const before = ops.filter((o) => o.ok && o.at < killedAt).length;
  t.ok(before > 0, `${before} operations succeeded before the kill`);
  for (const [i, w] of writers.entries()) {
    const after = w.ops().filter((o) => o.ok && o.at > restartedAt).length;
    t.ok(after > 0, `mount ${i} works again after the restart without a remount (${after} operations)`);
  }
  const failed = ops.filter((o) => !o.ok);
  t.comment(`operations: ${ops.length}, failed: ${failed.length}: ${failed.map((o) => `${o.op} ${o.name} ${o.code} at ${o.at - killedAt} ms after the kill`).join("; ")}`);

  // An operation cut by the crash may have been applied or not: EIO says so. ENOENT from a rename or
  // EEXIST from a create would claim it did not happen (they came from sending it again).
  t.same(failed.filter((o) => o.code !== 'EIO'), [], 'operations cut by the crash fail with EIO, not ENOENT/EEXIST');
  // What each name must look like: written and renamed -> only the final name; written only -> only .tmp;
  // a rename that failed (maybe after it happened) -> exactly one of the two; a failed write -> .tmp absent or whole.
  const byName = new Map<string, { write?: boolean; rename?: boolean }>();
  for (const o of ops) {
    const e = byName.get(o.name) ?? {};
    e[o.op] = o.ok;
    byName.set(o.name, e);
  }
  for (const mnt of c.mounts) {
    const dir = path.join(mnt, 'w');
    const present = new Set(await fsp.readdir(dir));
    let checked = 0;
    for (const [name, e] of byName) {
      const tmp = present.has(name + '.tmp');
      const fin = present.has(name);
      if (e.write === true && e.rename === true) {
        if (!fin || tmp) t.fail(`${name}: renamed, but final=${fin} tmp=${tmp}`);
      } else if (e.write === true && e.rename === undefined) {
        if (!tmp || fin) t.fail(`${name}: written, not renamed, but final=${fin} tmp=${tmp}`);
      } else if (e.write === true && e.rename === false) {
        if (tmp === fin) t.fail(`${name}: the rename failed; exactly one name must exist, final=${fin} tmp=${tmp}`);
      } else if (fin) t.fail(`${name}: its write failed but the final name exists`);
      for (const n of [name, name + '.tmp']) {
        if (!present.has(n)) continue;
        const got = await fsp.readFile(path.join(dir, n));
        // A create whose write failed may leave an empty file; anything with bytes must be whole.
        if (e.write === true || got.length > 0) {
          if (!got.equals(contentOf(name))) t.fail(`${n} does not hold its bytes (${got.length} bytes)`);
          else checked++;
        }
      }
      present.delete(name);
      present.delete(name + '.tmp');
    }
    t.same([...present], [], `${mnt}: no entries but the writers' own`);
    t.ok(checked >= byName.size - failed.length - 2, `${mnt}: ${checked} files read back whole`);
  }
});
