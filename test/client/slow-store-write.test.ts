/**
 * A file's final write answers once the worker has stored it: through a slow store that
 * takes longer than the client's wait for an answer's headers. The client gave up after
 * that wait and wrote the whole file again through another worker, from its start, each
 * time (a `truncate -s 1T` hung for ever that way). With health probes watching the worker,
 * the client now waits for the answer, however long the store takes.
 */

import t from 'tap';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startS3Server } from '../../scripts/s3-server';
import { startFaultProxy } from '../helpers/fault-proxy';
import { inProcessCluster, readWhole } from '../helpers/in-process';
import { tempRoot } from '../helpers/cluster';
import { StrataFileSystem } from '../../src/client/file-system';
import pino from 'pino';

t.test('a write through a store slower than the headers timeout is stored once, and succeeds', async (t) => {
  delete process.env.AWS_CA_BUNDLE;
  const root = tempRoot('strata-slow-store-');
  const s3 = await startS3Server({ dir: path.join(root, 's3'), buckets: ['lake'] });
  t.teardown(() => s3.close());
  const proxy = await startFaultProxy(s3.endpoint, t);
  const ufsOptions = { 's3.endpoint': proxy.endpoint, 's3.pathStyle': 'true', 's3.accessKeyId': 'S3RVER', 's3.secretAccessKey': 'S3RVER', 's3.region': 'us-east-1' };
  const c = await inProcessCluster(t, 'slow-store', { ufsUri: 's3://lake/root', ufsOptions });
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
