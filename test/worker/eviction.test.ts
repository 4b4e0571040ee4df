/** Eviction policies in a real page store: which page a full tier gives up first. */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { PageStore } from '../../src/worker/page-store';
import { PAGE_TRAILER_BYTES } from '../../src/common/page-file';
import { createEvictionOrder } from '../../src/worker/eviction';

const PS = 16 * 1024;

async function storeWith(t: { teardown(fn: () => unknown): void }, policy: string): Promise<PageStore> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'strata-evict-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const s = new PageStore({ tiers: [{ name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 3 * (PS + PAGE_TRAILER_BYTES) }], pageSize: PS, pinDir: path.join(root, 'pins'), evictionPolicy: policy });
  await s.open();
  return s;
}

/** Pages 1, 2, 3 written in order; page 1 read three times, page 2 once; then page 4 forces one out. */
async function scenario(s: PageStore): Promise<number[]> {
  for (const id of [1, 2, 3]) await s.putPage(id, 0, randomBytes(PS), PS, PS);
  for (let i = 0; i < 3; i++) await s.readPage(1, 0, 0, 1);
  await s.readPage(2, 0, 0, 1);
  await s.putPage(4, 0, randomBytes(PS), PS, PS);
  return [1, 2, 3, 4].filter((id) => s.hasPage(id, 0));
}

t.test('LRU drops the page read longest ago', async (t) => {
  t.same(await scenario(await storeWith(t, 'LRU')), [1, 2, 4], 'page 3 (never read) went');
});

t.test('FIFO drops the oldest page whatever was read', async (t) => {
  t.same(await scenario(await storeWith(t, 'FIFO')), [2, 3, 4], 'page 1 (first in) went although it was read most');
});

t.test('LFU drops the least read page', async (t) => {
  const s = await storeWith(t, 'LFU');
  for (const id of [1, 2, 3]) await s.putPage(id, 0, randomBytes(PS), PS, PS);
  for (let i = 0; i < 3; i++) await s.readPage(1, 0, 0, 1);
  for (let i = 0; i < 2; i++) await s.readPage(3, 0, 0, 1);
  // Page 2 is the newest-read but least-read: LRU would keep it, LFU drops it.
  await s.readPage(2, 0, 0, 1);
  await s.putPage(4, 0, randomBytes(PS), PS, PS);
  t.same([1, 2, 3, 4].filter((id) => s.hasPage(id, 0)), [1, 3, 4]);
});

t.test('an unknown policy is a clear configuration error', async (t) => {
  t.throws(() => createEvictionOrder('MRU'), { code: 'CONFIG', message: /LRU, FIFO, LFU/ });
});
