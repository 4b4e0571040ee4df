/** `strata master` started on its own, as the README's multi-host set-up does, with its defaults. */

import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CLI, runCli, tempRoot } from '../helpers/cluster';
import { waitExit } from '../helpers/multi-cluster';

t.test('the default under-store directory is created: the first mkdir works', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const home = path.join(root, 'home');
  const p = spawn(process.execPath, [CLI, 'master', '--home', home, '--port', '0', '--auth', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn' } });
  t.teardown(async () => {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await waitExit(p, 10_000).catch(() => p.kill('SIGKILL'));
    }
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`master did not start: ${out}`)), 30_000);
    p.stdout.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    p.on('exit', (code) => reject(new Error(`master exited with ${code}: ${out}`)));
  });
  t.ok(statSync(path.join(home, 'ufs')).isDirectory(), '<home>/ufs exists');
  const res = await fetch(`${url}/api/v1/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/data', mode: 0o755 }) });
  t.equal(res.status, 200, `mkdir /data: ${res.status} ${await res.text()}`);
  t.ok(existsSync(path.join(home, 'ufs', 'data')), 'and it is in the under-store');
});

t.test('an explicit under-store directory must exist: a usage error at start otherwise', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // Not created: it may be a file system that is not mounted yet.
  const missing = path.join(root, 'not-mounted', 'data');
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--auth', 'none', '--ufs', `file://${missing}`]);
  t.equal(r.code, 2, 'exit code 2 (usage)');
  t.match(r.stderr, /cannot use under-store directory .*not-mounted\/data: ENOENT \(create it, or mount the file system it is on\)/, r.stderr);
  t.notOk(existsSync(missing), 'and it was not created');
});

t.test('an under-store directory that cannot be made is a usage error at start', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const file = path.join(root, 'a-file');
  writeFileSync(file, 'not a directory');
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--auth', 'none', '--ufs', `file://${file}/ufs`]);
  t.equal(r.code, 2, 'exit code 2 (usage)');
  t.match(r.stderr, /cannot use under-store directory .*a-file\/ufs: ENOTDIR/, r.stderr);
});
