/**
 * Changes that act in an under-store hold the paths they change (PathLocks): one that hangs
 * in its store holds up only changes on the same names or above them, and those run in the
 * order they were asked, so the store and the table still agree. First the lock alone, then
 * the namespace over an in-memory store whose calls on one path wait for the test.
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { PathLocks, overlaps, type LockScope } from '../../src/master/path-locks';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import type { UnderFileSystem } from '../../src/ufs/ufs';
import { StrataError } from '../../src/common/errors';

const logger = pino({ level: 'silent' });
let n = 0;

/** A promise, and what settles it from outside. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** `p` within `ms` ('done'), else 'still waiting'; p's own failure is its error code. */
async function within(p: Promise<unknown>, ms = 5_000): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<string>((r) => (timer = setTimeout(() => r('still waiting'), ms)));
  try {
    return await Promise.race([p.then(() => 'done', (e: unknown) => (e instanceof StrataError ? e.code : String(e))), waited]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets every promise that can settle now settle. */
const settle = () => new Promise((r) => setImmediate(r));

t.test('the lock alone', async (t) => {
  t.test('scopes overlap when one path is the other or a directory above it', async (t) => {
    const s = (...paths: string[]): LockScope => paths.map((p) => p.split('/').filter(Boolean));
    t.ok(overlaps(s('a/b'), s('a/b')), 'the same path');
    t.ok(overlaps(s('a'), s('a/b/c')), 'a directory above');
    t.ok(overlaps(s('a/b/c'), s('a')), 'a directory above, the other way round');
    t.ok(overlaps(s('x', 'a/b'), s('a')), 'any of the paths');
    t.ok(overlaps('all', s('z')), 'the whole namespace');
    t.ok(overlaps(s(''), s('z')), 'the root is above everything');
    t.notOk(overlaps(s('a/b'), s('a/c')), 'siblings');
    t.notOk(overlaps(s('a/b'), s('a/bc')), 'a name that only starts the same');
  });

  t.test('disjoint scopes run together; overlapping ones in the order asked; the whole namespace waits for all', async (t) => {
    const locks = new PathLocks();
    const order: string[] = [];
    const gate = deferred();
    const ran = (name: string, wait?: Promise<void>) => async () => {
      order.push(`${name} start`);
      if (wait) await wait;
      order.push(`${name} end`);
    };
    const a = locks.run([['d', 'f']], ran('a', gate.promise));
    const b = locks.run([['d', 'g']], ran('b'));
    const c = locks.run([['d']], ran('c'));
    const d = locks.run([['d', 'f', 'x']], ran('d'));
    const e = locks.run('all', ran('e'));
    const f = locks.run([['other']], ran('f'));
    await settle();
    t.same(order, ['a start', 'b start', 'b end'], 'b ran beside a; c waits for a (above it), d for c, e and f for all before them');
    gate.resolve();
    await Promise.all([a, b, c, d, e, f]);
    t.same(order.slice(3), ['a end', 'c start', 'c end', 'd start', 'd end', 'e start', 'e end', 'f start', 'f end']);
    t.equal(locks.size, 0, 'nothing left held');
  });

  t.test('a change that fails lets the next one run', async (t) => {
    const locks = new PathLocks();
    const failed = locks.run([['a']], async () => {
      throw new Error('boom');
    });
    const next = locks.run([['a']], async () => 'ran');
    await t.rejects(failed, /boom/);
    t.equal(await next, 'ran');
  });
});

async function setup(t: tap.Test) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-path-locks-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const uri = `mem://path-locks-${process.pid}-${++n}`;
  const mounts = await MountTable.open(sqlite, uri, {});
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: 60_000, logger });
  const ufs = mounts.resolve([]).mount.ufs;
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** The store's next `method` call on `at` waits until `open()`; `reached` settles when it has begun. */
  const hang = (method: 'mkdir' | 'rename' | 'delete', at: string) => {
    const reached = deferred();
    const gate = deferred();
    const store = ufs as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const original = store[method]!.bind(ufs);
    store[method] = async (...args: unknown[]) => {
      if (args[0] === at) {
        store[method] = original;
        reached.resolve();
        await gate.promise;
      }
      return original(...args);
    };
    return { reached: reached.promise, open: gate.resolve };
  };
  const put = async (p: string, data: string) => {
    const w = await ufs.create(p);
    await w.write(Buffer.from(data));
    await w.complete();
  };
  return { ns, ufs: ufs as UnderFileSystem, hang, put };
}

t.test('a store call that hangs on one path holds up no change elsewhere', async (t) => {
  const { ns, ufs, hang, put } = await setup(t);
  await put('/f', 'to be unlinked');
  await put('/x', 'to be renamed');
  const g = await ns.create('/g', 0o644);
  const slow = hang('mkdir', '/slow');
  const slowMkdir = ns.mkdir('/slow', 0o755);
  await slow.reached;
  t.equal(await within(ns.mkdir('/other', 0o755)), 'done', 'a mkdir elsewhere');
  t.equal(await within(ns.unlink('/f')), 'done', 'an unlink');
  t.equal(await within(ns.rename('/x', '/other/y')), 'done', 'a rename');
  t.equal(await within(ns.commitEmpty(g.ino, 'CACHE_THROUGH', undefined)), 'done', 'a write-through commit');
  t.equal(await within(slowMkdir, 50), 'still waiting', 'the hanging mkdir is still in its store');
  t.equal(await ufs.stat('/f'), null, 'the unlinked object is gone');
  t.equal((await ufs.stat('/other/y'))?.size, 'to be renamed'.length, 'the renamed object moved');
  t.equal((await ufs.stat('/g'))?.size, 0, 'the committed file is in the store');
  slow.open();
  t.equal(await within(slowMkdir), 'done', 'the hanging mkdir finishes once its store answers');
  t.equal((await ns.resolve('/slow')).type, 'directory');
});

t.test('a change below a directory that a rename is moving waits for it, then sees where things are', async (t) => {
  const { ns, ufs, hang, put } = await setup(t);
  await ns.mkdir('/d', 0o755);
  await put('/d/f', 'keep me');
  await put('/d/h', 'and me');
  await ns.forceSync('/d'); // put there straight, after the mkdir's listing
  const g = await ns.create('/d/g', 0o644);
  await ns.resolve('/d/f');
  await ns.resolve('/d/h');
  const slow = hang('rename', '/d');
  const rename = ns.rename('/d', '/e');
  await slow.reached;
  // Asked while the rename is in its store: the old paths still resolve in the table.
  const unlink = ns.unlink('/d/f');
  const commit = ns.commitEmpty(g.ino, 'CACHE_THROUGH', undefined);
  const renameBelow = ns.rename('/d/h', '/d/h2');
  t.equal(await within(unlink, 50), 'still waiting', 'the unlink below waits');
  t.equal(await within(commit, 50), 'still waiting', 'so does the commit of a file below');
  slow.open();
  t.equal(await within(rename), 'done', 'the rename finishes');
  t.equal(await within(unlink), 'NOT_FOUND', 'the unlink then finds no /d/f: the file moved first');
  t.equal(await within(renameBelow), 'NOT_FOUND', 'nor a /d/h to rename');
  t.equal(await within(commit), 'done', 'the commit follows its file to its new path');
  t.equal((await ufs.stat('/e/f'))?.size, 'keep me'.length, 'the moved file keeps its object');
  t.equal((await ufs.stat('/e/h'))?.size, 'and me'.length);
  t.equal((await ufs.stat('/e/g'))?.size, 0, 'the committed file is stored at its new path');
  t.equal(await ufs.stat('/d'), null, 'nothing is left at the old path');
  t.equal((await ns.resolve('/e/f')).size, 'keep me'.length, 'the table agrees');
});

t.test('a change of a directory waits for a change below it that asked first', async (t) => {
  const { ns, ufs, hang } = await setup(t);
  await ns.mkdir('/d', 0o755);
  const slow = hang('mkdir', '/d/sub');
  const mkdir = ns.mkdir('/d/sub', 0o755);
  await slow.reached;
  const rmdir = ns.rmdir('/d');
  t.equal(await within(rmdir, 50), 'still waiting', 'the rmdir waits for the mkdir below');
  slow.open();
  t.equal(await within(mkdir), 'done');
  t.equal(await within(rmdir), 'NOT_EMPTY', 'and then finds the new directory in it');
  t.equal((await ufs.stat('/d/sub'))?.type, 'directory', 'which the store keeps');
});

t.test('a hard-linked file waits for the whole namespace', async (t) => {
  const { ns, ufs, hang, put } = await setup(t);
  await put('/a', 'linked');
  const a = await ns.resolve('/a');
  await ns.link(a.ino, '/b');
  const slow = hang('mkdir', '/slow');
  const slowMkdir = ns.mkdir('/slow', 0o755);
  await slow.reached;
  // Unlinking the name that holds the bytes moves them to the other link's path, which it does not name.
  const unlink = ns.unlink('/a');
  t.equal(await within(unlink, 50), 'still waiting', 'it waits for the change in flight elsewhere');
  slow.open();
  t.equal(await within(slowMkdir), 'done');
  t.equal(await within(unlink), 'done');
  t.equal((await ufs.stat('/b'))?.size, 'linked'.length, 'the bytes moved to the other link');
  t.equal((await ns.resolve('/b')).size, 'linked'.length);
});
