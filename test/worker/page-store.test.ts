/**
 * The worker's tiered page store on real directories: quotas hold, pages demote
 * before they drop, pinned and unpersisted pages are never dropped, corrupt page
 * files are never served, and a restart rebuilds the index from disk. All of it
 * twice: on a disk directory and on tmpfs (/dev/shm, when there is one), where a
 * page file is written by other code (from the event loop, see putPage).
 */

import t from 'tap';
import { pageBytesUnder } from '../helpers/disk';
import { promises as fsp, mkdtempSync, renameSync, rmSync, readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { PageStore, parseTierSpec } from '../../src/worker/page-store';
import { PAGE_TRAILER_BYTES, decodeTrailer, onMemoryFs } from '../../src/common/page-file';
import { crc32 } from 'node:zlib';
import { parseBytes } from '../../src/common/config';

const PS = 64 * 1024; // small pages keep the test fast
const FILE = PS + PAGE_TRAILER_BYTES;

function setup(t: { teardown(fn: () => unknown): void }, quotas: number[], base: string) {
  const root = mkdtempSync(path.join(base, 'strata-pages-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const names = ['MEM', 'SSD', 'HDD'];
  const tiers = quotas.map((q, i) => ({ name: names[i]!, dir: path.join(root, names[i]!.toLowerCase()), capacityBytes: q }));
  const corrupt: string[] = [];
  const make = () => new PageStore({ tiers, pageSize: PS, pinDir: path.join(root, 'pins'), onCorrupt: (b, p, why) => corrupt.push(`${b}/${p}: ${why}`) });
  return { root, tiers, make, corrupt };
}

// A disk directory (os.tmpdir() may itself be a tmpfs: then one beside the tests) and /dev/shm.
const DISK_BASE = onMemoryFs(os.tmpdir()) ? mkdtempSync(path.join(__dirname, 'scratch-')) : os.tmpdir();
if (DISK_BASE !== os.tmpdir()) t.teardown(() => rmSync(DISK_BASE, { recursive: true, force: true }));
const BASES = [DISK_BASE, ...(existsSync('/dev/shm') ? ['/dev/shm'] : [])];

t.test('the two passes run on a disk and on a memory file system', async (t) => {
  t.notOk(onMemoryFs(DISK_BASE), `${DISK_BASE} is not a memory file system`);
  if (BASES.length > 1) t.ok(onMemoryFs(BASES[1]!), '/dev/shm is one');
});

for (const base of BASES) {
  t.test(`tiers under ${base}${onMemoryFs(base) ? ' (a memory file system)' : ''}`, async (t) => {
    t.test('pages read back byte for byte, ranges clamp to the page', async (t) => {
      const { make, tiers } = setup(t, [10 * FILE], base);
      const s = make();
      await s.open();
      const data = randomBytes(PS);
      await s.putPage(7, 0, data, PS, PS + 100);
      const file = readFileSync(path.join(tiers[0]!.dir, '7', '0'));
      t.equal(file.length, FILE);
      t.equal(decodeTrailer(file.subarray(PS))?.crc, crc32(data) >>> 0, "the trailer's checksum is zlib's CRC-32, as page files written before carry");
      const tail = randomBytes(100);
      await s.putPage(7, 1, tail, 100, PS + 100);
      t.same((await s.readPage(7, 0, 0, PS))!.data, data);
      t.same((await s.readPage(7, 0, 100, 200))!.data, data.subarray(100, 200));
      t.same((await s.readPage(7, 1, 0, PS))!.data, tail, 'the short last page clamps');
      t.equal(s.blockLength(7), PS + 100);
      t.equal(await s.readPage(7, 2, 0, 10), undefined, 'a missing page is undefined');
      t.same(s.report(7), { id: 7, tier: 'MEM', bytes: PS + 100 });
      t.same(s.takeChanges(), { added: [{ id: 7, tier: 'MEM', bytes: PS + 100 }], removed: [], dropped: [] });
    });

    t.test('the report: a block dropped on request and cached again is in both lists', async (t) => {
      const root = mkdtempSync(path.join(base, 'strata-pages-'));
      t.teardown(() => rmSync(root, { recursive: true, force: true }));
      const s = new PageStore({ tiers: [{ name: 'MEM', dir: path.join(root, 'mem'), capacityBytes: 10 * FILE }], pageSize: PS, pinDir: path.join(root, 'pins') });
      await s.open();
      await s.putPage(5, 0, randomBytes(PS), PS, PS);
      await s.putPage(6, 0, randomBytes(PS), PS, PS);
      t.same(s.takeChanges().added.map((r) => r.id).sort(), [5, 6]);
      // The master asked for 5 to go; it is read (cached) again before the next report. The master
      // must see the delete done before the new copy, or it would take the new copy for the old one.
      await s.removeBlock(5);
      await s.putPage(5, 0, randomBytes(PS), PS, PS);
      const c = s.takeChanges();
      t.same(c.removed, [5], 'reported removed…');
      t.same(c.added, [{ id: 5, tier: 'MEM', bytes: PS }], '…and added');
      // A failed heartbeat puts the changes back, the drop included.
      s.restoreChanges(c);
      t.same(s.takeChanges().removed, [5], 'still reported removed after a failed heartbeat');
      t.same(s.takeChanges(), { added: [], removed: [], dropped: [] }, 'nothing left to report');
    });

    t.test('a full top tier demotes its least recently used pages; quotas hold; the bottom drops', async (t) => {
      const { make, tiers } = setup(t, [3 * FILE, 2 * FILE], base);
      const s = make();
      await s.open();
      const pages = Array.from({ length: 8 }, () => randomBytes(PS));
      for (let i = 0; i < 8; i++) {
        await s.putPage(100 + i, 0, pages[i]!, PS, PS);
        t.ok(pageBytesUnder(tiers[0]!.dir) <= tiers[0]!.capacityBytes, 'top tier within quota');
        t.ok(pageBytesUnder(tiers[1]!.dir) <= tiers[1]!.capacityBytes, 'lower tier within quota');
      }
      const info = s.tierInfo();
      t.equal(info[0]!.usedBytes, 3 * FILE);
      t.equal(info[1]!.usedBytes, 2 * FILE);
      // Newest three on top, the two before them demoted, the oldest three dropped.
      for (let i = 0; i < 8; i++) {
        const got = await s.readPage(100 + i, 0, 0, PS);
        if (i >= 5) t.equal(got?.tier, 'MEM', `page ${i} on top`);
        else if (i >= 3) t.equal(got?.tier, 'SSD', `page ${i} demoted`);
        else t.equal(got, undefined, `page ${i} dropped`);
        if (got) t.same(got.data, pages[i], `page ${i} bytes intact`);
      }
      t.equal(s.stats.evictedPages, 3);
      t.ok(s.stats.demotedBytes >= 2 * PS);
    });

    t.test('unpersisted and user-pinned pages are never dropped; a tier full of them says NO_SPACE', async (t) => {
      const { make } = setup(t, [2 * FILE], base);
      const s = make();
      await s.open();
      await s.markUnpersisted(1);
      await s.putPage(1, 0, randomBytes(PS), PS, PS, { durable: true });
      s.setUserPins([2]);
      await s.putPage(2, 0, randomBytes(PS), PS, PS);
      await t.rejects(s.putPage(3, 0, randomBytes(PS), PS, PS), { code: 'NO_SPACE' });
      t.ok(s.hasPage(1, 0) && s.hasPage(2, 0), 'pinned pages survive');
      s.setUserPins([]);
      await s.putPage(3, 0, randomBytes(PS), PS, PS);
      t.notOk(s.hasPage(2, 0), 'an unpinned page can go');
      t.ok(s.hasPage(1, 0), 'the unpersisted page stays');
      await s.markPersisted(1);
      await s.putPage(4, 0, randomBytes(PS), PS, PS);
      t.notOk(s.hasPage(1, 0), 'once persisted it can go too');
    });

    t.test('durable (unpersisted) writes skip a volatile MEM tier', async (t) => {
      const { make } = setup(t, [4 * FILE, 4 * FILE], base);
      const s = make();
      await s.open();
      await s.putPage(1, 0, randomBytes(PS), PS, PS, { durable: true });
      t.equal((await s.readPage(1, 0, 0, 1))!.tier, 'SSD');
      await s.putPage(2, 0, randomBytes(PS), PS, PS);
      t.equal((await s.readPage(2, 0, 0, 1))!.tier, 'MEM');
    });

    t.test('a page whose file vanished from the disk is dropped, so it can be cached again', async (t) => {
      const { make, tiers, corrupt } = setup(t, [10 * FILE], base);
      const s = make();
      await s.open();
      await s.putPage(11, 0, randomBytes(PS), PS, 2 * PS);
      await s.putPage(11, 1, randomBytes(PS), PS, 2 * PS);
      rmSync(path.join(tiers[0]!.dir, '11', '0'));
      t.equal(await s.readPage(11, 0, 0, PS), undefined, 'not served');
      t.match(corrupt, ['11/0: page file missing'], 'reported as dropped');
      t.notOk(s.hasPage(11, 0), 'no longer indexed: the next read fetches it again');
      const again = randomBytes(PS);
      await s.putPage(11, 0, again, PS, 2 * PS);
      t.same((await s.readPage(11, 0, 0, PS))!.data, again, 'and caches it anew');

      // The whole tier gone (its disk unmounted under it): nothing is dropped, reads fail until it is back.
      const moved = `${tiers[0]!.dir}.away`;
      renameSync(tiers[0]!.dir, moved);
      await t.rejects(s.readPage(11, 1, 0, PS), { code: 'IO_ERROR', message: /is its disk mounted\?/ }, 'a read fails, saying why');
      t.ok(s.hasPage(11, 1), 'and the page stays indexed');
      renameSync(moved, tiers[0]!.dir);
      t.equal((await s.readPage(11, 1, 0, PS))!.data.length, PS, 'served again once the tier is back');
    });

    t.test("all pages of a block replaced at once: none finds the block's directory gone", async (t) => {
      const { make } = setup(t, [10 * FILE], base);
      const s = make();
      await s.open();
      let last: Buffer[] = [];
      let lost = 0;
      for (let round = 0; round < 100; round++) {
        last = [randomBytes(PS), randomBytes(PS)];
        await Promise.all(last.map((d, i) => s.putPage(13, i, d, PS, 2 * PS)));
        if (!s.hasPage(13, 0) || !s.hasPage(13, 1)) lost++;
      }
      t.equal(lost, 0, 'no round lost a page from the index (its file on disk, unknown to the store)');
      for (const i of [0, 1]) t.same((await s.readPage(13, i, 0, PS))!.data, last[i], `page ${i} is the last one written`);
    });

    t.test('a corrupt page file is never served and is dropped', async (t) => {
      const { make, tiers, corrupt } = setup(t, [10 * FILE], base);
      let s = make();
      await s.open();
      const data = randomBytes(PS);
      await s.putPage(9, 0, data, PS, PS);
      await s.putPage(9, 1, randomBytes(PS), PS, 2 * PS);
      // Flip a byte in place while the store runs: the file's identity changes, so it is checked again.
      const file = path.join(tiers[0]!.dir, '9', '0');
      const fh = await fsp.open(file, 'r+');
      await fh.write(Buffer.from([data[5]! ^ 0xff]), 0, 1, 5);
      await fh.close();
      t.equal(await s.readPage(9, 0, 0, PS), undefined, 'the corrupt page is not served');
      t.notOk(existsSync(file), 'and is deleted');
      t.match(corrupt[0], /checksum/);
      t.equal(s.stats.corruptPages, 1);
      // A truncated page found at start is dropped by the scrub, before anyone reads it.
      await fsp.truncate(path.join(tiers[0]!.dir, '9', '1'), 1000);
      s = make();
      await s.open();
      t.equal(await s.scrub(0), 1, 'scrub finds the damaged page');
      t.notOk(s.hasPage(9, 1));
    });

    t.test('a page file under the wrong name does not verify', async (t) => {
      const { make, tiers } = setup(t, [10 * FILE], base);
      let s = make();
      await s.open();
      const a = randomBytes(PS);
      await s.putPage(1, 0, a, PS, PS);
      await s.putPage(2, 0, randomBytes(PS), PS, PS);
      await fsp.copyFile(path.join(tiers[0]!.dir, '1', '0'), path.join(tiers[0]!.dir, '2', '0'));
      s = make();
      await s.open();
      t.same((await s.readPage(1, 0, 0, PS))!.data, a);
      t.equal(await s.readPage(2, 0, 0, PS), undefined, 'block 1 page copied over block 2 is refused');
    });

    t.test('restart rebuilds the index; temp files, stray files and duplicates are cleaned', async (t) => {
      const { make, tiers, root } = setup(t, [4 * FILE, 4 * FILE], base);
      let s = make();
      await s.open();
      const pages = [randomBytes(PS), randomBytes(PS), randomBytes(PS)];
      for (let i = 0; i < 3; i++) await s.putPage(50, i, pages[i]!, PS, 3 * PS);
      await s.markUnpersisted(50);
      // Leftovers of a crash: a temp file, junk, and a copy of page 0 in the lower tier (a move cut short).
      await fsp.writeFile(path.join(tiers[0]!.dir, '.tmp', '50.0.dead'), 'partial');
      await fsp.writeFile(path.join(tiers[0]!.dir, 'junk'), 'x');
      await fsp.mkdir(path.join(tiers[1]!.dir, '50'), { recursive: true });
      await fsp.copyFile(path.join(tiers[0]!.dir, '50', '0'), path.join(tiers[1]!.dir, '50', '0'));
      await fsp.writeFile(path.join(tiers[1]!.dir, '50', '7'), 'short');
      s = make();
      await s.open();
      for (let i = 0; i < 3; i++) t.same((await s.readPage(50, i, 0, PS))!.data, pages[i], `page ${i} back after restart`);
      t.equal((await s.readPage(50, 0, 0, 1))!.tier, 'MEM', 'the upper copy wins');
      t.notOk(existsSync(path.join(tiers[1]!.dir, '50', '0')), 'the lower duplicate is gone');
      t.notOk(existsSync(path.join(tiers[1]!.dir, '50', '7')), 'a file too short for a trailer is gone');
      t.same(readdirSync(path.join(tiers[0]!.dir, '.tmp')), [], 'temp files are gone');
      t.notOk(existsSync(path.join(tiers[0]!.dir, 'junk')));
      t.ok(s.isUnpersisted(50), 'the unpersisted pin survives');
      t.same(s.fullReport(), [{ id: 50, tier: 'MEM', bytes: 3 * PS }]);
      t.equal(s.tierInfo()[0]!.usedBytes, 3 * FILE);
      void root;
    });

    t.test('a restart with another page size: a tier of copies is emptied, one holding the only copy is refused', async (t) => {
      const { tiers, root } = setup(t, [8 * FILE], base);
      const withPageSize = (ps: number) => new PageStore({ tiers, pageSize: ps, pinDir: path.join(root, 'pins') });
      let s = withPageSize(PS);
      await s.open();
      const data = randomBytes(2 * PS);
      await s.putPage(60, 0, data.subarray(0, PS), PS, 2 * PS);
      await s.putPage(60, 1, data.subarray(PS), PS, 2 * PS);
      await s.putPage(61, 0, data.subarray(0, PS), PS, PS);
      await s.markUnpersisted(61);
      // Twice the page size: page 1 of block 60 would be read as bytes 2*PS.. of a page 1 of 2*PS.
      await t.rejects(withPageSize(2 * PS).open(), { code: 'CONFIG', message: /only copy of 1 unpersisted block/ }, 'refused while it holds the only copy of a block');
      s = withPageSize(PS);
      await s.open();
      t.same((await s.readPage(61, 0, 0, PS))!.data, data.subarray(0, PS), 'the unpersisted block is intact at its own page size');
      await s.markPersisted(61);
      s = withPageSize(2 * PS);
      await s.open();
      t.equal(await s.readPage(60, 0, 0, 2 * PS), undefined, 'once all of it is persisted, the other page size starts empty');
      t.same(s.fullReport(), [], 'nothing is reported');
      t.equal(s.tierInfo()[0]!.usedBytes, 0);
    });

    t.test('the block writer stores holes sparsely and data exactly', async (t) => {
      const { make, tiers } = setup(t, [100 * FILE], base);
      const s = make();
      await s.open();
      const len = 5 * PS + 123;
      const w = s.blockWriter(3, len);
      const head = randomBytes(1000);
      await w.write(head);
      await w.skip(3 * PS); // page 1 and 2 all hole, page 3 partly
      const mid = randomBytes(PS + 50);
      await w.write(mid);
      await w.skip(len - 1000 - 3 * PS - mid.length);
      t.equal(await w.commit(), len);
      const expect = Buffer.alloc(len);
      head.copy(expect, 0);
      mid.copy(expect, 1000 + 3 * PS);
      const back = Buffer.concat(await Promise.all([0, 1, 2, 3, 4, 5].map(async (p) => (await s.readPage(3, p, 0, PS))!.data)));
      t.equal(back.length, len);
      t.ok(back.equals(expect), 'bytes and zeros where they belong');
      const holePage = statSync(path.join(tiers[0]!.dir, '3', '1'));
      t.ok(holePage.blocks * 512 < PS / 2, `an all-hole page takes little disk (${holePage.blocks * 512} bytes)`);
      const aborted = s.blockWriter(4, 2 * PS);
      await aborted.write(randomBytes(PS + 1));
      await aborted.abort();
      t.notOk(s.hasPage(4, 0), 'abort removes written pages');
    });

    t.test('CACHE_PROMOTE reads move pages to the top tier', async (t) => {
      const { make } = setup(t, [2 * FILE, 4 * FILE], base);
      const s = make();
      await s.open();
      for (let i = 0; i < 3; i++) await s.putPage(i, 0, randomBytes(PS), PS, PS);
      t.equal((await s.readPage(0, 0, 0, 1))!.tier, 'SSD', 'the oldest was demoted');
      await s.promote(0);
      t.equal((await s.readPage(0, 0, 0, 1))!.tier, 'MEM', 'promoted');
      t.equal(s.tierInfo()[0]!.usedBytes, 2 * FILE, 'top tier still within quota');
    });
  });
}

t.test('tier specs parse with clear errors', async (t) => {
  t.same(parseTierSpec('mem:/dev/shm/strata:4GiB', parseBytes), { name: 'MEM', dir: '/dev/shm/strata', capacityBytes: 4 * 1024 ** 3 });
  t.same(parseTierSpec('ssd:/a:b/c:1m', parseBytes), { name: 'SSD', dir: '/a:b/c', capacityBytes: 1024 ** 2 });
  t.throws(() => parseTierSpec('mem:/x', parseBytes), /NAME:DIR:SIZE/);
  t.throws(() => parseTierSpec('mem:/x:lots', parseBytes), /byte size/);
  t.throws(() => new PageStore({ tiers: [{ name: 'A', dir: '/tmp/x', capacityBytes: 1 }, { name: 'B', dir: '/tmp/x', capacityBytes: 1 }], pinDir: '/tmp/p' }), /two tiers/);
});

t.test('a block deleted while one of its pages moves down a tier: usage stays exact, no orphan, eviction goes on', async (t) => {
  const fsm = require('node:fs').promises as typeof fsp;
  const cases: [string, string, 'mkdir' | 'copyFile'][] = [['same file system (deleted before the rename)', DISK_BASE, 'mkdir']];
  if (BASES.length > 1) cases.push(['MEM on a memory file system (deleted after the copy)', BASES[1]!, 'copyFile']);
  for (const [what, memBase, hook] of cases) {
    await t.test(what, async (t) => {
      const root = mkdtempSync(path.join(DISK_BASE, 'strata-pages-'));
      const memRoot = mkdtempSync(path.join(memBase, 'strata-pages-mem-'));
      t.teardown(() => {
        rmSync(root, { recursive: true, force: true });
        rmSync(memRoot, { recursive: true, force: true });
      });
      const tiers = [
        { name: 'MEM', dir: path.join(memRoot, 'mem'), capacityBytes: 2 * FILE },
        { name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 2 * FILE },
      ];
      const s = new PageStore({ tiers, pageSize: PS, pinDir: path.join(root, 'pins') });
      await s.open();
      await s.putPage(1, 0, randomBytes(PS), PS, PS);
      await s.putPage(2, 0, randomBytes(PS), PS, PS);
      // The next page pushes block 1's page down to SSD; the master deletes block 1 in the middle of that move.
      const original = fsm[hook] as (...a: unknown[]) => Promise<unknown>;
      let fired = false;
      (fsm as unknown as Record<string, unknown>)[hook] = async (...a: unknown[]) => {
        const target = String(a[hook === 'mkdir' ? 0 : 1]);
        if (!fired && (hook === 'copyFile' || target === path.join(tiers[1]!.dir, '1'))) {
          fired = true;
          if (hook === 'mkdir') await s.removeBlock(1);
          else {
            const r = await original.apply(fsm, a);
            await s.removeBlock(1);
            return r;
          }
        }
        return original.apply(fsm, a);
      };
      try {
        await s.putPage(3, 0, randomBytes(PS), PS, PS);
      } finally {
        (fsm as unknown as Record<string, unknown>)[hook] = original;
      }
      t.ok(fired, 'the delete came in during the move');
      t.equal(await s.readPage(1, 0, 0, PS), undefined, 'the deleted block is gone');
      const usage = () => s.tierInfo().map((x) => x.usedBytes);
      t.same(usage(), [pageBytesUnder(tiers[0]!.dir), pageBytesUnder(tiers[1]!.dir)], 'each tier counts exactly the page files in it');
      t.notOk(existsSync(path.join(tiers[1]!.dir, '1')), 'no orphan page of the deleted block below');
      // More pages than both tiers hold: pages move down and drop out; this must finish (it spun forever on a stale page).
      const data = randomBytes(PS);
      for (let b = 10; b < 16; b++) await s.putPage(b, 0, data, PS, PS);
      t.same(usage(), [pageBytesUnder(tiers[0]!.dir), pageBytesUnder(tiers[1]!.dir)], 'and after evictions through both tiers');
      t.same((await s.readPage(15, 0, 0, PS))!.data, data, 'the newest page reads back');
    });
  }
});

t.test('a page of a file not in the under-store yet is never promoted into the volatile MEM tier', async (t) => {
  const root = mkdtempSync(path.join(DISK_BASE, 'strata-pages-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const tiers = [
    { name: 'MEM', dir: path.join(root, 'mem'), capacityBytes: 8 * FILE },
    { name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 8 * FILE },
  ];
  const s = new PageStore({ tiers, pageSize: PS, pinDir: path.join(root, 'pins') });
  await s.open();
  const data = randomBytes(PS);
  await s.markUnpersisted(1);
  await s.putPage(1, 0, data, PS, PS, { durable: true });
  t.equal(s.report(1)?.tier, 'SSD', 'written to the first non-volatile tier');
  t.same((await s.readPage(1, 0, 0, PS, true))!.data, data, 'a promoting read reads it');
  await s.promote(1);
  await new Promise((r) => setTimeout(r, 50)); // a read's promotion runs in the background
  t.equal(s.report(1)?.tier, 'SSD', 'and leaves it where a reboot cannot take it');
  t.ok(existsSync(path.join(tiers[1]!.dir, '1', '0')), 'its file is still on SSD');
  await s.markPersisted(1);
  await s.promote(1);
  t.equal(s.report(1)?.tier, 'MEM', 'once in the under-store, it is promoted');
  t.same((await s.readPage(1, 0, 0, PS))!.data, data, 'and reads back');
});

t.test('an unsaved page being demoted reads back while its new directory is made durable', async (t) => {
  const root = mkdtempSync(path.join(DISK_BASE, 'strata-pages-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const ssd = path.join(root, 'ssd');
  const hdd = path.join(root, 'hdd');
  const s = new PageStore({ tiers: [{ name: 'SSD', dir: ssd, capacityBytes: FILE }, { name: 'HDD', dir: hdd, capacityBytes: 10 * FILE }], pageSize: PS, pinDir: path.join(root, 'pins') });
  await s.open();
  const data = randomBytes(PS);
  // An ASYNC_THROUGH page: not in the store yet, so this is its only copy.
  await s.markUnpersisted(5);
  await s.putPage(5, 0, data, PS, PS, { durable: true });
  // The demotion's fsync of the page's new directory takes its time (a slow disk).
  const realOpen = fsp.open;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inWindow = new Promise<void>((r) => (entered = r));
  (fsp as { open: unknown }).open = async (p: string, ...rest: unknown[]) => {
    if (p === path.join(hdd, '5')) {
      entered();
      await gate;
    }
    return (realOpen as (...a: unknown[]) => Promise<unknown>)(p, ...rest);
  };
  t.teardown(() => void ((fsp as { open: unknown }).open = realOpen));
  const put = s.putPage(6, 0, randomBytes(PS), PS, PS); // the SSD tier holds one page: 5/0 goes down
  await inWindow;
  t.ok(s.hasPage(5, 0), 'the page is cached');
  const r = await s.readPage(5, 0, 0, PS);
  t.ok(r?.data.equals(data), 'and reads back meanwhile');
  t.equal(r?.tier, 'HDD', 'from its new tier');
  release();
  await put;
  (fsp as { open: unknown }).open = realOpen;
  t.ok((await s.readPage(5, 0, 0, PS))?.data.equals(data), 'and after');
  t.equal(s.usedBytes, 2 * FILE, 'both pages counted once');
});

t.test("a page written again replaces the old copy, also when it was its block's only page in the tier", async (t) => {
  const { make } = setup(t, [10 * FILE], DISK_BASE);
  const s = make();
  await s.open();
  const a = randomBytes(PS);
  const b = randomBytes(PS);
  await s.putPage(7, 0, a, PS, PS);
  await s.putPage(7, 0, b, PS, PS);
  t.ok((await s.readPage(7, 0, 0, PS))?.data.equals(b), 'the new bytes are read');
  t.equal(s.usedBytes, FILE, 'counted once');
});
