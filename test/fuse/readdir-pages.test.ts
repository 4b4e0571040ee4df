/**
 * How the binding answers the kernel's readdir offsets from a listing read in pages: the
 * page a handle holds, the next one when the kernel reaches its end, and a walk from the
 * start for a rewind or a seek elsewhere. Every name exactly once, in order, whatever the
 * kernel's reply sizes.
 */

import t from 'tap';
import { pageAt, type DirListingEntry, type DirListingPage, type HeldPage } from '../../src/fuse/native';

const ZERO = { sec: 0, nsec: 0 };
const entry = (i: number): DirListingEntry => ({ name: `n${String(i).padStart(5, '0')}`, attr: { ino: 100 + i, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: 0, atime: ZERO, mtime: ZERO, ctime: ZERO } });

/** A directory of `count` names served `pageSize` at a time by name, as the master does; records what was asked. */
function lister(count: number, pageSize: number) {
  const all = Array.from({ length: count }, (_, i) => entry(i + 1));
  const asked: (string | null)[] = [];
  const fetch = async (after: string | null): Promise<DirListingPage> => {
    asked.push(after);
    const from = after === null ? 0 : all.findIndex((e) => e.name > after);
    const entries = from < 0 ? [] : all.slice(from, from + pageSize);
    return { entries, next: entries.length === pageSize ? entries[entries.length - 1]!.name : null };
  };
  return { all, asked, fetch };
}

/** Reads the whole directory as the kernel does: each reply takes up to `perReply` entries from where the last ended. */
async function readAll(held: Map<number, HeldPage>, fetch: (after: string | null) => Promise<DirListingEntry[] | DirListingPage>, perReply: number, from = 0): Promise<string[]> {
  const names: string[] = [];
  for (let offset = from; ; ) {
    const p = await pageAt(held, 1, offset, fetch);
    if (!p) return names;
    const reply: string[] = [];
    for (let o = offset; o < 2 && reply.length < perReply; o++) reply.push(o === 0 ? '.' : '..');
    for (let i = Math.max(offset, p.start) - p.start; i < p.entries.length && reply.length < perReply; i++) reply.push(p.entries[i]!.name);
    if (reply.length === 0) return names;
    names.push(...reply);
    offset += reply.length;
  }
}

t.test('every name once, in order, across pages, whatever the reply size', async (t) => {
  for (const [count, pageSize, perReply] of [[2500, 1000, 37], [2000, 1000, 1000], [3, 1000, 1], [0, 1000, 10], [10, 3, 4]] as const) {
    const { all, asked, fetch } = lister(count, pageSize);
    all.sort((a, b) => (a.name < b.name ? -1 : 1));
    const names = await readAll(new Map(), fetch, perReply);
    t.same(names, ['.', '..', ...all.map((e) => e.name)], `${count} names in pages of ${pageSize}, replies of ${perReply}`);
    t.equal(asked[0], null, 'the first page from the start');
    t.ok(asked.length <= Math.floor(count / pageSize) + 1, `each page asked for once (${asked.length})`);
  }
});

t.test('a rewind (offset 0) reads the directory again; a seek back resumes after the name before that offset; a seek ahead reads on', async (t) => {
  const { all, asked, fetch } = lister(25, 10);
  const held = new Map<number, HeldPage>();
  await readAll(held, fetch, 100);
  const before = asked.length;
  t.same((await readAll(held, fetch, 100)).slice(0, 3), ['.', '..', 'n00001'], 'offset 0 starts over');
  t.equal(asked[before], null, 'with a fresh first page');
  // telldir gave offset 2 + 5 (the 6th name, n00006) while the first page was held; the handle has read on since.
  all.unshift(entry(0)); // meanwhile a name is made before it, on the first page
  const n = asked.length;
  const back = await pageAt(held, 1, 2 + 5, fetch);
  t.equal(back?.entries[7 - back.start]?.name, 'n00006', 'a seek back finds the entry telldir named, not the one that moved there');
  t.same(asked.slice(n), ['n00005'], 'with one request, after the name before it');
  const dot = await pageAt(held, 1, 1, fetch);
  t.same(asked.length, n + 2, '".." while a later page is held: the first page again');
  t.equal(dot?.entries[0]?.name, 'n00000', 'from the start of the listing, not from the page held');
  const ahead = await pageAt(held, 1, 2 + 23, fetch);
  t.equal(ahead?.entries[25 - ahead.start]?.name, 'n00023', 'a seek two pages ahead reads the pages between');
  t.equal(await pageAt(held, 1, 2 + 26, fetch), null, 'at the end: nothing');
  t.equal(await pageAt(held, 1, 2 + 99, fetch), null, 'past the end: nothing');
});

t.test('"." alone, then ".." alone, then the rest: the first page is asked for once', async (t) => {
  const { all, asked, fetch } = lister(5, 10);
  const names = await readAll(new Map(), fetch, 1);
  t.same(names, ['.', '..', ...all.map((e) => e.name)]);
  t.same(asked, [null], 'one request');
});

t.test('a handler that returns the whole listing at once is served the same way', async (t) => {
  const all = Array.from({ length: 50 }, (_, i) => entry(i));
  let calls = 0;
  const names = await readAll(new Map(), async () => (calls++, all), 7);
  t.same(names, ['.', '..', ...all.map((e) => e.name)]);
  t.equal(calls, 1, 'asked once');
});
