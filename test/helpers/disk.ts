/** Disk facts tests compare against what the worker claims. */

import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** Bytes of page files under a tier directory (`<dir>/<block>/<page>`; temp files excluded). */
export function pageBytesUnder(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const b of readdirSync(dir)) {
    if (!/^[0-9]+$/.test(b)) continue; // .tmp, .incoming, .page-size
    for (const p of readdirSync(path.join(dir, b))) n += statSync(path.join(dir, b, p)).size;
  }
  return n;
}

/** Drops the kernel's page cache, so reads go through FUSE and the workers again; false without root. */
export function dropCaches(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}
