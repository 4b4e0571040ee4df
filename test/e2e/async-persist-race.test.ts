/**
 * ASYNC_THROUGH persists race the namespace: a file unlinked, renamed or rewritten
 * while its upload to the store is in flight (held there by a proxy in front of
 * s3rver). Whatever the order, the store ends up holding exactly the namespace's
 * files at their current names with their current bytes: no deleted file comes
 * back, none lands under a name it no longer has.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { runCli, startLocal } from '../helpers/cluster';
import { startFaultProxy } from '../helpers/fault-proxy';
import { startS3Server } from '../../scripts/s3-server';

delete process.env.AWS_CA_BUNDLE;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('unlink, rename and rewrite during an ASYNC_THROUGH upload leave the store equal to the namespace', async (t) => {
  const c = await startLocal(t);
  const s3dir = path.join(c.root, 's3rver');
  await fsp.mkdir(s3dir);
  const s3 = await startS3Server({ dir: s3dir, buckets: ['lake'] });
  t.teardown(() => s3.close());
  const proxy = await startFaultProxy(s3.endpoint, t);
  const fs = (...a: string[]) => runCli(['fs', ...a, '--master', c.masterUrl]);
  const opts = ['s3.pathStyle=true', 's3.accessKeyId=S3RVER', 's3.secretAccessKey=S3RVER', `s3.endpoint=${proxy.endpoint}`, 'write.type=ASYNC_THROUGH'].flatMap((o) => ['--option', o]);
  t.equal((await fs('mount', '/s3', 's3://lake/async', ...opts)).code, 0, 'an S3 store mounted with ASYNC_THROUGH');
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => direct.destroy());
  const keys = async (prefix: string) =>
    ((await direct.send(new ListObjectsV2Command({ Bucket: 'lake', Prefix: `async/${prefix}` }))).Contents ?? []).map((o) => o.Key!.slice('async/'.length)).filter((k) => !k.endsWith('/')).sort();
  const object = async (key: string) => Buffer.from(await (await direct.send(new GetObjectCommand({ Bucket: 'lake', Key: `async/${key}` }))).Body!.transformToByteArray());
  const m = (...p: string[]) => path.join(c.mnt, 's3', ...p);
  const queue = async () => ((await (await fetch(`${c.masterUrl}/api/v1/persist-queue`)).json()) as unknown[]).length;

  // Hold every upload for 1.5 s; each step acts once its file's upload reached the proxy.
  proxy.match = (req) => req.method === 'PUT' || req.method === 'POST';
  proxy.delayMs = 1500;
  const inFlight = async (write: () => Promise<void>) => {
    proxy.mode = 'delay';
    proxy.resetCounts();
    await write();
    await until('the upload to reach the store', () => (proxy.faulted.PUT ?? 0) + (proxy.faulted.POST ?? 0) > 0);
  };

  await fsp.mkdir(m('d'));
  await until('the directory in the store', async () => (await queue()) === 0);
  const data = randomBytes(300_000);
  const newer = randomBytes(200_000);

  await inFlight(() => fsp.writeFile(m('d', 'gone'), data));
  await fsp.unlink(m('d', 'gone'));
  await inFlight(() => fsp.writeFile(m('d', 'gone-empty'), ''));
  await fsp.unlink(m('d', 'gone-empty'));
  await inFlight(() => fsp.writeFile(m('d', 'old-name'), data));
  await fsp.rename(m('d', 'old-name'), m('d', 'new-name'));
  await inFlight(() => fsp.writeFile(m('d', 'rewritten'), data));
  await fsp.writeFile(m('d', 'rewritten'), newer);

  proxy.mode = 'pass';
  await until('the persist queue to drain', async () => (await queue()) === 0, 60_000);
  await sleep(2000); // an upload that lost its race is cleaned up after it returns

  t.same(await keys('d/'), ['d/new-name', 'd/rewritten'], 'the store holds the namespace: no unlinked file, no old name');
  t.ok((await object('d/new-name')).equals(data), 'the renamed file has its bytes under its new name');
  t.ok((await object('d/rewritten')).equals(newer), 'the rewritten file has its new bytes');
  await fsp.unlink(m('d', 'new-name'));
  await fsp.unlink(m('d', 'rewritten'));
  await until('the queue to drain', async () => (await queue()) === 0);
  await fsp.rmdir(m('d'));
  t.pass('the emptied directory can be removed through the mount');
});
