/**
 * A Namespace over a real S3-protocol server (s3rver on loopback) at s3://lake/root, with its
 * SQLite table in a temp dir, for tests of what the namespace asks of an S3 store. `before`
 * sees every request first (to hold or fail one); `direct` is a plain client of the same bucket.
 */

import type * as tap from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { startS3Server, type KoaMiddleware } from '../../scripts/s3-server';

export async function s3Namespace(t: tap.Test, opts: { syncIntervalMs: number; before?: KoaMiddleware }) {
  delete process.env.AWS_CA_BUNDLE;
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-s3-namespace-'));
  const s3 = await startS3Server({ dir: path.join(root, 's3'), buckets: ['lake'], ...(opts.before ? { before: opts.before } : {}) });
  const ufsOptions = { 's3.endpoint': s3.endpoint, 's3.pathStyle': 'true', 's3.accessKeyId': 'S3RVER', 's3.secretAccessKey': 'S3RVER', 's3.region': 'us-east-1' };
  const sqlite = new SqliteMetastore(path.join(root, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, 's3://lake/root', ufsOptions);
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: opts.syncIntervalMs, logger: pino({ level: 'silent' }) });
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(async () => {
    direct.destroy();
    await ns.close();
    await sqlite.close();
    await s3.close();
    rmSync(root, { recursive: true, force: true });
  });
  return {
    ns,
    sqlite,
    mounts,
    ufsOptions,
    /** An object put into the bucket by someone else (key under the bucket, e.g. `root/p/a`). */
    putDirect: (key: string, body: string, extra: Record<string, unknown> = {}) => direct.send(new PutObjectCommand({ Bucket: 'lake', Key: key, Body: body, ...extra })),
    /** The object's HEAD, or null. */
    head: (key: string) => direct.send(new HeadObjectCommand({ Bucket: 'lake', Key: key })).catch(() => null),
  };
}
