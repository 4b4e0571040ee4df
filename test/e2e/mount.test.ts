/** Bytes and metadata through a real FUSE mount of `strata local`, checked against the under-store. */

import t from 'tap';
import type { Test as TapTest } from 'tap';
import { spawnSync } from 'node:child_process';
import { promises as fsp, constants, existsSync } from 'node:fs';
import * as os from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import * as path from 'node:path';
import { runCli, startLocal, LocalCluster } from '../helpers/cluster';
import { randomReadMismatches, renameat2 } from '../fuse/posix-suite';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Whether setfattr/getfattr can run here as root; otherwise `t` is planned empty, with why. */
function attrToolsHere(t: TapTest): boolean {
  const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  if (have('setfattr') && have('getfattr') && process.getuid?.() === 0) return true;
  t.plan(0, 'needs root and setfattr/getfattr (apt-get install attr)');
  return false;
}

t.test('through the mount', async (t) => {
  const c: LocalCluster = await startLocal(t);
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);

  await t.test('100 MiB random file round trip, equal in the under-store when close() returns', async (t) => {
    const data = randomBytes(100 * 1024 * 1024);
    await fsp.writeFile(m('big.bin'), data);
    // close() returned: the under-store already has the same bytes.
    t.equal(sha(await fsp.readFile(u('big.bin'))), sha(data), 'under-store copy equals what was written');
    t.equal(sha(await fsp.readFile(m('big.bin'))), sha(data), 'read back through the mount');
    t.equal((await fsp.stat(m('big.bin'))).size, data.length);
  });

  await t.test('empty files: a new one and one rewritten empty are in the under-store when close() returns', async (t) => {
    await fsp.writeFile(m('empty-new'), '');
    t.equal((await fsp.stat(u('empty-new'))).size, 0, 'a new empty file exists in the store');
    await fsp.writeFile(m('was-full'), randomBytes(3 * 1024 * 1024));
    t.equal((await fsp.stat(u('was-full'))).size, 3 * 1024 * 1024);
    await fsp.writeFile(m('was-full'), '');
    t.equal((await fsp.stat(u('was-full'))).size, 0, 'rewritten empty: the store copy is empty too');
    t.equal((await fsp.stat(m('was-full'))).size, 0);
    t.equal((await fsp.readFile(m('was-full'))).length, 0, 'and reads back empty');
    const before = (await fsp.readdir(path.join(c.home, 'client'), { recursive: true })).length;
    for (let i = 0; i < 20; i++) await (await fsp.open(m(`touched-${i}`), 'w')).close();
    t.equal((await fsp.readdir(path.join(c.home, 'client'), { recursive: true })).length, before, 'no staging files left behind');
  });

  await t.test('create, overwrite in the middle, append, truncate', async (t) => {
    await fsp.writeFile(m('f.txt'), 'hello world');
    const fh = await fsp.open(m('f.txt'), 'r+');
    await fh.write('WORLD', 6);
    await fh.close();
    t.equal(await fsp.readFile(m('f.txt'), 'utf8'), 'hello WORLD');
    await fsp.appendFile(m('f.txt'), '!!');
    t.equal(await fsp.readFile(m('f.txt'), 'utf8'), 'hello WORLD!!');
    t.equal(await fsp.readFile(u('f.txt'), 'utf8'), 'hello WORLD!!');
    await fsp.truncate(m('f.txt'), 5);
    t.equal(await fsp.readFile(m('f.txt'), 'utf8'), 'hello');
    t.equal(await fsp.readFile(u('f.txt'), 'utf8'), 'hello', 'truncate reached the under-store');
    await fsp.truncate(m('f.txt'), 8);
    t.same(await fsp.readFile(m('f.txt')), Buffer.concat([Buffer.from('hello'), Buffer.alloc(3)]), 'truncate up reads zeros');
    await fsp.writeFile(m('f.txt'), 'new');
    t.equal(await fsp.readFile(m('f.txt'), 'utf8'), 'new', 'O_TRUNC rewrite');
    t.equal(await fsp.readFile(u('f.txt'), 'utf8'), 'new');
  });

  await t.test('truncate to 1 TiB: stored at once, as a sparse file, without reading its holes', async (t) => {
    // Storing it read every byte of the holes (40 minutes for 1 TiB here), and the client, tired of
    // waiting for the worker's answer, sent it again from the start every 2 minutes: truncate(1) hung.
    t.setTimeout(90_000);
    const cached = async () => Number(/^strata_worker_cache_used_bytes\{[^}]*\} (\d+)/m.exec(await (await fetch(`${c.workerUrl}/metrics`)).text())?.[1]);
    await fsp.writeFile(m('huge'), 'head');
    const before = await cached();
    const size = 2 ** 40;
    await fsp.truncate(m('huge'), size);
    // Its whole blocks of hole are not cached: as pages they took the room of what was (the 100 MiB file above).
    t.ok((await cached()) >= before, `the holes pushed nothing out of the cache (${before} bytes cached before, ${await cached()} after)`);
    t.equal((await fsp.stat(m('huge'))).size, size, 'the mount says 1 TiB');
    const stored = await fsp.stat(u('huge'));
    t.equal(stored.size, size, 'so does the under-store, when truncate returned');
    t.ok(stored.blocks * 512 < 64 * 1024 * 1024, `stored sparse (${stored.blocks} blocks of 512 bytes)`);
    const du = JSON.parse((await runCli(['fs', 'du', '--json', '/huge', '--master', c.masterUrl])).stdout) as { cachedBytes: number };
    t.ok(du.cachedBytes <= 64 * 1024 * 1024, `the master counts only its first block as cached, not 1 TiB (${du.cachedBytes})`);
    const fh = await fsp.open(m('huge'), 'r');
    try {
      const b = Buffer.alloc(8);
      await fh.read(b, 0, 8, 0);
      t.same(b, Buffer.from('head\0\0\0\0'), 'the data before the hole');
      await fh.read(b, 0, 8, size - 8);
      t.same(b, Buffer.alloc(8), 'zeros at its end');
    } finally {
      await fh.close();
    }
    await fsp.unlink(m('huge'));
  });

  await t.test('empty file reaches the under-store', async (t) => {
    await (await fsp.open(m('empty'), 'w')).close();
    t.equal((await fsp.stat(u('empty'))).size, 0);
    t.equal((await fsp.stat(m('empty'))).size, 0);
  });

  await t.test('mkdir, readdir, rename, rmdir, unlink', async (t) => {
    await fsp.mkdir(m('dir'));
    await fsp.mkdir(m('dir/sub'));
    await fsp.writeFile(m('dir/sub/a'), 'A');
    t.same((await fsp.readdir(m('dir'))).sort(), ['sub']);
    t.ok((await fsp.stat(u('dir/sub'))).isDirectory(), 'directory created in the under-store');
    await fsp.rename(m('dir/sub'), m('moved'));
    t.equal(await fsp.readFile(m('moved/a'), 'utf8'), 'A');
    t.equal(await fsp.readFile(u('moved/a'), 'utf8'), 'A', 'rename reached the under-store');
    await t.rejects(fsp.stat(m('dir/sub')), { code: 'ENOENT' });
    await fsp.rename(m('moved/a'), m('moved/b'));
    t.same(await fsp.readdir(m('moved')), ['b']);
    await t.rejects(fsp.rmdir(m('moved')), { code: 'ENOTEMPTY' });
    await fsp.unlink(m('moved/b'));
    await t.rejects(fsp.stat(u('moved/b')), { code: 'ENOENT' }, 'unlink reached the under-store');
    await fsp.rmdir(m('moved'));
    await fsp.rmdir(m('dir'));
    await t.rejects(fsp.stat(u('moved')), { code: 'ENOENT' });
    t.notOk((await fsp.readdir(m(''))).includes('dir'));
  });

  await t.test('rename replaces an existing file', async (t) => {
    await fsp.writeFile(m('r1'), 'one');
    await fsp.writeFile(m('r2'), 'two');
    await fsp.rename(m('r1'), m('r2'));
    t.equal(await fsp.readFile(m('r2'), 'utf8'), 'one');
    t.equal(await fsp.readFile(u('r2'), 'utf8'), 'one');
    await t.rejects(fsp.stat(m('r1')), { code: 'ENOENT' });
  });

  await t.test('RENAME_EXCHANGE swaps the objects in the under-store too', async (t) => {
    await fsp.writeFile(m('x1'), 'first');
    await fsp.writeFile(m('x2'), 'second');
    await fsp.mkdir(m('xd'));
    await fsp.writeFile(m('xd/inner'), 'inner');
    const r = await renameat2(m('x1'), m('x2'), 2);
    if (r === null) {
      t.plan(0, 'python3 is missing: cannot call renameat2(2)');
      return;
    }
    t.equal(r, 'ok');
    t.equal(await fsp.readFile(u('x1'), 'utf8'), 'second', 'the store has x2\'s bytes at x1');
    t.equal(await fsp.readFile(u('x2'), 'utf8'), 'first', 'and x1\'s at x2');
    t.equal(await renameat2(m('xd'), m('x1'), 2), 'ok', 'a directory and a file');
    t.equal(await fsp.readFile(u('x1/inner'), 'utf8'), 'inner', 'the directory moved in the store');
    t.equal(await fsp.readFile(u('xd'), 'utf8'), 'second', 'the file moved in the store');
    t.equal(await fsp.readFile(m('x1/inner'), 'utf8'), 'inner', 'and reads back through the mount');
    t.same((await fsp.readdir(c.ufsDir)).filter((n) => n.startsWith('.strata')), [], 'no temporary name is left in the store');
  });

  await t.test('chmod and utimens', async (t) => {
    await fsp.writeFile(m('attrs'), 'x');
    await fsp.chmod(m('attrs'), 0o640);
    t.equal((await fsp.stat(m('attrs'))).mode & 0o7777, 0o640);
    const when = new Date('2020-02-03T04:05:06Z');
    await fsp.utimes(m('attrs'), when, when);
    const st = await fsp.stat(m('attrs'));
    t.equal(st.mtime.getTime(), when.getTime(), 'mtime set');
    t.equal(st.atime.getTime(), when.getTime(), 'atime set');
  });

  await t.test('a file put into the under-store by another program appears', async (t) => {
    await fsp.mkdir(u('outside/deep'), { recursive: true });
    await fsp.writeFile(u('outside/deep/o.txt'), 'from outside');
    t.equal(await fsp.readFile(m('outside/deep/o.txt'), 'utf8'), 'from outside', 'lookup loads it lazily');
    await fsp.writeFile(u('outside/listed.txt'), 'listed');
    t.ok((await fsp.readdir(m('outside'))).includes('listed.txt'), 'listing loads it lazily');
    await fsp.writeFile(u('outside/listed.txt'), 'changed outside, longer');
    t.equal(await fsp.readFile(m('outside/listed.txt'), 'utf8'), 'changed outside, longer', 'an out-of-band change is seen');
  });

  await t.test('errno values', async (t) => {
    await t.rejects(fsp.writeFile(m('x'.repeat(256)), 'x'), { code: 'ENAMETOOLONG' });
    await t.rejects(fsp.mkdir(m('y'.repeat(256))), { code: 'ENAMETOOLONG' });
    await fsp.writeFile(m('y'.repeat(255)), 'ok');
    t.equal(await fsp.readFile(m('y'.repeat(255)), 'utf8'), 'ok', '255-byte names work');
    await t.rejects(fsp.readFile(m('nope')), { code: 'ENOENT' });
    await t.rejects(fsp.open(m('attrs'), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY), { code: 'EEXIST' });
    await t.rejects(fsp.mkdir(m('attrs')), { code: 'EEXIST' });
    await t.rejects(fsp.readdir(m('attrs')), { code: 'ENOTDIR' });
    await fsp.mkdir(m('adir'));
    await t.rejects(fsp.unlink(m('adir')), { code: /EISDIR|EPERM/ });
    await t.rejects(fsp.rmdir(m('attrs')), { code: 'ENOTDIR' });
    await t.rejects(fsp.rename(m('adir'), m('adir/inside')), { code: 'EINVAL' });
  });

  await t.test('master and worker expose Prometheus metrics', async (t) => {
    const master = await (await fetch(`${c.masterUrl}/metrics`)).text();
    t.match(master, /^strata_master_inodes\{[^}]*\} \d+/m, 'inode gauge');
    t.match(master, /strata_master_workers\{[^}]*state="live"[^}]*\} 1/, 'one live worker');
    t.match(master, /strata_http_request_seconds_count\{[^}]*route="\/api\/v1\/lookup"/, 'per-route latency histogram');
    t.match(master, /strata_process_resident_memory_bytes/, 'process RSS');
    t.match(master, /strata_nodejs_eventloop_lag_seconds/, 'event-loop lag');
    const worker = await (await fetch(`${c.workerUrl}/metrics`)).text();
    const used = Number(/^strata_worker_cache_used_bytes\{[^}]*\} (\d+)/m.exec(worker)?.[1]);
    t.ok(used >= 100 * 1024 * 1024, `cache used bytes reported (${used})`);
    t.match(worker, /strata_worker_written_bytes_total\{[^}]*write_type="CACHE_THROUGH"[^}]*\} \d+/, 'bytes written by write type');
    const local = Number(/^strata_worker_written_bytes_total\{[^}]*via="local"[^}]*\} (\d+)/m.exec(worker)?.[1] ?? 0);
    t.ok(local >= 100 * 1024 * 1024, `staged files were handed to the same-host worker on disk, not over HTTP (${local} bytes)`);
    const clientUrl = /client metrics (http:\/\/\S+?)\)/.exec(c.stdout())?.[1];
    t.ok(clientUrl, 'strata local prints the FUSE client metrics URL');
    const client = await (await fetch(clientUrl!)).text();
    t.match(client, /strata_fuse_op_seconds_count\{[^}]*op="write"[^}]*\} [1-9]/, 'FUSE write latency histogram');
    t.match(client, /strata_fuse_op_errors_total\{[^}]*op="lookup"[^}]*\} [1-9]/, 'failed lookups are counted');
  });

  t.equal(await c.stop(), 0, 'SIGTERM unmounts and exits 0');
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
  t.notOk(mounts.includes(c.mnt), 'unmounted');
});

t.test('the client reports where its bytes came from', async (t) => {
  const c = await startLocal(t);
  const url = /client metrics (http:\/\/\S+\/metrics)/.exec(c.stdout())![1]!;
  const metric = async (source: string) => {
    const text = await (await fetch(url)).text();
    const m = new RegExp(`^strata_client_read_bytes_total\\{[^}]*source="${source}"[^}]*\\} (\\d+)`, 'm').exec(text);
    return Number(m?.[1] ?? 0);
  };
  const data = randomBytes(3 * 1024 * 1024 + 17);
  await fsp.writeFile(path.join(c.ufsDir, 'src.bin'), data);
  t.ok((await fsp.readFile(path.join(c.mnt, 'src.bin'))).equals(data));
  // The worker runs on this host: its page files are read directly.
  t.ok((await metric('short_circuit')) >= data.length, 'short-circuit bytes counted');
});

for (const tier of ['mem', 'ssd'] as const) {
  // Pages in memory are spliced from their files into the kernel; pages on disk are read by the mount.
  t.test(`reads across pages, read-ahead windows and blocks come back whole, cold and cached (${tier} tier)`, async (t) => {
    const base = tier === 'mem' && existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
    const dir = await fsp.mkdtemp(path.join(base, 'strata-tier-'));
    t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
    // 2 MiB blocks of 1 MiB pages: a 4 MiB read-ahead window spans two blocks, a 512 KiB kernel request is half a page.
    const c = await startLocal(t, { args: ['--block-size', '2MiB', '--tiers', `${tier}:${dir}:256MiB`] });
    const data = randomBytes(9 * 1024 * 1024 + 333);
    await fsp.writeFile(path.join(c.ufsDir, 'odd.bin'), data);
    const check = async (what: string) => {
      // The kernel's own copy would answer instead of the mount (root only; else the open's invalidation must do).
      await fsp.writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
      t.ok((await fsp.readFile(path.join(c.mnt, 'odd.bin'))).equals(data), `${what}: a whole sequential read`);
      t.equal(await randomReadMismatches(path.join(c.mnt, 'odd.bin'), data, 100, 3 * 1024 * 1024), 0, `${what}: 100 reads at random offsets, up to 3 MiB each`);
    };
    await check('cold');
    await check('cached');
  });
}

t.test('random reads of pages cached in memory are answered by the binding, and a write through the mount is never hidden by them', async (t) => {
  if (!existsSync('/dev/shm') || process.getuid?.() !== 0) {
    t.plan(0, 'needs /dev/shm (a memory tier) and root (dropping the page cache)');
    return;
  }
  const dir = await fsp.mkdtemp(path.join('/dev/shm', 'strata-kept-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  const c = await startLocal(t, { args: ['--tiers', `mem:${dir}:256MiB`] });
  const url = /client metrics (http:\/\/\S+\/metrics)/.exec(c.stdout())![1]!;
  const gauge = async (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(await (await fetch(url)).text())?.[1] ?? NaN);
  const dropCaches = () => fsp.writeFile('/proc/sys/vm/drop_caches', '3');
  const size = 8 * 1024 * 1024 + 123;
  const data = randomBytes(size);
  const file = path.join(c.mnt, 'r.bin');
  await fsp.writeFile(path.join(c.ufsDir, 'r.bin'), data);
  t.ok((await fsp.readFile(file)).equals(data), 'read whole once (its pages are cached)');
  await dropCaches();
  const before = await gauge('strata_fuse_reads_answered_by_binding');
  // O_DIRECT: every read reaches the mount (no readahead, no page cache answering repeats).
  const r = await fsp.open(file, constants.O_RDONLY | constants.O_DIRECT);
  const at = (i: number) => (i * 7919 * 4096) % (size - 100);
  let wrong = 0;
  for (let i = 0; i < 1500; i++) {
    const off = at(i);
    const b = Buffer.alloc(4096);
    const { bytesRead } = await r.read(b, 0, 4096, off);
    if (bytesRead !== Math.min(4096, size - off) || !b.subarray(0, bytesRead).equals(data.subarray(off, off + bytesRead))) wrong++;
  }
  t.equal(wrong, 0, '1,500 random 4 KiB reads, byte for byte');
  const served = (await gauge('strata_fuse_reads_answered_by_binding')) - before;
  t.ok(served > 500, `the binding answered ${served} of them`);
  t.ok((await gauge('strata_fuse_kept_pages')) > 0, 'pages are kept while the handle is open');

  // Another handle writes a page the reader's handle has kept: the reader must see the new bytes.
  const patch = randomBytes(4096);
  const w = await fsp.open(file, 'r+');
  await w.write(patch, 0, 4096, at(3));
  await dropCaches(); // the kernel's copy would answer first
  const b = Buffer.alloc(4096);
  await r.read(b, 0, 4096, at(3));
  t.ok(b.equals(patch), 'a read after the write returns the written bytes, not the kept page');
  await w.close();
  await r.close();
  t.equal(await gauge('strata_fuse_kept_pages'), 0, 'closing the handle lets go of its pages');
  const expect = Buffer.from(data);
  patch.copy(expect, at(3));
  t.ok((await fsp.readFile(file)).equals(expect), 'the file reads back with the write in it');
  t.equal(await c.stop(), 0);
});

t.test('a NO_CACHE mount reads a file sequentially without caching any of it', async (t) => {
  // A sequential reader past 8 MiB has the worker load whole blocks ahead of it, unless it reads NO_CACHE.
  const c = await startLocal(t, { args: ['--read-type', 'NO_CACHE', '--block-size', '8MiB'] });
  const data = randomBytes(40 * 1024 * 1024 + 3);
  await fsp.writeFile(path.join(c.ufsDir, 'stream.bin'), data);
  t.ok((await fsp.readFile(path.join(c.mnt, 'stream.bin'))).equals(data), 'the bytes read back equal the file in the store');
  // Loads run in the background: give them time to land before looking.
  await new Promise((r) => setTimeout(r, 1000));
  const worker = await (await fetch(`${c.workerUrl}/metrics`)).text();
  const tiers = [...worker.matchAll(/^strata_worker_cache_used_bytes(?:\{[^}]*\})? (\d+)/gm)].map((m) => Number(m[1]));
  t.ok(tiers.length > 0, 'the worker reports its cache');
  t.same(tiers.filter((b) => b !== 0), [], 'the worker cached nothing, in any tier');
});

t.test('the kernel cache timeouts are options: 0 sends every stat to the mount, 60 s answers repeats in the kernel', async (t) => {
  // [attr/entry timeout, feed timeout, most, least]: with the feed on (default 60 s) even 1 s timeouts answer repeats in the kernel.
  for (const [ms, feed, most, least] of [[0, 0, Infinity, 20], [60_000, 0, 2, 0], [1000, 60_000, 2, 0]] as const) {
    const c = await startLocal(t, { args: ['--attr-timeout-ms', String(ms), '--entry-timeout-ms', String(ms), '--feed-timeout-ms', String(feed)] });
    const url = /client metrics (http:\/\/\S+\/metrics)/.exec(c.stdout())![1]!;
    const ops = async () => {
      const text = await (await fetch(url)).text();
      let n = 0;
      for (const m of text.matchAll(/^strata_fuse_op_seconds_count\{[^}]*op="(lookup|getattr)"[^}]*\} (\d+)/gm)) n += Number(m[2]);
      return n;
    };
    const f = path.join(c.mnt, 'stat-me');
    await fsp.writeFile(f, 'x');
    await fsp.stat(f);
    const before = await ops();
    for (let i = 0; i < 20; i++) await fsp.stat(f);
    const asked = (await ops()) - before;
    t.ok(asked >= least && asked <= most, `timeouts ${ms} ms, feed ${feed} ms: 20 stats asked the mount ${asked} times`);
    await c.stop();
  }
});

t.test('writes do not ask the master for security.capability each time, and a capability is still dropped by a write', async (t) => {
  if (!attrToolsHere(t)) return;
  // Attribute timeouts of 60 s: in this test only a change forgets what the mount knows. The
  // default metadata sync (the helper's 0 keeps no metadata cache, so creates are not vouched for).
  const c = await startLocal(t, { args: ['--attr-timeout-ms', '60000', '--sync-interval-ms', '60000'] });
  const clientMetrics = /client metrics (http:\/\/\S+\/metrics)/.exec(c.stdout())![1]!;
  const count = async (url: string, re: RegExp) => {
    const text = await (await fetch(url)).text();
    let n = 0;
    for (const m of text.matchAll(re)) n += Number(m[1]);
    return n;
  };
  const masterAsked = () => count(`${c.masterUrl}/metrics`, /^strata_http_request_seconds_count\{[^}]*route="\/api\/v1\/xattr\/get"[^}]*\} (\d+)/gm);
  const mountAsked = () => count(clientMetrics, /^strata_fuse_op_seconds_count\{[^}]*op="getxattr"[^}]*\} (\d+)/gm);
  const f = path.join(c.mnt, 'many-writes.bin');
  const before = [await masterAsked(), await mountAsked()];
  const fh = await fsp.open(f, 'w');
  const piece = randomBytes(64 * 1024);
  for (let i = 0; i < 200; i++) await fh.write(piece, 0, piece.length, i * piece.length);
  await fh.close();
  t.equal((await masterAsked()) - before[0]!, 0, 'writes to a file this mount created asked the master for no xattr');
  t.ok((await mountAsked()) - before[1]! <= 2, `the binding answered the kernel's getxattr before each of 200 writes (${(await mountAsked()) - before[1]!} reached the mount)`);
  t.equal((await fsp.readFile(f)).length, 200 * piece.length);

  // A file capability (CAP_NET_RAW, revision 2) set through this mount is seen by the next write, which drops it.
  const cap = '0x0100000200200000000000000000000000000000';
  const set = spawnSync('setfattr', ['-n', 'security.capability', '-v', cap, f], { encoding: 'utf8' });
  t.equal(set.status, 0, 'setfattr security.capability', { stderr: set.stderr });
  t.match(spawnSync('getfattr', ['-n', 'security.capability', '-e', 'hex', f], { encoding: 'utf8' }).stdout, /security\.capability=0x01000002/, 'the capability is there');
  const w = await fsp.open(f, 'r+');
  await w.write(Buffer.from('x'), 0, 1, 0);
  await w.close();
  const after = spawnSync('getfattr', ['-n', 'security.capability', f], { encoding: 'utf8' });
  t.notMatch(after.stdout, /security\.capability=/, 'a write dropped it, as on a local file system');

  // Known without one again (that getfattr found none). Another client sets one: the change
  // feed tells this mount, and its next write sees the capability and drops it.
  const w2 = await fsp.open(f, 'r+');
  await w2.write(Buffer.from('y'), 0, 1, 1);
  const ino = (await fsp.stat(f)).ino;
  const set2 = await fetch(`${c.masterUrl}/api/v1/xattr/set`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ino, name: 'security.capability', value: Buffer.from(cap.slice(2), 'hex').toString('base64'), flags: 0 }) });
  t.equal(set2.status, 200, 'another client set a capability', { body: await set2.text() });
  let seen = false;
  for (let i = 0; i < 50 && !seen; i++) {
    seen = /security\.capability=/.test(spawnSync('getfattr', ['-n', 'security.capability', f], { encoding: 'utf8' }).stdout);
    if (!seen) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(seen, 'this mount sees the capability set elsewhere');
  await w2.write(Buffer.from('z'), 0, 1, 2);
  await w2.close();
  const left = await fetch(`${c.masterUrl}/api/v1/xattr/get`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ino, name: 'security.capability' }) });
  t.equal(left.status, 404, 'the next write dropped it in the master', { body: await left.text() });
  t.equal(await c.stop(), 0);
});

t.test('ls -l of a listed directory asks the master for no xattr, and attributes set later, here or elsewhere, are still seen', async (t) => {
  if (!attrToolsHere(t)) return;
  // A metadata sync interval, so the mount keeps a cache under the change feed (the helper's 0 keeps none).
  const c = await startLocal(t, { args: ['--sync-interval-ms', '60000'] });
  const masterAsked = async () => {
    const text = await (await fetch(`${c.masterUrl}/metrics`)).text();
    let n = 0;
    for (const m of text.matchAll(/^strata_http_request_seconds_count\{[^}]*route="\/api\/v1\/xattr\/(?:get|list)"[^}]*\} (\d+)/gm)) n += Number(m[1]);
    return n;
  };
  const xattrSet = (ino: number, name: string) =>
    fetch(`${c.masterUrl}/api/v1/xattr/set`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ino, name, value: Buffer.from('v').toString('base64'), flags: 0 }) });
  // Files made in the store, so this mount knows them from the listing only.
  await fsp.mkdir(path.join(c.ufsDir, 'listed'));
  for (let i = 0; i < 200; i++) await fsp.writeFile(path.join(c.ufsDir, 'listed', `f${i}`), '');
  const d = path.join(c.mnt, 'listed');
  t.equal(spawnSync('setfattr', ['-n', 'user.k', '-v', 'one', path.join(d, 'f0')]).status, 0, 'one file has an attribute before the listing');

  const clientMetrics = /client metrics (http:\/\/\S+\/metrics)/.exec(c.stdout())![1]!;
  const mountAsked = async () => Number(/^strata_fuse_op_seconds_count\{[^}]*op="getxattr"[^}]*\} (\d+)/m.exec(await (await fetch(clientMetrics)).text())?.[1] ?? 0);
  const before = await masterAsked();
  const beforeMount = await mountAsked();
  const ls = spawnSync('ls', ['-l', d], { encoding: 'utf8' });
  t.equal(ls.status, 0, 'ls -l', { stderr: ls.stderr });
  t.equal(ls.stdout.trim().split('\n').length, 201, 'total and 200 entries');
  const asked = (await masterAsked()) - before;
  // ls asks about the directory itself too (3: it was not in a listing) and about the one file with an attribute (2).
  t.ok(asked <= 5, `ls -l of 200 entries asked the master for ${asked} xattrs (about the directory and the file that has one; 403 before)`);
  const reached = (await mountAsked()) - beforeMount;
  t.ok(reached <= 5, `the binding answered the others itself (${reached} getxattrs reached the mount's JS)`);
  t.match(spawnSync('getfattr', ['-d', path.join(d, 'f0')], { encoding: 'utf8' }).stdout, /user\.k="one"/, 'the attribute listed before is read');

  // Set elsewhere after the listing: the master answers once this mount (holding a feed lease) has
  // applied the change, which made it forget what it knew: seen at once, no waiting.
  const ino = (await fsp.stat(path.join(d, 'f3'))).ino;
  t.equal((await xattrSet(ino, 'user.elsewhere')).status, 200, 'another client sets an attribute');
  t.match(spawnSync('getfattr', ['-n', 'user.elsewhere', path.join(d, 'f3')], { encoding: 'utf8' }).stdout, /user\.elsewhere=/, 'this mount sees the attribute set elsewhere as soon as the set returned');
  t.match(spawnSync('getfattr', ['-d', path.join(d, 'f3')], { encoding: 'utf8' }).stdout, /user\.elsewhere=/, 'and lists it');
  // Set here: seen at once.
  t.equal(spawnSync('setfattr', ['-n', 'user.here', '-v', 'x', path.join(d, 'f4')]).status, 0);
  t.match(spawnSync('getfattr', ['-n', 'user.here', path.join(d, 'f4')], { encoding: 'utf8' }).stdout, /user\.here="x"/, 'an attribute set through this mount is read back at once');

  // POSIX ACLs: none is stored (ENOTSUP), so none is read, from any client.
  const acl = spawnSync('getfattr', ['-n', 'system.posix_acl_access', path.join(d, 'f0')], { encoding: 'utf8' });
  t.match(acl.stderr, /No such attribute/, 'reading an ACL gives ENODATA');
  const refused = await xattrSet(ino, 'system.posix_acl_access');
  t.equal(refused.status, 501, 'the master refuses to store an ACL (ENOTSUP)', { body: await refused.text() });
  t.equal(await c.stop(), 0);
});

t.test('seekdir to a telldir of a big directory goes on from the same entry after names were made and removed', async (t) => {
  if (spawnSync('sh', ['-c', 'command -v perl']).status !== 0) {
    t.plan(0, 'needs perl');
    return;
  }
  const c = await startLocal(t);
  // Three pages of the mount's listing, made in the store.
  const ufsDir = path.join(c.ufsDir, 'seek');
  await fsp.mkdir(ufsDir);
  for (let i = 0; i < 2500; i++) await fsp.writeFile(path.join(ufsDir, `f${String(i).padStart(5, '0')}`), '');
  const script = `
    opendir(my $d, $ARGV[0]) or die "opendir: $!";
    my (@pos, @names);
    while (1) { my $p = telldir($d); my $n = readdir($d); last unless defined $n; push @pos, $p; push @names, $n; }
    for my $new ('f00700x', 'a-new', 'f01700x') { open(my $f, '>', "$ARGV[0]/$new") or die "create: $!"; close $f; }
    unlink("$ARGV[0]/f01500") or die "unlink: $!";
    my @out = (scalar(@names));
    for my $i (@ARGV[1..$#ARGV]) { seekdir($d, $pos[$i]); my $n = readdir($d); push @out, "$names[$i]=" . ($n // 'END'); }
    print join(' ', @out), "\n";`;
  const r = spawnSync('perl', ['-e', script, path.join(c.mnt, 'seek'), '500', '1502', '1200', '1800', '2', '2501'], { encoding: 'utf8' });
  t.equal(r.status, 0, 'perl ran', { stderr: r.stderr });
  const [count, ...pairs] = r.stdout.trim().split(' ');
  t.equal(count, '2502', '".", "..", and 2,500 names were read');
  // The one removed reads as the name after it; right after "..", the name made before all others comes first.
  const expected: Record<string, string> = { f01500: 'f01501', f00000: 'a-new' };
  for (const p of pairs) {
    const [told, got] = p.split('=') as [string, string];
    t.equal(got, expected[told] ?? told, `seekdir to the telldir before ${told} reads ${expected[told] ?? told}`);
  }
  t.equal(await c.stop(), 0);
});
