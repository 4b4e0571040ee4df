/** The Metastore conformance suite on the SQLite engine (a real file in a temp dir, reopened by every `open`). */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { metastoreConformance } from './metastore-conformance';

const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-metastore-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'strata.db');

metastoreConformance(t, async () => new SqliteMetastore(file, { blockSize: 4096 }));
