/**
 * A write that takes longer than a heartbeat: the worker reports the pages of the
 * new blocks while the client is still uploading, before the master knows the
 * blocks belong to a file. Those reports must not make the master treat them as
 * orphans and have the worker delete them under the writer (which lost MUST_CACHE
 * data, whose only copy is on the worker).
 */

import t from 'tap';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startLocal, runCli } from '../helpers/cluster';
import { dropCaches } from '../helpers/disk';

const MiB = 1024 * 1024;


t.test('MUST_CACHE files written across many heartbeats read back whole, and stay cached', async (t) => {
  // A heartbeat every 20 ms: every upload below spans many of them.
  const c = await startLocal(t, { args: ['--write-type', 'MUST_CACHE', '--page-size', '256KiB', '--block-size', '16MiB'], env: { STRATA_HEARTBEAT_INTERVAL_MS: '20' } });
  const files: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(40 * MiB + i * 123_457);
    const name = `f${i}`;
    const fh = await fsp.open(path.join(c.mnt, name), 'w');
    // Written in 1 MiB pieces, like a program would, then closed: the upload happens at close.
    for (let off = 0; off < data.length; off += MiB) await fh.write(data, off, Math.min(MiB, data.length - off), off);
    await fh.close();
    files.push({ name, data });
  }
  // Several more beats: a deletion queued by a wrong orphan verdict would be carried out by now.
  await new Promise((r) => setTimeout(r, 500));
  dropCaches();
  for (const f of files) {
    const back = await fsp.readFile(path.join(c.mnt, f.name));
    t.ok(back.equals(f.data), `${f.name}: ${f.data.length} bytes read back equal`);
    const st = await runCli(['fs', 'stat', `/${f.name}`, '--json', '--master', c.masterUrl]);
    t.equal(st.code, 0, 'stat works');
    const info = JSON.parse(st.stdout) as { cachedBytes: number; size: number; persisted: boolean };
    t.equal(info.cachedBytes, f.data.length, `${f.name}: every byte is still cached on the worker`);
    t.equal(info.persisted, false, 'MUST_CACHE: not in the store');
  }
  t.equal(await c.stop(), 0, 'strata local stops cleanly');
});
