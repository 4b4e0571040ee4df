/**
 * The mount's record of pages the binding answers reads from (KeptReads): a page is
 * kept only if no change of its file through this mount overlapped the read that
 * offered it, and every kept page is let go of, once, after the binding dropped it.
 */

import t from 'tap';
import { KeptReads, type ReadServer } from '../../src/fuse/fuse-mount';
import type { PageRange } from '../../src/client/short-circuit';

const MiB = 1024 * 1024;

function setup(maxBytes?: number) {
  const log: string[] = [];
  const server: ReadServer = {
    serve: () => true,
    drop: (fh) => log.push(`drop ${fh}`),
    dropInode: (ino) => log.push(`dropInode ${ino}`),
  };
  const released: PageRange[] = [];
  const kept = new KeptReads(server, (rs) => {
    log.push(`release ${rs.length}`);
    released.push(...rs);
  }, maxBytes);
  const page = (fd: number, len = MiB): PageRange => ({ fd, pos: 0, len, page: { refs: 1 }, inMemory: true });
  return { kept, released, log, page };
}

t.test('a read that began before or during a change of its file keeps nothing', async (t) => {
  const { kept, page } = setup();
  const before = kept.keeper(1, 42)!;
  const done = kept.changing(42);
  const during = kept.keeper(1, 42)!;
  t.notOk(before.offer(0, page(10)), 'a read that began before the change');
  t.notOk(during.offer(MiB, page(11)), 'a read that began while it runs');
  done();
  t.notOk(during.offer(2 * MiB, page(12)), 'a read that overlapped its end');
  t.ok(kept.keeper(1, 42)!.offer(3 * MiB, page(13)), 'a read that began after it');
  t.ok(kept.keeper(1, 7)!.offer(0, page(14)), 'another file is not held up');
  t.equal(kept.pages, 2);
});

t.test('a change drops the pages of every handle of its file, once, before it runs', async (t) => {
  const { kept, released, log, page } = setup();
  t.ok(kept.keeper(1, 42)!.offer(0, page(10)));
  t.ok(kept.keeper(2, 42)!.offer(MiB, page(11)));
  t.ok(kept.keeper(3, 9)!.offer(0, page(12)));
  const done = kept.changing(42);
  t.same(log, ['dropInode 42', 'release 1', 'release 1'], 'the binding dropped them before they were let go of');
  t.same(released.map((r) => r.fd).sort(), [10, 11]);
  t.equal(kept.pages, 1, "the other file's page stays");
  done();
  kept.closing(3);
  t.same(log.slice(-2), ['drop 3', 'release 1'], 'closing drops, then lets go');
  kept.closing(3);
  t.equal(log.length, 5, 'a second close does nothing');
});

t.test('pages off the 1 MiB unit, pages kept already and pages over the byte cap are refused; stale and clear let go', async (t) => {
  const { kept, released, page } = setup(3 * MiB);
  const k = kept.keeper(1, 5)!;
  t.notOk(k.offer(64 * 1024, page(20, 64 * 1024)), 'a 64 KiB page off the unit');
  t.ok(k.offer(0, page(21)));
  t.notOk(k.offer(0, page(22)), 'the same page twice');
  t.ok(k.offer(MiB, page(23, 2 * MiB)));
  t.notOk(k.offer(3 * MiB, page(24)), 'past 3 MiB kept');
  k.stale();
  t.same(released.map((r) => r.fd), [21, 23], 'a reader that changed blocks lets go of its pages');
  t.ok(kept.keeper(2, 5)!.offer(0, page(25)));
  kept.clear();
  t.equal(kept.pages, 0);
  t.same(released.map((r) => r.fd), [21, 23, 25]);
});

t.test('without a binding nothing is kept', async (t) => {
  const kept = new KeptReads(undefined, () => undefined);
  t.equal(kept.keeper(1, 1), undefined);
});
