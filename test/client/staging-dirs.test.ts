/**
 * A client's staging directory: at start, what a killed client of the same home left
 * (`staging-<pid>` of a process that is gone) is removed; a live one's is not.
 */

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';

t.test('init removes the staging dirs of clients that are gone, and keeps those of live ones', async (t) => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'strata-staging-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  // A pid that was used and is gone: a child that has exited.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  t.ok(/^\d+$/.test(gone), `a dead pid (${gone})`);
  const dead = path.join(home, `staging-${gone}`);
  const live = path.join(home, `staging-${process.ppid}`);
  const other = path.join(home, 'not-staging-1');
  for (const d of [dead, live, other]) {
    mkdirSync(d);
    writeFileSync(path.join(d, 'stage-1'), 'bytes of a write whose close never returned');
  }
  const fs = new StrataFileSystem({ masterUrl: 'http://127.0.0.1:9', stagingDir: path.join(home, `staging-${process.pid}`), logger: silentLogger() });
  await fs.init();
  t.teardown(() => fs.close());
  t.notOk(existsSync(dead), 'the dead client\'s staging dir is removed');
  t.ok(existsSync(path.join(live, 'stage-1')), 'a live client\'s is kept');
  t.ok(existsSync(path.join(other, 'stage-1')), 'other names are left alone');
  t.ok(existsSync(path.join(home, `staging-${process.pid}`)), 'its own is there');
});
