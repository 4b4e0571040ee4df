/**
 * `load` and `free` answer once the master knows what they did, not at the next
 * heartbeat: heartbeats here are a minute apart, so every check below would fail
 * if the master learned of copies made or dropped only from them.
 */

import t from 'tap';
import { promises as fsp, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { startLocal, runCli, tempRoot, type LocalCluster } from '../helpers/cluster';
import { pageBytesUnder } from '../helpers/disk';
import { PAGE_TRAILER_BYTES } from '../../src/common/page-file';

const MiB = 1024 * 1024;

interface StatJson {
  size: number;
  cachedBytes: number;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('load and free are known to the master before they answer', async (t) => {
  const root = tempRoot('strata-report-');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const tierDir = path.join(root, 'tier');
  const c: LocalCluster = await startLocal(t, {
    root,
    args: ['--block-size', '1MiB', '--tiers', `ssd:${tierDir}:256MiB`],
    env: { STRATA_HEARTBEAT_INTERVAL_MS: '60000', STRATA_WORKER_TIMEOUT_MS: '600000' },
  });
  const fs = async (args: string[]) => {
    const r = await runCli(['fs', ...args, '--master', c.masterUrl]);
    t.equal(r.code, 0, `strata fs ${args.join(' ')}`, { stderr: r.stderr.slice(0, 2000) });
    return r.stdout;
  };
  const stat = async (p: string) => JSON.parse(await fs(['stat', p, '--json'])) as StatJson;

  const a = randomBytes(3 * MiB + 4321);
  const b = randomBytes(2 * MiB + 99);
  await fsp.writeFile(path.join(c.ufsDir, 'a.bin'), a);
  await fsp.writeFile(path.join(c.ufsDir, 'b.bin'), b);

  await fs(['load', '/a.bin']);
  t.equal((await stat('/a.bin')).cachedBytes, a.length, 'stat right after load: all of a.bin cached');

  // A read through the mount caches b.bin; a load of it then reads nothing from the store and
  // answers once the master knows of the copy the read made.
  t.ok((await fsp.readFile(path.join(c.mnt, 'b.bin'))).equals(b), 'b.bin read back through the mount');
  t.match(await fs(['load', '/b.bin']), /read 0 B \(0 bytes\) from the under-store/, 'the load found b.bin cached');
  t.equal((await stat('/b.bin')).cachedBytes, b.length, 'and stat shows it, well before the next heartbeat');

  // Free right after load drops the copy: the master knew of it.
  const freed = await fs(['free', '/a.bin']);
  t.match(freed, /3\.0 MiB of cached copies dropped/, freed);
  t.equal((await stat('/a.bin')).cachedBytes, 0, 'nothing of a.bin cached after free');
  // b.bin's three pages stay, each with its trailer.
  const bPages = b.length + 3 * PAGE_TRAILER_BYTES;
  const left = await until(async () => pageBytesUnder(tierDir), (n) => n === bPages, 5000);
  t.equal(left, bPages, "the worker dropped all of a.bin's pages; b.bin's are left");

  // Free, then load again at once: the load's copy stays, and the master knows of it.
  await fs(['free', '/b.bin']);
  await fs(['load', '/b.bin']);
  t.equal((await stat('/b.bin')).cachedBytes, b.length, 'b.bin cached after free + load');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal((await stat('/b.bin')).cachedBytes, b.length, 'and still, a moment later');
  t.ok(pageBytesUnder(tierDir) >= b.length, 'its pages are on the tier');

  // A TTL that frees: the worker drops the copies when it fires, not at its next heartbeat.
  const cBytes = randomBytes(MiB + 5);
  await fsp.writeFile(path.join(c.ufsDir, 'c.bin'), cBytes);
  await fs(['load', '/c.bin']);
  const withC = pageBytesUnder(tierDir);
  await fs(['setTtl', '/c.bin', '1s']);
  const withoutC = withC - (cBytes.length + 2 * PAGE_TRAILER_BYTES);
  t.equal(await until(async () => pageBytesUnder(tierDir), (n) => n === withoutC, 10_000), withoutC, "c.bin's pages are dropped within seconds of its TTL firing");
  t.equal((await stat('/c.bin')).cachedBytes, 0, 'and stat shows nothing of it cached');
});
