/**
 * Mounts cache metadata and learn of changes from the master's change feed: a
 * change made through one mount is seen through another, even with under-store
 * syncing off (so nothing but the feed can make the second mount see it), and
 * repeated lookups of unchanged files do not reach the master. The kernel's own
 * cache follows the feed too: with kernel timeouts of 30 s, changes still show
 * within moments.
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { startCluster } from '../helpers/multi-cluster';
import { startFaultProxy } from '../helpers/fault-proxy';
import { CLI, forceUnmount, runCli } from '../helpers/cluster';

/** Lists the directory argv[1] through one descriptor, then again (up to 3 s, until `obj` shows) after a line on stdin. */
const HELD_DIR_LISTER = `
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
print(sorted(os.listdir(fd)), flush=True)
sys.stdin.readline()
t0 = time.time()
while True:
    names = sorted(os.listdir(fd))
    if 'obj' in names or time.time() - t0 > 3: break
    time.sleep(0.02)
print(names, flush=True)
`;

/** Past the kernel's attribute and entry timeouts (1 s). */
const KERNEL_TTL = () => new Promise((r) => setTimeout(r, 1300));

async function masterCount(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^strata_http_request_seconds_count\\{[^}]*route="${route.replace(/\//g, '\\/')}"[^}]*\\} (\\d+)`, 'gm'))) n += Number(m[1]);
  return n;
}

t.test('changes through one mount are seen through the other; unchanged files are answered from the cache', async (t) => {
  // Syncing off: cached answers never expire, only the feed can drop them.
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  const one = randomBytes(100_000);
  const two = randomBytes(300_000);

  await fsp.writeFile(a!('f'), one);
  t.ok((await fsp.readFile(b!('f'))).equals(one), 'B reads what A wrote');
  await t.rejects(fsp.stat(b!('later')), { code: 'ENOENT' }, 'B looks up a name that does not exist yet');

  // Unchanged: B's lookups past the kernel timeout are answered by its cache.
  await KERNEL_TTL();
  const lookups = await masterCount(c.masterUrl, '/api/v1/lookup');
  for (let i = 0; i < 3; i++) {
    t.equal((await fsp.stat(b!('f'))).size, one.length);
    await KERNEL_TTL();
  }
  t.equal(await masterCount(c.masterUrl, '/api/v1/lookup'), lookups, 'repeated stats of an unchanged file did not ask the master');

  await fsp.writeFile(a!('f'), two);
  await fsp.chmod(a!('f'), 0o600);
  await fsp.writeFile(a!('later'), 'now');
  await KERNEL_TTL();
  const st = await fsp.stat(b!('f'));
  t.equal(st.size, two.length, 'B sees the new size');
  t.equal(st.mode & 0o777, 0o600, 'B sees the new mode');
  t.ok((await fsp.readFile(b!('f'))).equals(two), 'B reads the new content');
  t.equal(await fsp.readFile(b!('later'), 'utf8'), 'now', 'a name B found missing before is there now');

  await fsp.rename(a!('f'), a!('g'));
  await KERNEL_TTL();
  await t.rejects(fsp.stat(b!('f')), { code: 'ENOENT' }, 'renamed away: the old name is gone for B');
  t.ok((await fsp.readFile(b!('g'))).equals(two), 'and the new name is there');

  await fsp.unlink(a!('g'));
  await fsp.mkdir(a!('d'));
  await KERNEL_TTL();
  await t.rejects(fsp.stat(b!('g')), { code: 'ENOENT' }, 'unlinked: gone for B');
  t.ok((await fsp.stat(b!('d'))).isDirectory(), 'a new directory is seen');
  t.same((await fsp.readdir(b!('.'))).sort(), ['d', 'later'], 'and B lists what A sees');

  // B's own changes are seen by B at once (its cache waits for the feed to show them).
  await fsp.writeFile(b!('mine'), 'x');
  await fsp.rename(b!('mine'), b!('mine2'));
  await t.rejects(fsp.stat(b!('mine')), { code: 'ENOENT' });
  t.equal(await fsp.readFile(b!('mine2'), 'utf8'), 'x');
});

t.test("the kernel's copy follows the feed: with 30 s kernel timeouts, another mount's changes show within moments", async (t) => {
  // Timeouts far longer than the test's bound: only the feed's invalidations can make B see A's changes in time.
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: () => ['--attr-timeout-ms', '30000', '--entry-timeout-ms', '30000', '--feed-timeout-ms', '60000'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  /** Polls until `check` holds; the time it took, or a failure after 3 s. */
  const within = async (what: string, check: () => Promise<boolean>) => {
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      if (await check().catch(() => false)) {
        t.pass(`${what} (${Date.now() - t0} ms)`);
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    t.fail(`${what}: not within 3 s`);
  };
  const mode = async (p: string) => (await fsp.stat(p)).mode & 0o777;
  await fsp.writeFile(a!('f'), 'one');
  await fsp.mkdir(a!('dir'));
  t.equal((await fsp.stat(b!('f'))).size, 3, 'B sees the file');
  t.ok((await fsp.stat(b!('dir'))).isDirectory(), 'and the directory');

  // Repeated stats of unchanged names are the kernel's: they do not reach the master.
  const lookups = await masterCount(c.masterUrl, '/api/v1/lookup');
  const stats = await masterCount(c.masterUrl, '/api/v1/stat');
  for (let i = 0; i < 50; i++) await fsp.stat(b!('f'));
  t.equal((await masterCount(c.masterUrl, '/api/v1/lookup')) + (await masterCount(c.masterUrl, '/api/v1/stat')), lookups + stats, '50 stats on B asked the master nothing');

  await fsp.chmod(a!('f'), 0o600);
  await within('B sees the new mode', async () => (await mode(b!('f'))) === 0o600);
  await fsp.writeFile(a!('f'), 'three');
  await within('B sees the new size', async () => (await fsp.stat(b!('f'))).size === 5);
  t.equal(await fsp.readFile(b!('f'), 'utf8'), 'three', 'and reads the new bytes');
  await fsp.rename(a!('f'), a!('dir/g'));
  await within('the old name is gone for B', async () => !(await fsp.stat(b!('f')).then(() => true, () => false)));
  await within('the new name is there for B', async () => (await fsp.stat(b!('dir/g'))).size === 5);
  await fsp.writeFile(a!('f'), 'again');
  await within('a name taken again shows the new file', async () => (await fsp.readFile(b!('f'), 'utf8')) === 'again');
  await fsp.unlink(a!('dir/g'));
  await within('an unlinked name is gone for B', async () => !(await fsp.stat(b!('dir/g')).then(() => true, () => false)));
  await fsp.chmod(a!('dir'), 0o700);
  await within("B sees the directory's new mode", async () => (await mode(b!('dir'))) === 0o700);

  // B's own changes, moved and renamed by B, then changed by A: the kernel's moved copy still follows.
  await fsp.writeFile(b!('mine'), 'x');
  t.equal((await fsp.stat(b!('mine'))).size, 1);
  await fsp.rename(b!('mine'), b!('mine2'));
  t.equal((await fsp.stat(b!('mine2'))).size, 1, 'B sees its own rename at once');
  await fsp.rename(a!('mine2'), a!('mine3'));
  await within('a rename by A of a name B renamed itself is seen by B', async () => !(await fsp.stat(b!('mine2')).then(() => true, () => false)));
});

t.test('close-to-open: an open right after another mount closed the file sees its new size and bytes', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  await fsp.writeFile(a!('f'), 'seed');
  t.equal(await fsp.readFile(b!('f'), 'utf8'), 'seed');
  let wrong = 0;
  for (let i = 0; i < 40; i++) {
    // A different size each round, inside the kernel's attribute timeout on B.
    const data = randomBytes(1000 + i * 777);
    await fsp.writeFile(a!('f'), data);
    const fh = await fsp.open(b!('f'), 'r');
    try {
      const size = (await fh.stat()).size;
      const got = await fh.readFile();
      if (size !== data.length || !got.equals(data)) {
        wrong++;
        t.comment(`round ${i}: fstat ${size}, read ${got.length}, wrote ${data.length}, bytes ${got.equals(data) ? "equal" : "differ"}`);
      }
    } finally {
      await fh.close();
    }
  }
  t.equal(wrong, 0, 'every open on B saw the size and bytes A had just written');
});

t.test('feed leases: opens are answered from the cache, yet a close elsewhere is always seen, even by a mount whose feed lags', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'] });
  // Mount B reaches the master through a proxy that holds each of its feed polls for 250 ms:
  // B learns of every change late, so only the master waiting for B can keep close-to-open.
  const proxy = await startFaultProxy(c.masterUrl, t);
  proxy.mode = 'delay';
  proxy.delayMs = 250;
  proxy.match = (req) => (req.url ?? '').includes('/changes');
  const mntB = path.join(c.root, 'mntB');
  await fsp.mkdir(mntB);
  const b = spawn(process.execPath, [CLI, 'mount', '--home', path.join(c.root, 'clientB'), '--master', proxy.endpoint, '--feed-lease-ms', '1000', mntB], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn' } });
  t.teardown(async () => {
    b.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    b.kill('SIGKILL');
    forceUnmount(mntB);
  });
  let out = '';
  b.stdout!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mount B did not mount: ${out}`)), 30_000);
    b.stdout!.on('data', () => /mounted at /.test(out) && (clearTimeout(timer), resolve()));
  });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const bp = (p: string) => path.join(mntB, p);

  await fsp.writeFile(a('f'), 'seed');
  t.equal(await fsp.readFile(bp('f'), 'utf8'), 'seed', 'B reads what A wrote');
  // B holds no lease, and caches no answer, until its feed's first answer (250 ms of proxy delay
  // and the master's hold after it mounted): opens before that rightly ask the master. On a fast
  // machine the read above came first; give the feed a few rounds and read once more to cache.
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await fsp.readFile(bp('f'), 'utf8'), 'seed', 'B reads it again once its feed runs');
  const blocksAsked = () => masterCount(c.masterUrl, '/api/v1/blocks');
  const before = await blocksAsked();
  for (let i = 0; i < 10; i++) t.equal(await fsp.readFile(bp('f'), 'utf8'), 'seed');
  t.equal(await blocksAsked(), before, '10 opens of an unchanged file on B did not ask the master (answered under the lease)');
  // Where the file is cached changes (freed here; the next read caches it again): its content did not, so opens still need no master.
  const freed = await runCli(['fs', 'free', '/f', '--master', c.masterUrl]);
  t.equal(freed.code, 0, freed.stderr);
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < 3; i++) t.equal(await fsp.readFile(bp('f'), 'utf8'), 'seed', 'B reads the freed file again');
  t.equal(await blocksAsked(), before, 'a change of cache locations alone did not send opens to the master');

  let wrong = 0;
  for (let i = 0; i < 15; i++) {
    const data = randomBytes(2000 + i * 999);
    await fsp.writeFile(a('f'), data);
    const got = await fsp.readFile(bp('f'));
    if (!got.equals(data)) {
      wrong++;
      t.comment(`round ${i}: read ${got.length} bytes, A wrote ${data.length}`);
    }
  }
  t.equal(wrong, 0, "every open on B right after A's close saw A's bytes, although B's feed lags 250 ms");
});

t.test("a change's answer brings its directory's new attributes: a stat of the directory right after is right and needs no master", async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  await fsp.mkdir(a('d'));
  let prev = await fsp.stat(a('d'));
  const stats = await masterCount(c.masterUrl, '/api/v1/stat');
  // Each change moves the directory's mtime (the kernel drops its copy of the directory's attributes and asks at once).
  const changes: [string, () => Promise<unknown>, number][] = [
    // Open (and closed after the stat): the close is a change of its own, and until the feed has shown it
    // this mount serves nothing older (read-your-writes), the directory's attributes included.
    ['create', () => fsp.open(a('d/f'), 'wx'), 0],
    ['mkdir', () => fsp.mkdir(a('d/sub')), 1],
    ['rename in the directory', () => fsp.rename(a('d/f'), a('d/g')), 0],
    ['symlink', () => fsp.symlink('g', a('d/l')), 0],
    ['rename into a subdirectory', () => fsp.rename(a('d/l'), a('d/sub/l')), 0],
    ['unlink', () => fsp.unlink(a('d/g')), 0],
    ['rmdir', async () => (await fsp.unlink(a('d/sub/l')), fsp.rmdir(a('d/sub'))), -1],
  ];
  for (const [what, change, links] of changes) {
    await new Promise((r) => setTimeout(r, 20));
    const opened = await change();
    const st = await fsp.stat(a('d'));
    if (opened && typeof opened === 'object' && 'close' in opened) await (opened as fsp.FileHandle).close();
    t.ok(st.mtimeMs > prev.mtimeMs, `${what}: the directory's mtime moved`);
    t.equal(st.nlink, prev.nlink + links, `${what}: the directory's link count`);
    prev = st;
  }
  t.equal(await masterCount(c.masterUrl, '/api/v1/stat'), stats, 'none of those stats of the directory asked the master');
});

t.test('a directory this mount made answers its missing names without the master; names made elsewhere, and a store mounted on it, still show', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  await fsp.mkdir(a!('d'));
  // The kernel asks for each name before it creates it: here the mount answers from the directory it made.
  await fsp.writeFile(a!('d/first'), '1');
  const lookups = await masterCount(c.masterUrl, '/api/v1/lookup');
  for (let i = 0; i < 20; i++) {
    await t.rejects(fsp.stat(a!(`d/missing${i}`)), { code: 'ENOENT' });
    await fsp.writeFile(a!(`d/f${i}`), `file ${i}`, { flag: 'wx' });
  }
  t.equal(await masterCount(c.masterUrl, '/api/v1/lookup'), lookups, '20 missing names and 20 creates: no lookup reached the master');
  t.equal(await fsp.readFile(a!('d/f7'), 'utf8'), 'file 7', 'the files made are there');
  await t.rejects(fsp.writeFile(a!('d/f3'), 'again', { flag: 'wx' }), { code: 'EEXIST' }, 'a name made here exists');

  // Made through another mount: seen at once (its create was answered only once this mount had applied it).
  await fsp.writeFile(b!('d/fromB'), 'from B');
  t.equal(await fsp.readFile(a!('d/fromB'), 'utf8'), 'from B', "a name another mount made is found right after that mount's create returned");
  await fsp.mkdir(b!('d/dirB'));
  t.ok((await fsp.stat(a!('d/dirB'))).isDirectory(), 'and a directory');
  await fsp.unlink(b!('d/f0'));
  await t.rejects(fsp.stat(a!('d/f0')), { code: 'ENOENT' }, 'a name another mount removed is gone');
  await fsp.writeFile(b!('d/f0'), 'back');
  t.equal(await fsp.readFile(a!('d/f0'), 'utf8'), 'back', 'and back again');
  // Through the CLI, a client with no cache (path-based requests).
  const made = await runCli(['fs', 'mkdir', '/d/fromCli', '--master', c.masterUrl]);
  t.equal(made.code, 0, made.stderr);
  t.ok((await fsp.stat(a!('d/fromCli'))).isDirectory(), 'a directory the CLI made is found');
  // Renamed in from elsewhere.
  await fsp.writeFile(b!('outside'), 'moved');
  await fsp.rename(b!('outside'), b!('d/movedIn'));
  t.equal(await fsp.readFile(a!('d/movedIn'), 'utf8'), 'moved', 'a file renamed into it is found');

  // A store mounted on an empty directory this mount made: its objects appear with no name changing in the namespace.
  await fsp.mkdir(a!('m'));
  await t.rejects(fsp.stat(a!('m/obj')), { code: 'ENOENT' }, 'empty at first');
  const store = path.join(c.root, 'other-store');
  await fsp.mkdir(store);
  await fsp.writeFile(path.join(store, 'obj'), 'in the other store');
  const mounted = await runCli(['fs', 'mount', '/m', `file://${store}`, '--master', c.masterUrl]);
  t.equal(mounted.code, 0, mounted.stderr);
  t.equal(await fsp.readFile(a!('m/obj'), 'utf8'), 'in the other store', "the mounted store's object is found through the mount that knew the directory empty");
});

t.test("changes this mount makes in a directory do not make it notify the kernel about the directory (the kernel drops its copy itself)", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: () => ['--metrics-port', String(port)] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const attrNotes = async () => Number(/^strata_fuse_kernel_invalidations_total\{[^}]*what="attrs"[^}]*\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
  await fsp.mkdir(a('d'));
  await fsp.stat(a('d'));
  const before = await attrNotes();
  let prev = await fsp.stat(a('d'));
  // Changes of the directory alone (new names): what a loop of creates does, as tar or a build does.
  for (let i = 0; i < 30; i++) {
    await (await fsp.open(a(`d/f${i}`), 'wx')).close();
    if (i % 3 === 0) await fsp.mkdir(a(`d/sub${i}`));
    if (i % 5 === 0) await fsp.symlink(`f${i}`, a(`d/l${i}`));
    const st = await fsp.stat(a('d'));
    if (!(st.mtimeMs > prev.mtimeMs)) t.fail(`round ${i}: the directory's mtime did not move`);
    prev = st;
  }
  const notes = (await attrNotes()) - before;
  t.ok(notes <= 3, `30 rounds of creates, mkdirs and symlinks: ${notes} notifications about attributes (one per change before)`);
  t.equal((await fsp.stat(a('d'))).nlink, 2 + 10, "the directory's link count counts the subdirectories");
  t.equal((await fsp.readdir(a('d'))).length, 30 + 10 + 6, 'and it lists every name');
});

t.test("files persisted in the background (ASYNC_THROUGH) keep the kernel's copy of their attributes: stats after it ask nothing", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: () => ['--write-type', 'ASYNC_THROUGH', '--metrics-port', String(port)] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const attrNotes = async () => Number(/^strata_fuse_kernel_invalidations_total\{[^}]*what="attrs"[^}]*\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
  const persisted = async (p: string) => ((await (await fetch(`${c.masterUrl}/api/v1/stat?path=${encodeURIComponent(p)}`)).json()) as { persistState: string }).persistState === 'persisted';
  await fsp.mkdir(a('d'));
  const n = 20;
  for (let i = 0; i < n; i++) await fsp.writeFile(a(`d/f${i}`), `file number ${i}`);
  const first = await Promise.all(Array.from({ length: n }, (_, i) => fsp.stat(a(`d/f${i}`))));
  const notesBefore = await attrNotes();
  for (let i = 0; i < n; i++) {
    for (let tries = 0; !(await persisted(`/d/f${i}`)); tries++) {
      if (tries > 200) throw new Error(`/d/f${i} was not persisted within 20 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const asked = (await masterCount(c.masterUrl, '/api/v1/stat')) + (await masterCount(c.masterUrl, '/api/v1/lookup'));
  for (let i = 0; i < n; i++) {
    const st = await fsp.stat(a(`d/f${i}`));
    if (st.size !== first[i]!.size || st.mtimeMs !== first[i]!.mtimeMs || st.ino !== first[i]!.ino) t.fail(`f${i}: stat changed`);
  }
  t.equal((await attrNotes()) - notesBefore, 0, `${n} files persisted: no notification dropped the kernel's copy of their attributes`);
  t.equal((await masterCount(c.masterUrl, '/api/v1/stat')) + (await masterCount(c.masterUrl, '/api/v1/lookup')) - asked, 0, 'and their stats asked the master nothing');
});

t.test('a listing is the kernel\'s to repeat while no name in the directory changed; a name changed through any client shows in the next one', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: (i) => (i === 0 ? ['--metrics-port', String(port)] : []) });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  const readdirs = async () => Number(/^strata_fuse_op_seconds_count\{[^}]*op="readdir"[^}]*\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
  const names = async () => (await fsp.readdir(a!('d'))).sort();
  const within = async (what: string, check: (n: string[]) => boolean) => {
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      if (check(await names())) return t.pass(`${what} (${Date.now() - t0} ms)`);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.fail(`${what}: not within 3 s (${(await names()).join(' ')})`);
  };
  await fsp.mkdir(b!('d'));
  for (let i = 0; i < 50; i++) await fsp.writeFile(b!(`d/f${i}`), `${i}`);
  t.equal((await names()).length, 50, 'A lists what B made');
  const before = await readdirs();
  for (let i = 0; i < 5; i++) t.equal((await names()).length, 50);
  t.equal((await readdirs()) - before, 0, 'five more listings were the kernel\'s: no readdir reached the mount');

  await fsp.writeFile(b!('d/new'), 'n');
  await within('a name B made shows in the next listings', (n) => n.includes('new'));
  await fsp.unlink(b!('d/f1'));
  await within('a name B removed is gone', (n) => !n.includes('f1'));
  await fsp.rename(b!('d/f2'), b!('d/f2x'));
  await within('a name B renamed shows renamed', (n) => n.includes('f2x') && !n.includes('f2'));
  const made = await runCli(['fs', 'mkdir', '/d/fromCli', '--master', c.masterUrl]);
  t.equal(made.code, 0, made.stderr);
  await within('a directory the CLI made (no cache of its own) shows', (n) => n.includes('fromCli'));
  // This mount's own changes: the kernel drops its listing itself, so the very next one has them.
  await fsp.writeFile(a!('d/mine'), 'm');
  t.ok((await names()).includes('mine'), 'a name A made is in its very next listing');
  await fsp.rename(a!('d/mine'), a!('d/mine2'));
  t.same((await names()).filter((n) => n.startsWith('mine')), ['mine2'], 'renamed by A: at once');
  await fsp.unlink(a!('d/mine2'));
  t.notOk((await names()).some((n) => n.startsWith('mine')), 'removed by A: at once');
  t.equal((await names()).length, 50 + 1 - 1 + 1, 'and every other name is there');

  // Names that change with no change of the directory itself: a store mounted on it.
  await fsp.mkdir(a!('m'));
  t.same(await fsp.readdir(a!('m')), [], 'empty at first');
  t.same(await fsp.readdir(a!('m')), [], 'and listed again (the kernel answers)');
  // Also a directory held open across the change: python's listdir of a descriptor reads it from its start
  // again (rewinddir), with no opendir for the mount to answer.
  const held = spawn('python3', ['-c', HELD_DIR_LISTER, a!('m')], { stdio: ['pipe', 'pipe', 'inherit'] });
  let heldOut = '';
  held.stdout!.on('data', (d) => (heldOut += d));
  const heldDone = new Promise((r) => held.once('exit', r));
  t.teardown(() => void held.kill());
  while (!heldOut.includes('\n')) await new Promise((r) => setTimeout(r, 20));
  t.equal(heldOut.trim(), '[]', 'listed through a descriptor held open: empty');
  const store = path.join(c.root, 'other-store');
  await fsp.mkdir(store);
  await fsp.writeFile(path.join(store, 'obj'), 'in the other store');
  const mounted = await runCli(['fs', 'mount', '/m', `file://${store}`, '--master', c.masterUrl]);
  t.equal(mounted.code, 0, mounted.stderr);
  held.stdin!.end('go\n');
  await heldDone;
  t.equal(heldOut.trim().split('\n')[1], "['obj']", 'the held descriptor, listed from its start again, shows the mounted store\'s object');
  const t0 = Date.now();
  while (!(await fsp.readdir(a!('m'))).includes('obj') && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
  t.same(await fsp.readdir(a!('m')), ['obj'], "a store mounted on the directory: its objects show in the next listings");
});

t.test("a reader of a listing the kernel keeps reads it whole when the kernel's copy goes midway (a change; another opendir)", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'], mountArgs: (i) => (i === 0 ? ['--feed-timeout-ms', '3000', '--metrics-port', String(port)] : []) });
  const readdirsOfA = async () => Number(/^strata_fuse_op_seconds_count\{[^}]*op="readdir"[^}]*\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  const n = 3000;
  const names = Array.from({ length: n }, (_, i) => `f${String(i).padStart(5, '0')}`);
  await fsp.mkdir(path.join(c.ufsDir, 'd'));
  await Promise.all(names.map((x) => fsp.writeFile(path.join(c.ufsDir, 'd', x), '')));
  /** Reads 100 entries through one handle, runs `meanwhile`, reads the rest through the same handle. */
  const readAcross = async (meanwhile: () => Promise<void>): Promise<string[]> => {
    t.equal((await fsp.readdir(a!('d'))).length >= n, true, 'listed');
    await fsp.readdir(a!('d')); // the kernel's copy from here on
    const dir = await fsp.opendir(a!('d'), { bufferSize: 32 });
    const seen: string[] = [];
    try {
      for (let i = 0; i < 100; i++) seen.push((await dir.read())!.name);
      const before = await readdirsOfA();
      await meanwhile();
      for (let e = await dir.read(); e; e = await dir.read()) seen.push(e.name);
      t.ok((await readdirsOfA()) > before, 'the rest was read from the mount again');
    } finally {
      await dir.close();
    }
    return seen;
  };
  const aChanged = await readAcross(async () => {
    await fsp.writeFile(b!('d/zz-from-b'), 'b');
    await new Promise((r) => setTimeout(r, 1000));
  });
  t.same(names.filter((x) => !aChanged.includes(x)), [], `a name made through another mount midway: every name read (${aChanged.length})`);
  const reopened = await readAcross(async () => {
    await new Promise((r) => setTimeout(r, 3300)); // past the feed timeout: the next opendir does not keep the kernel's copy
    await (await fsp.open(a!('d'), 'r')).close();
  });
  t.same(names.filter((x) => !reopened.includes(x)), [], `another opendir midway: every name read (${reopened.length})`);
  t.equal(new Set(reopened).size, reopened.length, 'none twice');
});

t.test("a listing the kernel keeps is read again once the store's sync interval passed: an object put straight into the store shows", async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '2000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  await fsp.mkdir(a('d'));
  const synced = Date.now(); // made here: as good as listed now
  await fsp.writeFile(a('d/x'), 'x');
  // Listed late in the interval: the master vouches for its answer only until the interval ends, and so does the kernel.
  await new Promise((r) => setTimeout(r, 1400));
  t.same(await fsp.readdir(a('d')), ['x']);
  t.same(await fsp.readdir(a('d')), ['x'], 'listed again (the kernel may answer)');
  await fsp.writeFile(path.join(c.ufsDir, 'd', 'direct'), 'put straight into the store');
  await new Promise((r) => setTimeout(r, Math.max(0, synced + 2300 - Date.now())));
  t.same((await fsp.readdir(a('d'))).sort(), ['direct', 'x'], 'once the interval since the last store listing passed, the listing shows the new object');
});

t.test("a lookup brings a small file's blocks along: the open after it asks the master nothing", async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '-1'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const src = path.join(c.root, 'src.bin');
  const data = randomBytes(300_000);
  await fsp.writeFile(src, data);
  // Written by another client (the CLI): this mount has looked up and opened none of them.
  for (const name of ['one', 'two', 'three']) {
    const cp = await runCli(['fs', 'cp', `file:${src}`, `strata:/${name}`, '--master', c.masterUrl]);
    t.equal(cp.code, 0, cp.stderr);
  }
  await new Promise((r) => setTimeout(r, 500)); // the feed lease runs
  const blocks = await masterCount(c.masterUrl, '/api/v1/blocks');
  for (const name of ['one', 'two', 'three']) t.ok((await fsp.readFile(a(name))).equals(data), `${name} reads back`);
  t.equal(await masterCount(c.masterUrl, '/api/v1/blocks'), blocks, 'three cold opens: no request for blocks');
});

t.test('a restarted master: a mount stops vouching for its cache at the feed\'s first failure, so close-to-open holds', async (t) => {
  // Sync off: cached answers never expire on their own; feed leases on (the default).
  const c = await startCluster(t, { workers: 1, mounts: 2, masterArgs: ['--sync-interval-ms', '-1'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  for (let round = 1; round <= 4; round++) {
    const v1 = randomBytes(1000);
    const v2 = randomBytes(2000);
    await fsp.writeFile(b!(`f${round}`), v1);
    t.ok((await fsp.readFile(a!(`f${round}`))).equals(v1), `round ${round}: A has the first version cached`);
    await c.master.kill();
    await c.master.restart();
    await fsp.writeFile(b!(`f${round}`), v2);
    const got = await fsp.readFile(a!(`f${round}`));
    t.ok(got.equals(v2), `round ${round}: after the restart, A's open after B's close reads the new version (${got.length} bytes)`);
  }
});

t.test('with kernel timeouts of 0, a directory listing leaves nothing cached in the kernel either', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 2, mountArgs: () => ['--attr-timeout-ms', '0', '--entry-timeout-ms', '0'] });
  const [a, b] = c.mounts.map((m) => (p: string) => path.join(m, p));
  await fsp.mkdir(b!('d'));
  for (let round = 1; round <= 3; round++) {
    await fsp.writeFile(b!('d/f'), Buffer.alloc(100 * round));
    await fsp.readdir(a!('d'), { withFileTypes: true }); // READDIRPLUS: names and attributes for the kernel
    await fsp.writeFile(b!('d/f'), Buffer.alloc(100 * round + 50));
    t.equal((await fsp.stat(a!('d/f'))).size, 100 * round + 50, `round ${round}: a stat right after another mount's change sees it`);
  }
});

t.test('a stat and a read of every file once the sync interval passed: the store is checked once and the names come in pages, not one request each', async (t) => {
  // Long enough that the stats and the reads below all fall within the interval after the store was listed again.
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '4000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const n = 60;
  // Zero-padded: the stat order below is the listing's order.
  const name = (i: number) => `f${String(i).padStart(2, '0')}`;
  await fsp.mkdir(a('d'));
  for (let i = 0; i < n; i++) await fsp.writeFile(a(`d/${name(i)}`), 'x');
  for (let i = 0; i < n; i++) await fsp.stat(a(`d/${name(i)}`));
  // Past the interval (the mount's cached entries and the master's sync alike) and the kernel's timeouts.
  await new Promise((r) => setTimeout(r, 4500));
  // Changed straight in the store meanwhile: what the mount answers must show it.
  await fsp.rm(path.join(c.ufsDir, 'd', name(5)));
  await fsp.writeFile(path.join(c.ufsDir, 'd', name(40)), 'fives');
  const lookups = await masterCount(c.masterUrl, '/api/v1/lookup');
  const sizes: (number | string)[] = [];
  for (let i = 0; i < n; i++) {
    try {
      sizes.push((await fsp.stat(a(`d/${name(i)}`))).size);
    } catch (err) {
      sizes.push((err as NodeJS.ErrnoException).code!);
    }
  }
  const expected = Array.from({ length: n }, (_, i) => (i === 5 ? 'ENOENT' : i === 40 ? 5 : 1));
  t.same(sizes, expected, 'the object removed in the store is gone, the one rewritten there has its new size');
  const asked = (await masterCount(c.masterUrl, '/api/v1/lookup')) - lookups;
  t.ok(asked < n / 3, `${asked} lookups reached the master for ${n} stats`);
  // The pages brought the small files' blocks along: opening them asks the master nothing more.
  const blocks = await masterCount(c.masterUrl, '/api/v1/blocks');
  const contents: string[] = [];
  for (let i = 0; i < n; i++) if (i !== 5) contents.push(await fsp.readFile(a(`d/${name(i)}`), 'utf8'));
  t.same(contents, Array.from({ length: n - 1 }, (_, i) => (i === 39 ? 'fives' : 'x')), 'every file reads back as the store has it');
  const blockAsks = (await masterCount(c.masterUrl, '/api/v1/blocks')) - blocks;
  t.ok(blockAsks < n / 3, `${blockAsks} requests for blocks for ${n - 1} opens`);
});

t.test("a page of names is not kept for files the master must check with the store first (the store's directory vanished)", async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '2000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const names = [...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 10 }, (_, i) => `z${i}`)];
  await fsp.mkdir(a('d'));
  await fsp.mkdir(a('d/m'));
  for (const name of names) await fsp.writeFile(a(`d/${name}`), 'x');
  for (const name of [...names, 'm']) await fsp.stat(a(`d/${name}`));
  await new Promise((r) => setTimeout(r, 2500));
  // The directory is gone from the store: listing it finds nothing, and its files are checked one by one.
  await fsp.rm(path.join(c.ufsDir, 'd'), { recursive: true });
  for (let i = 0; i < 10; i++) await t.rejects(fsp.stat(a(`d/a${i}`)), { code: 'ENOENT' }, `a${i} is gone`);
  // A directory is not checked on lookup: found, after enough lookups of expired names, it starts a page read.
  await fsp.stat(a('d/m'));
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < 10; i++) await t.rejects(fsp.stat(a(`d/z${i}`)), { code: 'ENOENT' }, `z${i}, listed in the page after m, is gone too`);
});

t.test('past the sync interval, files opened right after a listing (no lookup: the kernel has their names) bring the next ones in pages too', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '4000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  const n = 60;
  const name = (i: number) => `f${String(i).padStart(2, '0')}`;
  await fsp.mkdir(a('d'));
  for (let i = 0; i < n; i++) await fsp.writeFile(a(`d/${name(i)}`), `file ${i}`);
  for (let i = 0; i < n; i++) await fsp.stat(a(`d/${name(i)}`));
  await new Promise((r) => setTimeout(r, 4500));
  const blocks = await masterCount(c.masterUrl, '/api/v1/blocks');
  // The listing gives the kernel every name with its attributes (READDIRPLUS): the opens right after send no lookup.
  const names = (await fsp.readdir(a('d'))).sort();
  t.equal(names.length, n);
  const contents: string[] = [];
  for (const f of names) contents.push(await fsp.readFile(a(`d/${f}`), 'utf8'));
  t.same(contents, Array.from({ length: n }, (_, i) => `file ${i}`), 'every file reads back');
  const asked = (await masterCount(c.masterUrl, '/api/v1/blocks')) - blocks;
  t.ok(asked < n / 3, `${asked} requests for blocks for ${n} opens`);
});

t.test('past the sync interval, a stat of every file in name order has the next page read ahead: no lookups between pages', async (t) => {
  const c = await startCluster(t, { workers: 1, mounts: 1, masterArgs: ['--sync-interval-ms', '4000'] });
  const a = (p: string) => path.join(c.mounts[0]!, p);
  // Three pages' worth (LIST_PAGE_MAX names each), put straight into the store: quicker than creating them through the mount.
  const n = 2600;
  const name = (i: number) => `f${String(i).padStart(4, '0')}`;
  await fsp.mkdir(path.join(c.ufsDir, 'd'));
  for (let i = 0; i < n; i++) await fsp.writeFile(path.join(c.ufsDir, 'd', name(i)), 'x');
  // Listed once, so the master knows them all before the lookups: an answer that found a file
  // in the store (a change) is not kept by the cache.
  t.equal((await fsp.readdir(a('d'))).length, n);
  // Past the kernel's copy of the listing's names: each stat below is a lookup this mount caches.
  await KERNEL_TTL();
  for (let i = 0; i < n; i++) await fsp.stat(a(`d/${name(i)}`));
  await new Promise((r) => setTimeout(r, 4500));
  const lookups = await masterCount(c.masterUrl, '/api/v1/lookup');
  const pages = await masterCount(c.masterUrl, '/api/v1/list');
  let ones = 0;
  for (let i = 0; i < n; i++) if ((await fsp.stat(a(`d/${name(i)}`))).size === 1) ones++;
  t.equal(ones, n, 'every file stats with its size');
  const asked = (await masterCount(c.masterUrl, '/api/v1/lookup')) - lookups;
  const read = (await masterCount(c.masterUrl, '/api/v1/list')) - pages;
  // The 8 expired lookups that start the first page read, and none after: each later page was read
  // while the stats were still in the one before (without that, 8 more lookups start each page).
  t.ok(asked <= 12, `${asked} lookups reached the master for ${n} stats (${read} pages)`);
  t.ok(read >= 3 && read <= 5, `${read} pages read for ${n} names`);
});
