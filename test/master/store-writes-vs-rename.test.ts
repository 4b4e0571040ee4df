/**
 * Writes into the under-store that a rename overtakes. An object is written at the
 * path its file had when the write began; a rename meanwhile must neither leave the
 * file recorded as stored where it is not, nor let the late object replace what was
 * renamed onto that path since.
 *
 * - The persister's upload: a master, a worker and a client in this process over a
 *   shared mem:// store; the upload is held at its first write while the file is
 *   renamed away and another (stored) file is renamed onto its old path.
 * - A write-through's commit: at the Namespace, the object written at the old path,
 *   the rename, then the commit naming the old path.
 * - Either way the object is a stray and goes. A persist's file is queued again: its
 *   blocks on the worker are the only copy of its bytes until then, and must stay
 *   pinned. A write-through's commit fails and its client writes the file again, so a
 *   close never returns with the bytes stored nowhere but in a worker's cache.
 */

import t from 'tap';
import type * as tap from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { StrataError } from '../../src/common/errors';
import { Readable } from 'node:stream';
import { tempRoot } from '../helpers/cluster';
import { inProcessCluster, readWhole, until } from '../helpers/in-process';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import type { UfsWriter } from '../../src/ufs/ufs';
import { BLOCKS_PER_CONTAINER, blockIdOf } from '../../src/common/protocol';

const readObject = async (ufs: MemoryUnderFileSystem, p: string): Promise<string | undefined> => {
  if (!(await ufs.stat(p))) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of await ufs.read(p, 0, 1 << 20)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
};

/** A master, a worker and a client in this process over the mem:// store `uri`. */
async function cluster(t: tap.Test, name: string, writeType: 'ASYNC_THROUGH' | 'CACHE_THROUGH', masterOpts: { persistInitialWaitMs?: number } = {}) {
  const uri = `mem://${name}-${process.pid}`;
  const c = await inProcessCluster(t, name, { ufsUri: uri, ...masterOpts });
  const fs = await c.client(writeType);
  const create = MemoryUnderFileSystem.prototype.create;
  t.teardown(() => {
    MemoryUnderFileSystem.prototype.create = create;
  });
  return { ufs: new MemoryUnderFileSystem(uri), fs, create, workerUrl: c.workerUrl };
}

t.test("a persist overtaken by renames: the object renamed onto the file's old path survives, the file is stored where it is now", async (t) => {
  const { ufs, fs, create } = await cluster(t, 'persist-rename', 'ASYNC_THROUGH', { persistInitialWaitMs: 0 });

  // B: a file in the store already.
  await ufs.mkdir('/d');
  const b = await ufs.create('/d/h');
  await b.write(Buffer.from('B, already stored'));
  await b.complete();
  t.equal((await fs.getattr('/d/h')).size, 17, 'B is seen');

  // The persister's upload of A to /d/x is held at its first write while A is renamed away and B onto /d/x.
  let renamed: Promise<void> | undefined;
  MemoryUnderFileSystem.prototype.create = async function (this: MemoryUnderFileSystem, p: string): Promise<UfsWriter> {
    const w = await create.call(this, p);
    if (p !== '/d/x' || renamed) return w;
    const write = w.write.bind(w);
    return Object.assign(w, {
      write: async (chunk: Buffer) => {
        renamed ??= (async () => {
          await fs.rename('/d/x', '/d/y');
          await fs.rename('/d/h', '/d/x');
        })();
        await renamed;
        return write(chunk);
      },
    });
  };
  await fs.writeFile('/d/x', Buffer.from('A, written with ASYNC_THROUGH'), 29);
  await until('the held upload and the renames', async () => renamed !== undefined && (await renamed.then(() => true)));
  await until('A persisted at its new path', async () => (await readObject(ufs, '/d/y')) === 'A, written with ASYNC_THROUGH', 30_000);
  t.pass('A was stored at /d/y, where it is now');
  t.equal(await readObject(ufs, '/d/x'), 'B, already stored', "B's bytes are still at /d/x, where B is now");
  const r = await fs.openReader('/d/x');
  const got = Buffer.alloc(r.size);
  await r.read(0, r.size, got, 0);
  r.close();
  t.equal(got.toString(), 'B, already stored', 'and read back through Strata');
});

/** The worker's count of blocks kept from eviction because their bytes may exist nowhere else. */
const unpersistedBlocks = async (workerUrl: string): Promise<number> => {
  const text = await (await fetch(`${workerUrl}/metrics`)).text();
  const m = /^strata_worker_unpersisted_blocks(?:{[^}]*})? (\d+)$/m.exec(text);
  if (!m) throw new Error('no strata_worker_unpersisted_blocks in the worker metrics');
  return Number(m[1]);
};

/**
 * The store's first upload to `from` has the file renamed to `to` right before it completes
 * (after the worker's last check: only the master's settle or commit can notice); the next
 * upload, to `to`, is held at its first write until `release()`.
 */
function renameAtCompleteThenHold(fs: StrataFileSystem, create: typeof MemoryUnderFileSystem.prototype.create, from: string, to: string) {
  const state = { renamed: false, secondStarted: false, release: (): void => undefined };
  const held = new Promise<void>((r) => (state.release = r));
  MemoryUnderFileSystem.prototype.create = async function (this: MemoryUnderFileSystem, p: string): Promise<UfsWriter> {
    const w = await create.call(this, p);
    if (p === from && !state.renamed) {
      const complete = w.complete.bind(w);
      return Object.assign(w, {
        complete: async () => {
          state.renamed = true;
          await fs.rename(from, to);
          return complete();
        },
      });
    }
    if (p === to) {
      state.secondStarted = true;
      const write = w.write.bind(w);
      return Object.assign(w, {
        write: async (chunk: Buffer) => {
          await held;
          return write(chunk);
        },
      });
    }
    return w;
  };
  return state;
}

// Reproduces a loss: the worker unpinned the blocks as soon as its upload completed; the master then
// found the object a stray (the file was renamed after the worker's last check) and queued the file
// again, but the only copy of its bytes could be evicted before the next persist.
t.test('a persist the master finds a stray keeps its blocks pinned until the file is persisted where it is now; then they are let go', async (t) => {
  const { ufs, fs, create, workerUrl } = await cluster(t, 'persist-stray-pins', 'ASYNC_THROUGH', { persistInitialWaitMs: 0 });
  await ufs.mkdir('/d');
  // The first upload (to /d/x) is renamed away right before it completes: after the worker's last check.
  // The second (to /d/y, where the file is then) is held until the pins were looked at.
  const hook = renameAtCompleteThenHold(fs, create, '/d/x', '/d/y');
  await fs.writeFile('/d/x', Buffer.from('A, written with ASYNC_THROUGH'), 29);
  await until('the first upload, renamed before its completion, and the second one under way', async () => hook.renamed && hook.secondStarted);
  t.equal(await ufs.stat('/d/x'), null, 'the object of the first upload was removed as a stray');
  t.equal((await fs.getattr('/d/y')).persistState, 'not_persisted', 'and the file is not recorded as stored');
  // A few heartbeats: none may let the blocks go while the file is not stored.
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(await unpersistedBlocks(workerUrl), 1, 'its block is still pinned on the worker (the only copy of its bytes)');

  hook.release();
  await until('A persisted at its new path', async () => (await readObject(ufs, '/d/y')) === 'A, written with ASYNC_THROUGH', 30_000);
  await until('the file recorded as persisted', async () => (await fs.getattr('/d/y')).persistState === 'persisted');
  await until('the pin let go by a heartbeat', async () => (await unpersistedBlocks(workerUrl)) === 0);
  t.pass('once persisted, the heartbeat let the pin go: nothing leaks');
});

t.test('a persist upload whose master went away, or whose file was rewritten meanwhile, stores nothing', async (t) => {
  // The persister waits an hour before a file's first persist: this test asks the worker itself.
  const { ufs, fs, create, workerUrl } = await cluster(t, 'persist-orphan', 'ASYNC_THROUGH', { persistInitialWaitMs: 3_600_000 });
  await ufs.mkdir('/d');
  let release: () => void = () => undefined;
  let held: Promise<void> | undefined;
  let arrived: () => void = () => undefined;
  const reached = new Promise<void>((r) => (arrived = r));
  MemoryUnderFileSystem.prototype.create = async function (this: MemoryUnderFileSystem, p: string): Promise<UfsWriter> {
    const w = await create.call(this, p);
    if (p !== '/d/v') return w;
    const write = w.write.bind(w);
    return Object.assign(w, {
      write: async (chunk: Buffer) => {
        held ??= new Promise<void>((r) => (release = r));
        arrived();
        await held;
        return write(chunk);
      },
    });
  };
  const persistOf = async (signal?: AbortSignal) => {
    const blocks = await fs.master.fileBlocks('/d/v');
    const container = Math.floor(blocks.blocks[0]!.id / BLOCKS_PER_CONTAINER);
    return fetch(`${workerUrl}/persist/${blocks.attrs.ino}?container=${container}&blocks=${blocks.blocks.length}`, { method: 'POST', signal });
  };

  // The master that asked gives up (its request ends) while the upload is held: the upload stops there.
  await fs.writeFile('/d/v', Buffer.from('V1, first version'), 17);
  const asker = new AbortController();
  const first = persistOf(asker.signal).catch(() => 'given up');
  await reached;
  asker.abort();
  t.equal(await first, 'given up', 'the asking request went away');
  await new Promise((r) => setTimeout(r, 200));
  release();
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await ufs.stat('/d/v'), null, 'the upload was abandoned: nothing was stored');

  // An upload of V1 held while V2 is written: completing it would put V1 where V2 belongs.
  held = undefined;
  const second = persistOf();
  await until('the second upload to be held', async () => held !== undefined);
  await fs.writeFile('/d/v', Buffer.from('V2, the newer version'), 21);
  release();
  const res = await second;
  t.equal(res.status, 409, `the worker refuses to complete the old version (${res.status}: ${await res.text()})`);
  t.equal(await ufs.stat('/d/v'), null, 'and nothing was stored');
  const r = await fs.openReader('/d/v');
  const got = Buffer.alloc(r.size);
  await r.read(0, r.size, got, 0);
  r.close();
  t.equal(got.toString(), 'V2, the newer version', 'the file reads as its newer version');
});

/** A Namespace alone over the mem:// store `name` (SQLite in a temp dir). */
async function namespaceOn(t: tap.Test, name: string, syncIntervalMs: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `strata-${name}-`));
  const uri = `mem://${name}-${process.pid}`;
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, uri, {});
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { ns, sqlite, ufs: new MemoryUnderFileSystem(uri) };
}

type NamespaceSetUp = Awaited<ReturnType<typeof namespaceOn>>;

/**
 * A worker's write-through of a new file at `from`: it asks where, the file is renamed to
 * `to`, then its object lands at `from`. `commit()` is the client's commit that follows, late.
 */
async function lateWriteThrough({ ns, sqlite, ufs }: NamespaceSetUp, from: string, to: string) {
  const body = 'A, late';
  const a = await ns.create(from, 0o644);
  const { containerId } = await sqlite.beginWrite(a.ino);
  const at = await ns.ufsLocation(a.ino, { purpose: 'write', container: containerId });
  // The rename removes what the file may have left at `from`; the object lands there after it.
  await ns.rename(from, to);
  const w = await ufs.create(at.path);
  await w.write(Buffer.from(body));
  const ufsFingerprint = (await w.complete()).fingerprint;
  const commit = () =>
    ns.commitWrite({ ino: a.ino, containerId, size: body.length, blocks: [{ id: blockIdOf(containerId, 0), length: body.length }], workerId: 1, ufsFingerprint, cached: false, writeType: 'THROUGH', ufsAt: { mountUri: at.mountUri, path: at.path } });
  return { a, commit };
}

t.test('the master vouches no directory is at a file being written while its directory listing holds, from this master only', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'vouch', 1000);
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/f', 0o644);
  const { containerId } = await sqlite.beginWrite(f.ino);
  const ask = () => ns.ufsLocation(f.ino, { purpose: 'write', container: containerId });
  const first = (await ask()).noDirectoryForMs ?? 0;
  t.ok(first > 0 && first <= 1000, `for what is left of the sync interval (${first} ms)`);
  await new Promise((r) => setTimeout(r, 1100));
  t.equal((await ask()).noDirectoryForMs, undefined, 'not once the listing is older than the interval');

  // Another master on the same table (a restart, a standby taking over): the listing was not its own.
  await ns.forceSync('/d');
  t.ok(((await ask()).noDirectoryForMs ?? 0) > 0, 'listed again: vouched again');
  const next = new Namespace({ table: sqlite, mounts: await MountTable.open(sqlite, `mem://vouch-${process.pid}`, {}), syncIntervalMs: 1000, logger: pino({ level: 'silent' }) });
  t.teardown(() => next.close());
  t.equal((await next.ufsLocation(f.ino, { purpose: 'write', container: containerId })).noDirectoryForMs, undefined, 'a master started after that listing does not vouch for it');

  // The store shows a directory where the table keeps the file (not stored yet): no vouch after that listing.
  await ufs.mkdir('/d/f');
  await ns.forceSync('/d');
  t.equal((await sqlite.lookup((await sqlite.lookup(1, 'd'))!.ino, 'f'))?.type, 'file', 'the table keeps the file');
  t.equal((await ask()).noDirectoryForMs, undefined, 'and the master does not vouch for its path');
});

t.test('a file created while its directory is listed, where the listing shows a directory, is not vouched for', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'vouch-race', 60_000);
  await ns.mkdir('/d', 0o755);
  await ufs.mkdir('/d/x');
  // The create lands after the merge read the table and before it loads what the store has (which then skips x).
  const load = sqlite.loadChildren.bind(sqlite);
  let created: { ino: number } | undefined;
  sqlite.loadChildren = async (parent, nodes) => {
    if (!created && nodes.some((n) => n.name === 'x')) created = await sqlite.createChild(parent, 'x', { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false, syncedAt: Date.now() });
    return load(parent, nodes);
  };
  await ns.forceSync('/d');
  sqlite.loadChildren = load;
  t.ok(created, 'the create landed during the listing');
  const { containerId } = await sqlite.beginWrite(created!.ino);
  t.equal((await ns.ufsLocation(created!.ino, { purpose: 'write', container: containerId })).noDirectoryForMs, undefined, 'its path is not vouched for');
});

t.test('a master elected after another listed a directory does not vouch for what that listing showed', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'vouch-elected', 60_000);
  // Built first, as a standby is: it was running when the leader listed.
  const standby = new Namespace({ table: sqlite, mounts: await MountTable.open(sqlite, `mem://vouch-elected-${process.pid}`, {}), syncIntervalMs: 60_000, logger: pino({ level: 'silent' }) });
  t.teardown(() => standby.close());
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/f', 0o644);
  await ufs.mkdir('/d/f');
  await ns.forceSync('/d');
  const { containerId } = await sqlite.beginWrite(f.ino);
  const ask = (n: Namespace) => n.ufsLocation(f.ino, { purpose: 'write', container: containerId });
  t.equal((await ask(ns)).noDirectoryForMs, undefined, 'the leader, which saw the directory, does not vouch');
  standby.forgetListings(); // what its election does (server.ts onElected)
  t.equal((await ask(standby)).noDirectoryForMs, undefined, 'nor does the master elected after it');
});

t.test('after an unmount the parent directory is listed again: the name is what its own store has there', async (t) => {
  const { ns, ufs } = await namespaceOn(t, 'vouch-unmount', 60_000);
  await ufs.mkdir('/m');
  await ns.forceSync('/');
  await ns.mount('/m', `mem://vouch-unmount-other-${process.pid}`, {});
  // Meanwhile another program writes under m/ in the root store, which the mount hides.
  const w = await ufs.create('/m/hidden');
  await w.complete();
  await ns.unmount('/m');
  await t.rejects(ns.create('/m', 0o644), { code: 'ALREADY_EXISTS' }, 'a file cannot be made over the directory the root store has there');
  t.same((await ns.list('/m')).map((e) => e.name), ['hidden'], 'which lists what is in it');
});

t.test('a name that a change in flight during a listing turns into a file, where the listing shows a directory, is not vouched for', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'vouch-busy', 60_000);
  await ns.mkdir('/d', 0o755);
  const a = await ns.create('/d/a', 0o644);
  await ufs.mkdir('/d/x');
  // The rename is held inside its table step while /d is listed.
  const rename = sqlite.rename.bind(sqlite);
  let go: () => void = () => undefined;
  let held = false;
  sqlite.rename = async (...args: Parameters<typeof rename>) => {
    held = true;
    await new Promise<void>((r) => (go = r));
    return rename(...args);
  };
  const renaming = ns.rename('/d/a', '/d/x');
  while (!held) await new Promise((r) => setTimeout(r, 5));
  await ns.forceSync('/d');
  go();
  await renaming.catch(() => undefined);
  sqlite.rename = rename;
  const x = await sqlite.lookup((await sqlite.lookup(1, 'd'))!.ino, 'x');
  t.same([x?.ino, x?.type], [a.ino, 'file'], 'the rename made x the file');
  const { containerId } = await sqlite.beginWrite(a.ino);
  t.equal((await ns.ufsLocation(a.ino, { purpose: 'write', container: containerId })).noDirectoryForMs, undefined, 'its path is not vouched for');
});

t.test('a listing with more than 1,000 new directories vouches for none of its names', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'vouch-many', 60_000);
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/f', 0o644);
  for (let i = 0; i <= 1000; i++) await ufs.mkdir(`/d/sub${i}`);
  await ns.forceSync('/d');
  t.equal((await ns.list('/d')).length, 1002, 'the listing loaded them');
  const { containerId } = await sqlite.beginWrite(f.ino);
  t.equal((await ns.ufsLocation(f.ino, { purpose: 'write', container: containerId })).noDirectoryForMs, undefined, 'not looked up one by one: nothing in the directory is vouched for');
});

t.test('a directory made through Strata that the store already had is listed at its first readdir, not taken as empty', async (t) => {
  const { ns, ufs } = await namespaceOn(t, 'mkdir-existing', 60_000);
  await ns.mkdir('/d', 0o755);
  // Made in the store after /d was listed (when Strata made it): the store's mkdir finds it there.
  await ufs.mkdir('/d/e');
  const w = await ufs.create('/d/e/inner');
  await w.write(Buffer.from('theirs'));
  await w.complete();
  await ns.mkdir('/d/e', 0o755);
  t.same((await ns.list('/d/e')).map((e) => e.name), ['inner'], 'its file is listed');
});

t.test('a write-through committed after a rename fails (NOT_FOUND, the client sends the file again), its stray object gone, its write ended', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'commit-rename', 60_000);
  await ns.mkdir('/d', 0o755);
  for (const [name, cached] of [['f', true], ['t', false]] as const) {
    const a = await ns.create(`/d/${name}`, 0o644);
    const at = await ns.ufsLocation(a.ino);
    const { containerId } = await sqlite.beginWrite(a.ino);
    // The worker wrote the object at the file's path, checked it was still there, and completed it…
    const w = await ufs.create(at.path);
    await w.write(Buffer.from('new bytes'));
    const fp = (await w.complete()).fingerprint;
    // …then the file is renamed before the client's commit arrives.
    await ns.rename(`/d/${name}`, `/d/${name}2`);
    const commit = ns.commitWrite({ ino: a.ino, containerId, size: 9, blocks: [{ id: blockIdOf(containerId, 0), length: 9 }], workerId: 1, ufsFingerprint: fp, cached, writeType: cached ? 'CACHE_THROUGH' : 'THROUGH', ufsAt: { mountUri: at.mountUri, path: at.path } });
    // With a cached copy too: recorded as written, the worker's copy (not fsync'd, maybe in memory) would be its only one.
    await t.rejects(commit, { code: 'NOT_FOUND' }, `${cached ? 'CACHE_THROUGH' : 'THROUGH'}: the commit fails, and the client sends the file again`);
    const n = await sqlite.requireNode(a.ino);
    t.same([n.size, n.persistState], [0, 'not_persisted'], 'the file keeps what it had');
    t.equal(await sqlite.openWriteOf(containerId), undefined, 'the write is over: its copies are deleted, not kept until it expires');
    t.equal(await ufs.stat(at.path), null, `the object at the old path (${at.path}) is removed`);
  }
  // Unmoved, a write-through commit records the file as stored, as before.
  const c = await ns.create('/d/c', 0o644);
  const at = await ns.ufsLocation(c.ino);
  const { containerId } = await sqlite.beginWrite(c.ino);
  const w = await ufs.create(at.path);
  await w.write(Buffer.from('c'));
  const fp = (await w.complete()).fingerprint;
  await ns.commitWrite({ ino: c.ino, containerId, size: 1, blocks: [{ id: blockIdOf(containerId, 0), length: 1 }], workerId: 1, ufsFingerprint: fp, cached: true, writeType: 'CACHE_THROUGH', ufsAt: { mountUri: at.mountUri, path: at.path } });
  t.equal((await sqlite.requireNode(c.ino)).persistState, 'persisted', 'a write-through not overtaken is stored');
});

t.test('a file renamed while its close writes it through: the close succeeds and the file is stored where it is now', async (t) => {
  const { ufs, fs, create } = await cluster(t, 'close-rename', 'CACHE_THROUGH');
  await fs.mkdir('/d', 0o755);
  let renamed = false;
  MemoryUnderFileSystem.prototype.create = async function (this: MemoryUnderFileSystem, p: string): Promise<UfsWriter> {
    const w = await create.call(this, p);
    if (p !== '/d/w' || renamed) return w;
    renamed = true;
    // The worker is writing /d/w through to the store when the file is renamed.
    await fs.rename('/d/w', '/d/w2');
    return w;
  };
  const fh = await fs.create('/d/w', 0o644);
  await fs.write(fh, Buffer.from('written through'), 15, 0);
  await fs.release(fh);
  t.ok(renamed, 'the rename came in during the write-through');
  t.equal(await readObject(ufs, '/d/w2'), 'written through', 'the file is in the store at its new path');
  t.equal(await ufs.stat('/d/w'), null, 'and nothing was left at the old one');
  t.equal((await fs.getattr('/d/w2')).size, 15, 'the namespace agrees');
});

// Reproduces a loss: a write-through whose commit a rename overtook was recorded as written and queued
// for a persist; its close succeeded with the worker's copy (not fsync'd, maybe on MEM) the only one.
t.test('a write-through whose commit a rename overtook: the close writes it again where the file is now and returns once it is stored; no pin stays', async (t) => {
  const { ufs, fs, create, workerUrl } = await cluster(t, 'through-stray-pins', 'CACHE_THROUGH', { persistInitialWaitMs: 0 });
  await fs.mkdir('/d', 0o755);
  // After the worker's last check that the file is still at /d/w: only the commit can notice.
  const hook = renameAtCompleteThenHold(fs, create, '/d/w', '/d/w2');
  const fh = await fs.create('/d/w', 0o644);
  await fs.write(fh, Buffer.from('written through'), 15, 0);
  let closed = false;
  const closing = fs.release(fh).then(() => (closed = true));
  await until('the file written again to its new path', async () => hook.secondStarted);
  t.ok(hook.renamed, 'the rename came in between the write-through and its commit');
  t.equal(await ufs.stat('/d/w'), null, 'the stray object at the old path was removed');
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(closed, 'the close waits for the second write-through');

  hook.release();
  await closing;
  t.equal((await fs.getattr('/d/w2')).persistState, 'persisted', 'stored when its close returned');
  t.equal(await readObject(ufs, '/d/w2'), 'written through', 'the bytes are in the store where the file is now');
  t.equal(await ufs.stat('/d/w'), null, 'and nothing at the old path');
  // Neither the first write's copy nor the second's stays pinned.
  await until('every pin let go by the heartbeats', async () => (await unpersistedBlocks(workerUrl)) === 0);
  t.pass('nothing stays pinned');
  t.equal((await readWhole(fs, '/d/w2')).toString(), 'written through', 'and reads back');
});

// `fs cp` streams its source to a worker: the stream is used up when the commit fails, so the copy opens it again.
t.test('a streamed write-through (fs cp) whose commit a rename overtook opens its source again and stores the file where it is now', async (t) => {
  const { ufs, fs, create } = await cluster(t, 'cp-stray', 'CACHE_THROUGH');
  await fs.mkdir('/d', 0o755);
  const hook = renameAtCompleteThenHold(fs, create, '/d/c', '/d/c2');
  hook.release();
  let opened = 0;
  const attrs = await fs.writeFile('/d/c', () => (opened++, Readable.from([Buffer.from('copied '), Buffer.from('bytes')])), 12);
  t.ok(hook.renamed && hook.secondStarted, 'the rename came in between the write-through and its commit');
  t.equal(opened, 2, 'the source was opened once more');
  t.equal(attrs.size, 12, 'the copy returns the stored file');
  t.equal((await fs.getattr('/d/c2')).persistState, 'persisted', 'stored when the copy returned');
  t.equal(await readObject(ufs, '/d/c2'), 'copied bytes', 'the bytes are in the store where the file is now');
  t.equal(await ufs.stat('/d/c'), null, 'and nothing at the old path');

  // A stream cannot be read twice: the copy fails, and says so, rather than storing a part.
  const again = renameAtCompleteThenHold(fs, create, '/d/s', '/d/s2');
  again.release();
  await t.rejects(fs.writeFile('/d/s', Readable.from([Buffer.from('streamed')]), 8), { code: 'NOT_FOUND' }, 'a stream overtaken by a rename fails');
  t.equal(await ufs.stat('/d/s2'), null, 'nothing stored at the new path');

  // A source that fails with NOT_FOUND itself (a Strata file removed while copied) is not read again.
  let failing = 0;
  const gone = () => (failing++, new Readable({ read() { this.destroy(new StrataError('NOT_FOUND', 'the source went away')); } }));
  await t.rejects(fs.writeFile('/d/g', gone, 10), { code: 'NOT_FOUND' }, 'the copy fails');
  t.equal(failing, 1, 'its source was opened once');
});

t.test('a store whose rename gives the object a new fingerprint (S3 copies): the file keeps its cache and mtime', async (t) => {
  // Sync interval 0: every access checks the store.
  const { ns, ufs } = await namespaceOn(t, 'rename-fp', 0);
  const rename = MemoryUnderFileSystem.prototype.rename;
  t.teardown(() => void (MemoryUnderFileSystem.prototype.rename = rename));
  // As S3's CopyObject of a multipart object: the same bytes under a new ETag.
  MemoryUnderFileSystem.prototype.rename = async function (this: MemoryUnderFileSystem, src: string, dst: string): Promise<void> {
    await rename.call(this, src, dst);
    const chunks: Buffer[] = [];
    for await (const c of await this.read(dst, 0, 1 << 20)) chunks.push(c as Buffer);
    const w = await this.create(dst);
    await w.write(Buffer.concat(chunks));
    await w.complete();
  };
  const w = await ufs.create('/big');
  await w.write(Buffer.alloc(10_000, 7));
  const fp = (await w.complete()).fingerprint;
  const before = await ns.resolve('/big');
  t.equal(before.ufsFingerprint, fp);
  await ns.rename('/big', '/big2');
  t.not((await ufs.stat('/big2'))!.fingerprint, fp, 'the store gave the moved object a new fingerprint');
  await new Promise((r) => setTimeout(r, 5));
  const after = await ns.resolve('/big2');
  t.equal(after.ino, before.ino, 'the same inode');
  t.equal(after.container, before.container, 'its blocks (and so its cache) are kept: not taken for changed out of band');
  t.same(after.mtime, before.mtime, 'and its mtime');
});

// Reproduces a regression of pinning write-throughs: their pins went only with the next heartbeat, so a
// write right after a write-through that filled the cache failed NO_SPACE although every page was stored.
t.test('a write into a tier full of pins of stored write-throughs asks the master at once and goes on', async (t) => {
  const root = tempRoot('strata-pins-room-');
  const uri = `mem://pins-room-${process.pid}`;
  const log = silentLogger();
  const MiB = 1024 * 1024;
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: uri, logger: log, blockSize: MiB, persistInitialWaitMs: 3_600_000 });
  // Heartbeats too rare to help: only the ask of a full tier can let the pins go in time.
  const worker = await startWorker({
    masterUrl: master.url,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [{ name: 'SSD', dir: path.join(root, 'tier-ssd'), capacityBytes: 8 * MiB + 64 * 1024 }],
    heartbeatIntervalMs: 600_000,
    scrubBytesPerSec: 0,
    logger: log,
  });
  const through = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, 'staging1'), logger: log, shortCircuit: false, writeType: 'CACHE_THROUGH' });
  const async = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, 'staging2'), logger: log, shortCircuit: false, writeType: 'ASYNC_THROUGH' });
  await through.init();
  await async.init();
  t.teardown(async () => {
    await through.close();
    await async.close();
    await worker.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  const big = Buffer.alloc(7 * MiB, 3);
  await through.writeFile('/through', big, big.length);
  t.equal((await through.getattr('/through')).persistState, 'persisted', 'the write-through is stored');
  t.equal(await unpersistedBlocks(worker.url), 7, 'its 7 blocks are still pinned (no heartbeat since)');
  const next = Buffer.alloc(2 * MiB, 4);
  await async.writeFile('/async', next, next.length);
  t.pass('the ASYNC_THROUGH write right after it found room');
  t.ok((await unpersistedBlocks(worker.url)) <= 4, 'the stored blocks were let go');
  t.ok((await readWhole(async, '/async')).equals(next), 'and it reads back');
});

t.test('removing or moving the name of a file never stored asks the store nothing; once an upload of it began, it does', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, `never-stored-${Date.now()}`, 60_000);
  await ns.mkdir('/d', 0o755);
  const calls: string[] = [];
  const proto = MemoryUnderFileSystem.prototype;
  const saved = { delete: proto.delete, stat: proto.stat, rename: proto.rename };
  t.teardown(() => Object.assign(proto, saved));
  for (const m of ['delete', 'stat', 'rename'] as const) {
    const orig = saved[m] as (...a: unknown[]) => Promise<unknown>;
    (proto as unknown as Record<string, unknown>)[m] = function (this: MemoryUnderFileSystem, ...a: unknown[]) {
      calls.push(`${m} ${String(a[0])}`);
      return orig.apply(this, a);
    };
  }
  const asyncVersion = async (ino: number) => {
    const { containerId } = await sqlite.beginWrite(ino);
    await sqlite.commitWrite({ ino, containerId, size: 3, blocks: [{ id: blockIdOf(containerId, 0), length: 3 }], workerId: 1, ufsFingerprint: null, writeType: 'ASYNC_THROUGH' });
    return containerId;
  };
  const tmp = await ns.create('/d/.f.tmp', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  await asyncVersion(tmp.ino);
  calls.length = 0;
  await ns.rename('/d/.f.tmp', '/d/f');
  await ns.unlink('/d/f');
  t.same(calls, [], 'a temp file written, renamed and removed before it persisted: no store call');

  const g = await ns.create('/d/g', 0o644, undefined, undefined, { writeType: 'ASYNC_THROUGH' });
  const container = await asyncVersion(g.ino);
  // The persister's worker asks where to upload; its object may be at /d/g from then on.
  await ns.ufsLocation(g.ino, { purpose: 'persist', container, blocks: 1 });
  await put('/d/g', 'v1!');
  calls.length = 0;
  await ns.rename('/d/g', '/d/h');
  t.ok(calls.includes('delete /d/g'), 'an upload began: the rename removes what it may have left at the old path');
  t.equal(await ufs.stat('/d/g'), null);

  async function put(p: string, data: string) {
    const w = await ufs.create(p);
    await w.write(Buffer.from(data));
    await w.complete();
  }
});

/**
 * A stray object's removal looks, then deletes: two store calls. Another file that took the
 * stray's path meanwhile may have its own object land in between; deleting then would leave
 * that file recorded as stored with nothing in the store.
 */
t.test("a late write-through's stray never takes the object of the file that took its path", async (t) => {
  const set = await namespaceOn(t, 'stray-vs-new', 60_000);
  const { ns, sqlite, ufs } = set;
  const stat = MemoryUnderFileSystem.prototype.stat;
  t.teardown(() => {
    MemoryUnderFileSystem.prototype.stat = stat;
  });
  await ns.mkdir('/d', 0o755);

  /** A written through at /d/x, renamed to /d/<away> before its commit; B created at /d/x (written through, or made by an ASYNC_THROUGH create). */
  const setUp = async (away: string, bCreatedAs?: 'ASYNC_THROUGH') => {
    const { commit: commitA } = await lateWriteThrough(set, '/d/x', `/d/${away}`);
    const b = await ns.create('/d/x', 0o644, undefined, undefined, bCreatedAs && { writeType: bCreatedAs });
    const bWrite = await sqlite.beginWrite(b.ino);
    /** What B's worker does: ask where, write B's object, commit. */
    const writeB = async (where: Promise<{ path: string; mountUri: string }>) => {
      const bAt = await where;
      const bw = await ufs.create(bAt.path);
      await bw.write(Buffer.from('B, the file at /d/x now'));
      const fp = (await bw.complete()).fingerprint;
      return ns.commitWrite({ ino: b.ino, containerId: bWrite.containerId, size: 23, blocks: [{ id: blockIdOf(bWrite.containerId, 0), length: 23 }], workerId: 1, ufsFingerprint: fp, cached: false, writeType: 'THROUGH', ufsAt: { mountUri: bAt.mountUri, path: bAt.path } });
    };
    const askB = () => ns.ufsLocation(b.ino, { purpose: 'write', container: bWrite.containerId });
    return { b, commitA, writeB, askB };
  };
  /** The next look at /d/x in the store answers what was there, after `meanwhile` ran (or ran 200 ms). */
  const onNextLook = (meanwhile: () => Promise<unknown>) => {
    let looked = false;
    MemoryUnderFileSystem.prototype.stat = async function (this: MemoryUnderFileSystem, p: string) {
      const st = await stat.call(this, p);
      if (p === '/d/x' && !looked) {
        looked = true;
        await Promise.race([meanwhile(), new Promise((r) => setTimeout(r, 200))]);
      }
      return st;
    };
    return () => looked;
  };

  // B (written through) is being written when A's commit comes: were the stray looked at, B's object would land before its delete.
  {
    const { b, commitA, writeB, askB } = await setUp('y');
    const where = askB();
    let bDone: Promise<unknown> | undefined;
    const looked = onNextLook(() => (bDone = writeB(where)));
    await t.rejects(commitA(), { code: 'NOT_FOUND' }, "A's late commit fails: its client writes it again");
    MemoryUnderFileSystem.prototype.stat = stat;
    t.notOk(looked(), 'the store was not asked: B, at that path and being written, keeps what is there');
    await (bDone ?? writeB(where));
    t.equal(await readObject(ufs, '/d/x'), 'B, the file at /d/x now', "B's object is in the store");
    t.equal((await sqlite.requireNode(b.ino)).persistState, 'persisted', 'where the table says B is stored');
    await ns.unlink('/d/x');
    t.equal(await ufs.stat('/d/x'), null, "B's unlink removes it");
  }

  // B's worker asked just before A's commit, its mark not on disk yet: the removal waits for it, then leaves the object.
  {
    const { b, commitA, writeB, askB } = await setUp('w', 'ASYNC_THROUGH');
    const mark = sqlite.markInStore.bind(sqlite);
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    sqlite.markInStore = async (ino: number) => {
      if (ino === b.ino) await gate;
      return mark(ino);
    };
    const where = askB();
    let bDone: Promise<unknown> | undefined;
    const looked = onNextLook(() => (bDone = writeB(where)));
    setTimeout(open, 100);
    await t.rejects(commitA(), { code: 'NOT_FOUND' }, "A's late commit fails");
    sqlite.markInStore = mark;
    MemoryUnderFileSystem.prototype.stat = stat;
    t.notOk(looked(), "the store was not asked: the removal waited for B's question and found B in the store");
    await (bDone ?? writeB(where));
    t.equal(await readObject(ufs, '/d/x'), 'B, the file at /d/x now', "B's object is in the store");
    t.equal((await sqlite.requireNode(b.ino)).persistState, 'persisted', 'and B is recorded as stored');
    await ns.unlink('/d/x');
  }

  // B's worker asks while the stray is being removed: it waits for the removal, then writes.
  {
    const { b, commitA, writeB, askB } = await setUp('z', 'ASYNC_THROUGH');
    let bDone: Promise<unknown> | undefined;
    const looked = onNextLook(() => (bDone = writeB(askB())));
    await t.rejects(commitA(), { code: 'NOT_FOUND' }, "A's late commit fails");
    MemoryUnderFileSystem.prototype.stat = stat;
    t.ok(looked(), 'the stray was looked at');
    await bDone;
    t.equal(await readObject(ufs, '/d/x'), 'B, the file at /d/x now', "B's object, written after the stray went, is in the store");
    t.equal((await sqlite.requireNode(b.ino)).persistState, 'persisted', 'and B is recorded as stored');
  }
});

t.test('a file closed with CACHE_THROUGH into a directory the store lost fails its close (EIO), not as if it were unlinked or moved', async (t) => {
  const { ufs, fs } = await cluster(t, 'empty-lost-dir', 'CACHE_THROUGH');
  await fs.mkdir('/d', 0o755);
  t.ok(await ufs.stat('/d'), 'the directory is in the store');
  await ufs.rmdir('/d'); // removed outside Strata
  const fh = await fs.create('/d/e', 0o644);
  // What close(2) does: flush (whose error the program sees), then release.
  await t.rejects(fs.flush(fh), { code: 'IO_ERROR' }, 'the close says the file was not stored');
  await fs.release(fh);
  t.equal(await ufs.stat('/d/e'), null, 'nothing is in the store');
  t.equal((await fs.getattr('/d/e')).persistState, 'not_persisted', 'and the file is not recorded as stored');

  // The same with bytes: the worker's write into the store fails.
  const fh2 = await fs.create('/d/w', 0o644);
  await fs.write(fh2, Buffer.from('bytes'), 5, 0);
  await t.rejects(fs.flush(fh2), { code: 'IO_ERROR' }, 'a written file closes with EIO too (not ENOENT, as if it had moved)');
  await fs.release(fh2);
  t.equal(await ufs.stat('/d/w'), null, 'nothing is in the store');
});

/** A written through at /d/x, renamed to /d/y before its commit, its object landing at /d/x after; a second hard link of C (stored at /d/c) then takes /d/x. */
async function strayUnderLink(t: tap.Test, name: string) {
  const set = await namespaceOn(t, name, 60_000);
  const { ns, sqlite, ufs } = set;
  await ns.mkdir('/d', 0o755);
  const c = await ns.create('/d/c', 0o644);
  const cWrite = await sqlite.beginWrite(c.ino);
  const cAt = await ns.ufsLocation(c.ino, { purpose: 'write', container: cWrite.containerId });
  const cw = await ufs.create(cAt.path);
  await cw.write(Buffer.from('C, stored'));
  const cFp = (await cw.complete()).fingerprint;
  await ns.commitWrite({ ino: c.ino, containerId: cWrite.containerId, size: 9, blocks: [{ id: blockIdOf(cWrite.containerId, 0), length: 9 }], workerId: 1, ufsFingerprint: cFp, cached: false, writeType: 'THROUGH', ufsAt: { mountUri: cAt.mountUri, path: cAt.path } });

  const { commit } = await lateWriteThrough(set, '/d/x', '/d/y');
  await ns.link(c.ino, '/d/x');
  await t.rejects(commit(), { code: 'NOT_FOUND' }, "A's late commit fails");
  return { ns, ufs, c };
}

t.test("a late write's stray under a hard link's second name goes (the file's bytes are at its first name)", async (t) => {
  const { ns, ufs, c } = await strayUnderLink(t, 'stray-link');
  t.equal(await ufs.stat('/d/x'), null, "A's object at /d/x went");
  await ns.forceSync('/d');
  const st = await ns.stat('/d/c');
  t.same([st.ino, st.size], [c.ino, 9], 'a listing leaves C as it is');
  await ns.unlink('/d/x');
  await ns.forceSync('/d');
  await t.rejects(ns.stat('/d/x'), { code: 'NOT_FOUND' }, 'and once the link goes, nothing comes back at /d/x');
});

t.test("a late write's stray under a name now in another mount goes from its own store", async (t) => {
  const set = await namespaceOn(t, 'stray-mount', 60_000);
  const { ns, ufs } = set;
  await ns.mkdir('/m', 0o755);
  const { commit } = await lateWriteThrough(set, '/m/x', '/away');
  await ns.mount('/m', `mem://stray-mount-other-${process.pid}`, {});
  await ns.create('/m/x', 0o644); // in the other store
  await t.rejects(commit(), { code: 'NOT_FOUND' }, "A's late commit fails");
  t.equal(await ufs.stat('/m/x'), null, "A's object went from the root store");
  await ns.unlink('/m/x');
  await ns.unmount('/m');
  await t.rejects(ns.stat('/m/x'), { code: 'NOT_FOUND' }, 'after the unmount nothing comes back at /m/x');
});

// Workers share a few connections to the master with their heartbeats: a worker's question
// before a write must not wait for a slow store change elsewhere under the same path.
t.test('writes into a directory whose store rename is slow leave the worker live', async (t) => {
  const c = await inProcessCluster(t, 'hb-vs-locks', { ufsUri: `mem://hb-vs-locks-${process.pid}`, workerTimeoutMs: 1000, heartbeatIntervalMs: 100 });
  const fs = await c.client('CACHE_THROUGH');
  const rename = MemoryUnderFileSystem.prototype.rename;
  t.teardown(() => {
    MemoryUnderFileSystem.prototype.rename = rename;
  });
  await fs.mkdir('/big', 0o755);
  const N = 20;
  for (let i = 0; i < N; i++) await fs.writeFile(`/big/f${i}`, Buffer.from('x'), 1);
  MemoryUnderFileSystem.prototype.rename = async function (this: MemoryUnderFileSystem, s: string, d: string) {
    if (s === '/big') await new Promise((r) => setTimeout(r, 3000));
    return rename.call(this, s, d);
  };
  const renaming = fs.rename('/big', '/big2');
  await new Promise((r) => setTimeout(r, 100));
  const writes = Array.from({ length: N }, (_, i) => fs.writeFile(`/big/f${i}`, Buffer.from('again'), 5).catch(() => undefined));
  let lost = false;
  for (let k = 0; k < 30; k++) {
    const ws = (await (await fetch(`${c.masterUrl}/api/v1/workers`)).json()) as { live: boolean }[];
    if (ws.some((w) => !w.live)) lost = true;
    await new Promise((r) => setTimeout(r, 100));
  }
  await renaming;
  await Promise.all(writes);
  t.notOk(lost, 'the worker was never taken for lost');
});

/** A file at /d/x being written through by a worker (asked where, object written, not completed). */
async function writeUnderWay({ ns, sqlite, ufs }: NamespaceSetUp, body: string, p = '/d/x') {
  const f = await ns.create(p, 0o644);
  const { containerId } = await sqlite.beginWrite(f.ino);
  const at = await ns.ufsLocation(f.ino, { purpose: 'write', container: containerId });
  const w = await ufs.create(at.path);
  await w.write(Buffer.from(body));
  let fp = '';
  return {
    f,
    complete: async () => void (fp = (await w.complete()).fingerprint),
    commit: () => ns.commitWrite({ ino: f.ino, containerId, size: body.length, blocks: [{ id: blockIdOf(containerId, 0), length: body.length }], workerId: 1, ufsFingerprint: fp, cached: false, writeType: 'THROUGH', ufsAt: { mountUri: at.mountUri, path: at.path } }),
  };
}

t.test('a write-through whose file went away and came back before its commit: its object is where the commit says, or the commit fails', async (t) => {
  const set = await namespaceOn(t, 'away-and-back', 60_000);
  const { ns, sqlite, ufs } = set;
  await ns.mkdir('/d', 0o755);

  // The object lands, the file is renamed away (its object at /d/x goes as an older version) and back, then the commit.
  const f = await writeUnderWay(set, 'F, the file at /d/x');
  await f.complete();
  await ns.rename('/d/x', '/d/q');
  await ns.rename('/d/q', '/d/x');
  await t.rejects(f.commit(), { code: 'NOT_FOUND' }, 'the commit fails (the client writes the file again)');
  t.equal((await sqlite.requireNode(f.f.ino)).persistState, 'not_persisted', 'the file is not recorded as stored');

  // A late stray's removal at /d/x while G, being written there, is away; G's object lands between its look and its delete.
  const stat = MemoryUnderFileSystem.prototype.stat;
  t.teardown(() => {
    MemoryUnderFileSystem.prototype.stat = stat;
  });
  await ns.unlink('/d/x');
  const a = await writeUnderWay(set, 'A, late');
  await ns.rename('/d/x', '/d/a');
  const g = await writeUnderWay(set, 'G, the file at /d/x');
  await ns.rename('/d/x', '/d/q');
  await a.complete(); // at /d/x, where A is not
  let looked = false;
  MemoryUnderFileSystem.prototype.stat = async function (this: MemoryUnderFileSystem, p: string) {
    const st = await stat.call(this, p);
    if (p === '/d/x' && !looked) {
      looked = true;
      await g.complete();
    }
    return st;
  };
  const commitA = a.commit;
  await t.rejects(commitA(), { code: 'NOT_FOUND' }, "the stray's commit fails");
  MemoryUnderFileSystem.prototype.stat = stat;
  t.ok(looked, 'the stray was looked at, and the object landed after that');
  await ns.rename('/d/q', '/d/x');
  const got = await g.commit().then(
    () => 'committed',
    (e: { code?: string }) => e.code,
  );
  const stored = await readObject(ufs, '/d/x');
  t.ok(got === 'NOT_FOUND' || stored === 'G, the file at /d/x', `never recorded as stored without its object (commit: ${got}, store: ${stored})`);
  t.equal(got, 'NOT_FOUND', 'here the delete took it: the commit fails, and the client writes it again');
});

t.test("a late write's stray over a stored file renamed onto its path does not become that file's content", async (t) => {
  const set = await namespaceOn(t, 'stray-over-stored', 60_000);
  const { ns, sqlite, ufs } = set;
  await ns.mkdir('/d', 0o755);
  const g = await writeUnderWay(set, 'G, secret', '/d/g');
  await g.complete();
  await g.commit();
  // A's worker checked its path and completes after A went away and G came to /d/x.
  const a = await ns.create('/d/x', 0o644);
  const aWrite = await sqlite.beginWrite(a.ino);
  const aAt = await ns.ufsLocation(a.ino, { purpose: 'write', container: aWrite.containerId });
  const aw = await ufs.create(aAt.path);
  await aw.write(Buffer.from('A, late bytes'));
  await ns.rename('/d/x', '/d/a');
  await ns.rename('/d/g', '/d/x');
  const aFp = (await aw.complete()).fingerprint;
  await t.rejects(ns.commitWrite({ ino: a.ino, containerId: aWrite.containerId, size: 13, blocks: [{ id: blockIdOf(aWrite.containerId, 0), length: 13 }], workerId: 1, ufsFingerprint: aFp, cached: false, writeType: 'THROUGH', ufsAt: { mountUri: aAt.mountUri, path: aAt.path } }), { code: 'NOT_FOUND' });
  t.not(await readObject(ufs, '/d/x'), 'A, late bytes', "A's bytes are not left in the store under G's name");
  await ns.forceSync('/d');
  const st = await ns.stat('/d/x').catch(() => undefined);
  t.not(st?.size, 13, "a listing does not give G A's bytes");
});

t.test("a master deposed during a stray's removal does not delete what the new leader's writer put there", async (t) => {
  const set = await namespaceOn(t, 'stray-deposed', 60_000);
  const { ns: next, sqlite, ufs } = set;
  let oldLeads = true;
  const old = new Namespace({ table: sqlite, mounts: await MountTable.open(sqlite, `mem://stray-deposed-${process.pid}`, {}), syncIntervalMs: 60_000, logger: pino({ level: 'silent' }), leading: () => oldLeads });
  t.teardown(() => old.close());
  await old.mkdir('/d', 0o755);
  const { commit: commitA } = await lateWriteThrough({ ...set, ns: old }, '/d/x', '/d/a');
  const stat = MemoryUnderFileSystem.prototype.stat;
  t.teardown(() => {
    MemoryUnderFileSystem.prototype.stat = stat;
  });
  let b: Awaited<ReturnType<typeof writeUnderWay>> | undefined;
  MemoryUnderFileSystem.prototype.stat = async function (this: MemoryUnderFileSystem, p: string) {
    const st = await stat.call(this, p);
    if (p === '/d/x' && !b) {
      // The old master loses its lead between its look and its delete; the new leader's writer lands B.
      oldLeads = false;
      b = await writeUnderWay({ ...set, ns: next }, 'B, by the new leader');
      await b.complete();
    }
    return st;
  };
  await t.rejects(commitA(), 'the deposed master does not finish the removal');
  MemoryUnderFileSystem.prototype.stat = stat;
  t.ok(b, 'B was written meanwhile');
  await b!.commit();
  t.equal(await readObject(ufs, '/d/x'), 'B, by the new leader', "B's object is in the store");
});

t.test('an upload whose file went away and came back before it was counted is not counted: the file is queued again', async (t) => {
  const { ns, sqlite, ufs } = await namespaceOn(t, 'persist-away-and-back', 60_000);
  await ns.mkdir('/d', 0o755);
  const f = await ns.create('/d/x', 0o644);
  const { containerId } = await sqlite.beginWrite(f.ino);
  await sqlite.commitWrite({ ino: f.ino, containerId, size: 5, blocks: [{ id: blockIdOf(containerId, 0), length: 5 }], workerId: 1, ufsFingerprint: null, cached: true, writeType: 'ASYNC_THROUGH' });
  const at = await ns.ufsLocation(f.ino, { purpose: 'persist', container: containerId, blocks: 1 });
  const w = await ufs.create(at.path);
  await w.write(Buffer.from('bytes'));
  const fp = (await w.complete()).fingerprint;
  // Renamed away (its object at /d/x goes as an older version) and back before the upload is counted.
  await ns.rename('/d/x', '/d/q');
  await ns.rename('/d/q', '/d/x');
  t.equal(await ns.settlePersist(f.ino, containerId, { ufsFingerprint: fp, mountUri: at.mountUri, path: at.path }), false, 'not counted');
  t.equal((await sqlite.requireNode(f.ino)).persistState, 'not_persisted', 'the file is not recorded as stored');
  t.ok((await sqlite.persistQueue()).some((q) => q.ino === f.ino), 'and it is queued for another upload');
});

t.test('a master elected again does not trust what it told writers before: another leader may have taken their objects', async (t) => {
  const set = await namespaceOn(t, 'away-relead', 60_000);
  const { ns, sqlite, ufs } = set;
  const other = new Namespace({ table: sqlite, mounts: await MountTable.open(sqlite, `mem://away-relead-${process.pid}`, {}), syncIntervalMs: 60_000, logger: pino({ level: 'silent' }) });
  t.teardown(() => other.close());
  await ns.mkdir('/d', 0o755);
  const f = await writeUnderWay(set, 'F, written through');
  await f.complete();
  // The other master leads meanwhile and renames the file away and back (its object at /d/x goes as an older version).
  await other.rename('/d/x', '/d/q');
  await other.rename('/d/q', '/d/x');
  ns.forgetListings(); // what the server does when ns is elected again
  await t.rejects(f.commit(), { code: 'NOT_FOUND' }, 'the commit fails: the object is gone');
  t.equal(await ufs.stat('/d/x'), null, 'as the store shows');
  t.equal((await sqlite.requireNode(f.f.ino)).persistState, 'not_persisted', 'and the file is not recorded as stored');
});

t.test("an empty file's close by the master over a landed write-through's object: that write's commit fails", async (t) => {
  const set = await namespaceOn(t, 'away-empty', 60_000);
  const { ns, sqlite, ufs } = set;
  await ns.mkdir('/d', 0o755);
  const f = await writeUnderWay(set, 'W, written through');
  await f.complete();
  await ns.commitEmpty(f.f.ino, 'THROUGH', undefined); // another client's open(O_TRUNC) and close
  await t.rejects(f.commit(), { code: 'NOT_FOUND' }, 'the commit fails (its client writes the file again)');
  const node = await sqlite.requireNode(f.f.ino);
  t.same([node.size, node.ufsFingerprint], [0, (await ufs.stat('/d/x'))?.fingerprint], 'the table keeps what the store has: the empty file');
});
