/**
 * Fault: a full disk, under a worker's tier and under the master's home (each a
 * small tmpfs mounted by the test, so the disk runs out before any quota does).
 * Writers get ENOSPC (not EIO, not a hang), what was closed before stays whole, and
 * once space returns the same mount writes again. The same for the disk under the
 * mount's staged writes, and for a store too full for a write-through.
 */

import t from 'tap';
import type { Test as TapTest } from 'tap';
import { spawnSync } from 'node:child_process';
import { promises as fsp, statfsSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCli, startLocal, tempRoot } from '../helpers/cluster';
import { startCluster, until } from '../helpers/multi-cluster';

/** Fills the file system holding `dir` with a ballast file until fewer than `leave` bytes are free. */
async function fill(dir: string, leave = 0): Promise<string> {
  const ballast = path.join(dir, 'ballast');
  const fh = await fsp.open(ballast, 'w');
  const chunk = Buffer.alloc(256 * 1024, 1);
  try {
    for (;;) {
      const s = statfsSync(dir);
      const free = s.bavail * s.bsize;
      if (free <= leave) break;
      await fh.write(free - leave >= chunk.length ? chunk : chunk.subarray(0, free - leave));
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
  return ballast;
}

/** Writes a file through the mount; resolves with the errno code it failed with, or 'ok'. */
async function tryWrite(file: string, data: Buffer): Promise<string> {
  try {
    const fh = await fsp.open(file, 'w');
    try {
      await fh.write(data);
    } finally {
      await fh.close();
    }
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/**
 * A temp root with a small tmpfs mounted at each of `disks` (path under the root → size, e.g.
 * '12m'), unmounted and removed at teardown; undefined (the test planned empty) without root
 * or when a tmpfs cannot be mounted.
 */
async function withSmallDisks(t: TapTest, prefix: string, disks: [sub: string, size: string][]): Promise<{ root: string; dirs: string[] } | undefined> {
  if (process.getuid?.() !== 0) {
    t.plan(0, 'needs root to mount a tmpfs');
    return undefined;
  }
  const root = tempRoot(prefix);
  const dirs: string[] = [];
  t.teardown(async () => {
    for (const dir of dirs) spawnSync('umount', ['-l', dir]);
    await fsp.rm(root, { recursive: true, force: true });
  });
  for (const [sub, size] of disks) {
    const dir = path.join(root, sub);
    await fsp.mkdir(dir, { recursive: true });
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    if (r.status !== 0) {
      t.plan(0, `cannot mount a tmpfs: ${r.stderr}`);
      return undefined;
    }
    dirs.push(dir);
  }
  return { root, dirs };
}

t.test('disk full', async (t) => {
  const disks = await withSmallDisks(t, 'strata-diskfull-', [
    ['master-disk', '16m'],
    ['tier-disk', '32m'],
  ]);
  if (!disks) return;
  const { root } = disks;
  const [masterDisk, tierDisk] = disks.dirs as [string, string];

  await t.test('cluster', async (t) => {
    const c = await startCluster(t, {
      root: path.join(root, 'cluster'),
      masterHome: path.join(masterDisk, 'home'),
      workers: 1,
      mounts: 2,
      // The quota (1 GiB) is far above the tmpfs (32 MiB): the disk fills first.
      tiers: () => `ssd:${tierDisk}/tier:1GiB`,
      mountArgs: (i) => ['--write-type', i === 0 ? 'MUST_CACHE' : 'CACHE_THROUGH'],
    });
    const [mc, ct] = c.mounts as [string, string];
    const early = randomBytes(1024 * 1024);
    t.equal(await tryWrite(path.join(mc, 'early-mc'), early), 'ok');
    t.equal(await tryWrite(path.join(ct, 'early-ct'), early), 'ok');

    await t.test('the worker tier disk is full', async (t) => {
      const ballast = await fill(tierDisk, 512 * 1024);
      const big = randomBytes(6 * 1024 * 1024);
      let t0 = Date.now();
      t.equal(await tryWrite(path.join(mc, 'big-mc'), big), 'ENOSPC', 'MUST_CACHE: ENOSPC to the writer');
      t.ok(Date.now() - t0 < 10_000, `within ${Date.now() - t0} ms`);
      t0 = Date.now();
      const ctResult = await tryWrite(path.join(ct, 'big-ct'), big);
      t.ok(Date.now() - t0 < 10_000, `within ${Date.now() - t0} ms`);
      t.comment(`CACHE_THROUGH with the tier disk full: ${ctResult}`);
      t.ok(ctResult === 'ok' || ctResult === 'ENOSPC', `CACHE_THROUGH: stored or ENOSPC, never EIO (${ctResult})`);
      if (ctResult === 'ok') t.ok((await fsp.readFile(path.join(ct, 'big-ct'))).equals(big), 'the CACHE_THROUGH file reads back');
      t0 = Date.now();
      t.ok((await fsp.readFile(path.join(mc, 'early-mc'))).equals(early), 'an earlier MUST_CACHE file is intact');
      t.ok((await fsp.readFile(path.join(ct, 'early-ct'))).equals(early), 'an earlier CACHE_THROUGH file is intact');
      await fsp.rm(ballast);
      t0 = Date.now();
      t.equal(await tryWrite(path.join(mc, 'big-mc'), big), 'ok', 'space back: the same mount writes again');
      t.ok(Date.now() - t0 < 10_000, `within ${Date.now() - t0} ms (a connection left mid-body once stalled this for 73 s)`);
      t.ok((await fsp.readFile(path.join(mc, 'big-mc'))).equals(big), 'and it reads back');
    });

    await t.test("the master's disk is full", async (t) => {
      const ballast = await fill(masterDisk);
      const results: string[] = [];
      for (let i = 0; i < 40; i++) results.push(await tryWrite(path.join(ct, `m${i}`), randomBytes(1000)));
      const codes = [...new Set(results)];
      t.comment(`creates with the master's disk full: ${codes.join(', ')}`);
      t.ok(results.includes('ENOSPC'), 'writers get ENOSPC');
      t.notOk(results.some((r) => r !== 'ok' && r !== 'ENOSPC'), 'and no other error');
      await fsp.rm(ballast);
      t.equal(await tryWrite(path.join(ct, 'after'), early), 'ok', 'space back: creates work again');
      t.ok((await fsp.readFile(path.join(ct, 'after'))).equals(early));
      t.ok((await fsp.readFile(path.join(ct, 'early-ct'))).equals(early), 'earlier files are intact');
    });
  });
});

t.test("the disk under the mount's staged writes is full", async (t) => {
  // The mount stages open files under <home>/client: a 12 MiB disk there.
  const disks = await withSmallDisks(t, 'strata-stagefull-', [['home/client', '12m']]);
  if (!disks) return;
  const { root } = disks;
  const clientDir = disks.dirs[0]!;

  await t.test('cluster', async (t) => {
    const c = await startLocal(t, { root });
    const early = randomBytes(1024 * 1024);
    t.equal(await tryWrite(path.join(c.mnt, 'early'), early), 'ok');
    // 40 MiB in 1 MiB writes: the mount stages them in 8 MiB pieces, so the failure may reach a
    // later write or the close, never a success.
    const t0 = Date.now();
    const big = randomBytes(40 * 1024 * 1024);
    let result = 'ok';
    try {
      const fh = await fsp.open(path.join(c.mnt, 'big'), 'w');
      try {
        for (let off = 0; off < big.length; off += 1024 * 1024) await fh.write(big, off, 1024 * 1024, off);
      } finally {
        await fh.close();
      }
    } catch (err) {
      result = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    t.equal(result, 'ENOSPC', `the writer gets ENOSPC (within ${Date.now() - t0} ms)`);
    t.ok((await fsp.readFile(path.join(c.mnt, 'early'))).equals(early), 'an earlier file is intact');
    // The kernel releases the file after close() returned; its staged copy goes then.
    const deadline = Date.now() + 10_000;
    const free = () => statfsSync(clientDir).bavail * statfsSync(clientDir).bsize;
    while (free() < 8 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.ok(free() >= 8 * 1024 * 1024, `the failed file's staged copy is gone (${free()} bytes free)`);
    const small = randomBytes(2 * 1024 * 1024);
    t.equal(await tryWrite(path.join(c.mnt, 'after'), small), 'ok', 'the mount writes again');
    t.ok((await fsp.readFile(path.join(c.mnt, 'after'))).equals(small), 'and it reads back');
  });
});

t.test('a store too full for a write-through: the writer gets ENOSPC, the file is stored empty, the store unmounts', async (t) => {
  const disks = await withSmallDisks(t, 'strata-storefull-', [['full-store', '1m']]);
  if (!disks) return;
  const { root } = disks;
  const storeDir = disks.dirs[0]!;
  const c = await startLocal(t, { root });
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  t.equal((await fs('mount', '/full', `file://${storeDir}`)).code, 0, 'a 1 MiB store mounted at /full');
  const data = randomBytes(3 * 1024 * 1024);
  t.equal(await tryWrite(path.join(c.mnt, 'full', 'big'), data), 'ENOSPC', 'a 3 MiB write-through through the mount: ENOSPC');
  const src = path.join(root, 'src');
  await fsp.writeFile(src, data);
  const cp = await fs('cp', src, 'strata:/full/copied');
  t.not(cp.code, 0, 'fs cp of 3 MiB fails');
  t.match(cp.stderr, /no space left/);
  // Before, each stayed in the namespace empty and unpersisted for good, and /full could never be unmounted.
  for (const name of ['big', 'copied']) {
    const st = await until(
      `/full/${name} stored`,
      async () => {
        const s = JSON.parse((await fs('stat', `/full/${name}`, '--json')).stdout) as { persisted: boolean; size: number };
        return s.persisted ? s : undefined;
      },
      20_000,
    );
    t.equal(st.size, 0, `${name}: an empty file, persisted`);
    t.equal((await fsp.stat(path.join(storeDir, name))).size, 0, `${name}: in the store, empty`);
  }
  const un = await fs('unmount', '/full');
  t.equal(un.code, 0, `/full unmounts (${un.stderr.trim()})`);
});
