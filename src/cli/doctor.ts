/**
 * `strata doctor`: checks what Strata needs on this host and says what to fix:
 * FUSE (device, fusermount, our addon), the home directory, the ports, the worker
 * tier directories and their free space, the under-store, and whether a master
 * answers at the configured URL.
 */

import { authHeaders, clientToken } from '../common/auth';
import { accessSync, constants as fsc, existsSync, promises as fsp } from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as net from 'node:net';
import * as nodePath from 'node:path';
import { StrataConfig, parseBytes } from '../common/config';
import { checkUfsOptions, createUfs } from '../ufs';
import { MOUNT_OWN_OPTIONS } from '../common/protocol';
import { parseTierSpec } from '../worker/page-store';

export type CheckState = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  state: CheckState;
  detail: string;
  /** What to do about it, when not ok. */
  fix?: string;
}

const REPO = nodePath.resolve(__dirname, '..', '..', '..');

/**
 * Checks that `dir` is usable without creating anything: it exists and is
 * writable, or its nearest existing ancestor is (then it can be created).
 * Returns the directory whose filesystem it will live on.
 */
function usableDir(dir: string): { at: string; exists: boolean } {
  let at = nodePath.resolve(dir);
  while (!existsSync(at)) {
    const up = nodePath.dirname(at);
    if (up === at) break;
    at = up;
  }
  accessSync(at, fsc.R_OK | fsc.W_OK | fsc.X_OK);
  return { at, exists: at === nodePath.resolve(dir) };
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** 'ok', 'denied' (it wants a token we lack or do not match) or 'none' (nothing answers). */
/** Whether a master answers; of several (URL1,URL2), whether the leader does. */
async function masterAnswers(urls: string, token: string | undefined): Promise<'ok' | 'denied' | 'none'> {
  const answers = await Promise.all(urls.split(',').map((u) => oneMasterAnswers(u, token)));
  return answers.includes('ok') ? 'ok' : answers.includes('denied') ? 'denied' : 'none';
}

async function oneMasterAnswers(url: string, token: string | undefined): Promise<'ok' | 'denied' | 'none'> {
  try {
    const res = await fetch(`${url}/api/v1/info`, { signal: AbortSignal.timeout(2000), headers: authHeaders(token) });
    await res.body?.cancel();
    return res.ok ? 'ok' : res.status === 401 ? 'denied' : 'none';
  } catch {
    return 'none';
  }
}

export async function runDoctor(cfg: StrataConfig, ufsOptions: Record<string, string> = {}): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => out.push(c);

  // FUSE
  try {
    accessSync('/dev/fuse', fsc.R_OK | fsc.W_OK);
    add({ name: 'fuse device', state: 'ok', detail: '/dev/fuse is readable and writable' });
  } catch (err) {
    add({ name: 'fuse device', state: 'fail', detail: `/dev/fuse: ${(err as NodeJS.ErrnoException).code}`, fix: 'load the fuse module (modprobe fuse); in a container, pass --device /dev/fuse --cap-add SYS_ADMIN' });
  }
  const fm = spawnSync('sh', ['-c', 'command -v fusermount3 || command -v fusermount'], { encoding: 'utf8' });
  if (fm.status === 0) add({ name: 'fusermount', state: 'ok', detail: fm.stdout.trim() });
  else add({ name: 'fusermount', state: 'fail', detail: 'not found in PATH', fix: 'apt-get install -y fuse3' });
  const addon = nodePath.join(REPO, 'build', 'Release', 'strata_fuse.node');
  if (existsSync(addon)) add({ name: 'FUSE addon', state: 'ok', detail: addon });
  else add({ name: 'FUSE addon', state: 'fail', detail: `${addon} is missing`, fix: 'apt-get install -y libfuse3-dev pkg-config g++ make, then npm ci (or npm run build:native)' });

  // Home
  try {
    const u = usableDir(cfg.home);
    add({ name: 'home', state: 'ok', detail: u.exists ? cfg.home : `${cfg.home} (will be created under ${u.at})` });
  } catch (err) {
    add({ name: 'home', state: 'fail', detail: `${cfg.home}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, fix: 'choose a writable --home or $STRATA_HOME' });
  }

  // Master: running already, or are its ports free?
  let token: string | undefined;
  try {
    token = clientToken(cfg);
  } catch (err) {
    add({ name: 'token', state: 'fail', detail: (err as Error).message, fix: 'chmod 600 the token file, or point --token-file / $STRATA_TOKEN at the cluster token' });
  }
  const answer = await masterAnswers(cfg.master, token);
  const running = answer !== 'none';
  if (answer === 'ok') add({ name: 'master', state: 'ok', detail: `a master answers at ${cfg.master}` });
  else if (answer === 'denied') add({ name: 'master', state: 'fail', detail: `the master at ${cfg.master} requires the cluster token and ${token ? 'rejected ours' : 'we have none'}`, fix: 'point --token-file or $STRATA_TOKEN at the cluster token (the master keeps it in <home>/token)' });
  else add({ name: 'master', state: 'warn', detail: `no master answers at ${cfg.master}`, fix: 'start one (strata local, or strata master) or point --master / $STRATA_MASTER at it' });
  if (!running) {
    for (const [name, port] of [['master port', cfg.masterPort], ['worker port', cfg.workerPort]] as const) {
      if (port === 0) continue;
      if (await portFree(cfg.bind, port)) add({ name, state: 'ok', detail: `${cfg.bind}:${port} is free` });
      else add({ name, state: 'fail', detail: `${cfg.bind}:${port} is in use by another program`, fix: `stop it, or pick another port (--${name === 'master port' ? 'master-port' : 'worker-port'} N)` });
    }
  }

  // Worker tiers
  let tiers: { name: string; dir: string; capacityBytes: number }[];
  try {
    tiers =
      cfg.workerTiers === 'default'
        ? [{ name: 'SSD', dir: nodePath.join(cfg.home, 'worker', 'blocks'), capacityBytes: cfg.workerCapacity }]
        : cfg.workerTiers.split(',').filter((x) => x.trim()).map((x) => parseTierSpec(x.trim(), parseBytes));
  } catch (err) {
    add({ name: 'tiers', state: 'fail', detail: (err as Error).message, fix: 'fix --tier / $STRATA_WORKER_TIERS' });
    tiers = [];
  }
  for (const t of tiers) {
    const name = `tier ${t.name}`;
    try {
      const u = usableDir(t.dir);
      const st = await fsp.statfs(u.at);
      const free = Number(st.bavail) * Number(st.bsize);
      const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
      if (free < t.capacityBytes) add({ name, state: 'warn', detail: `${t.dir}: quota ${gib(t.capacityBytes)} but only ${gib(free)} free on that filesystem`, fix: 'lower the tier size or free space; the worker stops caching when the disk is full, not at its quota' });
      else add({ name, state: 'ok', detail: `${t.dir}: quota ${gib(t.capacityBytes)}, ${gib(free)} free` });
    } catch (err) {
      add({ name, state: 'fail', detail: `${t.dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, fix: 'create the directory or make it writable for this user' });
    }
  }

  // Under-store
  try {
    checkUfsOptions(cfg.ufs, ufsOptions, MOUNT_OWN_OPTIONS);
    const ufs = createUfs(cfg.ufs, ufsOptions);
    try {
      const t0 = Date.now();
      await ufs.list('/', { signal: AbortSignal.timeout(10_000) });
      add({ name: 'under-store', state: 'ok', detail: `${cfg.ufs} answered a listing in ${Date.now() - t0} ms` });
    } finally {
      await ufs.close();
    }
  } catch (err) {
    add({ name: 'under-store', state: 'fail', detail: `${cfg.ufs}: ${(err as Error).message}`, fix: 'check the URI, the endpoint and credentials (--ufs, --ufs-option)' });
  }
  return out;
}
