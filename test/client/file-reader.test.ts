/**
 * FileReader with page-file ranges (the mount's spliced replies), against real page
 * files in a memory tier (/dev/shm when there is one) and a disk tier, with the
 * master, router and worker HTTP calls played by in-process stand-ins (they are
 * not what is tested here). Bytes must always be the file's, and every range
 * handed out must be let go: a leaked one keeps a descriptor open for good.
 */

import t from 'tap';
import type * as tap from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FileReader, type DataPath } from '../../src/client/file-reader';
import type { ReadParts } from '../../src/common/file-range';
import { ShortCircuitReader } from '../../src/client/short-circuit';
import { encodeTrailer, pageCrc, pageRelPath } from '../../src/common/page-file';
import type { FileBlocksResponse, WorkerInfo } from '../../src/common/protocol';

const PAGE = 64 * 1024;
type Where = 'mem' | 'ssd' | 'http';

function setup(t: tap.Test, blocks: Where[], opts: { blockSize: number; maxOpen?: number; size?: number }) {
  const mem = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'strata-fr-'));
  const ssd = mkdtempSync(path.join(tmpdir(), 'strata-fr-'));
  const bs = opts.blockSize;
  const size = opts.size ?? blocks.length * bs - 12345;
  const data = randomBytes(size);
  const info = { attrs: { ino: 5, size, blockSize: bs, persistState: 'persisted' }, blocks: [] as { id: number; offset: number; length: number; locations: number[] }[] };
  blocks.forEach((where, i) => {
    const offset = i * bs;
    const length = Math.min(bs, size - offset);
    info.blocks.push({ id: 100 + i, offset, length, locations: [1] });
    if (where === 'http') return;
    for (let p = 0; p * PAGE < length; p++) {
      const bytes = data.subarray(offset + p * PAGE, offset + Math.min(length, (p + 1) * PAGE));
      const file = path.join(where === 'mem' ? mem : ssd, pageRelPath(100 + i, p));
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, Buffer.concat([bytes, encodeTrailer({ dataLength: bytes.length, blockId: 100 + i, pageIndex: p, crc: pageCrc(bytes), blockLength: length })]));
    }
  });
  const worker = { id: 1, address: 'http://127.0.0.1:1', host: 'this-host', tiers: [{ name: 'MEM', dir: mem }, { name: 'SSD', dir: ssd }], pageSize: PAGE, live: true } as unknown as WorkerInfo;
  const local = new ShortCircuitReader({ hostId: 'this-host', ...(opts.maxOpen ? { maxOpen: opts.maxOpen } : {}) });
  const stats = { http: 0 };
  const slow = new Set<number>();
  const dataPath = {
    master: { fileBlocksByIno: async () => info },
    router: { forBlock: async () => worker, invalidate() {}, markFailed() {} },
    workers: {
      readType: 'CACHE',
      loadBlock: async () => ({}),
      readInto: async (_w: WorkerInfo, id: number, off: number, n: number, into: Buffer, at: number) => {
        stats.http++;
        if (slow.has(id)) await new Promise((r) => setTimeout(r, 300));
        const b = info.blocks.find((x) => x.id === id)!;
        data.copy(into, at, b.offset + off, b.offset + off + n);
        return n;
      },
    },
    local,
  } as unknown as DataPath;
  t.teardown(async () => {
    await local.close();
    rmSync(mem, { recursive: true, force: true });
    rmSync(ssd, { recursive: true, force: true });
  });
  return { data, info: info as unknown as FileBlocksResponse, dataPath, local, stats, slow };
}

/** The bytes of a reply's parts (ranges read through their descriptors), then let go. */
function take(r: ReadParts): Buffer {
  const out = Buffer.concat(
    r.parts.map((p) => {
      if (Buffer.isBuffer(p)) return Buffer.from(p);
      const b = Buffer.alloc(p.len);
      if (readSync(p.fd, b, 0, p.len, p.pos) !== p.len) throw new Error('short range');
      return b;
    }),
  );
  r.done();
  return out;
}

const openFds = () => readdirSync('/proc/self/fd').length;
const settle = () => new Promise((r) => setTimeout(r, 50));

t.test('sequential, random and concurrent reads over memory, disk and remote blocks: right bytes, every range let go', async (t) => {
  const s = setup(t, ['mem', 'http', 'ssd', 'mem'], { blockSize: 1024 * 1024 });
  const fds = openFds();
  const r = new FileReader(s.dataPath, s.info, { windowBytes: 256 * 1024, recycleWindows: true, fileRanges: true });
  let bad = 0;
  for (let pos = 0; pos < s.data.length; pos += 128 * 1024) if (!take(await r.readParts(pos, 128 * 1024)).equals(s.data.subarray(pos, pos + 128 * 1024))) bad++;
  t.equal(bad, 0, 'a sequential reader gets the file');
  const reads = Array.from({ length: 200 }, () => {
    const pos = Math.floor(Math.random() * s.data.length);
    const len = 1 + Math.floor(Math.random() * 600 * 1024);
    return r.readParts(pos, len).then((x) => take(x).equals(s.data.subarray(pos, pos + len)));
  });
  t.same((await Promise.all(reads)).filter((ok) => !ok).length, 0, '200 concurrent reads at random places');
  r.close();
  await settle();
  t.equal(s.local.rangesHeld, 0, 'no range held once the reader is closed');
  t.ok(openFds() <= fds + 64, 'page files stay within the open-file cache');
});

t.test('a request spanning two windows gets its own bytes while the first window is recycled', async (t) => {
  // Windows 0-1 remote (bytes, recycled buffers), window 1 slow; a later request drops window 0 meanwhile.
  const W = 256 * 1024;
  const s = setup(t, ['http', 'http', 'mem', 'http', 'http', 'http', 'http', 'http'], { blockSize: W });
  s.slow.add(101);
  for (const how of ['readParts', 'readBuffer'] as const) {
    const r = new FileReader(s.dataPath, s.info, { windowBytes: W, readAheadWindows: 2, recycleWindows: true, fileRanges: true });
    const read = async (pos: number, len: number) => (how === 'readParts' ? take(await r.readParts(pos, len)) : Buffer.from(await r.readBuffer(pos, len)));
    await read(0, W);
    const spanning = read(W - 16384, 32768);
    await settle();
    await read(2 * W + 100, 4096);
    await settle();
    await read(3 * W + 100, 4096);
    t.ok((await spanning).equals(s.data.subarray(W - 16384, W + 16384)), `${how}: the spanning request's bytes are the file's`);
    r.close();
  }
});

t.test('many readers holding windows fall back to reading bytes before running out of descriptors', async (t) => {
  const s = setup(t, ['mem', 'mem'], { blockSize: 1024 * 1024, maxOpen: 8 });
  const readers = Array.from({ length: 6 }, () => new FileReader(s.dataPath, s.info, { windowBytes: 256 * 1024, recycleWindows: true, fileRanges: true }));
  let bad = 0;
  let most = 0;
  for (let pos = 0; pos < s.data.length; pos += 128 * 1024) {
    const got = await Promise.all(readers.map(async (r) => take(await r.readParts(pos, 128 * 1024))));
    bad += got.filter((b) => !b.equals(s.data.subarray(pos, pos + 128 * 1024))).length;
    most = Math.max(most, s.local.rangesHeld);
  }
  t.equal(bad, 0, 'six readers at once get the file');
  t.equal(s.stats.http, 0, 'all from the local page files, none over HTTP');
  // Each reader keeps its window and two ahead: 12 pages of ranges each, 72 in all, without the limit.
  t.ok(most <= 32, `ranges held stay near half the open-file limit (at most ${most})`);
  for (const r of readers) r.close();
  await settle();
  t.equal(s.local.rangesHeld, 0, 'all let go once closed');
});

for (const [what, size] of [['ends with a short block', 3 * 256 * 1024 - 100], ['has too few blocks', 3 * 256 * 1024 + 100]] as const) {
  t.test(`a file whose block list ${what} before its size fails the read and leaves no range held`, async (t) => {
    const s = setup(t, ['mem', 'mem'], { blockSize: 256 * 1024, size: 2 * 256 * 1024 - (what === 'ends with a short block' ? 12345 : 0) });
    (s.info.attrs as { size: number }).size = size;
    const r = new FileReader(s.dataPath, s.info, { windowBytes: 1024 * 1024, recycleWindows: true, fileRanges: true });
    await t.rejects(r.readParts(0, 1024 * 1024), /has no block/, 'the read fails');
    await settle();
    t.equal(s.local.rangesHeld, 0, 'the ranges its other parts took were let go');
    r.close();
  });
}
