/**
 * Cache control through the CLI against a real `strata local` cluster (master,
 * one worker with two tiers, FUSE mount): report, load, stat, du, free, pin,
 * TTLs and bad input, cross-checked through the worker's metrics, the mount and
 * the under-store directory.
 */

import t from 'tap';
import { promises as fsp, mkdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { startLocal, runCli, tempRoot, LocalCluster, CliResult } from '../helpers/cluster';

const MiB = 1024 * 1024;

interface StatJson {
  size: number;
  persisted: boolean;
  pinned: boolean;
  cachedBytes: number;
  ttl: { expiresAt: string; expiresAtMs: number; action: string } | null;
  blocks: { id: number; offset: number; length: number; locations: { worker: number; tier: string; bytes: number }[] }[];
}

interface ReportJson {
  id: number;
  address: string;
  state: string;
  tiers: { name: string; capacityBytes: number; usedBytes: number }[];
}

/** Polls `fn` until `ok` holds or `ms` pass; returns the last value (the caller asserts on it). */
async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const exists = (p: string) => fsp.stat(p).then(
  () => true,
  () => false,
);

t.test('cache control: strata fs report, load, stat, du, free, pin, setTtl', async (t) => {
  const root = tempRoot('strata-cache-');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const tiers = `mem:${path.join(root, 'tier-mem')}:32MiB,ssd:${path.join(root, 'tier-ssd')}:128MiB`;
  // 1 MiB blocks so files span several; fast heartbeats so the master learns of copies quickly.
  const c: LocalCluster = await startLocal(t, { root, args: ['--block-size', '1MiB', '--tiers', tiers], env: { STRATA_HEARTBEAT_INTERVAL_MS: '300' } });
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);

  type Tap = typeof t;
  const fs = async (t: Tap, args: string[], expectCode = 0): Promise<CliResult> => {
    const r = await runCli(['fs', ...args, '--master', c.masterUrl]);
    t.equal(r.code, expectCode, `strata fs ${args.join(' ')} exits ${expectCode}`, { stdout: r.stdout.slice(0, 2000), stderr: r.stderr.slice(0, 2000) });
    return r;
  };
  const json = async <T>(t: Tap, args: string[]): Promise<T> => JSON.parse((await fs(t, [...args, '--json'])).stdout) as T;
  const stat = (t: Tap, p: string) => json<StatJson>(t, ['stat', p]);
  const workerMetric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${c.workerUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
  };

  // Cold data: put straight into the under-store, found by Strata on first access.
  const a = randomBytes(3 * MiB + 512 * 1024);
  const b = randomBytes(MiB + 17);
  mkdirSync(u('data/sub'), { recursive: true });
  await fsp.writeFile(u('data/a.bin'), a);
  await fsp.writeFile(u('data/sub/b.bin'), b);
  await fsp.writeFile(u('data/empty'), '');
  const total = a.length + b.length;

  let workerId = 0;
  await t.test('report: one live worker with its tiers', async (t) => {
    const ws = await json<ReportJson[]>(t, ['report']);
    t.equal(ws.length, 1, 'one worker');
    const w = ws[0]!;
    workerId = w.id;
    t.match(w, { id: Number, address: c.workerUrl, state: 'live' });
    t.same(
      w.tiers.map((x) => [x.name.toLowerCase(), x.capacityBytes]),
      [
        ['mem', 32 * MiB],
        ['ssd', 128 * MiB],
      ],
      'both tiers, top first, with their quotas',
    );
    for (const x of w.tiers) t.type(x.usedBytes, 'number');
    const text = (await fs(t, ['report'])).stdout.split('\n');
    t.match(text[0], /^ID\s+ADDRESS\s+STATE\s+TIER\s+USED\s+CAPACITY/, 'a table header');
    t.match(text[1], new RegExp(`^${w.id}\\s+${c.workerUrl.replace(/[.]/g, '\\.')}\\s+live\\s+mem\\s`, 'i'), 'a row per worker, its first tier beside it');
    t.match(text[2], /^\s+ssd\s/i, 'the next tier on its own row');
  });

  await t.test('load, then stat shows every block cached', async (t) => {
    const r = await json<{ files: number; bytes: number; ufsBytes: number; blocks: number; failedBlocks: number }>(t, ['load', '/data/a.bin']);
    t.match(r, { files: 1, bytes: a.length, ufsBytes: a.length, blocks: 4, failedBlocks: 0 }, 'a cold file is read from the store');
    const st = await until(
      () => stat(t, '/data/a.bin'),
      (s) => s.cachedBytes === a.length,
    );
    t.equal(st.cachedBytes, a.length, 'cachedBytes == size once the worker reported the blocks');
    t.equal(st.persisted, true);
    t.equal(st.pinned, false);
    t.equal(st.ttl, null);
    t.same(
      st.blocks.map((x) => [x.offset, x.length]),
      [
        [0, MiB],
        [MiB, MiB],
        [2 * MiB, MiB],
        [3 * MiB, 512 * 1024],
      ],
    );
    for (const x of st.blocks) {
      t.equal(x.locations.length, 1, `block ${x.id} has a location`);
      t.match(x.locations[0], { worker: workerId, tier: /^(mem|ssd)$/i, bytes: x.length });
    }
    const human = (await fs(t, ['stat', '/data/a.bin'])).stdout;
    t.match(human, /Pinned: no {2}TTL: none/);
    t.match(human, /Cached: 3\.5 MiB of 3\.5 MiB \(100%\) in 4 blocks/);
    t.match(human, new RegExp(`block ${st.blocks[0]!.id} @0\\+1048576: worker ${workerId} (mem|ssd) 1\\.0 MiB`, 'i'));

    const again = await json<{ ufsBytes: number; bytes: number }>(t, ['load', '/data/a.bin']);
    t.match(again, { bytes: a.length, ufsBytes: 0 }, 'loading a cached file reads nothing from the store');
    t.same(await fsp.readFile(m('data/a.bin')), a, 'the bytes through the mount are the file');

    const notRecursive = await fs(t, ['load', '/data'], 1);
    t.match(notRecursive.stderr, /^strata: \/data: is a directory \(use -r\)\n$/);

    const all = await fs(t, ['load', '/data', '--recursive', '--parallel', '2', '--json']);
    t.match(JSON.parse(all.stdout), { files: 3, totalFiles: 3, bytes: total, ufsBytes: b.length, failedBlocks: 0 }, 'the rest of the tree; the cached file costs nothing');
    t.match(all.stderr, /^load: \d+(\.\d)?% .* of 4\.5 MiB, \d\/3 files, (-|\d+(\.\d)? \S*B\/s)$/m, 'plain progress lines on stderr when it is not a terminal');
    t.match(all.stderr, /^load: 100% 4\.5 MiB of 4\.5 MiB, 3\/3 files, \d+(\.\d)? \S*B\/s$/m);
    const text = await fs(t, ['load', '-r', '/data', '--no-progress']);
    t.match(text.stdout, /^loaded 3 of 3 files, 4\.5 MiB \(4718609 bytes\); read 0 B \(0 bytes\) from the under-store\n$/);
    t.equal(text.stderr, '', '--no-progress: nothing on stderr');
  });

  await t.test('du: size and cached bytes of a subtree', async (t) => {
    const du = await until(
      () => json<{ files: number; directories: number; size: number; cachedBytes: number }>(t, ['du', '/data']),
      (d) => d.cachedBytes === total,
    );
    t.same(du, { path: '/data', files: 3, directories: 2, size: total, cachedBytes: total });
    t.match((await fs(t, ['du', '/data'])).stdout, /^\s*4\.5 MiB {2}cached\s+4\.5 MiB \(100%\) {2}3 files, 2 directories {2}\/data\n$/);
    t.match(await json(t, ['du', '/data/sub/b.bin']), { files: 1, directories: 0, size: b.length, cachedBytes: b.length });
  });

  await t.test('free drops cached copies; the worker deletes them', async (t) => {
    const r = await json<{ files: number; bytes: number; skippedNotPersisted: number }>(t, ['free', '/data', '--recursive']);
    t.same(r, { path: '/data', files: 3, bytes: total, skippedNotPersisted: 0 });
    const st = await until(
      () => stat(t, '/data/a.bin'),
      (s) => s.cachedBytes === 0,
    );
    t.equal(st.cachedBytes, 0, 'stat shows nothing cached');
    t.ok(
      st.blocks.every((x) => x.locations.length === 0),
      'no block has a location',
    );
    const used = await until(
      () => json<ReportJson[]>(t, ['report']),
      (ws) => ws[0]!.tiers.every((x) => x.usedBytes === 0),
    );
    t.same(
      used[0]!.tiers.map((x) => x.usedBytes),
      [0, 0],
      'the worker dropped the pages after a heartbeat',
    );
    t.match((await fs(t, ['free', '/data/a.bin'])).stdout, /^freed 1 file: 0 B of cached copies dropped\n$/, 'freeing again drops nothing');
    t.same(await fsp.readFile(m('data/sub/b.bin')), b, 'a freed file still reads (from the store)');
  });

  await t.test('pin and unpin', async (t) => {
    t.match((await fs(t, ['pin', '/data/a.bin'])).stdout, /^pinned \/data\/a\.bin \(1 file changed\)\n$/);
    t.equal((await stat(t, '/data/a.bin')).pinned, true, 'stat shows pinned');
    t.match((await fs(t, ['stat', '/data/a.bin'])).stdout, /Pinned: yes/);
    // Freed above: the worker counts the pinned blocks it holds, once it has them again.
    await fs(t, ['load', '/data/a.bin', '--no-progress']);
    t.equal(await until(() => workerMetric('strata_worker_user_pinned_blocks'), (n) => n === 4), 4, 'the worker got the 4 pinned blocks with a heartbeat, and holds them');
    await fs(t, ['unpin', '/data/a.bin']);
    t.equal((await stat(t, '/data/a.bin')).pinned, false, 'unpinned');
    t.equal(await until(() => workerMetric('strata_worker_user_pinned_blocks'), (n) => n === 0), 0, 'the worker let them go');

    t.match(await json(t, ['pin', '/data']), { path: '/data', pinned: true, files: 3 }, 'a directory pins every file below');
    t.equal((await stat(t, '/data/sub/b.bin')).pinned, true);
    await fsp.writeFile(m('data/sub/new.txt'), 'new');
    t.equal((await stat(t, '/data/sub/new.txt')).pinned, true, 'a file created later in a pinned directory is pinned');
    await fs(t, ['unpin', '/data']);
    for (const p of ['/data', '/data/a.bin', '/data/sub/b.bin', '/data/sub/new.txt']) t.equal((await stat(t, p)).pinned, false, `${p} unpinned`);
  });

  await t.test('setTtl --action free: cached copies go when it fires, the file stays', async (t) => {
    await fs(t, ['load', '/data/a.bin']);
    await until(
      () => stat(t, '/data/a.bin'),
      (s) => s.cachedBytes === a.length,
    );
    const set = await fs(t, ['setTtl', '/data/a.bin', '1s']);
    t.match(set.stdout, /^\/data\/a\.bin: free at \d{4}-\d\d-\d\dT[\d:.]+Z\n$/, 'free is the default action');
    const st = await until(
      () => stat(t, '/data/a.bin'),
      (s) => s.cachedBytes === 0 && s.ttl === null,
    );
    t.equal(st.cachedBytes, 0, 'freed when the TTL passed');
    t.equal(st.ttl, null, 'the TTL is cleared once it fired');
    t.ok(await exists(u('data/a.bin')), 'still in the under-store');
    t.same(await fsp.readFile(m('data/a.bin')), a, 'still readable');

    const later = await json<{ ttl: { action: string; expiresAtMs: number } }>(t, ['setTtl', '/data/a.bin', '2h', '--action', 'delete']);
    t.equal(later.ttl.action, 'delete');
    t.ok(Math.abs(later.ttl.expiresAtMs - (Date.now() + 2 * 3600_000)) < 60_000, 'two hours from now');
    t.match((await stat(t, '/data/a.bin')).ttl, { action: 'delete', expiresAt: String });
    t.match((await fs(t, ['unsetTtl', '/data/a.bin'])).stdout, /^\/data\/a\.bin: no TTL\n$/);
    t.equal((await stat(t, '/data/a.bin')).ttl, null, 'unset');
  });

  await t.test('setTtl --action delete removes the file, and a directory with its contents, from the mount and the store', async (t) => {
    await fsp.writeFile(m('data/gone.bin'), randomBytes(1000));
    await fsp.mkdir(m('data/tmp'));
    await fsp.writeFile(m('data/tmp/x'), 'x');
    t.ok(await exists(u('data/gone.bin')), 'written through to the store');
    await fs(t, ['setTtl', '/data/gone.bin', '500ms', '--action', 'delete']);
    await fs(t, ['setTtl', '/data/tmp', '1500', '--action', 'delete']);
    t.equal(await until(() => exists(u('data/gone.bin')), (e) => !e), false, 'the file is gone from the under-store');
    t.equal(await until(() => exists(u('data/tmp')), (e) => !e), false, 'the directory is gone from the under-store');
    // The kernel may keep the entry for its 1 s entry timeout.
    t.equal(await until(() => exists(m('data/gone.bin')), (e) => !e, 5000), false, 'gone from the mount');
    t.equal(await until(() => exists(m('data/tmp')), (e) => !e, 5000), false);
    const r = await fs(t, ['stat', '/data/gone.bin'], 1);
    t.match(r.stderr, /^strata: \/data\/gone\.bin: no such file or directory\n$/);
    t.ok(await exists(u('data/a.bin')), 'the rest is untouched');
  });

  await t.test('bad input: a clear message and a nonzero exit', async (t) => {
    const dir = await fs(t, ['free', '/data'], 1);
    t.equal(dir.stderr, 'strata: /data: is a directory (use -r)\n', 'free of a directory without --recursive');
    for (const d of ['10x', '0', '-', 'soon', '']) {
      const bad = await fs(t, ['setTtl', '/data/a.bin', d], 2);
      t.match(bad.stderr, /^strata: bad duration '.*': use a number of milliseconds or a number with s, m, h or d/, `duration '${d}'`);
    }
    t.equal((await stat(t, '/data/a.bin')).ttl, null, 'no TTL was set by the bad commands');
    const action = await fs(t, ['setTtl', '/data/a.bin', '1h', '--action', 'nuke'], 2);
    t.match(action.stderr, /'nuke' is invalid\. Allowed choices are free, delete/);
    const parallel = await fs(t, ['load', '/data/a.bin', '--parallel', '0'], 2);
    t.match(parallel.stderr, /^strata: --parallel must be an integer from 1 to 64/);
    for (const args of [['du', '/missing'], ['pin', '/missing'], ['free', '/missing'], ['load', '/missing'], ['setTtl', '/missing', '1s'], ['unsetTtl', '/missing']]) {
      const r = await fs(t, args, 1);
      t.match(r.stderr, /^strata: \/missing: no such file or directory\n$/, `${args[0]} of a missing path`);
    }
  });
});
