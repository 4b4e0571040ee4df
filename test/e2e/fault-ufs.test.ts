/**
 * Fault: the under-store fails (500s, stalls, connection resets), injected by a
 * proxy in front of s3rver. Writes and reads through the mount get EIO after a
 * bounded number of tries (s3.maxAttempts) and bounded time (the s3.*TimeoutMs
 * options), never a hang; an ASYNC_THROUGH file closes fine and reaches the store
 * once it answers again.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runCli, startLocal } from '../helpers/cluster';
import { startFaultProxy, FaultMode } from '../helpers/fault-proxy';
import { startS3Server } from '../../scripts/s3-server';

delete process.env.AWS_CA_BUNDLE;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MAX_ATTEMPTS = 3;

async function tryWrite(file: string, data: Buffer): Promise<string> {
  try {
    await fsp.writeFile(file, data);
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

t.test('under-store faults', async (t) => {
  const whole = t;
  let c = await startLocal(t);
  const s3dir = path.join(c.root, 's3rver');
  await fsp.mkdir(s3dir);
  const s3 = await startS3Server({ dir: s3dir, buckets: ['lake'] });
  t.teardown(() => s3.close());
  const proxy = await startFaultProxy(s3.endpoint, t);
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  const opts = ['s3.pathStyle=true', 's3.accessKeyId=S3RVER', 's3.secretAccessKey=S3RVER', `s3.maxAttempts=${MAX_ATTEMPTS}`, 's3.connectTimeoutMs=1000', 's3.requestTimeoutMs=1500', `s3.endpoint=${proxy.endpoint}`].flatMap((o) => ['--option', o]);
  t.equal((await fs('mount', '/s3', 's3://lake/data', ...opts)).code, 0);
  t.equal((await fs('mount', '/s3a', 's3://lake/async', ...opts, '--option', 'write.type=ASYNC_THROUGH')).code, 0);
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => direct.destroy());
  const uploads = (req: { method?: string }) => req.method === 'PUT' || req.method === 'POST';

  for (const mode of ['500', 'stall', 'reset'] as FaultMode[]) {
    await t.test(`uploads ${mode === '500' ? 'answered with 500' : mode === 'stall' ? 'stalled' : 'reset'}`, async (t) => {
      proxy.mode = mode;
      // Not the empty object the master stores once the write is given up (the file exists, created by the open).
      proxy.match = (req) => uploads(req) && req.headers['content-length'] !== '0';
      proxy.resetCounts();
      const t0 = Date.now();
      t.equal(await tryWrite(path.join(c.mnt, 's3', `${mode}.bin`), randomBytes(300 * 1024)), 'EIO', 'EIO to the writer');
      const took = Date.now() - t0;
      t.ok(took < 25_000, `in ${took} ms`);
      await sleep(mode === 'stall' ? 6000 : 1500); // the release's second try, if any
      const tries = proxy.faulted.PUT ?? 0;
      // Each store of the file (close, and the retry at release) makes at most maxAttempts tries.
      t.ok(tries >= MAX_ATTEMPTS && tries <= 2 * MAX_ATTEMPTS, `${tries} tries reached the store (maxAttempts ${MAX_ATTEMPTS})`);
      proxy.mode = 'pass';
      const data = randomBytes(200 * 1024);
      t.equal(await tryWrite(path.join(c.mnt, 's3', `${mode}.bin`), data), 'ok', 'the store answers again: the same write succeeds');
      const got = await direct.send(new GetObjectCommand({ Bucket: 'lake', Key: `data/${mode}.bin` }));
      t.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data), 'and the object is whole');
    });
  }

  // Reads go over undici, not the SDK's own handler: its failures must stay retried and bounded.
  const readFaults: [FaultMode, string][] = [
    ['500', 'answered with 500'],
    ['stall', 'stalled'],
    ['reset', 'reset'],
    ['cut', 'cut in the middle of the body'],
  ];
  for (const [mode, what] of readFaults) {
    await t.test(`reads of uncached bytes ${what}`, async (t) => {
      const data = randomBytes(512 * 1024);
      const name = `cold-${mode}.bin`;
      await direct.send(new PutObjectCommand({ Bucket: 'lake', Key: `data/${name}`, Body: data }));
      await fs('sync', '/s3');
      proxy.mode = mode;
      proxy.match = (req) => req.method === 'GET' && req.url!.includes(name);
      proxy.resetCounts();
      const t0 = Date.now();
      await t.rejects(fsp.readFile(path.join(c.mnt, 's3', name)), { code: 'EIO' }, 'EIO to the reader');
      t.ok(Date.now() - t0 < 25_000, `in ${Date.now() - t0} ms`);
      // A body cut after its headers is asked for again from where it stopped (the driver's
      // resume, If-Match), within the same bound as the SDK's retries.
      t.ok((proxy.faulted.GET ?? 0) >= MAX_ATTEMPTS, `${proxy.faulted.GET} GETs were tried`);
      if (mode === 'cut') t.ok(proxy.cuts >= 1 && Date.now() - t0 < 1500, `${proxy.cuts} answers were cut, and the reader knew before a body timeout (1.5 s) could tell it`);
      proxy.mode = 'pass';
      t.ok((await fsp.readFile(path.join(c.mnt, 's3', name))).equals(data), 'reads work again once the store answers');
    });
  }

  await t.test('ASYNC_THROUGH: close succeeds, the persist completes once the store answers', async (t) => {
    proxy.mode = '500';
    proxy.match = uploads;
    const data = randomBytes(700 * 1024);
    t.equal(await tryWrite(path.join(c.mnt, 's3a', 'later.bin'), data), 'ok', 'close() succeeds with the store failing');
    await sleep(2500);
    const st = await fs('stat', '/s3a/later.bin', '--json');
    t.equal(st.code, 0, st.stderr);
    t.equal(st.code === 0 && JSON.parse(st.stdout).persisted, false, 'not persisted while the store fails');
    t.ok((proxy.faulted.PUT ?? 0) > 0, 'the persist queue tried');
    proxy.mode = 'pass';
    const t0 = Date.now();
    let persisted = false;
    let last = '';
    while (!persisted && Date.now() - t0 < 40_000) {
      await sleep(500);
      const r = await fs('stat', '/s3a/later.bin', '--json');
      last = `${r.code} ${r.stderr}`;
      persisted = r.code === 0 && JSON.parse(r.stdout).persisted === true;
    }
    if (!persisted) t.comment(`last stat: ${last}`);
    t.ok(persisted, `persisted ${Date.now() - t0} ms after the store came back`);
    const got = await direct.send(new GetObjectCommand({ Bucket: 'lake', Key: 'async/later.bin' }));
    t.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data), 'the object in the store is whole');
  });

  // s3rver keeps an upload as a directory holding a `key` file until it completes or is aborted.
  const openUploads = async (): Promise<string[]> => {
    const dir = path.join(s3dir, 'lake', '._S3rver_uploads');
    const ids = await fsp.readdir(dir).catch(() => [] as string[]);
    const open: string[] = [];
    for (const id of ids) if (await fsp.stat(path.join(dir, id, 'key')).then(() => true, () => false)) open.push(id);
    return open;
  };
  // Parts held a while on their way, so a persist is still uploading when the cluster stops.
  const holdParts = () => {
    proxy.mode = 'delay';
    proxy.delayMs = 2000;
    proxy.match = (req) => req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '');
    proxy.resetCounts();
  };

  await t.test('a worker killed in the middle of a multipart persist: its upload is aborted once it is back', async (t) => {
    t.same(await openUploads(), [], 'no upload is open before');
    holdParts();
    const data = randomBytes(20 * 1024 * 1024);
    t.equal(await tryWrite(path.join(c.mnt, 's3a', 'killed.bin'), data), 'ok', 'close() succeeds (ASYNC_THROUGH)');
    const t0 = Date.now();
    while ((proxy.faulted.PUT ?? 0) === 0 && Date.now() - t0 < 20_000) await sleep(50);
    const cut = await openUploads();
    t.equal(cut.length, 1, 'its multipart upload is open');
    await c.kill();
    t.same(await openUploads(), cut, 'the crash left it open');
    const journal = path.join(c.home, 'worker', 'leftovers');
    // After a restart the file is persisted again, and that upload has a record of its own: look for this one.
    const records = await fsp.readdir(journal);
    t.equal(records.length, 1, "the worker's journal has it");
    // Recorded before the upload's first part was sent: a crash at any moment after leaves it known.
    t.match(records[0], /^[0-9a-f]+\.json$/, 'as a whole record');
    // The first restart finds the store refusing the abort: the record stays for the next one.
    proxy.mode = '500';
    proxy.match = (req) => req.method === 'DELETE' && /[?&]uploadId=/.test(req.url ?? '');
    proxy.resetCounts();
    // Owned by the whole test (the subtest's teardown would stop it).
    c = await startLocal(whole, { reuse: c });
    t.ok((proxy.faulted.DELETE ?? 0) > 0, 'the master tried to abort it');
    t.ok((await openUploads()).includes(cut[0]!), 'the store refused: the upload is still open');
    t.ok((await fsp.readdir(journal)).includes(records[0]!), 'and the journal kept it');
    await c.kill();
    proxy.mode = 'pass';
    c = await startLocal(whole, { reuse: c });
    t.notOk((await fsp.readdir(journal)).includes(records[0]!), 'the next restart: the master has it, the record is gone');
    const t1 = Date.now();
    while ((await openUploads()).includes(cut[0]!) && Date.now() - t1 < 15_000) await sleep(100);
    t.notOk((await openUploads()).includes(cut[0]!), `the worker's journal had it aborted ${Date.now() - t1} ms after the restart`);
    // The file itself was still only on the worker: it is persisted again, whole.
    let persisted = false;
    while (!persisted && Date.now() - t1 < 40_000) {
      const r = await fs('stat', '/s3a/killed.bin', '--json');
      persisted = r.code === 0 && JSON.parse(r.stdout).persisted === true;
      if (!persisted) await sleep(300);
    }
    t.ok(persisted, 'persisted after the restart');
    const got = await direct.send(new GetObjectCommand({ Bucket: 'lake', Key: 'async/killed.bin' }));
    t.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data), 'the object in the store is whole');
    t.same(await openUploads(), [], 'no upload is open after');
  });

  // Last: it stops the cluster.
  await t.test('a worker stopped in the middle of a multipart persist aborts the upload', async (t) => {
    t.same(await openUploads(), [], 'no upload is open before');
    holdParts();
    t.equal(await tryWrite(path.join(c.mnt, 's3a', 'stopped.bin'), randomBytes(20 * 1024 * 1024)), 'ok', 'close() succeeds (ASYNC_THROUGH)');
    const t0 = Date.now();
    while ((proxy.faulted.PUT ?? 0) === 0 && Date.now() - t0 < 20_000) await sleep(50);
    t.ok((proxy.faulted.PUT ?? 0) > 0, 'the persist is uploading parts');
    t.equal((await openUploads()).length, 1, 'its multipart upload is open');
    t.equal(await c.stop(), 0, 'strata local stops cleanly');
    t.same(await openUploads(), [], 'and the stopping worker aborted the upload');
  });
});
