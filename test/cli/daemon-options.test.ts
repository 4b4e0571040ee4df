/** The V8 options the daemons run with: given by `strata local` to its parts and by bin/strata's shebang. */

import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { DAEMON_NODE_OPTIONS, withDaemonOptions } from '../../src/cli/main';
import { CLI, startLocal } from '../helpers/cluster';

t.test('withDaemonOptions adds what is missing and keeps what the user chose', async (t) => {
  t.same(withDaemonOptions([]), DAEMON_NODE_OPTIONS);
  t.same(withDaemonOptions(['--inspect']), ['--inspect', ...DAEMON_NODE_OPTIONS]);
  // A value the user gave (either spelling) wins.
  t.same(withDaemonOptions(['--initial-old-space-size=64']), ['--initial-old-space-size=64']);
  t.same(withDaemonOptions(['--initial_old_space_size=256']), ['--initial_old_space_size=256']);
});

t.test("bin/strata's shebang passes the same options", async (t) => {
  const first = readFileSync(CLI, 'utf8').split('\n')[0]!;
  t.equal(first, `#!/usr/bin/env -S node ${DAEMON_NODE_OPTIONS.join(' ')}`);
});

t.test('strata local starts its master, worker and mount with them', async (t) => {
  const c = await startLocal(t);
  const children = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === c.proc.pid ? [readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')] : [];
      } catch {
        return []; // gone meanwhile
      }
    });
  const parts = children.map((argv) => argv[argv.findIndex((a) => a.endsWith('main.js') || a.endsWith('strata')) + 1]).sort();
  t.same(parts, ['master', 'mount', 'worker'], 'three parts');
  for (const argv of children) for (const o of DAEMON_NODE_OPTIONS) t.ok(argv.includes(o), `${argv.slice(0, 3).join(' ')} … has ${o}`);
});
