/**
 * `npm run bench -- --quick` as a smoke test: every system's column gets numbers
 * and everything it started is gone afterwards. Peers that cannot run here
 * (rclone or s3fs missing and not installable) are skipped by the bench with a
 * printed reason; the test then checks only the systems that ran. Speed targets
 * are not asserted here: they live in the benchmark's own output.
 */

import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO, tempRoot } from '../helpers/cluster';

const needsRoot = process.getuid?.() !== 0 ? 'the benchmark needs root (FUSE mounts, dropping the page cache)' : false;

t.test('bench --quick fills every column and cleans up', { skip: needsRoot, timeout: 900_000 }, async (t) => {
  const root = tempRoot('strata-bench-smoke-');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const out = path.join(root, 'bench.json');
  const before = new Set(readdirSync(os.tmpdir()).filter((f) => f.startsWith('strata-bench-')));
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [path.join(REPO, 'dist', 'scripts', 'bench.js'), '--quick', '--runs', '1', '--only', 'write,read,meta', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let so = '';
    let se = '';
    p.stdout.on('data', (d) => (so += d));
    p.stderr.on('data', (d) => (se += d));
    p.on('exit', (c) => resolve({ code: c, stdout: so, stderr: se }));
  });
  t.equal(code, 0, `bench exits 0\n${stderr.slice(-2000)}`);
  t.match(stdout, /\| workload\s+\|/, 'prints the table');
  const json = JSON.parse(readFileSync(out, 'utf8')) as { rows: Record<string, unknown>[]; resources: Record<string, unknown>[] };
  const skipped = new Set([...stdout.matchAll(/skipped (rclone|s3fs): /g)].map((m) => m[1]!));
  if (skipped.size) t.comment(`peers skipped by the bench: ${[...skipped].join(', ')}`);
  const systems = ['strata', 'local', ...['rclone', 's3fs'].filter((s) => !skipped.has(s))];
  t.ok(json.rows.length >= 6, `${json.rows.length} rows`);
  for (const row of json.rows) {
    // Strata async runs only what a write type changes: writes and metadata.
    const here = /write|metadata/.test(String(row.workload)) ? [...systems, 'strataAsync'] : systems;
    for (const s of here) t.ok(typeof row[s] === 'number' && (row[s] as number) > 0, `${String(row.workload)}: ${s} has a number (${String(row[s])})`);
  }
  // CPU per GiB of the mounts' processes: Strata's daemons one by one, and every system that runs processes.
  const cpu = (id: string) => json.resources.find((r) => r.id === id);
  for (const role of ['master', 'worker', 'mount']) {
    const row = cpu(`cpu.read.cold.${role}`);
    t.ok(typeof row?.strata === 'number', `cold read CPU of the Strata ${role} is counted (${String(row?.strata)})`);
  }
  for (const [id, here] of [
    ['cpu.read.cold.system', systems.filter((s) => s !== 'local')],
    ['cpu.write.close', [...systems.filter((s) => s !== 'local'), 'strataAsync']],
  ] as const) {
    const row = cpu(id);
    for (const s of here) t.ok(typeof row?.[s] === 'number' && (row[s] as number) > 0, `${id}: ${s} has a number (${String(row?.[s])})`);
    t.equal(row?.local, null, `${id}: local disk has none (its work is the kernel's)`);
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  t.notMatch(mounts, /strata-bench-/, 'no mount of the bench is left');
  const after = readdirSync(os.tmpdir()).filter((f) => f.startsWith('strata-bench-') && !before.has(f));
  t.same(after, [], 'its temp dir is removed');
});
