/**
 * Reads a worker serves without caching (NO_CACHE, or no room in the cache) hold the
 * store's bytes in memory only a window ahead of their client: a slow or stalled client
 * made its read's fills hold the whole range it asked for (a 64 MiB block per request).
 * All such reads of a worker together hold at most its read memory (and the page each
 * client takes next).
 */

import t from 'tap';
import * as http from 'node:http';
import { randomBytes, createHash } from 'node:crypto';
import { writeFileSync, mkdirSync, truncateSync } from 'node:fs';
import * as path from 'node:path';
import { inProcessCluster, until } from '../helpers/in-process';
import { tempRoot } from '../helpers/cluster';

const MiB = 1024 * 1024;

async function heldBytes(workerUrl: string): Promise<number> {
  const text = await (await fetch(`${workerUrl}/metrics`)).text();
  const m = /^strata_worker_read_held_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text);
  if (!m) throw new Error('no strata_worker_read_held_bytes in the worker metrics');
  return Number(m[1]);
}

/** The held bytes once fills stop adding to them (within 4 s): what stalled clients leave held. */
async function steadyHeldBytes(workerUrl: string): Promise<number> {
  let last = -1;
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await heldBytes(workerUrl);
    if (now === last && now > 0) break;
    last = now;
  }
  return heldBytes(workerUrl);
}

t.test('a NO_CACHE read of a stalled client holds at most a window of pages', async (t) => {
  const ufs = tempRoot('strata-read-window-ufs-');
  mkdirSync(ufs, { recursive: true });
  const data = randomBytes(48 * MiB);
  writeFileSync(path.join(ufs, 'big'), data);
  const c = await inProcessCluster(t, 'read-window', { ufsUri: `file://${ufs}` });
  const fs = await c.client('CACHE_THROUGH');
  const { blocks } = await fs.master.fileBlocks('/big');
  t.equal(blocks.length, 1, 'one block');
  const url = `${c.workerUrl}/blocks/${blocks[0]!.id}?offset=0&length=${data.length}&readType=NO_CACHE`;

  // A client that takes the first bytes, then stops reading.
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));
  t.equal(res.statusCode, 200);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => res.once('data', (d: Buffer) => (chunks.push(d), resolve())));
  res.pause();
  // The fills run until the window is full (and the sockets' buffers are).
  const held = await steadyHeldBytes(c.workerUrl);
  t.ok(held > 0, `pages are held for the stalled client (${held / MiB} MiB)`);
  t.ok(held <= 17 * MiB, `no more than the window of 16 MiB and a page (${held / MiB} MiB of the 48 asked for)`);

  // It reads on: every byte arrives, in order.
  const hash = createHash('sha256');
  for (const ch of chunks) hash.update(ch);
  await new Promise<void>((resolve, reject) => {
    res.on('data', (d: Buffer) => hash.update(d));
    res.once('end', resolve);
    res.once('error', reject);
    res.resume();
  });
  t.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'), 'the whole range reads back');
  await until('nothing held after the read', async () => (await heldBytes(c.workerUrl)) === 0, 10_000);

  // A client that goes away midway: what its fills fetch after is dropped, nothing stays held.
  const gone = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));
  await new Promise<void>((resolve) => gone.once('data', () => resolve()));
  gone.destroy();
  await until('nothing held after the client went away', async () => (await heldBytes(c.workerUrl)) === 0, 10_000);
  t.pass('nothing held');
});

t.test('a NO_CACHE read whose fill fails while later fills wait for its client ends with an error, not a hang', async (t) => {
  const ufs = tempRoot('strata-read-window-fail-ufs-');
  mkdirSync(ufs, { recursive: true });
  const file = path.join(ufs, 'big');
  writeFileSync(file, randomBytes(48 * MiB));
  const c = await inProcessCluster(t, 'read-window-fail', { ufsUri: `file://${ufs}` });
  const fs = await c.client('CACHE_THROUGH');
  const { blocks } = await fs.master.fileBlocks('/big');
  const url = `${c.workerUrl}/blocks/${blocks[0]!.id}?offset=0&length=${48 * MiB}&readType=NO_CACHE`;
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));
  t.equal(res.statusCode, 200);
  await new Promise<void>((resolve) => res.once('data', () => resolve()));
  res.pause();
  await until('the window is full', async () => (await heldBytes(c.workerUrl)) >= 8 * MiB, 10_000);
  // The store file shrinks under the read: the fill of the pages past 20 MiB fails, while the fill
  // of the last 16 MiB waits for the client. The read waited for every fill to end: for good.
  truncateSync(file, 20 * MiB);
  let got = 0;
  const ended = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('still waiting after 20 s'), 20_000);
    res.on('data', (d: Buffer) => (got += d.length));
    res.once('end', () => (clearTimeout(timer), resolve('end')));
    res.once('aborted', () => (clearTimeout(timer), resolve('aborted')));
    res.once('error', () => (clearTimeout(timer), resolve('aborted')));
    res.resume();
  });
  t.equal(ended, 'aborted', `the body is cut short (${(got / MiB).toFixed(1)} MiB of 48 received), so the client knows`);
  t.ok(got < 48 * MiB);
  await until('nothing held after the failed read', async () => (await heldBytes(c.workerUrl)) === 0, 10_000);
  t.pass('nothing held');
});

/** GETs `url` and waits for the first bytes; the response is then paused (a stalled client). */
async function stalledRead(url: string): Promise<{ res: http.IncomingMessage; chunks: Buffer[] }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => res.once('data', (d: Buffer) => (chunks.push(d), resolve())));
  res.pause();
  return { res, chunks };
}

function readRest(r: { res: http.IncomingMessage; chunks: Buffer[] }): Promise<string> {
  const hash = createHash('sha256');
  for (const ch of r.chunks) hash.update(ch);
  return new Promise((resolve, reject) => {
    r.res.on('data', (d: Buffer) => hash.update(d));
    r.res.once('end', () => resolve(hash.digest('hex')));
    r.res.once('error', reject);
    r.res.resume();
  });
}

t.test("NO_CACHE reads together hold at most the worker's read memory, and a stalled one does not stop the others", async (t) => {
  const ufs = tempRoot('strata-read-budget-ufs-');
  mkdirSync(ufs, { recursive: true });
  const data = randomBytes(48 * MiB);
  writeFileSync(path.join(ufs, 'big'), data);
  const want = createHash('sha256').update(data).digest('hex');
  const c = await inProcessCluster(t, 'read-budget', { ufsUri: `file://${ufs}`, readMemoryBytes: 8 * MiB });
  const fs = await c.client('CACHE_THROUGH');
  const { blocks } = await fs.master.fileBlocks('/big');
  const url = `${c.workerUrl}/blocks/${blocks[0]!.id}?offset=0&length=${data.length}&readType=NO_CACHE`;

  // Four stalled clients would hold four windows (64 MiB) without the budget.
  const stalled = [];
  for (let i = 0; i < 4; i++) stalled.push(await stalledRead(url));
  const held = await steadyHeldBytes(c.workerUrl);
  t.ok(held > 0, `pages are held for the stalled clients (${held / MiB} MiB)`);
  t.ok(held <= 16 * MiB, `at most the 8 MiB of read memory and two pages per read (${held / MiB} MiB; 4 windows are 64)`);

  // A fifth client that reads on gets every byte while the others stay stalled.
  t.equal(await readRest(await stalledRead(url)), want, 'a read beside stalled ones reads the whole range');
  // The stalled ones read on too.
  const sums = await Promise.all(stalled.map(readRest));
  t.same(sums, [want, want, want, want], 'every stalled read reads back the whole range');
  await until('nothing held after the reads', async () => (await heldBytes(c.workerUrl)) === 0, 10_000);
  t.pass('nothing held');
});
