/**
 * A page of a directory's listing read on its own (after a name): what it vouches for
 * (freshForMs), and whether it re-checks the directory with its store first (`syncFirst`,
 * for a mount's page read after opens that sent no lookup).
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';

const logger = pino({ level: 'silent' });
let n = 0;

async function setup(t: { teardown(fn: () => unknown): void }, syncIntervalMs: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-list-pages-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  const uri = `mem://list-pages-${process.pid}-${++n}`;
  const ufs = new MemoryUnderFileSystem(uri);
  const mounts = await MountTable.open(store, uri, {});
  const ns = new Namespace({ table: store, mounts, syncIntervalMs, logger });
  await ufs.mkdir('/d');
  t.teardown(async () => {
    await ns.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const put = async (p: string, data: string) => {
    const w = await ufs.create(p);
    await w.write(Buffer.from(data));
    await w.complete();
  };
  const page = async (after: string | null, syncFirst: boolean) => {
    const pages = ns.listPagesAsOf('/d', 100, after, false, syncFirst);
    const first = await pages.next();
    await pages.return(undefined);
    return first.done ? undefined : first.value;
  };
  return { ns, ufs, put, page };
}

t.test('a page after a name re-checks a stale directory with its store only when asked to', async (t) => {
  const { ns, put, page } = await setup(t, 2000);
  await put('/d/a', 'a');
  await put('/d/b', 'b');
  t.same((await ns.list('/d')).map((e) => e.name), ['a', 'b'], 'listed once');
  const fresh = await page('a', false);
  t.ok(fresh && fresh.freshForMs > 0 && fresh.freshForMs <= 2000, `just listed: vouched for ${fresh?.freshForMs} ms`);
  await put('/d/c', 'put straight into the store');
  t.same((await page('a', true))?.entries.map((e) => e.name), ['b'], 'within the interval, syncFirst does not list the store again');
  await new Promise((r) => setTimeout(r, 2200));
  const stale = await page('a', false);
  t.same(stale?.entries.map((e) => e.name), ['b'], 'past the interval, without syncFirst: the table as it was');
  t.equal(stale?.freshForMs, 0, 'and vouched for by nobody');
  const synced = await page('a', true);
  t.same(synced?.entries.map((e) => e.name), ['b', 'c'], 'with syncFirst: the store was listed again first');
  t.ok(synced && synced.freshForMs > 0, 'and the page is vouched for');
});

t.test("a page vouches no longer than its oldest stored file: one its directory's listing left alone", async (t) => {
  const { ns, ufs, put, page } = await setup(t, 2000);
  await put('/d/a', 'a');
  await put('/d/b', 'b');
  await ns.list('/d');
  await new Promise((r) => setTimeout(r, 2200));
  // The store's directory vanishes: listing it marks the directory synced, its files stay until looked up.
  await ufs.delete('/d/a');
  await ufs.delete('/d/b');
  await ufs.rmdir('/d');
  const all = await page(null, false);
  t.same(all?.entries.map((e) => e.name), ['a', 'b'], 'the listing found nothing: the files stay until each is looked up');
  t.equal(all?.freshForMs, 0, 'so the page vouches for nothing');
  const after = await page('a', true);
  t.same(after?.entries.map((e) => e.name), ['b'], 'b is still in the table');
  t.equal(after?.freshForMs, 0, 'but not vouched for: its next lookup asks the store');
});
