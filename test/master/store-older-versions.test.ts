/**
 * What an unpersisted file's older version, still the object at its path, must not do once
 * the name leaves that path (replaced, exchanged, moved onto by a directory), and how the S3
 * driver keeps a directory while its entries go: an existing marker left as it is, nothing at
 * a rename's destination when keeping the source directory fails. Found by a review of the
 * path-lock series; each test failed before its fix.
 */

import t from 'tap';
import type * as tap from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';
import { S3UnderFileSystem } from '../../src/ufs/s3';
import { StrataError } from '../../src/common/errors';
import { blockIdOf } from '../../src/common/protocol';
import { sendS3Error } from '../../scripts/s3-server';
import { s3Namespace } from '../helpers/s3-namespace';

delete process.env.AWS_CA_BUNDLE;
const logger = pino({ level: 'silent' });
const outcome = (p: Promise<unknown>) => p.then(() => 'done', (e: unknown) => (e instanceof StrataError ? e.code : String(e)));

/** A namespace over a fresh mem:// store. */
async function memNamespace(t: tap.Test, name: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `strata-rev2-${name}-`));
  const uri = `mem://rev2-${name}-${process.pid}`;
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, uri, {});
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: 60_000, logger });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ufs = new MemoryUnderFileSystem(uri);
  const put = async (p: string, data: string) => {
    const w = await ufs.create(p);
    await w.write(Buffer.from(data));
    await w.complete();
  };
  /** A new version of `p`, committed ASYNC_THROUGH (not persisted yet): its older version stays at `p` in the store. */
  const rewrite = async (p: string, size: number) => {
    const { ino } = await ns.resolve(p);
    const { containerId } = await sqlite.beginWrite(ino);
    await sqlite.commitWrite({ ino, containerId, size, blocks: [{ id: blockIdOf(containerId, 0), length: size }], workerId: 1, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
  };
  const names = async () => {
    await ns.forceSync('/');
    return (await ns.list('/')).map((e) => `${e.name}:${e.type}`).sort();
  };
  return { ns, sqlite, ufs, put, rewrite, names };
}

/**
 * A file stored once and rewritten with ASYNC_THROUGH: until the new version persists, the
 * older one is still the object at its path. Whatever takes the name away from that path
 * (a rename, the unlink of a hard link's first name) leaves that object nobody's; the next
 * listing of the directory would load it back as a file of its own, the old bytes under the
 * old name, after the user renamed the file away.
 */
t.test('a rewritten file that has not persisted yet leaves no older version behind when its name moves', async (t) => {
  const { ns, ufs, put, rewrite, names } = await memNamespace(t, 'moves');
  await put('/a', 'v1 of a');
  await put('/h', 'v1 of h');
  t.same(await names(), ['a:file', 'h:file']);

  await rewrite('/a', 12);
  await ns.rename('/a', '/b');
  t.equal(await ufs.stat('/a'), null, "a rename: the older version's object is gone from the old path");
  t.same(await names(), ['b:file', 'h:file'], 'and the old name does not come back');
  t.equal((await ns.resolve('/b')).size, 12, 'the renamed file is its new version');

  const h = await ns.resolve('/h');
  await ns.link(h.ino, '/h2');
  await rewrite('/h', 20);
  await ns.unlink('/h');
  t.equal(await ufs.stat('/h'), null, "the unlink of a hard link's first name: the older version's object is gone");
  t.same(await names(), ['b:file', 'h2:file'], 'and the old name does not come back');
  t.equal((await ns.resolve('/h2')).size, 20, 'the other link keeps the new version');
});

t.test('a rewritten, unpersisted file replaced by a symlink leaves no older version to come back once the symlink goes', async (t) => {
  const { ns, ufs, put, rewrite, names } = await memNamespace(t, 'replace-symlink');
  await put('/f', 'v1 of f');
  t.same(await names(), ['f:file']);
  await rewrite('/f', 12);
  await ns.symlink('/s', '/elsewhere');
  await ns.rename('/s', '/f'); // replaces the file f (rename(2) onto a file)
  t.same(await names(), ['f:symlink']);
  await ns.unlink('/f');
  t.equal(await ufs.stat('/f'), null, "the replaced file's older version is gone from the store");
  t.same(await names(), [], 'and /f does not come back as a file with the old bytes');
});

t.test('a rewritten, unpersisted file replaced by a second hard link leaves no older version behind', async (t) => {
  const { ns, ufs, put, rewrite, names } = await memNamespace(t, 'replace-link');
  await put('/f', 'v1 of f');
  await put('/g', 'g bytes');
  t.same(await names(), ['f:file', 'g:file']);
  await rewrite('/f', 12);
  const g = await ns.resolve('/g');
  await ns.link(g.ino, '/g2');
  await ns.rename('/g2', '/f'); // the secondary link of g replaces f
  await ns.unlink('/f');
  t.equal(await ufs.stat('/f'), null, "the replaced file's older version is gone from the store");
  t.same(await names(), ['g:file'], 'and /f does not come back');
});

t.test('a directory exchanged with a rewritten, unpersisted file: the older version in the store does not stop it', async (t) => {
  const { ns, put, rewrite, names } = await memNamespace(t, 'exchange-dir');
  await put('/f', 'v1 of f');
  await ns.mkdir('/d', 0o755);
  t.same(await names(), ['d:directory', 'f:file']);
  await rewrite('/f', 12);
  t.equal(await outcome(ns.exchange('/d', '/f')), 'done', 'the namespace allows it (renameat2 RENAME_EXCHANGE of a file and a directory)');
});

t.test('a rewritten, unpersisted file exchanged with a symlink leaves no older version under the symlink\'s new name', async (t) => {
  const { ns, ufs, put, rewrite, names } = await memNamespace(t, 'exchange-symlink');
  await put('/f', 'v1 of f');
  await ns.symlink('/s', '/elsewhere');
  await rewrite('/f', 12);
  await ns.exchange('/f', '/s'); // /f is the symlink now, /s the file
  await ns.unlink('/f');
  t.equal(await ufs.stat('/f'), null, 'no object left at /f');
  t.same(await names(), ['s:file'], 'and /f does not come back');
});


// ---- S3 (s3rver) --------------------------------------------------------------------------------

/** A namespace on s3://lake/root (s3rver); `setFail(f)` answers 403 to requests `f` picks. */
async function s3Setup(t: tap.Test) {
  let fail: ((method: string, key: string) => boolean) | undefined;
  const on = await s3Namespace(t, {
    syncIntervalMs: 60_000,
    before: async (ctx, next) => {
      const key = decodeURIComponent(ctx.path).replace(/^\/lake\/?/, '');
      const copy = ctx.headers['x-amz-copy-source'] ? ' (copy)' : '';
      if (fail?.(ctx.method + copy, key)) return sendS3Error(ctx, 403, 'AccessDenied');
      await next();
    },
  });
  return { ...on, opts: on.ufsOptions, setFail: (f: typeof fail) => (fail = f) };
}

t.test('S3: deleting a file leaves its directory\'s existing marker object as it is (other tools keep attributes on it)', async (t) => {
  const { opts, putDirect, head } = await s3Setup(t);
  // A directory object as s3fs-fuse / other tools write it: zero bytes, with the directory's attributes as metadata.
  await putDirect('root/p/', '', { ContentType: 'application/x-directory', Metadata: { mode: '16877', uid: '1000', mtime: '1700000000' } });
  await putDirect('root/p/a', 'x');
  const ufs = new S3UnderFileSystem('s3://lake/root', opts);
  t.teardown(() => ufs.close());
  await ufs.delete('/p/a');
  const marker = await head('root/p/');
  t.same(marker?.Metadata, { mode: '16877', uid: '1000', mtime: '1700000000' }, 'the existing directory object is left as it was');
});

t.test('S3: a rename that cannot keep its source directory fails with nothing at the destination', async (t) => {
  const { ns, setFail, putDirect, head } = await s3Setup(t);
  await putDirect('root/p/a', 'bytes of a');
  await putDirect('root/q/x', 'x');
  t.equal((await ns.resolve('/p/a')).type, 'file');
  await ns.list('/q'); // listed now: the master vouches no directory is at /q/b, so the driver takes the knownFile path
  setFail((m, k) => m === 'PUT' && k === 'root/p/');
  const r = await outcome(ns.rename('/p/a', '/q/b'));
  t.not(r, 'done', `the rename failed (${r})`);
  t.equal(await head('root/q/b'), null, 'a failed rename leaves nothing at the destination');
  setFail(undefined);
  await ns.forceSync('/q');
  t.same((await ns.list('/q')).map((e) => e.name), ['x'], 'and no copy of /p/a appears under the new name');
});

t.test('a rewritten, unpersisted file whose path the store now holds a directory at is still renamed', async (t) => {
  const { ns, ufs, put, rewrite } = await memNamespace(t, 'shadow-dir');
  await put('/x', 'v1 of x');
  await ns.resolve('/x');
  await rewrite('/x', 12);
  await ufs.delete('/x');
  await ufs.mkdir('/x'); // made in the store by someone else meanwhile
  t.equal(await outcome(ns.rename('/x', '/y')), 'done', 'the directory there is not an older version of it, and stays');
  t.equal((await ufs.stat('/x'))?.type, 'directory');
});

/** The persister's worker's upload of `ino`'s current version: where it may write (ufsLocation, as the worker asks first). */
async function uploadTarget(ns: Namespace, sqlite: SqliteMetastore, ino: number) {
  const n = (await sqlite.getNode(ino))!;
  return ns.ufsLocation(ino, { purpose: 'persist', container: n.container, blocks: Math.ceil(n.size / n.blockSize) });
}

t.test('an object the listing finds at the path of a file never stored goes with the name', async (t) => {
  const { ns, sqlite, put, rewrite, names } = await memNamespace(t, 'seen');
  const f = await ns.create('/f', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  await rewrite('/f', 3);
  await put('/f', 'someone else'); // written in the store since the last listing
  await ns.forceSync('/');
  t.equal((await sqlite.getNode(f.ino))?.inStore, true, 'the listing saw an object there: its removal must look');
  await ns.unlink('/f');
  t.same(await names(), [], 'removed, it does not come back');
});

t.test('an upload that landed after its file moved away and a new file took the name, its answer lost, goes with that name', async (t) => {
  const { ns, put, rewrite, names, sqlite } = await memNamespace(t, 'stray');
  const n = await ns.create('/n', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  await rewrite('/n', 3);
  const at = await uploadTarget(ns, sqlite, n.ino);
  await ns.rename('/n', '/n2'); // after the worker's last check: nothing at /n to drop yet
  await ns.create('/n', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  await rewrite('/n', 3);
  await put(at.path, 'the old upload'); // lands; its answer never reaches the master (restart, timeout)
  await ns.forceSync('/');
  await ns.unlink('/n');
  t.same(await names(), ['n2:file'], 'the removed name does not come back from the store');
});
