/**
 * The mount's record of inodes without security.capability (the kernel asks for it
 * before every write; the binding answers from a mirror of this record). What it
 * must never do is vouch for "no capability" after one may have been set.
 */

import t from 'tap';
import { NoCapabilityCache } from '../../src/fuse/fuse-mount';

function withMirror(windowMs = 60_000) {
  const mirror = new Map<number, number>();
  const c = new NoCapabilityCache(windowMs, (ino, ms) => (ms > 0 ? mirror.set(ino, ms) : mirror.delete(ino)));
  return { c, mirror };
}

t.test('an answer that crossed a forget of its inode is not added', async (t) => {
  const { c, mirror } = withMirror();
  const token = c.token(7); // taken before asking the master
  c.forget(7); // meanwhile: a setxattr here, or the feed reports a change
  c.add(7, -1, token); // the master's (older) "none" arrives
  t.notOk(c.has(7), 'not remembered');
  t.notOk(mirror.has(7), 'not mirrored into the binding');
  const fresh = c.token(7);
  c.add(7, -1, fresh);
  t.ok(c.has(7) && mirror.get(7) === 60_000, 'an answer with no forget since is remembered and mirrored');
});

t.test('feed changes forget what is older than them, not what is as new', async (t) => {
  const { c, mirror } = withMirror();
  c.add(3, 10, c.token(3)); // known without one as of seq 10 (the create's own change)
  c.changed(3, 9);
  c.changed(3, 10);
  t.ok(c.has(3) && mirror.has(3), 'changes up to seq 10 are the create itself');
  c.changed(3, 11);
  t.notOk(c.has(3), 'a later change forgets it');
  t.notOk(mirror.has(3), 'in the binding too');
  c.add(4, -1, c.token(4));
  c.changed(4, 1);
  t.notOk(c.has(4), 'an answer of the master knows no seq: any change forgets it');
});

t.test('a lost or reset feed forgets everything; entries expire; a zero window keeps nothing', async (t) => {
  const { c, mirror } = withMirror();
  for (const ino of [1, 2, 3]) c.add(ino, -1, c.token(ino));
  c.clear();
  t.same([1, 2, 3].map((i) => c.has(i)), [false, false, false]);
  t.equal(mirror.size, 0, 'the binding forgot them too');
  const short = withMirror(20);
  short.c.add(5, -1, short.c.token(5));
  await new Promise((r) => setTimeout(r, 40));
  t.notOk(short.c.has(5), 'expired after its window');
  const none = withMirror(0);
  none.c.add(6, -1, none.c.token(6));
  t.notOk(none.c.has(6) || none.mirror.has(6), 'attribute timeout 0: nothing is remembered');
});
