/** Rendezvous placement: every client agrees, and a worker joining or leaving moves only its share. */

import t from 'tap';
import { rendezvous } from '../../src/client/worker-router';
import type { WorkerInfo } from '../../src/common/protocol';

const worker = (id: number): WorkerInfo => ({ id, address: `http://10.0.0.${id}:29999`, host: `h${id}`, tiers: [], pageSize: 1 << 20, capacityBytes: 1, usedBytes: 0, lastHeartbeatMs: 0, live: true });
const keys = Array.from({ length: 5000 }, (_, i) => `block:${i * 1048576 + (i % 7)}`);

t.test('placement is stable and spread', async (t) => {
  const ws = [1, 2, 3, 4, 5].map(worker);
  const a = keys.map((k) => rendezvous(ws, k).id);
  const b = keys.map((k) => rendezvous([...ws].reverse(), k).id);
  t.same(a, b, 'independent of list order: every client picks the same worker');
  const counts = new Map<number, number>();
  for (const id of a) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, n] of counts) t.ok(n > 700 && n < 1300, `worker ${id} holds ${n} of 5000 (about a fifth)`);
});

t.test('removing a worker moves only the blocks it held', async (t) => {
  const ws = [1, 2, 3, 4, 5].map(worker);
  const before = keys.map((k) => rendezvous(ws, k).id);
  const after = keys.map((k) => rendezvous(ws.filter((w) => w.id !== 3), k).id);
  const moved = before.filter((id, i) => id !== after[i]!);
  t.ok(moved.length > 0);
  t.ok(moved.every((id) => id === 3), `all ${moved.length} moved blocks were on the removed worker`);
});

t.test('adding a worker takes blocks only onto itself', async (t) => {
  const ws = [1, 2, 3, 4].map(worker);
  const before = keys.map((k) => rendezvous(ws, k).id);
  const after = keys.map((k) => rendezvous([...ws, worker(9)], k).id);
  const changed = after.filter((id, i) => id !== before[i]!);
  t.ok(changed.every((id) => id === 9), 'every moved block went to the new worker');
  t.ok(changed.length > 700 && changed.length < 1300, `${changed.length} of 5000 moved (about a fifth)`);
});
