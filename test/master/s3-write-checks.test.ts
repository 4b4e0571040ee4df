/**
 * What a write through Strata asks an S3 store, against s3rver: a master, a worker and a
 * client in this process. S3 can hold a file and a directory at one path, so a driver
 * writing a file looks for a directory there first, a listing per write, as costly as
 * the PUT of a small file. The master vouches for a path whose directory it listed (or
 * made) within its sync interval; with an interval of 0 every write looks again.
 */

import t from 'tap';
import type * as tap from 'tap';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { tempRoot } from '../helpers/cluster';
import { inProcessCluster, readWhole, until } from '../helpers/in-process';
import { startS3Server } from '../../scripts/s3-server';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

delete process.env.AWS_CA_BUNDLE;

async function cluster(t: tap.Test, name: string, syncIntervalMs: number, opts: { holdPartsMs?: number } = {}) {
  const root = tempRoot(`strata-${name}-`);
  /** The prefixes listed, in order. */
  const listed: string[] = [];
  /** Every request, `METHOD /bucket/key`. */
  const requests: string[] = [];
  const s3 = await startS3Server({
    dir: path.join(root, 's3'),
    buckets: ['lake'],
    before: async (ctx, next) => {
      if (ctx.method === 'GET' && ctx.query['list-type'] !== undefined) listed.push(String(ctx.query.prefix ?? ''));
      requests.push(`${ctx.method} ${ctx.path}`);
      // A slow link: every part of a multipart upload takes this long.
      if (opts.holdPartsMs && ctx.method === 'PUT' && ctx.query.partNumber !== undefined) await new Promise((r) => setTimeout(r, opts.holdPartsMs));
      await next();
    },
  });
  t.teardown(async () => {
    await s3.close();
    rmSync(root, { recursive: true, force: true });
  });
  const ufsOptions = { 's3.partSize': String(5 * 1024 * 1024), 's3.endpoint': s3.endpoint, 's3.pathStyle': 'true', 's3.accessKeyId': 'S3RVER', 's3.secretAccessKey': 'S3RVER', 's3.region': 'us-east-1' };
  const { client } = await inProcessCluster(t, name, { ufsUri: 's3://lake/root', ufsOptions, syncIntervalMs, persistInitialWaitMs: 0 });
  const direct = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => direct.destroy());
  /** Puts an object straight into the store, as another program would. */
  const putDirect = (key: string, body: string) => direct.send(new PutObjectCommand({ Bucket: 'lake', Key: key, Body: body }));
  const deleteDirect = (key: string) => direct.send(new DeleteObjectCommand({ Bucket: 'lake', Key: key }));
  const existsDirect = (key: string) =>
    direct.send(new HeadObjectCommand({ Bucket: 'lake', Key: key })).then(
      () => true,
      () => false,
    );
  return { s3, client, listed, requests, putDirect, deleteDirect, existsDirect };
}

t.test('writes into a directory listed within the sync interval: no listing per file, the files are stored', async (t) => {
  const { s3, client, listed } = await cluster(t, 's3-vouched', 60_000);
  const through = await client('CACHE_THROUGH');
  const later = await client('ASYNC_THROUGH');
  await through.mkdir('/d', 0o755);
  s3.resetStats();
  listed.length = 0;
  // An empty file (the master stores it), a small one (a worker writes it through), and one persisted later.
  const e = await through.create('/d/empty', 0o644);
  await through.release(e);
  await through.writeFile('/d/small', Buffer.from('small file'), 10);
  await later.writeFile('/d/later', Buffer.from('persisted later'), 15);
  await until('the ASYNC_THROUGH file persisted', async () => (await later.getattr('/d/later')).persistState === 'persisted');
  t.equal(s3.stats.puts, 3, 'three PUTs');
  t.same(listed, [], 'and not one listing');
  for (const f of ['/d/empty', '/d/small']) t.equal((await through.getattr(f)).persistState, 'persisted', `${f} is stored`);
});

t.test('a rename of a stored file into a directory listed within the sync interval: a copy and a delete, nothing looked at', async (t) => {
  const { client, requests } = await cluster(t, 's3-rename', 60_000);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  await through.mkdir('/e', 0o755);
  await through.writeFile('/d/f', Buffer.from('renamed bytes'), 13);
  requests.length = 0;
  await through.rename('/d/f', '/e/g');
  t.same(requests.map((r) => r.split(' ')[0]), ['PUT', 'DELETE'], `a copy and a delete, nothing looked at (${requests.join(', ')})`);
  const a = await through.getattr('/e/g');
  t.same([a.size, a.persistState], [13, 'persisted'], 'stored at its new path');
  t.equal((await readWhole(through, '/e/g')).toString(), 'renamed bytes', 'and reads back');
});

t.test('a listing that shows a directory where the table keeps a file takes back the vouch: the write looks, and fails, instead of storing the file beside it', async (t) => {
  const { client, putDirect, existsDirect } = await cluster(t, 's3-shadowed', 1000);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  const fh = await through.create('/d/x', 0o644);
  // Meanwhile another program makes a directory x in the store, and the next listing of /d shows it.
  await putDirect('root/d/x/inner', 'theirs');
  await new Promise((r) => setTimeout(r, 1100));
  await through.readdir('/d');
  await through.write(fh, Buffer.from('mine'), 4, 0);
  await t.rejects(through.flush(fh), { code: 'IS_DIRECTORY' }, 'the close (its flush) fails: a directory is at its path in the store');
  await through.release(fh);
  t.equal(await existsDirect('root/d/x'), false, 'no object was stored beside that directory');
  t.equal(await existsDirect('root/d/x/inner'), true, "and the other program's file is there");
});

t.test('a directory made through Strata that the store already had is listed at its first readdir, not taken as empty', async (t) => {
  const { client, putDirect } = await cluster(t, 's3-mkdir-existing', 60_000);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  // Made in the store after /d was listed (when Strata made it).
  await putDirect('root/d/e/inner', 'theirs');
  await through.mkdir('/d/e', 0o755);
  t.same((await through.readdir('/d/e')).map((e) => e.name), ['inner'], 'its file is listed');
});

t.test('a write that completes after the vouch ran out looks for a directory first', async (t) => {
  const { client, listed } = await cluster(t, 's3-slow-write', 1000);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  listed.length = 0;
  // A slow writer: half its bytes, 1.2 s of nothing, the rest; the listing of /d holds for 1 s.
  const half = Buffer.alloc(64 * 1024, 5);
  const body = Readable.from(
    (async function* () {
      yield half;
      await new Promise((r) => setTimeout(r, 1200));
      yield half;
    })(),
  );
  await through.writeFile('/d/slow', body, 2 * half.length);
  t.same(listed, ['root/d/slow/'], 'the path was listed before the completion');
  t.ok((await readWhole(through, '/d/slow')).equals(Buffer.concat([half, half])), 'and the file stored');
});

t.test('a rename onto a name the last listing showed as a directory (the table keeps a file) looks, and fails, instead of copying beside it', async (t) => {
  const { client, putDirect, deleteDirect, existsDirect } = await cluster(t, 's3-rename-shadowed', 60_000);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  await through.mkdir('/e', 0o755);
  await through.writeFile('/e/f', Buffer.from('moving'), 6);
  await through.writeFile('/d/x', Buffer.from('stored'), 6);
  // Another program turns x into a directory; a sync of /d sees it (the table keeps the file it knows).
  await deleteDirect('root/d/x');
  await putDirect('root/d/x/inner', 'theirs');
  await through.master.sync('/d');
  await t.rejects(through.rename('/e/f', '/d/x'), { code: 'IS_DIRECTORY' }, 'the store has a directory there');
  t.equal(await existsDirect('root/d/x'), false, 'no object was copied beside it');
  t.equal(await existsDirect('root/e/f'), true, 'and the source is where it was');
});

t.test('with a sync interval of 0 every write looks for a directory at its path before it stores the file', async (t) => {
  const { client, listed } = await cluster(t, 's3-strict', 0);
  const through = await client('CACHE_THROUGH');
  await through.mkdir('/d', 0o755);
  for (const [name, body] of [['empty', ''], ['small', 'small file']] as const) {
    const fh = await through.create(`/d/${name}`, 0o644);
    // Only what storing it asks (the create itself looked in the store for the name).
    listed.length = 0;
    if (body) await through.write(fh, Buffer.from(body), body.length, 0);
    await through.release(fh);
    t.same(listed, [`root/d/${name}/`], `the ${name} file's store write listed its path`);
    t.equal((await through.getattr(`/d/${name}`)).persistState, 'persisted', 'and stored it');
  }
});
