/**
 * The mount used the way data tools use it, each result checked against the same
 * tool run on local disk: DuckDB writes and queries a 1M-row Parquet file; pandas
 * reads a CSV and writes a group-by; find, du and ls -lR over a tree copied with
 * cp -a; tar and rsync round trips; git (init, commit, clone, status, fsck); python3
 * with os, shutil and mmap; a SQLite database (rollback journal and WAL) written,
 * closed, reopened and checked.
 */

import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { REPO, startLocal, tempRoot } from '../helpers/cluster';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Single-quotes a string for bash. */
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs a bash script (pipefail) in its own process group, so a hung pipeline on the
 * mount is killed whole at the deadline instead of outliving the test.
 */
function bash(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn('bash', ['-o', 'pipefail', '-c', script], { cwd: opts.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${opts.timeoutMs ?? 30_000} ms]`;
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, opts.timeoutMs ?? 30_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a script that must succeed; the assertion shows its output when it did not. */
async function bashOk(t: Test, script: string, opts: { cwd?: string; timeoutMs?: number; label?: string } = {}): Promise<string> {
  const r = await bash(script, opts);
  const label = opts.label ?? (script.length > 120 ? `${script.slice(0, 117)}...` : script);
  t.equal(r.code, 0, `\`${label}\` exits 0`, { stderr: r.stderr.slice(-2000), stdout: r.stdout.slice(-2000) });
  return r.stdout;
}

/** The interpreter that can import pandas (Debian's python3-pandas lives under /usr/bin/python3), if any. */
function pythonWithPandas(): string | undefined {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import pandas'], { stdio: 'ignore', timeout: 30_000 }).status === 0) return py;
  }
  return undefined;
}

/** A tree with what trips file systems up: nesting, empty files and dirs, a symlink, spaces, modes, many small files. */
async function makeTree(dir: string): Promise<void> {
  const f = (p: string) => path.join(dir, p);
  await fsp.mkdir(f('a/b/c'), { recursive: true });
  await fsp.mkdir(f('empty dir'));
  await fsp.mkdir(f('private'), { mode: 0o750 });
  await fsp.mkdir(f('small'));
  await fsp.writeFile(f('a/b/c/deep.txt'), 'deep down\n');
  await fsp.writeFile(f('a/b/empty'), '');
  await fsp.writeFile(f('a/top.txt'), 'x'.repeat(4096));
  await fsp.writeFile(f('my file with spaces.txt'), 'spaces in the name\n');
  await fsp.writeFile(f('exec.sh'), '#!/bin/sh\necho hi\n');
  await fsp.writeFile(f('private/secret'), randomBytes(4095));
  await fsp.writeFile(f('random.bin'), randomBytes(3 * 1024 * 1024 + 17));
  for (let i = 0; i < 120; i++) await fsp.writeFile(f(`small/f${String(i).padStart(3, '0')}`), randomBytes((i * 97) % 5000));
  await fsp.symlink('a/b/c/deep.txt', f('link'));
  await fsp.chmod(f('exec.sh'), 0o755);
  await fsp.chmod(f('private/secret'), 0o600);
  await fsp.chmod(f('private'), 0o750);
  await fsp.chmod(f('empty dir'), 0o700);
  // Times in the past, so a tool that drops them shows up in rsync's quick check.
  const past = new Date('2021-03-04T05:06:07.123Z');
  for (const p of ['a/b/c/deep.txt', 'a/b/empty', 'random.bin', 'exec.sh']) await fsp.utimes(f(p), past, past);
}

/** `ls -lRn` without times, inode numbers, `total` lines, or directory sizes and link counts (which differ per file system). */
function lsShape(out: string): string[] {
  return out.split('\n').flatMap((line) => {
    if (line === '' || line.startsWith('total ')) return [];
    const m = /^(\S+) +(\d+) +(\d+) +(\d+) +(\d+) +T (.*)$/.exec(line);
    if (!m) return [line]; // a "./dir:" header
    const [, mode, nlink, uid, gid, size, name] = m;
    return [mode!.startsWith('d') ? `${mode} ${uid} ${gid} ${name}` : `${mode} ${nlink} ${uid} ${gid} ${size} ${name}`];
  });
}

t.test('data tools on the mount agree with local disk', async (t) => {
  const c = await startLocal(t);
  const local = tempRoot('strata-real-clients-local-');
  t.teardown(() => fsp.rm(local, { recursive: true, force: true }));
  const m = (p: string) => path.join(c.mnt, p);
  const l = (p: string) => path.join(local, p);

  await t.test('DuckDB: a 1M-row Parquet file written and queried on the mount equals the same on local disk', async (t) => {
    await fsp.mkdir(m('data'));
    await fsp.mkdir(l('data'));
    const inst = await DuckDBInstance.create(':memory:');
    const conn = await inst.connect();
    t.teardown(() => {
      conn.closeSync();
      inst.closeSync();
    });
    // One random table, written to both places, so both files hold the same rows.
    await conn.run('CREATE TABLE t AS SELECT i, i % 97 AS k, random() AS v FROM range(1000000) t(i)');
    for (const dir of [m('data'), l('data')]) await conn.run(`COPY t TO '${path.join(dir, 't.parquet')}' (FORMAT parquet)`);

    // Sums of doubles depend on the order of addition across threads; decimals add exactly.
    const queries = (src: string) => [
      `SELECT count(*), sum(i), sum(k), sum(v::DECIMAL(18,15)), min(v), max(v), bit_xor(hash(i, k, v)) FROM ${src}`,
      `SELECT k, count(*), sum(i), sum(v::DECIMAL(18,15)) FROM ${src} GROUP BY k ORDER BY k`,
      `SELECT i, k, v FROM ${src} WHERE i IN (0, 1, 499999, 765432, 999999) ORDER BY i`,
    ];
    const ask = async (c2: typeof conn, src: string) => {
      const out = [];
      for (const sql of queries(src)) out.push((await c2.runAndReadAll(sql)).getRowsJson());
      return out;
    };
    const truth = await ask(conn, 't');
    const onLocal = await ask(conn, `read_parquet('${l('data/t.parquet')}')`);
    const onMount = await ask(conn, `read_parquet('${m('data/t.parquet')}')`);
    t.same(truth[0]![0]!.slice(0, 3), ['1000000', '499999500000', truthSumK()], 'the table is what was asked for');
    t.same(onLocal, truth, 'the local Parquet file reads back as the table');
    t.same(onMount, onLocal, 'count, sums, group by k and point lookups on the mount equal local disk');
    t.equal(onMount[1]!.length, 97, '97 groups');

    const [ms, ls] = await Promise.all([fsp.stat(m('data/t.parquet')), fsp.stat(l('data/t.parquet'))]);
    t.ok(ms.size > 1_000_000, `the Parquet file has its bytes (${ms.size})`);
    t.equal(ms.size, ls.size, 'same size as the local file');

    // A new instance opens the closed file from scratch: nothing comes from the writer's caches.
    const fresh = await DuckDBInstance.create(':memory:');
    const fc = await fresh.connect();
    try {
      t.same(await ask(fc, `'${m('data/t.parquet')}'`), onLocal, 'a fresh DuckDB instance reads the same results from the mount');
    } finally {
      fc.closeSync();
      fresh.closeSync();
    }
  });

  const py = pythonWithPandas();
  await t.test('pandas reads a CSV from the mount and writes a group-by into it', { skip: py ? false : 'no python3 with pandas (apt-get install python3-pandas)' }, async (t) => {
    const regions = ['north', 'south', 'east', 'west', 'Zürich', 'São Paulo', 'x y z'];
    const rows: string[] = ['id,region,qty,cents'];
    const want = new Map<string, { n: number; qty: number; cents: number; maxQty: number }>();
    for (let i = 0; i < 50_000; i++) {
      const region = regions[(i * 7 + (i >> 5)) % regions.length]!;
      const qty = (i * 31) % 17;
      const cents = (i * 7919) % 100_003;
      rows.push(`${i},${region},${qty},${cents}`);
      const w = want.get(region) ?? { n: 0, qty: 0, cents: 0, maxQty: 0 };
      w.n++;
      w.qty += qty;
      w.cents += cents;
      w.maxQty = Math.max(w.maxQty, qty);
      want.set(region, w);
    }
    const csv = rows.join('\n') + '\n';
    await fsp.mkdir(m('py'));
    await fsp.mkdir(l('py'));
    await fsp.writeFile(m('py/sales.csv'), csv);
    await fsp.writeFile(l('py/sales.csv'), csv);
    const script = l('groupby.py');
    await fsp.writeFile(
      script,
      [
        'import sys',
        'import pandas as pd',
        "df = pd.read_csv(sys.argv[1], encoding='utf-8')",
        "out = df.groupby('region', sort=True).agg(n=('id', 'size'), qty=('qty', 'sum'), cents=('cents', 'sum'), max_qty=('qty', 'max')).reset_index()",
        "out.to_csv(sys.argv[2], index=False, encoding='utf-8')",
        '',
      ].join('\n'),
    );
    for (const dir of [m('py'), l('py')]) await bashOk(t, `${q(py!)} ${q(script)} ${q(path.join(dir, 'sales.csv'))} ${q(path.join(dir, 'by-region.csv'))}`, { timeoutMs: 60_000 });

    const got = await fsp.readFile(m('py/by-region.csv'), 'utf8');
    const expected = ['region,n,qty,cents,max_qty', ...[...want.keys()].sort().map((r) => { const w = want.get(r)!; return `${r},${w.n},${w.qty},${w.cents},${w.maxQty}`; })].join('\n') + '\n';
    t.equal(got, expected, 'the group-by written into the mount has the expected rows');
    t.equal(got, await fsp.readFile(l('py/by-region.csv'), 'utf8'), 'and equals the same run on local disk');
    t.equal(await fsp.readFile(path.join(c.ufsDir, 'py/by-region.csv'), 'utf8'), expected, 'the under-store has the result after close');
  });

  // One tree on local disk serves the listing, tar and rsync checks.
  const src = l('tree');
  await makeTree(src);

  await t.test('find, du and ls -lR agree between a tree copied with cp -a and the original', async (t) => {
    await bashOk(t, `cp -a ${q(src)} ${q(m('tree'))}`);
    const both = async (script: string) => {
      const [a, b] = [await bashOk(t, script, { cwd: src }), await bashOk(t, script, { cwd: m('tree') })];
      return [a, b] as const;
    };
    const sorted = (s: string) => s.split('\n').filter(Boolean).sort();

    const [findL, findM] = await both('find .');
    t.same(sorted(findM), sorted(findL), 'find lists the same names');
    t.ok(sorted(findL).includes('./my file with spaces.txt') && sorted(findL).includes('./empty dir'), 'the tree has what it should');
    // Reproduced a bug: cp -a sets modes through a POSIX ACL xattr, which the mount stored
    // without changing the mode, so every copy came out 0600/0700 with a '+' in ls -l.
    const [nonDirL, nonDirM] = await both(`find . ! -type d -printf '%y %m %U %G %s %p -> %l\\n'`);
    t.same(sorted(nonDirM), sorted(nonDirL), 'types, modes, owners, sizes and symlink targets of files and links');
    const [dirL, dirM] = await both(`find . -type d -printf '%m %U %G %p\\n'`);
    t.same(sorted(dirM), sorted(dirL), 'modes and owners of directories');
    const [emptyL, emptyM] = await both('find . -empty');
    t.same(sorted(emptyM), sorted(emptyL), 'find -empty finds the empty file and the empty directory');
    const [bigL, bigM] = await both('find . -type f -size +1M');
    t.same(sorted(bigM), ['./random.bin'], 'find -size +1M');
    t.same(sorted(bigM), sorted(bigL));
    const [nameL, nameM] = await both(`find . -name '*spaces*' -type f -exec cat {} +`);
    t.equal(nameM, nameL, 'find -exec cat on the file with spaces');

    // Apparent sizes: directories' own sizes are file-system specific, so compare what is not a directory.
    const [duFilesL, duFilesM] = await both(`find . ! -type d -print0 | du -ab --apparent-size --files0-from=- | sort -k2`);
    t.same(duFilesM, duFilesL, 'du --apparent-size per file and link');
    const [duhL, duhM] = await both(`find . ! -type d -print0 | du -ch --apparent-size --files0-from=- | tail -1`);
    t.equal(duhM, duhL, `du -ch --apparent-size total (${duhL.trim()})`);
    const dirBytes = async (cwd: string) => sorted(await bashOk(t, `find . -type d -printf '%s\\n'`, { cwd })).reduce((s, x) => s + Number(x), 0);
    const apparent = async (cwd: string) => Number((await bashOk(t, 'du -sb --apparent-size .', { cwd })).split('\t')[0]) - (await dirBytes(cwd));
    t.equal(await apparent(m('tree')), await apparent(src), 'du -sb --apparent-size less directory sizes');
    t.match(await bashOk(t, 'du -sh --apparent-size .', { cwd: m('tree') }), /^[\d.]+M\t\.\n$/, 'du -sh --apparent-size on the mount');
    // Block usage: allocation differs per file system, but a file's blocks cover its bytes.
    const duS = Number((await bashOk(t, 'du -sk .', { cwd: m('tree') })).split('\t')[0]);
    t.ok(duS > 0, `du -s on the mount counts blocks (${duS} KiB)`);
    const duBig = Number((await bashOk(t, 'du -k random.bin', { cwd: m('tree') })).split('\t')[0]);
    t.ok(duBig >= Math.ceil((3 * 1024 * 1024 + 17) / 1024), `the blocks of random.bin cover its bytes (${duBig} KiB)`);

    const [lsL, lsM] = await both('ls -lRn --time-style=+T .');
    t.same(lsShape(lsM), lsShape(lsL), 'ls -lRn: names, modes, link counts, owners, sizes');
    t.ok(lsShape(lsL).some((x) => x.endsWith('link -> a/b/c/deep.txt')), 'ls shows the symlink');
  });

  await t.test('tar into the mount and back out, diff -r equal', async (t) => {
    await fsp.mkdir(m('x'));
    await bashOk(t, `tar -C ${q(src)} -cf - . | tar -C ${q(m('x'))} -xf -`);
    t.equal(await bashOk(t, `diff -r --no-dereference ${q(src)} ${q(m('x'))}`), '', 'diff -r: the tree extracted into the mount equals the source');
    const shape = `find . -printf '%y %m %p -> %l\\n' | sort`;
    t.equal(await bashOk(t, shape, { cwd: m('x') }), await bashOk(t, shape, { cwd: src }), 'tar kept types, modes and symlinks');
    const back = l('back');
    await fsp.mkdir(back);
    await bashOk(t, `tar -C ${q(m('x'))} -cf - . | tar -C ${q(back)} -xf -`);
    t.equal(await bashOk(t, `diff -r --no-dereference ${q(src)} ${q(back)}`), '', 'diff -r: tarred back out of the mount equals the source');
    const times = `find . ! -type l -printf '%TY-%Tm-%Td %TH:%TM:%.2TS %p\\n' | sort -k3`;
    t.equal(await bashOk(t, times, { cwd: back }), await bashOk(t, times, { cwd: src }), 'modification times survived both trips (to the second)');
  });

  await t.test('rsync -a to the mount leaves nothing to transfer, also after changes', { skip: spawnSync('rsync', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'rsync is not installed (apt-get install rsync)' }, async (t) => {
    const dst = m('r') + '/';
    const sync = (flags: string) => bashOk(t, `rsync ${flags} ${q(src + '/')} ${q(dst)}`, { timeoutMs: 60_000 });
    await sync('-a');
    t.equal(await sync('-a --checksum --dry-run --itemize-changes'), '', 'rsync --checksum finds nothing left to transfer');
    t.equal(await sync('-a --dry-run --itemize-changes'), '', 'rsync quick check (size and mtime) finds nothing either');
    t.equal(await bashOk(t, `diff -r --no-dereference ${q(src)} ${q(dst)}`), '', 'diff -r after the first run');

    // Change the source so rsync must send deltas against the copy on the mount.
    const big = await fsp.readFile(path.join(src, 'random.bin'));
    randomBytes(1000).copy(big, 1024 * 1024);
    await fsp.writeFile(path.join(src, 'random.bin'), big);
    await fsp.appendFile(path.join(src, 'a/top.txt'), 'more');
    await fsp.writeFile(path.join(src, 'a/new file'), 'new');
    await fsp.rm(path.join(src, 'small/f007'));
    const pending = await sync('-a --delete --checksum --dry-run --itemize-changes');
    t.same(pending.split('\n').filter(Boolean).map((x) => x.replace(/^(\*deleting|\S+) +/, '')).sort(), ['a/', 'a/new file', 'a/top.txt', 'random.bin', 'small/', 'small/f007'], 'the dry run sees exactly what changed');
    await sync('-a --delete');
    t.equal(await sync('-a --delete --checksum --dry-run --itemize-changes'), '', 'nothing left to transfer after the second run');
    t.equal(await bashOk(t, `diff -r --no-dereference ${q(src)} ${q(dst)}`), '', 'diff -r after the delta transfer');
  });

  await t.test('git: init, commit, clone into the mount, commit there, status and fsck clean', { skip: spawnSync('git', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'git is not installed' }, async (t) => {
    const env = `export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com GIT_CONFIG_NOSYSTEM=1 HOME=${q(local)}`;
    // The same history on local disk and on the mount; tree ids depend only on contents, modes and names.
    const work = (root: string) =>
      bashOk(
        t,
        `${env}; set -e; cd ${q(root)}; git init -q -b main origin; cd origin; cp -a ${q(src)}/. .; git add -A; git commit -qm first;
         cd ..; git clone -q origin clone; cd clone; echo change >> a/top.txt; git mv exec.sh run.sh; rm -r small; git add -A; git commit -qm second;
         git status --porcelain; git fsck --strict --no-progress 2>&1; git rev-parse 'HEAD^{tree}' 'HEAD~1^{tree}'; git log --format=%s | tr '\n' ' '`,
        { timeoutMs: 120_000, label: `git in ${root}` },
      );
    await fsp.mkdir(m('git'));
    await fsp.mkdir(l('git'));
    const onLocal = await work(l('git'));
    const onMount = await work(m('git'));
    t.equal(onMount, onLocal, 'status, fsck, tree ids and log on the mount equal local disk');
    t.match(onMount, /second first/, 'both commits are in the clone');
    const st = await bashOk(t, `${env}; cd ${q(m('git/clone'))} && echo x >> a/top.txt && git status --porcelain`);
    t.equal(st.trim(), 'M a/top.txt', 'a change on the mount shows in git status');
  });

  await t.test('python3: os, shutil and mmap (read and shared write) agree with local disk', { skip: spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'no python3' }, async (t) => {
    const script = `
import hashlib, json, mmap, os, shutil, sys
root = sys.argv[1]
h = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
out = {}
p = os.path.join(root, 'data.bin')
fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o640)
os.write(fd, bytes(range(256)) * 4096 * 3)
os.pwrite(fd, b'middle', 500000)
os.fsync(fd)
os.close(fd)
out['stat'] = [os.stat(p).st_size, oct(os.stat(p).st_mode & 0o777)]
with open(p, 'r+b') as f:
    m = mmap.mmap(f.fileno(), 0)
    out['mmap_read'] = hashlib.sha256(m[:]).hexdigest()
    m[4096:4101] = b'HELLO'
    m[-5:] = b'TAIL!'
    m.flush()
    m.close()
out['after_mmap_write'] = h(p)
with open(p, 'rb') as f:
    f.seek(4096); out['seen'] = f.read(5).decode()
shutil.copyfile(p, os.path.join(root, 'copy.bin'))
os.makedirs(os.path.join(root, 'tree/a/b'))
shutil.copy2(p, os.path.join(root, 'tree/a/b/x.bin'))
shutil.copytree(os.path.join(root, 'tree'), os.path.join(root, 'tree2'))
shutil.move(os.path.join(root, 'tree2/a'), os.path.join(root, 'moved'))
shutil.rmtree(os.path.join(root, 'tree'))
out['copies'] = [h(os.path.join(root, 'copy.bin')), h(os.path.join(root, 'moved/b/x.bin'))]
out['mtime_kept'] = os.stat(os.path.join(root, 'moved/b/x.bin')).st_mtime_ns == os.stat(p).st_mtime_ns
out['walk'] = sorted((os.path.relpath(d, root), sorted(fs)) for d, _, fs in os.walk(root))
print(json.dumps(out))
`;
    const run = (root: string) => bashOk(t, `python3 -c ${q(script)} ${q(root)}`, { timeoutMs: 60_000, label: `python3 in ${root}` });
    await fsp.mkdir(m('pyos'));
    await fsp.mkdir(l('pyos'));
    const onLocal = await run(l('pyos'));
    const onMount = await run(m('pyos'));
    t.equal(onMount, onLocal, 'os, shutil and mmap results on the mount equal local disk');
    t.match(onMount, /"seen": "HELLO"/, 'a write through a shared mmap is read back');
  });

  await t.test('SQLite: 10k inserts in a transaction, reopened, integrity ok (rollback journal and WAL)', async (t) => {
    // better-sqlite3 blocks its thread on every call: run it in a child so a hang on the mount hits a deadline, not the test.
    const child = `
      const Database = require('better-sqlite3');
      const { createHash } = require('node:crypto');
      const [file, journal, phase] = process.argv.slice(1);
      const db = new Database(file);
      if (phase === 'write') {
        db.pragma('journal_mode = ' + journal);
        db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT NOT NULL, b BLOB NOT NULL); CREATE INDEX t_k ON t (k)');
        const ins = db.prepare('INSERT INTO t (id, k, s, b) VALUES (?, ?, ?, ?)');
        db.transaction(() => {
          for (let i = 1; i <= 10000; i++) ins.run(i, i % 13, 'row ' + i, Buffer.alloc(i % 10 === 0 ? 3000 : 40, i & 255));
        })();
        db.transaction(() => db.prepare('DELETE FROM t WHERE id % 100 = 0').run())();
      }
      const h = createHash('sha256');
      for (const r of db.prepare('SELECT * FROM t ORDER BY id').iterate()) h.update(JSON.stringify([r.id, r.k, r.s, r.b.toString('hex')]));
      console.log(JSON.stringify({
        journal: db.pragma('journal_mode', { simple: true }),
        integrity: db.pragma('integrity_check', { simple: true }),
        count: db.prepare('SELECT count(*) AS n FROM t').get().n,
        byK: db.prepare('SELECT k, count(*) AS n, sum(id) AS s FROM t GROUP BY k ORDER BY k').all(),
        rows: h.digest('hex'),
      }));
      db.close();
    `;
    const sqlite = async (file: string, journal: string, phase: string) => {
      const out = await bashOk(t, `${q(process.execPath)} -e ${q(child)} ${q(file)} ${journal} ${phase}`, { cwd: REPO, timeoutMs: 60_000, label: `sqlite ${journal} ${phase} ${file}` });
      return JSON.parse(out || 'null') as { journal: string; integrity: string; count: number; byK: unknown[]; rows: string } | null;
    };
    await fsp.mkdir(m('db'));
    await fsp.mkdir(l('db'));
    for (const journal of ['delete', 'wal']) {
      const onLocal = await sqlite(l(`db/${journal}.db`), journal, 'write');
      const written = await sqlite(m(`db/${journal}.db`), journal, 'write');
      t.same(written, onLocal, `${journal}: the writer's view on the mount equals local disk`);
      const reopened = await sqlite(m(`db/${journal}.db`), journal, 'read');
      t.equal(reopened?.integrity, 'ok', `${journal}: integrity_check after reopening`);
      t.equal(reopened?.journal, journal, `${journal}: journal mode kept in the file`);
      t.equal(reopened?.count, 9900, `${journal}: 10000 inserted, 100 deleted`);
      t.same(reopened, onLocal, `${journal}: rows and groups after reopening equal local disk`);
    }
    t.same((await fsp.readdir(m('db'))).sort(), ['delete.db', 'wal.db'], 'no journal or WAL files left after the last close');
  });
});

/** sum(i % 97) for i in [0, 1e6): the third column of the first query. */
function truthSumK(): string {
  let s = 0;
  for (let i = 0; i < 1_000_000; i++) s += i % 97;
  return String(s);
}
