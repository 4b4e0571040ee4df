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
