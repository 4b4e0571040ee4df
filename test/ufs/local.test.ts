/** The local (`file://`) under-store: the shared conformance suite plus what only a real directory can show. */

import t from 'tap';
import { promises as fsp, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createUfs } from '../../src/ufs';
import { LocalUnderFileSystem } from '../../src/ufs/local';
import { ufsConformance, putFile, readFile, rejectsCode } from './conformance';

const TEMP_PREFIX = '.strata-tmp-';

/**
 * Every root of this file lives in one sandbox next to an `outside` directory with
 * a canary; the last test checks that nothing but the canary is left there.
 */
const sandbox = mkdtempSync(path.join(os.tmpdir(), 'strata-ufs-local-'));
const outside = path.join(sandbox, 'outside');
const CANARY = 'canary: must never change';
mkdirSync(outside);
writeFileSync(path.join(outside, 'canary.txt'), CANARY);
t.teardown(() => rmSync(sandbox, { recursive: true, force: true }));

let roots = 0;
async function makeRoot(name = `root-${++roots}`): Promise<{ root: string; uri: string; cleanup(): Promise<void> }> {
  const root = path.join(sandbox, name);
  await fsp.mkdir(root);
  return { root, uri: pathToFileURL(root).href, cleanup: () => fsp.rm(root, { recursive: true, force: true }) };
}

/** Temp files under `dir`, at any depth. */
async function tempFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) if (e.name.startsWith(TEMP_PREFIX)) out.push(path.join(e.parentPath ?? e.path, e.name));
  return out;
}

ufsConformance(t, 'local', async () => {
  const { root, uri, cleanup } = await makeRoot();
  return { ufs: createUfs(uri), cleanup, leftovers: () => tempFilesUnder(root) };
});

t.test('createUfs picks the local driver for file:// URIs', async (t) => {
  const { uri, cleanup } = await makeRoot();
  t.teardown(cleanup);
  t.match(uri, /^file:\/\/\//, 'a file:// URI of the temp dir');
  const ufs = createUfs(uri);
  t.ok(ufs instanceof LocalUnderFileSystem);
  t.equal(ufs.uri, uri, 'the driver keeps the URI it was made from');
});

t.test('in-flight temp files are hidden and cleaned up', async (t) => {
  const { root, uri, cleanup } = await makeRoot();
  t.teardown(cleanup);
  const ufs = createUfs(uri);
  await ufs.mkdir('/d');
  const raw = () => readdirSync(path.join(root, 'd')).sort();

  const w = await ufs.create('/d/f');
  await w.write(Buffer.alloc(4096, 1));
  const during = raw();
  t.equal(during.length, 1, 'one temp file on disk while the write is in flight');
  t.ok(during[0]!.startsWith(TEMP_PREFIX), 'it carries the temp prefix');
  t.same(await ufs.list('/d'), [], 'list() hides the temp file');
  t.equal(await ufs.stat('/d/f'), null, 'the target does not exist yet');
  await w.complete();
  t.same(raw(), ['f'], 'complete() renames the temp file into place and leaves no temp file');
  t.equal(readFileSync(path.join(root, 'd', 'f')).length, 4096);

  const a = await ufs.create('/d/g');
  await a.write(Buffer.from('never'));
  t.equal(raw().filter((n) => n.startsWith(TEMP_PREFIX)).length, 1, 'a second in-flight write has its temp file');
  t.same(
    (await ufs.list('/d')).map((s) => s.name),
    ['f'],
    'list() still shows only complete files',
  );
  await a.abort();
  t.same(raw(), ['f'], 'abort() removes the temp file');

  // A complete() that fails (the target is a directory) removes its temp file too.
  await ufs.mkdir('/d/sub');
  const bad = await ufs.create('/d/sub');
  await bad.write(Buffer.from('x'));
  await rejectsCode(t, () => bad.complete(), 'IS_DIRECTORY', 'complete() over a directory');
  t.same(raw(), ['f', 'sub'], 'a failed complete() leaves no temp file');

  // Many writers in flight at once in the same directory: none of them is listed.
  const ws = await Promise.all(Array.from({ length: 5 }, (_, i) => ufs.create(`/d/p${i}`)));
  for (const x of ws) await x.write(Buffer.from('p'));
  t.equal(raw().filter((n) => n.startsWith(TEMP_PREFIX)).length, 5, 'one temp file per writer');
  t.same(
    (await ufs.list('/d')).map((s) => s.name),
    ['f', 'sub'],
    'none of them is listed',
  );
  await Promise.all(ws.map((x, i) => (i % 2 ? x.abort() : x.complete())));
  t.same(raw(), ['f', 'p0', 'p2', 'p4', 'sub'], 'completed ones appear, aborted ones vanish, no temp files remain');
});

t.test('store paths map one-to-one onto files under the root', async (t) => {
  const { root, uri, cleanup } = await makeRoot();
  t.teardown(cleanup);
  const ufs = createUfs(uri);
  await ufs.mkdir('/a');
  await putFile(ufs, '/a/b.txt', 'bytes on disk');
  t.equal(readFileSync(path.join(root, 'a', 'b.txt'), 'utf8'), 'bytes on disk', 'written where the path says');
  mkdirSync(path.join(root, 'made outside'));
  writeFileSync(path.join(root, 'made outside', 'n 100%.txt'), 'from disk');
  t.same(
    (await ufs.list('/made outside')).map((s) => [s.name, s.size]),
    [['n 100%.txt', 9]],
    'files created directly on disk are listed',
  );
  t.equal((await readFile(ufs, '/made outside/n 100%.txt')).toString(), 'from disk');
  await ufs.rename('/a/b.txt', '/made outside/b.txt');
  t.ok(existsSync(path.join(root, 'made outside', 'b.txt')), 'rename moves the file on disk');
  t.notOk(existsSync(path.join(root, 'a', 'b.txt')));
});

t.test('a root whose own path has spaces, unicode and %', async (t) => {
  const { root, uri, cleanup } = await makeRoot('root with space 100% ünï #x?y');
  t.teardown(cleanup);
  t.match(uri, /%25/, "the URI percent-encodes '%'");
  const ufs = createUfs(uri);
  await putFile(ufs, '/f', 'ok');
  t.equal(readFileSync(path.join(root, 'f'), 'utf8'), 'ok', 'the URI is decoded to the real directory');
  t.same(readdirSync(sandbox).filter((n) => n.startsWith('root with')), ['root with space 100% ünï #x?y'], 'no look-alike directory was created');
});

t.test("nothing escapes the root through '..'", async (t) => {
  const { root, uri, cleanup } = await makeRoot();
  t.teardown(cleanup);
  const ufs = createUfs(uri);
  await putFile(ufs, '/inside', 'in');
  const before = readdirSync(sandbox).sort();
  const rel = path.relative(root, outside); // '../outside'
  const attempts: [string, () => Promise<unknown>][] = [
    ['create', async () => putFile(ufs, `/${rel}/escaped`, 'x')],
    ['create via deep ..', async () => putFile(ufs, '/a/../../outside/escaped', 'x')],
    ['overwrite the canary', async () => putFile(ufs, `/${rel}/canary.txt`, 'overwritten')],
    ['delete the canary', () => ufs.delete(`/${rel}/canary.txt`)],
    ['mkdir', () => ufs.mkdir('/../escaped-dir')],
    ['rmdir', () => ufs.rmdir(`/${rel}`)],
    ['rename out', () => ufs.rename('/inside', `/${rel}/moved`)],
    ['rename in', () => ufs.rename(`/${rel}/canary.txt`, '/stolen')],
    ['read', () => ufs.read(`/${rel}/canary.txt`, 0, 100)],
    ['stat', () => ufs.stat(`/${rel}/canary.txt`)],
    ['list', () => ufs.list('/..')],
  ];
  for (const [what, fn] of attempts) await rejectsCode(t, fn, 'INVALID_ARGUMENT', what);
  t.same(readdirSync(sandbox).sort(), before, 'no new entries next to the root');
  t.same(readdirSync(outside), ['canary.txt'], 'nothing written into the sibling directory');
  t.equal(readFileSync(path.join(outside, 'canary.txt'), 'utf8'), CANARY, 'canary unchanged');
  t.same(readdirSync(root), ['inside'], 'the root itself is unchanged');
});

t.test('constructor rejects URIs that are not a local directory', async (t) => {
  for (const uri of ['file://otherhost/data', 'mem://x', 'http://localhost/data']) {
    await rejectsCode(t, async () => new LocalUnderFileSystem(uri), 'CONFIG', uri);
  }
  t.ok(new LocalUnderFileSystem('file://localhost/tmp') instanceof LocalUnderFileSystem, 'file://localhost/ is accepted');
});

t.test('nothing was written outside the roots, and every root was cleaned up', async (t) => {
  t.same(readdirSync(sandbox), ['outside'], 'only the sibling directory is left in the sandbox');
  t.same(readdirSync(outside), ['canary.txt']);
  t.equal(readFileSync(path.join(outside, 'canary.txt'), 'utf8'), CANARY);
});

t.test('a listing fails when a name cannot be stat-ed for a reason other than being gone (it is never left out)', async (t) => {
  const { root, uri, cleanup } = await makeRoot();
  t.teardown(cleanup);
  const ufs = createUfs(uri);
  await putFile(ufs, '/d/x', 'x');
  await putFile(ufs, '/d/y', 'y');
  const real = fsp.stat;
  t.teardown(() => void (fsp.stat = real));
  // A transient EIO (an NFS hiccup) on /d/x, once.
  let failed = false;
  fsp.stat = (async (p: Parameters<typeof real>[0], ...rest: unknown[]) => {
    if (!failed && String(p) === path.join(root, 'd', 'x')) {
      failed = true;
      throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    }
    return (real as (...a: unknown[]) => unknown)(p, ...rest);
  }) as typeof real;
  await rejectsCode(t, () => ufs.list('/d'), 'IO_ERROR', 'the listing fails with EIO');
  t.same((await ufs.list('/d')).map((e) => e.name), ['x', 'y'], 'and lists both names once the store answers');
  // A name that vanished between readdir and stat is still simply not listed.
  await fsp.symlink(path.join(root, 'nowhere'), path.join(root, 'd', 'dangling'));
  t.same((await ufs.list('/d')).map((e) => e.name), ['x', 'y'], 'a dangling symlink is not listed');
});
