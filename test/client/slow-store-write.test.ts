/**
 * A file's final write answers once the worker has stored it: through a slow store that
 * takes longer than the client's wait for an answer's headers. The client gave up after
 * that wait and wrote the whole file again through another worker, from its start, each
 * time (a `truncate -s 1T` hung for ever that way). With health probes watching the worker,
 * the client now waits for the answer, however long the store takes.
 */

import t from 'tap';
import type * as tap from 'tap';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startS3Server } from '../../scripts/s3-server';
import { startFaultProxy } from '../helpers/fault-proxy';
import { inProcessCluster, readWhole } from '../helpers/in-process';
import { tempRoot } from '../helpers/cluster';
import { StrataFileSystem } from '../../src/client/file-system';
import pino from 'pino';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

/** s3rver behind a fault proxy, a cluster over it, and a client that waits 300 ms for a worker's headers. */
async function setup(t: tap.Test, name: string, extraOptions: Record<string, string> = {}, syncIntervalMs?: number) {
  delete process.env.AWS_CA_BUNDLE;
  const root = tempRoot(`strata-${name}-`);
  const s3 = await startS3Server({ dir: path.join(root, 's3'), buckets: ['lake'] });
  t.teardown(() => s3.close());
  const proxy = await startFaultProxy(s3.endpoint, t);
  const ufsOptions = { 's3.endpoint': proxy.endpoint, 's3.pathStyle': 'true', 's3.accessKeyId': 'S3RVER', 's3.secretAccessKey': 'S3RVER', 's3.region': 'us-east-1', ...extraOptions };
  const c = await inProcessCluster(t, name, { ufsUri: 's3://lake/root', ufsOptions, ...(syncIntervalMs !== undefined ? { syncIntervalMs } : {}) });
  const fs = new StrataFileSystem({
    masterUrl: c.masterUrl,
    stagingDir: path.join(root, 'staging'),
    logger: pino({ level: 'silent' }),
    shortCircuit: false,
    writeType: 'CACHE_THROUGH',
    workerHeadersTimeoutMs: 300,
    workerProbeIntervalMs: 200,
  });
  await fs.init();
  t.teardown(() => fs.close());
  return { s3, proxy, fs };
}

t.test('a write through a store slower than the headers timeout is stored once, and succeeds', async (t) => {
  const { proxy, fs } = await setup(t, 'slow-store');

  // Every PUT to the store is held 1.5 s: five times the client's wait for the worker's headers.
  proxy.match = (req) => req.method === 'PUT';
  proxy.delayMs = 1500;
  proxy.mode = 'delay';
  const data = randomBytes(200_000);
  await fs.writeFile('/slow.bin', data, data.length);
  t.equal(proxy.faulted.PUT, 1, 'the store was sent the file once');
  proxy.mode = 'pass';
  t.ok((await readWhole(fs, '/slow.bin')).equals(data), 'and it reads back whole');
});

t.test('a read through a stalled store waits for the worker to give up on it, and asks the store no more than the worker does', async (t) => {
  // The worker gives up on a GET after 2 tries of 1 s each.
  const { s3, proxy, fs } = await setup(t, 'stalled-store', { 's3.requestTimeoutMs': '1000', 's3.maxAttempts': '2' }, 0);
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  await direct.send(new PutObjectCommand({ Bucket: 'lake', Key: 'root/cold.bin', Body: randomBytes(100_000) }));
  direct.destroy();
  await fs.getattr('/cold.bin');

  proxy.match = (req) => req.method === 'GET' && /cold\.bin/.test(req.url ?? '');
  proxy.mode = 'stall';
  const err = await readWhole(fs, '/cold.bin').then(() => undefined, (e: unknown) => e as { code?: string; cause?: unknown });
  t.equal(err?.code, 'TIMEOUT', 'the read fails with the store\'s timeout once the worker gave up');
  t.equal(err?.cause, undefined, 'an error the worker answered with, not one of the client giving up');
  t.comment(`GETs stalled: ${JSON.stringify(proxy.faulted)}`);
  t.equal(proxy.faulted.GET, 2, "the store was asked as often as the worker's own tries, not again for each time the client gave up");
  proxy.mode = 'pass';
});
