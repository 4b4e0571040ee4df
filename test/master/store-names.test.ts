/**
 * Names a mount's store cannot hold are refused when they are made, with EINVAL, not
 * acknowledged and then never stored: HDFS refuses ':' in names (DFSUtil.isValidName).
 * A Namespace over the WebHDFS stand-in (test/helpers/webhdfs-server.ts, not Hadoop).
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { startWebHdfsStandIn } from '../helpers/webhdfs-server';

t.test("an hdfs:// mount refuses new names with ':' and keeps taking others", async (t) => {
  const hdfs = await startWebHdfsStandIn();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-store-names-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const mounts = await MountTable.open(sqlite, hdfs.uri('/'), { 'hdfs.user': 'strata' });
  const ns = new Namespace({ table: sqlite, mounts, syncIntervalMs: 60_000, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    await hdfs.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'made',
      (err: { code?: string }) => err.code,
    );
  t.equal(await code(ns.create('/a:b', 0o644)), 'INVALID_ARGUMENT', 'create');
  t.equal(await code(ns.mkdir('/d:1', 0o755)), 'INVALID_ARGUMENT', 'mkdir');
  t.equal(await code(ns.symlink('/l:1', 'target')), 'INVALID_ARGUMENT', 'symlink');
  await ns.create('/ok', 0o644);
  t.equal(await code(ns.rename('/ok', '/ok:2')), 'INVALID_ARGUMENT', 'rename onto such a name');
  t.equal(await code(ns.mkdir('/fine', 0o755)), 'made', 'other names are made as before');
  t.same((await ns.list('/')).map((e) => e.name).sort(), ['fine', 'ok'], 'nothing else was made');
});
