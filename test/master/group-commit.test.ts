/**
 * The SQLite metastore's group commit (wal-sync.ts): no answer before the WAL sync that
 * covers it, commits made together share a sync, and a failed sync stops the store.
 */

import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { ROOT_INO } from '../../src/master/metastore';
import { StrataError } from '../../src/common/errors';
import type { SyncFile } from '../../src/master/wal-sync';

const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-group-commit-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const node = { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false } as const;

/** A sync the test finishes by hand: `pending` holds the unfinished ones, oldest first. */
function heldSync(): { factory: (wal: string) => SyncFile; pending: { file: string; done: () => void; fail: (e: Error) => void }[]; files: string[] } {
  const pending: { file: string; done: () => void; fail: (e: Error) => void }[] = [];
  const files: string[] = [];
  return {
    pending,
    files,
    factory: (wal) => {
      files.push(wal);
      return {
        sync: () => new Promise<void>((done, fail) => pending.push({ file: wal, done, fail })),
        close: async () => {},
      };
    },
  };
}

/** Whether `p` has settled after the microtasks and I/O callbacks queued so far. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let yes = false;
  p.then(
    () => (yes = true),
    () => (yes = true),
  );
  await new Promise((r) => setImmediate(r));
  return yes;
}

t.test('a commit is answered only once a WAL sync begun after it has finished; a read of it waits too', async (t) => {
  const held = heldSync();
  const file = path.join(dir, 'answer.db');
  const store = new SqliteMetastore(file, { blockSize: 4096, syncFile: held.factory });
  t.teardown(() => store.close().catch(() => {}));
  t.same(held.files, [`${file}-wal`], 'the WAL file is the one synced');
  const created = store.createChild(ROOT_INO, 'a', node);
  t.equal(held.pending.length, 1, 'the commit started a sync');
  t.notOk(await settled(created), 'not answered while the sync runs');
  const read = store.lookup(ROOT_INO, 'a');
  t.notOk(await settled(read), 'a read of the unsynced change waits too');
  const taken = store.createChild(ROOT_INO, 'a', node);
  t.notOk(await settled(taken), 'so does an error that tells of it (the name is taken)');
  held.pending.shift()!.done();
  const a = await created;
  t.equal((await read)?.ino, a.ino, 'both answered after the sync');
  await t.rejects(taken, { code: 'ALREADY_EXISTS' });
  // Nothing committed since: a read answers without a sync.
  t.ok(await settled(store.lookup(ROOT_INO, 'a')), 'a read with nothing unsynced does not wait');
  t.equal(held.pending.length, 0);
  t.equal(store.walSyncs, 1);
});

t.test('commits made while a sync runs share the next one', async (t) => {
  const held = heldSync();
  const store = new SqliteMetastore(path.join(dir, 'share.db'), { blockSize: 4096, syncFile: held.factory });
  t.teardown(() => store.close().catch(() => {}));
  const first = store.createChild(ROOT_INO, 'first', node);
  t.equal(held.pending.length, 1);
  // These commit while the first sync runs, so that sync (begun before them) does not cover them.
  const more = Array.from({ length: 10 }, (_, i) => store.createChild(ROOT_INO, `more-${i}`, node));
  held.pending.shift()!.done();
  await first;
  await new Promise((r) => setImmediate(r));
  for (const p of more) t.notOk(await settled(p), 'a commit made during the first sync waits for a second');
  t.equal(held.pending.length, 1, 'one more sync for all ten');
  held.pending.shift()!.done();
  t.equal((await Promise.all(more)).length, 10);
  t.equal(store.walSyncs, 2, 'eleven commits, two syncs');
});

t.test('a failed sync fails the commits waiting for it, and the store refuses everything after', async (t) => {
  const held = heldSync();
  const file = path.join(dir, 'fail.db');
  const store = new SqliteMetastore(file, { blockSize: 4096, syncFile: held.factory });
  const created = store.createChild(ROOT_INO, 'lost', node);
  held.pending.shift()!.fail(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  const err = await created.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof StrataError && err.code === 'IO_ERROR', 'IO_ERROR');
  t.match((err as Error).message, /could not sync .*fail\.db-wal.*restart the master/);
  for (const [what, call] of [
    ['a read', () => store.lookup(ROOT_INO, 'lost')],
    ['a change', () => store.createChild(ROOT_INO, 'after', node)],
  ] as const) {
    const e = await (call() as Promise<unknown>).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.equal((e as StrataError | undefined)?.code, 'IO_ERROR', `${what} after it is refused`);
  }
  t.equal(held.pending.length, 0, 'the refused change did not run, so needs no sync');
  await store.close();
  // A clean close checkpoints the WAL into the database and removes it; this one must not make the unsynced commit durable.
  t.ok(existsSync(`${file}-wal`), 'the close did not checkpoint: the WAL is still there');
  const again = new SqliteMetastore(file, { blockSize: 4096 });
  t.teardown(() => again.close());
  t.notOk(await again.lookup(ROOT_INO, 'after'), 'the change refused after the failure was never made');
});

t.test('with the real fdatasync, what was answered is there after a reopen', async (t) => {
  const file = path.join(dir, 'real.db');
  const store = new SqliteMetastore(file, { blockSize: 4096 });
  const made = await Promise.all(Array.from({ length: 20 }, (_, i) => store.createChild(ROOT_INO, `f${i}`, node)));
  t.ok(store.walSyncs >= 1 && store.walSyncs < 20, `20 commits made together took ${store.walSyncs} syncs`);
  await store.close();
  t.notOk(existsSync(`${file}-wal`), 'a clean close checkpoints and removes the WAL');
  const again = new SqliteMetastore(file, { blockSize: 4096 });
  t.teardown(() => again.close());
  for (const [i, n] of made.entries()) t.equal((await again.lookup(ROOT_INO, `f${i}`))?.ino, n.ino);
});
