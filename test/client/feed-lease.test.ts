/** A mount's change-feed lease (client/master-client.ts) over a slow link: it is renewed before it runs out. */

import t from 'tap';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { MasterClient, feedPollWait } from '../../src/client/master-client';
import { startMaster } from '../../src/master/server';
import { silentLogger } from '../../src/common/log';
import { tempRoot } from '../helpers/cluster';
import { startFaultProxy } from '../helpers/fault-proxy';

t.test('the next poll leaves room for the round trip beyond the hold', async (t) => {
  t.equal(feedPollWait(1000, 665, 2), 333, 'a local link: a third of the lease, as always');
  t.equal(feedPollWait(1000, 403, 264), 20, 'a slow link right after a long hold: answered almost at once');
  t.equal(feedPollWait(1000, 716, 264), 310, 'and after a short one: held as long as the lease still allows');
  t.equal(feedPollWait(1000, -50, 0), 20, 'a lapsed lease: renewed as soon as the master can');
});

t.test('behind a proxy that holds each feed poll 250 ms, a 1 s lease never runs out', async (t) => {
  const root = tempRoot('strata-feed-lease-');
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${path.join(root, 'ufs')}`, logger: silentLogger() });
  const proxy = await startFaultProxy(master.url, t);
  proxy.mode = 'delay';
  proxy.delayMs = 250;
  proxy.match = (req) => (req.url ?? '').includes('/changes');
  const client = new MasterClient(proxy.endpoint, { metadataCache: true, feedLeaseMs: 1000 });
  t.teardown(async () => {
    await client.close();
    await proxy.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  const deadline = Date.now() + 10_000;
  while (!client.leaseRuns() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.ok(client.leaseRuns(), 'a lease was granted');
  // A few rounds for the client to measure the link, then 4 s of samples every 5 ms.
  await new Promise((r) => setTimeout(r, 1500));
  let samples = 0;
  let lapsed = 0;
  const until = Date.now() + 4000;
  while (Date.now() < until) {
    samples++;
    if (!client.leaseRuns()) lapsed++;
    await new Promise((r) => setTimeout(r, 5));
  }
  // Polled every third of the lease regardless, the lease lapsed in about a third of such samples
  // (237 of 746); the margin is for this process's event loop, which the master and proxy share.
  t.ok(lapsed / samples < 0.1, `the lease ran out in ${lapsed} of ${samples} samples`);
});
