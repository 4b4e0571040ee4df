/** Finds the under-store driver for a URI through an explicit scheme map. */

import { StrataError } from '../common/errors';
import { LocalUnderFileSystem } from './local';
import { MemoryUnderFileSystem } from './memory';
import type { UnderFileSystem } from './ufs';

export type { UnderFileSystem, UfsStatus, UfsWriter } from './ufs';

const DRIVERS: Record<string, (uri: string) => UnderFileSystem> = {
  'file:': (uri) => new LocalUnderFileSystem(uri),
  'mem:': (uri) => new MemoryUnderFileSystem(uri),
};

/** The schemes Strata can mount, for error messages and docs. */
export const SUPPORTED_SCHEMES = Object.keys(DRIVERS).map((s) => s.slice(0, -1));

/** Creates the driver for `uri`; an unknown or malformed URI is a CONFIG error. */
export function createUfs(uri: string): UnderFileSystem {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new StrataError('CONFIG', `not a valid under-store URI: '${uri}' (expected e.g. file:///data)`);
  }
  const driver = DRIVERS[url.protocol];
  if (!driver) {
    throw new StrataError('CONFIG', `unknown under-store scheme '${url.protocol.slice(0, -1)}' in '${uri}' (supported: ${SUPPORTED_SCHEMES.join(', ')})`);
  }
  return driver(uri);
}
