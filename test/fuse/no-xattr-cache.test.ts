/**
 * The mount's record of inodes without security.capability (the kernel asks for it
 * before every write) or without any attribute (`ls -l` asks for two per entry); the
 * binding answers from a mirror of this record. What it must never do is vouch for
 * "none" after one may have been set.
 */

import t from 'tap';
import { NoXattrCache } from '../../src/fuse/fuse-mount';

function withMirror(windowMs = 60_000) {
  /** The binding's copy: per inode, capability ms and all-names ms. */
  const mirror = new Map<number, number>();
  const all = new Map<number, number>();
  const lease = { runs: true };
  const c = new NoXattrCache(
    windowMs,
    {
      set: (ino, capMs, allMs) => {
        if (capMs > 0 || allMs > 0) mirror.set(ino, capMs);
        else mirror.delete(ino);
        if (allMs > 0) all.set(ino, allMs);
        else all.delete(ino);
      },
      clear: () => {
        mirror.clear();
        all.clear();
      },
    },
    () => lease.runs,
  );
  const has = (ino: number) => c.has(ino, NoXattrCache.CAPABILITY);
  return { c, mirror, all, has, lease };
}

t.test('an answer that crossed a forget of its inode is not added', async (t) => {
  const { c, mirror, has } = withMirror();
  const token = c.token(7); // taken before asking the master
  c.forget(7); // meanwhile: a setxattr here, or the feed reports a change
  c.add(7, -1, token); // the master's (older) "none" arrives
  t.notOk(has(7), 'not remembered');
  t.notOk(mirror.has(7), 'not mirrored into the binding');
  const fresh = c.token(7);
  c.add(7, -1, fresh);
  t.ok(has(7) && mirror.get(7) === 60_000, 'an answer with no forget since is remembered and mirrored');
});

t.test('feed changes forget what is older than them, not what is as new', async (t) => {
  const { c, mirror, has } = withMirror();
  c.add(3, 10, c.token(3)); // known without one as of seq 10 (the create's own change)
  c.changed(3, 9);
  c.changed(3, 10);
  t.ok(has(3) && mirror.has(3), 'changes up to seq 10 are the create itself');
  c.changed(3, 11);
  t.notOk(has(3), 'a later change forgets it');
  t.notOk(mirror.has(3), 'in the binding too');
  c.add(4, -1, c.token(4));
  c.changed(4, 1);
  t.notOk(has(4), 'an answer of the master knows no seq: any change forgets it');
});

t.test('a lost or reset feed forgets everything; entries expire; a zero window keeps nothing', async (t) => {
  const { c, mirror, has } = withMirror();
  for (const ino of [1, 2, 3]) c.add(ino, -1, c.token(ino));
  c.clear();
  t.same([1, 2, 3].map((i) => has(i)), [false, false, false]);
  t.equal(mirror.size, 0, 'the binding forgot them too');
  const short = withMirror(20);
  short.c.add(5, -1, short.c.token(5));
  await new Promise((r) => setTimeout(r, 40));
  t.notOk(short.has(5), 'expired after its window');
  const none = withMirror(0);
  none.c.add(6, -1, none.c.token(6));
  t.notOk(none.has(6) || none.mirror.has(6), 'attribute timeout 0: nothing is remembered');
});

t.test('an inode known without any attribute answers every name; one known without the capability only that one', async (t) => {
  const { c, mirror, all, has } = withMirror();
  c.add(8, -1, c.token(8));
  t.ok(has(8), 'no capability');
  t.notOk(c.has(8, 'security.selinux') || c.hasNone(8), 'nothing known about other names');
  t.notOk(all.has(8), 'the binding answers only the capability');
  c.add(9, 4, c.token(9), true); // a file this mount created, as of its create (seq 4)
  t.ok(c.has(9, 'security.selinux') && c.has(9, 'user.x') && has(9) && c.hasNone(9), 'every name, and listxattr');
  t.ok(all.has(9), 'mirrored for every name');
  c.add(9, -1, c.token(9));
  t.ok(c.hasNone(9), 'a narrower answer later does not narrow what is known');
  c.changed(9, 5);
  t.notOk(c.has(9, 'user.x') || has(9) || all.has(9), 'a later change forgets it, in the binding too');
});

t.test('a listing adds what it showed as of its seq, never across a change the feed reported after it or a forget here', async (t) => {
  const { c, mirror, all, has } = withMirror();
  const tokens = c.tokens(); // taken before the listing is asked for
  c.changed(10, 7); // the feed reports changes older than the listing (making these files, say)
  c.changed(12, 20); // and one newer than it, before its answer came in
  c.forget(11); // a setxattr here meanwhile
  for (const ino of [10, 11, 12, 14]) c.addListed(ino, 15, tokens, 120_000);
  t.ok(c.hasNone(10) && all.get(10) === 120_000, 'a change older than the listing does not stop it (its own window)');
  t.equal(mirror.get(10), 60_000, 'the capability alone for the attribute timeout, as other answers');
  t.notOk(c.hasNone(11), 'the inode changed here meanwhile is not remembered');
  t.notOk(c.hasNone(12), 'nor the one changed after the listing read it');
  t.ok(c.hasNone(14), 'the others are');
  c.changed(14, 15);
  t.ok(c.hasNone(14), 'a change the listing already shows keeps it');
  c.changed(14, 16);
  t.notOk(c.hasNone(14) || has(14), 'a later one forgets it');
  const before = c.tokens();
  c.clear();
  c.addListed(13, 15, before, 120_000);
  t.notOk(c.hasNone(13), 'after a reset, nothing from a listing asked before it');
  c.addListed(12, 15, c.tokens(), 120_000);
  t.ok(c.hasNone(12), 'a reset starts the seqs anew (a new master counts from its own)');
});

t.test('what is known of inodes without any attribute holds only while the feed lease runs', async (t) => {
  const { c, has, lease } = withMirror();
  c.addListed(20, 5, c.tokens(), 120_000);
  c.add(21, 6, c.token(21), true); // a file this mount created
  t.ok(c.hasNone(20) && c.has(21, 'user.x'), 'under the lease: every name');
  lease.runs = false; // the mount stalled: another client's setxattr may have been answered meanwhile
  t.notOk(c.has(20, 'user.x') || c.hasNone(20) || c.has(21, 'user.x') || c.hasNone(21), 'past it: no name but the capability');
  t.ok(has(20) && has(21), 'the capability, known for the attribute timeout as other answers are, still is');
  lease.runs = true;
  t.ok(c.hasNone(20), 'a renewed lease (no change reported meanwhile) vouches again');
});

t.test('a reset forgets in the binding also what this record let go of', async (t) => {
  const { c, mirror, all } = withMirror();
  const tokens = c.tokens();
  c.addListed(3, 1, tokens, 120_000);
  for (let i = 0; i < 131_072; i++) c.addListed(1_000_000 + i, 1, tokens, 120_000);
  t.notOk(c.hasNone(3), 'the oldest went from the record');
  t.ok(all.has(3), 'the binding still answers for it');
  c.clear();
  t.equal(all.size + mirror.size, 0, 'after a reset the binding answers for none');
});
