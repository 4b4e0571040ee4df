/**
 * MountTable.open and the root store a master is started with (--ufs, --ufs-option)
 * against the root the metastore already holds. A metastore shared by several
 * masters keeps its mount table: before, a standby started with another --ufs
 * replaced the stored root at start, and every master served that store from its
 * next election on.
 */

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { SqliteMetastore } from '../../src/master/sqlite-metastore';
import { MountTable, maskOptions } from '../../src/master/mount-table';
import { StrataError } from '../../src/common/errors';

/** A logger that keeps its lines, to see the warnings. */
function capturingLogger(): { logger: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { level: number; msg: string });
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

const WARN = 40;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof StrataError ? err.code : (err as Error).message;
  }
}

t.test('the root store of a shared metastore: the stored mount table wins', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-mount-table-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const a = `mem://mount-table-a-${process.pid}`;
  const b = `mem://mount-table-b-${process.pid}`;

  const first = await MountTable.open(store, a, { 'sync.interval.ms': '100' }, { shared: true });
  t.same(await store.mounts(), [{ path: '/', uri: a, options: '{"sync.interval.ms":"100"}' }], 'the first master records its root');
  await first.close();

  const { logger, lines } = capturingLogger();
  let err: unknown;
  try {
    await MountTable.open(store, b, {}, { shared: true, logger });
  } catch (e) {
    err = e;
  }
  t.equal((err as StrataError | undefined)?.code, 'CONFIG', 'a master started with another --ufs is refused');
  t.match((err as Error | undefined)?.message ?? '', new RegExp(`root store is ${a}.*--ufs ${b}`), 'the message names both stores');
  t.same(await store.mounts(), [{ path: '/', uri: a, options: '{"sync.interval.ms":"100"}' }], 'the stored root is unchanged');

  // Same store, other options: the stored ones are used, nothing is written, and the master says so.
  await store.setMount('/lake', `mem://mount-table-lake-${process.pid}`, '{}');
  const other = await MountTable.open(store, a, { 'sync.interval.ms': '5', 'write.type': 'THROUGH' }, { shared: true, logger });
  t.equal(other.resolve([]).mount.syncIntervalMs, 100, 'the stored options of the root');
  t.same(other.list().map((m) => m.path), ['/', '/lake'], 'and the stored mounts');
  t.same((await store.mounts()).find((m) => m.path === '/')?.options, '{"sync.interval.ms":"100"}', 'nothing written');
  const warned = lines.filter((l) => l.level === WARN);
  t.equal(warned.length, 1, 'one warning');
  t.match(warned[0]?.msg ?? '', /differ from those in the shared metastore; using the stored ones/);
  t.match(JSON.stringify(lines), /THROUGH/, 'the given options are in the log');
  t.same(maskOptions({ 's3.secretAccessKey': 'hush', 's3.region': 'x' }), { 's3.secretAccessKey': '******', 's3.region': 'x' }, 'secrets are masked in such logs');
  await other.close();

  // Alike: no warning, no write.
  const alike = await MountTable.open(store, a, { 'sync.interval.ms': '100' }, { shared: true, logger });
  t.equal(lines.filter((l) => l.level === WARN).length, 1, 'no new warning when configured alike');
  await alike.close();
  t.equal(await codeOf(MountTable.open(store, b, {}, { shared: true }).then((m) => m.close())), 'CONFIG', 'still refused later');
});

t.test('the root store of a metastore one master owns: --ufs replaces it, with a warning', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-mount-table-'));
  const store = new SqliteMetastore(path.join(dir, 'strata.db'), { blockSize: 4096 });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const a = `mem://mount-table-own-a-${process.pid}`;
  const b = `mem://mount-table-own-b-${process.pid}`;
  const { logger, lines } = capturingLogger();
  await (await MountTable.open(store, a, {}, { logger })).close();
  t.equal(lines.filter((l) => l.level === WARN).length, 0, 'a first root: no warning');
  const m = await MountTable.open(store, b, {}, { logger });
  t.equal(m.resolve([]).mount.uri, b, 'the new root is used');
  t.same(await store.mounts(), [{ path: '/', uri: b, options: '{}' }], 'and recorded');
  t.match(lines.filter((l) => l.level === WARN).map((l) => l.msg).join('\n'), /the root store \(--ufs\) changed/, 'with a warning');
  await m.close();
});
