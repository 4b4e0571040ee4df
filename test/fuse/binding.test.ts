/**
 * Strata's own FUSE binding through real mounts: the POSIX suite with every feature
 * against MemFs (test/fuse/memfs.ts), and the error paths of handlers that throw,
 * reject or answer nonsense (test/fuse/faultyfs.ts): each yields an errno, none
 * hangs, and the file system goes on serving. The file systems run in child
 * processes; teardown always stops them and unmounts, even after a failure.
 */

import t from 'tap';
import type * as tap from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants as osc, tmpdir } from 'node:os';
import * as path from 'node:path';
import { ALL_FEATURES, posixSuite, randomReadMismatches } from './posix-suite';
import { ENOSYS_FILE, FAULTS } from './faultyfs';
import { abortFuseConnection, connectionOfDevice, fuseDeviceOf } from '../../src/fuse/native/fusectl';

const E = osc.errno;

function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

function fusermount(dir: string): void {
  if (!isMounted(dir)) return;
  const r = spawnSync('fusermount3', ['-uz', dir]);
  if (r.error) spawnSync('fusermount', ['-uz', dir]);
  if (isMounted(dir)) spawnSync('umount', ['-l', dir]);
}

const live = new Set<{ proc: ChildProcess; mnt: string; root: string }>();
// Should the runner kill this process without teardowns, still leave nothing behind.
process.on('exit', () => {
  for (const m of live) {
    try {
      m.proc.kill('SIGKILL');
    } catch {
      // gone
    }
    fusermount(m.mnt);
  }
});

interface Mounted {
  mnt: string;
  proc: ChildProcess;
  output: () => string;
  alive: () => boolean;
}

/** Starts `node SCRIPT MNT` on a fresh temp dir and resolves once it printed "mounted MNT". */
async function mountChild(t: tap.Test, script: string, ...args: string[]): Promise<Mounted> {
  const root = mkdtempSync(path.join(tmpdir(), 'strata-binding-'));
  const mnt = path.join(root, 'mnt');
  await fsp.mkdir(mnt);
  const proc = spawn(process.execPath, [path.join(__dirname, script), mnt, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { proc, mnt, root };
  live.add(entry);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  t.teardown(async () => {
    if (!exited()) {
      proc.kill('SIGTERM');
      const gone = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 5000);
        proc.once('exit', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!gone) proc.kill('SIGKILL');
    }
    fusermount(mnt);
    live.delete(entry);
    // Never remove a tree that is still a mount point: that would reach into the mount.
    if (!isMounted(mnt)) rmSync(root, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not mount within 20 s: ${out}`)), 20_000);
    const check = () => {
      if (out.includes(`mounted ${mnt}`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${sig ?? code}) before mounting: ${out}`));
    });
  });
  t.ok(isMounted(mnt), `${script} mounted ${mnt}`);
  return { mnt, proc, output: () => out, alive: () => !exited() };
}

/** Rejects when `p` takes longer than `ms`: a request the binding never answered. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hung)`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function errnoOf(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.errno === 'number') return -e.errno;
    throw err;
  }
}

t.test('MemFs on the binding: the POSIX suite with every feature', async (t) => {
  const m = await mountChild(t, 'memfs.js');
  posixSuite(t, m.mnt, new Set(ALL_FEATURES));
  t.test('the file system is still up', async (t) => {
    t.ok(m.alive(), 'memfs is still running', { output: m.output() });
    t.ok((await fsp.stat(m.mnt)).isDirectory(), 'the mount answers');
  });
});

t.test('handlers that throw or reject yield an errno and never hang', async (t) => {
  await t.test('MemFs: missing names answer ENOENT', async (t) => {
    const m = await mountChild(t, 'memfs.js');
    const p = (x: string) => path.join(m.mnt, x);
    t.equal(await within(errnoOf(fsp.stat(p('missing'))), 10_000, 'stat'), E.ENOENT, 'lookup of a missing name');
    t.equal(await within(errnoOf(fsp.readFile(p('missing'))), 10_000, 'open'), E.ENOENT, 'open of a missing name');
    t.equal(await within(errnoOf(fsp.unlink(p('missing'))), 10_000, 'unlink'), E.ENOENT, 'unlink of a missing name');
    await fsp.writeFile(p('file'), 'x');
    t.equal(await within(errnoOf(fsp.readlink(p('file'))), 10_000, 'readlink'), E.EINVAL, 'readlink of a file (a rejection in readlink)');
    const codes = await within(Promise.all(Array.from({ length: 2000 }, (_, i) => errnoOf(fsp.stat(p(`nope-${i}`))))), 60_000, '2000 lookups');
    t.ok(codes.every((c) => c === E.ENOENT), '2000 concurrent failing lookups all answer ENOENT');
    t.equal(await fsp.readFile(p('file'), 'utf8'), 'x', 'still serving');
    t.ok(m.alive(), 'memfs is still running');
  });

  await t.test('faulty handlers', async (t) => {
    const m = await mountChild(t, 'faultyfs.js');
    const p = (x: string) => path.join(m.mnt, x);
    for (const [name, [, errno]] of Object.entries(FAULTS)) {
      t.equal(await within(errnoOf(fsp.stat(p(name))), 10_000, name), errno, `${name}: errno ${errno}`);
    }
    // All at once, many times over.
    const names = Object.keys(FAULTS);
    const all = await within(Promise.all(Array.from({ length: 500 }, (_, i) => errnoOf(fsp.stat(p(names[i % names.length]!))))), 60_000, 'concurrent faults');
    t.same(all, Array.from({ length: 500 }, (_, i) => FAULTS[names[i % names.length]!]![1]), '500 concurrent faulty lookups each answer their errno');
    // An error whose errno is ENOSYS must not tell the kernel fsync or flush do not exist (it would stop asking).
    const f = await fsp.open(p(ENOSYS_FILE), 'w');
    await f.write('x');
    t.equal(await errnoOf(f.sync()), E.EIO, 'fsync failing with ENOSYS from below: EIO');
    t.equal(await errnoOf(f.sync()), E.EIO, 'and the next fsync still reaches the file system (not 0)');
    t.equal(await errnoOf(f.close()), E.EIO, 'close (flush) likewise: EIO');
    await fsp.writeFile(p('ok'), 'still fine');
    t.equal(await fsp.readFile(p('ok'), 'utf8'), 'still fine', 'the file system goes on serving');
    t.ok(m.alive(), 'the file-system process did not crash', { output: m.output() });
  });
});

t.test('reads answered in parts: memory and ranges of open files (spliced into the kernel)', async (t) => {
  const m = await mountChild(t, 'rangefs.js');
  const p = (x: string) => path.join(m.mnt, x);
  posixSuite(t, m.mnt, new Set(ALL_FEATURES));

  await t.test('big and odd reads come back byte for byte', async (t) => {
    const data = randomBytes(3 * 1024 * 1024 + 4097);
    await fsp.writeFile(p('big.bin'), data);
    // A fresh open: the kernel must ask the file system, not its page cache.
    t.ok((await fsp.readFile(p('big.bin'))).equals(data), 'a sequential read of 3 MiB (512 KiB requests, spliced)');
    t.equal(await randomReadMismatches(p('big.bin'), data, 200, 1.5 * 1024 * 1024), 0, '200 reads at random offsets and lengths equal the file');
  });

  await t.test('a range that cannot be read answers an errno', async (t) => {
    await fsp.writeFile(p('bad-range'), randomBytes(200 * 1024));
    t.equal(await within(errnoOf(fsp.readFile(p('bad-range'))), 10_000, 'read'), E.EBADF, 'a descriptor that is not open: EBADF, not a hang or a short read');
    await fsp.writeFile(p('short-range'), randomBytes(200 * 1024));
    t.equal(await within(errnoOf(fsp.readFile(p('short-range'))), 10_000, 'read'), E.EIO, 'a range past the end of its file: EIO, not a short read');
    t.equal((await fsp.readFile(p('big.bin'))).length, 3 * 1024 * 1024 + 4097, 'still serving');
  });

  await t.test('every reply let go of its ranges', async (t) => {
    t.ok(m.alive(), 'rangefs is still running', { output: m.output() });
    m.proc.kill('SIGTERM');
    await new Promise((r) => m.proc.once('exit', r));
    t.match(m.output(), /unreleased 0\n/, 'no reply kept its ranges', { output: m.output() });
  });
});

t.test("an unmount frees the binding's session, at once or with the last reply to a request it left unanswered", async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'strata-binding-'));
  const mnt = path.join(root, 'mnt');
  await fsp.mkdir(mnt);
  // The binding's test hook: an invalidation's thread waits 300 ms after counting itself out, before its last look at the session.
  const proc = spawn(process.execPath, [path.join(__dirname, 'sessionsfs.js'), mnt], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_FUSE_TEST_INVAL_DELAY_MS: '300' } });
  const entry = { proc, mnt, root };
  live.add(entry);
  t.teardown(() => {
    proc.kill('SIGKILL');
    fusermount(mnt);
    live.delete(entry);
    if (!isMounted(mnt)) rmSync(root, { recursive: true, force: true });
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const code = await new Promise<number | string | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), 60_000);
    proc.once('exit', (c, sig) => {
      clearTimeout(timer);
      resolve(sig ?? c);
    });
  });
  t.equal(code, 0, `sessionsfs ran to its end (no crash): ${out}`);
  const line = out.split('\n').find((l) => l.startsWith('{'));
  const r = JSON.parse(line ?? '{}') as { before: number; afterCycles: number[]; mounted: number; unansweredAtUnmount: number; afterAnswer: number; readerGot: string; heldByInvalidation: number; afterInvalidation: number };
  t.same(r.afterCycles, [r.before, r.before, r.before, r.before, r.before], 'five mount-unmount cycles leave no session behind (once the kernel\'s last request is answered)');
  t.equal(r.mounted, r.before + 1, 'a mount has one');
  t.equal(r.unansweredAtUnmount, r.before + 1, 'an unmount with a read unanswered keeps it');
  t.equal(r.afterAnswer, r.before, 'until that read is answered');
  t.match(r.readerGot, /^(read \d+|error E[A-Z]+)$/, `the reader got an answer (${r.readerGot})`);
  t.equal(r.heldByInvalidation, r.before + 1, "an unmount right after an invalidation leaves the session to the invalidation's thread");
  t.equal(r.afterInvalidation, r.before, 'which frees it once done with it');
  t.notOk(isMounted(mnt), 'nothing is left mounted');
});

t.test('reads the binding answers from served extents, until they are dropped (listed or all)', async (t) => {
  const m = await mountChild(t, 'servefs.js');
  const p = (x: string) => path.join(m.mnt, x);
  const MiB = 1024 * 1024;
  await fsp.writeFile(p('served'), Buffer.alloc(3 * MiB, 'J'));
  await fsp.writeFile(p('drop-listed'), 'x');
  await fsp.writeFile(p('drop-all'), 'x');
  // O_DIRECT: every read reaches the file system (no page cache answering repeats).
  const f = await fsp.open(p('served'), fsc.O_RDONLY | fsc.O_DIRECT);
  t.teardown(() => f.close().catch(() => undefined));
  const who = async (off: number): Promise<string> => {
    const b = Buffer.alloc(4096);
    const { bytesRead } = await within(f.read(b, 0, 4096, off), 10_000, `read at ${off}`);
    if (bytesRead !== 4096) return `short ${bytesRead}`;
    const c = b.toString('latin1', 0, 1);
    return b.every((x) => x === b[0]) ? ({ J: 'handler', C: 'binding' } as Record<string, string>)[c] ?? `byte ${c}` : 'mixed';
  };
  t.equal(await who(0), 'handler', 'the first read of the handle is answered by its handler, which serves three 1 MiB extents');
  t.same([await who(0), await who(MiB + 4096), await who(2 * MiB + 8192)], ['binding', 'binding', 'binding'], 'then the binding answers reads in them itself');
  await fsp.readFile(p('drop-listed'));
  t.same([await who(MiB + 4096), await who(0)], ['handler', 'handler'], 'the two extents dropped by listing them are the handler\'s again');
  t.equal(await who(2 * MiB + 8192), 'binding', 'the extent not listed is still answered by the binding');
  await fsp.readFile(p('drop-all'));
  t.equal(await who(2 * MiB + 8192), 'handler', 'dropping all of the handle\'s extents leaves none');
});

for (const worker of ['comes back', 'never comes back'] as const) {
  t.test(`an unmount while an invalidation waits on the pages of a read in flight (its worker ${worker}): the process exits, the reader is not stuck`, async (t) => {
    const m = await mountChild(t, 'stallfs.js', ...(worker === 'comes back' ? [] : ['forever']));
    const dev = fuseDeviceOf(m.mnt);
    t.ok(dev, 'the mount has a device in mountinfo');
    const p = path.join(m.mnt, 'stall');
    const bytes = randomBytes(256 * 1024);
    await fsp.writeFile(p, bytes);
    // A buffered read in another process: the kernel locks the pages it asks the file system for.
    const script = `const fs = require('fs'); try { const b = Buffer.alloc(65536); const n = fs.readSync(fs.openSync(${JSON.stringify(p)}, 'r'), b, 0, b.length, 0); process.stdout.write(require('crypto').createHash('sha1').update(b.subarray(0, n)).digest('hex')); } catch (e) { process.stdout.write('error ' + e.code); }`;
    const reader = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    reader.stdout!.on('data', (d) => (got += d));
    const readerDone = new Promise<void>((resolve) => reader.once('exit', () => resolve()));
    // Should either stay stuck, end them the way the kernel allows (after which the teardowns unmount).
    t.teardown(async () => {
      if (reader.exitCode === null && reader.signalCode === null && dev) abortFuseConnection(connectionOfDevice(dev));
      reader.kill('SIGKILL');
    });
    const saw = async (what: string) => {
      const deadline = Date.now() + 10_000;
      while (!m.output().includes(what)) {
        if (Date.now() > deadline) throw new Error(`stallfs never printed "${what}": ${m.output()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await saw('stalled');
    m.proc.kill('SIGHUP');
    await saw('invalidating');
    // Long enough for the invalidation to be waiting in the kernel for the read's page lock.
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      m.proc.once('exit', () => (clearTimeout(timer), resolve(true)));
    });
    m.proc.kill('SIGTERM');
    t.ok(await exited, `the file system process exits (${m.output().trim().split('\n').join(' | ')})`);
    const readerExited = await Promise.race([readerDone.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    t.ok(readerExited, 'the reader is not left stuck in the kernel');
    if (worker === 'comes back') {
      t.match(m.output(), /unmounted: clean/, 'the unmount waited for the read and the invalidation, and needed nothing more');
      // The invalidation may drop the pages the answer filled before the reader copies them; the kernel then
      // asks again, after the unmount, and the read fails: a race of the kernel's, not a stuck reader.
      const whole = createHash('sha1').update(bytes.subarray(0, 65536)).digest('hex');
      t.ok(got === whole || got === 'error ENOTCONN', `the read in flight got its bytes, or lost them to the invalidation (${got})`);
    } else {
      t.match(m.output(), /unmounted: an invalidation outlived the unmount's wait: fusectl abort: aborted/, 'the unmount aborted the connection');
      t.match(got, /^error E(NOTCONN|CONNABORTED|IO)$/, 'the read in flight failed');
    }
    t.notOk(isMounted(m.mnt), 'nothing is left mounted');
  });
}
