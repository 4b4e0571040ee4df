/**
 * The HDFS (`hdfs://`, WebHDFS) under-store: the shared conformance suite against the
 * WebHDFS stand-in (test/helpers/webhdfs-server.ts, not Hadoop), once as a Hadoop 3
 * namenode (LISTSTATUS_BATCH, rename2) and once as a plain server without either (as
 * HttpFS or an old namenode), plus what only HDFS has: redirects to datanodes,
 * `user.name`, RemoteException mapping, paging, timeouts.
 */

import t from 'tap';
import { promises as fsp, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { getGlobalDispatcher, request } from 'undici';
import { StrataError, type ErrorCode } from '../../src/common/errors';
import { createUfs } from '../../src/ufs';
import { HdfsUnderFileSystem, WebHdfsError } from '../../src/ufs/hdfs';
import type { UnderFileSystem } from '../../src/ufs/ufs';
import { startWebHdfsStandIn, type LoggedRequest, type WebHdfsStandIn } from '../helpers/webhdfs-server';
import { ufsConformance, putFile, readAll, readFile, readRange, rejectsCode } from './conformance';

const TEMP_PREFIX = '.strata-tmp-';
const MiB = 1024 * 1024;
const USER = 'strata-test';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * One sandbox holds both stand-ins' roots and an `outside` directory with a canary;
 * the last test checks that nothing outside the stand-in roots changed.
 */
const sandbox = mkdtempSync(path.join(os.tmpdir(), 'strata-ufs-hdfs-'));
const outside = path.join(sandbox, 'outside');
const CANARY = 'canary: must never change';
mkdirSync(outside);
writeFileSync(path.join(outside, 'canary.txt'), CANARY);

/** A Hadoop-3-like namenode; small LISTSTATUS_BATCH pages so every listing of the suite pages. */
let full: WebHdfsStandIn;
/** A plain WebHDFS server: no LISTSTATUS_BATCH, RENAME ignores renameoptions (like HttpFS). */
let plain: WebHdfsStandIn;

t.before(async () => {
  full = await startWebHdfsStandIn({
    root: path.join(sandbox, 'full'),
    batchSize: 4,
    deny: (p) => p.split('/').includes('secret'),
  });
  plain = await startWebHdfsStandIn({ root: path.join(sandbox, 'plain'), listStatusBatch: false, renameOptions: false });
});
mkdirSync(path.join(sandbox, 'full'));
mkdirSync(path.join(sandbox, 'plain'));
t.teardown(async () => {
  await full?.stop();
  await plain?.stop();
  rmSync(sandbox, { recursive: true, force: true });
});

let stores = 0;
/** A fresh, empty store directory on a stand-in: its HDFS path, local path and URI. */
async function makeStore(server: WebHdfsStandIn, name = `s${++stores}`): Promise<{ hdfsPath: string; dir: string; uri: string; cleanup(): Promise<void> }> {
  const hdfsPath = `/stores/${name}`;
  const dir = path.join(server.root, 'stores', name);
  await fsp.mkdir(dir, { recursive: true });
  return { hdfsPath, dir, uri: server.uri(hdfsPath), cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}

/** A store on `server` that a subtest uses and closes in its teardown. */
async function storeFor(t: tap.Test, server: WebHdfsStandIn, options: Record<string, string> = {}) {
  const s = await makeStore(server);
  const ufs = createUfs(s.uri, { 'hdfs.user': USER, ...options });
  t.teardown(async () => {
    await ufs.close();
    await s.cleanup();
  });
  return { ...s, ufs };
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved' | 'not a StrataError'> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof StrataError ? err.code : 'not a StrataError';
  }
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Requests to one node of a stand-in since `from` (an index into its log). */
const since = (server: WebHdfsStandIn, from: number, node?: LoggedRequest['node']) => server.requests.slice(from).filter((r) => !node || r.node === node);

/** Temp files in a stand-in store's directory, at any depth. */
async function tempFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) if (e.name.startsWith(TEMP_PREFIX)) out.push(path.join(e.parentPath ?? e.path, e.name));
  return out;
}

ufsConformance(t, 'hdfs (Hadoop 3 namenode stand-in)', async () => {
  const s = await makeStore(full);
  return { ufs: createUfs(s.uri, { 'hdfs.user': USER }), cleanup: s.cleanup, leftovers: () => tempFilesUnder(s.dir) };
});

ufsConformance(t, 'hdfs (plain WebHDFS stand-in: no LISTSTATUS_BATCH, no rename options)', async () => {
  const s = await makeStore(plain);
  return { ufs: createUfs(s.uri, { 'hdfs.user': USER }), cleanup: s.cleanup, leftovers: () => tempFilesUnder(s.dir) };
});

t.test('createUfs picks the hdfs driver; URI and options are checked at construction', async (t) => {
  const uri = full.uri('/stores/any');
  const ufs = createUfs(uri);
  t.ok(ufs instanceof HdfsUnderFileSystem);
  t.equal(ufs.uri, uri, 'the driver keeps the URI it was made from');
  await ufs.close();
  const bad: [string, Record<string, string>][] = [
    ['hdfs:///no/host', {}],
    ['hdfs://user:pw@nn:9870/x', {}],
    ['hdfs://nn:9870/x?q=1', {}],
    ['hdfs://nn:9870/x#frag', {}],
    ['hdfs://nn:9870/a%00b', {}],
    ['s3://bucket/x', {}],
    ['hdfs://nn:9870/x', { 'hdfs.scheme': 'ftp' }],
    ['hdfs://nn:9870/x', { 'hdfs.timeoutMs': '0' }],
    ['hdfs://nn:9870/x', { 'hdfs.timeoutMs': 'soon' }],
    ['hdfs://nn:9870/x', { 'hdfs.connectTimeoutMs': '-5' }],
    ['hdfs://nn:9870/x', { 'hdfs.usr': 'typo' }],
    ['hdfs://nn:9870/x', { 'hdfs.user': '' }],
  ];
  for (const [u, o] of bad) await rejectsCode(t, async () => new HdfsUnderFileSystem(u, o), 'CONFIG', `${u} ${JSON.stringify(o)}`);
  const ok = new HdfsUnderFileSystem('hdfs://nn/x', { 'hdfs.scheme': 'https', 'hdfs.timeoutMs': '1000', 's3.region': 'ignored' });
  t.ok(ok, 'a URI without a port (9870) and other drivers\' options are accepted');
  await ok.close();
});

t.test('the URI path is the store root, decoded once', async (t) => {
  const s = await makeStore(full, 'root with space 100% ü #x?y');
  t.teardown(s.cleanup);
  t.match(s.uri, /%25/, "the URI percent-encodes '%'");
  const ufs = createUfs(s.uri, { 'hdfs.user': USER });
  t.teardown(() => ufs.close());
  await ufs.mkdir('/d');
  await putFile(ufs, '/d/f 1%', 'on disk');
  t.equal(readFileSync(path.join(s.dir, 'd', 'f 1%'), 'utf8'), 'on disk', 'written where the URI and the path say');
  writeFileSync(path.join(s.dir, 'd', 'made outside'), 'from disk');
  t.same(
    (await ufs.list('/d')).map((e) => [e.name, e.size]),
    [
      ['f 1%', 7],
      ['made outside', 9],
    ],
    'files created directly under the root are listed',
  );
  t.same(readdirSync(path.join(full.root, 'stores')).filter((n) => n.startsWith('root with')), ['root with space 100% ü #x?y'], 'no look-alike directory');
});

t.test('reads and writes follow the 307 to the datanode; no data goes through the namenode', async (t) => {
  const { ufs, hdfsPath } = await storeFor(t, full);
  const data = Buffer.alloc(3 * MiB + 7);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;

  let mark = full.requests.length;
  await putFile(ufs, '/f.bin', data, [MiB]);
  const nnCreate = since(full, mark, 'namenode').filter((r) => r.op === 'CREATE');
  t.equal(nnCreate.length, 1, 'one CREATE to the namenode');
  t.equal(nnCreate[0]!.status, 307, 'answered with a redirect');
  t.ok(!nnCreate[0]!.headers['transfer-encoding'] && (nnCreate[0]!.headers['content-length'] ?? '0') === '0', 'the namenode CREATE carries no body');
  const dnPuts = since(full, mark, 'datanode');
  t.equal(dnPuts.length, 1, 'exactly one datanode request: the PUT of the data');
  t.equal(dnPuts[0]!.op, 'CREATE');
  t.equal(dnPuts[0]!.status, 201);
  t.equal(dnPuts[0]!.bodyBytes, data.length, 'all bytes went to the datanode');
  t.match(dnPuts[0]!.path, new RegExp(`^${hdfsPath}/\\${TEMP_PREFIX}`), 'written to a temp name in the same directory');
  t.ok(
    since(full, mark, 'namenode').every((r) => !r.headers['transfer-encoding'] && (r.headers['content-length'] ?? '0') === '0'),
    'no namenode request had a body',
  );

  mark = full.requests.length;
  t.same(await readRange(ufs, '/f.bin', 1000, 5000), data.subarray(1000, 6000), 'ranged read');
  const nnOpen = since(full, mark, 'namenode');
  t.same(
    nnOpen.map((r) => [r.op, r.status, r.params.offset, r.params.length]),
    [['OPEN', 307, '1000', '5000']],
    'one OPEN to the namenode, with offset and length, answered 307',
  );
  const dnOpen = since(full, mark, 'datanode');
  t.same(
    dnOpen.map((r) => [r.op, r.status, r.params.offset, r.params.length, r.path]),
    [['OPEN', 200, '1000', '5000', `${hdfsPath}/f.bin`]],
    'one GET to the datanode, which served the range',
  );

  mark = full.requests.length;
  await Promise.all([readFile(ufs, '/f.bin'), readRange(ufs, '/f.bin', 0, 10), readRange(ufs, '/f.bin', MiB, MiB)]);
  t.equal(since(full, mark, 'datanode').length, 3, 'one datanode request per read');
});

t.test('user.name: from hdfs.user, else $HADOOP_USER_NAME, else the process user; the stand-in requires it', async (t) => {
  const s = await makeStore(full);
  t.teardown(s.cleanup);
  const usersOf = async (options: Record<string, string>) => {
    const ufs = createUfs(s.uri, options);
    const mark = full.requests.length;
    await putFile(ufs, '/u', 'x');
    await readFile(ufs, '/u');
    await ufs.list('/');
    await ufs.delete('/u');
    await ufs.close();
    const seen = since(full, mark);
    t.ok(seen.some((r) => r.node === 'datanode'), 'datanode requests were made');
    return [...new Set(seen.map((r) => r.user))];
  };
  t.same(await usersOf({ 'hdfs.user': 'alice' }), ['alice'], 'every namenode and datanode request carries hdfs.user');

  const saved = process.env.HADOOP_USER_NAME;
  t.teardown(() => {
    if (saved === undefined) delete process.env.HADOOP_USER_NAME;
    else process.env.HADOOP_USER_NAME = saved;
  });
  process.env.HADOOP_USER_NAME = 'from-env';
  t.same(await usersOf({}), ['from-env'], '$HADOOP_USER_NAME is the default');
  delete process.env.HADOOP_USER_NAME;
  let me: string;
  try {
    me = os.userInfo().username;
  } catch {
    me = process.env.USER || process.env.LOGNAME || 'strata';
  }
  t.same(await usersOf({}), [me], 'then the process user');

  const res = await request(`${full.namenodeUrl}/webhdfs/v1${s.hdfsPath}?op=GETFILESTATUS`);
  const body = (await res.body.json()) as { RemoteException?: { exception?: string } };
  t.equal(res.statusCode, 401, 'the stand-in refuses a request without user.name');
  t.equal(body.RemoteException?.exception, 'SecurityException');
});

t.test('RemoteExceptions map onto StrataError codes, keeping the server answer as cause', async (t) => {
  const { ufs, dir } = await storeFor(t, full);
  // The stand-in denies every path with a 'secret' component (AccessControlException, 403).
  mkdirSync(path.join(dir, 'secret'));
  writeFileSync(path.join(dir, 'secret', 'f'), 'hidden');
  await putFile(ufs, '/open', 'o');
  const denied: [string, () => Promise<unknown>][] = [
    ['stat', () => ufs.stat('/secret')],
    ['stat below', () => ufs.stat('/secret/f')],
    ['list', () => ufs.list('/secret')],
    ['read', () => ufs.read('/secret/f', 0, 10)],
    ['create', () => putFile(ufs, '/secret/new', 'x')],
    ['mkdir', () => ufs.mkdir('/secret/sub')],
    ['delete', () => ufs.delete('/secret/f')],
    ['rmdir', () => ufs.rmdir('/secret')],
    ['rename out', () => ufs.rename('/secret/f', '/stolen')],
    ['rename in', () => ufs.rename('/open', '/secret/open')],
  ];
  for (const [what, fn] of denied) await rejectsCode(t, fn, 'PERMISSION_DENIED', what);
  const err = await errorOf(ufs.stat('/secret'));
  const cause = (err as StrataError).cause;
  t.ok(cause instanceof WebHdfsError, 'the cause is the server answer');
  t.match(cause, { status: 403, exception: 'AccessControlException', javaClassName: 'org.apache.hadoop.security.AccessControlException' });
  t.equal(readFileSync(path.join(dir, 'secret', 'f'), 'utf8'), 'hidden', 'the denied file is untouched');
  t.equal((await readFile(ufs, '/open')).toString(), 'o', 'and the other file too');

  // Any answer the stand-in is told to give for '/probe'.
  const cases: [string, { status: number; exception?: string; body?: string }, ErrorCode][] = [
    ['SecurityException', { status: 401, exception: 'SecurityException' }, 'PERMISSION_DENIED'],
    ['AccessControlException', { status: 403, exception: 'AccessControlException' }, 'PERMISSION_DENIED'],
    ['FileAlreadyExistsException', { status: 403, exception: 'FileAlreadyExistsException' }, 'ALREADY_EXISTS'],
    ['PathIsNotEmptyDirectoryException', { status: 403, exception: 'PathIsNotEmptyDirectoryException' }, 'NOT_EMPTY'],
    ['StandbyException (HA standby namenode)', { status: 403, exception: 'StandbyException' }, 'UNAVAILABLE'],
    ['a plain IOException', { status: 403, exception: 'IOException' }, 'IO_ERROR'],
    ['an unknown exception', { status: 500, exception: 'SomethingNewException' }, 'IO_ERROR'],
    ['an HTML 502 from a proxy', { status: 502, body: '<html>Bad Gateway</html>' }, 'UNAVAILABLE'],
    ['an HTML 401 (e.g. SPNEGO required)', { status: 401, body: '<html>Authentication required</html>' }, 'PERMISSION_DENIED'],
    ['an HTML 404 (not a WebHDFS endpoint), which must not look like "no such file"', { status: 404, body: '<html>Not Found</html>' }, 'IO_ERROR'],
  ];
  for (const [what, answer, code] of cases) {
    full.intercept = (r) => (r.path.endsWith('/probe') ? answer : undefined);
    t.equal(await codeOf(ufs.stat('/probe')), code, `stat: ${what} -> ${code}`);
    t.equal(await codeOf(ufs.list('/probe')), code, `list: ${what} -> ${code}`);
  }
  full.intercept = (r) => (r.path.endsWith('/probe') ? { status: 404, exception: 'FileNotFoundException' } : undefined);
  t.equal(await ufs.stat('/probe'), null, 'stat: FileNotFoundException is null');
  t.equal(await codeOf(ufs.list('/probe')), 'NOT_FOUND', 'list: FileNotFoundException -> NOT_FOUND');
  full.intercept = undefined;
});

t.test('listings page through LISTSTATUS_BATCH, are re-sorted, and skip temp and invalid names', async (t) => {
  const { ufs, dir, hdfsPath } = await storeFor(t, full);
  await ufs.mkdir('/big');
  const made: string[] = [];
  for (let i = 0; i < 9; i++) made.push(`f${i}`);
  // UTF-8 order (HDFS) puts U+FF21 before U+1F642; code-unit order (the contract) the reverse.
  made.push('\uFF21', '\u{1F642}');
  for (const n of made) await putFile(ufs, `/big/${n}`, n);
  writeFileSync(path.join(dir, 'big', `${TEMP_PREFIX}0123456789abcdef`), 'temp'); // a writer's temp file, left behind
  writeFileSync(path.join(dir, 'big', 'not valid utf-8 \uFFFD'), 'x');
  const mark = full.requests.length;
  const names = (await ufs.list('/big')).map((e) => e.name);
  t.same(names, made.slice().sort(), 'every valid name once, in code-unit order; temp and invalid names skipped');
  t.ok(names.indexOf('\u{1F642}') < names.indexOf('\uFF21'), 'the driver re-sorts what HDFS sends in byte order');
  const pages = since(full, mark, 'namenode');
  t.same(
    pages.map((r) => [r.op, r.params.startAfter ?? null]),
    [
      ['LISTSTATUS_BATCH', null],
      ['LISTSTATUS_BATCH', 'f2'],
      ['LISTSTATUS_BATCH', 'f6'],
      ['LISTSTATUS_BATCH', '\uFF21'],
    ],
    '13 entries in pages of 4, each after the last name of the previous page',
  );
  t.equal(pages[0]!.path, `${hdfsPath}/big`);

  const p = await storeFor(t, plain);
  await p.ufs.mkdir('/d');
  await putFile(p.ufs, '/d/x', 'x');
  const m1 = plain.requests.length;
  t.same(
    (await p.ufs.list('/d')).map((e) => e.name),
    ['x'],
  );
  t.same(
    since(plain, m1).map((r) => [r.op, r.status]),
    [
      ['LISTSTATUS_BATCH', 400],
      ['LISTSTATUS', 200],
    ],
    'a server without LISTSTATUS_BATCH: the first list falls back to LISTSTATUS',
  );
  const m2 = plain.requests.length;
  await p.ufs.list('/d');
  t.same(
    since(plain, m2).map((r) => r.op),
    ['LISTSTATUS'],
    'and the driver remembers',
  );
});

t.test('an overwrite is one atomic rename2 where the server has it, delete+rename elsewhere', async (t) => {
  for (const [server, atomic] of [
    [full, true],
    [plain, false],
  ] as const) {
    const { ufs, hdfsPath } = await storeFor(t, server);
    await putFile(ufs, '/o', 'first');
    const mark = server.requests.length;
    await putFile(ufs, '/o', 'second, longer');
    const meta = since(server, mark, 'namenode').filter((r) => r.op === 'RENAME' || r.op === 'DELETE');
    if (atomic) {
      t.same(
        meta.map((r) => [r.op, r.params.renameoptions, r.params.destination]),
        [['RENAME', 'OVERWRITE', `${hdfsPath}/o`]],
        'Hadoop 3 stand-in: a single RENAME with renameoptions=OVERWRITE, no DELETE',
      );
    } else {
      t.same(
        meta.map((r) => [r.op, r.path === `${hdfsPath}/o` ? 'destination' : 'temp', r.status]),
        [
          ['DELETE', 'destination', 200],
          ['RENAME', 'temp', 200],
        ],
        'plain stand-in: DELETE of the destination, then RENAME of the temp file',
      );
    }
    t.equal((await readFile(ufs, '/o')).toString(), 'second, longer');
  }
});

t.test('without rename2, a rename that fails after the old file was deleted is tried again, and the new bytes are never discarded', async (t) => {
  const { ufs, dir } = await storeFor(t, plain);
  await putFile(ufs, '/r', 'OLD');
  // The first rename of a temp file fails once (a namenode hiccup): the second try puts it in place.
  let failures = 1;
  plain.intercept = (r) => (r.op === 'RENAME' && r.params.destination?.endsWith('/r') && failures-- > 0 ? { status: 503, body: 'busy' } : undefined);
  t.teardown(() => void (plain.intercept = undefined));
  await putFile(ufs, '/r', 'NEW, once retried');
  t.equal((await readFile(ufs, '/r')).toString(), 'NEW, once retried', 'the write landed after one failed rename');
  // Now every rename of it fails: complete() fails, but the temp file with the new bytes stays.
  failures = Infinity;
  const w = await ufs.create('/r');
  await w.write(Buffer.from('NEWEST'));
  const err = await w.complete().then(
    () => undefined,
    (e: unknown) => e as StrataError,
  );
  t.equal(err?.code, 'UNAVAILABLE', 'complete() fails');
  t.match(err?.message, /kept at/, 'and says where the new bytes are');
  const temps = readdirSync(dir).filter((n) => n.startsWith(TEMP_PREFIX));
  t.equal(temps.length, 1, 'the temp file is not discarded');
  t.equal(readFileSync(path.join(dir, temps[0]!), 'utf8'), 'NEWEST', 'it holds the new bytes, the only copy left');
  t.equal(w.leftover?.(), undefined, 'and it is not handed out as a leftover to discard after a crash');
  rmSync(path.join(dir, temps[0]!));
});

t.test('in-flight temp files are hidden, and complete(), abort() and a failed complete() leave none', async (t) => {
  const { ufs, dir } = await storeFor(t, full);
  await ufs.mkdir('/d');
  const raw = () => readdirSync(path.join(dir, 'd')).sort();
  const temps = () => raw().filter((n) => n.startsWith(TEMP_PREFIX));

  const w = await ufs.create('/d/f');
  await w.write(Buffer.alloc(4096, 1));
  for (let i = 0; i < 100 && temps().length === 0; i++) await sleep(20);
  t.equal(temps().length, 1, 'one temp file in the directory while the write is in flight');
  t.same(await ufs.list('/d'), [], 'list() hides it');
  t.equal(await ufs.stat('/d/f'), null, 'the target does not exist yet');
  await w.complete();
  t.same(raw(), ['f'], 'complete() renames it into place');

  const a = await ufs.create('/d/g');
  await a.write(Buffer.from('never'));
  await a.abort();
  t.same(raw(), ['f'], 'abort() removes the temp file');
  const e = await ufs.create('/d/e');
  await e.abort();
  t.same(raw(), ['f'], 'abort() without writes leaves nothing');

  await ufs.mkdir('/d/sub');
  const bad = await ufs.create('/d/sub');
  await bad.write(Buffer.from('x'));
  await rejectsCode(t, () => bad.complete(), 'IS_DIRECTORY', 'complete() over a directory');
  t.same(raw(), ['f', 'sub'], 'a failed complete() leaves no temp file');

  await rejectsCode(t, () => ufs.create('/nope/f'), 'NOT_FOUND', 'create under a missing directory');
  await rejectsCode(t, () => ufs.create('/d/f/x'), 'NOT_DIRECTORY', 'create under a file');
  t.same(readdirSync(dir).sort(), ['d'], 'no parent directory was created by HDFS for them');
  await rejectsCode(t, () => ufs.read('/d', 0, 10), 'IS_DIRECTORY', 'read of a directory');
  await rejectsCode(t, () => ufs.read('/d', 0, 0), 'IS_DIRECTORY', 'zero-length read of a directory');
  await rejectsCode(t, () => ufs.read('/d/none', 0, 0), 'NOT_FOUND', 'zero-length read of a missing file');
});

t.test('writes stream to the datanode as they happen, with bounded memory', async (t) => {
  const { ufs } = await storeFor(t, full);
  const chunk = (i: number) => Buffer.alloc(MiB, i & 0xff);

  const before = full.uploadedBytes;
  const w = await ufs.create('/streamed');
  for (let i = 0; i < 8; i++) await w.write(chunk(i));
  for (let i = 0; i < 100 && full.uploadedBytes - before < 4 * MiB; i++) await sleep(20);
  t.ok(full.uploadedBytes - before >= 4 * MiB, `bytes reach the datanode before complete() (${full.uploadedBytes - before} of ${8 * MiB})`);
  await w.complete();
  t.equal((await ufs.stat('/streamed'))?.size, 8 * MiB);

  // The datanode stops reading: write() must stop resolving long before the data would fill memory.
  const release = full.holdUploads();
  const h = await ufs.create('/held');
  const hash = createHash('sha256');
  let written = 0;
  let stalled: Promise<void> | undefined;
  while (written < 256 * MiB) {
    const c = chunk(written / MiB);
    const p = h.write(c);
    hash.update(c);
    written += c.length;
    const won = await Promise.race([p.then(() => 'written'), sleep(500).then(() => 'stalled')]);
    if (won === 'stalled') {
      stalled = p;
      break;
    }
  }
  t.ok(stalled, `write() waits for the datanode (stalled after ${written / MiB} MiB)`);
  t.ok(written <= 64 * MiB, 'no more than a bounded amount was accepted while the datanode did not read');
  release();
  await stalled;
  for (let i = 0; i < 3; i++) {
    const c = chunk(200 + i);
    await h.write(c);
    hash.update(c);
    written += c.length;
  }
  const st = await h.complete();
  t.equal(st.size, written, 'once the datanode reads again the upload completes');
  t.equal(sha(await readFile(ufs, '/held')), hash.digest('hex'), 'with every byte in order');
});

t.test('an unreachable or silent namenode fails within a few seconds', async (t) => {
  // A port nobody listens on.
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise<void>((r) => free.close(() => r()));
  const refused = createUfs(`hdfs://127.0.0.1:${port}/x`, { 'hdfs.user': USER });
  t.teardown(() => refused.close());
  const ops: [string, (u: UnderFileSystem) => Promise<unknown>][] = [
    ['stat', (u) => u.stat('/f')],
    ['list', (u) => u.list('/')],
    ['read', (u) => u.read('/f', 0, 10)],
    ['create', (u) => u.create('/f')],
    ['mkdir', (u) => u.mkdir('/d')],
    ['rename', (u) => u.rename('/a', '/b')],
  ];
  for (const [what, op] of ops) {
    const t0 = Date.now();
    const code = await codeOf(op(refused));
    t.ok(code === 'UNAVAILABLE' || code === 'IO_ERROR', `${what} on a closed port: ${code}`);
    t.ok(Date.now() - t0 < 3000, `${what} failed in ${Date.now() - t0} ms`);
  }

  // A namenode that accepts connections but never answers.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });
  const mute = createUfs(`hdfs://127.0.0.1:${(silent.address() as net.AddressInfo).port}/x`, { 'hdfs.user': USER, 'hdfs.timeoutMs': '500' });
  t.teardown(() => mute.close());
  for (const [what, op] of ops) {
    const t0 = Date.now();
    const c = await codeOf(op(mute));
    t.equal(c, 'TIMEOUT', `${what} against a silent namenode times out`);
    t.ok(Date.now() - t0 < 3000, `${what} failed in ${Date.now() - t0} ms`);
  }
});

t.test('uploads: a writer may pause longer than hdfs.timeoutMs; a datanode that stops taking bytes fails the write in time', async (t) => {
  const { ufs, dir } = await storeFor(t, full, { 'hdfs.timeoutMs': '400' });
  const w = await ufs.create('/slow');
  await w.write(Buffer.from('before '));
  await sleep(1200);
  await w.write(Buffer.from('after'));
  await w.complete();
  t.equal((await readFile(ufs, '/slow')).toString(), 'before after', 'a pause of 3× the timeout between writes is no failure');

  const release = full.holdUploads();
  t.teardown(release);
  const stuck = await ufs.create('/stuck');
  const t0 = Date.now();
  // More than the socket buffers hold, so bytes wait for a datanode that does not read.
  const code = await codeOf(
    (async () => {
      for (let i = 0; i < 16; i++) await stuck.write(Buffer.alloc(MiB, i));
      await stuck.complete();
    })(),
  );
  t.equal(code, 'TIMEOUT', 'the write fails with TIMEOUT');
  t.ok(Date.now() - t0 < 5000, `within a few timeouts (${Date.now() - t0} ms)`);
  release();
  await stuck.abort();
  for (let i = 0; i < 50 && readdirSync(dir).some((n) => n.startsWith(TEMP_PREFIX)); i++) await sleep(50);
  t.same(readdirSync(dir).sort(), ['slow'], 'no temp file is left');
});

t.test('the AbortSignal of a call is honoured', async (t) => {
  const { ufs } = await storeFor(t, full);
  await putFile(ufs, '/big', Buffer.alloc(4 * MiB, 7));
  t.teardown(() => {
    full.intercept = undefined;
  });
  full.intercept = (r) => (r.path.endsWith('/slow') ? 'hang' : undefined);
  for (const [what, op] of [
    ['stat', (s: AbortSignal) => ufs.stat('/slow', { signal: s })],
    ['list', (s: AbortSignal) => ufs.list('/slow', { signal: s })],
    ['read', (s: AbortSignal) => ufs.read('/slow', 0, 10, { signal: s })],
    ['mkdir', (s: AbortSignal) => ufs.mkdir('/slow', { signal: s })],
  ] as const) {
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 100);
    const err = await errorOf(op(ac.signal));
    t.ok(err instanceof StrataError, `${what}: a hung call rejects with a StrataError once aborted`, { found: err });
    t.ok(Date.now() - t0 < 2000, `${what}: within ${Date.now() - t0} ms`);
  }
  const already = new AbortController();
  already.abort();
  t.ok((await errorOf(ufs.stat('/big', { signal: already.signal }))) instanceof StrataError, 'an already-aborted signal fails the call');

  // A read stream in progress.
  full.intercept = undefined;
  const ac = new AbortController();
  const stream = await ufs.read('/big', 0, 4 * MiB, { signal: ac.signal });
  let got = 0;
  const err = await errorOf(
    (async () => {
      for await (const c of stream) {
        got += (c as Buffer).length;
        ac.abort();
        await sleep(10);
      }
    })(),
  );
  t.ok(err instanceof StrataError, 'aborting a read stream fails it with a StrataError', { found: err });
  t.ok(got < 4 * MiB, `and it stops early (${got} bytes)`);

  // A streamed write whose signal fires: the upload stops, and abort() still cleans up.
  const wac = new AbortController();
  const w = await ufs.create('/cancelled', { signal: wac.signal });
  await w.write(Buffer.alloc(MiB, 1));
  wac.abort();
  let werr: unknown;
  for (let i = 0; i < 100 && !werr; i++) werr = await errorOf(w.write(Buffer.alloc(64 * 1024, 2)));
  t.ok(werr instanceof StrataError, 'write() fails with a StrataError once the signal fired', { found: werr });
  await w.abort();
  t.equal(await ufs.stat('/cancelled'), null, 'nothing appeared');
  t.same(
    (await ufs.list('/')).map((e) => e.name),
    ['big'],
  );

  // A datanode that never answers is bounded by hdfs.timeoutMs even without a signal.
  const { ufs: quick } = await storeFor(t, full, { 'hdfs.timeoutMs': '500' });
  await putFile(quick, '/x', 'x');
  full.intercept = (r) => (r.node === 'datanode' ? 'hang' : undefined);
  const t0 = Date.now();
  t.equal(await codeOf((async () => readAll(await quick.read('/x', 0, 1)))()), 'TIMEOUT', 'a silent datanode times out');
  t.ok(Date.now() - t0 < 3000, `within ${Date.now() - t0} ms`);

  // A datanode that dies mid-transfer fails the read; it is never a silent short read.
  full.intercept = undefined;
  await putFile(quick, '/y', Buffer.alloc(1000, 9));
  full.intercept = (r) => (r.node === 'datanode' ? { status: 200, body: 'only this', declaredLength: 1000 } : undefined);
  const short = await errorOf((async () => readAll(await quick.read('/y', 0, 1000)))());
  t.ok(short instanceof StrataError, 'a truncated datanode answer fails the read with a StrataError', { found: short });
  full.intercept = undefined;
});

t.test('close() does not wait forever on a read stream nobody consumes', async (t) => {
  const { ufs } = await storeFor(t, full, { 'hdfs.timeoutMs': '500' });
  await putFile(ufs, '/big', Buffer.alloc(8 * MiB, 3));
  const stream = await ufs.read('/big', 0, 8 * MiB);
  const t0 = Date.now();
  await ufs.close();
  t.ok(Date.now() - t0 < 2000, `close() returned in ${Date.now() - t0} ms`);
  // Read afterwards, it has either all its bytes (they had arrived) or fails; never a silent short read.
  let got: Buffer | undefined;
  const err = await errorOf(readAll(stream).then((b) => (got = b)));
  t.ok(err instanceof StrataError || (got?.length === 8 * MiB && got.every((b) => b === 3)), 'the abandoned stream is complete or fails with a StrataError', { found: err ?? got?.length });
});

t.test('the stand-in refuses paths that escape its root', async (t) => {
  const raw = async (server: WebHdfsStandIn, method: 'GET' | 'PUT' | 'DELETE', rawPath: string) => {
    // `path` is sent as is: a URL object would resolve the '..' before it left.
    const res = await getGlobalDispatcher().request({ origin: server.namenodeUrl, method, path: rawPath });
    const body = await res.body.text();
    return { status: res.statusCode, exception: (JSON.parse(body || '{}') as { RemoteException?: { exception?: string } }).RemoteException?.exception };
  };
  const attempts: ['GET' | 'PUT' | 'DELETE', string][] = [
    ['GET', '/webhdfs/v1/../outside/canary.txt?op=GETFILESTATUS&user.name=x'],
    ['GET', '/webhdfs/v1/%2e%2e/outside/canary.txt?op=OPEN&user.name=x'],
    ['GET', '/webhdfs/v1/..%2F..%2Foutside?op=LISTSTATUS&user.name=x'],
    ['PUT', '/webhdfs/v1/a/%2E%2E/%2E%2E/outside/evil?op=CREATE&user.name=x'],
    ['PUT', '/webhdfs/v1/..%2Foutside%2Fnew-dir?op=MKDIRS&user.name=x'],
    ['PUT', `/webhdfs/v1/stores?op=RENAME&destination=${encodeURIComponent('/../outside/stolen')}&user.name=x`],
    ['DELETE', '/webhdfs/v1/%2e%2e%2Foutside%2Fcanary.txt?op=DELETE&user.name=x'],
  ];
  for (const [method, p] of attempts) {
    const r = await raw(full, method, p);
    t.same(r, { status: 400, exception: 'InvalidPathException' }, `${method} ${p}`);
  }
  t.same(readdirSync(outside), ['canary.txt'], 'nothing appeared outside');
  t.equal(readFileSync(path.join(outside, 'canary.txt'), 'utf8'), CANARY, 'canary unchanged');
});

t.test('nothing was written outside the stand-in roots, and every store was cleaned up', async (t) => {
  t.same(readdirSync(sandbox).sort(), ['full', 'outside', 'plain']);
  t.same(readdirSync(outside), ['canary.txt']);
  t.equal(readFileSync(path.join(outside, 'canary.txt'), 'utf8'), CANARY);
  for (const s of ['full', 'plain']) {
    const dir = path.join(sandbox, s, 'stores');
    t.same(existsSync(dir) ? readdirSync(dir) : [], [], `no store left on the ${s} stand-in`);
    t.same(readdirSync(path.join(sandbox, s)).filter((n) => n !== 'stores'), [], `nothing else on the ${s} stand-in (no probe or temp files)`);
  }
});
