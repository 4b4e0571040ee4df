/** Finds the under-store driver for a URI through an explicit scheme map. */

import { StrataError } from '../common/errors';
import { LocalUnderFileSystem } from './local';
import { MemoryUnderFileSystem } from './memory';
import type { S3UnderFileSystem } from './s3';
import type { HdfsUnderFileSystem } from './hdfs';
import type { UnderFileSystem } from './ufs';
import { MeteredUnderFileSystem, UfsMeter } from './metered';

export type { UnderFileSystem, UfsStatus, UfsWriter } from './ufs';
export { UfsMeter } from './metered';

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

/**
 * The option keys each driver reads (`--option`, `--ufs-option`). Listed here rather than in
 * the drivers so checking a mount's options does not load a driver's SDK; test/ufs/options
 * checks them against what the drivers read.
 */
const DRIVER_OPTIONS: Record<string, readonly string[]> = {
  'file:': [],
  'mem:': [],
  's3:': ['s3.endpoint', 's3.region', 's3.pathStyle', 's3.accessKeyId', 's3.secretAccessKey', 's3.partSize', 's3.fixedPartSize', 's3.uploadConcurrency', 's3.maxAttempts', 's3.connectTimeoutMs', 's3.requestTimeoutMs', 's3.multipartCopyThreshold'],
  'hdfs:': ['hdfs.user', 'hdfs.scheme', 'hdfs.timeoutMs', 'hdfs.connectTimeoutMs'],
};

/** The option keys the driver of `uri`'s scheme reads (none for an unknown scheme). */
export function driverOptionKeys(uri: string): readonly string[] {
  let scheme: string;
  try {
    scheme = new URL(uri).protocol;
  } catch {
    return [];
  }
  return DRIVER_OPTIONS[scheme] ?? [];
}

/** Levenshtein distance, for "did you mean" on a misspelt option key. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/**
 * Refuses option keys the driver of `uri` does not read (CONFIG): a misspelt key
 * (`s3.endpint`) would otherwise be stored and silently do nothing. `ownKeys` are
 * keys the caller reads itself (a mount's `readonly`, `write.type` …).
 */
export function checkUfsOptions(uri: string, options: UfsOptions, ownKeys: readonly string[] = []): void {
  const known = [...ownKeys, ...driverOptionKeys(uri)];
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const near = known.filter((k) => distance(k, key) <= Math.max(2, Math.floor(k.length / 5))).sort((x, y) => distance(x, key) - distance(y, key))[0];
    const scheme = uri.slice(0, Math.max(0, uri.indexOf(':')));
    throw new StrataError(
      'CONFIG',
      `unknown option '${key}' for a ${scheme} store${near ? ` (did you mean '${near}'?)` : ''}; known: ${known.length > 0 ? known.join(', ') : 'none'}`,
    );
  }
}

/** The schemes Strata can mount, for error messages and docs. */
export const SUPPORTED_SCHEMES = Object.keys(DRIVERS).map((s) => s.slice(0, -1));

/**
 * Creates the driver for `uri`; an unknown or malformed URI is a CONFIG error. With `meter`,
 * its calls are timed and counted (metered.ts).
 */
export function createUfs(uri: string, options: UfsOptions = {}, meter?: UfsMeter): UnderFileSystem {
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
  const ufs = driver(uri, options);
  return meter ? new MeteredUnderFileSystem(ufs, meter) : ufs;
}
