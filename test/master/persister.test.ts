/**
 * The persister drains the ASYNC_THROUGH queue through workers: a real SQLite
 * store and a worker stand-in on loopback HTTP that answers every persist.
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { Persister } from '../../src/master/persister';
import { ROOT_INO } from '../../src/master/metastore';

const logger = pino({ level: 'silent' });

t.test('the queue drains as fast as uploads finish, not one file per slot per poll', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-persister-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  let running = 0;
  let most = 0;
  const asked: number[] = [];
  const worker = http.createServer((req, res) => {
    const ino = Number(/^\/persist\/(\d+)/.exec(req.url ?? '')?.[1]);
    asked.push(ino);
    most = Math.max(most, ++running);
    req.resume();
    // An upload that takes a moment, so uploads overlap when the persister runs them side by side.
    setTimeout(() => {
      running--;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ufsFingerprint: `fp-${ino}`, mountUri: 'file:///x', path: `/f${ino}` }));
    }, 20);
  });
  await new Promise<void>((r) => worker.listen(0, '127.0.0.1', r));
  const persister = new Persister({ table: store, logger, concurrency: 2, intervalMs: 3_600_000 });
  t.teardown(async () => {
    await persister.stop();
    await new Promise((r) => worker.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.registerWorker({ uuid: 'persister-test-worker', address: `http://127.0.0.1:${(worker.address() as AddressInfo).port}`, host: 'h', tiers: [], pageSize: 4096, capacityBytes: 1e9, usedBytes: 0, blocks: [] });
  const inos: number[] = [];
  for (let i = 0; i < 20; i++) inos.push((await store.createChild(ROOT_INO, `f${i}`, { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false }, { writeType: 'ASYNC_THROUGH' })).ino);
  t.equal((await store.persistQueue()).length, 20, '20 empty ASYNC_THROUGH files queued, due now');

  // The poll comes only once an hour here: one persist asked for through the API starts the drain.
  persister.start();
  await persister.persist(inos[0]!);
  for (const deadline = Date.now() + 30_000; Date.now() < deadline && (await store.persistQueue()).length > 0; ) await new Promise((r) => setTimeout(r, 50));
  t.same(await store.persistQueue(), [], 'every queued file was persisted without waiting for a poll');
  t.same([...new Set(asked)].sort((a, b) => a - b), inos, 'each file was uploaded');
  t.equal(asked.length, 20, 'once');
  t.ok(most <= 2, `never more than the configured 2 at once (saw ${most})`);
  for (const ino of inos) t.equal((await store.requireNode(ino)).persistState, 'persisted');
});

t.test('an upload the file outran (not counted as persisted) is not repeated back to back: it waits for the poll', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-persister-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  let asked = 0;
  const worker = http.createServer((req, res) => {
    asked++;
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ufsFingerprint: 'fp', mountUri: 'file:///x', path: '/f' }));
  });
  await new Promise<void>((r) => worker.listen(0, '127.0.0.1', r));
  // Settling says no every time, as when the file was rewritten during each upload (it stays due).
  const persister = new Persister({ table: store, logger, concurrency: 2, intervalMs: 3_600_000, settle: async () => false });
  t.teardown(async () => {
    await persister.stop();
    await new Promise((r) => worker.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.registerWorker({ uuid: 'persister-test-worker-2', address: `http://127.0.0.1:${(worker.address() as AddressInfo).port}`, host: 'h', tiers: [], pageSize: 4096, capacityBytes: 1e9, usedBytes: 0, blocks: [] });
  const f = await store.createChild(ROOT_INO, 'busy', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false }, { writeType: 'ASYNC_THROUGH' });
  persister.start();
  await persister.persist(f.ino);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(asked, 1, 'one upload, then nothing until the next poll');
  t.equal((await store.persistQueue()).length, 1, 'the file is still queued');
});
