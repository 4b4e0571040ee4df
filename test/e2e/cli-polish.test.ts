/**
 * The CLI's conventions (issue 8): help with examples and exit codes, glob patterns
 * expanded against a real cluster's namespace, one --json document per command,
 * one-line `strata: <path>: <cause>` errors with exit 1 or 2, and the progress of
 * `fs cp -r` on a stderr that is not a terminal.
 */

import t from 'tap';
import { existsSync, mkdirSync, promises as fsp, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { startLocal, runCli, tempRoot, CliResult } from '../helpers/cluster';

/** Lines of stderr, without the trailing newline. */
const errLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l.length > 0);

t.test('help: usage, examples, exit codes, where config comes from', async (t) => {
  const top = await runCli(['--help']);
  t.equal(top.code, 0, 'strata --help exits 0');
  t.match(top.stdout, /^Usage: strata /);
  t.match(top.stdout, /Examples:\n {2}\$ strata local/);
  t.match(top.stdout, /Exit codes: 0 ok, 1 operation failed, 2 bad usage or configuration/);
  t.match(top.stdout, /strata conf list/, 'says where config comes from');
  t.match(top.stdout, /\$STRATA_CONFIG/);
  t.equal(top.stderr, '');
  t.equal((await runCli(['help'])).stdout, top.stdout, 'strata help is strata --help');

  const [helpFs, fsHelp, cpHelp, fsHelpCp, helpFsCp] = await Promise.all([
    runCli(['help', 'fs']),
    runCli(['fs', '--help']),
    runCli(['fs', 'cp', '--help']),
    runCli(['fs', 'help', 'cp']),
    runCli(['help', 'fs', 'cp']),
  ]);
  for (const [name, r] of [['strata help fs', helpFs], ['strata fs --help', fsHelp], ['strata fs cp --help', cpHelp], ['strata fs help cp', fsHelpCp], ['strata help fs cp', helpFsCp]] as const) {
    t.equal(r.code, 0, `${name} exits 0`);
    t.equal(r.stderr, '', `${name}: nothing on stderr`);
  }
  t.equal(helpFs.stdout, fsHelp.stdout, 'help fs = fs --help');
  t.match(fsHelp.stdout, /^Usage: strata fs /);
  t.match(fsHelp.stdout, /glob patterns/);
  t.match(fsHelp.stdout, /Exit codes: 0 ok, 1 operation failed, 2 bad usage/);
  t.match(fsHelp.stdout, /\$ strata fs ls '\/data\/\*\.parquet'/);
  t.equal(fsHelpCp.stdout, cpHelp.stdout, 'fs help cp = fs cp --help');
  t.equal(helpFsCp.stdout, cpHelp.stdout, 'help fs cp = fs cp --help');
  t.match(cpHelp.stdout, /^Usage: strata fs cp \[options\] <src> <dst>/);
  t.match(cpHelp.stdout, /Examples:\n {2}\$ strata fs cp /);
  t.match(cpHelp.stdout, /\$ strata fs cp -r /);

  // Every fs command's examples are checked in process by test/cli/fs-commands.test.ts; here the daemons'.
  const daemons = ['local', 'master', 'worker', 'mount', 'doctor'];
  const daemonHelp = await Promise.all(daemons.map((c) => runCli(['help', c])));
  daemons.forEach((c, i) => {
    t.equal(daemonHelp[i]!.code, 0, `help ${c} exits 0`);
    t.match(daemonHelp[i]!.stdout, new RegExp(`Examples:\\n {2}\\$ strata ${c}\\b`), `${c} has examples`);
  });

  const usage: [string[], RegExp][] = [
    [['help', 'bogus'], /^strata: unknown command 'bogus' \(see 'strata --help'\)\n$/],
    [['help', 'fs', 'bogus'], /^strata: unknown command 'bogus' \(see 'strata fs --help'\)\n$/],
    [['bogus'], /^strata: unknown command 'bogus'.*\(see 'strata --help'\)\n$/],
    [['fs', 'ls', '--bogus'], /^strata: unknown option '--bogus' \(see 'strata fs ls --help'\)\n$/],
    [['fs', 'stat'], /^strata: missing required argument 'paths' \(see 'strata fs stat --help'\)\n$/],
  ];
  const usageRuns = await Promise.all(usage.map(([args]) => runCli(args)));
  usage.forEach(([args, want], i) => {
    const r = usageRuns[i]!;
    t.equal(r.code, 2, `strata ${args.join(' ')} is a usage error`);
    t.match(r.stderr, want, `strata ${args.join(' ')}: one line naming what is wrong`);
    t.equal(r.stdout, '');
  });
  const noSub = await runCli(['fs']);
  t.equal(noSub.code, 2, 'strata fs without a command shows its help and exits 2');
  t.match(noSub.stderr, /^Usage: strata fs /);
});

t.test('against a cluster', async (t) => {
  const c = await startLocal(t);
  const local = tempRoot('strata-cli-polish-');
  t.teardown(() => fsp.rm(local, { recursive: true, force: true }));
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);
  const l = (p: string) => path.join(local, p);
  type Tap = typeof t;
  const fs = async (t: Tap, args: string[], expectCode = 0): Promise<CliResult> => {
    const r = await runCli(['fs', ...args, '--master', c.masterUrl]);
    t.equal(r.code, expectCode, `strata fs ${args.join(' ')} exits ${expectCode}`, { stdout: r.stdout.slice(0, 2000), stderr: r.stderr.slice(0, 2000) });
    return r;
  };
  const json = async <T = any>(t: Tap, args: string[]): Promise<T> => {
    const r = await fs(t, [...args, '--json']);
    t.equal(r.stdout.trim().split('\n').length, 1, `${args.join(' ')} --json: one line on stdout`);
    return JSON.parse(r.stdout) as T;
  };
  /** Paths below `dir` as the under-store has them. */
  const ufsNames = async (dir: string) => (await fsp.readdir(u(dir))).sort();

  // The tree every subtest works on, written through the mount.
  await fsp.mkdir(m('g/day=1'), { recursive: true });
  await fsp.mkdir(m('g/day=2'), { recursive: true });
  for (const [name, body] of [
    ['g/a.parquet', 'A'],
    ['g/b.parquet', 'BB'],
    ['g/c.csv', 'CCC'],
    ['g/.hidden.parquet', 'H'],
    ['g/a*b', 'star'],
    ['g/day=1/x.parquet', 'one\n'],
    ['g/day=2/x.parquet', 'two\n'],
    ['g/day=2/y.csv', 'y'],
  ]) {
    await fsp.writeFile(m(name!), body!);
  }

  // Read-only commands run side by side: the namespace does not change under them.
  await t.test('globs: ls, stat, du, cat expand against the namespace', async (t) => {
    type Entry = { path: string; name: string; size: number };
    const [ls, text, hidden, days, dirs, st, notA, aToB, one, oneMatch, du, cat] = await Promise.all([
      json<Entry[]>(t, ['ls', '/g/*.parquet']),
      fs(t, ['ls', '/g/*.parquet']),
      json<Entry[]>(t, ['ls', '/g/.*']),
      json<Entry[]>(t, ['ls', '/g/day=?']),
      fs(t, ['ls', '/g/day=[12]']),
      json<Entry[]>(t, ['stat', '/g/day=*/x.parquet']),
      json<Entry[]>(t, ['stat', '/g/[!a].parquet']),
      json<Entry[]>(t, ['stat', '/g/[a-b].*']),
      json<Entry>(t, ['stat', '/g/a.parquet']),
      json<Entry[]>(t, ['stat', '/g/?.csv']),
      json<Entry[]>(t, ['du', '/g/day=*']),
      fs(t, ['cat', '/g/day=*/x.parquet']),
    ]);
    const paths = (es: Entry[]) => es.map((e) => e.path);
    t.same(paths(ls), ['/g/a.parquet', '/g/b.parquet'], 'the two matches, sorted; the hidden file is left out as a shell does');
    t.same(
      ls.map((e) => e.name),
      ['a.parquet', 'b.parquet'],
    );
    t.match(text.stdout, /^-rw-r--r-- .* 1 \S+ \S+ \/g\/a\.parquet\n-rw-r--r-- .* 2 \S+ \S+ \/g\/b\.parquet\n$/, 'files are shown by path, as ls(1) shows operands');
    t.same(paths(hidden), ['/g/.hidden.parquet'], 'a literal leading dot matches hidden names');
    t.same(paths(days), ['/g/day=1/x.parquet', '/g/day=2/x.parquet', '/g/day=2/y.csv'], 'directories matched by a pattern are listed');
    t.match(dirs.stdout, /^\/g\/day=1:\n.* x\.parquet\n\n\/g\/day=2:\n.* x\.parquet\n.* y\.csv\n$/, 'several directories under headings');
    t.ok(Array.isArray(st), 'stat of a pattern is an array');
    t.same(
      st.map((x) => [x.path, x.size]),
      [
        ['/g/day=1/x.parquet', 4],
        ['/g/day=2/x.parquet', 4],
      ],
      'a pattern in a middle component',
    );
    t.same(paths(notA), ['/g/b.parquet'], '[!x]');
    t.same(paths(aToB), ['/g/a.parquet', '/g/b.parquet'], '[a-z]');
    t.equal(one.path, '/g/a.parquet', 'stat of one literal path is an object');
    t.same(paths(oneMatch), ['/g/c.csv'], 'a pattern matching one path is still an array');
    t.same(
      du.map((d) => [d.path, d.size]),
      [
        ['/g/day=1', 4],
        ['/g/day=2', 5],
      ],
    );
    t.equal(cat.stdout, 'one\ntwo\n', 'cat of a pattern concatenates the matches in order');
  });

  await t.test('globs: no match, escaped literals, several operands', async (t) => {
    const noMatch = [
      ['ls', '/g/*.json'],
      ['stat', '/g/*.json'],
      ['rm', '/g/*.json'],
      ['du', '/nope/*'],
      ['cat', '/g/day=*/z'],
      // As with failglob, a pattern without matches stops the whole command before it does anything.
      ['rm', '/g/c.csv', '/g/*.json'],
    ];
    const [failed, lit, unescaped, missingLiteral, both] = await Promise.all([
      Promise.all(noMatch.map((args) => fs(t, args, 1))),
      json<{ path: string; name: string; size: number }>(t, ['stat', '/g/a\\*b']),
      json<{ path: string }[]>(t, ['ls', '/g/a*b']),
      fs(t, ['stat', '/g/x\\*'], 1),
      json<{ path: string }[]>(t, ['stat', '/g/c.csv', '/g/day=2/*.csv']),
    ]);
    noMatch.forEach((args, i) => {
      t.equal(failed[i]!.stderr, `strata: ${args[args.length - 1]}: no match\n`, `${args.join(' ')}: "no match", like a shell with failglob`);
      t.equal(failed[i]!.stdout, '');
    });
    t.ok(await fsp.stat(u('g/c.csv')), 'nothing removed when one pattern has no match');
    t.match(lit, { path: '/g/a*b', name: 'a*b', size: 4 }, 'an escaped * names the file a*b, and one literal path gives an object');
    t.same(
      unescaped.map((e) => e.path),
      ['/g/a*b'],
      'unescaped, a*b is a pattern (matching only that name here)',
    );
    t.equal(missingLiteral.stderr, 'strata: /g/x*: no such file or directory\n', 'an escaped literal is looked up, not matched');
    t.same(
      both.map((x) => x.path),
      ['/g/c.csv', '/g/day=2/y.csv'],
      'literal paths and patterns mix',
    );
  });

  await t.test('globs: rm, pin, persist and load take patterns', async (t) => {
    await fsp.mkdir(m('tmp'));
    for (const n of ['x1', 'x2', 'xa', 'y1']) await fsp.writeFile(m(`tmp/${n}`), n);
    await fsp.mkdir(m('tmp/xdir'));
    const rm = await json<{ ok: boolean; paths: string[] }>(t, ['rm', '/tmp/x?']);
    t.same(rm, { ok: true, paths: ['/tmp/x1', '/tmp/x2', '/tmp/xa'] }, 'rm --json lists what it removed');
    t.same(await ufsNames('tmp'), ['xdir', 'y1'], 'only the matches are gone from the under-store');
    const dir = await fs(t, ['rm', '/tmp/x*'], 1);
    t.equal(dir.stderr, 'strata: /tmp/xdir: is a directory (use -r)\n', 'a matched directory needs -r');
    await fs(t, ['rm', '-r', '/tmp/x*']);
    t.same(await ufsNames('tmp'), ['y1']);

    const pins = await json<{ path: string; pinned: boolean }[]>(t, ['pin', '/g/*.parquet']);
    t.match(pins, [
      { path: '/g/a.parquet', pinned: true },
      { path: '/g/b.parquet', pinned: true },
    ]);
    t.equal((await json<{ pinned: boolean }>(t, ['stat', '/g/b.parquet'])).pinned, true);
    await json(t, ['unpin', '/g/*.parquet']);
    t.equal((await json<{ pinned: boolean }>(t, ['stat', '/g/b.parquet'])).pinned, false);

    t.same(await json(t, ['persist', '/g/day=*/x.parquet']), [
      { path: '/g/day=1/x.parquet', persisted: true },
      { path: '/g/day=2/x.parquet', persisted: true },
    ]);
    t.same(await json(t, ['persist', '/g/c.csv']), { path: '/g/c.csv', persisted: true }, 'persist of one literal path is an object');
    const load = await json<{ files: number; totalFiles: number; failedBlocks: number }>(t, ['load', '/g/day=*/*']);
    t.match(load, { files: 3, totalFiles: 3, failedBlocks: 0 });
    const free = await json<{ path: string; files: number }[]>(t, ['free', '/g/day=*', '-r']);
    t.match(free, [{ path: '/g/day=1' }, { path: '/g/day=2' }]);
  });

  await t.test('--json of the commands that change things', async (t) => {
    t.same(await json(t, ['mkdir', '-p', '/j/a/b', '/j/c']), { ok: true, paths: ['/j/a/b', '/j/c'] });
    t.same(await json(t, ['mv', '/j/c', '/j/a']), { ok: true, from: '/j/c', to: '/j/a/c' }, 'mv into a directory says where it went');
    t.same(await json(t, ['sync', '/j']), { ok: true, paths: ['/j'] });
    t.same(await json(t, ['rm', '-r', '/j/a']), { ok: true, paths: ['/j/a'] });
    const store = path.join(c.root, 'other-store');
    await fsp.mkdir(store);
    const mounted = await json<{ path: string; uri: string }>(t, ['mount', '/j/other', `file://${store}`]);
    t.match(mounted, { path: '/j/other', uri: `file://${store}` });
    const table = await json<{ path: string }[]>(t, ['mount']);
    t.ok(table.some((x) => x.path === '/j/other'), 'the mount table is an array');
    t.same(await json(t, ['unmount', '/j/other']), { ok: true, path: '/j/other' });
    t.match(await json(t, ['report']), [{ id: Number, state: 'live' }]);
    t.match(await json(t, ['du', '/g']), { path: '/g', size: Number, cachedBytes: Number, files: 8 }, 'du of one path is an object');
    t.match(await json(t, ['setTtl', '/g/c.csv', '1h']), { path: '/g/c.csv', ttl: { action: 'free', expiresAtMs: Number } });
    t.same(await json(t, ['unsetTtl', '/g/c.csv']), { path: '/g/c.csv', ttl: null });
    // Text mode of these stays quiet, as the Unix tools are.
    t.equal((await fs(t, ['mkdir', '/j/quiet'])).stdout, '');
    t.equal((await fs(t, ['rm', '-r', '/j'])).stdout, '');
  });

  await t.test('errors: one line `strata: <path>: <cause>`, exit 1 or 2', async (t) => {
    const cases: [string[], number, string][] = [
      [['ls', '/nope'], 1, 'strata: /nope: no such file or directory\n'],
      [['stat', '--json', '/nope'], 1, 'strata: /nope: no such file or directory\n'],
      [['rm', '/g'], 1, 'strata: /g: is a directory (use -r)\n'],
      [['mkdir', '/g'], 1, 'strata: /g: file exists\n'],
      [['mkdir', '/nope/x'], 1, 'strata: /nope/x: no such parent directory (use -p)\n'],
      [['mkdir', '/'], 1, 'strata: /: file exists\n'],
      [['mkdir', '-p', '/g/a.parquet'], 1, 'strata: /g/a.parquet: file exists\n'],
      [['cat', '/g'], 1, 'strata: /g: is a directory\n'],
      [['mv', '/nope', '/g'], 1, 'strata: /nope: no such file or directory\n'],
      [['unmount', '/g'], 1, 'strata: /g: nothing is mounted there\n'],
      [['load', '/g'], 1, 'strata: /g: is a directory (use -r)\n'],
      [['cp', 'strata:/nope', l('x')], 1, 'strata: strata:/nope: no such file or directory\n'],
      [['cp', l('nope'), 'strata:/x'], 1, `strata: ${l('nope')}: no such file or directory\n`],
      [['cp', 'strata:/g', l('g')], 1, 'strata: strata:/g: is a directory (use -r)\n'],
      [['rm', '-r', '/'], 1, 'strata: /: refusing to remove the root (remove what is below it instead)\n'],
      [['ls', 'relative/path'], 2, 'strata: relative/path: not an absolute Strata path (start it with /)\n'],
      [['ls', 'data/*.csv'], 2, 'strata: data/*.csv: not an absolute Strata path (start it with /)\n'],
      [['ls', '/a/../b'], 2, "strata: /a/../b: '..' is not allowed as a file name\n"],
      [['setTtl', '/g', '99999999d'], 2, "strata: bad duration '99999999d': at most 36500d (100 years)\n"],
      [['setTtl', '/g', 'soon'], 2, "strata: bad duration 'soon': use a number of milliseconds or a number with s, m, h or d (30s, 10m, 2h, 1d)\n"],
      [['cp', l('a'), l('b')], 2, 'strata: one side of cp must be a Strata path (strata:/path)\n'],
      [['cp', '-r', 'strata:/g', 'strata:/g/sub'], 2, 'strata: cannot copy a directory, strata:/g, into itself, strata:/g/sub\n'],
      [['cp', '-r', 'strata:/g', 'strata:/g'], 2, 'strata: cannot copy a directory, strata:/g, into itself, strata:/g/g\n'],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(['fs', ...args, '--master', c.masterUrl])));
    cases.forEach(([args, code, stderr], i) => {
      const r = results[i]!;
      t.equal(r.code, code, `${args.join(' ')}: exit ${code}`);
      t.equal(r.stderr, stderr, `${args.join(' ')}: names the path and the cause`);
      t.equal(errLines(r).length, 1);
      t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
    });
    await fs(t, ['ls', '/g/sub'], 1); // the refused copies made nothing
    await fs(t, ['ls', '/g/g'], 1);
  });

  await t.test('cp -r: progress lines on a stderr that is not a terminal, a summary, --json', async (t) => {
    // 30 files of 128 KiB and one empty file in 3 directories: 3.75 MiB.
    for (let i = 0; i < 30; i++) {
      const dir = l(`tree/d${i % 3}`);
      await fsp.mkdir(dir, { recursive: true });
      await fsp.writeFile(path.join(dir, `f${i}`), randomBytes(128 * 1024));
    }
    await fsp.writeFile(l('tree/empty'), '');
    const up = await fs(t, ['cp', '-r', l('tree'), 'strata:/tree']);
    const lines = errLines(up);
    t.ok(lines.length >= 2, 'several progress lines', { stderr: up.stderr });
    for (const line of lines) t.match(line, /^cp: \d+(\.\d)?% \d+(\.\d)? (B|KiB|MiB) of 3\.8 MiB, \d+\/31 files, (-|\d+(\.\d)? (B|KiB|MiB|GiB)\/s)$/, 'files and bytes done/total and throughput');
    t.match(lines[lines.length - 1], /^cp: 100% 3\.8 MiB of 3\.8 MiB, 31\/31 files, /, 'the last line is the final state');
    t.match(up.stdout, /^copied 31 files and 4 directories, 3\.8 MiB \(3932160 bytes\) in \d+\.\d s, \d+(\.\d)? \S+\/s\n$/, 'a summary line');
    t.ok((await fsp.readFile(u('tree/d2/f29'))).equals(await fsp.readFile(l('tree/d2/f29'))), 'the bytes arrived');

    const down = await fs(t, ['cp', '-r', '--json', 'strata:/tree', l('back')]);
    t.match(JSON.parse(down.stdout), { files: 31, directories: 4, bytes: 3932160, ms: Number, bytesPerSecond: Number }, 'the --json summary');
    t.match(down.stderr, /^cp: 100% 3\.8 MiB of 3\.8 MiB, 31\/31 files, /m, 'progress on stderr with --json too');
    t.ok((await fsp.readFile(l('back/d0/f0'))).equals(await fsp.readFile(l('tree/d0/f0'))));

    const quiet = await fs(t, ['cp', '-r', '--no-progress', 'strata:/tree', 'strata:/tree2']);
    t.equal(quiet.stderr, '', '--no-progress');
    const single = await fs(t, ['cp', l('tree/d0/f0'), 'strata:/single']);
    t.equal(single.stderr + single.stdout, '', 'a one-file copy stays quiet');
  });
});

t.test('persist -r writes every file below a directory that its under-store lacks (MUST_CACHE)', async (t) => {
  const c = await startLocal(t, { args: ['--write-type', 'MUST_CACHE'] });
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);
  const fs = (args: string[]) => runCli(['fs', ...args, '--master', c.masterUrl]);
  const files: Record<string, Buffer> = {};
  await fsp.mkdir(m('run/a/b'), { recursive: true });
  await fsp.mkdir(m('run/empty-dir'));
  for (const [name, size] of [['top.bin', 300_000], ['a/one', 5], ['a/b/two', 70_000], ['a/b/zero', 0]] as const) {
    files[name] = randomBytes(size);
    await fsp.writeFile(m(`run/${name}`), files[name]!);
  }
  await fsp.symlink('top.bin', m('run/link'));
  t.notOk(existsSync(u('run/top.bin')), 'MUST_CACHE: not in the under-store after close');

  const plain = await fs(['persist', '/run']);
  t.equal(plain.code, 1);
  t.equal(plain.stderr, 'strata: /run: is a directory (use -r)\n', 'a directory needs -r');

  const r = await fs(['persist', '-r', '/run', '--json', '--parallel', '2']);
  t.equal(r.code, 0, 'persist -r exits 0', { stderr: r.stderr });
  t.match(JSON.parse(r.stdout), { files: 4, totalFiles: 4, alreadyPersisted: 0, bytes: 370_005, failedFiles: 0, failed: [] }, 'every file, the symlink not followed');
  for (const [name, bytes] of Object.entries(files)) t.ok(readFileSync(u(`run/${name}`)).equals(bytes), `${name}: its bytes are in the under-store`);
  t.equal((await fs(['stat', '/run/a/b/two', '--json'])).stdout.includes('"persisted":true'), true, 'and the master says so');

  await fsp.writeFile(m('run/a/late'), 'late');
  const again = await fs(['persist', '-r', '/run/a', '/run/top.bin', '--no-progress']);
  t.equal(again.code, 0);
  t.equal(again.stdout, 'persisted 1 of 1 file, 4 B (4 bytes); 4 already in the under-store\n', 'only what is new; a file operand counts too');
  t.equal(again.stderr, '', '--no-progress');
  t.equal(readFileSync(u('run/a/late'), 'utf8'), 'late');
  const overlapping = await fs(['persist', '-r', '/run', '/run/a', '--json']);
  t.match(JSON.parse(overlapping.stdout), { files: 0, totalFiles: 5, alreadyPersisted: 5, bytes: 0 }, 'operands that overlap count each file once');
  const bad = await fs(['persist', '-r', '/run', '--parallel', '0']);
  t.equal(bad.code, 2, 'a bad --parallel is a usage error');

  // Named operands that have no bytes are refused, not passed over as if done; inside a tree they are skipped.
  execFileSync('mkfifo', [m('run/pipe')]);
  for (const [args, what] of [[['persist', '-r', '/run/pipe'], 'is a named pipe (fifo)'], [['persist', '/run/pipe'], 'is a named pipe (fifo)'], [['load', '/run/pipe'], 'is a named pipe (fifo)']] as const) {
    const r = await fs([...args]);
    t.equal(r.code, 1, `${args.join(' ')} fails`);
    t.equal(r.stderr, `strata: ${args[args.length - 1]}: ${what}, not a file or directory\n`, 'saying why');
  }
  t.match(JSON.parse((await fs(['persist', '-r', '/run', '--json'])).stdout), { files: 0, totalFiles: 5, failedFiles: 0 }, 'a fifo in the tree is skipped');

  // A file the store refuses (a directory holds its name there): reported, the others still stored, exit 1.
  await fsp.mkdir(m('run/f'));
  await fsp.writeFile(m('run/f/blocked'), 'blocked');
  await fsp.writeFile(m('run/f/fine'), 'fine');
  mkdirSync(u('run/f/blocked'), { recursive: true });
  const partial = await fs(['persist', '-r', '/run/f', '--json']);
  t.equal(partial.code, 1, 'persist -r with a failed file exits 1');
  t.match(JSON.parse(partial.stdout), { files: 1, totalFiles: 2, failedFiles: 1, failed: [{ path: '/run/f/blocked' }] }, 'the failure is in the summary');
  t.match(partial.stderr, /strata: \/run\/f\/blocked: /, 'and on stderr');
  t.equal(readFileSync(u('run/f/fine'), 'utf8'), 'fine', 'the other file is stored');
});
