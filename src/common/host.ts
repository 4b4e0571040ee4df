/** Which machine this process runs on, so a client can tell a worker on its own host. */

import { readFileSync } from 'node:fs';
import * as os from 'node:os';

let cached: string | undefined;

/** The machine id (systemd's /etc/machine-id), else the host name. */
export function hostIdentity(): string {
  if (cached) return cached;
  try {
    cached = readFileSync('/etc/machine-id', 'utf8').trim() || os.hostname();
  } catch {
    cached = os.hostname();
  }
  return cached;
}
