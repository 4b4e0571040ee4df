/**
 * One contender for the leader lease in its own process, for tests that SIGSTOP it:
 * `node lease-contender.js PG_URL NAME LEASE_MS`. Prints one JSON line per change:
 * {event: 'elected', term} / {event: 'demoted', reason}, and {event: 'claim', leader}
 * whenever `isLeader()` (checked every 10 ms) changes, each with `at` (Date.now()).
 * SIGTERM closes it (releasing the lease) and exits.
 */

import { LeaderElection } from '../../src/master/leadership';

const [url, name, leaseMs] = process.argv.slice(2);
const election = new LeaderElection({ url: url!, name: name!, leaseMs: Number(leaseMs), address: `http://contender-${process.pid}` });
const say = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ...o, pid: process.pid, at: Date.now() }) + '\n');
election.on('elected', (term) => say({ event: 'elected', term }));
election.on('demoted', (reason) => say({ event: 'demoted', reason }));
let claimed = false;
setInterval(() => {
  const now = election.isLeader();
  if (now !== claimed) say({ event: 'claim', leader: now });
  claimed = now;
}, 10);
process.on('SIGTERM', () => {
  void election.close().then(() => process.exit(0));
});
election.start();
say({ event: 'started' });
