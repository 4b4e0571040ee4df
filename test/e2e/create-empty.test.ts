/**
 * A file created through the mount and closed unwritten (touch, open O_CREAT, a lock
 * file). Where recording it needs no under-store call (ASYNC_THROUGH, MUST_CACHE) the
 * create itself records it complete and empty, so the close asks the master nothing;
 * ASYNC_THROUGH still stores the empty object, later. A file created and then written
 * commits over that and ends in the store with its content. CACHE_THROUGH stores the
 * empty object before the close returns, as before.
 */

import t from 'tap';
import { existsSync, readFileSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { startCluster } from '../helpers/multi-cluster';
import { INCOMING_DIR } from '../../src/common/protocol';
import Database from 'better-sqlite3';

async function masterCount(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^strata_http_request_seconds_count\\{[^}]*route="${route.replace(/\//g, '\\/')}"[^}]*\\} (\\d+)`, 'gm'))) n += Number(m[1]);
  return n;
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('files closed unwritten: one request where the write type allows, and each write type keeps its promise', async (t) => {
  const types = ['ASYNC_THROUGH', 'MUST_CACHE', 'CACHE_THROUGH'] as const;
  const c = await startCluster(t, { workers: 1, mounts: 3, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: (i) => ['--write-type', types[i]!] });
  const [asyncMnt, cacheMnt, throughMnt] = c.mounts as [string, string, string];
  const inStore = (name: string) => path.join(c.ufsDir, name);

  const empties = await masterCount(c.masterUrl, '/api/v1/write/empty');
  for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(asyncMnt, `a${i}`), '');
  for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(cacheMnt, `m${i}`), '');
  t.equal(await masterCount(c.masterUrl, '/api/v1/write/empty'), empties, 'ASYNC_THROUGH and MUST_CACHE: the closes asked the master nothing');
  for (let i = 0; i < 5; i++) {
    t.equal((await fsp.stat(path.join(throughMnt, `a${i}`))).size, 0, `a${i} is there, empty, for another mount`);
    t.equal((await fsp.stat(path.join(throughMnt, `m${i}`))).size, 0, `m${i} too`);
  }

  await fsp.writeFile(path.join(throughMnt, 'c'), '');
  t.ok(existsSync(inStore('c')), 'CACHE_THROUGH: the empty object is in the store when the close returns');
  t.equal(await masterCount(c.masterUrl, '/api/v1/write/empty'), empties + 1, 'and the close recorded it');

  // Created, then written a moment later on the same descriptor: its content is what lands.
  const fh = await fsp.open(path.join(asyncMnt, 'w'), 'wx');
  await new Promise((r) => setTimeout(r, 300));
  await fh.writeFile('content');
  await fh.close();
  t.equal(await fsp.readFile(path.join(throughMnt, 'w'), 'utf8'), 'content', 'another mount reads what was written after the create');

  // A file created and written: the create began its write, so the close asks for no write/begin; an existing file's rewrite does.
  const begins = await masterCount(c.masterUrl, '/api/v1/write/begin');
  const commits = await masterCount(c.masterUrl, '/api/v1/write/commit');
  const mounts = [asyncMnt, cacheMnt, throughMnt];
  for (const [i, mnt] of mounts.entries()) for (let j = 0; j < 3; j++) await fsp.writeFile(path.join(mnt, `b-${types[i]}-${j}`), `${types[i]} ${j}`);
  t.equal(await masterCount(c.masterUrl, '/api/v1/write/begin'), begins, 'created and written: no write/begin request');
  t.equal(await masterCount(c.masterUrl, '/api/v1/write/commit'), commits + 9, 'one commit per file');
  for (const [i, mnt] of mounts.entries()) {
    const other = mounts[(i + 1) % 3]!;
    for (let j = 0; j < 3; j++) t.equal(await fsp.readFile(path.join(other, `b-${types[i]}-${j}`), 'utf8'), `${types[i]} ${j}`, `${types[i]} b${j}: another mount reads what was written`);
  }
  t.equal(readFileSync(inStore('b-CACHE_THROUGH-0'), 'utf8'), 'CACHE_THROUGH 0', 'CACHE_THROUGH: the content is in the store when the close returns');
  // Same host: the files were handed over through the worker's incoming dir, and no link is left there.
  const workerMetrics = await (await fetch(`${c.workers[0]!.url}/metrics`)).text();
  t.ok(Number(/^strata_worker_written_bytes_total\{[^}]*via="local"[^}]*\} (\d+)/m.exec(workerMetrics)?.[1] ?? 0) > 0, 'written through handed-over files');
  const incoming = (await fsp.readdir(c.workers[0]!.home, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory() && e.name === INCOMING_DIR);
  t.ok(incoming.length > 0, 'the worker has an incoming dir');
  for (const e of incoming) t.same(await fsp.readdir(path.join(e.parentPath ?? e.path, e.name)), [], 'no handed-over link is left in it');
  await fsp.writeFile(path.join(throughMnt, 'b-CACHE_THROUGH-0'), 'again');
  t.equal(await masterCount(c.masterUrl, '/api/v1/write/begin'), begins + 1, 'rewriting an existing file begins its write');
  t.equal(await fsp.readFile(path.join(asyncMnt, 'b-CACHE_THROUGH-0'), 'utf8'), 'again', 'and the rewrite is read back');

  await until('ASYNC_THROUGH stores the files closed unwritten', () => [0, 1, 2, 3, 4].every((i) => existsSync(inStore(`a${i}`))), 20_000);
  for (let i = 0; i < 5; i++) t.equal((await fsp.stat(inStore(`a${i}`))).size, 0, `a${i} is stored empty`);
  await until('and the written one', () => existsSync(inStore('w')) && readFileSync(inStore('w'), 'utf8') === 'content', 20_000);
  t.pass('the written file is stored with its content');
  for (let i = 0; i < 5; i++) t.notOk(existsSync(inStore(`m${i}`)), `MUST_CACHE: m${i} never reaches the store`);
});

t.test('an ASYNC_THROUGH file closed empty reaches the store while no worker is up: the master writes the empty object', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: () => ['--write-type', 'ASYNC_THROUGH'] });
  const mnt = c.mounts[0]!;
  for (let i = 0; i < 3; i++) await fsp.writeFile(path.join(mnt, `e${i}`), '');
  await fsp.mkdir(path.join(mnt, 'job'));
  await fsp.writeFile(path.join(mnt, 'job', '_SUCCESS'), '');
  // Before the persist (a file created empty waits 5 s for content): no worker is left to ask.
  await c.workers[0]!.kill();
  const names = ['e0', 'e1', 'e2', 'job/_SUCCESS'];
  await until('the empty files are in the store', () => names.every((n) => existsSync(path.join(c.ufsDir, n))), 20_000);
  for (const n of names) t.equal((await fsp.stat(path.join(c.ufsDir, n))).size, 0, `${n} is stored, empty`);
  const q = (await (await fetch(`${c.masterUrl}/metrics`)).text()).match(/^strata_master_persist_queue_length(?:\{[^}]*\})? (\d+)/m);
  t.equal(Number(q?.[1]), 0, 'and nothing is left in the persist queue');
});

t.test("a file written after the write its create began expired: the close begins it again and stores the bytes", async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: () => ['--write-type', 'MUST_CACHE'] });
  const mnt = c.mounts[0]!;
  const db = new Database(path.join(c.master.home, 'master', 'strata.db'));
  t.teardown(() => db.close());
  const openWrites = () => (db.prepare('SELECT count(*) AS n FROM open_write').get() as { n: number }).n;
  const fh = await fsp.open(path.join(mnt, 'late'), 'wx');
  t.equal(openWrites(), 1, 'the create began a write');
  // As if no one had renewed it for longer than the master keeps writes: its next expiry pass ends it.
  db.prepare('UPDATE open_write SET renewed_at = 0').run();
  await until('the master expires the begun write', () => openWrites() === 0, 20_000);
  await fh.writeFile('written late');
  await t.resolves(fh.close(), 'the close succeeds');
  t.equal(await fsp.readFile(path.join(mnt, 'late'), 'utf8'), 'written late', 'and the bytes read back');
});
