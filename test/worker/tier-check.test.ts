/**
 * A worker checks its cache tiers' disks; one whose check hangs is stalled, and the
 * worker's /healthz answers 503, so a client waiting on it reads elsewhere instead of
 * waiting out its 10-minute bound.
 *
 * A hung disk is made here with FIFOs, the one stand-in for it that a test can make
 * and undo: opening a FIFO blocks in the kernel until its other end is opened, as a
 * call on a hung NFS mount or a dying drive does. The check file and the cached page
 * files become FIFOs; the worker's own calls on them block in libuv's threads.
 */

import t from 'tap';
import type * as tap from 'tap';
import { closeSync, constants as fsc, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import type { WorkerInfo, WriteType } from '../../src/common/protocol';
import { tempRoot } from '../helpers/cluster';
import { readWhole, until } from '../helpers/in-process';
import { startCluster } from '../helpers/multi-cluster';

interface Health {
  ok: boolean;
  code?: string;
  message?: string;
}

async function health(url: string): Promise<{ status: number; body: Health }> {
  const res = await fetch(`${url}/healthz`);
  return { status: res.status, body: (await res.json()) as Health };
}

/** The tier's state in /metrics: 0 ok, 1 failing, 2 stalled; and how many checks finished. */
async function tierState(url: string): Promise<{ state: number | undefined; checks: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const state = /^strata_worker_tier_state\{[^}]*tier="SSD"[^}]*\} (\d+)$/m.exec(text)?.[1];
  let checks = 0;
  for (const m of text.matchAll(/^strata_worker_tier_check_seconds_count\{[^}]*tier="SSD"[^}]*\} (\d+)$/gm)) checks += Number(m[1]);
  return { state: state === undefined ? undefined : Number(state), checks };
}

/**
 * Makes `file` a FIFO. The returned release opens it read-write (which never blocks, and lets
 * every open and read blocked on it go), unlinks it (later opens make a regular file) and closes it.
 */
function hang(file: string): () => void {
  // Made aside and renamed over the file: a check may make the file again at any moment.
  execFileSync('mkfifo', [`${file}.fifo`]);
  renameSync(`${file}.fifo`, file);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const fd = openSync(file, fsc.O_RDWR | fsc.O_NONBLOCK);
    rmSync(file, { force: true });
    closeSync(fd);
  };
}

async function cluster(t: tap.Test) {
  const root = tempRoot('strata-tier-check-');
  // Tiers on tmpfs where there is one: only the FIFOs can hang (a slow disk under a loaded VM must not).
  const tierRoot = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/strata-tier-check-') : root;
  const log = silentLogger();
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${path.join(root, 'ufs')}`, logger: log });
  const ws: { url: string; tierDir: string; hddDir: string; close(): Promise<void> }[] = [];
  const releases: (() => void)[] = [];
  t.teardown(async () => {
    // Blocked calls keep the process alive, and a worker's close waits on some of them.
    for (const r of releases) r();
    for (const w of ws) await w.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(tierRoot, { recursive: true, force: true });
  });
  /** A worker with one SSD tier, or an HDD tier below it (`hddDir`). */
  const addWorker = async (opts: { hdd?: boolean } = {}) => {
    const tierDir = path.join(tierRoot, `ssd-${ws.length}`);
    const hddDir = path.join(tierRoot, `hdd-${ws.length}`);
    mkdirSync(tierDir, { recursive: true });
    const w = await startWorker({
      masterUrl: master.url,
      home: path.join(root, `worker-${ws.length}`),
      port: 0,
      tiers: [{ name: 'SSD', dir: tierDir, capacityBytes: 64 << 20 }, ...(opts.hdd ? [{ name: 'HDD', dir: hddDir, capacityBytes: 64 << 20 }] : [])],
      heartbeatIntervalMs: 200,
      scrubBytesPerSec: 0,
      tierCheckIntervalMs: 100,
      tierStallMs: 700,
      logger: log,
    });
    const added = { url: w.url, tierDir, hddDir, close: () => w.close() };
    ws.push(added);
    return added;
  };
  const client = async (name: string, opts: { probeMs: number; writeType?: WriteType }) => {
    const fs = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, name), logger: log, shortCircuit: false, workerProbeIntervalMs: opts.probeMs, ...(opts.writeType ? { writeType: opts.writeType } : {}) });
    await fs.init();
    t.teardown(() => fs.close());
    return fs;
  };
  /** Hangs every cached page file of a tier (`pagesIn`) and a tier's check file (`checkIn`), by default the SSD tier's; released at teardown. */
  const hangDisk = (w: { tierDir: string }, pagesIn = w.tierDir, checkIn = w.tierDir) => {
    let pages = 0;
    for (const b of readdirSync(pagesIn).filter((n) => /^[0-9]+$/.test(n))) {
      for (const p of readdirSync(path.join(pagesIn, b))) {
        releases.push(hang(path.join(pagesIn, b, p)));
        pages++;
      }
    }
    const check = hang(path.join(checkIn, '.tmp', 'health-check'));
    releases.push(check);
    return { pages, release: () => releases.forEach((r) => r()) };
  };
  return { root, master, workers: ws, addWorker, client, hangDisk };
}

t.test('a failing tier check is reported with /healthz at 200; a hung one makes it 503 naming the tier, until a check succeeds', async (t) => {
  const c = await cluster(t);
  const w = await c.addWorker();
  await until('a first check', async () => (await tierState(w.url)).checks > 0, 5000);
  const fine = await health(w.url);
  t.equal(fine.status, 200);
  t.same(fine.body, { ok: true }, 'healthy: nothing but liveness');
  t.equal((await tierState(w.url)).state, 0, 'the tier is ok');

  // With a reader on the FIFO, the check's open returns and its write at an offset fails (ESPIPE): failing, not stalled.
  const checkFile = path.join(w.tierDir, '.tmp', 'health-check');
  execFileSync('mkfifo', [`${checkFile}.fifo`]);
  renameSync(`${checkFile}.fifo`, checkFile);
  let holder: number | undefined = openSync(checkFile, fsc.O_RDONLY | fsc.O_NONBLOCK);
  t.teardown(() => {
    if (existsSync(checkFile)) {
      const fd = openSync(checkFile, fsc.O_RDWR | fsc.O_NONBLOCK);
      rmSync(checkFile, { force: true });
      closeSync(fd);
    }
    if (holder !== undefined) closeSync(holder);
  });
  await until('the tier is reported failing', async () => (await tierState(w.url)).state === 1, 10_000);
  t.equal((await health(w.url)).status, 200, 'a failing tier leaves /healthz at 200: requests on it fail fast by themselves');

  // No reader: the next check's open blocks, as on a hung disk.
  closeSync(holder);
  holder = undefined;
  const t0 = Date.now();
  await until('/healthz answers 503', async () => (await health(w.url)).status === 503, 10_000);
  t.ok(Date.now() - t0 >= 600, `not before the stall time (${Date.now() - t0} ms)`);
  const sick = await health(w.url);
  t.equal(sick.body.ok, false);
  t.equal(sick.body.code, 'UNAVAILABLE');
  t.match(sick.body.message, /cache tier stalled: SSD \(open has not returned, \d+ s\)/, 'naming the tier and the call that hangs');
  t.equal((await tierState(w.url)).state, 2, 'the metric says stalled');

  // The hung open returns (a reader and writer appear) and the check fails: still stalled, as a soft NFS mount's EIO would be.
  const both = openSync(checkFile, fsc.O_RDWR | fsc.O_NONBLOCK);
  try {
    await until('the hung check ended', async () => /then failed with ESPIPE/.test((await health(w.url)).body.message ?? ''), 10_000);
    t.equal((await health(w.url)).status, 503, 'a check that hung and then failed keeps the tier stalled');
  } finally {
    rmSync(checkFile, { force: true });
    closeSync(both);
  }
  await until('the tier is ok again', async () => (await tierState(w.url)).state === 0, 10_000);
  t.equal((await health(w.url)).status, 200, 'a check that succeeds clears it');
});

t.test("a read waiting on a worker whose tier hangs moves to another worker once /healthz says so, and new reads leave that worker out", async (t) => {
  const c = await cluster(t);
  const holder = await c.addWorker();
  const fs = await c.client('staging-1', { probeMs: 200 });
  const data = randomBytes(3 << 20);
  await fs.writeFile('/f', data, data.length);
  t.ok((await readWhole(fs, '/f')).equals(data), 'read back once');
  // Started after the write: it has the higher id, so the master lists the holder's copy first.
  const other = await c.addWorker();

  const { pages } = c.hangDisk(holder);
  t.ok(pages >= 3, `${pages} page files hang`);
  await until('the router of the first client knows the second worker', async () => (await fs.master.workers()).length === 2, 5000);
  const fresh = await c.client('staging-2', { probeMs: 200 });
  const t0 = Date.now();
  const got = await readWhole(fresh, '/f');
  const took = Date.now() - t0;
  t.ok(got.equals(data), 'the bytes came from the other worker (filled from the store)');
  t.ok(took < 20_000, `within seconds (${took} ms), not the 10-minute bound`);
  t.equal((await health(holder.url)).status, 503, 'the holder says it is unhealthy');

  // Its heartbeats tell the master; clients then leave it out before asking it anything.
  const workers = async () => (await (await fetch(`${c.master.url}/api/v1/workers`)).json()) as WorkerInfo[];
  await until('the master knows the tier stalled', async () => (await workers()).some((w) => w.address === holder.url && w.tiers.some((x) => x.state === 'stalled')), 10_000);
  t.same((await workers()).find((w) => w.address === other.url)!.tiers.map((x) => x.state ?? 'ok'), ['ok'], "the other worker's tier is ok");
  // No health probes: had it asked the holder (listed first), this read would wait out the 2-minute request timeout.
  const unprobed = await c.client('staging-3', { probeMs: 0 });
  t.ok((await readWhole(unprobed, '/f')).equals(data), 'a new client reads the file without waiting on the holder');
});

t.test("a block whose only copy is on a worker's tier that answers while another of its tiers hangs is read there, and waited for", async (t) => {
  const c = await cluster(t);
  const holder = await c.addWorker({ hdd: true });
  const fs = await c.client('staging-1', { probeMs: 200, writeType: 'MUST_CACHE' });
  const data = randomBytes(2 << 20);
  await fs.writeFile('/f', data, data.length);
  await c.addWorker();
  // Its pages are on SSD (MUST_CACHE: in no store). Its HDD tier stalls; the SSD page files hang too, so the read waits on them.
  const { pages } = c.hangDisk(holder, holder.tierDir, holder.hddDir);
  t.ok(pages >= 2, `${pages} SSD page files hang`);
  const workers = async () => (await (await fetch(`${c.master.url}/api/v1/workers`)).json()) as WorkerInfo[];
  await until('the master knows the HDD tier stalled', async () => (await workers()).some((w) => w.address === holder.url && w.tiers.some((x) => x.name === 'HDD' && x.state === 'stalled')), 10_000);
  const reader = await c.client('staging-2', { probeMs: 200 });
  let settled: string | undefined;
  const reading = readWhole(reader, '/f').then(
    () => void (settled = 'read'),
    (err: unknown) => void (settled = `failed: ${(err as Error).message}`),
  );
  await new Promise((r) => setTimeout(r, 2000));
  t.equal(settled, undefined, 'still waiting on the holder after ten probes that answered 503: the bytes are nowhere else');
  // What the released calls read is no page, and MUST_CACHE bytes are in no store: how the read ends is not the point.
  void reading;
});

t.test('with no other worker, a read waits for the hung disk instead of failing, and gets its bytes once it answers', async (t) => {
  // The worker in a process of its own: in this one, its calls blocked on the FIFOs would take libuv's
  // threads from the client too, which then waited for them whatever it decided.
  const tierDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/strata-tier-check-') : mkdtempSync(path.join(tempRoot('strata-tier-check-'), 'ssd-'));
  t.teardown(() => rmSync(tierDir, { recursive: true, force: true }));
  const c = await startCluster(t, { workers: 1, mounts: 0, tiers: () => `ssd:${tierDir}:64MiB`, workerEnv: { STRATA_WORKER_TIER_CHECK_INTERVAL_MS: '100', STRATA_WORKER_TIER_STALL_MS: '700' } });
  const only = c.workers[0]!;
  const client = async (name: string) => {
    const fs = new StrataFileSystem({ masterUrl: c.masterUrl, stagingDir: path.join(c.root, name), logger: silentLogger(), shortCircuit: false, workerProbeIntervalMs: 200 });
    await fs.init();
    t.teardown(() => fs.close());
    return fs;
  };
  const fs = await client('staging-1');
  const data = randomBytes(2 << 20);
  await fs.writeFile('/f', data, data.length);
  const releases: (() => void)[] = [];
  const release = () => releases.splice(0).forEach((r) => r());
  // Also when the test fails midway (the worker's blocked calls keep it from stopping).
  t.teardown(release);
  for (const b of readdirSync(tierDir).filter((n) => /^[0-9]+$/.test(n))) for (const p of readdirSync(path.join(tierDir, b))) releases.push(hang(path.join(tierDir, b, p)));
  releases.push(hang(path.join(tierDir, '.tmp', 'health-check')));
  t.ok(releases.length >= 3, `${releases.length - 1} page files hang`);
  await until('/healthz answers 503', async () => (await health(only.url)).status === 503, 10_000);
  const reader = await client('staging-2');
  let settled: string | undefined;
  const reading = readWhole(reader, '/f').then(
    (b) => ((settled = 'read'), b),
    (err: unknown) => {
      settled = `failed: ${(err as Error).message}`;
      throw err;
    },
  );
  await new Promise((r) => setTimeout(r, 2000));
  t.equal(settled, undefined, 'still waiting after ten probes that answered 503');
  release();
  t.ok((await reading).equals(data), 'the bytes, once the disk answers (what the released calls read was no page: those pages came from the store)');
});
