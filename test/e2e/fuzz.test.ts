/**
 * Hostile input in bulk: over 10,000 malformed requests (bad JSON, wrong types,
 * bad paths, negative and overflowing numbers, huge bodies and headers, broken
 * HTTP, unknown routes, wrong methods, missing or wrong tokens) and slowloris
 * connections against master and worker of a cluster with auth on and short
 * timeouts. Each gets a 4xx, or a closed connection for slow and oversized ones,
 * within a bound; both daemons stay up with bounded memory; the namespace and the
 * cached bytes are the same afterwards. The PRNG is seeded: a failure replays.
 */

import t from 'tap';
import { createHash } from 'node:crypto';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import * as path from 'node:path';
import { Pool } from 'undici';
import { startLocal, isMounted } from '../helpers/cluster';

const SEED = Number(process.env.STRATA_FUZZ_SEED ?? 20261126);
const HEADERS_TIMEOUT_MS = 2000;
const REQUEST_TIMEOUT_MS = 3000;
const MAX_CONNECTIONS = 200;
/** No reply may take longer than this, slow requests included. */
const REPLY_BOUND_MS = 10_000;

/** mulberry32: small, seeded, good enough to pick cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pids of the daemons of this cluster, by role, found by their command lines. */
function daemonPids(home: string): { master: number; worker: number } {
  const found: Record<string, number> = {};
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (!argv.includes(home)) continue;
      for (const role of ['master', 'worker']) if (argv.includes(role)) found[role] = Number(d);
    } catch {
      // gone
    }
  }
  if (!found.master || !found.worker) throw new Error(`cannot find the daemons of ${home}`);
  return { master: found.master, worker: found.worker };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface RawResult {
  status: number;
  closed: boolean;
  ms: number;
}

/**
 * Writes raw bytes (all at once, or `chunks` spaced `gapMs` apart) and waits for
 * a status line or the server closing. Never longer than `limitMs`.
 */
function raw(url: string, chunks: (string | Buffer)[], gapMs = 0, limitMs = REPLY_BOUND_MS + 5000): Promise<RawResult> {
  const u = new URL(url);
  const started = Date.now();
  return new Promise((resolve) => {
    const sock: Socket = connect(Number(u.port), u.hostname);
    let buf = '';
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(guard);
      sock.destroy();
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf)?.[1] ?? 0);
      resolve({ status, closed, ms: Date.now() - started });
    };
    const guard = setTimeout(() => finish(false), limitMs);
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (/^HTTP\/1\.[01] \d{3}/.test(buf)) finish(false);
    });
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      let i = 0;
      const next = () => {
        if (done || sock.destroyed) return;
        if (i >= chunks.length) return;
        sock.write(chunks[i++]!, () => undefined);
        if (gapMs > 0) timer = setTimeout(next, gapMs);
        else next();
      };
      next();
    });
  });
}

t.test('10,000+ hostile requests leave master and worker up, bounded and unchanged', async (t) => {
  const c = await startLocal(t, {
    args: ['--auth', 'token'],
    env: {
      STRATA_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      STRATA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      STRATA_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
    },
  });
  const token = readFileSync(path.join(c.home, 'token'), 'utf8').trim();
  const auth = { authorization: `Bearer ${token}` };
  const pools = { master: new Pool(c.masterUrl, { connections: 16 }), worker: new Pool(c.workerUrl, { connections: 16 }) };
  t.teardown(async () => {
    await pools.master.destroy();
    await pools.worker.destroy();
  });
  const api = '/api/v1';

  const get = async (who: 'master' | 'worker', p: string): Promise<{ status: number; body: Buffer }> => {
    const r = await pools[who].request({ method: 'GET', path: p, headers: auth, headersTimeout: 10_000, bodyTimeout: 10_000 });
    return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) };
  };
  const getJson = async <T>(p: string): Promise<T> => {
    const r = await get('master', p);
    if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body.toString()}`);
    return JSON.parse(r.body.toString()) as T;
  };

  // ---- a namespace with cached data ----------------------------------------
  const m = (p: string) => path.join(c.mnt, p);
  await fsp.mkdir(m('dir/sub'), { recursive: true });
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 10)) & 0xff;
  await fsp.writeFile(m('big.bin'), big);
  await fsp.writeFile(m('dir/small.txt'), 'small file\n');
  await fsp.writeFile(m('dir/sub/deep.txt'), 'deep\n'.repeat(100));
  await fsp.symlink('dir/small.txt', m('link'));
  await fsp.chmod(m('dir/small.txt'), 0o600);

  type Attrs = { ino: number; name?: string; type: string; size: number; mode: number; uid: number; gid: number; nlink: number; mtime: unknown; ctime: unknown; atime?: unknown; persistState?: string };
  /** Every node below `/` with its attributes (atime aside: reads may move it). */
  const tree = async (): Promise<Record<string, unknown>> => {
    const out: Record<string, unknown> = {};
    const walk = async (p: string): Promise<void> => {
      const { entries } = await getJson<{ entries: Attrs[] }>(`${api}/list?path=${encodeURIComponent(p)}`);
      for (const e of entries) {
        const child = p === '/' ? `/${e.name}` : `${p}/${e.name}`;
        const { atime: _a, ...rest } = await getJson<Attrs>(`${api}/stat?path=${encodeURIComponent(child)}`);
        out[child] = rest;
        if (e.type === 'directory') await walk(child);
      }
    };
    await walk('/');
    return out;
  };
  const bigInfo = await getJson<{ blocks: { id: number; length: number }[] }>(`${api}/blocks?path=/big.bin`);
  /** Bytes of big.bin as the worker serves them from its cache. */
  const cachedDigest = async (): Promise<string> => {
    const h = createHash('sha256');
    for (const b of bigInfo.blocks) {
      const r = await get('worker', `/blocks/${b.id}?offset=0&length=${b.length}`);
      if (r.status !== 200) throw new Error(`block ${b.id}: ${r.status}`);
      h.update(r.body);
    }
    return h.digest('hex');
  };
  const cacheState = async () => {
    const metrics = (await get('worker', '/metrics')).body.toString();
    const used = metrics.split('\n').filter((l) => l.startsWith('strata_worker_cache_used_bytes') || l.startsWith('strata_worker_cache_blocks'));
    const workers = (await getJson<{ id: number; address: string; live: boolean; usedBytes: number }[]>(`${api}/workers`)).map((w) => ({ id: w.id, address: w.address, live: w.live, usedBytes: w.usedBytes }));
    return { du: await getJson(`${api}/du?path=/`), used, workers, mounts: await getJson(`${api}/mounts`) };
  };
  t.equal(createHash('sha256').update(big).digest('hex'), await cachedDigest(), 'big.bin is cached and served whole');
  // Let a heartbeat carry the block report, so the master's view is settled before the snapshot.
  await new Promise((r) => setTimeout(r, 2500));
  const before = { tree: await tree(), cache: await cacheState(), digest: await cachedDigest() };
  t.ok(Object.keys(before.tree).length >= 6, 'the snapshot covers the tree');

  const pids = daemonPids(c.home);
  const baseRss = { master: rssBytes(pids.master), worker: rssBytes(pids.worker) };
  const peakRss = { ...baseRss };
  const sampler = setInterval(() => {
    for (const who of ['master', 'worker'] as const) if (alive(pids[who])) peakRss[who] = Math.max(peakRss[who], rssBytes(pids[who]));
  }, 100);
  t.teardown(() => clearInterval(sampler));

  // ---- the cases --------------------------------------------------------------
  const rnd = prng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const MASTER_POSTS = ['mkdir', 'create', 'link', 'symlink', 'mknod', 'xattr/set', 'xattr/get', 'xattr/list', 'xattr/remove', 'unlink', 'rmdir', 'rename', 'setattr', 'write/begin', 'write/commit', 'write/abandon', 'workers/register', 'workers/heartbeat', 'persist', 'sync', 'mount', 'unmount', 'pin', 'ttl', 'free'];
  const MASTER_GETS = ['stat', 'list', 'lookup', 'blocks', 'ufs-location', 'block-source', 'du'];
  const FIELDS = ['path', 'parent', 'name', 'ino', 'mode', 'uid', 'gid', 'src', 'dst', 'newParent', 'newName', 'target', 'type', 'rdev', 'value', 'flags', 'atime', 'mtime', 'blocks', 'containerId', 'size', 'workerId', 'address', 'uuid', 'tiers', 'capacityBytes', 'usedBytes', 'pageSize', 'addedBlocks', 'removedBlocks', 'pinVersion', 'uri', 'options', 'readOnly', 'pinned', 'recursive', 'ttlMs', 'action'];
  const STRING_FIELDS = new Set(['path', 'name', 'src', 'dst', 'newName', 'target', 'type', 'value', 'address', 'uuid', 'uri', 'action']);
  const BAD_PATHS = ['', 'relative', '/a/../../etc/passwd', '/..', '/./x', '/a\u0000b', '/a\uFFFDb', '/' + 'n'.repeat(300), '/' + 'd/'.repeat(2100), '/dir/small.txt/under-a-file/x'];
  const BAD_NUMS: unknown[] = [-1, -(2 ** 53), 1.5, 1e300, 2 ** 53, 2 ** 64, '1', '0x10', true, null, [], {}, [1], { n: 1 }];
  const BAD_QNUMS = ['-1', 'abc', '1.5', '1e3', '0x10', '99999999999999999999', '9007199254740993', '', '%00', '1%2F..'];
  const wrongTyped = (f: string): unknown => (STRING_FIELDS.has(f) ? pick([42, -1, true, [], {}, ['x'], { p: '/x' }, 1e308]) : pick(BAD_NUMS));
  const badJsonText = (): string =>
    pick([
      '{"path": "/x",',
      '{',
      'path=/x',
      '',
      '{"path": "/x"}}',
      "{'path': '/x'}",
      '{"path": "/x", "mode": 0777}',
      '[' .repeat(5000) + ']'.repeat(4999),
      '{"a":' + '{"a":'.repeat(3000) + '1' + '}'.repeat(3000),
      '\u0000\u0001\u0002',
      '{"path": "\\ud800"}',
      'NaN',
      '{"path": "/x"' + ' '.repeat(1000) + ',}',
    ]);
  /** A body that no master POST route accepts. */
  const badBody = (): string => {
    const k = rnd();
    if (k < 0.25) return badJsonText();
    if (k < 0.35) return JSON.stringify(pick([null, 42, 'x', [], [{ path: '/x' }], true]));
    if (k < 0.45) return '{}';
    const o: Record<string, unknown> = {};
    const n = 1 + Math.floor(rnd() * 6);
    for (let i = 0; i < n; i++) {
      const f = pick(FIELDS);
      o[f] = wrongTyped(f);
    }
    if (k < 0.7) o.path = wrongTyped('path');
    else o.path = pick(BAD_PATHS);
    // Every route names its target one of these ways; each is made wrong too.
    o.src = pick(BAD_PATHS);
    o.dst = pick(BAD_PATHS);
    o.ino = pick(BAD_NUMS);
    o.parent = pick(BAD_NUMS);
    o.workerId = pick(BAD_NUMS);
    return JSON.stringify(o);
  };

  interface Case {
    who: 'master' | 'worker';
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS';
    path: string;
    body?: string | Buffer;
    headers: Record<string, string>;
    kind: string;
  }
  const anyRoute = (who: 'master' | 'worker'): string =>
    who === 'master' ? pick([`${api}/${pick(MASTER_POSTS)}`, `${api}/${pick(MASTER_GETS)}?path=/`, '/', '/metrics', `${api}/workers`, `${api}/info`]) : pick(['/blocks/1', '/blocks/1/load', '/files/2?container=1&blockSize=4096&size=1', '/persist/2?container=1&blocks=1', '/metrics']);
  const json = { 'content-type': 'application/json' };
  const makeCase = (): Case => {
    const k = rnd();
    const who = rnd() < 0.55 ? 'master' : 'worker';
    if (k < 0.12) {
      // No token, a wrong one, a malformed header: 401 before anything else happens.
      const h = pick<Record<string, string>>([{}, { authorization: 'Bearer ' + 'x'.repeat(43) }, { authorization: token }, { authorization: `Basic ${token}` }, { authorization: `Bearer ${token.slice(1)}` }, { authorization: 'Bearer' }]);
      return { who, method: pick(['GET', 'POST', 'PUT', 'DELETE'] as const), path: anyRoute(who), body: pick([undefined, '{}', 'x'.repeat(100)]), headers: { ...h, ...json }, kind: 'unauthenticated' };
    }
    if (who === 'master') {
      if (k < 0.55) return { who, method: 'POST', path: `${api}/${pick(MASTER_POSTS)}`, body: badBody(), headers: { ...auth, ...json }, kind: 'master bad body' };
      if (k < 0.62) return { who, method: 'POST', path: `${api}/${pick(MASTER_POSTS)}`, body: badBody(), headers: { ...auth, 'content-type': pick(['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=latin1']) }, kind: 'master wrong content type' };
      if (k < 0.8) {
        const r = pick(MASTER_GETS);
        const q = pick([
          `path=${encodeURIComponent(pick(BAD_PATHS))}`,
          `ino=${pick(BAD_QNUMS)}`,
          `id=${pick(BAD_QNUMS)}`,
          `parent=${pick(BAD_QNUMS)}&name=x`,
          `parent=1&name=${encodeURIComponent(pick(['..', '.', 'a/b', 'a\u0000', 'n'.repeat(300), '']))}`,
          `path=/a&path=/b`,
          `path=%E0%A4%A`,
          '',
        ]);
        return { who, method: 'GET', path: `${api}/${r}?${q}`, headers: auth, kind: 'master bad query' };
      }
      if (k < 0.9) return { who, method: pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const), path: anyRoute('master'), body: '{}', headers: { ...auth, ...json }, kind: 'master wrong method' };
      return { who, method: pick(['GET', 'POST'] as const), path: pick(['/nope', '/api/v2/stat?path=/', `${api}/`, `${api}/stat/extra`, '/%zz', `${api}/${'x'.repeat(2000)}`, '/..%2F..%2Fetc%2Fpasswd', '/dashboard/../../etc']), body: '{}', headers: { ...auth, ...json }, kind: 'master unknown route' };
    }
    if (k < 0.5) {
      const id = pick([...BAD_QNUMS, '987654321', '987654322']);
      // (An empty offset or length means the default, so it is no bad input here.)
      const badQ = BAD_QNUMS.filter((x) => x !== '');
      const q = pick([`offset=${pick(badQ)}`, `length=${pick(badQ)}`, `readType=${pick(['BAD', 'cache', ''])}`, 'offset=0&length=1']);
      // An id that names no block is a 404; a real id only with a bad parameter.
      const real = bigInfo.blocks[0]!.id;
      const p = rnd() < 0.3 ? `/blocks/${real}?${q === 'offset=0&length=1' ? 'offset=-1' : q}` : `/blocks/${encodeURIComponent(id)}?${q}`;
      return { who, method: 'GET', path: p, headers: auth, kind: 'worker bad read' };
    }
    if (k < 0.75) {
      const q = pick([
        `container=${pick(BAD_QNUMS)}&blockSize=4096&size=1`,
        `container=1&blockSize=${pick(['100', '2147483648', ...BAD_QNUMS])}&size=1`,
        `container=1&blockSize=4096&size=${pick(BAD_QNUMS)}`,
        `container=1&blockSize=4096&size=1&writeType=${pick(['BAD', 'must_cache', ''])}`,
        'blockSize=4096&size=1',
        `container=1&blockSize=4096&size=1&format=extents`,
      ]);
      const ino = pick(['987654321', ...BAD_QNUMS, '1']);
      return { who, method: 'PUT', path: `/files/${encodeURIComponent(ino)}?${q}`, body: pick([Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(5000, 1)]), headers: { ...auth, 'content-type': 'application/octet-stream' }, kind: 'worker bad write' };
    }
    if (k < 0.85) {
      const p = pick([`/blocks/${pick(BAD_QNUMS)}/load`, '/blocks/987654321/load', `/persist/${pick(BAD_QNUMS)}?container=1&blocks=1`, `/persist/2?container=${pick(BAD_QNUMS)}&blocks=1`, '/persist/987654321?container=987654&blocks=1']);
      return { who, method: 'POST', path: p, body: pick(['', '{}', 'garbage']), headers: { ...auth, ...json }, kind: 'worker bad load/persist' };
    }
    if (k < 0.92) return { who, method: pick(['DELETE', 'PATCH', 'OPTIONS', 'POST'] as const), path: pick(['/blocks/1', '/files/2', '/healthz', '/metrics']), body: 'x', headers: { ...auth, 'content-type': 'application/octet-stream' }, kind: 'worker wrong method' };
    return { who, method: 'GET', path: pick(['/nope', '/blocks/', '/blocks/1/../../../../etc/passwd', '/blocks/..%2F..%2Fetc%2Fpasswd', '/files/..%2f..%2fetc%2fshadow', '/api/v1/stat?path=/', '/%zz', `/blocks/${'1'.repeat(300)}`, '/blocks/1%00']), headers: auth, kind: 'worker unknown route' };
  };

  const N = 10_400;
  const counts = new Map<string, { n: number; statuses: Map<number, number> }>();
  const failures: string[] = [];
  let maxMs = 0;
  const startedAt = Date.now();
  let next = 0;
  const cases = Array.from({ length: N }, makeCase);
  const runOne = async (cs: Case): Promise<void> => {
    const t0 = Date.now();
    let status = 0;
    try {
      const r = await pools[cs.who].request({ method: cs.method, path: cs.path, headers: cs.headers, body: cs.body, headersTimeout: REPLY_BOUND_MS, bodyTimeout: REPLY_BOUND_MS });
      status = r.statusCode;
      const text = await r.body.text();
      if (status < 400 || status >= 500) failures.push(`${cs.kind}: ${cs.method} ${cs.who}${cs.path.slice(0, 200)} body=${String(cs.body ?? '').slice(0, 200)} -> ${status} ${text.startsWith('{') ? text.slice(0, 200) : `(${text.length} bytes)`}`);
      else if (cs.kind === 'unauthenticated' && (status !== 401 || text !== '{"code":"UNAUTHENTICATED","message":"authentication required"}')) failures.push(`unauthenticated ${cs.method} ${cs.path} -> ${status} ${text.slice(0, 200)}`);
    } catch (err) {
      // A closed connection is an allowed answer to hostile input, but not to these well-formed requests.
      failures.push(`${cs.kind}: ${cs.method} ${cs.who}${cs.path.slice(0, 200)} -> ${(err as Error).message}`);
    }
    maxMs = Math.max(maxMs, Date.now() - t0);
    const c0 = counts.get(cs.kind) ?? { n: 0, statuses: new Map() };
    c0.n++;
    c0.statuses.set(status, (c0.statuses.get(status) ?? 0) + 1);
    counts.set(cs.kind, c0);
  };
  const worker = async () => {
    while (next < cases.length) await runOne(cases[next++]!);
  };

  // Oversized bodies and broken HTTP travel beside the stream of requests.
  const bigJson = JSON.stringify({ path: '/big', pad: 'a'.repeat(1024 * 1024 + 10) });
  const rawCases: { what: string; who: 'master' | 'worker'; chunks: (string | Buffer)[]; gapMs?: number; want: (r: RawResult) => boolean; maxMs: number }[] = [];
  const hostOf = (who: 'master' | 'worker') => new URL(who === 'master' ? c.masterUrl : c.workerUrl).host;
  const fourXX = (r: RawResult) => r.status >= 400 && r.status < 500;
  const fourXXorClosed = (r: RawResult) => fourXX(r) || (r.status === 0 && r.closed);
  for (const who of ['master', 'worker'] as const) {
    const h = hostOf(who);
    const p = who === 'master' ? `${api}/mkdir` : '/blocks/1/load';
    for (let i = 0; i < 10; i++) {
      rawCases.push({ what: `${who}: a 20 KiB header`, who, chunks: [`GET /healthz HTTP/1.1\r\nHost: ${h}\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`], want: (r) => r.status === 431 || (r.status === 0 && r.closed), maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: 500 headers`, who, chunks: [`GET /healthz HTTP/1.1\r\nHost: ${h}\r\n${Array.from({ length: 500 }, (_, j) => `X-H${j}: ${'v'.repeat(40)}\r\n`).join('')}\r\n`], want: (r) => r.status === 431 || (r.status === 0 && r.closed), maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: garbage request line`, who, chunks: ['GARBAGE\r\n\r\n'], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: binary noise`, who, chunks: [Buffer.from(Array.from({ length: 512 }, (_, j) => (j * 37 + i) & 0xff))], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: negative Content-Length`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: -5\r\n\r\n`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: overflowing Content-Length`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\n${`authorization: Bearer ${token}`}\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n\r\n{`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: two Content-Lengths`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: bad chunk size`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\nauthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: header without a colon`, who, chunks: [`GET /healthz HTTP/1.1\r\nHost: ${h}\r\nno colon here\r\n\r\n`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: control bytes in a header`, who, chunks: [`GET /healthz HTTP/1.1\r\nHost: ${h}\r\nX-A: a\u0000b\r\n\r\n`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: HTTP/2 preface on HTTP/1`, who, chunks: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
    }
    for (let i = 0; i < 4; i++) {
      rawCases.push({ what: `${who}: body over the limit`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\nauthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(bigJson) + (who === 'worker' ? 1024 * 1024 : 0)}\r\n\r\n`, bigJson, who === 'worker' ? Buffer.alloc(1024 * 1024, 0x20) : ''], want: (r) => r.status === 413 || (r.status === 0 && r.closed), maxMs: REPLY_BOUND_MS });
      rawCases.push({ what: `${who}: an announced 64 GiB body`, who, chunks: [`POST ${p} HTTP/1.1\r\nHost: ${h}\r\nauthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${64 * 1024 ** 3}\r\n\r\n{`], want: fourXXorClosed, maxMs: REPLY_BOUND_MS });
    }
    // Slowloris: headers a byte at a time, a body that stalls. Closed by the server, not by us.
    for (let i = 0; i < 15; i++) {
      const head = `GET /healthz HTTP/1.1\r\nHost: ${h}\r\nX-Slow: ${'s'.repeat(200)}`;
      rawCases.push({ what: `${who}: slowloris headers`, who, chunks: head.split(''), gapMs: 300, want: (r) => r.status === 408 || (r.status === 0 && r.closed), maxMs: HEADERS_TIMEOUT_MS + 3000 });
      const put = who === 'master' ? `POST ${api}/mkdir HTTP/1.1\r\nHost: ${h}\r\nauthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n` : `PUT /files/987654321?container=1&blockSize=4096&size=1000&writeType=MUST_CACHE HTTP/1.1\r\nHost: ${h}\r\nauthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n`;
      rawCases.push({ what: `${who}: a body that stalls`, who, chunks: [put, '{"pa'], gapMs: 60_000, want: (r) => fourXXorClosed(r), maxMs: REQUEST_TIMEOUT_MS + 3000 });
    }
  }
  const rawFailures: string[] = [];
  let rawMaxMs = 0;
  const rawRun = (async () => {
    let i = 0;
    const one = async () => {
      while (i < rawCases.length) {
        const rc = rawCases[i++]!;
        const r = await raw(rc.who === 'master' ? c.masterUrl : c.workerUrl, rc.chunks, rc.gapMs ?? 0);
        rawMaxMs = Math.max(rawMaxMs, r.ms);
        if (!rc.want(r) || r.ms > rc.maxMs) rawFailures.push(`${rc.what}: status ${r.status}, closed ${r.closed}, ${r.ms} ms (bound ${rc.maxMs})`);
      }
    };
    await Promise.all(Array.from({ length: 40 }, one));
  })();

  await Promise.all([...Array.from({ length: 24 }, worker), rawRun]);
  const elapsed = Date.now() - startedAt;
  clearInterval(sampler);
  const total = N + rawCases.length;
  t.ok(total >= 10_000, `${total} requests (${N} over keep-alive, ${rawCases.length} raw) in ${(elapsed / 1000).toFixed(1)} s`);
  t.same(failures.slice(0, 20), [], `every request got a 4xx (${failures.length} did not)`);
  t.same(rawFailures.slice(0, 20), [], `broken, huge and slow requests got a 4xx or a closed connection in time (${rawFailures.length} did not)`);
  t.ok(maxMs <= REPLY_BOUND_MS, `slowest reply ${maxMs} ms; slowest raw case ${rawMaxMs} ms`);
  t.comment(
    [...counts].map(([k, v]) => `${k}: ${v.n} (${[...v.statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')})`).join('\n'),
  );
  const mib = (n: number) => `${(n / 1024 ** 2).toFixed(0)} MiB`;
  t.comment(`RSS master ${mib(baseRss.master)} -> peak ${mib(peakRss.master)}, worker ${mib(baseRss.worker)} -> peak ${mib(peakRss.worker)}`);
  for (const who of ['master', 'worker'] as const) {
    t.ok(alive(pids[who]), `the ${who} process is alive`);
    t.ok(peakRss[who] < baseRss[who] + 256 * 1024 ** 2 && peakRss[who] < 768 * 1024 ** 2, `${who} memory stayed bounded: peak ${mib(peakRss[who])} from ${mib(baseRss[who])}`);
  }

  // ---- nothing changed --------------------------------------------------------
  // A heartbeat after the storm, so any change to the cache would have reached the master.
  await new Promise((r) => setTimeout(r, 2500));
  t.same(await tree(), before.tree, 'the namespace is unchanged (every node, every attribute but atime)');
  t.same(await cacheState(), before.cache, 'cached bytes, the worker registry and the mounts are unchanged');
  t.equal(await cachedDigest(), before.digest, 'the cached bytes of big.bin are the same');
  t.ok((await fsp.readFile(m('big.bin'))).equals(big), 'big.bin reads whole through the mount');
  t.equal(await fsp.readFile(m('dir/small.txt'), 'utf8'), 'small file\n');
  t.same((await fsp.readdir(c.ufsDir)).sort(), ['big.bin', 'dir'], 'nothing new reached the under-store');

  // ---- the connection cap -----------------------------------------------------
  await pools.master.close();
  const socks: Socket[] = [];
  let refused = 0;
  await Promise.all(
    Array.from({ length: MAX_CONNECTIONS + 60 }, () =>
      new Promise<void>((resolve) => {
        const s = connect(Number(new URL(c.masterUrl).port), '127.0.0.1');
        socks.push(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          refused++;
          resolve();
        });
        s.on('connect', () => setTimeout(resolve, 500));
      }),
    ),
  );
  for (const s of socks) s.destroy();
  // The mount holds a few connections of its own, so at least the excess is turned away.
  t.ok(refused >= 60, `${refused} of ${MAX_CONNECTIONS + 60} connections beyond the cap were closed at once`);
  await new Promise((r) => setTimeout(r, 300));
  const after = await new Pool(c.masterUrl, { connections: 1 }).request({ method: 'GET', path: '/healthz' });
  t.equal(after.statusCode, 200, 'the master serves again once they are gone');
  await after.body.text();

  t.notOk(/stopped unexpectedly/.test(c.stderr()), 'no part of strata local stopped', { stderr: c.stderr().slice(-2000) });
  t.equal(await c.stop(), 0, 'stops cleanly');
  t.notOk(isMounted(c.mnt), 'unmounted');
});
