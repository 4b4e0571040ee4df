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
import { closeSync, constants as fsc, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import type { WorkerInfo } from '../../src/common/protocol';
import { tempRoot } from '../helpers/cluster';
import { readWhole, until } from '../helpers/in-process';

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

/** Makes `file` a FIFO; returns what opens its other ends (and so lets every call blocked on it go). */
function hang(file: string): () => void {
  rmSync(file, { force: true });
  execFileSync('mkfifo', [file]);
  return () => {
    for (const flags of [fsc.O_RDONLY | fsc.O_NONBLOCK, fsc.O_WRONLY | fsc.O_NONBLOCK]) {
      try {
        closeSync(openSync(file, flags));
      } catch {
        // ENXIO: no reader is waiting on it, so no writer needs letting go
      }
    }
  };
}

async function cluster(t: tap.Test, workers: number) {
  const root = tempRoot('strata-tier-check-');
  const log = silentLogger();
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${path.join(root, 'ufs')}`, logger: log });
  const ws: { url: string; tierDir: string; close(): Promise<void> }[] = [];
  const releases: (() => void)[] = [];
  t.teardown(async () => {
    // Blocked calls keep the process alive, and a worker's close waits on some of them.
    for (const r of releases) r();
    for (const w of ws) await w.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  for (let i = 0; i < workers; i++) {
    const tierDir = path.join(root, `ssd-${i}`);
    mkdirSync(tierDir, { recursive: true });
    const w = await startWorker({
      masterUrl: master.url,
      home: path.join(root, `worker-${i}`),
      port: 0,
      tiers: [{ name: 'SSD', dir: tierDir, capacityBytes: 64 << 20 }],
      heartbeatIntervalMs: 200,
      scrubBytesPerSec: 0,
      tierCheckIntervalMs: 100,
      tierStallMs: 700,
      logger: log,
    });
    ws.push({ url: w.url, tierDir, close: () => w.close() });
  }
  return { root, master, workers: ws, hang: (file: string) => void releases.push(hang(file)) };
}

t.test('a tier whose check hangs makes /healthz answer 503 naming it; a failing check is reported with 200; both clear', async (t) => {
  const c = await cluster(t, 1);
  const w = c.workers[0]!;
  await until('a first check', async () => (await tierState(w.url)).checks > 0, 5000);
  const fine = await health(w.url);
  t.equal(fine.status, 200);
  t.same(fine.body, { ok: true }, 'healthy: nothing but liveness');
  t.equal((await tierState(w.url)).state, 0, 'the tier is ok');

  const checkFile = path.join(w.tierDir, '.tmp', 'health-check');
  const release = hang(checkFile);
  let released = false;
  t.teardown(() => void (released || release()));
  const t0 = Date.now();
  await until('/healthz answers 503', async () => (await health(w.url)).status === 503, 10_000);
  t.ok(Date.now() - t0 >= 600, `not before the stall time (${Date.now() - t0} ms)`);
  const sick = await health(w.url);
  t.equal(sick.body.ok, false);
  t.equal(sick.body.code, 'UNAVAILABLE');
  t.match(sick.body.message, /cache tier stalled: SSD \(open has not returned, \d+ s\)/, 'naming the tier and the call that hangs');
  t.equal((await tierState(w.url)).state, 2, 'the metric says stalled');

  // Its other end opened: the check's open returns, and its write at offset 0 fails on the FIFO (ESPIPE).
  const reader = openSync(checkFile, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    await until('the tier is reported failing', async () => (await tierState(w.url)).state === 1, 10_000);
    t.equal((await health(w.url)).status, 200, 'a failing tier leaves /healthz at 200: requests on it fail fast by themselves');
  } finally {
    closeSync(reader);
  }
  rmSync(checkFile, { force: true });
  released = true;
  await until('the tier is ok again', async () => (await tierState(w.url)).state === 0, 10_000);
  t.equal((await health(w.url)).status, 200);
});

t.test("a read waiting on a worker whose tier hangs moves to another worker once /healthz says so, and gets the file's bytes", async (t) => {
  const c = await cluster(t, 2);
  const fs = new StrataFileSystem({ masterUrl: c.master.url, stagingDir: path.join(c.root, 'staging'), logger: silentLogger(), shortCircuit: false, writeType: 'CACHE_THROUGH', workerProbeIntervalMs: 200 });
  await fs.init();
  t.teardown(() => fs.close());
  const data = randomBytes(3 << 20);
  await fs.writeFile('/f', data, data.length);
  t.ok((await readWhole(fs, '/f')).equals(data), 'read back once');

  // The worker holding its pages: its disk "hangs" (pages and check file become FIFOs).
  const holder = c.workers.find((w) => readdirSync(w.tierDir).some((n) => /^[0-9]+$/.test(n)));
  t.ok(holder, 'one worker caches the file');
  let pages = 0;
  for (const b of readdirSync(holder!.tierDir).filter((n) => /^[0-9]+$/.test(n))) {
    for (const p of readdirSync(path.join(holder!.tierDir, b))) {
      c.hang(path.join(holder!.tierDir, b, p));
      pages++;
    }
  }
  t.ok(pages >= 3, `${pages} page files hang`);
  c.hang(path.join(holder!.tierDir, '.tmp', 'health-check'));

  const fresh = new StrataFileSystem({ masterUrl: c.master.url, stagingDir: path.join(c.root, 'staging-2'), logger: silentLogger(), shortCircuit: false, workerProbeIntervalMs: 200 });
  await fresh.init();
  t.teardown(() => fresh.close());
  const t0 = Date.now();
  const got = await readWhole(fresh, '/f');
  const took = Date.now() - t0;
  t.ok(got.equals(data), 'the bytes came from the other worker (filled from the store)');
  t.ok(took < 20_000, `within seconds (${took} ms), not the 10-minute bound`);
  t.equal((await health(holder!.url)).status, 503, 'the holder says it is unhealthy');

  // Its heartbeats tell the master; clients then leave it out before asking it anything.
  const workers = async () => (await (await fetch(`${c.master.url}/api/v1/workers`)).json()) as WorkerInfo[];
  await until('the master knows the tier stalled', async () => (await workers()).some((w) => w.address === holder!.url && w.tiers.some((x) => x.state === 'stalled')), 10_000);
  const other = (await workers()).find((w) => w.address !== holder!.url)!;
  t.same(other.tiers.map((x) => x.state ?? 'ok'), ['ok'], "the other worker's tier is ok");
  // No health probes: had it asked the holder, this read would wait out the 2-minute request timeout.
  const unprobed = new StrataFileSystem({ masterUrl: c.master.url, stagingDir: path.join(c.root, 'staging-3'), logger: silentLogger(), shortCircuit: false, workerProbeIntervalMs: 0 });
  await unprobed.init();
  t.teardown(() => unprobed.close());
  t.ok((await readWhole(unprobed, '/f')).equals(data), 'a new client reads the file without waiting on the holder');
});
