/**
 * The shared POSIX suite: every operation of a file system through a real FUSE
 * mount, with Node's async fs and the ordinary shell tools (coreutils, util-linux,
 * attr). The mount must be served by another process. Operations a file system may
 * lack are gated by feature names; for an absent feature the suite checks that the
 * operation fails cleanly (an errno, no hang) instead of testing it.
 *
 * Features: 'symlink', 'link', 'xattr', 'mknod' (FIFOs and device nodes),
 * 'fallocate', 'rename-noreplace', 'rename-exchange', 'statfs64' (counts beyond
 * 32 bits reach statfs(2) intact), 'write-unlinked' (an open file still takes
 * writes after its last name is gone; reading it is always required).
 */

import type * as tap from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, constants as C } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';

export const ALL_FEATURES = ['symlink', 'link', 'xattr', 'mknod', 'fallocate', 'rename-noreplace', 'rename-exchange', 'statfs64', 'write-unlinked'] as const;
export type Feature = (typeof ALL_FEATURES)[number];

const KiB = 1024;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Single-quotes a word for sh. */
export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface ShResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const SH_ENV = { ...process.env, TZ: 'UTC', LC_ALL: 'C', LANG: 'C' };

/** Runs a shell script to completion (SIGKILLed after `timeoutMs`, so nothing hangs the suite). */
export function sh(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<ShResult> {
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', script], { cwd: opts.cwd, env: SH_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${opts.timeoutMs ?? 60_000} ms]`;
      p.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Whether a program is on PATH. */
async function have(prog: string): Promise<boolean> {
  return (await sh(`command -v ${q(prog)}`)).code === 0;
}

/** Fails with a message showing the output when a command did not exit 0. */
async function shOk(t: tap.Test, script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await sh(script, opts);
  t.equal(r.code, 0, `\`${script}\` exits 0`, { stderr: r.stderr, stdout: r.stdout });
  return r.stdout;
}

/** The error code of a failed promise (undefined when it did not fail). */
async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

/** Reads up to `len` bytes at `pos` of an open file (loops over short reads; fewer only at EOF). */
export async function readAt(fh: fsp.FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  let n = 0;
  while (n < len) {
    const { bytesRead } = await fh.read(buf, n, len - n, pos + n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  return buf.subarray(0, n);
}

/** How many of `count` reads at random offsets (up to `maxLen` bytes each) of `file` differ from `data`. */
export async function randomReadMismatches(file: string, data: Buffer, count: number, maxLen: number): Promise<number> {
  const fh = await fsp.open(file, 'r');
  try {
    let bad = 0;
    for (let i = 0; i < count; i++) {
      const pos = Math.floor(Math.random() * data.length);
      const len = 1 + Math.floor(Math.random() * maxLen);
      if (!(await readAt(fh, pos, len)).equals(data.subarray(pos, pos + len))) bad++;
    }
    return bad;
  } finally {
    await fh.close();
  }
}

/** Reads `len` bytes at `pos` (loops over short reads). */
async function pread(file: string, pos: number, len: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    return await readAt(fh, pos, len);
  } finally {
    await fh.close();
  }
}

/** renameat2(2) with flags, through python3's ctypes: resolves to 'ok' or the errno name. */
export async function renameat2(from: string, to: string, flags: number): Promise<string | null> {
  if (!(await have('python3'))) return null;
  const py =
    'import ctypes, errno, sys\n' +
    'libc = ctypes.CDLL(None, use_errno=True)\n' +
    'r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))\n' +
    'print("ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))\n';
  const r = await sh(`python3 -c ${q(py)} ${q(from)} ${q(to)} ${flags}`);
  if (r.code !== 0) throw new Error(`python3 renameat2 failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Starts `cmd` and resolves once it printed `ready` on stdout (so a lock is known to be held). */
function startHolder(cmd: string, ready: string): Promise<{ proc: ChildProcess; done: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const proc = spawn('sh', ['-c', cmd], { env: SH_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`\`${cmd}\` did not print ${ready} within 20 s: ${err}`));
    }, 20_000);
    proc.stderr!.on('data', (d) => (err += d));
    proc.stdout!.on('data', (d) => {
      out += d;
      if (out.includes(ready)) {
        clearTimeout(timer);
        resolve({ proc, done });
      }
    });
    proc.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`\`${cmd}\` exited (${code}) before printing ${ready}: ${err}`));
    });
  });
}

const ABSENT = /^(ENOSYS|EPERM|EOPNOTSUPP|ENOTSUP|EINVAL|EIO)$/;

export interface PosixSuiteOptions {
  /**
   * Features with a known bug, and the bug: their subtest is reported as a TAP todo
   * with that reason instead of being run (tap runs no todo subtest). Remove the
   * entry once the bug is fixed.
   */
  todo?: Partial<Record<Feature, string>>;
}

/**
 * Adds the suite's subtests to `t`. Each works in its own directory under `mnt`
 * (`posix-…`), so subtests do not see each other's files.
 */
export function posixSuite(t: tap.Test, mnt: string, features: Set<string>, opts: PosixSuiteOptions = {}): void {
  const has = (f: Feature) => features.has(f);
  let seq = 0;
  const test = (name: string, fn: (t: tap.Test, dir: string) => Promise<void>, timeout = 120_000, feature?: Feature) =>
    t.test(name, { timeout, ...(feature && opts.todo?.[feature] ? { todo: opts.todo[feature] } : {}) }, async (t) => {
      const dir = path.join(mnt, `posix-${++seq}-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`);
      await fsp.mkdir(dir);
      await fn(t, dir);
    });

  test('create, write and read back random bytes (0, 1, 1 MiB+13, 20 MiB)', async (t, dir) => {
    for (const size of [0, 1, MiB + 13, 20 * MiB]) {
      const f = path.join(dir, `r${size}`);
      const data = randomBytes(size);
      await fsp.writeFile(f, data);
      const st = await fsp.stat(f);
      t.ok(st.isFile(), `${size}: a regular file`);
      t.equal(st.size, size, `${size}: size`);
      const back = await fsp.readFile(f);
      t.equal(back.length, size, `${size}: read length`);
      t.equal(sha(back), sha(data), `${size}: same bytes through fs.readFile`);
      const tool = await shOk(t, `sha256sum ${q(f)}`);
      t.equal(tool.split(' ')[0], sha(data), `${size}: same bytes through sha256sum`);
      if (size > 2 * 4096) {
        // Unaligned reads that straddle pages and the 128 KiB read-ahead windows.
        for (const [pos, len] of [[4093, 10], [128 * KiB - 3, 7], [size - 5, 100]] as const) {
          t.same(await pread(f, pos, len), data.subarray(pos, pos + len), `${size}: read of ${len} at ${pos}`);
        }
      }
    }
  });

  test('overwrite in the middle and across EOF', async (t, dir) => {
    const f = path.join(dir, 'mid');
    const data = randomBytes(3 * MiB);
    await fsp.writeFile(f, data);
    const patch = randomBytes(100 * KiB);
    const at = MiB + 5;
    const fh = await fsp.open(f, 'r+');
    t.equal((await fh.write(patch, 0, patch.length, at)).bytesWritten, patch.length);
    await fh.close();
    const want = Buffer.from(data);
    patch.copy(want, at);
    t.equal((await fsp.stat(f)).size, data.length, 'size unchanged');
    t.equal(sha(await fsp.readFile(f)), sha(want), 'patched bytes in place, the rest unchanged');

    const tail = randomBytes(20);
    const fh2 = await fsp.open(f, 'r+');
    await fh2.write(tail, 0, tail.length, want.length - 10);
    await fh2.close();
    const want2 = Buffer.concat([want.subarray(0, want.length - 10), tail]);
    t.equal((await fsp.stat(f)).size, want.length + 10, 'a write across EOF grows the file');
    t.equal(sha(await fsp.readFile(f)), sha(want2));
  });

  test('O_APPEND', async (t, dir) => {
    const f = path.join(dir, 'app');
    await fsp.writeFile(f, 'abc');
    await fsp.appendFile(f, 'def');
    t.equal(await fsp.readFile(f, 'utf8'), 'abcdef', 'appendFile');
    // With O_APPEND every write lands at the end, whatever position is asked for.
    const fh = await fsp.open(f, 'a');
    await fh.write(Buffer.from('GHI'), 0, 3, 0);
    await fh.close();
    t.equal(await fsp.readFile(f, 'utf8'), 'abcdefGHI', 'a positioned write on an O_APPEND handle appends');
    // Two appenders interleaved: nothing is overwritten.
    const a = await fsp.open(f, 'a');
    const b = await fsp.open(f, 'a');
    for (let i = 0; i < 5; i++) {
      await a.write(`a${i}`);
      await b.write(`b${i}`);
    }
    await a.close();
    await b.close();
    t.equal(await fsp.readFile(f, 'utf8'), 'abcdefGHIa0b0a1b1a2b2a3b3a4b4', 'interleaved appenders');
    await shOk(t, `printf xyz >> ${q(f)}`);
    t.equal(await fsp.readFile(f, 'utf8'), 'abcdefGHIa0b0a1b1a2b2a3b3a4b4xyz', 'shell >>');
  });

  test('truncate up (zeros) and down, ftruncate, O_TRUNC', async (t, dir) => {
    const f = path.join(dir, 'tr');
    const data = randomBytes(100 * KiB);
    await fsp.writeFile(f, data);
    await fsp.truncate(f, 300 * KiB);
    let back = await fsp.readFile(f);
    t.equal(back.length, 300 * KiB, 'truncate up: size');
    t.same(back.subarray(0, data.length), data, 'truncate up keeps the data');
    t.ok(back.subarray(data.length).every((x) => x === 0), 'truncate up reads zeros');
    await fsp.truncate(f, 10);
    t.equal((await fsp.stat(f)).size, 10, 'truncate down: size');
    t.same(await fsp.readFile(f), data.subarray(0, 10), 'truncate down keeps the head');
    await fsp.truncate(f, 20);
    t.same(await fsp.readFile(f), Buffer.concat([data.subarray(0, 10), Buffer.alloc(10)]), 'no stale bytes come back after down then up');

    const fh = await fsp.open(f, 'r+');
    await fh.truncate(4);
    t.equal((await fh.stat()).size, 4, 'ftruncate on an open handle');
    await fh.write(Buffer.from('XY'), 0, 2, 6);
    await fh.close();
    t.same(await fsp.readFile(f), Buffer.concat([data.subarray(0, 4), Buffer.alloc(2), Buffer.from('XY')]), 'write past EOF after ftruncate leaves a zero gap');

    const fw = await fsp.open(f, 'w');
    t.equal((await fw.stat()).size, 0, 'O_TRUNC empties the file at open');
    await fw.write('new');
    await fw.close();
    t.equal(await fsp.readFile(f, 'utf8'), 'new');
    await shOk(t, `: > ${q(f)}`);
    t.equal((await fsp.stat(f)).size, 0, 'shell > truncates');
    await shOk(t, `truncate -s 5M ${q(f)}`);
    t.equal((await fsp.stat(f)).size, 5 * MiB, 'truncate(1) -s 5M');
  });

  test('sparse write far past EOF (64-bit offsets)', async (t, dir) => {
    const f = path.join(dir, 'sparse');
    const far = 5 * GiB + 7;
    const just = 2 ** 32 + 3; // the first offsets past what 32 bits hold
    const head = Buffer.from('head');
    const tail = randomBytes(4 * KiB + 1);
    const mid = Buffer.from('past 4 GiB');
    const fh = await fsp.open(f, 'w');
    await fh.write(head, 0, head.length, 0);
    await fh.write(tail, 0, tail.length, far);
    await fh.write(mid, 0, mid.length, just);
    t.equal((await fh.stat()).size, far + tail.length, 'fstat size while open');
    await fh.close();
    t.equal((await fsp.stat(f)).size, far + tail.length, 'size after close');
    t.same(await pread(f, far, tail.length), tail, 'bytes at 5 GiB read back');
    t.same(await pread(f, just, mid.length), mid, 'bytes just past 4 GiB read back');
    t.same(await pread(f, 0, head.length), head, 'head');
    t.same(await pread(f, 2 ** 32 - 8, 11), Buffer.alloc(11), 'the hole across 4 GiB reads zeros');
    t.same(await pread(f, 3 * GiB, 64), Buffer.alloc(64), 'the hole reads zeros');
    t.same(await pread(f, far + tail.length - 2, 100), tail.subarray(tail.length - 2), 'a read across EOF is short');
    t.equal((await pread(f, far + tail.length + 10, 10)).length, 0, 'a read past EOF is empty');
    const out = await shOk(t, `dd if=${q(f)} bs=1 skip=${far} count=4 status=none | od -An -tx1`);
    t.equal(out.trim().split(/\s+/).join(''), tail.subarray(0, 4).toString('hex'), 'dd with a 64-bit skip');
    await fsp.truncate(f, just + 2);
    t.equal((await fsp.stat(f)).size, just + 2, 'truncate down to just past 4 GiB');
    t.same(await pread(f, just, 10), mid.subarray(0, 2), 'what is left past 4 GiB');
    await fsp.unlink(f);
  }, 300_000);

  test('mkdir and rmdir (EEXIST, ENOTEMPTY, ENOTDIR)', async (t, dir) => {
    const d = path.join(dir, 'd');
    const f = path.join(dir, 'file');
    await fsp.mkdir(d, { mode: 0o750 });
    const st = await fsp.stat(d);
    t.ok(st.isDirectory(), 'a directory');
    t.equal(st.mode & 0o777, 0o750, 'mkdir mode');
    await fsp.writeFile(f, 'x');
    t.equal(await codeOf(fsp.mkdir(d)), 'EEXIST', 'mkdir of an existing directory');
    t.equal(await codeOf(fsp.mkdir(f)), 'EEXIST', 'mkdir over a file');
    t.equal(await codeOf(fsp.mkdir(path.join(f, 'sub'))), 'ENOTDIR', 'mkdir under a file');
    t.equal(await codeOf(fsp.readdir(f)), 'ENOTDIR', 'readdir of a file');
    await fsp.writeFile(path.join(d, 'child'), 'c');
    t.equal(await codeOf(fsp.rmdir(d)), 'ENOTEMPTY', 'rmdir of a non-empty directory');
    t.equal(await codeOf(fsp.rmdir(f)), 'ENOTDIR', 'rmdir of a file');
    t.match(await codeOf(fsp.unlink(d)), /^(EISDIR|EPERM)$/, 'unlink of a directory');
    t.equal(await codeOf(fsp.rmdir(path.join(dir, 'missing'))), 'ENOENT', 'rmdir of a missing name');
    await fsp.unlink(path.join(d, 'child'));
    await fsp.rmdir(d);
    t.equal(await codeOf(fsp.stat(d)), 'ENOENT', 'gone after rmdir');
    await fsp.mkdir(path.join(dir, 'a/b/c'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'a/b/c/leaf'), 'leaf');
    await shOk(t, `mkdir -p ${q(path.join(dir, 'a/b/x/y'))} && rm -r ${q(path.join(dir, 'a'))}`);
    t.equal(await codeOf(fsp.stat(path.join(dir, 'a'))), 'ENOENT', 'rm -r removed a tree');
    t.same((await fsp.readdir(dir)).sort(), ['file'], 'only the file is left');
  });

  test('readdir of 1500 entries lists every name exactly once', async (t, dir) => {
    const names = Array.from({ length: 1500 }, (_, i) => `e${String(i).padStart(4, '0')}-${'n'.repeat(i % 97)}`);
    const a = path.join(dir, 'big');
    const b = path.join(dir, 'other');
    await fsp.mkdir(a);
    await fsp.mkdir(b);
    await pool(names, 32, (n) => fsp.writeFile(path.join(a, n), ''));
    const otherNames = names.slice(0, 700).map((n) => `o-${n}`);
    await pool(otherNames, 32, (n) => fsp.mkdir(path.join(b, n)));

    const listed = await fsp.readdir(a);
    t.equal(listed.length, names.length, 'fs.readdir: count');
    t.equal(new Set(listed).size, listed.length, 'fs.readdir: no duplicates');
    t.same([...listed].sort(), [...names].sort(), 'fs.readdir: every name');
    const typed = await fsp.readdir(b, { withFileTypes: true });
    t.ok(typed.length === otherNames.length && typed.every((e) => e.isDirectory()), 'readdir with file types');

    const ls = (await shOk(t, `ls -f ${q(a)}`)).split('\n').filter(Boolean);
    t.equal(ls.length, names.length + 2, 'ls -f: the names plus . and ..');
    t.same(ls.filter((n) => n !== '.' && n !== '..').sort(), [...names].sort(), 'ls -f: every name once');
    t.equal((await shOk(t, `find ${q(a)} -mindepth 1 -type f | wc -l`)).trim(), String(names.length), 'find');

    // Two listings paged in turn: each directory's pages must come from its own listing.
    const da = await fsp.opendir(a, { bufferSize: 7 });
    const db = await fsp.opendir(b, { bufferSize: 5 });
    const seenA: string[] = [];
    const seenB: string[] = [];
    for (let doneA = false, doneB = false; !doneA || !doneB; ) {
      if (!doneA) {
        const e = await da.read();
        if (e) seenA.push(e.name);
        else doneA = true;
      }
      if (!doneB) {
        const e = await db.read();
        if (e) seenB.push(e.name);
        else doneB = true;
      }
    }
    await da.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    t.same(seenA.sort(), [...names].sort(), 'interleaved listing of the first directory');
    t.same(seenB.sort(), [...otherNames].sort(), 'interleaved listing of the second directory');

    // A deletion of every other name while listing in pages does not repeat names.
    const dc = await fsp.opendir(a, { bufferSize: 16 });
    const seenC = new Set<string>();
    let dup = 0;
    let i = 0;
    for await (const e of dc) {
      if (seenC.has(e.name)) dup++;
      seenC.add(e.name);
      if (i++ === 100) await pool(names.filter((_, k) => k % 2 === 1), 32, (n) => fsp.unlink(path.join(a, n)));
    }
    t.equal(dup, 0, 'no name listed twice while the directory shrinks');
    t.same((await fsp.readdir(a)).sort(), names.filter((_, k) => k % 2 === 0).sort(), 'a fresh listing shows the deletions');
  }, 300_000);

  test('rename', async (t, dir) => {
    const p = (x: string) => path.join(dir, x);
    await fsp.writeFile(p('a'), 'A');
    await fsp.writeFile(p('b'), 'B');
    const inoA = (await fsp.stat(p('a'))).ino;
    await fsp.rename(p('a'), p('b'));
    t.equal(await fsp.readFile(p('b'), 'utf8'), 'A', 'file over file: the target has the source content');
    t.equal((await fsp.stat(p('b'))).ino, inoA, 'and the source inode');
    t.equal(await codeOf(fsp.stat(p('a'))), 'ENOENT', 'the source name is gone');

    await fsp.mkdir(p('d1'));
    await fsp.writeFile(p('d1/child'), 'c');
    await fsp.rename(p('d1'), p('d2'));
    t.equal(await fsp.readFile(p('d2/child'), 'utf8'), 'c', 'directory renamed with its content');
    t.equal(await codeOf(fsp.stat(p('d1'))), 'ENOENT', 'old directory name is gone');
    await fsp.mkdir(p('d2/sub'));
    t.equal(await codeOf(fsp.rename(p('d2'), p('d2/sub/x'))), 'EINVAL', 'a directory into its own subtree');
    t.equal(await codeOf(fsp.rename(p('d2'), p('d2/y'))), 'EINVAL', 'a directory into itself');

    await fsp.mkdir(p('full'));
    await fsp.writeFile(p('full/f'), 'f');
    t.equal(await codeOf(fsp.rename(p('d2'), p('full'))), 'ENOTEMPTY', 'a directory over a non-empty directory');
    await fsp.mkdir(p('empty'));
    await fsp.rename(p('d2'), p('empty'));
    t.equal(await fsp.readFile(p('empty/child'), 'utf8'), 'c', 'a directory over an empty directory replaces it');
    t.equal(await codeOf(fsp.rename(p('b'), p('full'))), 'EISDIR', 'a file over a directory');
    t.equal(await codeOf(fsp.rename(p('full'), p('b'))), 'ENOTDIR', 'a directory over a file');
    t.equal(await codeOf(fsp.rename(p('nope'), p('x'))), 'ENOENT', 'a missing source');

    await fsp.rename(p('b'), p('empty/sub/moved'));
    t.equal(await fsp.readFile(p('empty/sub/moved'), 'utf8'), 'A', 'across directories');
    await fsp.rename(p('empty/sub/moved'), p('empty/sub/moved'));
    t.equal(await fsp.readFile(p('empty/sub/moved'), 'utf8'), 'A', 'onto itself is a no-op');
    await shOk(t, `mv ${q(p('empty/sub/moved'))} ${q(p('mv-target'))}`);
    t.equal(await fsp.readFile(p('mv-target'), 'utf8'), 'A', 'mv');
    t.same((await fsp.readdir(dir)).sort(), ['empty', 'full', 'mv-target']);

    // A file renamed while open keeps its open handle working.
    const fh = await fsp.open(p('mv-target'), 'r+');
    await fsp.rename(p('mv-target'), p('renamed-open'));
    await fh.write(Buffer.from('Z'), 0, 1, 1);
    await fh.close();
    t.equal(await fsp.readFile(p('renamed-open'), 'utf8'), 'AZ', 'writes through a handle opened before the rename');
  });

  if (has('rename-noreplace')) {
    test('rename with RENAME_NOREPLACE', async (t, dir) => {
      const a = path.join(dir, 'a');
      const b = path.join(dir, 'b');
      await fsp.writeFile(a, 'A');
      await fsp.writeFile(b, 'B');
      const r = await renameat2(a, b, 1);
      if (r === null) {
        // No python3: mv -n uses renameat2(RENAME_NOREPLACE) and keeps both on EEXIST.
        await shOk(t, `mv -n ${q(a)} ${q(b)}`);
      } else t.equal(r, 'EEXIST', 'renameat2(RENAME_NOREPLACE) onto an existing name fails with EEXIST');
      t.equal(await fsp.readFile(b, 'utf8'), 'B', 'the target is untouched');
      t.equal(await fsp.readFile(a, 'utf8'), 'A', 'the source is untouched');
      const c = path.join(dir, 'c');
      if (r === null) await shOk(t, `mv -n ${q(a)} ${q(c)}`);
      else t.equal(await renameat2(a, c, 1), 'ok', 'onto a free name it renames');
      t.equal(await fsp.readFile(c, 'utf8'), 'A');
      t.equal(await codeOf(fsp.stat(a)), 'ENOENT');
    }, 120_000, 'rename-noreplace');
  }

  test(`rename with RENAME_EXCHANGE${has('rename-exchange') ? '' : ' fails cleanly (not supported)'}`, async (t, dir) => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await fsp.writeFile(a, 'A');
    await fsp.mkdir(b);
    const r = await renameat2(a, b, 2);
    if (r === null) {
      t.plan(0, 'python3 is missing: cannot call renameat2(2)');
      return;
    }
    if (has('rename-exchange')) {
      t.equal(r, 'ok', 'renameat2(RENAME_EXCHANGE)');
      t.ok((await fsp.stat(a)).isDirectory(), 'a is now the directory');
      t.equal(await fsp.readFile(b, 'utf8'), 'A', 'b is now the file');
      t.equal(await renameat2(a, path.join(dir, 'missing'), 2), 'ENOENT', 'exchange with a missing name');
      // Two files: each name now reads the other's bytes, and keeps the other's inode.
      const f1 = path.join(dir, 'f1');
      const f2 = path.join(dir, 'f2');
      await fsp.writeFile(f1, 'one');
      await fsp.writeFile(f2, 'two-two');
      const [i1, i2] = [(await fsp.stat(f1)).ino, (await fsp.stat(f2)).ino];
      t.equal(await renameat2(f1, f2, 2), 'ok', 'two files exchange');
      t.equal(await fsp.readFile(f1, 'utf8'), 'two-two', 'f1 has the bytes of f2');
      t.equal(await fsp.readFile(f2, 'utf8'), 'one', 'f2 has the bytes of f1');
      t.same([(await fsp.stat(f1)).ino, (await fsp.stat(f2)).ino], [i2, i1], 'the inodes moved with the bytes');
      // A directory and a file in different parents: the parents' link counts follow the directory.
      const p1 = path.join(dir, 'p1');
      const p2 = path.join(dir, 'p2');
      await fsp.mkdir(p1);
      await fsp.mkdir(p2);
      await fsp.mkdir(path.join(p1, 'sub'));
      await fsp.writeFile(path.join(p1, 'sub', 'inside'), 'in');
      await fsp.writeFile(path.join(p2, 'plain'), 'plain');
      t.equal(await renameat2(path.join(p1, 'sub'), path.join(p2, 'plain'), 2), 'ok', 'a directory and a file in two parents exchange');
      t.equal(await fsp.readFile(path.join(p2, 'plain', 'inside'), 'utf8'), 'in', 'the directory moved with its entries');
      t.equal(await fsp.readFile(path.join(p1, 'sub'), 'utf8'), 'plain', 'the file moved');
      t.equal((await fsp.stat(p1)).nlink, 2, 'the parent that lost the directory: nlink 2');
      t.equal((await fsp.stat(p2)).nlink, 3, 'the parent that gained it: nlink 3');
      // A directory cannot trade places with a name inside itself.
      await fsp.writeFile(path.join(p2, 'plain', 'leaf'), 'leaf');
      t.equal(await renameat2(path.join(p2, 'plain'), path.join(p2, 'plain', 'leaf'), 2), 'EINVAL', 'exchange into its own subtree: EINVAL');
      t.equal(await renameat2(a, b, 3), 'EINVAL', 'RENAME_EXCHANGE with RENAME_NOREPLACE: EINVAL');
    } else {
      t.match(r, ABSENT, `fails with an errno (${r})`);
      t.equal(await fsp.readFile(a, 'utf8'), 'A', 'nothing moved');
      t.ok((await fsp.stat(b)).isDirectory(), 'nothing moved');
    }
  }, 120_000, 'rename-exchange');

  test('unlink, also of an open file', async (t, dir) => {
    const f = path.join(dir, 'u');
    await fsp.writeFile(f, 'data');
    await fsp.unlink(f);
    t.equal(await codeOf(fsp.stat(f)), 'ENOENT', 'gone');
    t.equal(await codeOf(fsp.unlink(f)), 'ENOENT', 'a second unlink');
    t.notOk((await fsp.readdir(dir)).includes('u'), 'not listed');
    await fsp.writeFile(f, 'again');
    t.equal(await fsp.readFile(f, 'utf8'), 'again', 'the name can be reused');

    const data = randomBytes(200 * KiB);
    const g = path.join(dir, 'open');
    await fsp.writeFile(g, data);
    const fh = await fsp.open(g, 'r+');
    await fsp.unlink(g);
    t.equal(await codeOf(fsp.stat(g)), 'ENOENT', 'the name is gone while the file is open');
    const buf = Buffer.alloc(data.length);
    t.equal((await fh.read(buf, 0, buf.length, 0)).bytesRead, data.length, 'an open file outlives its unlink');
    t.same(buf, data, 'with its bytes');
    if (has('write-unlinked')) {
      await fh.write(Buffer.from('more'), 0, 4, data.length);
      t.equal((await fh.stat()).size, data.length + 4, 'a write to the unlinked open file, seen by fstat');
      const back = Buffer.alloc(4);
      await fh.read(back, 0, 4, data.length);
      t.equal(back.toString(), 'more', 'and read back');
    } else {
      t.equal((await fh.stat()).size, data.length, 'fstat of the unlinked open file');
    }
    await fh.close();
    t.equal(await codeOf(fsp.stat(g)), 'ENOENT', 'still gone after close');
  }, 120_000, 'write-unlinked');

  test('chmod', async (t, dir) => {
    const f = path.join(dir, 'm');
    await fsp.writeFile(f, 'x', { mode: 0o600 });
    t.equal((await fsp.stat(f)).mode & 0o7777, 0o600, 'create mode');
    for (const mode of [0o640, 0o755, 0o4755, 0o2750, 0o1777, 0o000, 0o644]) {
      await fsp.chmod(f, mode);
      const st = await fsp.stat(f);
      t.equal(st.mode & 0o7777, mode, `chmod ${mode.toString(8)}`);
      t.ok(st.isFile(), 'still a regular file');
    }
    const fh = await fsp.open(f, 'r');
    await fh.chmod(0o604);
    await fh.close();
    t.equal((await fsp.stat(f)).mode & 0o7777, 0o604, 'fchmod');
    await shOk(t, `chmod 751 ${q(f)}`);
    t.equal((await shOk(t, `stat -c %a ${q(f)}`)).trim(), '751', 'chmod(1) and stat(1)');
    await fsp.chmod(dir, 0o711);
    t.equal((await fsp.stat(dir)).mode & 0o7777, 0o711, 'chmod of a directory');
    await fsp.chmod(dir, 0o755);
  });

  test('chown (as root)', async (t, dir) => {
    if (process.getuid?.() !== 0) {
      t.plan(0, 'not root: cannot give files away');
      return;
    }
    const f = path.join(dir, 'o');
    await fsp.writeFile(f, 'x');
    await fsp.chown(f, 1234, 5678);
    let st = await fsp.stat(f);
    t.equal(st.uid, 1234, 'uid');
    t.equal(st.gid, 5678, 'gid');
    await fsp.chown(f, -1, 42);
    st = await fsp.stat(f);
    t.equal(st.uid, 1234, 'uid -1 leaves the owner');
    t.equal(st.gid, 42, 'gid changed alone');
    await shOk(t, `chown 4321:99 ${q(f)}`);
    t.equal((await shOk(t, `stat -c %u:%g ${q(f)}`)).trim(), '4321:99', 'chown(1)');
    await fsp.mkdir(path.join(dir, 'sub'));
    await fsp.chown(path.join(dir, 'sub'), 7, 8);
    st = await fsp.stat(path.join(dir, 'sub'));
    t.same([st.uid, st.gid], [7, 8], 'chown of a directory');
    await fsp.chown(f, 0, 0);
  });

  test('utimensat with nanoseconds and UTIME_OMIT', async (t, dir) => {
    const f = path.join(dir, 'ts');
    await fsp.writeFile(f, 'x');
    const stamp = async () => (await shOk(t, `stat -c '%x|%y' ${q(f)}`)).trim().split('|');
    await shOk(t, `touch -d '2020-01-02 03:04:05.123456789' ${q(f)}`);
    t.same(await stamp(), ['2020-01-02 03:04:05.123456789 +0000', '2020-01-02 03:04:05.123456789 +0000'], 'touch -d sets both to the nanosecond');
    await shOk(t, `touch -m -d '2021-06-07 08:09:10.987654321' ${q(f)}`);
    t.same(await stamp(), ['2020-01-02 03:04:05.123456789 +0000', '2021-06-07 08:09:10.987654321 +0000'], 'touch -m leaves atime (UTIME_OMIT)');
    await shOk(t, `touch -a -d '2019-12-31 23:59:59.000000001' ${q(f)}`);
    t.same(await stamp(), ['2019-12-31 23:59:59.000000001 +0000', '2021-06-07 08:09:10.987654321 +0000'], 'touch -a leaves mtime (UTIME_OMIT)');
    const ns = await fsp.stat(f, { bigint: true });
    t.equal(ns.mtimeNs, 1623053350987654321n, 'stat mtime in nanoseconds');
    t.equal(ns.atimeNs, 1577836799000000001n, 'stat atime in nanoseconds');
    const when = new Date('2022-02-03T04:05:06.789Z');
    await fsp.utimes(f, when, when);
    const st = await fsp.stat(f);
    t.equal(st.mtimeMs, when.getTime(), 'fs.utimes mtime');
    t.equal(st.atimeMs, when.getTime(), 'fs.utimes atime');
    const before = Date.now();
    await shOk(t, `touch ${q(f)}`);
    const now = await fsp.stat(f);
    t.ok(Math.abs(now.mtimeMs - before) < 10_000, 'touch without a date sets about now (UTIME_NOW)');
    t.ok(Math.abs(now.atimeMs - before) < 10_000);
    await fsp.utimes(dir, when, when);
    t.equal((await fsp.stat(dir)).mtimeMs, when.getTime(), 'utimes of a directory');
    const w = await fsp.open(f, 'r+');
    await w.utimes(when, when);
    await w.close();
    t.equal((await fsp.stat(f)).mtimeMs, when.getTime(), 'futimens');
  });

  test(`hard link${has('link') ? '' : ' fails cleanly (not supported)'}`, async (t, dir) => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await fsp.writeFile(a, 'one');
    if (!has('link')) {
      t.match(await codeOf(fsp.link(a, b)), ABSENT, 'link(2) fails with an errno');
      t.equal(await codeOf(fsp.stat(b)), 'ENOENT', 'no new name');
      t.equal(await fsp.readFile(a, 'utf8'), 'one', 'the file is untouched');
      return;
    }
    await fsp.link(a, b);
    const sa = await fsp.stat(a);
    const sb = await fsp.stat(b);
    t.equal(sa.nlink, 2, 'nlink 2');
    t.equal(sb.nlink, 2);
    t.equal(sa.ino, sb.ino, 'same inode');
    await fsp.writeFile(b, 'two');
    t.equal(await fsp.readFile(a, 'utf8'), 'two', 'a write through one name shows through the other');
    t.equal(await codeOf(fsp.link(a, b)), 'EEXIST', 'link onto an existing name');
    t.equal(await codeOf(fsp.link(dir, path.join(dir, 'dirlink'))), 'EPERM', 'link of a directory');
    await shOk(t, `ln ${q(a)} ${q(path.join(dir, 'c'))}`);
    t.equal((await fsp.stat(a)).nlink, 3, 'ln(1): nlink 3');
    await fsp.unlink(a);
    await fsp.unlink(path.join(dir, 'c'));
    t.equal((await fsp.stat(b)).nlink, 1, 'nlink 1 after unlinking the others');
    t.equal(await fsp.readFile(b, 'utf8'), 'two', 'the content lives on');
  }, 120_000, 'link');

  test(`symlink and readlink${has('symlink') ? '' : ' fail cleanly (not supported)'}`, async (t, dir) => {
    const target = path.join(dir, 'target');
    const l = path.join(dir, 'link');
    await fsp.writeFile(target, 'through the link');
    if (!has('symlink')) {
      t.match(await codeOf(fsp.symlink('target', l)), ABSENT, 'symlink(2) fails with an errno');
      t.equal(await codeOf(fsp.lstat(l)), 'ENOENT', 'no new name');
      t.equal(await codeOf(fsp.readlink(target)), 'EINVAL', 'readlink of a regular file');
      return;
    }
    await fsp.symlink('target', l);
    t.equal(await fsp.readlink(l), 'target', 'readlink');
    const ls = await fsp.lstat(l);
    t.ok(ls.isSymbolicLink(), 'lstat: a symlink');
    t.equal(ls.size, 'target'.length, 'lstat: size is the target length');
    t.ok((await fsp.stat(l)).isFile(), 'stat follows it');
    t.equal(await fsp.readFile(l, 'utf8'), 'through the link', 'open follows it');
    t.equal(await codeOf(fsp.readlink(target)), 'EINVAL', 'readlink of a regular file');
    await fsp.symlink('missing', path.join(dir, 'dangling'));
    t.equal(await codeOf(fsp.stat(path.join(dir, 'dangling'))), 'ENOENT', 'a dangling link');
    t.ok((await fsp.lstat(path.join(dir, 'dangling'))).isSymbolicLink());
    const long = 'x/'.repeat(1000) + 'y';
    await fsp.symlink(long, path.join(dir, 'long'));
    t.equal(await fsp.readlink(path.join(dir, 'long')), long, 'a 2001-byte target');
    await fsp.mkdir(path.join(dir, 'realdir'));
    await fsp.writeFile(path.join(dir, 'realdir/in'), 'in');
    await shOk(t, `ln -s realdir ${q(path.join(dir, 'dirlink'))}`);
    t.equal((await shOk(t, `readlink ${q(path.join(dir, 'dirlink'))}`)).trim(), 'realdir', 'ln -s and readlink(1)');
    t.equal(await fsp.readFile(path.join(dir, 'dirlink/in'), 'utf8'), 'in', 'a path through a directory link');
    t.equal(await codeOf(fsp.symlink('t', l)), 'EEXIST', 'symlink onto an existing name');
    await fsp.unlink(l);
    t.equal(await fsp.readFile(target, 'utf8'), 'through the link', 'unlinking the link leaves the target');
  }, 120_000, 'symlink');

  test(`extended attributes${has('xattr') ? '' : ' fail cleanly (not supported)'}`, async (t, dir) => {
    if (!(await have('setfattr')) || !(await have('getfattr'))) {
      t.plan(0, 'setfattr/getfattr are missing: install the `attr` package (apt-get install attr)');
      return;
    }
    const f = path.join(dir, 'x');
    await fsp.writeFile(f, 'x');
    if (!has('xattr')) {
      const r = await sh(`setfattr -n user.color -v blue ${q(f)}`);
      t.not(r.code, 0, 'setfattr fails');
      t.match(r.stderr, /not supported|Function not implemented|Operation not permitted/i, 'with an errno', { stderr: r.stderr });
      const g = await sh(`getfattr -d ${q(f)}`);
      t.not(g.signal, 'SIGKILL', 'getfattr -d does not hang');
      t.equal(g.stdout.trim(), '', 'getfattr -d lists nothing');
      return;
    }
    await shOk(t, `setfattr -n user.color -v blue ${q(f)}`);
    t.equal(await shOk(t, `getfattr --only-values -n user.color ${q(f)}`), 'blue', 'getfattr -n');
    const big = randomBytes(3000);
    await shOk(t, `setfattr -n user.big -v 0x${big.toString('hex')} ${q(f)}`);
    const hex = await shOk(t, `getfattr -e hex -n user.big ${q(f)}`);
    t.match(hex, `user.big=0x${big.toString('hex')}`, 'a 3000-byte binary value (size probe, then read)');
    await shOk(t, `setfattr -n user.empty ${q(f)}`);
    const dump = await shOk(t, `getfattr -d ${q(f)}`);
    t.match(dump, /user\.color="blue"/, 'getfattr -d lists user.color');
    t.match(dump, /user\.big=/, 'getfattr -d lists user.big');
    t.match(dump, /user\.empty/, 'getfattr -d lists an empty value');
    await shOk(t, `setfattr -n user.color -v red ${q(f)}`);
    t.equal(await shOk(t, `getfattr --only-values -n user.color ${q(f)}`), 'red', 'replace a value');
    await shOk(t, `setfattr -x user.color ${q(f)}`);
    const gone = await sh(`getfattr -n user.color ${q(f)}`);
    t.not(gone.code, 0, 'getfattr of a removed attribute fails');
    t.match(gone.stderr, /No such attribute/, 'with ENODATA', { stderr: gone.stderr });
    const rm = await sh(`setfattr -x user.missing ${q(f)}`);
    t.not(rm.code, 0, 'removing a missing attribute fails');
    t.match(rm.stderr, /No such attribute/, 'with ENODATA');
    const names = await shOk(t, `getfattr -d -m - ${q(f)}`);
    t.notMatch(names, /user\.color/, 'the removed name is no longer listed');
    await shOk(t, `setfattr -n user.onDir -v d ${q(dir)}`);
    t.equal(await shOk(t, `getfattr --only-values -n user.onDir ${q(dir)}`), 'd', 'on a directory');
  }, 120_000, 'xattr');

  test('statfs', async (t) => {
    const st = await fsp.statfs(mnt, { bigint: true });
    t.ok(st.bsize > 0n, 'bsize');
    t.ok(st.blocks > 0n, 'blocks');
    t.ok(st.bfree <= st.blocks && st.bavail <= st.blocks, 'free ≤ total');
    // Free space moves while the cluster works in the background (cache usage, deletions): compare df with
    // statfs calls on either side of it, a few times, until nothing moved in between.
    let size = 0n;
    let avail = 0n;
    let around = [st, st];
    for (let i = 0; i < 5; i++) {
      const before = await fsp.statfs(mnt, { bigint: true });
      const df = (await shOk(t, `df -B1 --output=size,avail ${q(mnt)}`)).trim().split('\n');
      [size, avail] = df[df.length - 1]!.trim().split(/\s+/).map((x) => BigInt(x)) as [bigint, bigint];
      around = [before, await fsp.statfs(mnt, { bigint: true })];
      if (around[0]!.bavail === around[1]!.bavail) break;
    }
    t.equal(size, around[0]!.blocks * around[0]!.bsize, 'df -B1: size = blocks × bsize');
    t.equal(avail, around[0]!.bavail * around[0]!.bsize, 'df -B1: avail = bavail × bsize');
    t.ok((await shOk(t, `stat -f -c %l ${q(mnt)}`)).trim() === '255', 'namemax 255');
    if (has('statfs64')) {
      t.ok(st.blocks > 2n ** 32n, `block count beyond 32 bits (${st.blocks})`);
      t.ok(st.files > 2n ** 32n, `file count beyond 32 bits (${st.files})`);
      t.ok(size! > 2n ** 44n, 'df size in bytes far beyond 32 bits');
    }
  });

  test(`fallocate${has('fallocate') ? '' : ' fails cleanly (not supported)'}`, async (t, dir) => {
    if (!(await have('fallocate'))) {
      t.plan(0, 'fallocate(1) is missing (util-linux)');
      return;
    }
    const f = path.join(dir, 'fa');
    if (!has('fallocate')) {
      const r = await sh(`fallocate -l 3M ${q(f)}`);
      t.not(r.code, 0, 'fallocate fails');
      t.match(r.stderr, /not supported|Function not implemented/i, 'with EOPNOTSUPP', { stderr: r.stderr });
      return;
    }
    await shOk(t, `fallocate -l 3M ${q(f)}`);
    t.equal((await fsp.stat(f)).size, 3 * MiB, 'size 3 MiB');
    t.ok((await fsp.readFile(f)).every((x) => x === 0), 'reads zeros');
    const g = path.join(dir, 'keep');
    await fsp.writeFile(g, 'abc');
    await shOk(t, `fallocate -l 1M ${q(g)}`);
    const back = await fsp.readFile(g);
    t.equal(back.length, MiB, 'grows an existing file');
    t.equal(back.subarray(0, 3).toString(), 'abc', 'and keeps its data');
    await shOk(t, `fallocate -l 10 ${q(g)}`);
    t.equal((await fsp.stat(g)).size, MiB, 'never shrinks');
  }, 120_000, 'fallocate');

  test(`mkfifo and mknod${has('mknod') ? '' : ' fail cleanly (not supported)'}`, async (t, dir) => {
    const p = path.join(dir, 'fifo');
    if (!has('mknod')) {
      const r = await sh(`mkfifo ${q(p)}`);
      t.not(r.code, 0, 'mkfifo fails');
      t.match(r.stderr, /not supported|not permitted|not implemented/i, 'with an errno', { stderr: r.stderr });
      t.equal(await codeOf(fsp.lstat(p)), 'ENOENT', 'no new name');
      // mknod(2) of a regular file is a create.
      const reg = path.join(dir, 'reg');
      const m = await sh(`python3 -c ${q('import os,sys; os.mknod(sys.argv[1], 0o100640)')} ${q(reg)}`);
      if (m.code === 0) t.ok((await fsp.stat(reg)).isFile(), 'mknod(S_IFREG) creates a regular file');
      return;
    }
    await shOk(t, `mkfifo -m 640 ${q(p)}`);
    const st = await fsp.stat(p);
    t.ok(st.isFIFO(), 'a FIFO');
    t.equal(st.mode & 0o777, 0o640, 'mode');
    t.equal((await shOk(t, `sh -c 'printf through-the-fifo > "$1" & cat "$1"; wait' sh ${q(p)}`, { timeoutMs: 20_000 })), 'through-the-fifo', 'data passes through it');
    if (process.getuid?.() === 0) {
      const n = path.join(dir, 'null');
      await shOk(t, `mknod -m 600 ${q(n)} c 1 3`);
      const sn = await fsp.stat(n);
      t.ok(sn.isCharacterDevice(), 'a character device node');
      t.equal((await shOk(t, `stat -c '%t:%T' ${q(n)}`)).trim(), '1:3', 'its device numbers');
    }
    t.ok((await fsp.readdir(dir)).includes('fifo'), 'listed');
    await fsp.unlink(p);
    t.equal(await codeOf(fsp.lstat(p)), 'ENOENT', 'unlinked');
  }, 120_000, 'mknod');

  test('flock exclusivity', async (t, dir) => {
    const f = path.join(dir, 'lock');
    await fsp.writeFile(f, '');
    await shOk(t, `flock -n ${q(f)} -c true`);
    const holder = await startHolder(`flock ${q(f)} -c 'echo locked; sleep 2'`, 'locked');
    const busy = await sh(`flock -n ${q(f)} -c true`);
    t.equal(busy.code, 1, 'flock -n fails while another process holds the lock', { stderr: busy.stderr });
    const busyShared = await sh(`flock -n -s ${q(f)} -c true`);
    t.equal(busyShared.code, 1, 'a shared lock is refused too');
    t.equal(await holder.done, 0, 'the holder finishes');
    await shOk(t, `flock -n ${q(f)} -c true`);
    t.pass('free again once the holder closed the file');
    const waited = Date.now();
    const h2 = await startHolder(`flock ${q(f)} -c 'echo locked; sleep 1'`, 'locked');
    await shOk(t, `flock -w 10 ${q(f)} -c true`);
    t.ok(Date.now() - waited >= 500, 'a blocking flock waits for the holder');
    await h2.done;
    const s1 = await startHolder(`flock -s ${q(f)} -c 'echo shared; sleep 2'`, 'shared');
    await shOk(t, `flock -n -s ${q(f)} -c true`);
    t.pass('shared locks coexist');
    t.equal((await sh(`flock -n -x ${q(f)} -c true`)).code, 1, 'an exclusive lock waits for shared holders');
    await s1.done;
  });

  test('fsync', async (t, dir) => {
    const f = path.join(dir, 's');
    const data = randomBytes(MiB + 1);
    const fh = await fsp.open(f, 'w');
    await fh.write(data);
    await fh.sync();
    await fh.datasync();
    t.pass('fsync and fdatasync return');
    t.equal(sha(await fsp.readFile(f)), sha(data), 'another handle reads the synced bytes before close');
    await fh.write(Buffer.from('tail'));
    await fh.sync();
    await fh.close();
    t.equal((await fsp.stat(f)).size, data.length + 4);
    const d = await fsp.open(dir, 'r');
    await d.sync();
    await d.close();
    t.pass('fsync of a directory');
    await shOk(t, `sync ${q(f)}`);
  });

  test('ENAMETOOLONG for a 256-byte name', async (t, dir) => {
    const long = path.join(dir, 'x'.repeat(256));
    t.equal(await codeOf(fsp.writeFile(long, 'x')), 'ENAMETOOLONG', 'create');
    t.equal(await codeOf(fsp.mkdir(long)), 'ENAMETOOLONG', 'mkdir');
    t.equal(await codeOf(fsp.stat(long)), 'ENAMETOOLONG', 'lookup');
    await fsp.writeFile(path.join(dir, 'a'), 'a');
    t.equal(await codeOf(fsp.rename(path.join(dir, 'a'), long)), 'ENAMETOOLONG', 'rename to');
    const ok = path.join(dir, 'y'.repeat(255));
    await fsp.writeFile(ok, 'ok');
    t.equal(await fsp.readFile(ok, 'utf8'), 'ok', '255 bytes work');
    t.ok((await fsp.readdir(dir)).includes('y'.repeat(255)), 'and are listed');
    const multi = path.join(dir, 'é'.repeat(127)); // 254 bytes of UTF-8
    await fsp.writeFile(multi, 'utf8');
    t.equal(await fsp.readFile(multi, 'utf8'), 'utf8', 'a 254-byte UTF-8 name');
    t.equal(await codeOf(fsp.writeFile(path.join(dir, 'é'.repeat(128)), 'x')), 'ENAMETOOLONG', 'a 256-byte UTF-8 name');
  });

  test('ENOENT and other errno values', async (t, dir) => {
    const m = path.join(dir, 'missing');
    t.equal(await codeOf(fsp.stat(m)), 'ENOENT', 'stat');
    t.equal(await codeOf(fsp.open(m, 'r')), 'ENOENT', 'open');
    t.equal(await codeOf(fsp.unlink(m)), 'ENOENT', 'unlink');
    t.equal(await codeOf(fsp.readdir(m)), 'ENOENT', 'readdir');
    t.equal(await codeOf(fsp.chmod(m, 0o644)), 'ENOENT', 'chmod');
    t.equal(await codeOf(fsp.truncate(m, 0)), 'ENOENT', 'truncate');
    t.equal(await codeOf(fsp.writeFile(path.join(m, 'f'), 'x')), 'ENOENT', 'create under a missing directory');
    t.equal(await codeOf(fsp.stat(path.join(m, 'a/b/c'))), 'ENOENT', 'a path through a missing directory');
    const f = path.join(dir, 'f');
    await fsp.writeFile(f, 'x');
    t.equal(await codeOf(fsp.open(f, C.O_CREAT | C.O_EXCL | C.O_WRONLY)), 'EEXIST', 'O_CREAT|O_EXCL on an existing file');
    t.equal(await codeOf(fsp.open(dir, 'w')), 'EISDIR', 'open a directory for writing');
    t.equal(await codeOf(fsp.stat(path.join(f, 'x'))), 'ENOTDIR', 'a file used as a directory');
    const r = await sh(`cat ${q(m)}`);
    t.match(r.stderr, /No such file or directory/, 'cat(1) reports ENOENT');
    // Many failing lookups at once: each answers, none hangs.
    const codes = await Promise.all(Array.from({ length: 300 }, (_, i) => codeOf(fsp.stat(path.join(dir, `nope-${i}`)))));
    t.ok(codes.every((c) => c === 'ENOENT'), '300 concurrent missing lookups all answer ENOENT');
  });
}
