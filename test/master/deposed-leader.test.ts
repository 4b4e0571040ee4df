/**
 * A master that no longer leads must not change the under-store (the new leader owns
 * what is at each path by then), and a change refused by the fenced table after its
 * store side ran must not look like a standby's "nothing applied" (a client sends
 * those again to the new leader, which would then delete or move a second time).
 * At the Namespace, with its `leading` check and a table that refuses as a fenced one does.
 */

import t from 'tap';
import type * as tap from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable } from '../../src/master/mount-table';
import { Namespace } from '../../src/master/namespace';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';
import { StrataError } from '../../src/common/errors';
import type { Metastore } from '../../src/master/metastore';

let n = 0;

async function setup(t: tap.Test) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-deposed-'));
  const sqlite = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  let fenced = false;
  // As PgMetastore with a fence: once the lease is gone, its writes answer NOT_LEADER.
  const table = new Proxy(sqlite, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === 'removeChild' || prop === 'rename') {
        return async (...args: unknown[]) => {
          if (fenced) throw new StrataError('NOT_LEADER', 'the lease is held by another master');
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  }) as unknown as Metastore;
  const uri = `mem://deposed-${process.pid}-${++n}`;
  const ufs = new MemoryUnderFileSystem(uri);
  const mounts = await MountTable.open(table, uri, {});
  let leading = true;
  const ns = new Namespace({ table, mounts, syncIntervalMs: 60_000, logger: pino({ level: 'silent' }), leading: () => leading });
  t.teardown(async () => {
    await ns.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const w = await ufs.create('/f');
  await w.write(Buffer.from('stored'));
  await w.complete();
  const w2 = await ufs.create('/g');
  await w2.write(Buffer.from('also stored'));
  await w2.complete();
  return { ns, ufs, depose: () => (leading = false), fence: () => (fenced = true) };
}

t.test('a master that no longer leads refuses unlink and rename before touching the store', async (t) => {
  const { ns, ufs, depose } = await setup(t);
  await ns.stat('/f'); // known to the namespace
  depose();
  await t.rejects(ns.unlink('/f'), { code: 'NOT_LEADER' }, 'unlink: NOT_LEADER (nothing applied: a client may send it to the new leader)');
  await t.rejects(ns.rename('/f', '/h'), { code: 'NOT_LEADER' }, 'rename: NOT_LEADER');
  t.ok(await ufs.stat('/f'), 'the object is untouched');
  t.equal(await ufs.stat('/h'), null, 'and was not moved');
});

t.test('a change refused by the fenced table after its store side ran answers UNAVAILABLE, not NOT_LEADER', async (t) => {
  const { ns, ufs, fence } = await setup(t);
  await ns.stat('/g');
  fence(); // the lease passed on while this master was on its way: the check above it passed
  await t.rejects(ns.unlink('/g'), { code: 'UNAVAILABLE' }, 'UNAVAILABLE: a client does not send it again elsewhere');
  t.equal(await ufs.stat('/g'), null, 'its store side had run (what a second send would repeat)');
});
