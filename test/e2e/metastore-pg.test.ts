/**
 * `strata local --metastore postgres://…`: master, worker and mount on a real
 * PostgreSQL. Files are written MUST_CACHE, so their bytes live only in the
 * worker's cache and their names only in the metastore: after the master restarts
 * (a clean stop, then a SIGKILL of the whole tree), everything read back can only
 * have come from PostgreSQL, not from a lazy reload of the under-store.
 */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pg from 'pg';
import { startLocal } from '../helpers/cluster';
import { postgresSkipReason, startPostgres } from '../helpers/postgres';

const skip = postgresSkipReason() ?? (existsSync('/dev/fuse') ? undefined : '/dev/fuse is missing');
if (skip) {
  t.plan(0, skip);
} else {
  t.test('namespace and bytes survive master restarts on PostgreSQL', async (t) => {
    const server = await startPostgres();
    t.teardown(() => server.stop());
    const args = ['--metastore', server.url, '--write-type', 'MUST_CACHE'];
    const c1 = await startLocal(t, { args });
    const big = randomBytes(3 * 1024 * 1024 + 17);
    await fsp.mkdir(path.join(c1.mnt, 'd', 'sub'), { recursive: true });
    await fsp.writeFile(path.join(c1.mnt, 'd', 'big'), big);
    await fsp.writeFile(path.join(c1.mnt, 'd', 'small'), 'hello postgres');
    await fsp.rename(path.join(c1.mnt, 'd', 'small'), path.join(c1.mnt, 'd', 'sub', 'moved'));
    await fsp.chmod(path.join(c1.mnt, 'd', 'big'), 0o600);
    await fsp.symlink('sub/moved', path.join(c1.mnt, 'd', 'link'));
    t.notOk(existsSync(path.join(c1.home, 'master', 'strata.db')), 'no SQLite file: the master keeps its namespace in PostgreSQL');
    const ufsFiles = (await fsp.readdir(c1.ufsDir, { recursive: true, withFileTypes: true })).filter((e) => !e.isDirectory());
    t.same(ufsFiles, [], 'MUST_CACHE wrote no file to the under-store (directories only)');
    const db = new pg.Client({ connectionString: server.url });
    await db.connect();
    const names = (await db.query(`SELECT name FROM edge ORDER BY name`)).rows.map((r: { name: string }) => r.name);
    await db.end();
    t.same(names, ['big', 'd', 'link', 'moved', 'sub'], 'the names are rows in PostgreSQL');
    t.equal(await c1.stop(), 0, 'a clean stop');

    const check = async (mnt: string, when: string, names = ['big', 'link', 'sub']) => {
      t.same((await fsp.readdir(path.join(mnt, 'd'))).sort(), names, `${when}: the directory`);
      t.ok((await fsp.readFile(path.join(mnt, 'd', 'big'))).equals(big), `${when}: the big file byte for byte`);
      t.equal(await fsp.readFile(path.join(mnt, 'd', 'sub', 'moved'), 'utf8'), 'hello postgres', `${when}: the renamed file`);
      t.equal((await fsp.stat(path.join(mnt, 'd', 'big'))).mode & 0o777, 0o600, `${when}: the mode`);
      t.equal(await fsp.readlink(path.join(mnt, 'd', 'link')), 'sub/moved', `${when}: the symlink`);
    };
    const reuse = { home: c1.home, mnt: c1.mnt, ufsDir: c1.ufsDir };
    const c2 = await startLocal(t, { reuse, args });
    await check(c2.mnt, 'after a restart');
    await fsp.writeFile(path.join(c2.mnt, 'd', 'after'), 'written before the crash');
    await c2.kill();

    const c3 = await startLocal(t, { reuse, args });
    await check(c3.mnt, 'after a SIGKILL and a restart', ['after', 'big', 'link', 'sub']);
    t.equal(await fsp.readFile(path.join(c3.mnt, 'd', 'after'), 'utf8'), 'written before the crash', 'a file closed before the crash');
    t.equal(await c3.stop(), 0);
  });
}
