/**
 * A worker makes the drivers of the stores the master's mount table names when it
 * registers, not on the first read that needs one: the first cold read after a start
 * would otherwise wait for the driver to load (the S3 SDK: 0.2-0.4 s of CPU). The
 * driver made then must be the one reads use, not a second one.
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { tempRoot } from '../helpers/cluster';
import { inProcessCluster, readWhole, until } from '../helpers/in-process';
import { startS3Server } from '../../scripts/s3-server';

async function metric(workerUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${workerUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('the worker makes the mounted store driver at registration, and reads use it', async (t) => {
  delete process.env.AWS_CA_BUNDLE;
  const root = tempRoot('strata-drivers-store-');
  const s3 = await startS3Server({ dir: path.join(root, 's3'), buckets: ['lake'] });
  t.teardown(async () => {
    await s3.close();
    await fsp.rm(root, { recursive: true, force: true });
  });
  const data = randomBytes(300_000);
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  await direct.send(new PutObjectCommand({ Bucket: 'lake', Key: 'root/cold.bin', Body: data }));
  direct.destroy();
  // Options out of their usual order: the worker keys its drivers by URI and options, so the
  // registration's copy must match, key order included, what the reads' locations carry.
  const ufsOptions = { 's3.secretAccessKey': 'S3RVER', 's3.region': 'us-east-1', 's3.endpoint': s3.endpoint, 's3.accessKeyId': 'S3RVER', 's3.pathStyle': 'true' };
  const c = await inProcessCluster(t, 'drivers', { ufsUri: 's3://lake/root', ufsOptions });
  await until('the driver made after registration', async () => (await metric(c.workerUrl, 'strata_worker_under_store_drivers')) === 1, 5_000);
  t.equal(await metric(c.workerUrl, 'strata_worker_ufs_read_bytes_total'), 0, 'before any read of the store');
  const fs = await c.client('CACHE_THROUGH');
  t.ok((await readWhole(fs, '/cold.bin')).equals(data), 'a cold read returns the store bytes');
  t.equal(await metric(c.workerUrl, 'strata_worker_ufs_read_bytes_total'), data.length, 'the worker filled it from the store');
  t.equal(await metric(c.workerUrl, 'strata_worker_under_store_drivers'), 1, 'with the driver made at registration, not a second one');
});
