/** `strata fs …` against a real `strata local` cluster, cross-checked through the FUSE mount and the under-store. */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import * as path from 'node:path';
import { startLocal, runCli, tempRoot, LocalCluster, CliResult } from '../helpers/cluster';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The kernel caches FUSE entries and attributes for libfuse's default 1 s, so a change
 * made by the CLI (another client) to a name the mount has looked up shows there
 * within about a second, not at once. These poll for up to 5 s.
 */
async function goneFromMount(p: string): Promise<boolean> {
  const until = Date.now() + 5000;
  for (;;) {
    try {
      await fsp.stat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function mountContent(p: string, want: string): Promise<string> {
  const until = Date.now() + 5000;
  for (;;) {
    const got = await fsp.readFile(p, 'utf8').catch((err) => `<${(err as NodeJS.ErrnoException).code}>`);
    if (got === want || Date.now() > until) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Lines of stderr, without the trailing newline. */
const errLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l.length > 0);

interface LsEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  mtime: string;
}

t.test('strata fs', async (t) => {
  // Small blocks, so the multi-MiB copies below span several blocks.
  const c: LocalCluster = await startLocal(t, { args: ['--block-size', '1MiB'] });
  const local = tempRoot('strata-cli-local-');
  t.teardown(() => fsp.rm(local, { recursive: true, force: true }));
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);
  const l = (p: string) => path.join(local, p);

  /** Runs `strata fs ARGS --master URL` and fails the test with its output when the exit code differs. */
  const fs = async (t: Tap, args: string[], expectCode = 0): Promise<CliResult> => {
    const r = await runCli(['fs', ...args, '--master', c.masterUrl]);
    t.equal(r.code, expectCode, `strata fs ${args.join(' ')} exits ${expectCode}`, { stdout: r.stdout.slice(0, 2000), stderr: r.stderr.slice(0, 2000) });
    return r;
  };
  type Tap = typeof t;
  const lsJson = async (t: Tap, p: string): Promise<LsEntry[]> => {
    const r = await fs(t, ['ls', '--json', p]);
    return JSON.parse(r.stdout) as LsEntry[];
  };

  await t.test('mkdir and mkdir -p', async (t) => {
    await fs(t, ['mkdir', '/d1']);
    t.ok((await fsp.stat(m('d1'))).isDirectory(), 'visible through the mount');
    t.ok((await fsp.stat(u('d1'))).isDirectory(), 'created in the under-store');

    await fs(t, ['mkdir', '-p', '/p1/p2/p3']);
    t.ok((await fsp.stat(m('p1/p2/p3'))).isDirectory(), 'mkdir -p creates all parents');
    t.ok((await fsp.stat(u('p1/p2/p3'))).isDirectory());
    await fs(t, ['mkdir', '-p', '/p1/p2/p3'], 0);
    await fs(t, ['mkdir', '-p', '/p1/p2/p4', '/p1/p5']);
    t.same((await fsp.readdir(m('p1'))).sort(), ['p2', 'p5']);
    t.same((await fsp.readdir(m('p1/p2'))).sort(), ['p3', 'p4']);

    const again = await fs(t, ['mkdir', '/d1'], 1);
    t.equal(errLines(again).length, 1, 'one error line');
    t.match(again.stderr, /^strata: .*exist/);
    const noParent = await fs(t, ['mkdir', '/nope/child'], 1);
    t.match(noParent.stderr, /^strata: /);
    t.equal(errLines(noParent).length, 1);
    await t.rejects(fsp.stat(m('nope')), { code: 'ENOENT' }, 'mkdir without -p did not create parents');
  });

  await t.test('ls, human and --json', async (t) => {
    await fsp.writeFile(m('d1/hello.txt'), 'hello');
    await fsp.mkdir(m('d1/sub'));
    const r = await fs(t, ['ls', '/d1']);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines.length, 2, 'one line per entry');
    const fileLine = lines.find((x) => x.endsWith(' hello.txt'));
    const dirLine = lines.find((x) => x.endsWith(' sub'));
    t.ok(fileLine, 'file listed');
    t.ok(dirLine, 'dir listed');
    t.match(fileLine!, /^-rw-r--r-- .* 5 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d hello\.txt$/);
    t.match(dirLine!, /^d[rwx-]{9} /);
    // setuid, setgid and sticky show as ls -l shows them: s/t over x, S/T without it.
    await fsp.mkdir(m('d2'));
    await fsp.chmod(m('d2'), 0o1777);
    await fsp.writeFile(m('d2/tr'), '');
    await fsp.chmod(m('d2/tr'), 0o6600);
    const special = (await fs(t, ['ls', '/', '/d2'])).stdout;
    t.match(special, /^drwxrwxrwt .* d2$/m, 'sticky');
    t.match(special, /^-rwS--S--- .* tr$/m, 'setuid and setgid without x');

    const entries = await lsJson(t, '/d1');
    t.ok(Array.isArray(entries), 'a JSON array');
    t.equal(entries.length, 2);
    const f = entries.find((e) => e.name === 'hello.txt')!;
    const d = entries.find((e) => e.name === 'sub')!;
    t.match(f, { name: 'hello.txt', type: 'file', size: 5, mode: 0o644 });
    t.match(d, { name: 'sub', type: 'directory' });
    for (const e of entries) {
      t.type(e.mode, 'number');
      t.type(e.size, 'number');
      t.type(e.mtime, 'string');
      t.ok(Number.isFinite(Date.parse(e.mtime)), `mtime of ${e.name} is a date`);
    }
    t.ok(Math.abs(Date.parse(f.mtime) - (await fsp.stat(m('d1/hello.txt'))).mtimeMs) < 2000, 'mtime agrees with the mount');

    const single = await lsJson(t, '/d1/hello.txt');
    t.equal(single.length, 1, 'ls of a file shows the file');
    t.match(single[0], { name: 'hello.txt', type: 'file', size: 5 });

    const root = await lsJson(t, '/');
    t.ok(root.some((e) => e.name === 'd1' && e.type === 'directory'), 'ls without paths lists /');
    const empty = await lsJson(t, '/d1/sub');
    t.same(empty, [], 'an empty directory is []');
  });

  await t.test('stat --json', async (t) => {
    const r = await fs(t, ['stat', '--json', '/d1/hello.txt']);
    const s = JSON.parse(r.stdout);
    t.match(s, { path: '/d1/hello.txt', name: 'hello.txt', type: 'file', size: 5, mode: 0o644, nlink: Number, uid: Number, gid: Number, ino: Number });
    t.ok(Number.isFinite(Date.parse(s.mtime)));
    const st = await fsp.stat(m('d1/hello.txt'));
    t.equal(s.ino, st.ino, 'same inode as through the mount');
    const d = JSON.parse((await fs(t, ['stat', '--json', '/d1'])).stdout);
    t.match(d, { path: '/d1', type: 'directory' });
    const both = JSON.parse((await fs(t, ['stat', '--json', '/d1', '/d1/hello.txt'])).stdout);
    t.ok(Array.isArray(both) && both.length === 2, 'several paths give an array');
    const human = await fs(t, ['stat', '/d1/hello.txt']);
    t.match(human.stdout, /File: \/d1\/hello\.txt/);
    t.match(human.stdout, /Size: 5/);
  });

  await t.test('cat', async (t) => {
    const r = await fs(t, ['cat', '/d1/hello.txt']);
    t.equal(r.stdout, 'hello');
    await fsp.writeFile(m('d1/world.txt'), ' world');
    const two = await fs(t, ['cat', '/d1/hello.txt', '/d1/world.txt']);
    t.equal(two.stdout, 'hello world', 'several files are concatenated');
    await fsp.writeFile(m('empty'), '');
    t.equal((await fs(t, ['cat', '/empty'])).stdout, '', 'empty file');
    const dir = await fs(t, ['cat', '/d1'], 1);
    t.match(dir.stderr, /^strata: .*directory/);
    t.equal(errLines(dir).length, 1);
  });

  await t.test('cp local -> strata -> local, plain, file: and file:// paths', async (t) => {
    await fsp.writeFile(l('small.txt'), 'small file\n');
    await fs(t, ['cp', l('small.txt'), 'strata:/small.txt']);
    t.equal(await fsp.readFile(m('small.txt'), 'utf8'), 'small file\n', 'visible through the mount');
    t.equal(await fsp.readFile(u('small.txt'), 'utf8'), 'small file\n', 'in the under-store');

    await fs(t, ['cp', `file:${l('small.txt')}`, 'strata:/small-file-prefix.txt']);
    t.equal(await fsp.readFile(m('small-file-prefix.txt'), 'utf8'), 'small file\n', 'file: prefix source');
    await fs(t, ['cp', `file://${l('small.txt')}`, 'strata:///small-file-url.txt']);
    t.equal(await fsp.readFile(u('small-file-url.txt'), 'utf8'), 'small file\n', 'file:// source, strata:/// destination');

    await fs(t, ['cp', 'strata:/small.txt', l('back.txt')]);
    t.equal(await fsp.readFile(l('back.txt'), 'utf8'), 'small file\n', 'plain local destination');
    await fs(t, ['cp', 'strata:/small.txt', `file:${l('back2.txt')}`]);
    t.equal(await fsp.readFile(l('back2.txt'), 'utf8'), 'small file\n', 'file: destination');

    // Relative local paths resolve against the working directory.
    const r = await runCli(['fs', 'cp', 'strata:/small.txt', path.relative(process.cwd(), l('rel.txt')), '--master', c.masterUrl]);
    t.equal(r.code, 0, r.stderr);
    t.equal(await fsp.readFile(l('rel.txt'), 'utf8'), 'small file\n', 'relative local destination');

    // Onto an existing directory: the file goes inside, as cp(1) does.
    await fs(t, ['cp', l('small.txt'), 'strata:/d1']);
    t.equal(await fsp.readFile(m('d1/small.txt'), 'utf8'), 'small file\n', 'copied into a Strata directory');
    await fsp.mkdir(l('into'));
    await fs(t, ['cp', 'strata:/d1/hello.txt', l('into')]);
    t.equal(await fsp.readFile(l('into/hello.txt'), 'utf8'), 'hello', 'copied into a local directory');

    // Overwrite an existing Strata file.
    await fsp.writeFile(l('small.txt'), 'v2');
    await fs(t, ['cp', l('small.txt'), 'strata:/small.txt']);
    t.equal(await mountContent(m('small.txt'), 'v2'), 'v2', 'overwrite seen through the mount');
    t.equal(await fsp.readFile(u('small.txt'), 'utf8'), 'v2', 'overwrite reached the under-store');

    // Empty file.
    await fsp.writeFile(l('zero'), '');
    await fs(t, ['cp', l('zero'), 'strata:/zero']);
    t.equal((await fsp.stat(u('zero'))).size, 0);
    await fs(t, ['cp', 'strata:/zero', l('zero-back')]);
    t.equal((await fsp.stat(l('zero-back'))).size, 0);

    const json = JSON.parse((await fs(t, ['cp', '--json', l('small.txt'), 'strata:/small-json.txt'])).stdout);
    t.match(json, { files: 1, ms: Number });

    const bothLocal = await fs(t, ['cp', l('small.txt'), l('x.txt')], 2);
    t.match(bothLocal.stderr, /^strata: .*strata:/, 'local to local is a usage error');
    t.equal(errLines(bothLocal).length, 1);
  });

  await t.test('cp of a multi-MiB random file, byte for byte', async (t) => {
    const data = randomBytes(9 * 1024 * 1024 + 12345);
    await fsp.writeFile(l('big.bin'), data);
    await fs(t, ['cp', l('big.bin'), 'strata:/big.bin']);
    const fromMount = await fsp.readFile(m('big.bin'));
    t.equal(fromMount.length, data.length, 'size through the mount');
    t.ok(fromMount.equals(data), 'bytes through the mount equal the source');
    t.ok((await fsp.readFile(u('big.bin'))).equals(data), 'bytes in the under-store equal the source');
    const st = JSON.parse((await fs(t, ['stat', '--json', '/big.bin'])).stdout);
    t.equal(st.size, data.length);
    t.equal(st.persisted, true, 'persisted');

    await fs(t, ['cp', 'strata:/big.bin', l('big.back')]);
    const back = await fsp.readFile(l('big.back'));
    t.equal(back.length, data.length);
    t.ok(back.equals(data), 'copied back byte for byte');

    // cat of the same bytes (stdout as a string would mangle them; compare hashes through a file instead).
    await fs(t, ['cp', 'strata:/big.bin', 'strata:/big.copy']);
    t.equal(sha(await fsp.readFile(m('big.copy'))), sha(data), 'strata -> strata copy');

    // A file written through the mount, copied out with the CLI.
    const data2 = randomBytes(3 * 1024 * 1024 + 7);
    await fsp.writeFile(m('mounted.bin'), data2);
    await fs(t, ['cp', 'strata:/mounted.bin', l('mounted.bin')]);
    t.ok((await fsp.readFile(l('mounted.bin'))).equals(data2), 'file written through the mount copies out intact');
  });

  await t.test('cp -r of a small tree both ways', async (t) => {
    await fsp.mkdir(l('tree/a/b'), { recursive: true });
    await fsp.mkdir(l('tree/empty'), { recursive: true });
    await fsp.writeFile(l('tree/top.txt'), 'top');
    await fsp.writeFile(l('tree/a/one.txt'), 'one');
    await fsp.writeFile(l('tree/a/b/two.bin'), randomBytes(70_000));

    const noR = await fs(t, ['cp', l('tree'), 'strata:/tree'], 1);
    t.match(noR.stderr, /^strata: .*-r/, 'a directory needs -r');
    t.equal(errLines(noR).length, 1);

    const json = JSON.parse((await fs(t, ['cp', '-r', '--json', l('tree'), 'strata:/tree'])).stdout);
    t.equal(json.files, 3, 'three files copied');
    for (const f of ['top.txt', 'a/one.txt', 'a/b/two.bin']) {
      const want = await fsp.readFile(l(`tree/${f}`));
      t.ok((await fsp.readFile(m(`tree/${f}`))).equals(want), `${f} through the mount`);
      t.ok((await fsp.readFile(u(`tree/${f}`))).equals(want), `${f} in the under-store`);
    }
    t.ok((await fsp.stat(m('tree/empty'))).isDirectory(), 'empty directory copied');
    t.ok((await fsp.stat(u('tree/empty'))).isDirectory());

    await fs(t, ['cp', '-r', 'strata:/tree', l('tree-back')]);
    for (const f of ['top.txt', 'a/one.txt', 'a/b/two.bin']) {
      t.ok((await fsp.readFile(l(`tree-back/${f}`))).equals(await fsp.readFile(l(`tree/${f}`))), `${f} copied back`);
    }
    t.ok((await fsp.stat(l('tree-back/empty'))).isDirectory());

    await fs(t, ['cp', '-r', 'strata:/tree', 'strata:/tree2']);
    t.equal(await fsp.readFile(m('tree2/a/one.txt'), 'utf8'), 'one', 'strata -> strata tree copy');
  });

  await t.test('mv', async (t) => {
    await fsp.writeFile(m('mv-src.txt'), 'moving');
    await fs(t, ['mv', '/mv-src.txt', '/mv-dst.txt']);
    t.equal(await mountContent(m('mv-dst.txt'), 'moving'), 'moving', 'new name through the mount');
    t.equal(await fsp.readFile(u('mv-dst.txt'), 'utf8'), 'moving', 'rename reached the under-store');
    t.ok(await goneFromMount(m('mv-src.txt')), 'old name gone through the mount');
    await t.rejects(fsp.stat(u('mv-src.txt')), { code: 'ENOENT' });

    await fs(t, ['mv', '/mv-dst.txt', '/d1']);
    t.equal(await fsp.readFile(m('d1/mv-dst.txt'), 'utf8'), 'moving', 'mv onto a directory moves into it');

    await fs(t, ['mv', '/tree2', '/tree3']);
    t.equal(await fsp.readFile(m('tree3/a/one.txt'), 'utf8'), 'one', 'directory renamed');
    t.equal(await fsp.readFile(u('tree3/a/one.txt'), 'utf8'), 'one');

    const missing = await fs(t, ['mv', '/no-such', '/whatever'], 1);
    t.match(missing.stderr, /^strata: /);
    t.equal(errLines(missing).length, 1);
  });

  await t.test('rm and rm -r', async (t) => {
    await fs(t, ['rm', '/d1/mv-dst.txt']);
    t.ok(await goneFromMount(m('d1/mv-dst.txt')), 'gone through the mount');
    await t.rejects(fsp.stat(u('d1/mv-dst.txt')), { code: 'ENOENT' }, 'gone from the under-store');

    await fs(t, ['rm', '/small-file-prefix.txt', '/small-file-url.txt']);
    t.notOk((await fsp.readdir(m(''))).some((n) => n.startsWith('small-file-')), 'several files removed');

    const dir = await fs(t, ['rm', '/tree3'], 1);
    t.match(dir.stderr, /^strata: .*directory/);
    t.equal(errLines(dir).length, 1);
    t.ok((await fsp.stat(m('tree3/a/one.txt'))).isFile(), 'nothing removed without -r');

    // As rm(1) and cat(1): a failed operand is reported, the others are still done, exit 1.
    await fsp.writeFile(m('ops-a'), 'A');
    await fsp.writeFile(m('ops-b'), 'B');
    const cat = await fs(t, ['cat', '/ops-a', '/nope', '/ops-b'], 1);
    t.equal(cat.stdout, 'AB', 'cat prints the files around the missing one');
    t.equal(errLines(cat).length, 1, 'one error line');
    t.match(cat.stderr, /^strata: \/nope: no such file/);
    const ls = await fs(t, ['ls', '/nope', '/ops-b'], 1);
    t.match(ls.stdout, / \/ops-b$/m, 'ls lists the operand after the missing one');
    t.equal(errLines(ls).length, 1);
    const rm = await fs(t, ['rm', '/nope', '/ops-a', '/ops-b'], 1);
    t.equal(errLines(rm).length, 1, 'rm reports the missing operand once');
    t.ok(await goneFromMount(m('ops-a')), 'and removes the ones after it');
    t.ok(await goneFromMount(m('ops-b')));

    await fs(t, ['rm', '-r', '/tree3']);
    t.ok(await goneFromMount(m('tree3')), 'tree gone through the mount');
    await t.rejects(fsp.stat(u('tree3')), { code: 'ENOENT' }, 'tree gone from the under-store');
  });

  await t.test('symbolic links among a path\'s directories are followed, as the kernel resolves paths', async (t) => {
    await fsp.mkdir(m('real'));
    await fsp.mkdir(m('real/sub'));
    await fsp.writeFile(m('real/sub/f'), 'through links');
    await fsp.symlink('real', m('dirlink'));
    await fsp.symlink('dirlink/sub', m('sublink'));
    t.equal((await fs(t, ['cat', '/dirlink/sub/f'])).stdout, 'through links', 'cat through a link to a directory');
    t.equal((await fs(t, ['cat', '/sublink/f'])).stdout, 'through links', 'through a link to a path through a link');
    t.match((await fs(t, ['ls', '/dirlink/'])).stdout, / sub$/m, 'a trailing slash follows the last link too');
    t.match((await fs(t, ['stat', '/dirlink/sub/f'])).stdout, /Size: 13/);
    const du = JSON.parse((await fs(t, ['du', '--json', '/dirlink'])).stdout) as { size: number };
    t.equal(du.size, 13, 'du of a link to a directory measures the directory');
    const mv = await fs(t, ['mv', '/dirlink/sub/f/', '/elsewhere'], 1);
    t.match(mv.stderr, /not a directory/, 'mv of a file named with a trailing slash');
    t.ok((await fsp.stat(m('real/sub/f'))).isFile(), 'and moves nothing');
    const rm = await fs(t, ['rm', '-r', '/dirlink/'], 1);
    t.match(rm.stderr, /not a directory/, 'rm takes a link with a trailing slash as no directory');
    t.ok((await fsp.stat(m('real/sub/f'))).isFile(), 'and removes nothing');
    await fs(t, ['rm', '/dirlink/sub/f']);
    t.ok(await goneFromMount(m('real/sub/f')), 'rm of a file through a link removes the file');
  });

  await t.test('files from the mount and the under-store are seen by the CLI', async (t) => {
    await fsp.writeFile(m('via-mount.txt'), 'from the mount');
    t.equal((await fs(t, ['cat', '/via-mount.txt'])).stdout, 'from the mount');
    await fsp.mkdir(u('outside'), { recursive: true });
    await fsp.writeFile(u('outside/o.txt'), 'from outside');
    const entries = await lsJson(t, '/outside');
    t.match(entries, [{ name: 'o.txt', type: 'file', size: 12 }], 'listed lazily from the under-store');
    t.equal((await fs(t, ['cat', '/outside/o.txt'])).stdout, 'from outside');
    await fs(t, ['cp', 'strata:/outside/o.txt', l('o.txt')]);
    t.equal(await fsp.readFile(l('o.txt'), 'utf8'), 'from outside');
  });

  await t.test('$STRATA_MASTER is used when --master is absent', async (t) => {
    const r = await runCli(['fs', 'ls', '--json', '/'], { STRATA_MASTER: c.masterUrl });
    t.equal(r.code, 0, r.stderr);
    t.ok((JSON.parse(r.stdout) as LsEntry[]).some((e) => e.name === 'd1'));
    const w = await runCli(['fs', 'mkdir', '/from-env'], { STRATA_MASTER: c.masterUrl });
    t.equal(w.code, 0, w.stderr);
    t.ok((await fsp.stat(m('from-env'))).isDirectory());
    // The flag wins over the environment.
    const both = await runCli(['fs', 'ls', '/', '--master', c.masterUrl], { STRATA_MASTER: 'http://127.0.0.1:1' });
    t.equal(both.code, 0, both.stderr);
    // Also given before the command's name; given twice, the last wins.
    const before = await runCli(['fs', '--master', c.masterUrl, 'ls', '/'], { STRATA_MASTER: 'http://127.0.0.1:1' });
    t.equal(before.code, 0, before.stderr);
    t.match(before.stdout, /d1/);
    const own = await runCli(['fs', '--master', 'http://127.0.0.1:1', 'ls', '/', '--master', c.masterUrl]);
    t.equal(own.code, 0, own.stderr);
    const bad = await runCli(['fs', 'ls', '/'], { STRATA_MASTER: 'not a url' });
    t.equal(bad.code, 2, 'a malformed $STRATA_MASTER is a usage error');
    t.match(bad.stderr, /^strata: .*STRATA_MASTER/);
    t.equal(errLines(bad).length, 1);
  });

  await t.test('a missing path: exit 1 and one `strata: ...` line', async (t) => {
    for (const args of [['ls', '/missing'], ['ls', '--json', '/missing'], ['stat', '/missing'], ['stat', '--json', '/missing'], ['cat', '/missing'], ['rm', '/missing'], ['rm', '-r', '/missing'], ['cp', 'strata:/missing', l('missing')], ['cp', l('missing'), 'strata:/m'], ['mkdir', '/missing/x']]) {
      const r = await fs(t, args, 1);
      t.equal(errLines(r).length, 1, `${args.join(' ')}: one error line`);
      t.match(r.stderr, /^strata: \S.*\n$/, `${args.join(' ')}: starts with 'strata: '`);
      t.match(r.stderr, /missing/, `${args.join(' ')}: names the path`);
      t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
    }
    await t.rejects(fsp.stat(l('missing')), { code: 'ENOENT' }, 'no local file left by a failed copy');
    await t.rejects(fsp.stat(m('m')), { code: 'ENOENT' }, 'no Strata file left by a failed copy');
  });
});
