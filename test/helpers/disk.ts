/** Disk facts tests compare against what the worker claims. */

import { existsSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** Bytes of page files under a tier directory (`<dir>/<block>/<page>`; temp files excluded). */
export function pageBytesUnder(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const b of readdirSync(dir)) {
    if (b === '.tmp' || b === '.incoming') continue;
    for (const p of readdirSync(path.join(dir, b))) n += statSync(path.join(dir, b, p)).size;
  }
  return n;
}
