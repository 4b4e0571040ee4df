/**
 * SIGKILL of the whole `strata local` tree while files are being written, then a
 * restart on the same home: the stale mount is cleaned, the namespace is
 * consistent, and every file whose close() returned reads back byte for byte.
 */

import t from 'tap';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { startLocal } from '../helpers/cluster';

/** Deterministic content of file i, so the checker can recompute what was written. */
const WRITER = `
const fs = require('node:fs');
const dir = process.argv[1];
function content(i) {
  const b = Buffer.alloc(256 * 1024 + i * 1000);
  let x = (i + 1) * 2654435761 >>> 0;
  for (let k = 0; k < b.length; k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; b[k] = x >>> 24; }
  return b;
}
for (let i = 0; i < 400; i++) {
  const p = dir + '/f' + i;
  const fd = fs.openSync(p, 'w');
  fs.writeSync(fd, content(i));
  fs.closeSync(fd);
  process.stdout.write('closed ' + i + '\\n');
}
`;

function content(i: number): Buffer {
  const b = Buffer.alloc(256 * 1024 + i * 1000);
  let x = ((i + 1) * 2654435761) >>> 0;
  for (let k = 0; k < b.length; k++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[k] = x >>> 24;
  }
  return b;
}

t.test('SIGKILL during writes, restart on the same home', async (t) => {
  const c1 = await startLocal(t);
  await fsp.mkdir(path.join(c1.mnt, 'w'));
  const writer = spawn(process.execPath, ['-e', WRITER, path.join(c1.mnt, 'w')], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => writer.kill('SIGKILL'));
  const closed = new Set<number>();
  let out = '';
  await new Promise<void>((resolve, reject) => {
    writer.stdout.on('data', (d) => {
      out += d;
      for (const m of out.matchAll(/closed (\d+)\n/g)) closed.add(Number(m[1]));
      if (closed.size >= 15) resolve();
    });
    writer.once('exit', (code) => reject(new Error(`writer exited early (${code})`)));
  });
  await c1.kill();
  writer.kill('SIGKILL');
  t.ok(closed.size >= 15, `${closed.size} files were closed before the kill`);

  const c2 = await startLocal(t, { reuse: { home: c1.home, mnt: c1.mnt, ufsDir: c1.ufsDir } });
  t.match(c2.stderr(), /stale FUSE mount/, 'the stale mount was detected and cleaned, with a message');
  const names = await fsp.readdir(path.join(c2.mnt, 'w'));
  for (const name of names) {
    const st = await fsp.stat(path.join(c2.mnt, 'w', name));
    t.ok(st.isFile(), `${name} is a consistent file entry`);
  }
  let good = 0;
  for (const i of closed) {
    const back = await fsp.readFile(path.join(c2.mnt, 'w', `f${i}`));
    if (back.equals(content(i))) good++;
    else t.fail(`f${i} differs after the restart (${back.length} bytes)`);
    t.ok((await fsp.readFile(path.join(c2.ufsDir, 'w', `f${i}`))).equals(content(i)), `f${i} is whole in the under-store`);
  }
  t.equal(good, closed.size, 'every closed file reads back byte for byte');
  // The restarted cluster takes new writes too.
  await fsp.writeFile(path.join(c2.mnt, 'w', 'after'), 'after the crash');
  t.equal(await fsp.readFile(path.join(c2.mnt, 'w', 'after'), 'utf8'), 'after the crash');
  t.equal(await c2.stop(), 0);
});
