/**
 * A master, a worker and file-system clients in this process (no FUSE), with real HTTP
 * between them, over the store `ufsUri`: for tests that drive the client API and look
 * at what reaches the store.
 */

import type * as tap from 'tap';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { tempRoot } from './cluster';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import type { WriteType } from '../../src/common/protocol';

export interface InProcessOptions {
  ufsUri: string;
  ufsOptions?: Record<string, string>;
  syncIntervalMs?: number;
  persistInitialWaitMs?: number;
  /** The master takes a worker silent this long for lost. */
  workerTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** The worker's memory for reads it does not cache (WorkerOptions.readMemoryBytes). */
  readMemoryBytes?: number;
}

export async function inProcessCluster(t: tap.Test, name: string, opts: InProcessOptions) {
  const root = tempRoot(`strata-${name}-`);
  const log = silentLogger();
  const master = await startMaster({
    home: path.join(root, 'master'),
    port: 0,
    ufsUri: opts.ufsUri,
    logger: log,
    ...(opts.ufsOptions ? { ufsOptions: opts.ufsOptions } : {}),
    ...(opts.syncIntervalMs !== undefined ? { syncIntervalMs: opts.syncIntervalMs } : {}),
    ...(opts.persistInitialWaitMs !== undefined ? { persistInitialWaitMs: opts.persistInitialWaitMs } : {}),
    ...(opts.workerTimeoutMs !== undefined ? { workerTimeoutMs: opts.workerTimeoutMs } : {}),
  });
  const worker = await startWorker({
    masterUrl: master.url,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [{ name: 'SSD', dir: path.join(root, 'tier-ssd'), capacityBytes: 64 << 20 }],
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 200,
    scrubBytesPerSec: 0,
    ...(opts.readMemoryBytes !== undefined ? { readMemoryBytes: opts.readMemoryBytes } : {}),
    logger: log,
  });
  const clients: StrataFileSystem[] = [];
  /** A client writing with `writeType`, closed with the cluster. */
  const client = async (writeType: WriteType): Promise<StrataFileSystem> => {
    const fs = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, `staging-${clients.length}`), logger: log, shortCircuit: false, writeType });
    await fs.init();
    clients.push(fs);
    return fs;
  };
  t.teardown(async () => {
    for (const c of clients) await c.close();
    await worker.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, masterUrl: master.url, workerUrl: worker.url, client };
}

/** A whole file read back through a client. */
export async function readWhole(fs: StrataFileSystem, path: string): Promise<Buffer> {
  const r = await fs.openReader(path);
  try {
    const got = Buffer.alloc(r.size);
    await r.read(0, r.size, got, 0);
    return got;
  } finally {
    r.close();
  }
}

/** Resolves once `fn` answers true (asked every 50 ms); throws after `ms`. */
export async function until(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
