/**
 * Namespace and persister over an asynchronous store: a change that lands between
 * two store calls of a sync with the under-store (or of a persist) must win over
 * the older answer. Each test runs the concurrent change at the exact gap, from a
 * wrapper around the SQLite store that calls a hook before the method under test.
 * Before the Metastore became asynchronous these gaps did not exist; these tests
 * hold the guards (SyncGuard, dropPersist's own check) in place.
 *
 * The second half: changes that act in the under-store first and then in the
 * table by name (unlink, rmdir, rename, exchange, unmount). Between the two, a sync sees the
 * store already changed, and a create does not wait for them. Each test runs the
 * other client's requests (through the namespace, or straight on the store for the
 * expected-inode guards) at that gap; each failed before the fix it names.
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { Persister } from '../../src/master/persister';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';
import { ROOT_INO, type Metastore } from '../../src/master/metastore';
import { StrataError } from '../../src/common/errors';

const logger = pino({ level: 'silent' });
let n = 0;
/** Lets the clock move, so what was synced a moment ago counts as stale (sync interval 0) and older than the next sync. */
const later = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A SQLite store whose method `name` (the first called of several; the `nth` call once armed) first awaits `hook` (once), then runs. */
function withHook(store: SqliteMetastore, name: keyof Metastore | (keyof Metastore)[], hook: () => Promise<void>, nth = 1): Metastore {
  let armed = false;
  let calls = 0;
  const names: (string | symbol)[] = Array.isArray(name) ? name : [name];
  const wrapped = new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (names.includes(prop)) {
        return async (...args: unknown[]) => {
          if (armed && ++calls === nth) {
            armed = false;
            await hook();
          }
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return Object.assign(wrapped, { arm: () => ((armed = true), (calls = 0)) }) as Metastore & { arm(): void };
}

async function setup(t: tap.Test, hookOn: keyof Metastore | (keyof Metastore)[], hook: (store: SqliteMetastore) => Promise<void>, opts: { nth?: number; syncIntervalMs?: number } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-ns-races-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const store = withHook(sqlite, hookOn, () => hook(sqlite), opts.nth) as Metastore & { arm(): void };
  const uri = `mem://ns-races-${process.pid}-${++n}`;
  const ufs = new MemoryUnderFileSystem(uri);
  const mounts = await MountTable.open(store, uri, {});
  // Sync interval 0 by default: every access checks the store, by stat (listing is never "cheap" at 0).
  const ns = new Namespace({ table: store, mounts, syncIntervalMs: opts.syncIntervalMs ?? 0, logger });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const put = async (p: string, data: string) => {
    const w = await ufs.create(p);
    await w.write(Buffer.from(data));
    return (await w.complete()).fingerprint;
  };
  return { sqlite, store, ufs, ns, put, mounts };
}

/** Commits a new version of `ino` through the store, as a client's close does (written through: persisted). */
async function commitNewVersion(store: Metastore, ino: number, fingerprint: string | null, writeType: 'CACHE_THROUGH' | 'ASYNC_THROUGH' = 'CACHE_THROUGH') {
  const { containerId } = await store.beginWrite(ino);
  return store.commitWrite({ ino, containerId, size: 0, blocks: [], workerId: 1, ufsFingerprint: fingerprint, writeType });
}

t.test('a file committed while a revalidation found it gone from the store is not forgotten', async (t) => {
  let ino = 0;
  const { store, ufs, ns, put } = await setup(t, 'forgetChild', async (s) => {
    await commitNewVersion(s, ino, 'fp-committed');
  });
  await put('/f', 'old');
  ino = (await ns.resolve('/f')).ino;
  await ufs.delete('/f'); // gone from the store (out of band)…
  await later();
  store.arm(); // …and written through Strata between the revalidation's check and its forget
  const after = await ns.resolve('/f');
  t.equal(after.ino, ino, 'the file is still there');
  t.equal(after.ufsFingerprint, 'fp-committed', 'with the committed version');
});

t.test('a file committed while a revalidation saw another version in the store keeps the committed one', async (t) => {
  let ino = 0;
  const { store, ns, put } = await setup(t, 'refreshFromUfs', async (s) => {
    await commitNewVersion(s, ino, 'fp-committed');
  });
  await put('/f', 'v1');
  ino = (await ns.resolve('/f')).ino;
  await put('/f', 'v2 changed out of band');
  await later();
  store.arm();
  const after = await ns.resolve('/f');
  t.equal(after.ufsFingerprint, 'fp-committed', 'the refresh from the older answer gave way');
  t.equal(after.size, 0, 'the committed size');
});

t.test('a directory listing does not forget a name that was renamed onto meanwhile', async (t) => {
  let dirIno = 0;
  let fresh = 0;
  const { store, ns, put, ufs } = await setup(t, 'forgetChild', async (s) => {
    // Another file takes the name through Strata while the listing merges.
    await s.removeChild(dirIno, 'gone', 'file');
    fresh = (await s.createChild(dirIno, 'gone', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false })).ino;
  });
  await ufs.mkdir('/d');
  await put('/d/gone', 'x');
  await put('/d/kept', 'y');
  await ns.list('/d');
  dirIno = (await ns.resolve('/d')).ino;
  await ufs.delete('/d/gone');
  await later();
  store.arm();
  await ns.forceSync('/d');
  const names = (await ns.list('/d')).map((e) => [e.name, e.ino]);
  t.same(names, [
    ['gone', fresh],
    ['kept', names[1]![1]],
  ], 'the new file under the old name survives the listing');
});

t.test('the persister does not drop the queue entry of a version committed while it looked', async (t) => {
  let ino = 0;
  const { sqlite, store } = await setup(t, 'dropPersist', async (s) => {
    await commitNewVersion(s, ino, null, 'ASYNC_THROUGH');
  });
  const f = await sqlite.createChild(ROOT_INO, 'f', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false });
  ino = f.ino;
  await commitNewVersion(sqlite, ino, 'fp-persisted'); // persisted: nothing to do…
  await sqlite.enqueuePersist(ino); // …but queued (a persist asked for through the API)
  const persister = new Persister({ table: store, logger });
  store.arm(); // an ASYNC_THROUGH version lands between the persister's look and its drop
  await persister.persist(ino);
  t.same((await sqlite.persistQueue()).map((q) => q.ino), [ino], 'the new version stays queued');
  t.equal((await sqlite.requireNode(ino)).persistState, 'not_persisted');
});

/** The code of a rejection, or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof StrataError ? err.code : (err as Error).message;
  }
}

/** The inode at `path` in the namespace now, or undefined. */
async function inoAt(ns: Namespace, p: string): Promise<number | undefined> {
  try {
    return (await ns.resolve(p)).ino;
  } catch (err) {
    if (err instanceof StrataError && err.code === 'NOT_FOUND') return undefined;
    throw err;
  }
}

const fileNode = { type: 'file' as const, mode: 0o644, uid: 0, gid: 0, persisted: false };

// Before the fix: the lookup forgot the file (its object was already deleted), the create took the name, and the
// unlink then removed the new file: a create that succeeded, gone.
for (const how of ['a lookup', 'a listing'] as const) {
  t.test(`an unlink does not remove a file created under its name while it ran (${how} in between)`, async (t) => {
    let created: number | undefined;
    let createCode = '';
    const { store, ns, put } = await setup(t, 'removeChild', async () => {
      // Another client, between the delete in the store and the change in the table.
      if (how === 'a lookup') await ns.stat('/f').catch(() => undefined);
      else await ns.forceSync('/');
      createCode = await outcome(ns.create('/f', 0o644).then((a) => (created = a.ino)));
    });
    await put('/f', 'old');
    const old = (await ns.resolve('/f')).ino;
    await later();
    store.arm();
    t.equal(await outcome(ns.unlink('/f')), 'ok', 'the unlink succeeds');
    if (created !== undefined) {
      t.equal(await inoAt(ns, '/f'), created, 'the file created meanwhile is still there');
    } else {
      t.equal(createCode, 'ALREADY_EXISTS', 'the create came first, while the name was still the old file');
      t.equal(await inoAt(ns, '/f'), undefined, 'and the unlink removed that one');
    }
    t.not(await inoAt(ns, '/f'), old, 'the unlinked file is gone');
  });
}

t.test('an unlink gives way to a newer file under its name (the expected-inode guard of removeChild)', async (t) => {
  let newer = 0;
  const { sqlite, store, ns, put } = await setup(t, 'removeChild', async (s) => {
    // What a sync and a create could do at this gap, straight on the store (past the namespace's names in flight).
    await s.forgetChild(ROOT_INO, 'f');
    newer = (await s.createChild(ROOT_INO, 'f', fileNode)).ino;
  });
  await put('/f', 'old');
  await ns.resolve('/f');
  store.arm();
  t.equal(await outcome(ns.unlink('/f')), 'ok', 'the unlink succeeds: its file is gone');
  t.equal((await sqlite.lookup(ROOT_INO, 'f'))?.ino, newer, 'the newer file stays');
});

t.test('an rmdir gives way to a newer directory under its name', async (t) => {
  let newer = 0;
  const { sqlite, store, ns } = await setup(t, 'removeChild', async (s) => {
    await s.forgetChild(ROOT_INO, 'd');
    newer = (await s.createChild(ROOT_INO, 'd', { ...fileNode, type: 'directory', mode: 0o755 })).ino;
  });
  await ns.mkdir('/d', 0o755);
  store.arm();
  t.equal(await outcome(ns.rmdir('/d')), 'ok');
  t.equal((await sqlite.lookup(ROOT_INO, 'd'))?.ino, newer, 'the newer directory stays');
});

// Before the fix: the lookup forgot the source (its object had just moved), the create took the name, and the
// rename moved the new empty file onto the destination: the renamed file was lost and the new one moved away.
t.test('a rename moves the file it checked, not one created under the source name while it ran', async (t) => {
  let created: number | undefined;
  let createCode = '';
  const { store, ns, put, ufs } = await setup(t, 'rename', async () => {
    await ns.stat('/src').catch(() => undefined);
    createCode = await outcome(ns.create('/src', 0o644).then((a) => (created = a.ino)));
  });
  await put('/src', 'moved');
  await put('/dst', 'replaced');
  const src = (await ns.resolve('/src')).ino;
  await ns.resolve('/dst');
  await later();
  store.arm();
  t.equal(await outcome(ns.rename('/src', '/dst')), 'ok', 'the rename succeeds');
  const dst = await ns.resolve('/dst');
  t.equal(dst.ino, src, 'the destination is the renamed file');
  t.equal(dst.size, 'moved'.length);
  t.equal((await ufs.stat('/dst'))?.size, 'moved'.length, 'as in the store');
  if (created !== undefined) t.equal(await inoAt(ns, '/src'), created, 'the file created meanwhile stays under the source name');
  else {
    t.equal(createCode, 'ALREADY_EXISTS', 'the create came first');
    t.equal(await inoAt(ns, '/src'), undefined, 'the source name is free');
  }
});

t.test('a rename whose source was dropped and taken meanwhile leaves the newer file and follows the store at the destination', async (t) => {
  let newer = 0;
  const { sqlite, store, ns, put, ufs } = await setup(t, 'rename', async (s) => {
    // Straight on the store, past the names in flight: the source forgotten (its object moved), the name taken.
    await s.forgetChild(ROOT_INO, 'src');
    newer = (await s.createChild(ROOT_INO, 'src', fileNode)).ino;
  });
  await put('/src', 'moved');
  await put('/dst', 'replaced');
  await ns.resolve('/src');
  const replaced = (await ns.resolve('/dst')).ino;
  store.arm();
  t.equal(await outcome(ns.rename('/src', '/dst')), 'ok', 'the rename succeeds: the store has the file at its new name');
  t.equal((await sqlite.lookup(ROOT_INO, 'src'))?.ino, newer, 'the newer file keeps the source name');
  const dst = await ns.resolve('/dst');
  t.not(dst.ino, newer, 'the newer file was not moved');
  t.not(dst.ino, replaced, 'the replaced entry is gone');
  t.equal(dst.size, 'moved'.length, 'the destination shows the moved bytes');
  t.equal(dst.ufsFingerprint, (await ufs.stat('/dst'))?.fingerprint, 'as the store has them');
});

// Before the fix: the lookup forgot `a` (its object had moved to b's path), the create took the name, and the
// exchange swapped the new empty file with b: a's file was gone from the namespace.
t.test('an exchange swaps the inodes it checked, not a file created under one of the names while it ran', async (t) => {
  let created: number | undefined;
  let createCode = '';
  const { store, ns, put } = await setup(t, 'exchange', async () => {
    await ns.stat('/a').catch(() => undefined);
    createCode = await outcome(ns.create('/a', 0o644).then((x) => (created = x.ino)));
  });
  await put('/a', 'aaa');
  const a = (await ns.resolve('/a')).ino;
  const b = (await ns.create('/b', 0o644)).ino; // not persisted: only a's object moves in the store
  await later();
  store.arm();
  t.equal(await outcome(ns.exchange('/a', '/b')), 'ok', 'the exchange succeeds');
  t.equal(await inoAt(ns, '/b'), a, "b names a's file");
  if (created !== undefined) t.fail(`a create took /a in the middle of the exchange (inode ${created})`);
  else t.equal(createCode, 'ALREADY_EXISTS', 'the create came first');
  t.equal(await inoAt(ns, '/a'), b, "a names b's file");
});

// Before the fix: the lookup of `a` found b's object at a's path and refreshed a's inode with it; after the swap, b
// named a's inode with b's fingerprint over a's object (its cached blocks dropped, its size wrong until the next check).
t.test('an exchange of two stored files: a lookup in between does not refresh either with the other one\'s object', async (t) => {
  const { sqlite, store, ns, put, ufs } = await setup(t, 'exchange', async () => {
    await ns.stat('/a').catch(() => undefined);
    await ns.stat('/b').catch(() => undefined);
  });
  await put('/a', 'aaa');
  await put('/b', 'bbbbbb');
  const a = await ns.resolve('/a');
  const b = await ns.resolve('/b');
  await later();
  store.arm();
  t.equal(await outcome(ns.exchange('/a', '/b')), 'ok');
  const nowA = (await sqlite.lookup(ROOT_INO, 'a'))!;
  const nowB = (await sqlite.lookup(ROOT_INO, 'b'))!;
  t.same([nowA.ino, nowA.ufsFingerprint, nowA.size], [b.ino, b.ufsFingerprint, 6], "a names b's file, as it was");
  t.same([nowB.ino, nowB.ufsFingerprint, nowB.size], [a.ino, a.ufsFingerprint, 3], "b names a's file, as it was");
  t.equal((await ufs.stat('/b'))?.fingerprint, nowB.ufsFingerprint, 'and each matches the object now at its path');
});

t.test('an exchange whose name was dropped and taken meanwhile is undone in the store (the expected-inode guard of exchange)', async (t) => {
  let newer = 0;
  const { sqlite, store, ns, put, ufs } = await setup(t, 'exchange', async (s) => {
    await s.forgetChild(ROOT_INO, 'a');
    newer = (await s.createChild(ROOT_INO, 'a', fileNode)).ino;
  });
  const fa = await put('/a', 'aaa');
  const fb = await put('/b', 'bbbbbb');
  await ns.resolve('/a');
  const b = (await ns.resolve('/b')).ino;
  store.arm();
  t.equal(await outcome(ns.exchange('/a', '/b')), 'NOT_FOUND', 'a name no longer names what was checked: ENOENT');
  t.equal((await sqlite.lookup(ROOT_INO, 'a'))?.ino, newer, 'the newer file keeps its name');
  t.equal((await sqlite.lookup(ROOT_INO, 'b'))?.ino, b, 'b is unchanged');
  t.same([(await ufs.stat('/a'))?.fingerprint, (await ufs.stat('/b'))?.fingerprint], [fa, fb], 'the store is as before');
});

// Before the fix: unmount checked for unpersisted files, then dropped the tree; a file created in between was dropped
// with it (and its bytes never reached any store).
t.test('an unmount does not drop a file created under the mount point while it ran', async (t) => {
  let createCode = '';
  const { store, ns } = await setup(t, ['forgetChild', 'unmount'], async () => {
    createCode = await outcome(ns.create('/mnt/new', 0o644));
  });
  const uri = `mem://ns-races-mnt-${process.pid}-${++n}`;
  await ns.mount('/mnt', uri, {});
  store.arm();
  const unmounted = await outcome(ns.unmount('/mnt'));
  t.equal(createCode, 'ok', 'the create (before the unmount commits) succeeds');
  t.equal(unmounted, 'BUSY', 'the unmount is refused: a file below is not persisted');
  t.ok(await inoAt(ns, '/mnt/new'), 'the new file is there');
  t.same(ns.mounts().map((m) => m.path), ['/', '/mnt'], 'still mounted');
  await ns.unlink('/mnt/new');
  t.equal(await outcome(ns.unmount('/mnt')), 'ok', 'with nothing unpersisted below, the unmount goes through');
  t.same(ns.mounts().map((m) => m.path), ['/'], 'unmounted');
  t.equal(await inoAt(ns, '/mnt'), undefined, 'the mount point is gone');
});

/** A directory of 1,100 files in the store, loaded; `arm()` runs `change` right before the merge reads its second page of the table. */
async function bigDir(t: tap.Test, change: (ns: Namespace) => Promise<void>) {
  let ns!: Namespace;
  const env = await setup(t, 'childrenPage', () => change(ns), { nth: 2, syncIntervalMs: 60_000 });
  ns = env.ns;
  await env.ufs.mkdir('/d');
  for (let i = 0; i < 1100; i++) await env.put(`/d/f-${String(i).padStart(4, '0')}`, 'x');
  return { ...env, arm: () => env.store.arm() };
}
const ino = async (sqlite: SqliteMetastore, name: string) => {
  const d = await sqlite.lookup(ROOT_INO, 'd');
  return (await sqlite.lookup(d!.ino, name))?.ino;
};

/**
 * A directory of more than one merge page (1,000): the table is read in pages with other requests
 * served between them, after the store listing. A change through Strata in such a gap is newer than
 * the listing; the merge must leave its names alone (found by review: renamed files forgotten, unlinked
 * ones loaded again as ghosts, an exchanged file given the other's fingerprint).
 */
t.test('a change while a big directory is merged page by page is not undone by the older listing', async (t) => {
  await t.test('renamed from the page read to one not read yet', async (t) => {
    const env = await bigDir(t, (ns) => ns.rename('/d/a-src', '/d/z-dst'));
    await env.put('/d/a-src', 'abc');
    await env.ns.list('/d');
    const was = await ino(env.sqlite, 'a-src');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    t.equal(await ino(env.sqlite, 'z-dst'), was, 'the renamed file keeps its name and inode');
    t.equal((await env.ns.stat('/d/z-dst')).size, 3);
  });

  await t.test('renamed from a page not read yet to the one read', async (t) => {
    const env = await bigDir(t, (ns) => ns.rename('/d/z-src', '/d/a-dst'));
    await env.put('/d/z-src', 'abc');
    await env.ns.list('/d');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    t.equal(await ino(env.sqlite, 'z-src'), undefined, 'no ghost of the old name');
    t.ok(await ino(env.sqlite, 'a-dst'), 'the new name is there');
  });

  await t.test('unlinked on a page not read yet', async (t) => {
    const env = await bigDir(t, (ns) => ns.unlink('/d/z-gone'));
    await env.put('/d/z-gone', 'abc');
    await env.ns.list('/d');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    t.equal(await ino(env.sqlite, 'z-gone'), undefined, 'it stays unlinked');
    await env.ns.mkdir('/d/z-gone', 0o755);
    t.pass('and the name can be taken');
  });

  await t.test('exchanged across pages', async (t) => {
    const env = await bigDir(t, (ns) => ns.exchange('/d/a-x', '/d/z-y'));
    await env.put('/d/a-x', 'abc');
    await env.put('/d/z-y', 'abcdef');
    await env.ns.list('/d');
    const x = await ino(env.sqlite, 'a-x');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    t.equal(await ino(env.sqlite, 'z-y'), x, 'the exchange holds');
    const node = await env.sqlite.requireNode(x!);
    t.equal(node.size, 3, 'the file at z-y is still its own size');
    t.equal(node.ufsFingerprint, (await env.ufs.stat('/d/z-y'))!.fingerprint, "and its fingerprint is its object's");
  });
});

t.test('more changes around a big directory merge (second review)', async (t) => {
  await t.test("an unlink that hands a hard link's bytes over to the other name", async (t) => {
    const env = await bigDir(t, (ns) => ns.unlink('/d/z-primary'));
    await env.put('/d/z-primary', 'abc');
    await env.ns.list('/d');
    const was = (await env.ns.stat('/d/z-primary')).ino;
    await env.ns.link(was, '/d/a-second');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    t.ok(await env.ufs.stat('/d/a-second'), 'the store has the bytes under the other name');
    t.equal(await ino(env.sqlite, 'a-second'), was, 'and the table keeps that name, with its inode');
  });

  await t.test('a forced sync asked during a merge gets a listing of its own', async (t) => {
    let forced: Promise<void> | undefined;
    const env = await bigDir(t, async (ns) => {
      await env.put('/d/z-new', 'abc');
      forced = ns.forceSync('/d');
    });
    await env.ns.list('/d');
    await later();
    env.arm();
    await env.ns.forceSync('/d');
    await forced;
    t.ok(await ino(env.sqlite, 'z-new'), 'a file put into the store before the second forceSync is loaded by it');
  });
});

t.test('a mkdir whose store side lands before a listing of its parent still succeeds', async (t) => {
  const env = await setup(t, 'childrenPage', async () => undefined, { syncIntervalMs: 60_000 });
  await env.ufs.mkdir('/d');
  await env.ns.list('/d');
  await later();
  const ufs = env.mounts.resolve(['d']).mount.ufs;
  const orig = ufs.mkdir.bind(ufs);
  ufs.mkdir = async (p: string, o?: never) => {
    await orig(p, o);
    if (p === '/d/newdir') await env.ns.forceSync('/d');
  };
  const made = await env.ns.mkdir('/d/newdir', 0o755);
  t.equal(made.type, 'directory', 'mkdir succeeds');
  t.equal((await env.ns.list('/d')).filter((e) => e.name === 'newdir').length, 1, 'and the directory is there once');
});

// ---- a directory moved while a sync asked the store about its old path (third review) ----

/** Holds the store's `method` for `path` (once) until released: a slow listing or stat. */
function slowStore(t: tap.Test, method: 'list' | 'stat', path: string) {
  const orig = MemoryUnderFileSystem.prototype[method];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inCall = new Promise<void>((r) => (entered = r));
  let armed = true;
  MemoryUnderFileSystem.prototype[method] = async function (this: MemoryUnderFileSystem, p: string, ...rest: unknown[]) {
    if (armed && p === path) {
      armed = false;
      entered();
      await gate;
    }
    return (orig as (...a: unknown[]) => Promise<unknown>).call(this, p, ...rest);
  } as never;
  t.teardown(() => void (MemoryUnderFileSystem.prototype[method] = orig as never));
  return { inCall, release };
}

const names = async (ns: Namespace, p: string) => (await ns.list(p)).map((e) => e.name).sort();

/** /a/D holding `mine` and /a/F holding `other`, in the store and known to the namespace; listed once and never again (-1). */
async function twoDirectories(t: tap.Test): Promise<Namespace> {
  const { ns, ufs, put } = await setup(t, 'rename', async () => undefined, { syncIntervalMs: -1 });
  await ufs.mkdir('/a');
  await ufs.mkdir('/a/D');
  await ufs.mkdir('/a/F');
  await put('/a/D/mine', 'D data');
  await put('/a/F/other', 'F data');
  await ns.stat('/a/D');
  await ns.stat('/a/F');
  return ns;
}

t.test('a listing of a directory moved away (and another moved into its place) is not merged into the moved one', async (t) => {
  // A wrong merge would stay for good (never listed again).
  const ns = await twoDirectories(t);
  const slow = slowStore(t, 'list', '/a/D');
  const listing = ns.list('/a/D');
  await slow.inCall;
  await ns.rename('/a/D', '/a/E');
  await ns.rename('/a/F', '/a/D');
  slow.release();
  await listing;
  t.same(await names(ns, '/a/E'), ['mine'], 'the moved directory has its own file');
  t.same(await names(ns, '/a/D'), ['other'], 'and the one moved into its place its own');
  t.equal(await outcome(ns.stat('/a/E/mine')), 'ok');
});

t.test('a listing read while its directory was away (moved out, another in, then both back) is not merged', async (t) => {
  // The path names the listed directory again when the listing ends; only the count of moves shows it was away.
  const ns = await twoDirectories(t);
  // The store reads /a/D while F is there, and its answer arrives once everything is back in place.
  const orig = MemoryUnderFileSystem.prototype.list;
  let read!: () => void;
  const hasRead = new Promise<void>((r) => (read = r));
  let answer!: () => void;
  const answered = new Promise<void>((r) => (answer = r));
  let inCall!: () => void;
  const started = new Promise<void>((r) => (inCall = r));
  let move!: () => void;
  const moved = new Promise<void>((r) => (move = r));
  let armed = true;
  MemoryUnderFileSystem.prototype.list = async function (this: MemoryUnderFileSystem, p: string, ...rest: unknown[]) {
    if (!armed || p !== '/a/D') return (orig as (...a: unknown[]) => Promise<unknown>).call(this, p, ...rest);
    armed = false;
    inCall();
    await moved;
    const r = await (orig as (...a: unknown[]) => Promise<unknown>).call(this, p, ...rest);
    read();
    await answered;
    return r;
  } as never;
  t.teardown(() => void (MemoryUnderFileSystem.prototype.list = orig));
  const listing = ns.list('/a/D');
  await started;
  await ns.rename('/a/D', '/a/E');
  await ns.rename('/a/F', '/a/D');
  move();
  await hasRead;
  await ns.rename('/a/D', '/a/F');
  await ns.rename('/a/E', '/a/D');
  answer();
  await listing;
  t.same(await names(ns, '/a/D'), ['mine'], 'the directory has its own file only');
  t.same(await names(ns, '/a/F'), ['other'], 'and the other directory its own');
});

t.test('a revalidation of a file whose directory moved meanwhile does not drop the moved file', async (t) => {
  const { ns, ufs, put } = await setup(t, 'rename', async () => undefined);
  await ufs.mkdir('/a');
  await ufs.mkdir('/a/D');
  await put('/a/D/x', 'x data');
  await ns.setAttributes('/a/D/x', { mode: 0o600 });
  const before = (await ns.resolve('/a/D/x')).ino;
  await later();
  // Interval 0: the lookup checks the file in the store; it asks about /a/D/x, then the directory moves.
  const slow = slowStore(t, 'stat', '/a/D/x');
  const lookup = outcome(ns.stat('/a/D/x'));
  await slow.inCall;
  await ns.rename('/a/D', '/a/E');
  slow.release();
  await lookup;
  const x = await ns.resolve('/a/E/x');
  t.equal(x.ino, before, 'the file keeps its inode under the new name');
  t.equal(x.mode & 0o7777, 0o600, 'and its mode');
});

t.test('a lookup of a new name in a directory moved meanwhile does not load another directory\'s object into it', async (t) => {
  const { sqlite, ns, ufs, put } = await setup(t, 'rename', async () => undefined);
  await ufs.mkdir('/a');
  await ufs.mkdir('/a/D');
  await ufs.mkdir('/a/F');
  await put('/a/F/y', 'F data');
  const d = (await ns.resolve('/a/D')).ino;
  await ns.resolve('/a/F');
  await later();
  // /a/D/y is not in the table: the lookup asks the store, then D moves away and F takes its name (and F's y with it).
  const slow = slowStore(t, 'stat', '/a/D/y');
  const lookup = outcome(ns.stat('/a/D/y'));
  await slow.inCall;
  await ns.rename('/a/D', '/a/E');
  await ns.rename('/a/F', '/a/D');
  slow.release();
  await lookup;
  t.equal(await sqlite.lookup(d, 'y'), undefined, 'the moved directory did not get F\'s file');
  t.same(await names(ns, '/a/E'), [], 'it lists empty');
  t.same(await names(ns, '/a/D'), ['y'], 'the file is where the store has it');
});

// ---- the store changed first, then the table refused (third review) ----

t.test('an rmdir that loses to a create in the directory leaves the directory in the store as well', async (t) => {
  const { store, ns, ufs } = await setup(t, 'removeChild', async () => {
    await ns.create('/d/x', 0o644);
  });
  await ns.mkdir('/d', 0o755);
  store.arm();
  t.equal(await outcome(ns.rmdir('/d')), 'NOT_EMPTY', 'the rmdir fails: the directory has a file now');
  t.equal((await ufs.stat('/d'))?.type, 'directory', 'and is in the store still');
  t.equal(await outcome(ns.mkdir('/d/sub', 0o755)), 'ok', 'a directory is made in it');
});

t.test('a rename onto an empty directory that loses to a create in it leaves the store as the namespace has it', async (t) => {
  const { store, ns, ufs, put } = await setup(t, 'rename', async () => {
    await ns.create('/T/x', 0o644);
  });
  await ns.mkdir('/D', 0o755);
  await ns.mkdir('/T', 0o755);
  await put('/D/data', 'D data');
  await ns.resolve('/D/data');
  await later();
  store.arm();
  t.equal(await outcome(ns.rename('/D', '/T')), 'NOT_EMPTY', 'the rename fails: the target has a file now');
  t.equal((await ufs.stat('/D/data'))?.size, 'D data'.length, "the source's file is back at its path in the store");
  t.equal((await ufs.stat('/T'))?.type, 'directory', 'the target directory is in the store again');
  t.equal(await ufs.stat('/T/data'), null, "without the source's file");
  t.equal(await outcome(ns.stat('/D/data')), 'ok', 'the namespace still has the file where it was');
});
