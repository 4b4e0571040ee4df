/**
 * Write streams: while a program writes a big file through the mount, its whole
 * blocks already go to the worker (and the under-store), so the close has only the
 * tail left. A change below what was sent (an overwrite, a truncate) must drop the
 * stream and send the whole file at close: the bytes that land are always the
 * file's last content, in the cache and in the under-store.
 */

import t, { Test } from 'tap';
import { promises as fsp, readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startLocal, runCli, LocalCluster } from '../helpers/cluster';
import { dropCaches } from '../helpers/disk';

const MiB = 1024 * 1024;

async function streamedBytes(c: LocalCluster): Promise<number> {
  const text = await (await fetch(`${c.workerUrl}/metrics`)).text();
  const m = /^strata_worker_write_stream_bytes_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Waits until the worker's streams took `atLeast` more bytes than `before` (the file is still open). */
async function untilStreamed(c: LocalCluster, before: number, atLeast: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const now = await streamedBytes(c);
    if (now - before >= atLeast) return now - before;
    if (Date.now() > deadline) throw new Error(`write stream took ${now - before} bytes, expected ${atLeast} before close`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function writeSeq(fh: fsp.FileHandle, data: Buffer, from: number, to: number): Promise<void> {
  for (let off = from; off < to; off += MiB) await fh.write(data, off, Math.min(MiB, to - off), off);
}

/** The file as the mount (after dropping caches) and the under-store see it equals `want`. */
async function checkStored(t: Test, c: LocalCluster, name: string, want: Buffer, inStore: boolean): Promise<void> {
  dropCaches();
  const back = await fsp.readFile(path.join(c.mnt, name));
  t.ok(back.equals(want), `${name}: ${want.length} bytes read back through the mount equal what was written`);
  if (inStore) t.ok(readFileSync(path.join(c.ufsDir, name)).equals(want), `${name}: the under-store has the same bytes`);
}

t.test('through the mount (CACHE_THROUGH, 4 MiB blocks)', async (t) => {
  const c = await startLocal(t, { args: ['--block-size', '4MiB'] });

  await t.test('a sequential writer: blocks go before close, the file lands whole', async (t) => {
    const data = randomBytes(40 * MiB + 12_345);
    const before = await streamedBytes(c);
    const fh = await fsp.open(path.join(c.mnt, 'seq'), 'w');
    await writeSeq(fh, data, 0, data.length);
    const took = await untilStreamed(c, before, 16 * MiB);
    t.ok(took >= 16 * MiB, `the worker took ${took / MiB} MiB in whole blocks while the file was open`);
    await fh.close();
    await checkStored(t, c, 'seq', data, true);
  });

  await t.test('an overwrite of bytes already sent drops the stream; the close sends the whole file', async (t) => {
    const data = randomBytes(40 * MiB);
    const before = await streamedBytes(c);
    const fh = await fsp.open(path.join(c.mnt, 'over'), 'w');
    await writeSeq(fh, data, 0, 32 * MiB);
    await untilStreamed(c, before, 8 * MiB);
    const patch = Buffer.alloc(100, 0x58);
    await fh.write(patch, 0, patch.length, 1000);
    patch.copy(data, 1000);
    await writeSeq(fh, data, 32 * MiB, data.length);
    await fh.close();
    await checkStored(t, c, 'over', data, true);
  });

  await t.test('a truncate below what was sent, then more writes', async (t) => {
    const data = randomBytes(40 * MiB);
    const before = await streamedBytes(c);
    const fh = await fsp.open(path.join(c.mnt, 'trunc'), 'w');
    await writeSeq(fh, data, 0, 30 * MiB);
    await untilStreamed(c, before, 8 * MiB);
    const cut = 5 * MiB + 3;
    await fh.truncate(cut);
    const tail = randomBytes(20 * MiB);
    for (let off = 0; off < tail.length; off += MiB) await fh.write(tail, off, Math.min(MiB, tail.length - off), cut + off);
    await fh.close();
    await checkStored(t, c, 'trunc', Buffer.concat([data.subarray(0, cut), tail]), true);
  });

  await t.test('a sparse file: a hole in the middle of streamed blocks stays zeros', async (t) => {
    const head = randomBytes(10 * MiB);
    const tail = randomBytes(6 * MiB + 77);
    const at = 50 * MiB + 4097;
    const fh = await fsp.open(path.join(c.mnt, 'sparse'), 'w');
    await writeSeq(fh, head, 0, head.length);
    for (let off = 0; off < tail.length; off += MiB) await fh.write(tail, off, Math.min(MiB, tail.length - off), at + off);
    await fh.close();
    const want = Buffer.alloc(at + tail.length);
    head.copy(want, 0);
    tail.copy(want, at);
    await checkStored(t, c, 'sparse', want, true);
  });

  await t.test('an fsync in the middle finishes the stream; later writes start a new one', async (t) => {
    const data = randomBytes(36 * MiB);
    const fh = await fsp.open(path.join(c.mnt, 'synced'), 'w');
    await writeSeq(fh, data, 0, 20 * MiB);
    await fh.sync();
    t.ok(readFileSync(path.join(c.ufsDir, 'synced')).equals(data.subarray(0, 20 * MiB)), 'after fsync the store has the first 20 MiB');
    await writeSeq(fh, data, 20 * MiB, data.length);
    await fh.close();
    await checkStored(t, c, 'synced', data, true);
  });

  await t.test('renamed while being written: the store gets the file at its new name only', async (t) => {
    const data = randomBytes(36 * MiB + 999);
    const before = await streamedBytes(c);
    const fh = await fsp.open(path.join(c.mnt, 'moving'), 'w');
    await writeSeq(fh, data, 0, 28 * MiB);
    await untilStreamed(c, before, 8 * MiB);
    await fsp.rename(path.join(c.mnt, 'moving'), path.join(c.mnt, 'moved'));
    await writeSeq(fh, data, 28 * MiB, data.length);
    await fh.close();
    await checkStored(t, c, 'moved', data, true);
    t.notOk(existsSync(path.join(c.ufsDir, 'moving')), 'nothing is left at the old name in the store');
  });

  t.equal(await c.stop(), 0, 'strata local stops cleanly');
});

t.test('ASYNC_THROUGH: streamed blocks are kept until persisted, then the store has the file', async (t) => {
  const c = await startLocal(t, { args: ['--block-size', '4MiB', '--write-type', 'ASYNC_THROUGH'] });
  const data = randomBytes(33 * MiB + 5);
  const before = await streamedBytes(c);
  const fh = await fsp.open(path.join(c.mnt, 'async'), 'w');
  await writeSeq(fh, data, 0, data.length);
  await untilStreamed(c, before, 8 * MiB);
  await fh.close();
  await checkStored(t, c, 'async', data, false);
  const deadline = Date.now() + 30_000;
  let persisted = false;
  while (!persisted && Date.now() < deadline) {
    const st = await runCli(['fs', 'stat', '/async', '--json', '--master', c.masterUrl]);
    persisted = st.code === 0 && (JSON.parse(st.stdout) as { persisted: boolean }).persisted;
    if (!persisted) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(persisted, 'the file is persisted');
  t.ok(readFileSync(path.join(c.ufsDir, 'async')).equals(data), 'the under-store has the whole file');
  t.equal(await c.stop(), 0, 'strata local stops cleanly');
});

t.test('the worker API refuses malformed stream requests with 4xx and drops broken streams', async (t) => {
  const c = await startLocal(t);
  const w = c.workerUrl;
  const put = (p: string, body: Buffer) => fetch(`${w}${p}`, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } });
  const open = async () => {
    const r = await fetch(`${w}/streams?ino=999&container=4242&blockSize=4096&writeType=MUST_CACHE`, { method: 'POST' });
    t.equal(r.status, 200, 'a stream opens');
    return ((await r.json()) as { stream: string }).stream;
  };

  t.equal((await put('/streams/nope?ino=999&offset=0&length=4096', Buffer.alloc(4096))).status, 404, 'an unknown stream: 404');
  t.equal((await fetch(`${w}/streams?ino=999&container=1&blockSize=100&writeType=MUST_CACHE`, { method: 'POST' })).status, 400, 'a bad block size: 400');
  t.equal((await fetch(`${w}/streams?ino=999&container=1&blockSize=4096&writeType=SOMETIMES`, { method: 'POST' })).status, 400, 'a bad write type: 400');

  let id = await open();
  t.equal((await put(`/streams/${id}?ino=999&offset=0&length=100`, Buffer.alloc(100))).status, 400, 'not whole blocks: 400');
  t.equal((await put(`/streams/${id}?ino=999&offset=0&length=4096`, Buffer.alloc(4096))).status, 404, 'a failed append drops the stream');

  id = await open();
  t.equal((await put(`/streams/${id}?ino=999&offset=4096&length=4096`, Buffer.alloc(4096))).status, 400, 'an append not where the stream is: 400');

  id = await open();
  t.equal((await put(`/streams/${id}?ino=998&offset=0&length=4096`, Buffer.alloc(4096))).status, 404, 'another inode\'s stream: 404');
  const body = randomBytes(8192 + 1808);
  t.equal((await put(`/streams/${id}?ino=999&offset=0&length=8192`, body.subarray(0, 8192))).status, 200, 'two whole blocks appended');
  const shortFinish = await put(`/files/999?container=4242&size=100&stream=${id}`, Buffer.alloc(0));
  t.equal(shortFinish.status, 400, 'a final size below what was streamed: 400');

  id = await open();
  t.equal((await put(`/streams/${id}?ino=999&offset=0&length=8192`, body.subarray(0, 8192))).status, 200, 'two whole blocks appended');
  const fin = await put(`/files/999?container=4242&size=${body.length}&stream=${id}`, body.subarray(8192));
  t.equal(fin.status, 200, 'the finish with the rest of the bytes succeeds');
  const res = (await fin.json()) as { size: number; blocks: { length: number }[] };
  t.same({ size: res.size, lengths: res.blocks.map((b) => b.length) }, { size: body.length, lengths: [4096, 4096, 1808] }, 'blocks: two streamed whole, the tail');
  t.equal((await put(`/streams/${id}?ino=999&offset=${body.length}&length=4096`, Buffer.alloc(4096))).status, 404, 'a finished stream is gone');

  id = await open();
  t.equal((await fetch(`${w}/streams/${id}`, { method: 'DELETE' })).status, 200, 'a stream can be dropped');
  t.equal((await put(`/streams/${id}?ino=999&offset=0&length=4096`, Buffer.alloc(4096))).status, 404, 'a dropped stream is gone');
  t.equal(await c.stop(), 0, 'strata local stops cleanly');
});
