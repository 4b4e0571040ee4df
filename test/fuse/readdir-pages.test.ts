/**
 * How the binding answers the kernel's readdir offsets from a listing read in pages. Every
 * entry's offset is a cookie bound to its name, so reading on, and seekdir to any telldir, go on
 * after that name however the directory changed meanwhile; only one page of entries is held. A
 * mount's cookies are the directory's, shared by its handles (DirCookieTables): the kernel keeps
 * a listing read through one handle and asks on from its cookies through another.
 */

import t from 'tap';
import { DirCookieTables, entriesAt, type DirHandle, type DirListingEntry, type DirListingPage } from '../../src/fuse/native';

const ZERO = { sec: 0, nsec: 0 };
const entry = (name: string, ino = 100): DirListingEntry => ({ name, attr: { ino, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: 0, atime: ZERO, mtime: ZERO, ctime: ZERO } });
const nameOf = (i: number) => `n${String(i).padStart(5, '0')}`;

/** A directory served `pageSize` names at a time by name, as the master does; `names` may change between calls. */
function lister(count: number, pageSize: number) {
  const names = Array.from({ length: count }, (_, i) => nameOf(i));
  const asked: (string | null)[] = [];
  const fetch = async (after: string | null): Promise<DirListingPage> => {
    asked.push(after);
    const sorted = [...names].sort();
    const from = after === null ? 0 : sorted.findIndex((n) => n > after);
    const page = from < 0 ? [] : sorted.slice(from, from + pageSize);
    return { entries: page.map((n) => entry(n)), next: page.length === pageSize ? page[page.length - 1]! : null };
  };
  return { names, asked, fetch };
}

/**
 * Reads on from `offset` as the kernel does: each reply takes up to `perReply` of "." / ".." and the
 * entries; the next readdir is at the offset of the last one taken. Returns the names with the
 * offset each one's reply gave (what telldir reports after it).
 */
async function readOn(handles: Map<number, DirHandle>, fetch: (after: string | null) => Promise<DirListingEntry[] | DirListingPage>, perReply: number, from = 0): Promise<{ name: string; off: number }[]> {
  const out: { name: string; off: number }[] = [];
  for (let offset = from; ; ) {
    const listed = await entriesAt(handles, 1, offset, fetch);
    const reply: { name: string; off: number }[] = [];
    for (let o = offset; o < 2 && reply.length < perReply; o++) reply.push({ name: o === 0 ? '.' : '..', off: o + 1 });
    for (let i = listed.from; i < listed.entries.length && reply.length < perReply; i++) reply.push({ name: listed.entries[i]!.name, off: listed.cookies[i]! });
    if (reply.length === 0) return out;
    out.push(...reply);
    offset = reply[reply.length - 1]!.off;
  }
}

t.test('every name once, in order, across pages, whatever the reply size', async (t) => {
  for (const [count, pageSize, perReply] of [[2500, 1000, 37], [2000, 1000, 1000], [3, 1000, 1], [0, 1000, 10], [10, 3, 4]] as const) {
    const { names, asked, fetch } = lister(count, pageSize);
    const got = await readOn(new Map(), fetch, perReply);
    t.same(got.map((e) => e.name), ['.', '..', ...names], `${count} names in pages of ${pageSize}, replies of ${perReply}`);
    t.equal(new Set(got.map((e) => e.off)).size, got.length, 'every offset different');
    t.equal(asked[0], null, 'the first page from the start');
    t.equal(asked.length, Math.floor(count / pageSize) + 1, `each page asked for once (${asked.length})`);
  }
});

t.test('seekdir to any telldir goes on after the same name, whatever was made or removed since, back or ahead', async (t) => {
  const { names, asked, fetch } = lister(2500, 1000);
  const handles = new Map<number, DirHandle>();
  const first = await readOn(handles, fetch, 50);
  const offOf = (name: string) => first.find((e) => e.name === name)!.off; // telldir after reading `name`
  names.push('n00700x', 'a-new', 'n01700x'); // made between positions, and before everything
  names.splice(names.indexOf(nameOf(1500)), 1); // and one removed
  for (const [back, ahead] of [[nameOf(499), nameOf(1501)], [nameOf(1199), nameOf(1799)], ['..', nameOf(1501)]] as const) {
    const b = await readOn(handles, fetch, 3, back === '..' ? 2 : offOf(back));
    t.same(b.slice(0, 3).map((e) => e.name), back === '..' ? ['a-new', nameOf(0), nameOf(1)] : [nameOf(Number(back.slice(1)) + 1), nameOf(Number(back.slice(1)) + 2), nameOf(Number(back.slice(1)) + 3)], `a seek back to after ${back}`);
    const a = await readOn(handles, fetch, 2, offOf(ahead));
    t.same(a.slice(0, 2).map((e) => e.name), [nameOf(Number(ahead.slice(1)) + 1), nameOf(Number(ahead.slice(1)) + 2)], `then ahead to after ${ahead}: the names after it, none twice`);
  }
  const n = asked.length;
  const all = await readOn(handles, fetch, 1000, 0);
  t.equal(all.length, 2 + names.length, 'a rewind lists the directory as it is now');
  t.equal(asked[n], null, 'from a fresh first page');
  const unknown = await entriesAt(handles, 1, 987_654, fetch);
  t.equal(unknown.entries.length - unknown.from, 0, 'an offset this handle never gave: nothing');
});

t.test('"." alone, then ".." alone, then the rest: the first page is asked for once', async (t) => {
  const { names, asked, fetch } = lister(5, 10);
  t.same((await readOn(new Map(), fetch, 1)).map((e) => e.name), ['.', '..', ...names]);
  t.same(asked, [null], 'one request');
});

t.test('a handler that returns the whole listing at once is served the same way, seeks included', async (t) => {
  const all = Array.from({ length: 50 }, (_, i) => entry(nameOf(i)));
  let calls = 0;
  const fetch = async () => (calls++, all);
  const handles = new Map<number, DirHandle>();
  const got = await readOn(handles, fetch, 7);
  t.same(got.map((e) => e.name), ['.', '..', ...all.map((e) => e.name)]);
  t.equal(calls, 1, 'asked once');
  const back = await entriesAt(handles, 1, got.find((e) => e.name === nameOf(9))!.off, fetch);
  t.equal(back.entries[back.from]?.name, nameOf(10), 'a seek within it goes on after the name');
});

t.test('empty pages that are not the last are read through; a rewind lets the cookies before it go', async (t) => {
  const pages: Record<string, DirListingPage> = {
    '': { entries: [], next: 'a' },
    a: { entries: [entry('b'), entry('c')], next: 'c' },
    c: { entries: [], next: 'd' },
    d: { entries: [entry('e')], next: 'e' },
    e: { entries: [], next: null },
  };
  const fetch = async (after: string | null) => pages[after ?? '']!;
  const handles = new Map<number, DirHandle>();
  const got = await readOn(handles, fetch, 2);
  t.same(got.map((e) => e.name), ['.', '..', 'b', 'c', 'e'], 'every name, past the empty pages');
  const cOff = got.find((e) => e.name === 'c')!.off;
  t.same((await readOn(handles, fetch, 10, cOff)).map((e) => e.name), ['e'], 'a seek to after c, across an empty page');
  for (let i = 0; i < 5; i++) await readOn(handles, fetch, 10, 0);
  t.equal(handles.get(1)!.table.names.size, 3, 'rewinds do not pile up names');
});

t.test("a directory's cookies are its handles' own: one handle goes on from another's; the least recently used directories' are let go past the limit", async (t) => {
  const { fetch } = lister(50, 10);
  const dropped: number[] = [];
  const tables = new DirCookieTables(120, (ino) => dropped.push(ino));
  const handles = new Map<number, DirHandle>();
  const read = async (fh: number, ino: number, offset: number) => entriesAt(handles, fh, offset, fetch, () => tables.get(ino));
  const first = await read(1, 7, 0);
  const cookie = first.cookies[4]!; // after the fifth name, as handle 1 told the kernel
  const other = await read(2, 7, cookie);
  t.equal(other.entries[other.from]?.name, nameOf(5), "handle 2 goes on after the name of handle 1's cookie");
  const again = await read(3, 7, 0);
  t.same(again.cookies.slice(0, 5), first.cookies.slice(0, 5), 'a name keeps its cookie in every handle');
  // Directories 8 and 9 listed whole (50 names each): past 120 names in all, the least recently used goes.
  const whole = async (fh: number, ino: number) => {
    for (let off = 0; ; ) {
      const r = await read(fh, ino, off);
      if (r.from >= r.entries.length) return;
      off = r.cookies[r.entries.length - 1]!;
    }
  };
  await whole(4, 7);
  await whole(5, 8);
  t.same(dropped, [], '100 names: all kept');
  await whole(6, 9);
  t.same(dropped, [7], 'past 120: the least recently used directory let go (its kernel listing to be dropped)');
  t.notOk(tables.has(7), 'its cookies are gone');
  t.ok(tables.has(8) && tables.has(9), 'the others kept');
});
