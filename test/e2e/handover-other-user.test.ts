/**
 * A client beside a worker that runs as another user (a mount as root, the worker as a
 * service account). The client's staged files are readable by their owner only, so the
 * worker cannot read one handed over through its incoming dir: the client must notice
 * and send the bytes over HTTP, for a plain close and for a write stream, and leave no
 * link behind. Before, every such close failed with ENOENT after three tries.
 *
 * The worker is a real `strata worker` process run as `nobody` (runuser); the master and
 * the client run in this process as root.
 */

import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempRoot } from '../helpers/cluster';
import { readWhole, until } from '../helpers/in-process';
import { waitExit } from '../helpers/multi-cluster';
import { startMaster } from '../../src/master/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import { INCOMING_DIR } from '../../src/common/protocol';

const CLI = path.resolve(__dirname, '../../../bin/strata');

/** Why `nobody` cannot run the worker here, or undefined when it can. */
function cannotRunAsNobody(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to run a worker as another user';
  const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', `require(${JSON.stringify(path.resolve(__dirname, '../../src/worker/server.js'))})`], { encoding: 'utf8' });
  if (r.error) return `runuser: ${r.error.message}`;
  if (r.status !== 0) return `nobody cannot load the worker from this checkout: ${r.stderr.trim().split('\n')[0]}`;
  return undefined;
}

t.test('a same-host worker that cannot read handed-over files gets the bytes over HTTP', async (t) => {
  const why = cannotRunAsNobody();
  if (why) {
    t.plan(0, why);
    return;
  }
  const root = tempRoot('strata-handover-user-');
  chmodSync(root, 0o755); // a temp dir is its owner's only; the worker's home and tier are below it
  const log = silentLogger();
  // Small blocks, so a 24 MiB file opens a write stream (a block and 8 MiB past it) before its close.
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${path.join(root, 'ufs')}`, logger: log, blockSize: 4 * 1024 * 1024 });
  const workerHome = path.join(root, 'worker');
  const tierDir = path.join(root, 'tier');
  for (const d of [workerHome, tierDir]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, 65534, 65534);
  }
  let worker: ChildProcess | undefined;
  const clients: StrataFileSystem[] = [];
  t.teardown(async () => {
    for (const c of clients) await c.close();
    if (worker && worker.exitCode === null) {
      worker.kill('SIGTERM');
      await waitExit(worker, 10_000);
      if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
    }
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });

  worker = spawn('runuser', ['-u', 'nobody', '--', process.execPath, CLI, 'worker', '--home', workerHome, '--port', '0', '--master', master.url, '--tier', `ssd:${tierDir}:256MiB`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STRATA_LOG_LEVEL: 'warn' },
  });
  let out = '';
  worker.stdout!.on('data', (d) => (out += d));
  worker.stderr!.on('data', (d) => (out += d));
  await until('the worker runs as nobody', async () => {
    if (worker!.exitCode !== null) throw new Error(`the worker exited: ${out}`);
    return /listening on|serving on/.test(out);
  }, 30_000);

  // Two clients, each learning of the refusal on its own: one on a plain close, one opening a write stream.
  const client = async (name: string) => {
    const c = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, `staging-${name}`), logger: log, writeType: 'MUST_CACHE' });
    await c.init();
    clients.push(c);
    return c;
  };
  const plain = await client('plain');
  const streaming = await client('streaming');
  await until('the worker registered', async () => (await plain.master.workers()).some((w) => w.live), 20_000);
  t.ok((await plain.master.workers()).every((w) => plain.local?.isLocal(w)), 'the client takes the worker for a same-host one');

  const workerMetrics = async () => (await fetch(new URL('/metrics', (await plain.master.workers())[0]!.address))).text();
  const streamedBytes = async () => Number(/^strata_worker_write_stream_bytes_total(?:\{[^}]*\})? (\d+)/m.exec(await workerMetrics())?.[1] ?? 0);
  const write = async (fs: StrataFileSystem, name: string, data: Buffer, pauseAt = Infinity) => {
    const fh = await fs.create(name, 0o644);
    for (let off = 0; off < data.length; off += 1024 * 1024) {
      // Halfway, until a whole block went through the write stream: a fast writer may otherwise close first.
      if (off === pauseAt) await until('a block sent through the write stream', async () => (await streamedBytes()) > 0, 20_000);
      const n = Math.min(1024 * 1024, data.length - off);
      await fs.write(fh, data.subarray(off, off + n), n, off);
    }
    await fs.flush(fh);
    await fs.release(fh);
  };

  const small = randomBytes(100_000);
  await t.resolves(write(plain, '/small.bin', small), 'a close succeeds');
  t.ok((await readWhole(plain, '/small.bin')).equals(small), 'and the file reads back');

  const big = randomBytes(24 * 1024 * 1024 + 12345);
  await t.resolves(write(streaming, '/big.bin', big, 16 * 1024 * 1024), 'a file written through a write stream closes too');
  t.ok((await readWhole(streaming, '/big.bin')).equals(big), 'and reads back whole');

  const incoming = path.join(tierDir, INCOMING_DIR);
  t.same(readdirSync(incoming), [], 'no handed-over link is left in the incoming dir');
  const metrics = await workerMetrics();
  const via = (how: string) => Number(new RegExp(`^strata_worker_written_bytes_total\\{[^}]*via="${how}"[^}]*\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
  t.equal(via('http'), small.length + big.length, 'every byte came over HTTP');
  t.equal(via('local'), 0, 'none through a handed-over file');
  t.ok((await streamedBytes()) >= 4 * 1024 * 1024, 'the big file went through a write stream');
});
