/** The configuration keys of standby masters: a list of master URLs, the election URL, the lease. */

import t from 'tap';
import { resolveConfig } from '../../src/common/config';
import { StrataError } from '../../src/common/errors';
import { JsonClient } from '../../src/common/json-client';

const env = {};

t.test('master takes one URL or several, comma-separated', async (t) => {
  t.equal(resolveConfig({ master: 'http://m1:19998/' }, env).master, 'http://m1:19998');
  t.equal(resolveConfig({ master: 'http://m1:19998, http://m2:19998/' }, env).master, 'http://m1:19998,http://m2:19998');
  t.throws(() => resolveConfig({ master: 'http://m1:19998,ftp://m2' }, env), { code: 'CONFIG', message: /several separated by commas/ });
  const c = new JsonClient('http://m1:19998,http://m2:19998,http://m1:19998');
  t.equal(c.baseUrl, 'http://m1:19998', 'the first URL is tried first');
  await c.close();
  t.throws(() => new JsonClient(','), StrataError);
});

t.test('leader election keys', async (t) => {
  const d = resolveConfig({}, env);
  t.equal(d.leaderElection, 'none', 'off by default: the master always leads');
  t.equal(d.leaderLeaseMs, 6000);
  t.equal(d.masterFailoverTimeoutMs, 15000);
  t.equal(resolveConfig({ leaderElection: 'postgres://strata@db:5432/strata' }, env).leaderElection, 'postgres://strata@db:5432/strata');
  t.throws(() => resolveConfig({ leaderElection: 'mysql://db/strata' }, env), { code: 'CONFIG', message: /none, metastore or a postgres:\/\/ URL/ });
  t.throws(() => resolveConfig({}, { STRATA_LEADER_LEASE_MS: '100' }), { code: 'CONFIG', message: /leaderLeaseMs/ });
  t.equal(resolveConfig({}, { STRATA_MASTER_FAILOVER_TIMEOUT_MS: '3000' }).masterFailoverTimeoutMs, 3000);
});
