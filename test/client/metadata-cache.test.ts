/** The rules that keep a mount's metadata cache exact (client/metadata-cache.ts). */

import t from 'tap';
import { MetadataCache, parseChangeStamp } from '../../src/client/metadata-cache';
import type { ChangesResponse, FileAttributes } from '../../src/common/protocol';

const attrs = (ino: number, size = 0): FileAttributes =>
  ({ ino, type: 'file', mode: 0o644, uid: 0, gid: 0, size, nlink: 1, mtime: { sec: 1, nsec: 0 }, atime: { sec: 1, nsec: 0 }, ctime: { sec: 1, nsec: 0 }, blockSize: 4096 }) as unknown as FileAttributes;
const stamp = (start: number, end = start, epoch = 'e1') => ({ epoch, start, end });
const feed = (seq: number, changes: Partial<ChangesResponse> = {}): ChangesResponse => ({ epoch: 'e1', seq, reset: false, inos: [], seqs: [], names: [], located: [], ttlMs: -1, ...changes });

/** A cache following a master that marks directories to be listed again (ChangesResponse.listingMarks). */
function readyMarks(): MetadataCache {
  const c = new MetadataCache();
  c.apply({ ...feed(10), reset: true, listingMarks: true });
  return c;
}

function ready(): MetadataCache {
  const c = new MetadataCache();
  c.apply({ ...feed(10), reset: true });
  return c;
}

t.test('nothing is served before the feed answered, nor after it failed', async (t) => {
  const c = new MetadataCache();
  c.putEntry(1, 'a', attrs(5), stamp(0));
  t.equal(c.getEntry(1, 'a'), undefined, 'no feed yet: not stored');
  c.apply({ ...feed(10), reset: true });
  c.putEntry(1, 'a', attrs(5), stamp(10));
  t.same(c.getEntry(1, 'a')?.attrs?.ino, 5, 'stored once the feed answered');
  c.lost();
  t.equal(c.getEntry(1, 'a'), undefined, 'dropped when the feed failed');
  c.putEntry(1, 'a', attrs(5), stamp(10));
  t.equal(c.getEntry(1, 'a'), undefined, 'nothing stored while the feed is down');
  // The feed answers again in the same epoch, from where it stopped: nothing was missed.
  c.apply(feed(12, { inos: [9], seqs: [12] }));
  c.putEntry(1, 'a', attrs(5), stamp(12));
  t.same(c.getEntry(1, 'a')?.attrs?.ino, 5, 'trusted again once the feed answers (it was disabled for good before)');
});

t.test('an answer is stored only when its request started after every change applied', async (t) => {
  const c = ready();
  c.apply(feed(20, { inos: [7], seqs: [20] }));
  c.putAttrs(attrs(5), stamp(15));
  t.equal(c.getAttrs(5), undefined, 'started at 15, changes up to 20 applied: may predate one of them');
  c.putAttrs(attrs(5), stamp(20));
  t.equal(c.getAttrs(5)?.ino, 5, 'started at 20: kept');
});

t.test('a change drops what was cached before it, not what was cached after', async (t) => {
  const c = ready();
  c.putAttrs(attrs(5, 1), stamp(10));
  c.putEntry(1, 'a', attrs(6), stamp(10));
  c.putEntry(1, 'gone', null, stamp(10));
  t.equal(c.getEntry(1, 'gone')?.attrs, null, 'a name known not to exist');
  c.apply(feed(12, { inos: [5], seqs: [11], names: [[1, 'gone', 12]] }));
  t.equal(c.getAttrs(5), undefined, 'attributes changed at 11: dropped');
  t.equal(c.getEntry(1, 'gone'), undefined, 'the name appeared at 12: the negative entry is dropped');
  t.equal(c.getEntry(1, 'a')?.attrs?.ino, 6, 'another name in the same directory stays');
  // This mount's own change: its answer is valid as of the seq after it.
  c.putAttrs(attrs(5, 2), stamp(12, 14), true);
  c.apply(feed(14, { inos: [5], seqs: [14] }));
  t.equal(c.getAttrs(5)?.size, 2, 'the feed reporting our own change does not drop its answer');
  c.apply(feed(15, { inos: [5], seqs: [15] }));
  t.equal(c.getAttrs(5), undefined, 'a later change does');
});

t.test("after this mount's change, the cache waits until the feed has applied it", async (t) => {
  const c = ready();
  c.putEntry(1, 'a', attrs(6), stamp(10));
  c.sawChange(stamp(10, 13));
  t.equal(c.getEntry(1, 'a'), undefined, 'barrier at 13, applied 10: not consulted');
  c.apply(feed(13, { names: [[1, 'a', 13]] }));
  t.equal(c.getEntry(1, 'a'), undefined, 'the unlink reached the cache: the name is gone from it');
  c.putEntry(1, 'b', attrs(8), stamp(13));
  t.equal(c.getEntry(1, 'b')?.attrs?.ino, 8, 'consulted again once the feed caught up');
});

t.test("before the feed caught up, the answer to this mount's own change is served, older ones are not", async (t) => {
  const c = ready();
  c.putAttrs(attrs(6, 1), stamp(10));
  c.sawChange(stamp(10, 13));
  c.putAttrs(attrs(5, 7), stamp(12, 13), true);
  t.equal(c.getAttrs(5)?.size, 7, 'the create/commit answer (valid as of 13) is served at once');
  t.equal(c.getAttrs(6), undefined, 'an answer valid as of 10 waits for the feed');
  c.sawChange(stamp(13, 16));
  t.equal(c.getAttrs(5), undefined, 'a later change of this mount: the answer as of 13 may predate it');
});

t.test("an own answer (or a directory it reports) is not stored once the feed went past it: later changes could not drop it", async (t) => {
  const c = ready();
  // The feed answered up to 16 before the answer to a change that ended at 14 came in.
  c.apply(feed(16, { inos: [5], seqs: [15] }));
  c.putAttrs(attrs(5, 3), stamp(12, 14), true);
  t.equal(c.getAttrs(5), undefined, 'own answer as of 14, feed at 16: not stored');
  c.putAttrsAsOf(attrs(7), stamp(12, 14), 14);
  t.equal(c.getAttrs(7), undefined, 'a directory as of 14, feed at 16: not stored');
  c.putAttrsAsOf(attrs(7), stamp(16, 18), 18);
  c.putAttrsAsOf(attrs(8), stamp(16, 18), 17);
  c.sawChange(stamp(16, 18));
  t.equal(c.getAttrs(7)?.ino, 7, 'as of the change itself (18), feed at 16: served at once');
  t.equal(c.getAttrs(8), undefined, 'as of 17 (a change of someone else came after it): not before the feed reaches 18');
  c.putAttrsAsOf(attrs(7, 9), stamp(16, 18), 19);
  t.equal(c.getAttrs(7)?.size, 0, 'a seq past the answer itself is not believed');
  c.apply(feed(18, { inos: [7, 8], seqs: [18, 17] }));
  t.equal(c.getAttrs(7)?.ino, 7, 'the change it was read after does not drop it');
  t.equal(c.getAttrs(8)?.ino, 8, 'nor the other one, once the feed is there');
  c.apply(feed(19, { inos: [7], seqs: [19] }));
  t.equal(c.getAttrs(7), undefined, 'a later change does');
});

t.test('a new master (epoch) or a reset drops everything; a TTL bounds what is kept', async (t) => {
  const c = ready();
  c.putAttrs(attrs(5), stamp(10));
  c.sawChange(stamp(0, 1, 'e2'));
  t.equal(c.getAttrs(5), undefined, 'an answer from another epoch: nothing is trusted');
  c.apply({ ...feed(1), epoch: 'e2', reset: true });
  t.equal(c.getAttrs(5), undefined, 'the reset dropped it');
  c.apply({ ...feed(1), epoch: 'e2', ttlMs: 30 });
  c.putAttrs(attrs(9), stamp(1, 1, 'e2'));
  t.equal(c.getAttrs(9)?.ino, 9);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(c.getAttrs(9), undefined, 'expired after the TTL (the shortest sync interval)');
  c.apply({ ...feed(1), epoch: 'e2', ttlMs: 0 });
  c.putAttrs(attrs(9), stamp(1, 1, 'e2'));
  t.equal(c.getAttrs(9), undefined, 'a mount that syncs always: nothing is cached');
});

t.test('a directory this mount made is known whole: every name changed in it since, here or elsewhere, is no longer known absent', async (t) => {
  const c = readyMarks();
  c.putNewDir(40, stamp(10, 12), c.unknownChanges);
  t.ok(c.isAbsent(40, 'x'), 'made empty at 12: any name is absent');
  t.notOk(c.isAbsent(41, 'x'), 'a directory it did not make: unknown');
  c.changingNames([[40, 'x']]);
  t.notOk(c.isAbsent(40, 'x'), 'a name this mount is changing (sent, answer or not) is no longer known absent');
  t.ok(c.isAbsent(40, 'y'), 'the others still are');
  c.sawChange(stamp(12, 15));
  t.ok(c.isAbsent(40, 'y'), 'needs no barrier: own changes are noted when sent');
  c.apply(feed(12, { listingMarks: true, names: [[40, 'y', 12]] }));
  t.ok(c.isAbsent(40, 'y'), 'a change at or before the seq it was made empty at is in it already');
  c.apply(feed(16, { listingMarks: true, names: [[40, 'z', 16]] }));
  t.notOk(c.isAbsent(40, 'z'), 'a name changed elsewhere since is no longer known absent');
  t.ok(c.isAbsent(40, 'w'));
  c.apply(feed(17, { listingMarks: true, names: [[40, '', 17]] }));
  t.notOk(c.isAbsent(40, 'w'), "the master's mark (a store mounted there, a listing to read again) drops the directory");

  c.putNewDir(50, stamp(17, 18), c.unknownChanges);
  t.ok(c.isAbsent(50, 'a'));
  c.changingNames([[50, '']]);
  t.notOk(c.isAbsent(50, 'a'), 'so does an empty name sent by this mount');
  c.putNewDir(51, stamp(17, 18), c.unknownChanges);
  c.changingUnknownNames();
  t.notOk(c.isAbsent(51, 'a'), 'a request that names paths, not directories, drops every directory');
  c.apply(feed(20, { listingMarks: true }));
  c.putNewDir(52, stamp(17, 19), c.unknownChanges);
  t.notOk(c.isAbsent(52, 'a'), 'an answer the feed went past (applied 20 > 19) is not kept: changes in between were not noted');
  c.putNewDir(53, stamp(20, 21), c.unknownChanges);
  t.ok(c.isAbsent(53, 'a'));
  c.lost();
  t.notOk(c.isAbsent(53, 'a'), 'a lost feed drops it');

  // Memory is bounded: past 200,000 names noted in all such directories, the one noting more is let go.
  const e = readyMarks();
  e.putNewDir(70, stamp(10, 11), e.unknownChanges);
  const many: [number, string][] = [];
  for (let i = 0; i < 200_000; i++) many.push([70, `n${i}`]);
  e.changingNames(many);
  t.ok(e.isAbsent(70, 'other'), '200,000 names noted: still known whole');
  e.changingNames([[70, 'one more']]);
  t.notOk(e.isAbsent(70, 'other'), 'one more: let go');
  e.putNewDir(71, stamp(11, 12), e.unknownChanges);
  e.changingNames([[71, 'x']]);
  t.ok(e.isAbsent(71, 'y'), 'and its names no longer count against the bound');

  const d = readyMarks();
  d.apply(feed(10, { listingMarks: true, ttlMs: 30 }));
  d.putNewDir(60, stamp(10, 11), d.unknownChanges);
  t.ok(d.isAbsent(60, 'a'));
  await new Promise((r) => setTimeout(r, 50));
  t.notOk(d.isAbsent(60, 'a'), 'expired after the TTL: the master would look in the store again');

  // A master that does not mark directories whose names change without a name changing: none is known whole.
  const old = ready();
  old.putNewDir(80, stamp(10, 11), old.unknownChanges);
  t.notOk(old.isAbsent(80, 'a'), 'an older master (no listingMarks): never answered here');
  // A request naming paths sent while a mkdir was in flight: its answer is not kept as whole.
  const f = readyMarks();
  const mark = f.unknownChanges;
  f.changingUnknownNames();
  f.putNewDir(81, stamp(10, 11), mark);
  t.notOk(f.isAbsent(81, 'a'), 'a path-based request since the mkdir was sent: not known whole');
});

t.test('a change of where blocks are cached drops the block list, not the attributes', async (t) => {
  const c = ready();
  const info = { attrs: attrs(5, 10), blocks: [], pinned: false, ttl: null } as unknown as Parameters<MetadataCache['putBlocks']>[0];
  c.putBlocks(info, stamp(10));
  t.ok(c.getBlocks(5), 'blocks cached');
  c.apply(feed(11, { located: [[5, 11]] }));
  t.equal(c.getBlocks(5), undefined, 'a worker cached or dropped a copy: the block list is asked again');
  t.equal(c.getAttrs(5)?.size, 10, 'the attributes did not change');
});

t.test('the response header is parsed strictly', async (t) => {
  t.same(parseChangeStamp('abc:3:7'), { epoch: 'abc', start: 3, end: 7 });
  t.equal(parseChangeStamp(undefined), undefined);
  t.equal(parseChangeStamp('abc:x:7'), undefined);
  t.equal(parseChangeStamp(':1:2'), undefined);
});

t.test('a listing page is kept only as long as the master vouches for it, and never over newer answers', async (t) => {
  const entry = (ino: number, name: string, size = 0) => ({ ...attrs(ino, size), name, xattrs: false });
  const c = ready();
  t.equal(c.putListed(1, [entry(5, 'a')], stamp(10), 10, 0, Date.now()), 0, 'freshForMs 0 (the master asks its store every time): nothing kept');
  t.equal(c.putListed(1, [entry(5, 'a')], stamp(10), 10, 500, Date.now() - 1000), 1, 'asked a second ago, vouched for half of it');
  t.equal(c.getEntry(1, 'a'), undefined, 'already past what the master vouched for: not served');
  t.equal(c.putListed(1, [entry(5, 'a', 3)], stamp(10, 10, 'e2'), 10, -1, Date.now()), 0, "another master's answer: not kept");
  c.apply(feed(20, { inos: [8], seqs: [20] }));
  t.equal(c.putListed(1, [entry(5, 'a')], stamp(12), 12, -1, Date.now()), 0, 'read as of 12, changes up to 20 applied: may predate one');
  c.putEntry(1, 'b', attrs(6, 7), stamp(25));
  t.equal(c.putListed(1, [entry(5, 'a', 3), entry(6, 'b', 1)], stamp(22), 22, -1, Date.now()), 1, 'the newer answer for b stays');
  const a = c.getEntry(1, 'a')?.attrs;
  t.equal(a?.size, 3, 'a is served from the page');
  t.notOk(a && 'name' in a, 'as attributes, without the listing fields');
  t.equal(c.getEntry(1, 'b')?.attrs?.size, 7, 'b: the newer answer');
  c.apply(feed(30, { inos: [5], seqs: [30] }));
  t.equal(c.getEntry(1, 'a'), undefined, 'a change after the page drops what it gave');
});

t.test('lookups that find their entries run out of time make a page due, per directory', async (t) => {
  const c = new MetadataCache();
  c.apply({ ...feed(10), reset: true, ttlMs: 30 });
  for (let i = 0; i < 10; i++) {
    c.putEntry(1, `f${i}`, attrs(100 + i), stamp(10));
    c.putEntry(2, `f${i}`, attrs(200 + i), stamp(10));
  }
  c.getEntry(1, 'never-cached');
  t.notOk(c.refreshDue(1), 'a plain miss does not count');
  await new Promise((r) => setTimeout(r, 40));
  for (let i = 0; i < 7; i++) t.equal(c.getEntry(1, `f${i}`), undefined, 'run out of time');
  c.getEntry(2, 'f0');
  t.notOk(c.refreshDue(1), 'seven in directory 1: not yet');
  c.getEntry(1, 'f7');
  t.ok(c.refreshDue(1), 'the eighth: due');
  t.notOk(c.refreshDue(1), 'counting starts again');
  t.notOk(c.refreshDue(2), 'directory 2 had one');
});

t.test("a listing page older than this mount's own change is not served before the feed brings that change", async (t) => {
  const entry = (ino: number, name: string, size = 0) => ({ ...attrs(ino, size), name });
  const c = ready();
  c.sawChange(stamp(15, 16)); // this mount changed something at 16 and has the answer
  t.equal(c.putListed(1, [entry(5, 'a'), entry(6, 'b')], stamp(12), 12, -1, Date.now()), 2);
  t.equal(c.getEntry(1, 'a'), undefined, 'read as of 12, before the change at 16: not served yet');
  c.apply(feed(16, { names: [[1, 'a', 16]], inos: [5], seqs: [16] }));
  t.equal(c.getEntry(1, 'a'), undefined, 'the change was to a: dropped');
  t.equal(c.getEntry(1, 'b')?.attrs?.ino, 6, 'b was not changed: served once the feed is past 16');
});

t.test("a listing page's entries live no longer than the cache's time to live, and bring small files' blocks", async (t) => {
  const c = new MetadataCache();
  c.apply({ ...feed(10), reset: true, ttlMs: 30 });
  const blocks = { blocks: [{ id: 77, index: 0, offset: 0, length: 3, workers: [] }], pinned: false, ttl: null } as never;
  t.equal(c.putListed(1, [{ ...attrs(5, 3), name: 'a', fileBlocks: blocks }, { ...attrs(6, 3), name: 'b' }], stamp(10), 10, -1, Date.now()), 2);
  const b = c.getBlocks(5, true);
  t.equal(b?.blocks[0]?.id, 77, "a's blocks came with the page");
  t.equal(b?.attrs.size, 3, 'with its attributes');
  t.equal(c.getBlocks(6, true), undefined, 'b came without blocks');
  c.putAttrs(attrs(7, 9), stamp(12));
  t.equal(c.putListed(1, [{ ...attrs(7, 1), name: 'c' }], stamp(11), 11, -1, Date.now()), 0, 'newer attributes of the inode: the page gives way');
  t.equal(c.getAttrs(7)?.size, 9);
  await new Promise((r) => setTimeout(r, 40));
  t.equal(c.getEntry(1, 'a'), undefined, 'freshForMs -1 (the master never asks its store), yet gone after the time to live');
  t.equal(c.getBlocks(5, true), undefined, 'its blocks too');
});
