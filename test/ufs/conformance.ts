/**
 * The under-store conformance suite: every UnderFileSystem driver runs it through
 * `ufsConformance(t, name, make)`. Each subtest gets a fresh, empty store from
 * `make()` and cleans it up in its teardown. Errors are asserted by their
 * StrataError `code`, never by message.
 */

import type { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { StrataError, type ErrorCode } from '../../src/common/errors';
import { parsePath } from '../../src/common/paths';
import type { UfsStatus, UnderFileSystem } from '../../src/ufs/ufs';

export interface UfsFixture {
  ufs: UnderFileSystem;
  cleanup(): Promise<void>;
  /** What unfinished writes left in the store, seen from outside the driver (open uploads, temp files). */
  leftovers?(): Promise<string[]>;
}

const MiB = 1024 * 1024;

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Drains a read stream into one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/** Reads `[offset, offset+length)` of a store object. */
export async function readRange(ufs: UnderFileSystem, path: string, offset: number, length: number): Promise<Buffer> {
  return readAll(await ufs.read(path, offset, length));
}

/** Reads a whole object (stat for the size first, so a read that ignores the length still shows up). */
export async function readFile(ufs: UnderFileSystem, path: string): Promise<Buffer> {
  const st = await ufs.stat(path);
  if (!st) throw new Error(`readFile: ${path} does not exist`);
  return readRange(ufs, path, 0, st.size);
}

/** Writes an object through the streamed writer, in chunks of `chunkSizes` (cycled). */
export async function putFile(ufs: UnderFileSystem, path: string, data: Buffer | string, chunkSizes: number[] = [64 * 1024]): Promise<UfsStatus> {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const w = await ufs.create(path);
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = chunkSizes[i % chunkSizes.length]!;
    await w.write(buf.subarray(off, off + n));
    off += n;
  }
  return w.complete();
}

/** Asserts that `fn` fails with a StrataError of `code`. */
export async function rejectsCode(t: tap.Test, fn: () => Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  let err: unknown;
  let threw = false;
  try {
    await fn();
  } catch (e) {
    threw = true;
    err = e;
  }
  if (!threw) {
    t.fail(`${what}: expected ${code}, but it succeeded`);
    return;
  }
  t.ok(err instanceof StrataError, `${what}: fails with a StrataError`, { found: err });
  t.equal((err as { code?: unknown }).code, code, `${what}: code is ${code}`);
}

async function names(ufs: UnderFileSystem, dir: string): Promise<string[]> {
  return (await ufs.list(dir)).map((s) => s.name);
}

/** Deterministic content that differs at every offset (so an off-by-N read is caught). */
function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * Paths that must never reach a driver's storage: parsePath throws for every one of them.
 * The escapes go at most one level above the root and name nothing that exists there, so
 * even a driver that regresses can only touch the (private, temporary) parent of its root,
 * never a real file of the machine running the tests.
 */
const BAD_PATHS: [string, ErrorCode][] = [
  ['/..', 'INVALID_ARGUMENT'],
  ['/../strata-escape-probe', 'INVALID_ARGUMENT'],
  ['/a/../../strata-escape-probe', 'INVALID_ARGUMENT'],
  ['/a/b/../../../strata-escape-probe', 'INVALID_ARGUMENT'],
  ['/a/..', 'INVALID_ARGUMENT'],
  ['/./x', 'INVALID_ARGUMENT'],
  ['x', 'INVALID_ARGUMENT'],
  ['../x', 'INVALID_ARGUMENT'],
  ['', 'INVALID_ARGUMENT'],
  ['/a\0b', 'INVALID_ARGUMENT'],
  ['/' + 'n'.repeat(256), 'NAME_TOO_LONG'],
];

/**
 * Runs the suite. `make` must return a fresh, empty store per call; for stores backed by
 * a real directory, put its root inside a private temp directory (the '..' probes aim one
 * level above the root).
 */
export function ufsConformance(t: tap.Test, name: string, make: () => Promise<UfsFixture>): Promise<unknown> {
  return t.test(`${name}: under-store conformance`, async (t) => {
    /** A fresh empty store for one subtest, cleaned up when it ends. */
    const freshFixture = async (t: tap.Test): Promise<UfsFixture> => {
      const f = await make();
      t.teardown(async () => {
        await f.ufs.close();
        await f.cleanup();
      });
      return f;
    };
    const fresh = async (t: tap.Test): Promise<UnderFileSystem> => (await freshFixture(t)).ufs;

    t.test('stat', async (t) => {
      const ufs = await fresh(t);
      t.equal(await ufs.stat('/missing'), null, 'missing top-level entry is null');
      t.equal(await ufs.stat('/no/such/deep/path'), null, 'missing nested entry is null');

      const root = await ufs.stat('/');
      t.equal(root?.type, 'directory', 'the root is a directory');

      const before = Date.now();
      const done = await putFile(ufs, '/f.txt', 'hello');
      const st = await ufs.stat('/f.txt');
      t.ok(st, 'file exists');
      t.equal(st!.name, 'f.txt');
      t.equal(st!.type, 'file');
      t.equal(st!.size, 5);
      t.type(st!.fingerprint, 'string');
      t.ok(st!.fingerprint.length > 0, 'fingerprint is not empty');
      t.ok(Number.isFinite(st!.mtimeMs) && st!.mtimeMs > before - 5 * 60_000 && st!.mtimeMs < Date.now() + 5 * 60_000, 'mtime is a plausible epoch ms');
      t.same(
        { name: done.name, type: done.type, size: done.size, fingerprint: done.fingerprint },
        { name: st!.name, type: st!.type, size: st!.size, fingerprint: st!.fingerprint },
        'complete() reports the same status as stat()',
      );
      t.equal(await ufs.stat('/f.txt/child'), null, 'a path below a file is missing, not an error');

      await ufs.mkdir('/d');
      const dst = await ufs.stat('/d');
      t.equal(dst?.type, 'directory');
      t.equal(dst?.name, 'd');
      await ufs.mkdir('/d/e');
      t.equal((await ufs.stat('/d/e'))?.type, 'directory', 'nested directory');
      t.equal((await ufs.stat('/d/e/'))?.type, 'directory', 'a trailing slash names the same directory');
    });

    t.test('list', async (t) => {
      const ufs = await fresh(t);
      t.same(await ufs.list('/'), [], 'a fresh store has an empty root');
      await ufs.mkdir('/empty');
      t.same(await ufs.list('/empty'), [], 'empty directory lists nothing');

      await ufs.mkdir('/a');
      await ufs.mkdir('/a/b');
      await putFile(ufs, '/a/f', 'abc');
      await putFile(ufs, '/a/b/deep.txt', 'deeper');
      t.same(await names(ufs, '/'), ['a', 'empty'], 'only direct children of the root');
      const a = await ufs.list('/a');
      t.same(
        a.map((s) => [s.name, s.type]),
        [
          ['b', 'directory'],
          ['f', 'file'],
        ],
        'direct children of /a with their types, nothing from below /a/b',
      );
      t.equal(a.find((s) => s.name === 'f')!.size, 3, 'listing carries file sizes');
      t.same(await names(ufs, '/a/b'), ['deep.txt']);

      await ufs.mkdir('/s');
      const unsorted = ['zeta', 'Alpha', 'beta', '10', '9', '_x', 'a-b', 'a.b', 'ä'];
      for (const n of unsorted) await putFile(ufs, `/s/${n}`, n);
      const expected = unsorted.slice().sort();
      t.same(await names(ufs, '/s'), expected, 'listing is sorted by name (code-unit order)');

      await rejectsCode(t, () => ufs.list('/nope'), 'NOT_FOUND', 'list of a missing directory');
      await rejectsCode(t, () => ufs.list('/nope/deeper'), 'NOT_FOUND', 'list below a missing directory');
      await rejectsCode(t, () => ufs.list('/a/f'), 'NOT_DIRECTORY', 'list of a file');
    });

    t.test('ranged reads are clipped at the end of the object', async (t) => {
      const ufs = await fresh(t);
      const data = pattern(1000, 7);
      await putFile(ufs, '/r.bin', data, [333]);
      t.same(await readRange(ufs, '/r.bin', 0, 10), data.subarray(0, 10), 'start');
      t.same(await readRange(ufs, '/r.bin', 500, 100), data.subarray(500, 600), 'middle');
      t.same(await readRange(ufs, '/r.bin', 332, 3), data.subarray(332, 335), 'across a write-chunk boundary');
      t.same(await readRange(ufs, '/r.bin', 990, 10), data.subarray(990, 1000), 'exactly the end');
      t.same(await readRange(ufs, '/r.bin', 995, 100), data.subarray(995), 'past the end is clipped');
      t.equal((await readRange(ufs, '/r.bin', 995, 100)).length, 5);
      t.same(await readRange(ufs, '/r.bin', 0, 1_000_000), data, 'a length beyond the size reads the whole object');
      t.equal((await readRange(ufs, '/r.bin', 1000, 10)).length, 0, 'offset == size reads nothing');
      t.equal((await readRange(ufs, '/r.bin', 5000, 10)).length, 0, 'offset beyond size reads nothing');
      t.equal((await readRange(ufs, '/r.bin', 10, 0)).length, 0, 'zero length reads nothing');
      await rejectsCode(t, () => ufs.read('/missing.bin', 0, 10), 'NOT_FOUND', 'read of a missing object');
    });

    t.test('a read of one version (ifFingerprint) gets its bytes, and STORE_CHANGED once the file was replaced', async (t) => {
      const ufs = await fresh(t);
      const first = await putFile(ufs, '/v.bin', 'the first version');
      const st = await ufs.stat('/v.bin');
      t.equal(st?.fingerprint, first.fingerprint, "stat's fingerprint is the one complete() reported");
      t.equal((await readAll(await ufs.read('/v.bin', 4, 5, { ifFingerprint: first.fingerprint }))).toString(), 'first', 'the version asked for reads');
      // Longer, then shorter: a read must not hand out the new bytes under the old version's range.
      const second = await putFile(ufs, '/v.bin', 'the second version, longer');
      await rejectsCode(t, () => ufs.read('/v.bin', 0, 17, { ifFingerprint: first.fingerprint }).then(readAll), 'STORE_CHANGED', 'a read of the first version once a longer one replaced it');
      await putFile(ufs, '/v.bin', 'short');
      await rejectsCode(t, () => ufs.read('/v.bin', 0, 17, { ifFingerprint: second.fingerprint }).then(readAll), 'STORE_CHANGED', 'a read of the second version once a shorter one replaced it');
      t.equal((await readFile(ufs, '/v.bin')).toString(), 'short', 'a read without a version reads the current one');
    });

    t.test('streamed create of 0 B, 1 B and a multi-MiB object', async (t) => {
      const ufs = await fresh(t);

      const w0 = await ufs.create('/zero');
      const s0 = await w0.complete();
      t.equal(s0.size, 0);
      t.equal(s0.type, 'file');
      t.equal(s0.name, 'zero');
      t.equal((await ufs.stat('/zero'))?.size, 0, '0 B object exists');
      t.equal((await readRange(ufs, '/zero', 0, 100)).length, 0, '0 B object reads empty');
      t.same(await names(ufs, '/'), ['zero'], '0 B object is listed');

      const s1 = await putFile(ufs, '/one', Buffer.from([0xa5]));
      t.equal(s1.size, 1);
      t.same(await readRange(ufs, '/one', 0, 10), Buffer.from([0xa5]), '1 B object round-trips');

      const big = randomBytes(5 * MiB + 12345);
      // Uneven chunks: tiny, odd-sized, bigger than 1 MiB, and an empty one.
      const sb = await putFile(ufs, '/big.bin', big, [1, 65_537, 0, 2 * MiB + 3, 1_000_000, 4096]);
      t.equal(sb.size, big.length, 'complete() reports the full size');
      t.equal((await ufs.stat('/big.bin'))?.size, big.length, 'stat reports the full size');
      t.equal(sha(await readFile(ufs, '/big.bin')), sha(big), 'whole multi-MiB object reads back identical');
      const off = 3 * MiB - 17;
      t.same(await readRange(ufs, '/big.bin', off, MiB + 34), big.subarray(off, off + MiB + 34), 'a ranged read deep inside the big object');
      t.same(await readRange(ufs, '/big.bin', big.length - 3, MiB), big.subarray(big.length - 3), 'tail of the big object, clipped');
      t.same(await names(ufs, '/'), ['big.bin', 'one', 'zero']);
    });

    t.test('a written chunk is consumed when write() resolves', async (t) => {
      const ufs = await fresh(t);
      const buf = Buffer.from('first-chunk|');
      const w = await ufs.create('/reuse');
      await w.write(buf);
      buf.fill(0x21); // the caller reuses its buffer
      await w.write(Buffer.from('second'));
      await w.complete();
      t.equal((await readFile(ufs, '/reuse')).toString(), 'first-chunk|second', 'mutating a buffer after write() resolved does not change the object');
    });

    t.test('an object is invisible until complete(); abort() leaves nothing', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/d');

      const w = await ufs.create('/d/pending');
      await w.write(Buffer.from('partial data'));
      t.equal(await ufs.stat('/d/pending'), null, 'not visible to stat while being written');
      t.same(await names(ufs, '/d'), [], 'not listed while being written');
      await rejectsCode(t, () => ufs.read('/d/pending', 0, 10), 'NOT_FOUND', 'not readable while being written');
      await w.write(Buffer.from(' and more'));
      const st = await w.complete();
      t.equal(st.size, 21);
      t.equal((await ufs.stat('/d/pending'))?.size, 21, 'visible after complete()');
      t.same(await names(ufs, '/d'), ['pending'], 'listed after complete()');

      const a = await ufs.create('/d/aborted');
      await a.write(pattern(100_000));
      await a.abort();
      t.equal(await ufs.stat('/d/aborted'), null, 'aborted object does not exist');
      t.same(await names(ufs, '/d'), ['pending'], 'abort() leaves nothing in the listing');

      const e = await ufs.create('/d/aborted-empty');
      await e.abort();
      t.equal(await ufs.stat('/d/aborted-empty'), null, 'abort() without writes leaves nothing');

      const top = await ufs.create('/top-aborted');
      await top.write(Buffer.from('x'));
      await top.abort();
      t.same(await names(ufs, '/'), ['d'], 'abort() at the root leaves nothing');

      // Aborting an overwrite keeps the old object.
      await putFile(ufs, '/d/keep', 'original');
      const o = await ufs.create('/d/keep');
      await o.write(Buffer.from('replacement that never completes'));
      t.equal((await readFile(ufs, '/d/keep')).toString(), 'original', 'old content is served while an overwrite is in flight');
      await o.abort();
      t.equal((await readFile(ufs, '/d/keep')).toString(), 'original', 'abort() of an overwrite keeps the old object');
      t.same(await names(ufs, '/d'), ['keep', 'pending']);
    });

    t.test('overwrite replaces the whole object', async (t) => {
      const ufs = await fresh(t);
      const first = await putFile(ufs, '/o.txt', 'a fairly long first version of the content');
      const second = await putFile(ufs, '/o.txt', 'short');
      t.equal((await readFile(ufs, '/o.txt')).toString(), 'short', 'new content, no tail of the old one');
      t.equal((await readRange(ufs, '/o.txt', 0, 1000)).toString(), 'short', 'a long read sees no tail of the old one');
      t.equal((await ufs.stat('/o.txt'))?.size, 5);
      t.not(second.fingerprint, first.fingerprint, 'fingerprint changes with the content');
      t.equal((await ufs.stat('/o.txt'))?.fingerprint, second.fingerprint);
      t.same(await names(ufs, '/'), ['o.txt'], 'still a single entry');

      await putFile(ufs, '/o.txt', '');
      t.equal((await ufs.stat('/o.txt'))?.size, 0, 'overwrite with an empty object');

      // Two writers of the same path: the last one to complete wins, bytes are never mixed.
      const w1 = await ufs.create('/race');
      const w2 = await ufs.create('/race');
      await w1.write(Buffer.from('1111'));
      await w2.write(Buffer.from('2222'));
      await w1.write(Buffer.from('1111'));
      await w2.write(Buffer.from('2222'));
      await w1.complete();
      t.equal((await readFile(ufs, '/race')).toString(), '11111111');
      await w2.complete();
      t.equal((await readFile(ufs, '/race')).toString(), '22222222', 'the later complete() replaces the earlier one');
    });

    t.test('delete', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/d');
      await putFile(ufs, '/d/f', 'x');
      await putFile(ufs, '/d/g', 'y');
      await ufs.delete('/d/f');
      t.equal(await ufs.stat('/d/f'), null, 'deleted file is gone');
      t.same(await names(ufs, '/d'), ['g'], 'sibling untouched');
      await rejectsCode(t, () => ufs.delete('/d/f'), 'NOT_FOUND', 'deleting it again');
      await rejectsCode(t, () => ufs.delete('/never'), 'NOT_FOUND', 'delete of a missing file');
      await rejectsCode(t, () => ufs.delete('/no/such/dir/file'), 'NOT_FOUND', 'delete below a missing directory');
      await rejectsCode(t, () => ufs.delete('/d'), 'IS_DIRECTORY', 'delete of a directory');
      t.same(await names(ufs, '/d'), ['g'], 'a refused delete of a directory leaves it intact');
      // missingOk: a store may skip looking first; a missing object is then no error, and a directory stays.
      await putFile(ufs, '/d/h', 'z');
      await ufs.delete('/d/h', { missingOk: true });
      t.equal(await ufs.stat('/d/h'), null, 'missingOk: the file is gone too');
      const notFoundOr = (p: Promise<void>) => p.then(() => 'ok', (e: unknown) => (e as { code?: string }).code);
      t.match(await notFoundOr(ufs.delete('/d/h', { missingOk: true })), /^(ok|NOT_FOUND)$/, 'missingOk: a missing object is deleted or NOT_FOUND');
      t.match(await notFoundOr(ufs.delete('/d', { missingOk: true })), /^(ok|IS_DIRECTORY)$/, 'missingOk on a directory');
      t.same(await names(ufs, '/d'), ['g'], 'missingOk never removes a directory');
      // ifPresent: only if it is there; nothing else happens when it is not.
      await putFile(ufs, '/d/i', 'w');
      await ufs.delete('/d/i', { ifPresent: true });
      t.equal(await ufs.stat('/d/i'), null, 'ifPresent: a file that is there is deleted');
      t.match(await notFoundOr(ufs.delete('/d/i', { ifPresent: true })), /^(ok|NOT_FOUND)$/, 'ifPresent: a missing one is nothing or NOT_FOUND');
      t.match(await notFoundOr(ufs.delete('/d', { ifPresent: true })), /^(ok|IS_DIRECTORY)$/, 'ifPresent on a directory');
      t.same(await names(ufs, '/d'), ['g'], 'ifPresent never removes a directory');
    });

    t.test('mkdir', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/a');
      await ufs.mkdir('/a/b');
      await ufs.mkdir('/a/b/c');
      t.equal((await ufs.stat('/a/b/c'))?.type, 'directory');
      t.same(await names(ufs, '/a/b'), ['c']);
      t.same(await ufs.list('/a/b/c'), [], 'a new directory is empty');
      await rejectsCode(t, () => ufs.mkdir('/a'), 'ALREADY_EXISTS', 'mkdir of an existing directory');
      await putFile(ufs, '/a/file', 'x');
      await rejectsCode(t, () => ufs.mkdir('/a/file'), 'ALREADY_EXISTS', 'mkdir over a file');
      t.equal((await readFile(ufs, '/a/file')).toString(), 'x', 'the file is untouched');
      await rejectsCode(t, () => ufs.mkdir('/missing/child'), 'NOT_FOUND', 'mkdir under a missing parent');
      t.equal(await ufs.stat('/missing'), null, 'a failed mkdir creates no parent');
    });

    t.test('rmdir', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/e');
      await ufs.rmdir('/e');
      t.equal(await ufs.stat('/e'), null, 'empty directory removed');

      await ufs.mkdir('/full');
      await putFile(ufs, '/full/f', 'data');
      await rejectsCode(t, () => ufs.rmdir('/full'), 'NOT_EMPTY', 'rmdir of a directory with a file');
      t.equal((await readFile(ufs, '/full/f')).toString(), 'data', 'its content is intact');

      await ufs.mkdir('/nested');
      await ufs.mkdir('/nested/sub');
      await rejectsCode(t, () => ufs.rmdir('/nested'), 'NOT_EMPTY', 'rmdir of a directory with a subdirectory');
      t.equal((await ufs.stat('/nested/sub'))?.type, 'directory');

      await rejectsCode(t, () => ufs.rmdir('/gone'), 'NOT_FOUND', 'rmdir of a missing directory');
      await rejectsCode(t, () => ufs.rmdir('/full/f'), 'NOT_DIRECTORY', 'rmdir of a file');
      t.equal((await ufs.stat('/full/f'))?.type, 'file', 'the file survives a refused rmdir');

      await ufs.delete('/full/f');
      await ufs.rmdir('/full');
      await ufs.rmdir('/nested/sub');
      await ufs.rmdir('/nested');
      t.same(await ufs.list('/'), [], 'once emptied, directories can be removed');
    });

    t.test('rename a file', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/src');
      await ufs.mkdir('/dst');
      await putFile(ufs, '/src/a', 'content of a');
      await ufs.rename('/src/a', '/src/b');
      t.equal(await ufs.stat('/src/a'), null, 'old name gone');
      t.equal((await readFile(ufs, '/src/b')).toString(), 'content of a', 'content under the new name');
      t.same(await names(ufs, '/src'), ['b']);

      await ufs.rename('/src/b', '/dst/c');
      t.same(await names(ufs, '/src'), [], 'moved out of its directory');
      t.same(await names(ufs, '/dst'), ['c'], 'into another directory');
      t.equal((await readFile(ufs, '/dst/c')).toString(), 'content of a');

      await putFile(ufs, '/dst/victim', 'the old destination, longer than the source');
      await ufs.rename('/dst/c', '/dst/victim');
      t.equal((await readFile(ufs, '/dst/victim')).toString(), 'content of a', 'an existing destination file is replaced');
      t.same(await names(ufs, '/dst'), ['victim']);

      await rejectsCode(t, () => ufs.rename('/dst/none', '/dst/x'), 'NOT_FOUND', 'rename of a missing file');
      t.equal(await ufs.stat('/dst/x'), null, 'a failed rename creates nothing');
    });

    t.test('rename a directory tree', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/t');
      await ufs.mkdir('/t/a');
      await ufs.mkdir('/t/a/b');
      await ufs.mkdir('/t/a/empty');
      await putFile(ufs, '/t/a/x.txt', 'x');
      await putFile(ufs, '/t/a/b/c.txt', 'c');
      await ufs.mkdir('/u');
      await ufs.rename('/t/a', '/u/moved');
      t.equal(await ufs.stat('/t/a'), null, 'source directory gone');
      t.equal(await ufs.stat('/t/a/b/c.txt'), null, 'nothing left below the old name');
      t.same(await ufs.list('/t'), []);
      t.same(await names(ufs, '/u/moved'), ['b', 'empty', 'x.txt'], 'children moved');
      t.same(await names(ufs, '/u/moved/b'), ['c.txt'], 'grandchildren moved');
      t.same(await ufs.list('/u/moved/empty'), [], 'empty subdirectory moved');
      t.equal((await readFile(ufs, '/u/moved/b/c.txt')).toString(), 'c');
      t.equal((await readFile(ufs, '/u/moved/x.txt')).toString(), 'x');

      await ufs.rename('/u/moved', '/top');
      t.same(await names(ufs, '/'), ['t', 'top', 'u'], 'renamed up to the root');
      t.equal((await readFile(ufs, '/top/b/c.txt')).toString(), 'c');

      // Refused renames leave both trees exactly as they were.
      await rejectsCode(t, () => ufs.rename('/top', '/top/b/inside'), 'INVALID_ARGUMENT', 'moving a directory into its own subtree');
      await rejectsCode(t, () => ufs.rename('/top', '/top/inside'), 'INVALID_ARGUMENT', 'moving a directory into itself');
      t.same(await names(ufs, '/'), ['t', 'top', 'u'], 'root intact after the refused move');
      t.same(await names(ufs, '/top'), ['b', 'empty', 'x.txt'], 'tree intact after the refused move');
      t.same(await names(ufs, '/top/b'), ['c.txt']);

      await ufs.mkdir('/full');
      await putFile(ufs, '/full/keep', 'k');
      await rejectsCode(t, () => ufs.rename('/top', '/full'), 'NOT_EMPTY', 'replacing a non-empty directory');
      t.same(await names(ufs, '/full'), ['keep'], 'target intact');
      t.same(await names(ufs, '/top'), ['b', 'empty', 'x.txt'], 'source intact');

      await rejectsCode(t, () => ufs.rename('/top/x.txt', '/top/b'), 'IS_DIRECTORY', 'a file cannot replace a directory');
      t.same(await names(ufs, '/top/b'), ['c.txt'], 'the directory is intact');
      await rejectsCode(t, () => ufs.rename('/top/b', '/top/x.txt'), 'NOT_DIRECTORY', 'a directory cannot replace a file');
      t.equal((await readFile(ufs, '/top/x.txt')).toString(), 'x', 'the file is intact');

      await ufs.mkdir('/hole');
      await ufs.rename('/top', '/hole');
      t.same(await names(ufs, '/hole'), ['b', 'empty', 'x.txt'], 'an empty destination directory is replaced');
      t.equal(await ufs.stat('/top'), null);
    });

    t.test('completing an object over a directory fails and keeps the directory', async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/d');
      await putFile(ufs, '/d/child', 'c');
      await rejectsCode(t, () => putFile(ufs, '/d', 'not a directory'), 'IS_DIRECTORY', 'create+complete over a directory');
      t.equal((await ufs.stat('/d'))?.type, 'directory', 'still a directory');
      t.equal((await readFile(ufs, '/d/child')).toString(), 'c', 'its child is intact');
      t.same(await names(ufs, '/'), ['d']);
    });

    t.test('names with spaces, unicode and %', async (t) => {
      const ufs = await fresh(t);
      const dir = '/dir with spaces ü';
      await ufs.mkdir(dir);
      const odd = ['a b', '  lead and trail  ', 'ünïcödé', '名前', '🙂 emoji', '100%', '%41%2e%2e', 'a%2Fb', '%', '#hash?q=1&x', "quote'\"", 'tab\there', 'e\u0301', '\u00e9'];
      for (const n of odd) await putFile(ufs, `${dir}/${n}`, `content:${n}`);
      t.same(await names(ufs, dir), odd.slice().sort(), 'every name is listed exactly as written');
      for (const n of odd) {
        const st = await ufs.stat(`${dir}/${n}`);
        t.equal(st?.name, n, `stat name of ${JSON.stringify(n)}`);
        t.equal((await readFile(ufs, `${dir}/${n}`)).toString(), `content:${n}`, `content of ${JSON.stringify(n)}`);
      }
      t.equal(await ufs.stat(`${dir}/A..`), null, "'%41%2e%2e' is not percent-decoded");
      t.equal(await ufs.stat(`${dir}/a/b`), null, "'a%2Fb' is not a path separator");

      await ufs.rename(`${dir}/100%`, `${dir}/名前 100% moved`);
      t.equal((await readFile(ufs, `${dir}/名前 100% moved`)).toString(), 'content:100%', 'rename between odd names');
      await ufs.delete(`${dir}/%`);
      t.equal(await ufs.stat(`${dir}/%`), null, "delete of '%'");
      await ufs.mkdir(`${dir}/sub %20 dir`);
      t.equal((await ufs.stat(`${dir}/sub %20 dir`))?.type, 'directory');
      await ufs.rmdir(`${dir}/sub %20 dir`);
      t.equal(await ufs.stat(`${dir}/sub %20 dir`), null);
      t.same(await names(ufs, '/'), [dir.slice(1)], 'nothing appeared at the root');
    });

    t.test("names like Strata's temp files: listed when the store takes them, refused up front when its listings would hide them", async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/d');
      // A user's names with the temp files' prefix are names like any other (they were hidden, then dropped by a sync).
      const mine = ['.strata-tmp-notes', '.strata-tmp-probe-x'];
      for (const n of mine) {
        t.doesNotThrow(() => ufs.checkName?.(n), `${n} may be made`);
        await putFile(ufs, `/d/${n}`, n);
      }
      t.same(await names(ufs, '/d'), mine, 'and is listed');
      // Exactly a temp file's name, of any driver: refused where listings hide it, listed where they do not.
      for (const n of ['.strata-tmp-0123456789ab', '.strata-tmp-0123456789abcdef', '.strata-tmp-probe-0123456789abcdef']) {
        let refused = false;
        try {
          ufs.checkName?.(n);
        } catch (err) {
          refused = (err as StrataError).code === 'INVALID_ARGUMENT';
        }
        if (refused) continue;
        await putFile(ufs, `/d/${n}`, n);
        t.ok((await names(ufs, '/d')).includes(n), `${n}: taken, so listed`);
      }
    });

    t.test('long paths: a store holds them up to its limit (maxPathBytes; 825 bytes when it names none), and refuses past it', async (t) => {
      const ufs = await fresh(t);
      const limit = ufs.maxPathBytes;
      /** A path of exactly `bytes` bytes: 200-byte directory names, then a file name of the rest. */
      const pathOf = (bytes: number, tag: string): string => {
        const parts: string[] = [];
        let used = 0;
        while (bytes - used > 255) {
          parts.push(`${tag}${parts.length}`.padEnd(200, 'd'));
          used += 201;
        }
        parts.push(tag.padEnd(bytes - used - 1, 'f'));
        return '/' + parts.join('/');
      };
      const parentsOf = async (p: string) => {
        const parts = p.split('/').slice(1, -1);
        for (let i = 1; i <= parts.length; i++) await ufs.mkdir('/' + parts.slice(0, i).join('/'));
      };
      const file = pathOf(limit ?? 825, 'f');
      t.equal(Buffer.byteLength(file), limit ?? 825);
      await parentsOf(file);
      await putFile(ufs, file, 'deep');
      t.equal((await ufs.stat(file))?.size, 4, `a file at ${Buffer.byteLength(file)} bytes: stored`);
      t.same(await names(ufs, file.slice(0, file.lastIndexOf('/'))), [file.slice(file.lastIndexOf('/') + 1)], 'and listed');
      const dir = pathOf(limit ?? 825, 'd');
      await parentsOf(dir);
      await ufs.mkdir(dir);
      t.equal((await ufs.stat(dir))?.type, 'directory', `a directory at ${Buffer.byteLength(dir)} bytes: made`);
      if (limit === undefined) return;
      // One byte past a file's own limit (a directory's is one byte less): the store itself refuses it.
      const over = pathOf(limit + 2, 'o');
      await parentsOf(over);
      await t.rejects(putFile(ufs, over, 'x'), { code: 'NAME_TOO_LONG' }, `a file at ${Buffer.byteLength(over)} bytes: refused by the store as too long`);
      t.equal(await ufs.stat(over), null, 'and not there');
    });

    t.test('a writer that never finished: its leftover is discarded and nothing appears', async (t) => {
      const f = await freshFixture(t);
      const ufs = f.ufs;
      if (!ufs.discardLeftover) return t.pass('this driver leaves nothing behind when its process dies');
      await ufs.mkdir('/d');
      const w = await ufs.create('/d/crashed.bin');
      // More than one S3 part, so that driver has a multipart upload open.
      await w.write(pattern(9 * MiB, 7));
      const handle = w.leftover?.();
      t.type(handle, 'string', 'the writer names what a crash would leave behind');
      if (f.leftovers) {
        // A store may take the upload's first bytes a moment later (an HDFS datanode creates the file then).
        const deadline = Date.now() + 5000;
        while ((await f.leftovers()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        t.equal((await f.leftovers()).length, 1, 'the store holds it');
      }
      // As after a crash: the writer is neither completed nor aborted; its leftover is discarded instead.
      await ufs.discardLeftover(handle!);
      if (f.leftovers) t.same(await f.leftovers(), [], 'discarded: the store holds nothing of it');
      await ufs.discardLeftover(handle!);
      t.pass('discarding it twice is no error');
      t.equal(await ufs.stat('/d/crashed.bin'), null, 'nothing at the path');
      t.same(await names(ufs, '/d'), [], 'nothing listed');
      // This process lives on: let the writer go (a crashed one just stops).
      await w.abort().catch(() => undefined);
      const done = await ufs.create('/d/done.bin');
      await done.write(Buffer.from('x'));
      await done.complete();
      t.equal(done.leftover?.(), undefined, 'a completed writer leaves nothing');
      const bad = ['', 'nonsense', '{}', '[]', 'null', JSON.stringify({ tmp: '/../x' }), JSON.stringify({ tmp: '/d/done.bin' }), JSON.stringify({ key: '../done.bin', uploadId: 'u' }), JSON.stringify({ key: 'done.bin', uploadId: '' })];
      for (const h of bad) await rejectsCode(t, () => ufs.discardLeftover!(h), 'INVALID_ARGUMENT', `handle ${h || "''"}`);
      t.equal((await readFile(ufs, '/d/done.bin')).toString(), 'x', 'a refused handle removed nothing');
    });

    t.test('a writer whose leftover appears in the middle of a write lets its caller record it first', async (t) => {
      const f = await freshFixture(t);
      const ufs = f.ufs;
      if (!ufs.discardLeftover) return t.pass('this driver leaves nothing behind when its process dies');
      await ufs.mkdir('/d');
      const w = await ufs.create('/d/announced.bin');
      const atCreate = w.leftover?.();
      const told: (string | undefined)[] = [];
      let recorded = false;
      w.onLeftover = async () => {
        told.push(w.leftover?.());
        await new Promise((r) => setTimeout(r, 200));
        recorded = true;
      };
      // More than one S3 part: that driver opens its multipart upload here.
      await w.write(pattern(9 * MiB, 3));
      if (atCreate === undefined) {
        t.equal(told.length, 1, 'the caller is told once');
        t.type(told[0], 'string', 'with the handle of what a crash would now leave behind');
        t.ok(recorded, 'and the write waited for the caller to record it');
      } else {
        t.pass('this driver names its leftover from create() on, before any data');
      }
      await w.abort();
    });

    t.test('concurrent reads', async (t) => {
      const ufs = await fresh(t);
      const data = pattern(2 * MiB + 99, 42);
      await putFile(ufs, '/c.bin', data, [256 * 1024]);
      await putFile(ufs, '/other.bin', 'other');
      const ranges: [number, number][] = [];
      for (let i = 0; i < 48; i++) {
        const off = (i * 48_271) % data.length;
        ranges.push([off, (i * 7919) % (300 * 1024)]);
      }
      const results = await Promise.all([
        ...ranges.map(([o, l]) => readRange(ufs, '/c.bin', o, l)),
        ...Array.from({ length: 6 }, () => readRange(ufs, '/c.bin', 0, data.length)),
        ...Array.from({ length: 6 }, () => readRange(ufs, '/other.bin', 0, 100)),
      ]);
      let bad = 0;
      ranges.forEach(([o, l], i) => {
        if (!results[i]!.equals(data.subarray(o, o + l))) bad++;
      });
      t.equal(bad, 0, `all ${ranges.length} concurrent ranged reads return their own bytes`);
      for (let i = 0; i < 6; i++) t.equal(sha(results[ranges.length + i]!), sha(data), `concurrent whole read ${i}`);
      for (let i = 0; i < 6; i++) t.equal(results[ranges.length + 6 + i]!.toString(), 'other', `concurrent read of another object ${i}`);
    });

    t.test("paths with '..' (and other invalid paths) are rejected before reaching the store", async (t) => {
      const ufs = await fresh(t);
      await ufs.mkdir('/a');
      await putFile(ufs, '/a/f', 'inside');
      for (const [bad, code] of BAD_PATHS) {
        const label = JSON.stringify(bad.length > 40 ? bad.slice(0, 40) + '…' : bad);
        let parseErr: unknown;
        try {
          parsePath(bad);
        } catch (e) {
          parseErr = e;
        }
        t.ok(parseErr instanceof StrataError && parseErr.code === code, `parsePath(${label}) throws ${code}`, { found: parseErr });
        await rejectsCode(t, () => ufs.stat(bad), code, `stat ${label}`);
        await rejectsCode(t, () => ufs.list(bad), code, `list ${label}`);
        await rejectsCode(t, () => ufs.read(bad, 0, 10), code, `read ${label}`);
        await rejectsCode(
          t,
          async () => {
            const w = await ufs.create(bad);
            await w.write(Buffer.from('escaped'));
            await w.complete();
          },
          code,
          `create ${label}`,
        );
        await rejectsCode(t, () => ufs.delete(bad), code, `delete ${label}`);
        await rejectsCode(t, () => ufs.mkdir(bad), code, `mkdir ${label}`);
        await rejectsCode(t, () => ufs.rmdir(bad), code, `rmdir ${label}`);
        await rejectsCode(t, () => ufs.rename('/a/f', bad), code, `rename to ${label}`);
        await rejectsCode(t, () => ufs.rename(bad, '/a/g'), code, `rename from ${label}`);
      }
      t.same(await names(ufs, '/'), ['a'], 'the store is unchanged');
      t.same(await names(ufs, '/a'), ['f']);
      t.equal((await readFile(ufs, '/a/f')).toString(), 'inside', 'the file was neither moved nor overwritten');
    });
  });
}
