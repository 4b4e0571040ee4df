/**
 * The worker's read memory (ReadBudget) against the reads that wait for it: room made by
 * one release goes to as many waiting pages as it holds, not to every waiting fill, and a
 * fill that waits long leaves nothing behind per release.
 */

import t from 'tap';
import { HeldPages, ReadBudget, ReadWindow, hold } from '../../src/worker/server';

const PAGE = 1024 * 1024;
const page = () => Buffer.alloc(PAGE);
/** Lets every continuation that is ready run (several turns of the microtask queue and one of the loop). */
const settle = () => new Promise((r) => setImmediate(r));

t.test('room made by a release goes to the waiting pages it holds, not to all of them', async (t) => {
  const budget = new ReadBudget(4 * PAGE);
  // Ten reads, each holding the page its client takes next (always let in): 10 pages, the budget full.
  const reads = Array.from({ length: 10 }, () => new HeldPages(new ReadWindow(0, PAGE, budget)));
  for (const r of reads) await hold(r, 0, page(), false);
  t.equal(budget.held, 10 * PAGE, "each read holds its client's next page, past the budget");
  // Each read's fill has its next page ready: all wait for room.
  let held = 0;
  const waiting = reads.map((r) => hold(r, 1, page(), false).then(() => void held++));
  await settle();
  t.equal(held, 0, 'no page past the next one while the budget is full');
  // Clients take their pages: 3 MiB in the budget, room for one more page.
  for (const r of reads.slice(0, 7)) r.delete(0);
  await settle();
  t.equal(budget.held, 4 * PAGE, `one waiting page took the room, not all seven woken (${budget.held / PAGE} pages held)`);
  t.equal(held, 1);
  // The reads end: what they hold goes, and the pages still waiting are not held after.
  for (const r of reads) {
    r.window.close();
    r.clear();
  }
  const ends = await Promise.allSettled(waiting);
  t.equal(ends.filter((e) => e.status === 'rejected').length, 9, 'the nine fills still waiting end with their reads');
  t.equal(budget.held, 0, 'nothing stays counted');
});

t.test('a page the client reaches is let in past a full budget; the window still bounds the rest', async (t) => {
  const budget = new ReadBudget(0);
  const r = new HeldPages(new ReadWindow(5, PAGE, budget));
  await hold(r, 5, page(), false);
  let got = false;
  const next = hold(r, 6, page(), false).then(() => (got = true));
  await settle();
  t.notOk(got, 'a page ahead waits while the budget is spent');
  r.window.advance(6);
  await next;
  t.ok(got, 'it is let in once the client reaches it');
  await t.rejects(hold(r, 6 + 1000, page(), true), { code: 'NO_SPACE' }, 'a shared fill past the window stops at once (its other reads fetch for themselves)');
  r.window.close();
  r.clear();
  t.equal(budget.held, 0);
});
