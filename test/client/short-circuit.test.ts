/**
 * Page-file ranges for spliced replies (ShortCircuitReader.ranges): the bytes
 * they name are the page's, and a held range's descriptor stays open until it is
 * let go, even when the page file is closed to make room or fails its check.
 * Real page files in a temp tier directory, in the worker's format.
 */

import t from 'tap';
import type * as tap from 'tap';
import { randomBytes } from 'node:crypto';
import { fstatSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ShortCircuitReader } from '../../src/client/short-circuit';
import { encodeTrailer, pageCrc, pageRelPath } from '../../src/common/page-file';
import type { WorkerInfo } from '../../src/common/protocol';

const PAGE = 64 * 1024;
const BLOCK = 7;

function setup(t: tap.Test, pages: number) {
  const dir = mkdtempSync(path.join(tmpdir(), 'strata-sc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const data = randomBytes(pages * PAGE - 100);
  for (let i = 0; i < pages; i++) {
    const bytes = data.subarray(i * PAGE, Math.min(data.length, (i + 1) * PAGE));
    const file = path.join(dir, pageRelPath(BLOCK, i));
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.concat([bytes, encodeTrailer({ dataLength: bytes.length, blockId: BLOCK, pageIndex: i, crc: pageCrc(bytes), blockLength: data.length })]));
  }
  const worker: WorkerInfo = {
    id: 1,
    address: 'http://127.0.0.1:1',
    host: 'this-host',
    tiers: [{ name: 'MEM', dir, capacityBytes: 1 << 30, usedBytes: 0 }],
    pageSize: PAGE,
    capacityBytes: 1 << 30,
    usedBytes: 0,
    lastHeartbeatMs: Date.now(),
    live: true,
  };
  return { dir, data, worker };
}

/**
 * A check that `fd` still names the file it names now. Closes are asynchronous, and a closed fd's
 * number may be reused at once (by the next page opened), so "is it open" alone can mislead.
 */
const watchFd = (fd: number): (() => boolean) => {
  const first = fstatSync(fd);
  return () => {
    try {
      const st = fstatSync(fd);
      return st.ino === first.ino && st.dev === first.dev;
    } catch {
      return false;
    }
  };
};

/** What the ranges name, read back through their descriptors. */
function bytesOf(ranges: { fd: number; pos: number; len: number }[]): Buffer {
  return Buffer.concat(
    ranges.map((r) => {
      const b = Buffer.alloc(r.len);
      readSync(r.fd, b, 0, r.len, r.pos);
      return b;
    }),
  );
}

const settle = () => new Promise((r) => setTimeout(r, 50));
/** Waits (at most 5 s) for a watched fd to be closed; whether it was. */
const closedSoon = async (open: () => boolean): Promise<boolean> => {
  for (const until = Date.now() + 5000; open() && Date.now() < until; ) await settle();
  return !open();
};

t.test('ranges name the bytes of the pages, up to the block end', async (t) => {
  const { data, worker } = setup(t, 4);
  const sc = new ShortCircuitReader({ hostId: 'this-host' });
  t.teardown(() => sc.close());
  const r = await sc.ranges(worker, BLOCK, 1000, 2 * PAGE + 5);
  t.ok(r, 'all pages on local disk');
  t.equal(r!.length, 3, 'one range per page file touched');
  t.ok(bytesOf(r!).equals(data.subarray(1000, 1000 + 2 * PAGE + 5)), 'the bytes they name are the block bytes');
  sc.release(r!);
  const tail = await sc.ranges(worker, BLOCK, data.length - 10, 50);
  t.ok(bytesOf(tail!).equals(data.subarray(data.length - 10)), 'past the end: only what the block has');
  sc.release(tail!);
  t.equal(await sc.ranges(worker, BLOCK + 1, 0, 10), undefined, 'a page not on local disk: undefined');
});

t.test('a held range stays open while its page is closed to make room', async (t) => {
  const { data, worker } = setup(t, 6);
  const sc = new ShortCircuitReader({ hostId: 'this-host', maxOpen: 2 });
  t.teardown(() => sc.close());
  const held = (await sc.ranges(worker, BLOCK, 0, 100))!;
  const fd = held[0]!.fd;
  const samePage = watchFd(fd);
  for (let i = 1; i < 6; i++) sc.release((await sc.ranges(worker, BLOCK, i * PAGE, 100))!);
  await settle();
  t.ok(samePage(), 'the held page file is still open with 5 others opened past the limit of 2');
  t.ok(bytesOf(held).equals(data.subarray(0, 100)), 'and still reads its bytes');
  sc.hold(held);
  sc.release(held);
  sc.release((await sc.ranges(worker, BLOCK, 5 * PAGE, 10))!);
  await settle();
  t.ok(samePage(), 'held twice, let go once: still open');
  sc.release(held);
  sc.release((await sc.ranges(worker, BLOCK, 4 * PAGE, 10))!);
  t.ok(await closedSoon(samePage), 'let go by everyone: closed at the next trim');
});

t.test('a held range stays open when its page fails its check; closed once let go', async (t) => {
  const { dir, worker } = setup(t, 2);
  const sc = new ShortCircuitReader({ hostId: 'this-host' });
  t.teardown(() => sc.close());
  const held = (await sc.ranges(worker, BLOCK, 0, 100))!;
  const fd = held[0]!.fd;
  const samePage = watchFd(fd);
  // Corrupt the page in place: its identity changes (ctime), its checksum no longer matches.
  const w = openSync(path.join(dir, pageRelPath(BLOCK, 0)), 'r+');
  writeSync(w, Buffer.from('corrupt!'), 0, 8, 10);
  closeSync(w);
  await new Promise((r) => setTimeout(r, 1100)); // past the re-check interval
  t.equal(await sc.ranges(worker, BLOCK, 0, 100), undefined, 'the page is not served once it fails its check');
  t.equal(sc.corruptPages, 1, 'counted as corrupt');
  await settle();
  t.ok(samePage(), 'the range held before is still open (a reply may be reading it)');
  sc.release(held);
  t.ok(await closedSoon(samePage), 'closed once let go');
});

t.test('with the open-file limit taken by held ranges, one more page is still read from its file', async (t) => {
  const { data, worker } = setup(t, 6);
  const sc = new ShortCircuitReader({ hostId: 'this-host', maxOpen: 4 });
  t.teardown(() => sc.close());
  const held = [];
  for (let i = 0; i < 4; i++) held.push((await sc.ranges(worker, BLOCK, i * PAGE, 100))!);
  const more = await sc.ranges(worker, BLOCK, 4 * PAGE, 100);
  t.ok(more, 'a fifth page gets a range (not closed as soon as it was opened)');
  t.ok(more && bytesOf(more).equals(data.subarray(4 * PAGE, 4 * PAGE + 100)), 'with its bytes');
  const into = Buffer.alloc(100);
  t.equal(await sc.readInto(worker, BLOCK, 5 * PAGE, 100, into, 0), 100, 'a sixth page is read from its file too');
  t.ok(into.equals(data.subarray(5 * PAGE, 5 * PAGE + 100)), 'with its bytes');
  t.equal(sc.rangesHeld, 5, 'five ranges held');
  t.notOk(sc.canHold(), 'and no more may be held with a limit of 4');
  if (more) sc.release(more);
  for (const r of held) sc.release(r);
  t.equal(sc.rangesHeld, 0, 'none once let go');
});

t.test('kept page files that the worker removed are closed, so their space is freed; held ones once let go', async (t) => {
  const { dir, data, worker } = setup(t, 3);
  const sc = new ShortCircuitReader({ hostId: 'this-host', sweepMs: 50 });
  t.teardown(() => sc.close());
  const open: (() => boolean)[] = [];
  for (let i = 0; i < 2; i++) {
    const r = (await sc.ranges(worker, BLOCK, i * PAGE, 100))!;
    open.push(watchFd(r[0]!.fd));
    sc.release(r);
  }
  const held = (await sc.ranges(worker, BLOCK, 2 * PAGE, 100))!;
  const heldOpen = watchFd(held[0]!.fd);
  // The worker evicts pages 0 and 2.
  rmSync(path.join(dir, pageRelPath(BLOCK, 0)));
  rmSync(path.join(dir, pageRelPath(BLOCK, 2)));
  t.ok(await closedSoon(open[0]!), 'a removed page file is closed');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(open[1]!(), 'one still in its place stays open');
  t.ok(heldOpen(), 'a removed one that a range holds stays open (a reply may be reading it)');
  t.ok(bytesOf(held).equals(data.subarray(2 * PAGE, 2 * PAGE + 100)), 'and reads its bytes');
  sc.release(held);
  t.ok(await closedSoon(heldOpen), 'closed once let go');
  t.equal(await sc.ranges(worker, BLOCK, 0, 100), undefined, 'a removed page is not served from a kept descriptor');
});
