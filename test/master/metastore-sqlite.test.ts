/** The Metastore conformance suite on the SQLite engine (a real file in a temp dir, reopened by every `open`), and choosing the engine. */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { openMetastore } from '../../src/master/server';
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
