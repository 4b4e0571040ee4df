/**
 * Bad input: `strata local` refuses bad configuration with exit code 2 and one
 * clear line, leaving no mount behind; master and worker answer malformed HTTP
 * with a 4xx `{code, message}` and keep serving.
 */

import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { AddressInfo, connect, createServer } from 'node:net';
import { request } from 'undici';
import { CLI, startLocal, tempRoot, isMounted, forceUnmount, LocalCluster } from '../helpers/cluster';
import { isErrorCode } from '../../src/common/errors';
import { PINNED_REPORT_MAX } from '../../src/common/protocol';

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment without any STRATA_* setting of the person running the tests. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STRATA_')) env[k] = v;
  return env;
}

/** Pids whose command line mentions `needle` (our temp dirs are unique). */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Runs `strata local ARGS` expecting it to fail fast. Should it start instead, the
 * whole process group is killed after 30 s and the mount is removed, so a wrong
 * result never leaves anything behind.
 */
function runLocalExpectingFailure(args: string[], mountDir: string): Promise<Exit> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'local', '--master-port', '0', '--worker-port', '0', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 30_000);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      forceUnmount(mountDir);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

t.test('strata local refuses bad configuration with exit code 2', async (t) => {
  const root = tempRoot('strata-badstart-');
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const r = (p: string) => path.join(root, p);
  await fsp.mkdir(r('mnt'));
  await fsp.mkdir(r('full'));
  await fsp.writeFile(r('full/occupant'), 'x');
  await fsp.writeFile(r('a-file'), 'not a directory');
  await fsp.mkdir(r('ufs'));
  const ufs = `file://${r('ufs')}`;

  const cases: { name: string; args: string[]; mount: string; message: RegExp }[] = [
    { name: 'unknown URI scheme', args: ['--home', r('h-scheme'), '--mount', r('mnt'), '--ufs', 'foo://x'], mount: r('mnt'), message: /unknown under-store scheme 'foo'/ },
    { name: 'malformed URI', args: ['--home', r('h-uri'), '--mount', r('mnt'), '--ufs', 'not a uri'], mount: r('mnt'), message: /not a valid under-store URI: 'not a uri'/ },
    { name: 'file:// URI naming a host', args: ['--home', r('h-host'), '--mount', r('mnt'), '--ufs', 'file://somehost/data'], mount: r('mnt'), message: /must not name a host/ },
    { name: 'empty URI', args: ['--home', r('h-empty'), '--mount', r('mnt'), '--ufs', ''], mount: r('mnt'), message: /ufs/ },
    { name: 'explicit mount dir that does not exist', args: ['--home', r('h-nomnt'), '--mount', r('no-such-dir'), '--ufs', ufs], mount: r('no-such-dir'), message: /mount point .*no-such-dir does not exist/ },
    { name: 'non-empty mount dir', args: ['--home', r('h-full'), '--mount', r('full'), '--ufs', ufs], mount: r('full'), message: /mount point .*full is not empty/ },
    { name: 'mount point that is a regular file', args: ['--home', r('h-mntfile'), '--mount', r('a-file'), '--ufs', ufs], mount: r('a-file'), message: /a-file is not a directory/ },
    { name: 'home that is a regular file', args: ['--home', r('a-file'), '--mount', r('mnt'), '--ufs', ufs], mount: r('mnt'), message: /cannot use home directory .*a-file/ },
    { name: 'home below a regular file', args: ['--home', r('a-file/home'), '--mount', r('mnt'), '--ufs', ufs], mount: r('mnt'), message: /cannot use home directory .*a-file\/home/ },
    { name: 'under-store dir that is a regular file', args: ['--home', r('h-ufsfile'), '--mount', r('mnt'), '--ufs', `file://${r('a-file')}`], mount: r('mnt'), message: /under-store .*a-file/ },
    { name: 'misspelt under-store option', args: ['--home', r('h-opt'), '--mount', r('mnt'), '--ufs', 's3://bucket/lake', '--ufs-option', 's3.endpint=http://127.0.0.1:9'], mount: r('mnt'), message: /unknown option 's3\.endpint' for a s3 store \(did you mean 's3\.endpoint'\?\)/ },
    { name: 'port out of range', args: ['--home', r('h-port'), '--mount', r('mnt'), '--ufs', ufs, '--master-port', '70000'], mount: r('mnt'), message: /masterPort='70000'/ },
    { name: 'capacity below one page', args: ['--home', r('h-cap1'), '--mount', r('mnt'), '--ufs', ufs, '--capacity', '10'], mount: r('mnt'), message: /invalid workerCapacity=10 \(from flag [^)]*\): expected at least one page \(pageSize 1048576 bytes, plus 32\)/ },
    { name: 'unparsable capacity', args: ['--home', r('h-cap'), '--mount', r('mnt'), '--ufs', ufs, '--capacity', 'lots'], mount: r('mnt'), message: /workerCapacity='lots'/ },
  ];

  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const res = await runLocalExpectingFailure(c.args, c.mount);
      t.equal(res.signal, null, 'exited by itself, not killed by the 30 s guard');
      t.equal(res.code, 2, 'exit code 2', { stderr: res.stderr, stdout: res.stdout });
      const lines = res.stderr.split('\n').filter((l) => l.length > 0);
      t.equal(lines.length, 1, 'exactly one line on stderr', { stderr: res.stderr });
      t.match(lines[0], /^strata: /, 'starts with "strata: "');
      t.match(lines[0], c.message, 'says what is wrong');
      t.notMatch(lines[0], /\bat \S+:\d+:\d+|Error:/, 'no stack trace or raw error class');
      t.notMatch(res.stdout, /mounted at/, 'never claimed to have mounted');
      t.notOk(isMounted(c.mount), 'no mount left behind');
      t.notOk(isMounted(r('mnt')), 'nothing mounted at the shared mount dir');
      t.same(processesMentioning(root), [], 'no strata process left running');
    });
  }

  t.same(await fsp.readdir(r('mnt')), [], 'the shared mount dir is still empty');
  await t.rejects(fsp.stat(r('no-such-dir')), { code: 'ENOENT' }, 'an explicit mount dir is never created');
  t.equal(await fsp.readFile(r('a-file'), 'utf8'), 'not a directory', 'the regular file is untouched');
  t.same(await fsp.readdir(r('full')), ['occupant'], 'the non-empty dir is untouched');
});

t.test('a part of strata local that cannot start: it exits at once, with nothing left running or mounted', async (t) => {
  // The worker and the mount start while the master does, and wait for its address.
  const root = tempRoot('strata-badstart-');
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => busy.close(() => resolve())));
  const port = String((busy.address() as AddressInfo).port);
  await fsp.mkdir(path.join(root, 'ufs'));
  for (const [part, flag] of [['master', '--master-port'], ['worker', '--worker-port']] as const) {
    await t.test(`the ${part}'s port is taken`, async (t) => {
      const mnt = path.join(root, `mnt-${part}`);
      await fsp.mkdir(mnt);
      const res = await runLocalExpectingFailure(['--home', path.join(root, `home-${part}`), '--mount', mnt, '--ufs', `file://${path.join(root, 'ufs')}`, flag, port], mnt);
      t.equal(res.signal, null, 'exited by itself, not killed by the 30 s guard');
      t.equal(res.code, 1, 'exit code 1', { stderr: res.stderr });
      t.match(res.stderr, /EADDRINUSE/, 'says why');
      t.match(res.stderr, new RegExp(`the ${part} exited during start`), 'and which part');
      t.notMatch(res.stdout, /mounted at/, 'never claimed to have mounted');
      t.notOk(isMounted(mnt), 'no mount left behind');
      t.same(processesMentioning(root), [], 'no strata process left running');
    });
  }
});

t.test('strata local stopped or killed while it starts: nothing is left running or mounted', async (t) => {
  // The worker and the mount start beside the master and wait for its address; a stop at any moment of that
  // must reach them, also when the parent is killed outright (they then see their parent gone).
  const root = tempRoot('strata-stopstart-');
  t.teardown(() => {
    for (const pid of processesMentioning(root)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    return fsp.rm(root, { recursive: true, force: true });
  });
  await fsp.mkdir(path.join(root, 'ufs'));
  const cases = [0.3, 0.7, 1.1, 1.6].flatMap((s) => (['SIGTERM', 'SIGKILL'] as const).map((signal) => ({ s, signal })));
  for (const [i, { s, signal }] of cases.entries()) {
    await t.test(`${signal} after ${s} s`, async (t) => {
      const dir = path.join(root, `run${i}`);
      const mnt = path.join(dir, 'mnt');
      await fsp.mkdir(mnt, { recursive: true });
      const p = spawn(process.execPath, [CLI, 'local', '--home', path.join(dir, 'home'), '--mount', mnt, '--ufs', `file://${path.join(root, 'ufs')}`, '--master-port', '0', '--worker-port', '0'], { stdio: 'ignore', env: cleanEnv() });
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      await new Promise((r) => setTimeout(r, s * 1000));
      p.kill(signal);
      await exited;
      // Each part may still be loading its code when the parent goes; give them time to notice.
      const deadline = Date.now() + 20_000;
      while (processesMentioning(dir).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      t.same(processesMentioning(dir), [], 'no part of it left running');
      t.notOk(isMounted(mnt), 'nothing left mounted');
      forceUnmount(mnt);
    });
  }
});

interface Reply {
  status: number;
  body: unknown;
  text: string;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

/** POSTs a request whose Content-Length announces `length` bytes but sends one, and reads the reply. */
function announceBody(url: string, length: number): Promise<Reply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    let raw = '';
    sock.setTimeout(30_000, () => sock.destroy(new Error('no reply within 30 s')));
    sock.on('connect', () => sock.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n{`));
    sock.on('data', (d) => {
      raw += d.toString();
      // One reply is all we need; the rest of the announced body never comes.
      const end = raw.indexOf('\r\n\r\n');
      const len = /content-length: *(\d+)/i.exec(raw);
      if (end >= 0 && len && raw.length >= end + 4 + Number(len[1])) sock.destroy();
    });
    sock.on('error', reject);
    sock.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
      const text = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      resolve({ status, body, text });
    });
  });
}

t.test('malformed HTTP against a running cluster', async (t) => {
  const c: LocalCluster = await startLocal(t);
  const api = `${c.masterUrl}/api/v1`;

  const send = async (method: Method, url: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> => {
    const res = await request(url, { method, body, headers, headersTimeout: 30_000, bodyTimeout: 30_000 });
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.statusCode, body: parsed, text };
  };
  const json = (method: Method, url: string, body: unknown) => send(method, url, typeof body === 'string' ? body : JSON.stringify(body), { 'content-type': 'application/json' });

  /** The reply must be a 4xx (or exactly `status`) with a `{code, message}` body whose code is one of ours. */
  const check = (t: Tap, what: string, r: Reply, want: { status?: number; code?: string } = {}) => {
    const b = r.body as { code?: unknown; message?: unknown } | undefined;
    const ok =
      r.status >= 400 &&
      r.status < 500 &&
      (want.status === undefined || r.status === want.status) &&
      typeof b === 'object' &&
      b !== null &&
      typeof b.code === 'string' &&
      typeof b.message === 'string' &&
      isErrorCode(b.code) &&
      (want.code === undefined || b.code === want.code);
    t.ok(ok, `${what} -> ${r.status} ${b && typeof b === 'object' ? String(b.code) : ''}`, { status: r.status, body: r.text.slice(0, 300), want });
  };
  type Tap = typeof t;

  // A real file and its first block, for the worker cases.
  await fsp.writeFile(path.join(c.mnt, 'real.txt'), 'real content');
  const info = (await json('GET', `${api}/blocks?path=/real.txt`, undefined)).body as { attrs: { ino: number }; blocks: { id: number }[] };
  const ino = info.attrs.ino;
  const blockId = info.blocks[0]!.id;
  t.ok(Number.isSafeInteger(ino) && Number.isSafeInteger(blockId), `real file: ino ${ino}, block ${blockId}`);

  await t.test('master: bodies that are not the JSON object a route wants', async (t) => {
    const mk = `${api}/mkdir`;
    check(t, 'bad JSON', await json('POST', mk, '{"path": "/x",'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'not JSON at all', await json('POST', mk, 'path=/x'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'empty body with a JSON content type', await send('POST', mk, '', { 'content-type': 'application/json' }), { status: 400 });
    check(t, 'no body', await send('POST', mk), { status: 400 });
    check(t, 'JSON null', await json('POST', mk, 'null'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'JSON array', await json('POST', mk, '["/x"]'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'JSON string', await json('POST', mk, '"/x"'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'JSON number', await json('POST', mk, '42'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'text/plain body', await send('POST', mk, '/x', { 'content-type': 'text/plain' }));
    check(t, 'unknown content type', await send('POST', mk, '<path>/x</path>', { 'content-type': 'application/xml' }));
    check(t, 'deeply nested JSON', await json('POST', mk, '['.repeat(200_000) + ']'.repeat(200_000)), { status: 400 });
    check(t, '__proto__ key', await json('POST', mk, '{"__proto__": {"path": "/proto"}}'), { status: 400 });
  });

  await t.test('master: missing fields and wrong types', async (t) => {
    check(t, 'mkdir {}', await json('POST', `${api}/mkdir`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir path null', await json('POST', `${api}/mkdir`, { path: null }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir path number', await json('POST', `${api}/mkdir`, { path: 42 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir path array', await json('POST', `${api}/mkdir`, { path: ['/x'] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir path object', await json('POST', `${api}/mkdir`, { path: { p: '/x' } }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir mode string', await json('POST', `${api}/mkdir`, { path: '/x', mode: '755' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'mkdir mode boolean', await json('POST', `${api}/mkdir`, { path: '/x', mode: true }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'create closeEmpty string', await json('POST', `${api}/create`, { path: '/x', closeEmpty: 'yes' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'create unknown writeType', await json('POST', `${api}/create`, { path: '/x', closeEmpty: true, writeType: 'FAST' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'create {}', await json('POST', `${api}/create`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'unlink without path', await json('POST', `${api}/unlink`, { name: 'x' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'rmdir without path', await json('POST', `${api}/rmdir`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'rename without dst', await json('POST', `${api}/rename`, { src: '/real.txt' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'rename dst number', await json('POST', `${api}/rename`, { src: '/real.txt', dst: 7 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'setattr without path', await json('POST', `${api}/setattr`, { mode: 0o600 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'setattr atime a number', await json('POST', `${api}/setattr`, { path: '/real.txt', atime: 5 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'setattr mtime without nsec', await json('POST', `${api}/setattr`, { path: '/real.txt', mtime: { sec: 1 } }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'setattr mtime.sec string', await json('POST', `${api}/setattr`, { path: '/real.txt', mtime: { sec: '1', nsec: 0 } }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/begin ino string', await json('POST', `${api}/write/begin`, { ino: String(ino) }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit {}', await json('POST', `${api}/write/commit`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/abandon {}', await json('POST', `${api}/write/abandon`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/abandon containerId "x"', await json('POST', `${api}/write/abandon`, { ino, containerId: 'x' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit blocks not an array', await json('POST', `${api}/write/commit`, { ino, containerId: 1, size: 0, workerId: 1, blocks: 'none' }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit block null', await json('POST', `${api}/write/commit`, { ino, containerId: 1, size: 0, workerId: 1, blocks: [null] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit block without length', await json('POST', `${api}/write/commit`, { ino, containerId: 1, size: 0, workerId: 1, blocks: [{ id: 1 }] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'register without address', await json('POST', `${api}/workers/register`, { capacityBytes: 1, usedBytes: 0 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'register with a non-http address', await json('POST', `${api}/workers/register`, { address: 'file:///etc', capacityBytes: 1, usedBytes: 0 }), { status: 400, code: 'BAD_REQUEST' });
    const registration = { uuid: '0123456789abcdef', address: 'http://127.0.0.1:1', tiers: [{ name: 'SSD', dir: '/tmp/x', capacityBytes: 1, usedBytes: 0 }], pageSize: 4096, capacityBytes: 1, usedBytes: 0, blocks: [] };
    for (const leftovers of ['x', [null], [{ mountUri: 'file:///x' }], [{ mountUri: 'file:///x', handle: 7 }], [{ mountUri: '', handle: '{}' }]]) {
      check(t, `register leftovers ${JSON.stringify(leftovers)}`, await json('POST', `${api}/workers/register`, { ...registration, leftovers }), { status: 400, code: 'BAD_REQUEST' });
    }
    t.notOk(((await (await fetch(`${api}/workers`)).json()) as { address: string }[]).some((w) => w.address === registration.address), 'no worker registered by a refused register');
    check(t, 'register blocks not ids', await json('POST', `${api}/workers/register`, { address: 'http://127.0.0.1:1', capacityBytes: 1, usedBytes: 0, blocks: ['a'] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'heartbeat {}', await json('POST', `${api}/workers/heartbeat`, {}), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'heartbeat addedBlocks an object', await json('POST', `${api}/workers/heartbeat`, { workerId: 1, capacityBytes: 1, usedBytes: 0, addedBlocks: { 0: 1 } }), { status: 400, code: 'BAD_REQUEST' });
    const beat = { workerId: 1, capacityBytes: 1, usedBytes: 0, tiers: [], addedBlocks: [], removedBlocks: [], pinVersion: 0 };
    for (const pinned of ['x', { 0: 1 }, [-1], [1.5], ['1'], [null], [2 ** 53], Array.from({ length: PINNED_REPORT_MAX + 1 }, (_, i) => i)]) {
      check(t, `heartbeat pinned ${JSON.stringify(pinned).slice(0, 40)}`, await json('POST', `${api}/workers/heartbeat`, { ...beat, pinned }), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'stat without path', await send('GET', `${api}/stat`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'stat with two paths', await send('GET', `${api}/stat?path=/a&path=/b`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'list without path', await send('GET', `${api}/list`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'blocks without path or ino', await send('GET', `${api}/blocks`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'ufs-location without ino', await send('GET', `${api}/ufs-location`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'block-source without id', await send('GET', `${api}/block-source`), { status: 400, code: 'BAD_REQUEST' });
  });

  await t.test('master: bad paths', async (t) => {
    const bad: [string, string, string][] = [
      ['relative path', 'relative/x', 'INVALID_ARGUMENT'],
      ['empty path', '', 'INVALID_ARGUMENT'],
      ['path with ..', '/a/../x', 'INVALID_ARGUMENT'],
      ['path that is ..', '/..', 'INVALID_ARGUMENT'],
      ['path with .', '/./x', 'INVALID_ARGUMENT'],
      ['path escaping the root', '/../../etc/passwd', 'INVALID_ARGUMENT'],
      ['path with a NUL byte', '/a\u0000b', 'INVALID_ARGUMENT'],
      ['path with U+FFFD (bad UTF-8)', '/a\uFFFDb', 'INVALID_ARGUMENT'],
      ['path with a lone UTF-16 surrogate (no UTF-8 form)', '/a\ud800b', 'INVALID_ARGUMENT'],
      ['path with a lone low surrogate', '/a\udc00', 'INVALID_ARGUMENT'],
      ['300-byte name', '/' + 'n'.repeat(300), 'NAME_TOO_LONG'],
      ['256-byte multi-byte name', '/' + 'é'.repeat(128), 'NAME_TOO_LONG'],
      ['path over 4096 bytes', '/' + Array.from({ length: 40 }, () => 'd'.repeat(200)).join('/'), 'NAME_TOO_LONG'],
    ];
    for (const [what, p, code] of bad) {
      check(t, `mkdir: ${what}`, await json('POST', `${api}/mkdir`, { path: p }), { status: 400, code });
      check(t, `create: ${what}`, await json('POST', `${api}/create`, { path: p }), { status: 400, code });
      // A URL carries UTF-8 bytes: a lone surrogate cannot be in one (only in a JSON body).
      if (!/[\ud800-\udfff]/.test(p)) {
        check(t, `stat: ${what}`, await send('GET', `${api}/stat?path=${encodeURIComponent(p)}`), { status: 400, code });
        check(t, `list: ${what}`, await send('GET', `${api}/list?path=${encodeURIComponent(p)}`), { status: 400, code });
      }
      check(t, `unlink: ${what}`, await json('POST', `${api}/unlink`, { path: p }), { status: 400, code });
      check(t, `rename to: ${what}`, await json('POST', `${api}/rename`, { src: '/real.txt', dst: p }), { status: 400, code });
      check(t, `setattr: ${what}`, await json('POST', `${api}/setattr`, { path: p, mode: 0o644 }), { status: 400, code });
    }
    check(t, 'stat of a missing path', await send('GET', `${api}/stat?path=/no/such/thing`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'list of a file', await send('GET', `${api}/list?path=/real.txt`), { status: 409, code: 'NOT_DIRECTORY' });
    check(t, 'mkdir below a file', await json('POST', `${api}/mkdir`, { path: '/real.txt/sub' }));
    check(t, 'stat with malformed %-escapes', await send('GET', `${api}/stat?path=%E0%A4%A`));
    // Nothing named after any of these appeared.
    const names = await fsp.readdir(c.mnt);
    t.same(names.sort(), ['real.txt'], 'no bad name reached the namespace');
    t.same((await fsp.readdir(c.ufsDir)).sort(), ['real.txt'], 'no bad name reached the under-store');
    t.equal(await fsp.readFile(path.join(c.ufsDir, 'real.txt'), 'utf8'), 'real content', 'the rename attempts left the file alone');
  });

  await t.test('master: text that is not valid UTF-8 in symlink targets and attribute names; unknown setxattr flags', async (t) => {
    check(t, 'a symlink target with a lone surrogate', await json('POST', `${api}/symlink`, { path: '/sl', target: 'a\udc00' }), { status: 400, code: 'INVALID_ARGUMENT' });
    check(t, 'an attribute name with a lone surrogate', await json('POST', `${api}/xattr/set`, { path: '/real.txt', name: 'user.\udc00x', value: 'AQ==' }), { status: 400, code: 'INVALID_ARGUMENT' });
    check(t, 'setxattr flags 4096', await json('POST', `${api}/xattr/set`, { path: '/real.txt', name: 'user.x', value: 'AQ==', flags: 4096 }), { status: 400, code: 'INVALID_ARGUMENT' });
  });

  await t.test('master: negative, fractional and huge numbers', async (t) => {
    const mk = (extra: Record<string, unknown>) => json('POST', `${api}/mkdir`, { path: '/nums', ...extra });
    const cr = (extra: Record<string, unknown>) => json('POST', `${api}/create`, { path: '/nums-file', ...extra });
    for (const [what, extra] of [
      ['mode -1', { mode: -1 }],
      ['mode 1.5', { mode: 1.5 }],
      ['mode 1e300', { mode: 1e300 }],
      ['mode 2**53', { mode: 2 ** 53 }],
      ['mode with file-type bits', { mode: 0o170755 }],
      ['mode 2**40', { mode: 2 ** 40 }],
      ['uid -1', { uid: -1 }],
      ['uid 2**32 (would wrap to root)', { uid: 2 ** 32 }],
      ['gid 2**40', { gid: 2 ** 40 }],
      ['gid 0.5', { gid: 0.5 }],
    ] as [string, Record<string, unknown>][]) {
      check(t, `mkdir ${what}`, await mk(extra), { status: 400, code: 'BAD_REQUEST' });
      check(t, `create ${what}`, await cr(extra), { status: 400, code: 'BAD_REQUEST' });
      check(t, `setattr ${what}`, await json('POST', `${api}/setattr`, { path: '/real.txt', ...extra }), { status: 400, code: 'BAD_REQUEST' });
    }
    for (const [what, ts] of [
      ['negative nsec', { sec: 1, nsec: -1 }],
      ['nsec 1e9', { sec: 1, nsec: 1e9 }],
      ['fractional sec', { sec: 1.5, nsec: 0 }],
      ['sec beyond a JS Date', { sec: Number.MAX_SAFE_INTEGER, nsec: 0 }],
      ['sec far before the epoch', { sec: -(2 ** 50), nsec: 0 }],
    ] as [string, unknown][]) {
      check(t, `setattr mtime ${what}`, await json('POST', `${api}/setattr`, { path: '/real.txt', mtime: ts }), { status: 400, code: 'BAD_REQUEST' });
      check(t, `setattr atime ${what}`, await json('POST', `${api}/setattr`, { path: '/real.txt', atime: ts }), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'write/begin ino 0', await json('POST', `${api}/write/begin`, { ino: 0 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/begin ino -5', await json('POST', `${api}/write/begin`, { ino: -5 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit size -1', await json('POST', `${api}/write/commit`, { ino, containerId: 1, size: -1, workerId: 1, blocks: [] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'write/commit block id -1', await json('POST', `${api}/write/commit`, { ino, containerId: 1, size: 0, workerId: 1, blocks: [{ id: -1, length: 0 }] }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'register capacity -1', await json('POST', `${api}/workers/register`, { address: 'http://127.0.0.1:1', capacityBytes: -1, usedBytes: 0 }), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'register capacity 1e400 (Infinity)', await json('POST', `${api}/workers/register`, '{"address":"http://127.0.0.1:1","capacityBytes":1e400,"usedBytes":0}'), { status: 400, code: 'BAD_REQUEST' });
    for (const q of ['ino=abc', 'ino=-1', 'ino=1.5', 'ino=1e3', 'ino=99999999999999999999', 'ino=0x10', 'ino=']) {
      check(t, `blocks?${q}`, await send('GET', `${api}/blocks?${q}`));
      check(t, `ufs-location?${q}`, await send('GET', `${api}/ufs-location?${q}`), { status: 400, code: 'BAD_REQUEST' });
      check(t, `block-source?${q.replace('ino', 'id')}`, await send('GET', `${api}/block-source?${q.replace('ino', 'id')}`), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'blocks of an inode that does not exist', await send('GET', `${api}/blocks?ino=987654321`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'block-source of a block that does not exist', await send('GET', `${api}/block-source?id=987654321`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'ufs-location of the root directory', await send('GET', `${api}/ufs-location?ino=1`), { status: 409, code: 'IS_DIRECTORY' });
    check(t, 'write/begin of an inode that does not exist', await json('POST', `${api}/write/begin`, { ino: 987654321 }), { status: 404, code: 'NOT_FOUND' });

    await t.rejects(fsp.stat(path.join(c.mnt, 'nums')), { code: 'ENOENT' }, 'no directory made from a bad mkdir');
    await t.rejects(fsp.stat(path.join(c.mnt, 'nums-file')), { code: 'ENOENT' }, 'no file made from a bad create');
    const st = await fsp.stat(path.join(c.mnt, 'real.txt'));
    t.ok(st.isFile(), 'real.txt is still a regular file');
    t.equal(st.mode & 0o7777, 0o644, 'its mode is unchanged');
    t.ok(st.mtime.getFullYear() > 2000 && st.mtime.getFullYear() < 3000, 'its mtime is unchanged');
  });

  await t.test('master: unknown routes, wrong methods, oversized bodies', async (t) => {
    check(t, 'GET /nope', await send('GET', `${c.masterUrl}/nope`), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'GET /api/v1/nope', await send('GET', `${api}/nope`), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'GET /api/v2/stat', await send('GET', `${c.masterUrl}/api/v2/stat?path=/`), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'POST /api/v1', await json('POST', api, {}), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'GET /api/v1/mkdir', await send('GET', `${api}/mkdir?path=/x`));
    check(t, 'PUT /api/v1/create', await json('PUT', `${api}/create`, { path: '/x' }));
    check(t, 'DELETE /api/v1/unlink', await send('DELETE', `${api}/unlink?path=/real.txt`));
    check(t, 'POST /api/v1/stat', await json('POST', `${api}/stat`, { path: '/' }));
    check(t, 'PATCH /healthz', await send('PATCH', `${c.masterUrl}/healthz`));
    check(t, 'bad %-encoding in the URL path', await send('GET', `${api}/%zz`), { status: 400, code: 'BAD_REQUEST' });

    const big = JSON.stringify({ path: '/big', pad: 'a'.repeat(1024 * 1024 + 10) });
    check(t, 'JSON body over 1 MiB', await json('POST', `${api}/mkdir`, big), { status: 413, code: 'PAYLOAD_TOO_LARGE' });
    // Block reports of big caches may exceed 1 MiB (the limit is 64 MiB there), but are still checked entry by entry.
    const bigList = JSON.stringify({ workerId: 1, capacityBytes: 1, usedBytes: 0, tiers: [], pinVersion: 0, addedBlocks: Array.from({ length: 200_000 }, (_, i) => i) });
    t.ok(bigList.length > 1024 * 1024);
    check(t, 'heartbeat with a malformed block report over 1 MiB', await json('POST', `${api}/workers/heartbeat`, bigList), { status: 400, code: 'BAD_REQUEST' });
    // Announced, not sent: the master answers from the header, and a client still writing 64 MiB would get EPIPE.
    const huge = await announceBody(`${api}/workers/heartbeat`, 64 * 1024 * 1024 + 10);
    check(t, 'heartbeat body over 64 MiB', huge, { status: 413, code: 'PAYLOAD_TOO_LARGE' });
    await t.rejects(fsp.stat(path.join(c.mnt, 'big')), { code: 'ENOENT' }, 'the oversized mkdir did nothing');
  });

  await t.test('worker: block reads', async (t) => {
    const w = c.workerUrl;
    for (const id of ['abc', '-1', '1.5', '1e3', '0x10', '99999999999999999999', '9007199254740993']) {
      check(t, `GET /blocks/${id}`, await send('GET', `${w}/blocks/${id}`), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'GET /blocks/%zz', await send('GET', `${w}/blocks/%zz`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'GET /blocks/<200 digits>', await send('GET', `${w}/blocks/${'1'.repeat(200)}`));
    check(t, 'a block id that does not exist', await send('GET', `${w}/blocks/987654321`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'GET /blocks/ (no id)', await send('GET', `${w}/blocks/`));
    for (const q of ['offset=-1', 'offset=abc', 'offset=1.5', 'offset=99999999999999999', 'length=-1', 'length=x', 'length=99999999999999999', 'offset=9007199254740993']) {
      check(t, `GET /blocks/${blockId}?${q}`, await send('GET', `${w}/blocks/${blockId}?${q}`), { status: 400, code: 'BAD_REQUEST' });
    }
    const ok = await send('GET', `${w}/blocks/${blockId}?offset=5&length=3`);
    t.equal(ok.status, 200, 'a good range still reads');
    t.equal(ok.text, 'con');
    const past = await send('GET', `${w}/blocks/${blockId}?offset=${Number.MAX_SAFE_INTEGER}`);
    t.equal(past.status, 200, 'an offset past the end reads nothing, like pread');
    t.equal(past.text, '');
  });

  await t.test('worker: file writes', async (t) => {
    const w = c.workerUrl;
    const put = (q: string, body: string | Buffer = Buffer.alloc(0)) => send('PUT', `${w}/files/${q}`, body, { 'content-type': 'application/octet-stream' });
    check(t, 'non-numeric ino', await put('abc?container=1&blockSize=4096&size=0'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'negative ino', await put('-3?container=1&blockSize=4096&size=0'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'no query', await put(`${ino}`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'no container', await put(`${ino}?blockSize=4096&size=0`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'container abc', await put(`${ino}?container=abc&blockSize=4096&size=0`), { status: 400, code: 'BAD_REQUEST' });
    // Block ids of these containers are past 2^53: once, such a write left an id that made the master refuse every later heartbeat.
    const beatBefore = ((await json('GET', `${api}/workers`, undefined)).body as { lastHeartbeatMs: number }[])[0]!.lastHeartbeatMs;
    for (const big of [2 ** 33, Number.MAX_SAFE_INTEGER]) {
      check(t, `container ${big}`, await put(`${ino}?container=${big}&blockSize=4096&size=10&writeType=MUST_CACHE`, 'helloworld'), { status: 400, code: 'BAD_REQUEST' });
      check(t, `a persist of container ${big}`, await send('POST', `${w}/persist/${ino}?container=${big}&blocks=1`), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'stream given twice', await put(`${ino}?container=1&blockSize=4096&size=0&stream=a&stream=b`), { status: 400, code: 'BAD_REQUEST' });
    let beatAfter = beatBefore;
    for (let i = 0; i < 100 && beatAfter <= beatBefore + 2500; i++) {
      await new Promise((r) => setTimeout(r, 100));
      beatAfter = ((await json('GET', `${api}/workers`, undefined)).body as { lastHeartbeatMs: number }[])[0]!.lastHeartbeatMs;
    }
    t.ok(beatAfter > beatBefore + 2500, `the worker's heartbeats are still taken (${beatAfter - beatBefore} ms later)`);
    check(t, 'no blockSize', await put(`${ino}?container=1&size=0`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'blockSize too small', await put(`${ino}?container=1&blockSize=100&size=0`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'blockSize too large', await put(`${ino}?container=1&blockSize=${2 ** 31}&size=0`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'no size', await put(`${ino}?container=1&blockSize=4096`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'negative size', await put(`${ino}?container=1&blockSize=4096&size=-1`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'huge size', await put(`${ino}?container=1&blockSize=4096&size=99999999999999999`), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'an inode that does not exist', await put(`987654321?container=1&blockSize=4096&size=0`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'the root directory', await put(`1?container=1&blockSize=4096&size=0`), { status: 409, code: 'IS_DIRECTORY' });
    // Nothing reaches the store for a write the master did not begin (a write-through asks it first).
    check(t, 'a container never begun', await put(`${ino}?container=987654&blockSize=4096&size=5`, 'owned'), { status: 404, code: 'NOT_FOUND' });
    const begun = (await json('POST', `${api}/write/begin`, { ino })).body as { containerId: number };
    const cid = begun.containerId;
    check(t, 'body longer than the declared size', await put(`${ino}?container=${cid}&blockSize=4096&size=3`, 'far too long a body'), { status: 400, code: 'BAD_REQUEST' });
    check(t, 'body shorter than the declared size', await put(`${ino}?container=${cid}&blockSize=4096&size=30`, 'short'), { status: 400, code: 'BAD_REQUEST' });
    // Extents: a frame far past the declared size is refused before any zeros go to the store.
    const frame = Buffer.alloc(13);
    frame.writeBigUInt64BE(BigInt(2 ** 40), 0);
    frame.writeUInt32BE(1, 8);
    check(t, 'an extent frame far past the declared size', await put(`${ino}?container=${cid}&blockSize=4096&size=5&format=extents`, frame), { status: 400, code: 'BAD_REQUEST' });
    // No content-type: no body stream at all. An empty write is still a write (it fails on the declared size only).
    check(t, 'a body-less write of 5 bytes', await send('PUT', `${w}/files/${ino}?container=${cid}&blockSize=4096&size=5`), { status: 400, code: 'BAD_REQUEST' });
    // A same-host hand-over names a file in a tier's incoming dir, and nothing else.
    for (const name of ['../../../../etc/passwd', '..%2F..%2Fetc%2Fpasswd', '/etc/passwd', 'abc', 'a'.repeat(65), 'x%00yyyyyyyyy', 'with.dotdotdot']) {
      check(t, `local file name ${name.slice(0, 24)}`, await put(`${ino}?container=${cid}&blockSize=4096&size=5&local=${name}&tier=SSD`), { status: 400, code: 'BAD_REQUEST' });
    }
    check(t, 'a local file that is not there', await put(`${ino}?container=${cid}&blockSize=4096&size=5&local=deadbeefdeadbeef&tier=SSD`), { status: 404, code: 'NOT_FOUND' });
    check(t, 'a tier that does not exist', await put(`${ino}?container=${cid}&blockSize=4096&size=5&local=deadbeefdeadbeef&tier=NOPE`), { status: 400, code: 'BAD_REQUEST' });
    // A persist is only of the file's current version, with its block count.
    check(t, 'a persist of another version', await send('POST', `${w}/persist/${ino}?container=${cid}&blocks=1`), { status: 409, code: 'BUSY' });
    check(t, 'a persist of more blocks than a file has', await send('POST', `${w}/persist/${ino}?container=1&blocks=${2 ** 32}`), { status: 400, code: 'BAD_REQUEST' });
    // A second write of a container already being written: refused, not interleaved with the first.
    const second = await json('POST', `${api}/write/begin`, { ino });
    const cid2 = (second.body as { containerId: number }).containerId;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const slow = Readable.from(
      (async function* () {
        yield Buffer.alloc(4096, 1);
        await held; // the first write stays open until the second one was answered
      })(),
    );
    const first = send('PUT', `${w}/files/${ino}?container=${cid2}&blockSize=4096&size=8192&writeType=MUST_CACHE`, slow as unknown as Buffer, { 'content-type': 'application/octet-stream' });
    await new Promise((r) => setTimeout(r, 300));
    check(t, 'a second write of a container in flight', await put(`${ino}?container=${cid2}&blockSize=4096&size=4096&writeType=MUST_CACHE`, Buffer.alloc(4096, 2)), { status: 409, code: 'BUSY' });
    release();
    check(t, 'the first write, cut short', await first, { status: 400, code: 'BAD_REQUEST' });
    // A FIFO in the incoming dir (writable by all): answered at once, never a thread-pool thread blocked forever.
    const incoming = (await fsp.readdir(c.home, { recursive: true, withFileTypes: true })).find((e) => e.isDirectory() && e.name === '.incoming');
    t.ok(incoming, 'the worker has an incoming dir');
    if (incoming) {
      const fifos = ['fifofifo1', 'fifofifo2', 'fifofifo3', 'fifofifo4', 'fifofifo5'];
      for (const f of fifos) spawnSync('mkfifo', [path.join(incoming.parentPath ?? incoming.path, incoming.name, f)]);
      const answers = await Promise.all(fifos.map(async (f) => (await json('POST', `${api}/write/begin`, { ino }).then((r) => put(`${ino}?container=${(r.body as { containerId: number }).containerId}&blockSize=4096&size=5&local=${f}&tier=SSD`)))));
      answers.forEach((r, i) => check(t, `a FIFO handed over (${i + 1} of ${fifos.length})`, r, { status: 400, code: 'BAD_REQUEST' }));
    }
    t.equal(await fsp.readFile(path.join(c.ufsDir, 'real.txt'), 'utf8'), 'real content', 'rejected writes left the under-store copy alone');
    t.same((await fsp.readdir(c.ufsDir)).sort(), ['real.txt'], 'and left no temp files behind');
    t.equal(await fsp.readFile(path.join(c.mnt, 'real.txt'), 'utf8'), 'real content', 'the mount still reads the old content');
  });

  await t.test('worker: unknown routes and wrong methods', async (t) => {
    const w = c.workerUrl;
    check(t, 'GET /nope', await send('GET', `${w}/nope`), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'GET /api/v1/stat on the worker', await send('GET', `${w}/api/v1/stat?path=/`), { status: 404, code: 'ROUTE_NOT_FOUND' });
    check(t, 'POST /blocks/1', await send('POST', `${w}/blocks/1`, 'x', { 'content-type': 'application/octet-stream' }));
    check(t, 'DELETE /blocks/1', await send('DELETE', `${w}/blocks/1`));
    check(t, 'GET /files/1', await send('GET', `${w}/files/1`));
    check(t, 'DELETE /files/1', await send('DELETE', `${w}/files/1`));
  });

  await t.test('worker: no URL reaches the file system by path', async (t) => {
    const w = c.workerUrl;
    // A file beside the worker's block dirs, and one far outside: neither may come back.
    const sentinel = `sentinel-${Date.now()}`;
    await fsp.writeFile(path.join(c.home, 'worker', 'sentinel'), sentinel);
    const tries = [
      '/blocks/..%2Fsentinel',
      '/blocks/..%2F..%2Fsentinel',
      '/blocks/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd',
      '/blocks/%2Fetc%2Fpasswd',
      '/blocks/1%2F..%2F..%2Fsentinel',
      '/blocks/1%00',
      '/blocks/~root',
      `/blocks/${encodeURIComponent(path.join(c.home, 'worker', 'sentinel'))}`,
      '/blocks/1/..%2F..%2Fsentinel/load',
      '/files/..%2F..%2Fsentinel?container=1&blockSize=4096&size=0',
      '/persist/..%2Fsentinel?container=1&blocks=1',
      '/blocks/1?offset=0&length=10&path=/etc/passwd',
      '/blocks/1?file=../../sentinel',
    ];
    for (const p of tries) {
      for (const method of ['GET', 'POST', 'PUT'] as const) {
        const r = await send(method, `${w}${p}`, method === 'GET' ? undefined : '', method === 'GET' ? {} : { 'content-type': 'application/octet-stream' });
        t.ok(r.status >= 400 && r.status < 500, `${method} ${p} -> ${r.status}`);
        t.notMatch(r.text, sentinel, 'the sentinel never comes back');
        t.notMatch(r.text, /root:x?:0:0/, 'nor /etc/passwd');
      }
    }
  });

  await t.test('both processes and the mount survive', async (t) => {
    for (const [who, url] of [
      ['master', c.masterUrl],
      ['worker', c.workerUrl],
    ]) {
      const r = await send('GET', `${url}/healthz`);
      t.equal(r.status, 200, `${who} answers /healthz`);
      t.same(r.body, { ok: true });
    }
    const st = await send('GET', `${api}/stat?path=/real.txt`);
    t.equal(st.status, 200, 'the master still serves the namespace');
    const data = Buffer.from(`after the storm ${Date.now()}\n`.repeat(1000));
    await fsp.writeFile(path.join(c.mnt, 'after.txt'), data);
    t.ok((await fsp.readFile(path.join(c.mnt, 'after.txt'))).equals(data), 'write and read back through the mount');
    t.ok((await fsp.readFile(path.join(c.ufsDir, 'after.txt'))).equals(data), 'and it reached the under-store');
    t.equal(await fsp.readFile(path.join(c.mnt, 'real.txt'), 'utf8'), 'real content', 'the earlier file is intact');
    t.notOk(/stopped unexpectedly/.test(c.stderr()), 'no part of strata local stopped', { stderr: c.stderr().slice(-2000) });
    t.equal(c.proc.exitCode, null, 'strata local is still running');
  });

  t.equal(await c.stop(), 0, 'SIGTERM stops the cluster cleanly');
  t.notOk(isMounted(c.mnt), 'unmounted');
});
