/**
 * A cluster across hosts: five network namespaces on one bridge (helpers/netns.ts).
 * Host m runs PostgreSQL and two masters that share it for the namespace and the
 * leader lease (a leader and a standby); hosts w1, w2 and w3 each run a worker;
 * w1 and w2 each run a FUSE mount too. Every daemon listens on its host's own
 * address and requires the cluster token; every worker and mount has its host's
 * id (`--host-id`), as real hosts have distinct machine ids. The under-store is a
 * directory every host sees (the machine's file system), as a shared bucket would be.
 *
 * What a user sees:
 * - a file written through the mount on w1 reads back identical through the mount on w2;
 * - a mount reads the blocks of its own host's worker from that worker's page files
 *   (short-circuit: the worker serves none of those bytes over the network), and
 *   the blocks of other hosts' workers over the network;
 * - w3 cut off (its switch port down) is marked lost within the worker timeout,
 *   and both mounts go on reading its files with the right bytes, from another
 *   worker that fills them from the under-store;
 * - plugged in again, w3 rejoins live with its blocks and serves them again.
 * It reports the time to lost, the reads' latency during the cut and the time to rejoin.
 */

import t from 'tap';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, rmSync } from 'node:fs';
import * as path from 'node:path';
import { CLI, forceUnmount, isMounted, tempRoot } from '../helpers/cluster';
import { HostLab, makeHostLab, netnsSkipReason } from '../helpers/netns';
import { PostgresServer, postgresSkipReason, startPostgres } from '../helpers/postgres';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Short, so losing and rejoining take seconds: a worker beats every HEARTBEAT_MS and is lost after WORKER_TIMEOUT_MS of silence. */
const HEARTBEAT_MS = 500;
const WORKER_TIMEOUT_MS = 3000;
/** A mount waiting on a worker checks its /healthz this often (and gives up after 5 s without an answer). */
const PROBE_INTERVAL_MS = 1000;
const LEASE_MS = 3000;
/** Every port is free on a new host: the ports the README names. */
const MASTER_PORTS = [19998, 19999];
const WORKER_PORT = 29999;
const PG_PORT = 5432;
const WORKER_HOSTS = ['w1', 'w2', 'w3'] as const;
const MOUNT_HOSTS = ['w1', 'w2'] as const;
type WorkerHost = (typeof WORKER_HOSTS)[number];
type MountHost = (typeof MOUNT_HOSTS)[number];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fuseSkipReason(): string | undefined {
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (spawnSync('sh', ['-c', 'command -v fusermount3 || command -v fusermount'], { stdio: 'ignore' }).status !== 0) return 'no fusermount (apt-get install fuse3)';
  return undefined;
}

const skipReason = netnsSkipReason() ?? postgresSkipReason() ?? fuseSkipReason();

function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const running = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

/** Sum of the samples of a Prometheus metric whose labels include `labels`. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + ' ') && !line.startsWith(name + '{')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface WorkerReport {
  id: number;
  address: string;
  host: string;
  state: 'live' | 'lost';
}

interface StatJson {
  path: string;
  size: number;
  blocks: { id: number; locations: { worker: number }[] }[];
}

t.test(`multi-host cluster in network namespaces: short-circuit only beside the worker, a cut-off worker is lost and rejoins`, { skip: skipReason ? `multi-host test skipped: ${skipReason}` : false }, async (t) => {
  const root = tempRoot('strata-multi-host-');
  const token = randomBytes(24).toString('base64url');
  const daemons: { role: string; proc: ChildProcess }[] = [];
  const mountDirs: string[] = [];
  let lab: HostLab | undefined;
  let pg: PostgresServer | undefined;

  // The last resort when the test process ends without its teardown (killed on a timeout): nothing may outlive it.
  const removeNow = () => {
    for (const d of daemons) if (running(d.proc)) d.proc.kill('SIGKILL');
    for (const dir of mountDirs) {
      forceUnmount(dir);
      if (isMounted(dir)) spawnSync('umount', ['-l', dir]);
    }
    void pg?.stop(); // synchronous inside: pg_ctl stop -m immediate, then rm
    lab?.remove();
    try {
      rmSync(root, { recursive: true, force: true });
    } catch {
      // a mount that would not go away; the namespaces and processes are gone at least
    }
  };
  // Killed by a signal (a runner's timeout), clean up first, then die of it as we would have.
  const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGALRM'] as const;
  const onSignal = (sig: NodeJS.Signals) => {
    for (const s of SIGNALS) process.off(s, onSignal);
    removeNow();
    process.kill(process.pid, sig);
  };
  process.once('exit', removeNow);
  for (const s of SIGNALS) process.on(s, onSignal);
  t.teardown(async () => {
    // A host still cut off would leave its daemons waiting on the network while they stop.
    for (const h of WORKER_HOSTS) {
      try {
        lab?.restore(h);
      } catch {
        // the lab is half made or gone
      }
    }
    // Mounts first (SIGTERM flushes and unmounts), then workers, then masters.
    for (const kind of ['mount', 'worker', 'master']) {
      const group = daemons.filter((d) => d.role.startsWith(kind) && running(d.proc));
      for (const d of group) d.proc.kill('SIGTERM');
      await Promise.all(group.map((d) => waitExit(d.proc, 10_000)));
    }
    for (const d of daemons) if (running(d.proc)) d.proc.kill('SIGKILL');
    await Promise.all(daemons.map((d) => waitExit(d.proc, 5_000)));
    removeNow();
    process.off('exit', removeNow);
    for (const s of SIGNALS) process.off(s, onSignal);
  });

  const startedAt = Date.now();
  /** Seconds since the start at the end of each phase, for the closing comment. */
  const phases: string[] = [];
  const phaseDone = (name: string) => phases.push(`${name} ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  lab = makeHostLab(['m', ...WORKER_HOSTS]);
  const addr = (h: string) => lab!.host(h).address;
  const clusterEnv = { STRATA_LOG_LEVEL: 'warn', STRATA_LOG_FORMAT: 'json', STRATA_TOKEN: token };

  /** Runs `argv` on a host to its end; stdout as bytes (`fs cat` prints file contents). */
  const runOn = (host: string, argv: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve) => {
      const [file, ...args] = lab!.on(host, argv);
      const p = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...clusterEnv, ...env } });
      const out: Buffer[] = [];
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => out.push(d));
      p.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(out), stderr });
      });
    });
  const cli = (host: string, args: string[], env: NodeJS.ProcessEnv = {}) => runOn(host, [process.execPath, CLI, ...args], env);
  /**
   * GETs with the cluster token, from a host (the test's own namespace has no route to the lab),
   * all in one process: a node start costs more than the requests.
   */
  const httpGetAll = async (host: string, urls: string[]): Promise<string[]> => {
    const script =
      "Promise.all(process.argv.slice(1).map(async (u) => { const r = await fetch(u, { headers: { authorization: 'Bearer ' + process.env.STRATA_TOKEN }, signal: AbortSignal.timeout(5000) }); if (!r.ok) throw new Error(u + ': HTTP ' + r.status); return r.text(); }))" +
      '.then((texts) => process.stdout.write(JSON.stringify(texts)), (e) => { process.stderr.write(String(e)); process.exit(1); })';
    const r = await runOn(host, [process.execPath, '-e', script, ...urls]);
    if (r.code !== 0) throw new Error(`GET from ${host}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout.toString()) as string[];
  };
  const httpGet = async (host: string, url: string): Promise<string> => (await httpGetAll(host, [url]))[0]!;

  /** Starts a daemon on a host; resolves with its first stdout line once it says it is ready. */
  const startOn = (host: string, role: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<string>((resolve, reject) => {
      const [file, ...rest] = lab!.on(host, [process.execPath, CLI, ...args]);
      const p = spawn(file!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...clusterEnv, ...env } });
      daemons.push({ role, proc: p });
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`${role} on ${host} did not start in 60 s: ${err}`)), 60_000);
      p.stdout!.on('data', (d) => {
        out += d;
        if (/listening on|serving on|mounted at/.test(out)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      p.stderr!.on('data', (d) => {
        err += d;
        // STRATA_TEST_LOGS=1 shows every daemon's log, prefixed with its role.
        if (process.env.STRATA_TEST_LOGS) process.stderr.write(String(d).replace(/^/gm, `[${role}] `));
      });
      p.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${role} on ${host} exited (${sig ?? code}): ${err}`));
      });
    });

  const until = async <T>(what: string, probe: () => Promise<T | undefined>, ms: number, everyMs = 100): Promise<T> => {
    const start = Date.now();
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(everyMs);
    }
  };

  // ---- host m: PostgreSQL and a master pair on it ----------------------------
  pg = await startPostgres({ netns: lab.host('m').netns, listenAddress: addr('m'), port: PG_PORT, clientsFrom: lab.subnet });
  const ufsDir = path.join(root, 'ufs');
  await fsp.mkdir(ufsDir);
  const masterUrls = MASTER_PORTS.map((port) => `http://${addr('m')}:${port}`);
  const masters = masterUrls.join(',');
  const leaderOf = async (url: string) => JSON.parse(await httpGet('m', `${url}/api/v1/leader`)) as { leader: string; role: string };
  for (const [i, port] of MASTER_PORTS.entries()) {
    const name = i === 0 ? 'a' : 'b';
    await startOn('m', `master ${name}`, ['master', '--home', path.join(root, 'm', name), '--bind', addr('m'), '--port', String(port), '--ufs', `file://${ufsDir}`, '--metastore', pg.url, '--leader-election', 'metastore'], {
      STRATA_LEADER_LEASE_MS: String(LEASE_MS),
      STRATA_WORKER_TIMEOUT_MS: String(WORKER_TIMEOUT_MS),
    });
    // The first leads, the second stands by naming it: the order of the URL list is the order of the roles.
    await until(`master ${name} to take its role`, async () => ((await leaderOf(masterUrls[i]!)).leader === masterUrls[0] ? true : undefined), 15_000);
  }
  t.equal((await leaderOf(masterUrls[1]!)).role, 'standby', 'master b stands by for master a on the same PostgreSQL');

  // ---- hosts w1, w2, w3: a worker each; w1 and w2: a mount each ---------------
  const workerIds = new Map<WorkerHost, number>();
  const workerUrls = new Map<WorkerHost, string>();
  await Promise.all(
    WORKER_HOSTS.map(async (h) => {
      const out = await startOn(h, `worker ${h}`, ['worker', '--home', path.join(root, h, 'home'), '--bind', addr(h), '--port', String(WORKER_PORT), '--master', masters, '--tiers', `ssd:${path.join(root, h, 'cache')}:1GiB`, '--host-id', h], {
        STRATA_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      });
      const m = /strata worker (\d+) serving on (http:\/\/\S+)/.exec(out)!;
      workerIds.set(h, Number(m[1]));
      workerUrls.set(h, m[2]!);
    }),
  );
  const hostOfWorker = new Map([...workerIds].map(([h, id]) => [id, h]));
  const mnt = new Map<MountHost, string>();
  const mountMetrics = new Map<MountHost, string>();
  await Promise.all(
    MOUNT_HOSTS.map(async (h) => {
      const dir = path.join(root, h, 'mnt');
      await fsp.mkdir(dir, { recursive: true });
      mountDirs.push(dir);
      // Its metrics on the host's address (so with the token), as a Prometheus elsewhere would scrape them.
      const out = await startOn(h, `mount ${h}`, ['mount', '--home', path.join(root, h, 'client'), '--master', masters, '--host-id', h, dir], {
        STRATA_WORKER_PROBE_INTERVAL_MS: String(PROBE_INTERVAL_MS),
        STRATA_BIND: addr(h),
      });
      mnt.set(h, dir);
      mountMetrics.set(h, /metrics (http:\/\/\S+)\)/.exec(out)![1]!);
    }),
  );
  phaseDone('cluster up');
  t.comment(`lab ${lab.subnet}: ${[...lab.hosts.values()].map((h) => `${h.name} ${h.address}`).join(', ')}; workers ${[...workerIds].map(([h, id]) => `${h}=${id}`).join(', ')}`);

  const report = async (): Promise<WorkerReport[]> => {
    const r = await cli('m', ['fs', 'report', '--json', '--master', masters]);
    if (r.code !== 0) throw new Error(`strata fs report: ${r.stderr}`);
    return JSON.parse(r.stdout.toString()) as WorkerReport[];
  };
  // Polled while timing the loss and the rejoin: the master API straight, without a CLI start per look.
  const liveOnMaster = async (h: WorkerHost) => {
    const ws = JSON.parse(await httpGet('m', `${masterUrls[0]}/api/v1/workers`)) as { id: number; live: boolean }[];
    return ws.find((w) => w.id === workerIds.get(h))?.live;
  };
  const workers = await report();
  t.same(
    workers.map((w) => [w.host, w.state, w.address]).sort(),
    WORKER_HOSTS.map((h) => [h, 'live', workerUrls.get(h)]),
    'the master lists three live workers, each with its host id and its own address',
  );

  // Every metrics endpoint is on a lab address: all of them are scraped from m in one go.
  const workerCounters = async (hosts: readonly WorkerHost[], name: string) => {
    const texts = await httpGetAll('m', hosts.map((h) => `${workerUrls.get(h)}/metrics`));
    return new Map(hosts.map((h, i) => [h, metricValue(texts[i]!, name)]));
  };
  const served = async (h: WorkerHost) => (await workerCounters([h], 'strata_worker_served_bytes_total')).get(h)!;
  const snapshot = async () => {
    const texts = await httpGetAll('m', [...WORKER_HOSTS.map((h) => `${workerUrls.get(h)}/metrics`), ...MOUNT_HOSTS.map((h) => mountMetrics.get(h)!)]);
    const workerText = (h: WorkerHost) => texts[WORKER_HOSTS.indexOf(h)]!;
    const mountText = (h: MountHost) => texts[WORKER_HOSTS.length + MOUNT_HOSTS.indexOf(h)]!;
    return {
      served: new Map(WORKER_HOSTS.map((h) => [h, metricValue(workerText(h), 'strata_worker_served_bytes_total')])),
      client: new Map(
        MOUNT_HOSTS.map((h) => [
          h,
          {
            shortCircuit: metricValue(mountText(h), 'strata_client_read_bytes_total', { source: 'short_circuit' }),
            network: metricValue(mountText(h), 'strata_client_read_bytes_total', { source: 'worker' }),
          },
        ]),
      ),
    };
  };

  // ---- files written through the mount on w1, until each worker holds some ----
  // A new file goes to the worker its inode hashes to; w3 needs three (one per phase of the cut).
  const files = new Map<string, { bytes: Buffer; on: WorkerHost }>();
  const dir = path.join(mnt.get('w1')!, 'mh');
  await fsp.mkdir(dir);
  const holding = (h: WorkerHost) => [...files].filter(([, f]) => f.on === h).map(([name]) => name);
  for (let batch = 0; holding('w1').length < 1 || holding('w2').length < 1 || holding('w3').length < 3; batch++) {
    if (batch === 8) throw new Error(`48 files and still not every worker holds enough: ${WORKER_HOSTS.map((h) => `${h} ${holding(h).length}`).join(', ')}`);
    const written = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) {
      const name = `f${String(batch * 6 + i).padStart(2, '0')}`;
      // Not a whole number of pages: the last page of each file is a short one.
      const bytes = randomBytes(MiB + 300 * KiB + batch * 6 + i);
      await fsp.writeFile(path.join(dir, name), bytes);
      written.set(name, bytes);
    }
    const st = await cli('m', ['fs', 'stat', '--json', '/mh/*', '--master', masters]);
    t.equal(st.code, 0, `strata fs stat /mh/* says where each block is${st.stderr ? `: ${st.stderr}` : ''}`);
    for (const s of JSON.parse(st.stdout.toString()) as StatJson[]) {
      const name = path.posix.basename(s.path);
      const bytes = written.get(name);
      if (!bytes) continue;
      const holders = s.blocks.flatMap((b) => b.locations.map((l) => hostOfWorker.get(l.worker)));
      if (s.blocks.length !== 1 || holders.length !== 1 || !holders[0]) throw new Error(`${s.path}: expected one block on one worker, got ${JSON.stringify(s.blocks)}`);
      files.set(name, { bytes, on: holders[0] });
    }
  }
  const [cutRead1, cutRead2, afterRejoin] = holding('w3') as [string, string, string];
  const keptForTheCut = new Set([cutRead1, cutRead2, afterRejoin]);
  t.comment(`${files.size} files of ~1.3 MiB written through the mount on w1: ${WORKER_HOSTS.map((h) => `${h} holds ${holding(h).length}`).join(', ')}`);

  phaseDone('files placed');
  // ---- each mount reads every file (but three of w3's, kept fresh for the cut) --------
  for (const reader of ['w2', 'w1'] as const) {
    const before = await snapshot();
    const names = [...files.keys()].filter((n) => !keptForTheCut.has(n));
    const bad: string[] = [];
    for (const name of names) if (!(await fsp.readFile(path.join(mnt.get(reader)!, 'mh', name))).equals(files.get(name)!.bytes)) bad.push(name);
    const after = await snapshot();
    const bytesOn = (pred: (h: WorkerHost) => boolean) => names.filter((n) => pred(files.get(n)!.on)).reduce((s, n) => s + files.get(n)!.bytes.length, 0);
    const local = bytesOn((h) => h === reader);
    const remote = bytesOn((h) => h !== reader);
    t.same(bad, [], `the mount on ${reader} reads all ${names.length} files written through the mount on w1 byte for byte`);
    const c0 = before.client.get(reader)!;
    const c1 = after.client.get(reader)!;
    t.ok(c1.shortCircuit - c0.shortCircuit >= local, `the mount on ${reader} read the ${local} bytes held by its own host's worker from its page files (${c1.shortCircuit - c0.shortCircuit} short-circuit bytes)`);
    t.equal(after.served.get(reader)! - before.served.get(reader)!, 0, `the worker on ${reader} served none of them over the network`);
    t.ok(c1.network - c0.network >= remote, `the mount on ${reader} read the ${remote} bytes held by other hosts' workers over the network (${c1.network - c0.network} bytes)`);
    for (const h of WORKER_HOSTS.filter((w) => w !== reader)) {
      const expect = bytesOn((w) => w === h);
      const got = after.served.get(h)! - before.served.get(h)!;
      t.ok(got >= expect, `the worker on ${h} served ${got} bytes over the network for the ${expect} bytes of its files`);
    }
  }

  phaseDone('reads checked');
  // ---- w3 cut off: lost within the timeout, reads go on from elsewhere --------
  const fills = async () => [...(await workerCounters(['w1', 'w2'], 'strata_worker_ufs_read_bytes_total')).values()].reduce((a, b) => a + b, 0);
  const fillsBefore = await fills();
  const cutAt = Date.now();
  lab.cut('w3');
  const timedRead = async (reader: MountHost, name: string) => {
    const start = Date.now();
    const got = await fsp.readFile(path.join(mnt.get(reader)!, 'mh', name));
    return { ok: got.equals(files.get(name)!.bytes), ms: Date.now() - start };
  };
  // Through w1's mount at once, before the master knows; the lost state is watched meanwhile.
  const [duringCut, lostAfterMs] = await Promise.all([
    timedRead('w1', cutRead1),
    until('the master to mark w3 lost', async () => ((await liveOnMaster('w3')) === false ? Date.now() - cutAt : undefined), 30_000, 50),
  ]);
  t.ok(duringCut.ok, `right after the cut, the mount on w1 reads a file held only by w3 byte for byte (${duringCut.ms} ms)`);
  // Documented: lost after workerTimeoutMs of silence, found by an expiry pass every workerTimeoutMs/3;
  // the last beat may have been one period before the cut, and a report takes a moment.
  const lostBound = WORKER_TIMEOUT_MS + WORKER_TIMEOUT_MS / 3 + HEARTBEAT_MS + 2000;
  t.ok(lostAfterMs <= lostBound, `w3 was marked lost ${lostAfterMs} ms after the cut (timeout ${WORKER_TIMEOUT_MS} ms, bound ${lostBound} ms)`);
  t.same((await report()).map((w) => `${w.host} ${w.state}`).sort(), ['w1 live', 'w2 live', 'w3 lost'], 'strata fs report: w3 lost, w1 and w2 live');
  const afterLost = await timedRead('w2', cutRead2);
  t.ok(afterLost.ok, `with w3 lost, the mount on w2 reads another file held only by w3 byte for byte (${afterLost.ms} ms)`);
  // A mount waiting on a worker probes it every PROBE_INTERVAL_MS and gives up when a probe gets no answer in 5 s.
  const readBound = PROBE_INTERVAL_MS + 5000 + 4000;
  t.ok(duringCut.ms <= readBound && afterLost.ms <= readBound, `neither read waited on the silent worker longer than its health probe allows (bound ${readBound} ms)`);
  const filled = (await fills()) - fillsBefore;
  const cutBytes = files.get(cutRead1)!.bytes.length + files.get(cutRead2)!.bytes.length;
  t.ok(filled >= cutBytes, `w1 and w2 filled those ${cutBytes} bytes from the shared under-store (${filled} bytes read from it)`);

  phaseDone('cut');
  // ---- w3 plugged in again: live, its blocks known again, serving them ----------
  const restoredAt = Date.now();
  lab.restore('w3');
  const rejoinMs = await until('w3 to rejoin', async () => ((await liveOnMaster('w3')) === true ? Date.now() - restoredAt : undefined), 45_000, 50);
  // A heartbeat sent into the cut is answered when TCP retransmits it, or fails at its 30 s deadline.
  t.ok(rejoinMs < 40_000, `w3 is live again ${rejoinMs} ms after its link came up`);
  t.same((await report()).map((w) => `${w.host} ${w.state}`).sort(), ['w1 live', 'w2 live', 'w3 live'], 'strata fs report: all three live');
  const st = await cli('m', ['fs', 'stat', '--json', `/mh/${afterRejoin}`, '--master', masters]);
  const holders = (JSON.parse(st.stdout.toString()) as StatJson).blocks.flatMap((b) => b.locations.map((l) => hostOfWorker.get(l.worker)));
  t.same(holders, ['w3'], `the master knows again that w3 holds ${afterRejoin} (from its full report on rejoining)`);
  const servedBefore = await served('w3');
  // A new client (strata fs cat) on w1: the mounts skip w3 for a few seconds more, as they do any
  // worker that just failed them (WorkerRouter.markFailed), which says nothing about the rejoin.
  const cat = await cli('w1', ['fs', 'cat', `/mh/${afterRejoin}`, '--master', masters], { STRATA_HOST_ID: 'w1' });
  t.equal(cat.code, 0, `strata fs cat on w1${cat.stderr ? `: ${cat.stderr}` : ''}`);
  t.ok(cat.stdout.equals(files.get(afterRejoin)!.bytes), 'read from w1, the file w3 holds has the right bytes');
  const servedByW3 = (await served('w3')) - servedBefore;
  t.ok(servedByW3 >= files.get(afterRejoin)!.bytes.length, `w3 served them over the network again (${servedByW3} bytes)`);
  t.ok((await fsp.readFile(path.join(mnt.get('w2')!, 'mh', afterRejoin))).equals(files.get(afterRejoin)!.bytes), 'and the mount on w2 reads it byte for byte');

  phaseDone('rejoined');
  t.comment(`phases (time since the start): ${phases.join(', ')}`);
  t.comment(`timings: lost ${lostAfterMs} ms after the cut (worker timeout ${WORKER_TIMEOUT_MS} ms, heartbeat ${HEARTBEAT_MS} ms); reads during the cut ${duringCut.ms} ms (before lost) and ${afterLost.ms} ms (after); live again ${rejoinMs} ms after the link came up`);
});
