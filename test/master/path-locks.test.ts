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
import { PathLocks, covers, overlaps, type LockScope } from '../../src/master/path-locks';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import type { UnderFileSystem } from '../../src/ufs/ufs';
import { StrataError } from '../../src/common/errors';
import { s3Namespace as s3NamespaceOn } from '../helpers/s3-namespace';
import type * as tap from 'tap';
import { blockIdOf } from '../../src/common/protocol';

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

  t.test('a scope covers another when each of its paths is one of the other\'s or lies below one', async (t) => {
    const s = (...paths: string[]): LockScope => paths.map((p) => p.split('/').filter(Boolean));
    t.ok(covers(s('a'), s('a/b')));
    t.ok(covers(s('a', 'x'), s('a/b', 'x/y/z')));
    t.ok(covers('all', s('a')));
    t.notOk(covers(s('a/b'), s('a')), 'not a directory above');
    t.notOk(covers(s('a'), s('a/b', 'c')), 'not when one path is elsewhere');
    t.notOk(covers(s('a'), 'all'));
  });

  t.test('many requests over a few paths: overlapping ones never run together, and run in the order asked', async (t) => {
    const universe = ['', 'd', 'd/f', 'd/g', 'd/f/x', 'e', 'e/h'].map((p) => p.split('/').filter(Boolean));
    let seed = 42;
    // The high bits of a linear congruential generator (its low bits repeat with short periods).
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor(seed / 2 ** 16) % n);
    const locks = new PathLocks();
    const running = new Set<number>();
    const started: number[] = [];
    const scopes: LockScope[] = [];
    let clashes = 0;
    const all: Promise<void>[] = [];
    for (let i = 0; i < 400; i++) {
      const scope: LockScope = random(25) === 0 ? 'all' : Array.from({ length: 1 + random(2) }, () => universe[random(universe.length)]!);
      scopes.push(scope);
      const hold = random(3);
      all.push(
        locks.run(scope, async () => {
          for (const j of running) if (overlaps(scopes[j]!, scope)) clashes++;
          running.add(i);
          started.push(i);
          for (let k = 0; k < hold; k++) await settle();
          running.delete(i);
        }),
      );
      if (random(4) === 0) await settle();
    }
    await Promise.all(all);
    t.equal(clashes, 0, 'no two overlapping requests ran at once');
    let outOfOrder = 0;
    const at = new Map(started.map((i, k) => [i, k]));
    for (let i = 0; i < scopes.length; i++) for (let j = i + 1; j < scopes.length; j++) if (overlaps(scopes[i]!, scopes[j]!) && at.get(i)! > at.get(j)!) outOfOrder++;
    t.equal(outOfOrder, 0, 'overlapping requests started in the order they asked');
    t.equal(started.length, 400, 'every request ran');
    t.equal(locks.size, 0);
  });

  t.test('requests piling up behind one wait for one request each, not for all before them', async (t) => {
    const pileUp = async (scopeOf: (i: number) => LockScope, n: number) => {
      const locks = new PathLocks();
      const gate = deferred();
      const all = [locks.run([['f']], () => gate.promise)];
      for (let i = 0; i < n; i++) all.push(locks.run(scopeOf(i), async () => undefined));
      gate.resolve();
      await Promise.all(all);
      return locks.waits;
    };
    t.ok((await pileUp(() => [['f']], 2000)) <= 2000, 'on one path');
    t.ok((await pileUp(() => 'all', 2000)) <= 2000, 'on the whole namespace');
    t.ok((await pileUp((i) => [['f'], ['new' + i]], 2000)) <= 2000, 'sharing one path among others (links to one file)');
    t.ok((await pileUp((i) => [['d', 'f' + (i % 7)], ['d', 'g' + (i % 5)]], 2000)) <= 2 * 2000, 'two paths each');
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
  return { ns, ufs: ufs as UnderFileSystem, hang, put, sqlite, mountUri: uri };
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
  t.equal(await within(ns.link(g.ino, '/other/g-link')), 'done', 'a hard link');
  await put('/p', 'p');
  await put('/q', 'qq');
  t.equal(await within(ns.exchange('/p', '/q')), 'done', 'an exchange');
  t.equal((await ufs.stat('/p'))?.size, 2, 'the two objects swapped');
  t.equal(await within(slowMkdir, 50), 'still waiting', 'the hanging mkdir is still in its store');
  t.equal(ns.storeChanges, 1, 'the one change in flight (strata_master_store_changes)');
  t.equal(await ufs.stat('/f'), null, 'the unlinked object is gone');
  t.equal((await ufs.stat('/other/y'))?.size, 'to be renamed'.length, 'the renamed object moved');
  t.equal((await ufs.stat('/g'))?.size, 0, 'the committed file is in the store');
  slow.open();
  t.equal(await within(slowMkdir), 'done', 'the hanging mkdir finishes once its store answers');
  t.equal((await ns.resolve('/slow')).type, 'directory');
  t.equal(ns.storeChanges, 0);
});

t.test('a write-through that a rename overtook removes its stray object beside a store call hanging elsewhere', async (t) => {
  const { ns, ufs, hang, put, sqlite, mountUri } = await setup(t);
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/f', 0o644);
  const { containerId } = await sqlite.beginWrite(f.ino);
  await ns.rename('/d', '/e');
  await ns.mkdir('/d', 0o755);
  await put('/d/f', 'late'); // the worker's write lands where the file was when it began
  const st = await ufs.stat('/d/f');
  const slow = hang('mkdir', '/slow');
  const slowMkdir = ns.mkdir('/slow', 0o755);
  await slow.reached;
  const commit = ns.commitWrite({ ino: f.ino, containerId, size: 4, blocks: [{ id: blockIdOf(containerId, 0), length: 4 }], workerId: 1, ufsFingerprint: st!.fingerprint, writeType: 'CACHE_THROUGH', ufsAt: { mountUri, path: '/d/f' } });
  t.equal(await within(commit), 'NOT_FOUND', 'the commit is refused (its client writes the file again) without waiting');
  t.equal(await ufs.stat('/d/f'), null, 'the stray object is gone');
  slow.open();
  t.equal(await within(slowMkdir), 'done');
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

// ---- over S3 (s3rver): the store side of changes that now run side by side ----------------------

const outcome = (p: Promise<unknown>) => p.then(() => 'done', (e: unknown) => (e instanceof StrataError ? e.code : String(e)));

/** A namespace on s3://lake/root (s3rver); `holdPut(key)` makes the next PUT of that key wait for the test. */
async function s3Namespace(t: tap.Test, syncIntervalMs: number) {
  let hold: { key: string; reached: () => void; gate: Promise<void> } | undefined;
  const on = await s3NamespaceOn(t, {
    syncIntervalMs,
    before: async (ctx, next) => {
      if (hold && ctx.method === 'PUT' && decodeURIComponent(ctx.path) === `/lake/${hold.key}`) {
        const h = hold;
        hold = undefined;
        h.reached();
        await h.gate;
      }
      await next();
    },
  });
  /** The next PUT of `key` waits until open(); `reached` settles when it arrived. */
  const holdPut = (key: string) => {
    const reached = deferred();
    const gate = deferred();
    hold = { key, reached: reached.resolve, gate: gate.promise };
    return { reached: reached.promise, open: gate.resolve };
  };
  return { ...on, holdPut };
}

t.test('S3: a mkdir beside the unlink of the last entry of a directory without a marker finds the directory', async (t) => {
  const { ns, putDirect, holdPut } = await s3Namespace(t, 60_000);
  // /p exists in the store only through its one object (written by another program, or a write that made it).
  await putDirect('root/p/a', 'last entry');
  t.equal((await ns.resolve('/p/a')).type, 'file');
  // The unlink writes the marker p/ so that /p stays after its last entry goes: held there.
  const marker = holdPut('root/p/');
  const unlink = outcome(ns.unlink('/p/a'));
  await marker.reached;
  // Another client makes a directory in /p, which the table has and which never stopped existing for it.
  const mkdir = outcome(ns.mkdir('/p/b', 0o755));
  await new Promise((r) => setTimeout(r, 300));
  marker.open();
  t.equal(await unlink, 'done');
  t.equal(await mkdir, 'done', 'the mkdir succeeds: the directory never stopped existing');
});

t.test('S3: a rename into a directory without a marker, beside the unlink of its last entry, finds the directory', async (t) => {
  // Sync interval 0: the master vouches for nothing, so the driver checks the destination's parent.
  const { ns, putDirect, holdPut } = await s3Namespace(t, 0);
  await putDirect('root/p/a', 'last entry');
  await putDirect('root/x', 'moved');
  t.equal((await ns.resolve('/p/a')).type, 'file');
  t.equal((await ns.resolve('/x')).type, 'file');
  const marker = holdPut('root/p/');
  const unlink = outcome(ns.unlink('/p/a'));
  await marker.reached;
  const rename = outcome(ns.rename('/x', '/p/x'));
  await new Promise((r) => setTimeout(r, 300));
  marker.open();
  t.equal(await unlink, 'done');
  t.equal(await rename, 'done', 'the rename succeeds: the directory never stopped existing');
});

t.test('S3: a late write-through at a path its directory was renamed away from is removed, and the directory does not come back', async (t) => {
  const { ns, putDirect, sqlite, mounts } = await s3Namespace(t, 60_000);
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/f', 0o644);
  const { containerId } = await sqlite.beginWrite(f.ino);
  await ns.rename('/d', '/e');
  // The worker's write lands where the file was when it began.
  await putDirect('root/d/f', 'late');
  const mount = mounts.resolve([]).mount;
  const ufs = mount.ufs;
  const st = await ufs.stat('/d/f');
  t.ok(st, 'the late object is there');
  const commit = ns.commitWrite({ ino: f.ino, containerId, size: 4, blocks: [{ id: blockIdOf(containerId, 0), length: 4 }], workerId: 1, ufsFingerprint: st!.fingerprint, writeType: 'CACHE_THROUGH', ufsAt: { mountUri: mount.uri, path: '/d/f' } });
  t.equal(await outcome(commit), 'NOT_FOUND', 'the commit fails: the client writes the file again where it is now');
  t.equal(await ufs.stat('/d/f'), null, 'the stray object is gone');
  t.equal(await ufs.stat('/d'), null, 'and no marker brought its directory back');
  await ns.forceSync('/');
  t.same((await ns.list('/')).map((e) => e.name).sort(), ['e']);
});
