/** The host identity that tells a mount which workers share its disks, and the `hostId` key that sets it. */

import t from 'tap';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { hostIdentity } from '../../src/common/host';
import { resolveConfig } from '../../src/common/config';
import { ShortCircuitReader } from '../../src/client/short-circuit';
import type { WorkerInfo } from '../../src/common/protocol';

const env = {};

t.test('by default the machine id (else the host name); hostId wins when set', async (t) => {
  let machineId = '';
  try {
    machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    // no systemd machine id here
  }
  t.equal(hostIdentity(), machineId || os.hostname());
  t.equal(hostIdentity(''), hostIdentity(), 'an empty id is no id');
  t.equal(hostIdentity('rack3-node7'), 'rack3-node7');
});

t.test('hostId from flag, environment or file; checked at start', async (t) => {
  t.equal(resolveConfig({}, env).hostId, '', 'unset: the machine id is used');
  t.equal(resolveConfig({}, { STRATA_HOST_ID: 'w1' }).hostId, 'w1');
  t.equal(resolveConfig({ hostId: 'w2' }, { STRATA_HOST_ID: 'w1' }).hostId, 'w2', 'the flag beats the environment');
  t.throws(() => resolveConfig({ hostId: 'two words' }, env), { code: 'CONFIG', message: /hostId='two words'.*printable characters without spaces/ });
  t.throws(() => resolveConfig({ hostId: 'x'.repeat(257) }, env), { code: 'CONFIG', message: /1-256 printable/ });
});

t.test('a worker is local to a client exactly when their host ids match', async (t) => {
  const worker = (host: string): WorkerInfo => ({ id: 1, address: 'http://10.0.0.11:29999', host, tiers: [{ name: 'ssd', dir: '/tmp/x', capacityBytes: 1, usedBytes: 0 }], pageSize: 1 << 20, capacityBytes: 1, usedBytes: 0, lastHeartbeatMs: 0, live: true });
  const onW1 = new ShortCircuitReader({ hostId: 'w1' });
  t.ok(onW1.isLocal(worker('w1')), 'same id: read its page files');
  t.notOk(onW1.isLocal(worker('w2')), 'another id: over the network, although both run on this machine');
  t.ok(new ShortCircuitReader().isLocal(worker(hostIdentity())), 'without hostId: the machine id on both sides');
});
