/**
 * A worker started before its master (or pointed at one it cannot reach) waits for it, and
 * says so in its log while it waits; it registers once the master answers.
 */

import t from 'tap';
import * as net from 'node:net';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startMaster } from '../../src/master/server';
import { startWorker } from '../../src/worker/server';
import { tempRoot } from '../helpers/cluster';
import { silentLogger } from '../../src/common/log';
import { until } from '../helpers/in-process';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test('a worker whose master does not answer yet says so every 10 s, then registers when it comes up', async (t) => {
  const root = tempRoot('strata-master-wait-');
  const port = await freePort();
  const lines: { level: number; msg: string; master?: string; call?: string; err?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  const started = Date.now();
  const starting = startWorker({
    masterUrl: `http://127.0.0.1:${port}`,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [{ name: 'SSD', dir: path.join(root, 'ssd'), capacityBytes: 16 << 20 }],
    heartbeatIntervalMs: 200,
    scrubBytesPerSec: 0,
    logger: pino({ level: 'warn' }, sink),
  });
  let failed: unknown;
  starting.catch((err: unknown) => (failed = err));
  await until('the worker says it waits for the master', async () => lines.some((l) => l.msg === 'the master does not answer; trying again') || failed !== undefined, 15_000);
  t.equal(failed, undefined, 'the worker still waits');
  const warn = lines.find((l) => l.msg === 'the master does not answer; trying again')!;
  t.equal(warn.level, 40, 'as a warning');
  t.equal(warn.master, `http://127.0.0.1:${port}`, 'naming the master');
  t.match(warn.call, /^POST .*\/workers\/register$/, 'and the call that waits');
  t.match(warn.err, /ECONNREFUSED|connect/i, 'and why');
  t.ok(Date.now() - started < 10_000, 'said within a few seconds, not after the minute the call waits');

  const master = await startMaster({ home: path.join(root, 'master'), port, ufsUri: `file://${path.join(root, 'ufs')}`, logger: silentLogger() });
  t.teardown(() => master.close());
  const worker = await starting;
  t.teardown(() => worker.close());
  t.ok(worker.workerId > 0, 'the worker registered once the master answered');
  const warnings = lines.filter((l) => l.msg === 'the master does not answer; trying again').length;
  t.ok(warnings <= Math.ceil((Date.now() - started) / 10_000) + 1, `once per 10 s, not per attempt (${warnings})`);
});
