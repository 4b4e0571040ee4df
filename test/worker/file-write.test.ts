/**
 * A write through a worker when the under-store fails part way: the write fails with
 * the store's error, and the worker process goes on (a store write failing while the
 * page writes of the same piece were still running was an unhandled rejection, which
 * ends a Node process).
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StrataError } from '../../src/common/errors';
import { FileWrite } from '../../src/worker/file-write';
import { PageStore } from '../../src/worker/page-store';
import { blockIdOf } from '../../src/common/protocol';
import type { UfsWriter } from '../../src/ufs/ufs';

t.test('a store write failing while the pages are written: the piece fails, nothing is left unhandled', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-file-write-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = new PageStore({ tiers: [{ name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 1 << 30 }], pageSize: 1024 * 1024, pinDir: path.join(root, 'pins') });
  await store.open();
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));

  let writes = 0;
  const writer: UfsWriter = {
    // The first part goes through; the next fails at once (an S3 part upload that failed in the background).
    write: async () => {
      if (++writes > 1) throw new StrataError('IO_ERROR', 'the store refused a part');
    },
    complete: async () => ({ size: 0, mtimeMs: 0, fingerprint: 'x' }) as never,
    abort: async () => undefined,
  };
  const w = await FileWrite.open(store, 7, 64 * 1024 * 1024, 'CACHE_THROUGH', async () => ({ writer, stillAt: async () => true, at: { mountUri: 'file:///x', path: '/f' } }));
  const piece = Buffer.alloc(4 * 1024 * 1024, 1);
  await w.piece(piece);
  await t.rejects(w.piece(piece), { code: 'IO_ERROR' }, "the piece fails with the store's error");
  // An unhandled rejection is reported after the microtasks of the turn it happened in.
  await new Promise((r) => setTimeout(r, 50));
  t.same(unhandled, [], 'no rejection went unhandled');
});

t.test('a write-through pins its blocks while written; one larger than the cache drops its copy and goes on to the store alone', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-file-write-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const MiB = 1024 * 1024;
  const store = new PageStore({ tiers: [{ name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 8 * MiB }], pageSize: MiB, pinDir: path.join(root, 'pins') });
  await store.open();
  const stored: Buffer[] = [];
  const writer: UfsWriter = {
    write: async (b: Buffer) => void stored.push(Buffer.from(b)),
    complete: async () => ({ size: 0, mtimeMs: 0, fingerprint: 'fp' }) as never,
    abort: async () => undefined,
  };
  const target = async () => ({ writer, stillAt: async () => true, at: { mountUri: 'mem://x', path: '/f' } });

  // Fits: pinned while written (a rename before the commit may make its object a stray), and kept cached.
  const small = await FileWrite.open(store, 7, 4 * MiB, 'CACHE_THROUGH', target);
  small.declareSize(2 * MiB);
  await small.piece(Buffer.alloc(2 * MiB, 1));
  t.ok(store.isUnpersisted(blockIdOf(7, 0)), 'the block of a write-through is pinned while written');
  const r1 = await small.finish();
  t.equal(r1.cached, true, 'and cached');
  t.ok(store.isUnpersisted(blockIdOf(7, 0)), 'still pinned after it: only the master lets it go');

  // Twice the cache: the copy gives up (NO_SPACE), the store gets every byte, nothing stays pinned of it.
  stored.length = 0;
  const big = await FileWrite.open(store, 8, 4 * MiB, 'CACHE_THROUGH', target);
  big.declareSize(16 * MiB);
  for (let i = 0; i < 16; i++) await big.piece(Buffer.alloc(MiB, i + 1));
  const r2 = await big.finish();
  t.equal(r2.cached, false, 'reported not cached: the master then knows no copy backs it');
  t.equal(r2.blocks.length, 4, 'all its blocks are committed');
  t.equal(Buffer.concat(stored).length, 16 * MiB, 'every byte went to the store');
  t.ok([0, 1, 2, 3].every((i) => !store.isUnpersisted(blockIdOf(8, i)) && !store.hasPage(blockIdOf(8, i), 0)), 'its partial copy is gone, pins and pages');
  t.ok(store.isUnpersisted(blockIdOf(7, 0)) && store.hasPage(blockIdOf(7, 0), 0), 'the earlier pinned block was not evicted for it');

  // ASYNC_THROUGH keeps the only copy: no room is an error, not a fallback.
  const only = await FileWrite.open(store, 9, 4 * MiB, 'ASYNC_THROUGH', target);
  only.declareSize(16 * MiB);
  await t.rejects((async () => {
    for (let i = 0; i < 16; i++) await only.piece(Buffer.alloc(MiB, 1));
    await only.finish();
  })(), { code: 'NO_SPACE' }, 'ASYNC_THROUGH larger than the cache fails with NO_SPACE');
  await only.abort();
});

t.test("an abort whose store side fails still drops the cached copy and its pins", async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-file-write-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = new PageStore({ tiers: [{ name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 1 << 30 }], pageSize: 1024 * 1024, pinDir: path.join(root, 'pins') });
  await store.open();
  const writer: UfsWriter = {
    write: async () => undefined,
    complete: async () => ({ size: 0, mtimeMs: 0, fingerprint: 'x' }) as never,
    // An S3 AbortMultipartUpload over a dead network.
    abort: async () => {
      throw new StrataError('UNAVAILABLE', 'the store cannot be reached');
    },
  };
  const w = await FileWrite.open(store, 9, 4 * 1024 * 1024, 'CACHE_THROUGH', async () => ({ writer, stillAt: async () => true, at: { mountUri: 'file:///x', path: '/f' } }));
  w.declareSize(6 * 1024 * 1024);
  await w.piece(Buffer.alloc(5 * 1024 * 1024, 1));
  // Pages are written a few at a time: which of the first block's is on disk by now varies, not that one is.
  t.ok(store.isUnpersisted(blockIdOf(9, 0)) && [0, 1, 2, 3].some((i) => store.hasPage(blockIdOf(9, 0), i)), 'the write pinned its first block and cached some of it');
  await t.rejects(w.abort(), { code: 'UNAVAILABLE' }, "the abort reports the store's failure");
  t.ok([0, 1].every((b) => !store.isUnpersisted(blockIdOf(9, b)) && [0, 1, 2, 3].every((i) => !store.hasPage(blockIdOf(9, b), i))), 'and the cached copy is gone, pins and pages');
});
