/**
 * The mount table and write types through a real mount: several stores in one
 * namespace, read-only mounts, EXDEV, forced sync, and every write type, including
 * an ASYNC_THROUGH file that is persisted after a SIGKILL of the master.
 */

import t from 'tap';
import { spawn, ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { CLI, forceUnmount, runCli, startLocal, tempRoot } from '../helpers/cluster';

const waitFor = async (what: string, fn: () => Promise<boolean>, ms = 15_000) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
};

t.test('several stores in one namespace', async (t) => {
  const c = await startLocal(t);
  const other = path.join(c.root, 'other');
  const ro = path.join(c.root, 'ro');
  await fsp.mkdir(other);
  await fsp.mkdir(ro);
  await fsp.writeFile(path.join(ro, 'r.txt'), 'read only');
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);

  t.equal((await fs('mount', '/other', `file://${other}`)).code, 0, 'mount a second store');
  t.equal((await fs('mount', '/ro', `file://${ro}`, '--readonly')).code, 0, 'mount a read-only store');
  const list = await fs('mount', '--json');
  const mounts = JSON.parse(list.stdout) as { path: string; uri: string; readOnly: boolean }[];
  t.same(mounts.map((m) => [m.path, m.readOnly]), [['/', false], ['/other', false], ['/ro', true]], 'mount table');

  await fsp.writeFile(path.join(c.mnt, 'a.txt'), 'in root');
  await fsp.copyFile(path.join(c.mnt, 'a.txt'), path.join(c.mnt, 'other', 'b.txt'));
  t.equal(await fsp.readFile(path.join(other, 'b.txt'), 'utf8'), 'in root', 'cp between stores lands in the second store');
  await t.rejects(fsp.rename(path.join(c.mnt, 'a.txt'), path.join(c.mnt, 'other', 'a.txt')), { code: 'EXDEV' }, 'rename across mounts is EXDEV');

  const lake = path.join(c.root, 'lake');
  await fsp.mkdir(lake);
  await fsp.writeFile(path.join(lake, 'l.txt'), 'lake');
  await fsp.mkdir(path.join(c.mnt, 'lakes'));
  t.equal((await fs('mount', '/lakes/one', `file://${lake}`)).code, 0, 'a mount in a subdirectory');
  await t.rejects(fsp.rename(path.join(c.mnt, 'lakes'), path.join(c.mnt, 'lakes2')), { code: 'EBUSY' }, 'a directory holding a mount point cannot be renamed');
  await fsp.mkdir(path.join(c.mnt, 'spare'));
  await t.rejects(fsp.rename(path.join(c.mnt, 'spare'), path.join(c.mnt, 'lakes')), { code: 'EBUSY' }, 'nor replaced');
  t.equal(await fsp.readFile(path.join(c.mnt, 'lakes', 'one', 'l.txt'), 'utf8'), 'lake', 'the mount still answers at its path');
  t.equal((await fs('unmount', '/lakes/one')).code, 0, 'and can be unmounted');

  t.equal(await fsp.readFile(path.join(c.mnt, 'ro', 'r.txt'), 'utf8'), 'read only');
  await t.rejects(fsp.writeFile(path.join(c.mnt, 'ro', 'new'), 'x'), { code: 'EROFS' });
  await t.rejects(fsp.unlink(path.join(c.mnt, 'ro', 'r.txt')), { code: 'EROFS' });
  await t.rejects(fsp.mkdir(path.join(c.mnt, 'ro', 'd')), { code: 'EROFS' });

  const bad = await fs('mount', '/a.txt', `file://${other}`);
  t.equal(bad.code, 1, 'mounting over a file fails');
  await fsp.mkdir(path.join(c.mnt, 'full'));
  await fsp.writeFile(path.join(c.mnt, 'full', 'x'), 'x');
  const full = await fs('mount', '/full', `file://${other}`);
  t.equal(full.code, 1, 'mounting over a non-empty dir fails');
  t.match(full.stderr, /not empty/);
  const missing = await fs('mount', '/gone', `file://${path.join(c.root, 'does-not-exist')}`);
  t.equal(missing.code, 1, 'mounting an unreachable store fails');
  await t.rejects(fsp.stat(path.join(c.mnt, 'gone')), { code: 'ENOENT' }, 'a failed mount changes nothing');
  t.equal((await fs('mount', '/x', 'ftp://nowhere/')).code, 2, 'unknown scheme is refused as bad usage');
  // Option keys the store's driver does not read are refused, not stored to do nothing.
  const bogus = await fs('mount', '/opt', `file://${other}`, '--option', 'bogus=1');
  t.equal(bogus.code, 2, 'an unknown mount option is bad usage');
  t.match(bogus.stderr, /unknown option 'bogus' for a file store; known: readonly, sync\.interval\.ms, write\.type/);
  const typo = await fs('mount', '/opt', 's3://lake/x', '--option', 's3.endpint=http://127.0.0.1:1', '--option', 's3.pathStyle=true');
  t.equal(typo.code, 2, 'a misspelt driver option is bad usage');
  t.match(typo.stderr, /unknown option 's3\.endpint' for a s3 store \(did you mean 's3\.endpoint'\?\)/);
  const badValue = await fs('mount', '/opt', `file://${other}`, '--option', 'write.type=FAST');
  t.equal(badValue.code, 2, 'a bad value of a mount option is bad usage');
  t.match(badValue.stderr, /write\.type must be one of/);
  await t.rejects(fsp.stat(path.join(c.mnt, 'opt')), { code: 'ENOENT' }, 'refused mounts change nothing');
  t.notOk((JSON.parse((await fs('mount', '--json')).stdout) as { path: string }[]).some((m) => m.path === '/opt'), 'nor the mount table');

  await fsp.mkdir(path.join(c.root, 'inner'));
  t.equal((await fs('mount', '/other/inner', `file://${path.join(c.root, 'inner')}`)).code, 0, 'a mount inside a mount');
  const busy = await fs('unmount', '/other');
  t.equal(busy.code, 1, 'the outer one cannot go first');
  t.equal(busy.stderr, 'strata: /other: busy: other stores are mounted below /other; unmount them first\n', 'and says why');
  t.equal((await fs('unmount', '/other/inner')).code, 0);
  t.equal((await fs('unmount', '/ro')).code, 0, 'unmount');
  await t.rejects(fsp.stat(path.join(c.mnt, 'ro', 'r.txt')), { code: 'ENOENT' });
  t.equal((await fs('unmount', '/')).code, 1, 'the root cannot be unmounted');
});

t.test('metadata sync: out-of-band changes with sync disabled show after fs sync', async (t) => {
  const c = await startLocal(t, { args: ['--sync-interval-ms', '-1'] });
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  await fsp.mkdir(path.join(c.mnt, 'd'));
  t.same(await fsp.readdir(path.join(c.mnt, 'd')), []);
  await fsp.writeFile(path.join(c.ufsDir, 'd', 'late.txt'), 'late');
  const before = JSON.parse((await fs('ls', '/d', '--json')).stdout) as unknown[];
  t.equal(before.length, 0, 'not seen while the listing is fresh and sync is off');
  const after = JSON.parse((await fs('ls', '/d', '--json', '--sync')).stdout) as { name: string }[];
  t.same(after.map((e) => e.name), ['late.txt'], 'ls --sync loads it');
  await fsp.rm(path.join(c.ufsDir, 'd', 'late.txt'));
  t.equal((await fs('sync', '/d')).code, 0);
  t.same(JSON.parse((await fs('ls', '/d', '--json')).stdout), [], 'fs sync drops what the store lost');

  // Paths the namespace does not know yet: a new file, and a new file in new directories.
  await fsp.writeFile(path.join(c.ufsDir, 'd', 'newer'), 'n1');
  await fsp.mkdir(path.join(c.ufsDir, 'd', 'nd', 'deep'), { recursive: true });
  await fsp.writeFile(path.join(c.ufsDir, 'd', 'nd', 'deep', 'f'), 'deep');
  t.equal((await fs('sync', '/d/newer')).code, 0, 'fs sync of a file new in the store');
  t.equal((await fs('sync', '/d/nd/deep/f')).code, 0, 'fs sync of a file in directories new in the store');
  t.equal((await fs('cat', '/d/newer')).stdout, 'n1');
  t.equal((await fs('cat', '/d/nd/deep/f')).stdout, 'deep');
  // A known file deleted in the store: the sync drops it, and that is a sync done.
  await fsp.rm(path.join(c.ufsDir, 'd', 'newer'));
  t.equal((await fs('sync', '/d/newer')).code, 0, 'fs sync of a file deleted in the store succeeds');
  t.equal((await fs('stat', '/d/newer')).code, 1, 'and the file is gone');
  const missing = await fs('sync', '/d/nowhere/x');
  t.equal(missing.code, 1, 'a path in neither the namespace nor the store is an error');
  t.match(missing.stderr, /does not exist|no such file/i);
});

t.test('fs sync of a file deleted in the store, once the sync interval passed: the file goes, and the sync succeeds', async (t) => {
  const c = await startLocal(t, { args: ['--sync-interval-ms', '1000'] });
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  await fsp.mkdir(path.join(c.ufsDir, 'e'));
  await fsp.writeFile(path.join(c.ufsDir, 'e', 'f'), 'x');
  t.equal((await fs('sync', '/e/f')).code, 0);
  await new Promise((r) => setTimeout(r, 1300));
  await fsp.rm(path.join(c.ufsDir, 'e', 'f'));
  const r = await fs('sync', '/e/f');
  t.equal(r.code, 0, 'fs sync exits 0', { stderr: r.stderr });
  t.equal((await fs('stat', '/e/f')).code, 1, 'and the file is gone');
});

t.test('write types', async (t) => {
  const c = await startLocal(t);
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  const stores: Record<string, string> = {};
  for (const wt of ['MUST_CACHE', 'CACHE_THROUGH', 'THROUGH', 'ASYNC_THROUGH']) {
    stores[wt] = path.join(c.root, wt);
    await fsp.mkdir(stores[wt]!);
    t.equal((await fs('mount', `/${wt}`, `file://${stores[wt]}`, '--option', `write.type=${wt}`)).code, 0);
  }
  const data = randomBytes(3 * 1024 * 1024 + 7);
  const persisted = async (p: string) => JSON.parse((await fs('stat', p, '--json')).stdout).persisted as boolean;

  await fsp.writeFile(path.join(c.mnt, 'CACHE_THROUGH', 'f'), data);
  t.ok((await fsp.readFile(path.join(stores.CACHE_THROUGH!, 'f'))).equals(data), 'CACHE_THROUGH: in the store at close');
  t.equal(await persisted('/CACHE_THROUGH/f'), true);

  await fsp.writeFile(path.join(c.mnt, 'THROUGH', 'f'), data);
  t.ok((await fsp.readFile(path.join(stores.THROUGH!, 'f'))).equals(data), 'THROUGH: in the store at close');
  t.ok((await fsp.readFile(path.join(c.mnt, 'THROUGH', 'f'))).equals(data), 'THROUGH: reads back (filled from the store)');

  await fsp.writeFile(path.join(c.mnt, 'MUST_CACHE', 'f'), data);
  await t.rejects(fsp.stat(path.join(stores.MUST_CACHE!, 'f')), { code: 'ENOENT' }, 'MUST_CACHE: not in the store');
  t.ok((await fsp.readFile(path.join(c.mnt, 'MUST_CACHE', 'f'))).equals(data), 'MUST_CACHE: reads back from the cache');
  t.equal(await persisted('/MUST_CACHE/f'), false);
  t.equal((await fs('persist', '/MUST_CACHE/f')).code, 0, 'fs persist');
  t.ok((await fsp.readFile(path.join(stores.MUST_CACHE!, 'f'))).equals(data), 'persisted on demand');
  t.equal(await persisted('/MUST_CACHE/f'), true);

  await fsp.writeFile(path.join(c.mnt, 'ASYNC_THROUGH', 'f'), data);
  t.ok((await fsp.readFile(path.join(c.mnt, 'ASYNC_THROUGH', 'f'))).equals(data), 'ASYNC_THROUGH: reads back at once');
  await waitFor('the async persist', async () => (await fsp.readFile(path.join(stores.ASYNC_THROUGH!, 'f'))).equals(data));
  await waitFor('persisted: true', () => persisted('/ASYNC_THROUGH/f'));
  t.pass('ASYNC_THROUGH: persisted in the background');

  // Empty files take a shorter path (no worker); each write type still holds.
  for (const wt of ['MUST_CACHE', 'CACHE_THROUGH', 'THROUGH', 'ASYNC_THROUGH']) await fsp.writeFile(path.join(c.mnt, wt, 'empty'), '');
  t.equal((await fsp.stat(path.join(stores.CACHE_THROUGH!, 'empty'))).size, 0, 'CACHE_THROUGH: an empty file is in the store at close');
  t.equal((await fsp.stat(path.join(stores.THROUGH!, 'empty'))).size, 0, 'THROUGH: an empty file is in the store at close');
  await t.rejects(fsp.stat(path.join(stores.MUST_CACHE!, 'empty')), { code: 'ENOENT' }, 'MUST_CACHE: an empty file is not in the store');
  t.equal(await persisted('/MUST_CACHE/empty'), false);
  await waitFor('the async persist of an empty file', async () => (await fsp.stat(path.join(stores.ASYNC_THROUGH!, 'empty')).catch(() => undefined))?.size === 0);
  await waitFor('empty file persisted: true', () => persisted('/ASYNC_THROUGH/empty'));
  t.pass('ASYNC_THROUGH: an empty file is persisted in the background');
});

/** master, worker and mount as separate processes, so the master alone can be killed. */
t.test('ASYNC_THROUGH survives a SIGKILL of the master before it persisted', async (t) => {
  const root = tempRoot();
  const home = path.join(root, 'home');
  const ufs = path.join(root, 'ufs');
  const mnt = path.join(root, 'mnt');
  await fsp.mkdir(ufs);
  await fsp.mkdir(mnt);
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    forceUnmount(mnt);
    await fsp.rm(root, { recursive: true, force: true });
  });
  const start = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ p: ChildProcess; out: string }>((resolve, reject) => {
      const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...env } });
      procs.push(p);
      let out = '';
      p.stdout!.on('data', (d) => {
        out += d;
        if (/listening on|serving on|mounted at/.test(out)) resolve({ p, out });
      });
      let err = '';
      p.stderr!.on('data', (d) => (err += d));
      p.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
    });
  const masterArgs = ['master', '--home', path.join(home, 'm'), '--port', '0', '--ufs', `file://${ufs}`, '--write-type', 'ASYNC_THROUGH'];
  const m1 = await start(masterArgs, { STRATA_PERSIST_INITIAL_WAIT_MS: '60000' });
  const url = /listening on (http:\/\/\S+)/.exec(m1.out)![1]!;
  const port = new URL(url).port;
  await start(['worker', '--home', path.join(home, 'w'), '--port', '0', '--master', url]);
  await start(['mount', '--home', path.join(home, 'c'), '--master', url, mnt]);
  const data = randomBytes(2 * 1024 * 1024);
  await fsp.writeFile(path.join(mnt, 'async.bin'), data);
  await t.rejects(fsp.stat(path.join(ufs, 'async.bin')), { code: 'ENOENT' }, 'not persisted yet (the first attempt waits 60 s)');
  m1.p.kill('SIGKILL');
  await new Promise((r) => m1.p.once('exit', r));
  // Same home and port: the queue is in the master's database.
  await start(['master', '--home', path.join(home, 'm'), '--port', port, '--ufs', `file://${ufs}`, '--write-type', 'ASYNC_THROUGH'], { STRATA_PERSIST_INITIAL_WAIT_MS: '0' });
  const queue = (await (await fetch(`${url}/api/v1/persist-queue`)).json()) as { ino: number }[];
  t.equal(queue.length, 1, 'the persist queue survived the SIGKILL of the master');
  // The queued row kept its 60 s due time; `fs persist` runs it now through the restarted master.
  const r = await runCli(['fs', 'persist', '/async.bin', '--master', url]);
  t.equal(r.code, 0, `persist after restart: ${r.stderr}`);
  t.ok((await fsp.readFile(path.join(ufs, 'async.bin'))).equals(data), 'the file reached the store after the master restart');
  t.ok((await fsp.readFile(path.join(mnt, 'async.bin'))).equals(data), 'and reads back through the mount');
});

t.test('nested mounts, and the mount table survives a restart', async (t) => {
  const c1 = await startLocal(t);
  const outer = path.join(c1.root, 'outer');
  const inner = path.join(c1.root, 'inner');
  await fsp.mkdir(outer);
  await fsp.mkdir(inner);
  const fs = (url: string, ...a: string[]) => runCli(['fs', ...a, '--master', url]);
  t.equal((await fs(c1.masterUrl, 'mount', '/outer', `file://${outer}`)).code, 0);
  t.equal((await fs(c1.masterUrl, 'mount', '/outer/inner', `file://${inner}`, '--option', 'write.type=THROUGH')).code, 0, 'a mount inside a mount');
  await fsp.writeFile(path.join(c1.mnt, 'outer', 'o.txt'), 'outer');
  await fsp.writeFile(path.join(c1.mnt, 'outer', 'inner', 'i.txt'), 'inner');
  t.equal(await fsp.readFile(path.join(outer, 'o.txt'), 'utf8'), 'outer');
  t.equal(await fsp.readFile(path.join(inner, 'i.txt'), 'utf8'), 'inner', 'the nested store got its file');
  t.equal((await fs(c1.masterUrl, 'unmount', '/outer')).code, 1, 'a store with a mount below it cannot be unmounted');
  t.equal(await c1.stop(), 0);

  const c2 = await startLocal(t, { reuse: { home: c1.home, mnt: c1.mnt, ufsDir: c1.ufsDir } });
  const mounts = JSON.parse((await fs(c2.masterUrl, 'mount', '--json')).stdout) as { path: string; options: Record<string, string> }[];
  t.same(mounts.map((m) => m.path), ['/', '/outer', '/outer/inner'], 'the mount table survived the restart');
  t.equal(mounts[2]!.options['write.type'], 'THROUGH', 'with its options');
  t.equal(await fsp.readFile(path.join(c2.mnt, 'outer', 'inner', 'i.txt'), 'utf8'), 'inner');
});
