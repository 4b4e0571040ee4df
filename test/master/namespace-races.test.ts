/**
 * Namespace and persister over an asynchronous store: a change that lands between
 * two store calls of a sync with the under-store (or of a persist) must win over
 * the older answer. Each test runs the concurrent change at the exact gap, from a
 * wrapper around the SQLite store that calls a hook before the method under test.
 * Before the Metastore became asynchronous these gaps did not exist; these tests
 * hold the guards (SyncGuard, dropPersist's own check) in place.
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

const logger = pino({ level: 'silent' });
let n = 0;
/** Lets the clock move, so what was synced a moment ago counts as stale (sync interval 0) and older than the next sync. */
const later = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A SQLite store whose method `name` first awaits `hook` (once), then runs. */
function withHook(store: SqliteMetastore, name: keyof Metastore, hook: () => Promise<void>): Metastore {
  let armed = false;
  const wrapped = new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === name) {
        return async (...args: unknown[]) => {
          if (armed) {
            armed = false;
            await hook();
          }
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return Object.assign(wrapped, { arm: () => (armed = true) }) as Metastore & { arm(): void };
}

async function setup(t: tap.Test, hookOn: keyof Metastore, hook: (store: SqliteMetastore) => Promise<void>) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-ns-races-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const store = withHook(sqlite, hookOn, () => hook(sqlite)) as Metastore & { arm(): void };
  const uri = `mem://ns-races-${process.pid}-${++n}`;
  const ufs = new MemoryUnderFileSystem(uri);
  const mounts = await MountTable.open(store, uri, {});
  // Sync interval 0: every access checks the store, by stat (listing is never "cheap" at 0).
  const ns = new Namespace({ table: store, mounts, syncIntervalMs: 0, logger });
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
  return { sqlite, store, ufs, ns, put };
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
