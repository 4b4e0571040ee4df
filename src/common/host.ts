/** Which machine this process runs on, so a client can tell a worker on its own host. */

import { readFileSync } from 'node:fs';
import * as os from 'node:os';

let cached: string | undefined;

/**
 * `configured` (the `hostId` key) when set, else the machine id (systemd's
 * /etc/machine-id), else the host name. Hosts that share a machine id (cloned
 * images, network namespaces on one machine) need the key: two hosts with one
 * identity would try each other's page files, which are not on their disks.
 */
export function hostIdentity(configured?: string): string {
  if (configured) return configured;
  if (cached) return cached;
  try {
    cached = readFileSync('/etc/machine-id', 'utf8').trim() || os.hostname();
  } catch {
    cached = os.hostname();
  }
  return cached;
}
