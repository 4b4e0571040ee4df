/**
 * The metered wrapper every daemon puts around its store drivers: the store contract
 * holds through it (the shared conformance suite), each call is counted by operation
 * and result, and a master and a worker expose the counts.
 */

import t from 'tap';
import { promises as fsp, mkdtempSync, rmSync, writeFileSync, unlinkSync, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';
import { createUfs, UfsMeter } from '../../src/ufs';
import { ufsConformance, putFile, readFile, rejectsCode } from './conformance';
import { inProcessCluster } from '../helpers/in-process';
import { tempRoot } from '../helpers/cluster';

const sandbox = mkdtempSync(path.join(os.tmpdir(), 'strata-ufs-metered-'));
t.teardown(() => rmSync(sandbox, { recursive: true, force: true }));
let roots = 0;

async function metered(registry = new Registry()) {
  const root = path.join(sandbox, `root-${++roots}`);
  await fsp.mkdir(root);
  return { root, registry, ufs: createUfs(pathToFileURL(root).href, {}, new UfsMeter(registry)), cleanup: () => fsp.rm(root, { recursive: true, force: true }) };
}

/** `strata_ufs_request_seconds_count` samples of a metrics text, by "op result". */
function counts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^strata_ufs_request_seconds_count\{([^}]*)\} (\d+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out.set(`${labels.scheme} ${labels.op} ${labels.result}`, Number(m[2]));
  }
  return out;
}

ufsConformance(t, 'local, metered', async () => {
  const m = await metered();
  return { ufs: m.ufs, cleanup: m.cleanup };
});

t.test('each call is counted by store scheme, operation and result', async (t) => {
  const { ufs, registry, cleanup } = await metered();
  t.teardown(cleanup);
  t.equal(typeof ufs.checkName, 'function', "the local driver's optional checkName is there");
  t.equal(typeof ufs.discardLeftover, 'function', 'and its discardLeftover');
  t.equal(ufs.forgetCaches, undefined, 'a method the driver lacks is not made up');
  await putFile(ufs, '/a', 'hello');
  t.equal((await readFile(ufs, '/a')).toString(), 'hello', 'bytes pass through');
  t.equal(await ufs.stat('/missing'), null, 'a missing file is null, as from the driver');
  await rejectsCode(t, () => ufs.delete('/missing'), 'NOT_FOUND', 'a failed call fails as from the driver');
  await ufs.mkdir('/d');
  await ufs.rename('/a', '/d/a');
  t.same((await ufs.list('/d')).map((s) => s.name), ['a']);
  const c = counts(await registry.metrics());
  t.equal(c.get('file create ok'), 1, 'create');
  t.equal(c.get('file complete ok'), 1, 'the upload finishing');
  t.equal(c.get('file read ok'), 1, 'read');
  t.ok((c.get('file stat ok') ?? 0) >= 1, 'stat, found or not');
  t.equal(c.get('file delete NOT_FOUND'), 1, 'a failure under its error code');
  t.equal(c.get('file mkdir ok'), 1);
  t.equal(c.get('file rename ok'), 1);
  t.equal(c.get('file list ok'), 1);
});

/** The whole file through a client (open, read, release). */
async function readVia(fs: { open(p: string, f: number): Promise<number>; read(fh: number, b: Buffer, l: number, pos: number): Promise<number>; release(fh: number): Promise<void> }, p: string): Promise<string> {
  const fh = await fs.open(p, 0);
  try {
    const buf = Buffer.alloc(1024);
    const n = await fs.read(fh, buf, buf.length, 0);
    return buf.subarray(0, n).toString();
  } finally {
    await fs.release(fh);
  }
}

t.test("a master and a worker expose their store calls, a failed read among them", async (t) => {
  const ufsDir = tempRoot('strata-metered-ufs-');
  mkdirSync(ufsDir, { recursive: true });
  writeFileSync(path.join(ufsDir, 'there'), 'in the store');
  writeFileSync(path.join(ufsDir, 'gone'), 'removed behind Strata');
  const c = await inProcessCluster(t, 'metered', { ufsUri: pathToFileURL(ufsDir).href });
  const fs = await c.client('CACHE_THROUGH');
  t.equal(await readVia(fs, '/there'), 'in the store');
  await fs.getattr('/gone');
  unlinkSync(path.join(ufsDir, 'gone'));
  await t.rejects(readVia(fs, '/gone'), 'the read of an object removed behind Strata fails');
  const worker = counts(await (await fetch(`${c.workerUrl}/metrics`)).text());
  t.ok((worker.get('file read ok') ?? 0) >= 1, `the worker's store read (${JSON.stringify([...worker])})`);
  t.ok((worker.get('file read NOT_FOUND') ?? 0) >= 1, 'and its failed one, under NOT_FOUND');
  const master = counts(await (await fetch(`${c.masterUrl}/metrics`)).text());
  t.ok([...master].some(([k, n]) => /^file (list|stat) ok$/.test(k) && n > 0), `the master's listings and stats (${JSON.stringify([...master])})`);
});
