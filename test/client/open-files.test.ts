/**
 * Files open for writing through the client (no FUSE): a master, a worker and a
 * StrataFileSystem in this process over a local under-store. What was acknowledged
 * is what gets stored, also when a step on the way fails or another handle writes
 * meanwhile:
 * - a staging write that fails (the staging file cannot be made) loses no earlier write;
 * - a rename over an open file that the master refuses leaves that file to be stored;
 * - a flush while another handle appends stores a consistent prefix, never EINVAL;
 * - O_RDONLY|O_TRUNC truncates, as on Linux (the kernel leaves it to the open).
 */

import t from 'tap';
import type * as tap from 'tap';
import { constants as fsc, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { tempRoot } from '../helpers/cluster';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';

const MiB = 1024 * 1024;

async function cluster(t: tap.Test, shortCircuit: boolean) {
  const root = tempRoot('strata-open-files-');
  const log = silentLogger();
  const ufsDir = path.join(root, 'ufs');
  mkdirSync(ufsDir, { recursive: true });
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${ufsDir}`, logger: log });
  const worker = await startWorker({
    masterUrl: master.url,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [{ name: 'SSD', dir: path.join(root, 'tier-ssd'), capacityBytes: 256 * MiB }],
    heartbeatIntervalMs: 200,
    scrubBytesPerSec: 0,
    logger: log,
  });
  const stagingDir = path.join(root, 'staging');
  const fs = new StrataFileSystem({ masterUrl: master.url, stagingDir, logger: log, shortCircuit, writeType: 'CACHE_THROUGH' });
  await fs.init();
  t.teardown(async () => {
    await fs.close();
    await worker.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  const readAll = async (p: string): Promise<Buffer> => {
    const r = await fs.openReader(p);
    const out = Buffer.alloc(r.size);
    for (let at = 0; at < r.size; ) at += await r.read(at, r.size - at, out, at);
    r.close();
    return out;
  };
  return { fs, ufsDir, stagingDir, readAll };
}

t.test('a failed staging write loses none of the writes acknowledged before it', async (t) => {
  const { fs, stagingDir, readAll, ufsDir } = await cluster(t, false);
  const a = randomBytes(MiB);
  const b = randomBytes(MiB);
  const fh = await fs.create('/log', 0o644);
  t.equal(await fs.write(fh, a, a.length, 0), a.length, 'the first write is acknowledged (held in memory)');
  // The staging file does not exist yet: its directory gone, the next write's flush to disk fails.
  rmSync(stagingDir, { recursive: true, force: true });
  await t.rejects(fs.write(fh, b, b.length, 2 * MiB), 'a write that cannot reach the staging disk fails');
  mkdirSync(stagingDir, { recursive: true });
  t.equal(await fs.write(fh, b, b.length, 2 * MiB), b.length, 'retried once the disk is back, it succeeds');
  await fs.release(fh);
  const want = Buffer.concat([a, Buffer.alloc(MiB), b]);
  t.ok((await readAll('/log')).equals(want), 'the file holds both writes (the first was not dropped with the failed flush)');
  t.ok(readFileSync(path.join(ufsDir, 'log')).equals(want), 'and so does the under-store');
});

t.test('a rename over an open file that the master refuses: that file is still stored at close', async (t) => {
  const { fs, readAll } = await cluster(t, false);
  await fs.writeFile('/other', Buffer.from('other'), 5);
  const fh = await fs.create('/log', 0o644);
  const one = randomBytes(4096);
  const two = randomBytes(4096);
  await fs.write(fh, one, one.length, 0);
  await fs.flush(fh);
  const root = (await fs.getattr('/')).ino;
  // RENAME_NOREPLACE onto the open file: refused (EEXIST), so /log keeps its name.
  await t.rejects(fs.renameAt(root, 'other', root, 'log', 1), { code: 'ALREADY_EXISTS' }, 'the rename is refused');
  await fs.write(fh, two, two.length, 4096);
  await fs.release(fh);
  t.ok((await readAll('/log')).equals(Buffer.concat([one, two])), 'both writes are in /log after close');
  t.equal((await readAll('/other')).toString(), 'other', '/other is untouched');
});

for (const shortCircuit of [false, true]) {
  t.test(`a flush while another handle appends (${shortCircuit ? 'staged file handed over on this host' : 'bytes over HTTP'}): no EINVAL, nothing lost`, async (t) => {
    const { fs, readAll } = await cluster(t, shortCircuit);
    const fh1 = await fs.create('/app', 0o644);
    const fh2 = await fs.open('/app', fsc.O_RDWR);
    const first = randomBytes(MiB);
    const more = randomBytes(MiB);
    await fs.write(fh1, first, first.length, 0);
    // The flush has recorded the size it stores when it asks the master to begin the write: append right then.
    const begin = fs.master.beginWrite.bind(fs.master);
    let appended = false;
    fs.master.beginWrite = async (ino: number) => {
      const r = await begin(ino);
      if (!appended) {
        appended = true;
        await fs.write(fh1, more, more.length, MiB);
      }
      return r;
    };
    await fs.flush(fh2);
    t.ok(appended, 'the append came in during the flush');
    t.equal((await fs.getattr('/app')).size, 2 * MiB, 'the open file shows both writes');
    await fs.release(fh2);
    await fs.release(fh1);
    t.ok((await readAll('/app')).equals(Buffer.concat([first, more])), 'after the last close the file holds both writes');
  });
}

t.test('O_RDONLY|O_TRUNC truncates, as Linux does', async (t) => {
  const { fs, readAll } = await cluster(t, false);
  await fs.writeFile('/t', randomBytes(10_000), 10_000);
  const fh = await fs.open('/t', fsc.O_RDONLY | fsc.O_TRUNC);
  await fs.release(fh);
  t.equal((await fs.getattr('/t')).size, 0, 'size 0');
  t.equal((await readAll('/t')).length, 0, 'and nothing to read');
});
