/** The Metastore conformance suite on the SQLite engine (a real file in a temp dir, reopened by every `open`), and choosing the engine. */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { openMetastore } from '../../src/master/server';
import { ROOT_INO } from '../../src/master/metastore';
import type { StrataError } from '../../src/common/errors';
import { metastoreConformance } from './metastore-conformance';

const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-metastore-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'strata.db');

metastoreConformance(t, async () => new SqliteMetastore(file, { blockSize: 4096 }));

t.test('openMetastore: the engine from the metastore URI', async (t) => {
  const opts = { blockSize: 4096, persistInitialWaitMs: 0 };
  const store = await openMetastore(`sqlite://${path.join(dir, 'sub', 'other.db')}`, opts);
  t.ok(store instanceof SqliteMetastore, 'sqlite:///absolute/path, its directory created');
  await store.close();
  for (const [uri, what] of [
    ['sqlite://relative/strata.db', 'a relative SQLite path'],
    ['mysql://strata:secret@x/y', 'an unknown scheme'],
    ['/var/lib/strata.db', 'no scheme'],
  ] as const) {
    let err: unknown;
    try {
      await openMetastore(uri, opts);
    } catch (e) {
      err = e;
    }
    t.equal((err as StrataError | undefined)?.code, 'CONFIG', what);
    t.notMatch((err as Error | undefined)?.message ?? '', /secret/, `${what}: no password in the message`);
  }
});

t.test('the change feed wakes a long poll for a change that no request reported, also after a long idle stretch', async (t) => {
  const store = new SqliteMetastore(file, { blockSize: 4096 });
  t.teardown(() => store.close());
  const feed = store.changes;
  const node = { type: 'file', mode: 0o644, uid: 0, gid: 0, persisted: false } as const;
  for (const [idleMs, name] of [
    [0, 'at-once'],
    [1500, 'after-idle'],
  ] as const) {
    const since = await feed.seq();
    const started = Date.now();
    const polled = feed.changes(feed.epoch, since, 20_000);
    // The poll backs off while nothing changes; a change still reaches the waiter within its longest interval.
    await new Promise((r) => setTimeout(r, idleMs));
    const made = await store.createChild(ROOT_INO, `fed-${name}`, node);
    const madeAt = Date.now();
    const answer = await polled;
    t.ok(answer.inos.includes(made.ino), `${name}: the new file is in the answer`);
    t.ok(Date.now() - started < 20_000 - 1000, `${name}: answered by the feed's poll, not by the end of the wait (${Date.now() - madeAt} ms after the change)`);
  }
});
