/**
 * A mount shared with other users (allow_other, the default when root mounts)
 * still enforces modes and owners for them: the kernel checks them because the
 * mount always carries default_permissions. Needs root and setpriv.
 */

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { promises as fsp, existsSync } from 'node:fs';
import * as path from 'node:path';
import { startLocal, tempRoot, isMounted } from '../helpers/cluster';

const NOBODY = 65534;
const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/setpriv');

/** Runs a shell command as nobody; returns its exit code and stderr. */
function asNobody(cmd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/bin/sh', '-c', cmd], { cwd: '/', encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const q = (p: string) => `'${p.replace(/'/g, "'\\''")}'`;

t.test('allow_other: other users see the mount, and modes still bind them', { skip: canRun ? false : 'needs root and setpriv' }, async (t) => {
  const root = tempRoot('strata-other-');
  // mkdtemp makes 0700 dirs: open the way to the mount point, or every check fails for the wrong reason.
  await fsp.chmod(root, 0o755);
  const c = await startLocal(t, { root });
  // Registered after the cluster's teardown, so it runs once the mount is gone.
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  await fsp.chmod(c.mnt, 0o755);
  const m = (p: string) => path.join(c.mnt, p);

  await fsp.writeFile(m('secret.txt'), 'root only\n');
  await fsp.chmod(m('secret.txt'), 0o600);
  await fsp.writeFile(m('public.txt'), 'anyone may read\n');
  await fsp.chmod(m('public.txt'), 0o644);
  await fsp.mkdir(m('private'), { mode: 0o700 });
  await fsp.writeFile(m('private/inner.txt'), 'behind a 0700 dir\n', { mode: 0o644 });
  await fsp.mkdir(m('drop'), { mode: 0o777 });
  await fsp.chmod(m('drop'), 0o777);

  const pub = asNobody(`cat ${q(m('public.txt'))}`);
  t.equal(pub.code, 0, 'nobody reads a 0644 file through the mount (allow_other is on)', { stderr: pub.stderr });
  t.equal(pub.stdout, 'anyone may read\n');

  const denied: [string, string][] = [
    ['reading a 0600 root file', `cat ${q(m('secret.txt'))}`],
    ['listing a 0700 root dir', `ls ${q(m('private'))}`],
    ['reading a 0644 file below a 0700 dir', `cat ${q(m('private/inner.txt'))}`],
    ['writing a 0644 root file', `echo more >> ${q(m('public.txt'))}`],
    ['creating a file in the 0755 root dir', `: > ${q(m('new.txt'))}`],
    ['removing a root file from the 0755 root dir', `rm -f ${q(m('public.txt'))}`],
    ['renaming a root file', `mv ${q(m('public.txt'))} ${q(m('drop/moved.txt'))}`],
  ];
  for (const [what, cmd] of denied) {
    const r = asNobody(cmd);
    t.not(r.code, 0, `${what} fails`);
    t.match(r.stderr, /Permission denied/, `${what}: EACCES`, { stderr: r.stderr });
  }
  const chmod = asNobody(`chmod 666 ${q(m('secret.txt'))}`);
  t.not(chmod.code, 0, 'chmod of a root file fails');
  t.match(chmod.stderr, /Operation not permitted/, 'with EPERM');
  const chown = asNobody(`chown ${NOBODY} ${q(m('secret.txt'))}`);
  t.not(chown.code, 0, 'chown to oneself fails');

  // Where the modes allow it, nobody works as nobody: the file is theirs.
  const own = asNobody(`echo mine > ${q(m('drop/nobody.txt'))} && cat ${q(m('drop/nobody.txt'))}`);
  t.equal(own.code, 0, 'nobody creates a file in a 0777 dir', { stderr: own.stderr });
  const st = await fsp.stat(m('drop/nobody.txt'));
  t.equal(st.uid, NOBODY, 'owned by nobody');
  t.equal(st.gid, NOBODY);

  t.equal(await fsp.readFile(m('secret.txt'), 'utf8'), 'root only\n', 'the secret is unchanged');
  t.equal((await fsp.stat(m('secret.txt'))).mode & 0o777, 0o600, 'and still 0600');
  t.equal(await fsp.readFile(m('public.txt'), 'utf8'), 'anyone may read\n', 'the public file is unchanged');
  await t.rejects(fsp.stat(m('new.txt')), { code: 'ENOENT' });
  t.equal(await c.stop(), 0);
  t.notOk(isMounted(c.mnt));
});

t.test('--allow-other false: other users cannot use the mount at all', { skip: canRun ? false : 'needs root and setpriv' }, async (t) => {
  const root = tempRoot('strata-noother-');
  await fsp.chmod(root, 0o755);
  const c = await startLocal(t, { root, args: ['--allow-other', 'false'] });
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  await fsp.writeFile(path.join(c.mnt, 'public.txt'), 'x\n');
  await fsp.chmod(path.join(c.mnt, 'public.txt'), 0o644);
  const r = asNobody(`cat ${q(path.join(c.mnt, 'public.txt'))}`);
  t.not(r.code, 0, 'even a 0644 file is out of reach');
  t.match(r.stderr, /Permission denied/);
  t.equal(await c.stop(), 0);
  t.notOk(isMounted(c.mnt));
});
