/** The `strata fs` command definitions in process: help with examples, --json everywhere data is printed, durations. */

import t from 'tap';
import { Command } from 'commander';
import { parseDuration, registerFsCommands } from '../../src/cli/fs-commands';
import { StrataError } from '../../src/common/errors';
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { closeSync, constants as fsConstants, existsSync, openSync, promises as fsp, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, CliResult, startLocal, tempRoot } from '../helpers/cluster';

function fsCommands(): Command {
  const program = new Command('strata');
  const fsCmd = program.command('fs');
  registerFsCommands(fsCmd);
  return fsCmd;
}

/** What `--help` prints, with the text added after the generated part. */
function helpOf(c: Command): string {
  let out = '';
  c.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  c.outputHelp();
  return out;
}

t.test('every fs command shows its usage and a few examples', async (t) => {
  const fsCmd = fsCommands();
  const names = fsCmd.commands.map((c) => c.name());
  t.same([...names].sort(), ['cat', 'cp', 'du', 'free', 'load', 'ls', 'mkdir', 'mount', 'mv', 'persist', 'pin', 'report', 'rm', 'setTtl', 'stat', 'sync', 'unmount', 'unpin', 'unsetTtl'].sort());
  for (const c of fsCmd.commands) {
    const help = helpOf(c);
    t.match(help, new RegExp(`^Usage: strata fs ${c.name()} `), `${c.name()}: usage line`);
    t.match(help, new RegExp(`\\nExamples:\\n( {2}\\$ strata fs ${c.name()}\\b.*\\n)+$`), `${c.name()}: examples at the end`);
    t.ok(c.options.some((o) => o.long === '--master'), `${c.name()}: --master`);
  }
  const group = helpOf(fsCmd);
  t.match(group, /glob patterns/, 'the group help explains patterns');
  t.match(group, /Exit codes: 0 ok, 1 operation failed, 2 bad usage/);
});

t.test('--json on every command that prints data or changes something', async (t) => {
  for (const c of fsCommands().commands) {
    const has = c.options.some((o) => o.long === '--json');
    if (c.name() === 'cat') t.notOk(has, 'cat prints the bytes themselves');
    else t.ok(has, `${c.name()} --json`);
  }
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('1500'), 1500);
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('1.5h'), 5_400_000);
  t.equal(parseDuration('1d'), 86_400_000);
  for (const bad of ['', '0', '-1s', 'soon', '10x']) t.throws(() => parseDuration(bad), { code: 'CONFIG' }, `'${bad}' is bad usage`);
  t.throws(() => parseDuration('soon'), StrataError);
});

// ---- against a real cluster ------------------------------------------------------

/** Runs `strata fs ARGS… --master URL` with stdout going where `stdout` says, and the peak RSS of the process (kB, from time(1)). */
function runFs(masterUrl: string, args: string[], opts: { stdout?: 'pipe' | number; slowReader?: boolean; timeoutMs?: number } = {}): Promise<CliResult & { bytes: number; maxRssKb: number }> {
  const rssFile = path.join(os.tmpdir(), `strata-cli-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  return new Promise((resolve) => {
    const p = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, process.execPath, CLI, 'fs', ...args, '--master', masterUrl], {
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
      env: { ...process.env, STRATA_LOG_LEVEL: 'warn' },
      // Its own process group: a copy that hangs is killed with time(1), not left behind.
      detached: true,
    });
    let stdout = '';
    let bytes = 0;
    let stderr = '';
    p.stdout?.on('data', (d: Buffer) => {
      bytes += d.length;
      if (stdout.length < 4096) stdout += d.toString('latin1');
      if (opts.slowReader) {
        // A reader slower than the writer: the pipe stays full and the writer's queue holds the rest.
        p.stdout!.pause();
        setTimeout(() => p.stdout!.resume(), 5);
      }
    });
    p.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, opts.timeoutMs ?? 120_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      let maxRssKb = 0;
      try {
        maxRssKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
        rmSync(rssFile, { force: true });
      } catch {
        // time(1) did not get to write it
      }
      resolve({ code, stdout, stderr, bytes, maxRssKb });
    });
  });
}

t.test('against a cluster', async (t) => {
  const c = await startLocal(t);
  const local = tempRoot('strata-cli-fs-');
  t.teardown(() => fsp.rm(local, { recursive: true, force: true }));
  const l = (p: string) => path.join(local, p);
  const m = (p: string) => path.join(c.mnt, p);
  const u = (p: string) => path.join(c.ufsDir, p);

  await t.test('cat of many files: no listeners pile up on stdout, and each file lets go of its read-ahead (defect 1)', async (t) => {
    // 96 files of 5 MiB, more than a 4 MiB read-ahead window each, written straight into the under-store.
    await fsp.mkdir(u('many'));
    const body = randomBytes(5 * 1024 * 1024);
    for (let i = 0; i < 96; i++) await fsp.writeFile(u(`many/f${String(i).padStart(2, '0')}`), body);
    const r = await runFs(c.masterUrl, ['cat', '/many/*']);
    t.equal(r.code, 0);
    t.equal(r.bytes, 96 * body.length, 'every byte of every file');
    t.equal(r.stderr, '', 'no MaxListenersExceededWarning');
    // Before, each file's read-ahead stayed reachable from stdout's listeners: the peak grew with the number of files.
    const few = await runFs(c.masterUrl, ['cat', '/many/f0[0-3]']);
    t.equal(few.bytes, 4 * body.length);
    t.comment(`peak RSS: ${few.maxRssKb} kB for 4 files, ${r.maxRssKb} kB for 96`);
    t.ok(r.maxRssKb > 0 && r.maxRssKb - few.maxRssKb < 32 * 1024, 'the peak RSS does not grow with the number of files');
  });

  await t.test('a failure after output started keeps what was written to a pipe (defect 2)', async (t) => {
    // 1000 files, 250 KB of `stat` text: more than a pipe holds. Through a non-blocking pipe (a FIFO opened
    // O_NONBLOCK, as a shell pipeline can hand over) whose reader is slow, the rest waits in the process when /missing fails.
    await fsp.mkdir(u('wide'));
    for (let i = 0; i < 1000; i++) await fsp.writeFile(u(`wide/file-${String(i).padStart(4, '0')}`), '');
    const all = await runFs(c.masterUrl, ['stat', '/wide/*']);
    t.equal(all.code, 0);
    t.ok(all.bytes > 200_000, `${all.bytes} bytes of stat output`);
    const fifo = path.join(c.root, 'out.fifo');
    spawnSync('mkfifo', [fifo]);
    const readEnd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const writeEnd = openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
    const reader = new net.Socket({ fd: readEnd, readable: true, writable: false });
    let bytes = 0;
    reader.on('data', (d: Buffer) => {
      bytes += d.length;
      reader.pause();
      setTimeout(() => reader.resume(), 20);
    });
    const ended = new Promise((resolve) => reader.once('close', resolve));
    const r = runFs(c.masterUrl, ['stat', '/wide/*', '/missing'], { stdout: writeEnd });
    closeSync(writeEnd);
    const done = await r;
    await ended;
    t.equal(done.code, 1);
    t.equal(done.stderr, 'strata: /missing: no such file or directory\n');
    t.equal(bytes, all.bytes, 'all of the output before the failure arrived before the process exited');
  });

  await t.test('stdout that fails other than EPIPE: one line and exit 1, no stack trace (defect 3)', async (t) => {
    const full = openSync('/dev/full', 'w');
    t.teardown(() => closeSync(full));
    const r = await runFs(c.masterUrl, ['cat', '/many/f00'], { stdout: full });
    t.equal(r.code, 1);
    t.equal(r.stderr, 'strata: stdout: no space left\n');
  });

  await t.test('a trailing / names directories: patterns match only them, a literal file fails (defect 4)', async (t) => {
    await fsp.mkdir(u('slash/d1'), { recursive: true });
    await fsp.mkdir(u('slash/d2'));
    await fsp.writeFile(u('slash/f1'), 'f1');
    await fsp.writeFile(u('slash/file'), 'file');
    const rmFile = await runFs(c.masterUrl, ['rm', '/slash/file/']);
    t.equal(rmFile.code, 1);
    t.equal(rmFile.stderr, 'strata: /slash/file/: not a directory\n', 'as rm(1): not a directory');
    const rmDirs = await runFs(c.masterUrl, ['rm', '-r', '/slash/*/']);
    t.equal(rmDirs.code, 0, rmDirs.stderr);
    t.same((await fsp.readdir(u('slash'))).sort(), ['f1', 'file'], 'the directories went, the files stayed');
    const ls = await runFs(c.masterUrl, ['ls', '/slash/']);
    t.equal(ls.code, 0, 'a directory with a trailing / is fine');
    t.match(ls.stdout, /f1\n.*file\n$/);
  });

  await t.test('a destination with a trailing / must be a directory, for cp and mv', async (t) => {
    await fsp.writeFile(l('one'), 'one');
    const cpMissing = await runFs(c.masterUrl, ['cp', l('one'), 'strata:/nodir/']);
    t.equal(cpMissing.code, 1);
    t.equal(cpMissing.stderr, 'strata: strata:/nodir: no such directory\n');
    const cpFile = await runFs(c.masterUrl, ['cp', l('one'), 'strata:/slash/f1/']);
    t.equal(cpFile.stderr, 'strata: strata:/slash/f1: not a directory\n');
    const mvMissing = await runFs(c.masterUrl, ['mv', '/slash/f1', '/nodir/']);
    t.equal(mvMissing.code, 1);
    t.equal(mvMissing.stderr, 'strata: /nodir: no such directory\n');
    t.notOk(existsSync(u('nodir')), 'no file named nodir was made');
    t.equal(await fsp.readFile(u('slash/f1'), 'utf8'), 'f1', 'nothing was moved or overwritten');
    const into = await runFs(c.masterUrl, ['cp', l('one'), 'strata:/slash/']);
    t.equal(into.code, 0, into.stderr);
    t.equal(await fsp.readFile(u('slash/one'), 'utf8'), 'one', 'into an existing directory, as before');
  });

  await t.test('cp and cat of Strata symbolic links and special files (defect 5)', async (t) => {
    await fsp.mkdir(m('sl'));
    await fsp.writeFile(m('sl/a'), 'A');
    await fsp.symlink('a', m('sl/ln'));
    await fsp.symlink('nope', m('sl/dang'));
    await fsp.symlink('/etc/hostname', m('sl/abs'));
    await fsp.mkdir(m('sp'));
    t.equal(spawnSync('mkfifo', [m('sp/fifo')]).status, 0, 'a named pipe in Strata');

    const down = await runFs(c.masterUrl, ['cp', '-r', '--json', '--no-progress', 'strata:/sl', l('sl')], { timeoutMs: 30_000 });
    t.equal(down.code, 0, down.stderr);
    t.match(JSON.parse(down.stdout), { files: 1, symlinks: 3, directories: 1 });
    t.equal(await fsp.readlink(l('sl/ln')), 'a', 'links arrive as links');
    t.equal(await fsp.readlink(l('sl/dang')), 'nope');
    t.equal(await fsp.readlink(l('sl/abs')), '/etc/hostname');
    const within = await runFs(c.masterUrl, ['cp', '-r', '--no-progress', 'strata:/sl', 'strata:/sl2'], { timeoutMs: 30_000 });
    t.equal(within.code, 0, within.stderr);
    t.equal(await fsp.readlink(m('sl2/ln')), 'a', 'within Strata too');
    t.equal(await fsp.readlink(m('sl2/abs')), '/etc/hostname');
    t.equal(await fsp.readFile(m('sl2/a'), 'utf8'), 'A');
    const one = await runFs(c.masterUrl, ['cp', 'strata:/sl/ln', l('ln-copy')]);
    t.equal(one.code, 0, one.stderr);
    t.equal(await fsp.readFile(l('ln-copy'), 'utf8'), 'A', 'without -r a named link is followed, as cp(1) does');

    const cat = await runFs(c.masterUrl, ['cat', '/sl/ln']);
    t.equal(cat.code, 0, cat.stderr);
    t.equal(cat.stdout, 'A', 'cat follows a relative link');
    const abs = await runFs(c.masterUrl, ['cat', '/sl/abs']);
    t.equal(abs.code, 1);
    t.equal(abs.stderr, "strata: /sl/abs: symbolic link to '/etc/hostname', outside Strata (the host reading it through a mount resolves it)\n");
    const dang = await runFs(c.masterUrl, ['cat', '/sl/dang']);
    t.equal(dang.stderr, 'strata: /sl/dang: no such file or directory\n');

    const fifo = await runFs(c.masterUrl, ['cp', '-r', '--no-progress', 'strata:/sp', l('sp')], { timeoutMs: 30_000 });
    t.equal(fifo.code, 1);
    t.equal(fifo.stderr, 'strata: strata:/sp/fifo: is a named pipe (fifo); cp copies files, directories and symbolic links\n');
    const catFifo = await runFs(c.masterUrl, ['cat', '/sp/fifo']);
    t.equal(catFifo.code, 1);
    t.equal(catFifo.stderr, 'strata: /sp/fifo: is a named pipe (fifo), which holds no bytes to print\n');
  });

  await t.test('cp -r from local disk copies links as links and skips named pipes, never opening them (defect 6)', async (t) => {
    await fsp.mkdir(l('t/sub'), { recursive: true });
    await fsp.writeFile(l('t/f'), 'F');
    await fsp.symlink('f', l('t/lf'));
    await fsp.symlink('nope', l('t/dang'));
    await fsp.symlink('..', l('t/sub/up'));
    t.equal(spawnSync('mkfifo', [l('t/p')]).status, 0);
    const up = await runFs(c.masterUrl, ['cp', '-r', '--json', '--no-progress', l('t'), 'strata:/t'], { timeoutMs: 30_000 });
    t.equal(up.code, 0, 'the copy ends');
    t.match(JSON.parse(up.stdout || '{}'), { files: 1, symlinks: 3, skipped: 1, directories: 2 });
    t.equal(up.stderr, `strata: ${l('t/p')}: skipped: a named pipe (fifo)\n`, 'one warning for the named pipe');
    t.equal(await fsp.readlink(m('t/lf')), 'f');
    t.equal(await fsp.readlink(m('t/dang')), 'nope', 'a dangling link is a link like any other');
    t.equal(await fsp.readlink(m('t/sub/up')), '..', 'a link making a cycle is not followed');
    t.same((await fsp.readdir(m('t'))).sort(), ['dang', 'f', 'lf', 'sub']);
    const text = await runFs(c.masterUrl, ['cp', '-r', '--no-progress', l('t'), 'strata:/t2'], { timeoutMs: 30_000 });
    t.match(text.stdout, /^copied 1 file, 3 symbolic links and 2 directories, .*; skipped 1 special file\n$/);
    const fifo = await runFs(c.masterUrl, ['cp', l('t/p'), 'strata:/p'], { timeoutMs: 30_000 });
    t.equal(fifo.code, 1);
    t.equal(fifo.stderr, `strata: ${l('t/p')}: is a named pipe (fifo); cp copies files, directories and symbolic links\n`);
  });

  await t.test('a copy into its own source through the mount ends (defect 7)', async (t) => {
    for (const d of ['self', 'self2', 'self3']) {
      await fsp.mkdir(m(`${d}/a`), { recursive: true });
      await fsp.writeFile(m(`${d}/f`), 'F');
      await fsp.writeFile(m(`${d}/a/x`), 'X');
    }
    const into = await runFs(c.masterUrl, ['cp', '-r', '--json', '--no-progress', 'strata:/self', m('self/sub')], { timeoutMs: 30_000 });
    t.equal(into.code, 0, into.stderr);
    t.match(JSON.parse(into.stdout || '{}'), { files: 2, directories: 2 });
    t.same((await fsp.readdir(u('self/sub'))).sort(), ['a', 'f'], 'the copy holds the source as it was, not itself');
    const deeper = await runFs(c.masterUrl, ['cp', '-r', '--json', '--no-progress', 'strata:/self2', m('self2/a/sub')], { timeoutMs: 30_000 });
    t.equal(deeper.code, 0, deeper.stderr);
    t.match(JSON.parse(deeper.stdout || '{}'), { files: 2, directories: 2 });
    t.same((await fsp.readdir(u('self2/a/sub/a'))).sort(), ['x'], 'the directory the copy made is not copied into itself');
    const back = await runFs(c.masterUrl, ['cp', '-r', '--json', '--no-progress', m('self3'), 'strata:/self3/a/sub'], { timeoutMs: 30_000 });
    t.equal(back.code, 0, back.stderr);
    t.match(JSON.parse(back.stdout || '{}'), { files: 2, directories: 2 });
    t.same((await fsp.readdir(u('self3/a/sub/a'))).sort(), ['x'], 'the same from the mount into Strata');
  });
});
