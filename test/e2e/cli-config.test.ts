/** Configuration sources, `strata conf list`, the generated README table, and `strata doctor`. */

import t from 'tap';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { REPO, runCli, tempRoot } from '../helpers/cluster';
import { configTableMarkdown, resolveConfigSources } from '../../src/common/config';

type Row = { key: string; value: string; source: string };

t.test("the README's configuration table is the generated one", async (t) => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const m = /<!-- config-table:start[^>]*-->\n([\s\S]*?)\n<!-- config-table:end -->/.exec(readme);
  t.ok(m, 'the README has the table markers');
  t.equal(m![1], configTableMarkdown(), 'regenerate with `strata conf table` when a key changes');
});

t.test('defaults < file < env < flags, each shown with its source', async (t) => {
  const root = tempRoot();
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const home = path.join(root, 'home');
  await fsp.mkdir(home);
  await fsp.writeFile(path.join(home, 'strata.json'), JSON.stringify({ blockSize: '128MiB', logLevel: 'debug', readType: 'NO_CACHE', ufs: 's3://b/p?x', master: 'http://user:hunter2@127.0.0.1:1' }));
  const env = { STRATA_HOME: home, STRATA_READ_TYPE: 'CACHE_PROMOTE' };
  const r = await runCli(['conf', 'list', '--json'], env);
  t.equal(r.code, 0, r.stderr);
  const rows = new Map((JSON.parse(r.stdout) as Row[]).map((x) => [x.key, x]));
  const file = path.join(home, 'strata.json');
  t.same(rows.get('blockSize'), { ...rows.get('blockSize'), value: String(128 * 1024 * 1024), source: `file ${file}` }, 'from <home>/strata.json');
  t.same(rows.get('readType'), { ...rows.get('readType'), value: 'CACHE_PROMOTE', source: 'env STRATA_READ_TYPE' }, 'env beats the file');
  t.equal(rows.get('pageSize')!.source, 'default');
  t.notMatch(rows.get('master')!.value, /hunter2/, 'a password in a URL is masked');
  const text = await runCli(['conf', 'list', '--log-level', 'warn'], env);
  t.match(text.stdout, /logLevel\s+warn\s+flag --log-level/, 'a flag beats the file; text output shows the source');

  const direct = resolveConfigSources({ blockSize: '4MiB', config: file }, {});
  t.equal(direct.config.blockSize, 4 * 1024 * 1024);
  t.equal(direct.sources.blockSize, 'flag --block-size');
  t.equal(direct.sources.logLevel, `file ${file}`, '--config names the file explicitly');
});

t.test('a bad config file stops with the key, the value and the file', async (t) => {
  const root = tempRoot();
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const f = path.join(root, 'c.json');
  const cases: [string, RegExp][] = [
    ['{"blockSize": "3MiB"}', /invalid blockSize='3MiB' \(from .*c\.json\): expected a power of two/],
    // JSON numbers get the checks strings get.
    ['{"blockSize": 1000}', /invalid blockSize='1000' \(from .*c\.json\): expected a power of two/],
    ['{"masterPort": 99999}', /invalid masterPort='99999' .*expected a port number/],
    ['{"leaderLeaseMs": 10}', /invalid leaderLeaseMs='10' .*expected a lease in ms/],
    ['{"feedLeaseMs": 1.5}', /invalid feedLeaseMs='1.5' .*expected an integer/],
    ['{"heartbeatIntervalMs": 0}', /invalid heartbeatIntervalMs='0' .*expected a period in ms from 10/],
    ['{"workerTimeoutMs": -5}', /invalid workerTimeoutMs='-5' .*expected a time in ms from 100/],
    ['{"syncIntervalMs": -7}', /invalid syncIntervalMs='-7' .*expected -1 \(never\), 0 \(always\) or a time in ms/],
    ['{"blokSize": 1}', /unknown key 'blokSize'/],
    ['{not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
  ];
  for (const [body, want] of cases) {
    await fsp.writeFile(f, body);
    const r = await runCli(['conf', 'list', '--config', f]);
    t.equal(r.code, 2, `exit 2 for ${body}`);
    t.match(r.stderr, want);
  }
  const level = await runCli(['conf', 'list'], { STRATA_LOG_LEVEL: 'loud' });
  t.equal(level.code, 2, 'a log level pino does not know is bad configuration (exit 2), not a failure');
  t.match(level.stderr, /invalid logLevel='loud' \(from \$STRATA_LOG_LEVEL\): expected fatal, error, warn, info, debug, trace or silent/);
  const missing = await runCli(['conf', 'list', '--config', path.join(root, 'nope.json')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read config file .*nope\.json: ENOENT/);
});

t.test('leaderElection metastore needs a postgres:// metastore', async (t) => {
  const root = tempRoot();
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const ufs = path.join(root, 'ufs');
  await fsp.mkdir(ufs);
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--ufs', `file://${ufs}`, '--leader-election', 'metastore']);
  t.equal(r.code, 2, 'exit 2 with a SQLite metastore');
  t.match(r.stderr, /leaderElection 'metastore' needs a postgres:\/\/ metastore/);
  const bad = await runCli(['conf', 'list'], { STRATA_LEADER_ELECTION: 'mysql://x' });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /expected none, metastore or a postgres:\/\/ URL/);
});

t.test('strata doctor says what is fine and what to fix', async (t) => {
  const root = tempRoot();
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const ufs = path.join(root, 'ufs');
  await fsp.mkdir(ufs);
  const env = { STRATA_HOME: path.join(root, 'home'), STRATA_MASTER: 'http://127.0.0.1:9' };
  const good = await runCli(['doctor', '--json', '--ufs', `file://${ufs}`, '--tier', `ssd:${path.join(root, 'ssd')}:1MiB`], env);
  const checks = new Map((JSON.parse(good.stdout) as { name: string; state: string; fix?: string }[]).map((c) => [c.name, c]));
  t.equal(checks.get('fuse device')?.state, 'ok');
  t.equal(checks.get('under-store')?.state, 'ok');
  t.equal(checks.get('tier SSD')?.state, 'ok');
  t.equal(checks.get('master')?.state, 'warn', 'no master at the given URL is a warning with a fix');
  t.ok(checks.get('master')?.fix);
  t.equal(good.code, 0, 'warnings alone exit 0');
  const bad = await runCli(['doctor', '--ufs', `file://${path.join(root, 'missing')}`], env);
  t.equal(bad.code, 1, 'a failed check exits 1');
  t.match(bad.stdout, /FAIL\s+under-store .*missing.*ENOENT[\s\S]*fix:/);
  await t.rejects(fsp.stat(path.join(root, 'home')), { code: 'ENOENT' }, 'doctor creates nothing');
});
