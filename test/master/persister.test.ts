/**
 * The persister drains the ASYNC_THROUGH queue through workers: a real SQLite
 * store and a worker stand-in on loopback HTTP that answers every persist.
 */

import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { Persister, type PersisterOptions } from '../../src/master/persister';
import { ROOT_INO } from '../../src/master/metastore';

const logger = pino({ level: 'silent' });

/**
 * A store with one registered worker stand-in (`answer` serves each persist request) and a
 * persister whose poll comes once an hour, so only what the test asks for runs; all stopped at teardown.
 */
async function setup(t: Test, answer: http.RequestListener, opts: Partial<PersisterOptions> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-persister-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const worker = http.createServer(answer);
  await new Promise<void>((r) => worker.listen(0, '127.0.0.1', r));
  const persister = new Persister({ table: store, logger, concurrency: 2, intervalMs: 3_600_000, ...opts });
  t.teardown(async () => {
    await persister.stop();
    await new Promise((r) => worker.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.registerWorker({ uuid: `persister-test-${process.pid}`, address: `http://127.0.0.1:${(worker.address() as AddressInfo).port}`, host: 'h', tiers: [], pageSize: 4096, capacityBytes: 1e9, usedBytes: 0, blocks: [] });
  const newFile = async (name: string) => (await store.createChild(ROOT_INO, name, { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false }, { writeType: 'ASYNC_THROUGH' })).ino;
  return { store, persister, newFile };
}

const persisted = (res: http.ServerResponse, ino: number) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ ufsFingerprint: `fp-${ino}`, mountUri: 'file:///x', path: `/f${ino}` }));
};
const inoOf = (req: http.IncomingMessage) => Number(/^\/persist\/(\d+)/.exec(req.url ?? '')?.[1]);

t.test('the queue drains as fast as uploads finish, not one file per slot per poll', async (t) => {
  let running = 0;
  let most = 0;
  const asked: number[] = [];
  const { store, persister, newFile } = await setup(t, (req, res) => {
    const ino = inoOf(req);
    asked.push(ino);
    most = Math.max(most, ++running);
    req.resume();
    // An upload that takes a moment, so uploads overlap when the persister runs them side by side.
    setTimeout(() => {
      running--;
      persisted(res, ino);
    }, 20);
  });
  const inos: number[] = [];
  for (let i = 0; i < 20; i++) inos.push(await newFile(`f${i}`));
  t.equal((await store.persistQueue()).length, 20, '20 empty ASYNC_THROUGH files queued, due now');

  // One persist asked for through the API starts the drain.
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
  let asked = 0;
  // Settling says no every time, as when the file was rewritten during each upload (it stays due).
  const { store, persister, newFile } = await setup(
    t,
    (req, res) => {
      asked++;
      req.resume();
      persisted(res, inoOf(req));
    },
    { settle: async () => false },
  );
  const ino = await newFile('busy');
  persister.start();
  await persister.persist(ino);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(asked, 1, 'one upload, then nothing until the next poll');
  t.equal((await store.persistQueue()).length, 1, 'the file is still queued');
});

t.test('started twice (elected again before a demotion ended) and stopped once: nothing is persisted after the stop', async (t) => {
  const asked: number[] = [];
  const { persister, newFile } = await setup(
    t,
    (req, res) => {
      asked.push(inoOf(req));
      req.resume();
      persisted(res, inoOf(req));
    },
    { intervalMs: 20 },
  );
  persister.start();
  persister.start();
  await persister.stop();
  const ino = await newFile('after-stop');
  await new Promise((r) => setTimeout(r, 300));
  t.same(asked, [], `no upload after the stop (asked for ${JSON.stringify(asked)}; ${ino} is due)`);
});
