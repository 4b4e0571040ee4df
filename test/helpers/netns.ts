/**
 * Hosts for tests on one machine: each a Linux network namespace with its own
 * loopback and one interface (eth0) on a private /24, all plugged into a bridge
 * that lives in a namespace of its own (the "switch"). Nothing is added to the
 * machine's own namespace (no interface, no route, no firewall rule), so nothing
 * can collide with its networks or reach out of the lab. Unplugging a host's cable
 * at the switch (`cut`) cuts it off from every other host at once.
 *
 * Processes run on a host through `nsenter --net`, which enters only the network
 * namespace: they share the file system and the mount namespace with the test,
 * so a FUSE mount made on a host is visible to the test.
 */

import { spawnSync } from 'node:child_process';

export interface LabHost {
  /** The name the test gave it ('m', 'w1', …). */
  name: string;
  /** Its network namespace, a name under /run/netns. */
  netns: string;
  /** Its IPv4 address on the lab network. */
  address: string;
}

export interface HostLab {
  /** The lab network, a.b.c.0/24. */
  subnet: string;
  hosts: Map<string, LabHost>;
  host(name: string): LabHost;
  /** The argv that runs `argv` on `host` (nsenter into its network namespace). */
  on(host: string, argv: string[]): string[];
  /** Sets the switch port of `host` down: its eth0 loses carrier, no packet goes in or out. */
  cut(host: string): void;
  /** Sets the switch port of `host` up again. */
  restore(host: string): void;
  /** Deletes every namespace of the lab (their links and the bridge go with them). Idempotent, synchronous. */
  remove(): void;
}

/** The prefix of every namespace this helper makes; the pid after it tells whose they are. */
const PREFIX = 'strata-lab-';

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

let probed: string | undefined | null = null;

/** Why network namespaces cannot be made here (undefined when they can): tried once, with a throwaway namespace. */
export function netnsSkipReason(): string | undefined {
  if (probed !== null) return probed;
  probed = (() => {
    if (process.platform !== 'linux') return 'network namespaces are Linux only';
    if (process.getuid?.() !== 0) return 'making network namespaces needs root';
    if (!has('ip')) return 'no `ip` command (apt-get install iproute2)';
    if (!has('nsenter')) return 'no `nsenter` command (apt-get install util-linux)';
    const name = `${PREFIX}${process.pid}-probe`;
    try {
      ip(['netns', 'add', name]);
      ip(['-n', name, 'link', 'add', 'name', 'br0', 'type', 'bridge']);
      ip(['-n', name, 'link', 'add', 'name', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
      return undefined;
    } catch (err) {
      return `cannot make network namespaces with a bridge and veth pairs here: ${(err as Error).message}`;
    } finally {
      spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    }
  })();
  return probed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces of this helper whose test process is gone (a run killed before its teardown). */
function removeStale(): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (m && !alive(Number(m[1]))) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

function toInt(addr: string): number {
  return addr.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/**
 * A /24 in 10.0.0.0/8 that no route of the machine covers or overlaps. The lab is
 * sealed off anyway; a distinct subnet keeps its addresses from being confused
 * with real ones in logs and when someone looks at a run by hand.
 */
function freeSubnet(): string {
  const routes = (spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((d) => /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d))
    .map((d) => {
      const [a, len] = d.split('/');
      const bits = len === undefined ? 32 : Number(len);
      const size = 2 ** (32 - bits);
      const start = Math.floor(toInt(a!) / size) * size;
      return [start, start + size] as const;
    });
  for (let i = 0; i < 250; i++) {
    const second = 200 + ((process.pid + i) % 50);
    const third = (process.pid + 7 * i) % 250;
    const start = toInt(`10.${second}.${third}.0`);
    if (!routes.some(([s, e]) => s < start + 256 && start < e)) return `10.${second}.${third}`;
  }
  throw new Error('no free 10.x.y.0/24 for the test network');
}

/**
 * Makes one namespace per name, plugged into the switch, with addresses .1, .2, …
 * in the order given. On any failure what was made is removed before the error.
 */
export function makeHostLab(names: string[]): HostLab {
  removeStale();
  const base = `${PREFIX}${process.pid}-`;
  const sw = `${base}switch`;
  const net = freeSubnet();
  const hosts = new Map<string, LabHost>();
  const made: string[] = [];
  const remove = () => {
    for (const ns of made.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  try {
    ip(['netns', 'add', sw]);
    made.push(sw);
    // STP off (the default) forwards at once; forward_delay 0 in case a distribution turns it on.
    ip(['-n', sw, 'link', 'add', 'name', 'br0', 'type', 'bridge', 'forward_delay', '0']);
    ip(['-n', sw, 'link', 'set', 'br0', 'up']);
    names.forEach((name, i) => {
      const ns = `${base}${name}`;
      ip(['netns', 'add', ns]);
      made.push(ns);
      // Interface names are per namespace: 'port-<host>' on the switch, 'eth0' on the host.
      ip(['-n', sw, 'link', 'add', 'name', `port-${name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ip(['-n', sw, 'link', 'set', `port-${name}`, 'master', 'br0', 'up']);
      const address = `${net}.${i + 1}`;
      ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      hosts.set(name, { name, netns: ns, address });
    });
  } catch (err) {
    remove();
    throw err;
  }
  const host = (name: string): LabHost => {
    const h = hosts.get(name);
    if (!h) throw new Error(`no host '${name}' in the lab`);
    return h;
  };
  return {
    subnet: `${net}.0/24`,
    hosts,
    host,
    on: (name, argv) => ['nsenter', `--net=/run/netns/${host(name).netns}`, '--', ...argv],
    cut: (name) => ip(['-n', sw, 'link', 'set', `port-${host(name).name}`, 'down']),
    restore: (name) => ip(['-n', sw, 'link', 'set', `port-${host(name).name}`, 'up']),
    remove,
  };
}
