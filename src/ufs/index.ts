/** Finds the under-store driver for a URI through an explicit scheme map. */

import { StrataError } from '../common/errors';
import { LocalUnderFileSystem } from './local';
import { MemoryUnderFileSystem } from './memory';
import type { S3UnderFileSystem } from './s3';
import type { HdfsUnderFileSystem } from './hdfs';
import type { UnderFileSystem } from './ufs';

export type { UnderFileSystem, UfsStatus, UfsWriter } from './ufs';

/** Per-mount options, e.g. `s3.endpoint`, `s3.region`, `hdfs.user`; each driver reads its own keys. */
export type UfsOptions = Record<string, string>;

const DRIVERS: Record<string, (uri: string, options: UfsOptions) => UnderFileSystem> = {
  'file:': (uri) => new LocalUnderFileSystem(uri),
  'mem:': (uri) => new MemoryUnderFileSystem(uri),
  // Loaded on first use: the AWS SDK takes longer to load than the rest of Strata together,
  // and undici (HDFS) is most of what a master on a local store would load besides.
  's3:': (uri, options) => new (require('./s3') as { S3UnderFileSystem: typeof S3UnderFileSystem }).S3UnderFileSystem(uri, options),
  'hdfs:': (uri, options) => new (require('./hdfs') as { HdfsUnderFileSystem: typeof HdfsUnderFileSystem }).HdfsUnderFileSystem(uri, options),
};

/** The schemes Strata can mount, for error messages and docs. */
export const SUPPORTED_SCHEMES = Object.keys(DRIVERS).map((s) => s.slice(0, -1));

/** Creates the driver for `uri`; an unknown or malformed URI is a CONFIG error. */
export function createUfs(uri: string, options: UfsOptions = {}): UnderFileSystem {
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
  return driver(uri, options);
}
