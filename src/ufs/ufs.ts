/**
 * The under-store contract. Paths are absolute within the store's root
 * ('/' is the root the URI names) and have been validated by `parsePath`;
 * drivers must still resolve them safely so nothing escapes the root.
 *
 * Contract, per method (every driver passes the same conformance suite):
 * - `stat`: null when nothing is there; directories are reported as such even in
 *   stores without real directories (a common prefix or a `dir/` marker).
 * - `list`: the direct children of a directory; NOT_FOUND if it does not exist.
 * - `read`: a stream of `[offset, offset+length)` clipped at the end of the object.
 * - `create`: a file appears (in stat and listings) only after `complete()` succeeds;
 *   `abort()` leaves nothing behind. Overwrites replace the whole object atomically.
 * - `delete`/`rmdir`: NOT_FOUND when missing; `rmdir` only removes empty directories.
 * - `rename`: moves a file or a directory tree; an existing destination file is replaced.
 */

import type { Readable } from 'node:stream';
import { StrataError } from '../common/errors';
import { parsePath } from '../common/paths';

export interface UfsStatus {
  name: string;
  type: 'file' | 'directory';
  size: number;
  mtimeMs: number;
  /** Changes whenever the content may have changed (size+mtime, or an ETag). */
  fingerprint: string;
}

export interface UfsCallOptions {
  signal?: AbortSignal;
  /**
   * `delete` of a file whose caller counts a missing object as deleted (the namespace
   * knows what it removes): a store may skip checking that it is there, and then never
   * answers NOT_FOUND. A directory at the path is left alone either way.
   */
  missingOk?: boolean;
  /**
   * `delete` only if the object is there: a missing one is quietly nothing, and nothing
   * else is touched or looked at (an S3 driver neither lists to tell a directory from a
   * missing file, nor writes a parent's marker). A driver may still answer NOT_FOUND.
   */
  ifPresent?: boolean;
  /**
   * `delete`: the parent directory need not outlive this object. A store that keeps a directory
   * by a marker otherwise writes one so the directory stays when this was its last entry; a stray
   * object's directory may have been renamed away since, and a marker would bring it back.
   */
  parentMayGo?: boolean;
  /**
   * `create`: until this time (ms since the epoch) the caller knows no directory is at the
   * path (a namespace that listed the parent within its sync interval holds no directory
   * there, and its knowledge holds until the interval runs out). A store where one path can
   * be a file and a directory at once (S3) then skips looking for one when the write
   * completes before it: a listing per write, as costly as the write itself for a small file.
   */
  noDirectoryUntil?: number;
  /**
   * `rename`: the caller knows the source is a file of this size, that the destination's
   * parent is a directory and that no directory is at the destination (as for
   * `noDirectoryUntil`, now). A store that looks before it moves (S3: a HEAD and listings around the
   * copy) may then move at once.
   */
  knownFile?: { size: number };
  /**
   * `read`: only from the version of the file with this fingerprint (UfsStatus.fingerprint); any
   * other is STORE_CHANGED, and none of its bytes come. A store that cannot make a read
   * conditional checks the version right before it reads. One whose fingerprint can change
   * while the bytes do not (S3: a copied object gets another ETag, and a directory's move copies
   * its objects) compares what does not: the size.
   */
  ifFingerprint?: string;
}

/** A streamed object write: await each `write` for back-pressure, then `complete` or `abort`. */
export interface UfsWriter {
  write(chunk: Buffer): Promise<void>;
  /**
   * Optional: appends `n` zero bytes as a hole where the store has sparse files.
   * Callers without it (or for stores without holes) write zeros.
   */
  skip?(n: number): Promise<void>;
  complete(): Promise<UfsStatus>;
  abort(): Promise<void>;
  /**
   * Optional: what this writer has put in the store so far that a crash of its
   * process would leave behind (an S3 multipart upload, a temp file), as an opaque
   * handle for the driver's `discardLeftover`; undefined while there is none.
   */
  leftover?(): string | undefined;
  /**
   * Optional, set by the caller: a writer whose `leftover()` starts naming something
   * in the middle of a write (an S3 multipart upload, once created) awaits it before
   * any data goes there, so the caller records the handle before a crash could
   * leave what it names unrecorded.
   */
  onLeftover?: () => Promise<void>;
}

export interface UnderFileSystem {
  /** The URI this store was created from, e.g. `file:///data/lake`. */
  readonly uri: string;
  stat(path: string, opts?: UfsCallOptions): Promise<UfsStatus | null>;
  list(path: string, opts?: UfsCallOptions): Promise<UfsStatus[]>;
  read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable>;
  create(path: string, opts?: UfsCallOptions): Promise<UfsWriter>;
  delete(path: string, opts?: UfsCallOptions): Promise<void>;
  mkdir(path: string, opts?: UfsCallOptions): Promise<void>;
  rmdir(path: string, opts?: UfsCallOptions): Promise<void>;
  /**
   * Moves a file or a directory. For a file, a store may answer what the destination is now
   * (its fingerprint may be new: S3 copies), which saves the caller a stat.
   */
  rename(src: string, dst: string, opts?: UfsCallOptions): Promise<UfsStatus | void>;
  /**
   * Optional: throws INVALID_ARGUMENT for a name (one path component, already valid for
   * Strata) this store cannot hold. The master asks before it makes the name.
   */
  checkName?(name: string): void;
  /**
   * Optional: the longest store path (bytes of UTF-8, with its leading '/') a file or directory
   * of this store may have (S3: its 1,024-byte keys, less the prefix). The master refuses longer
   * ones (NAME_TOO_LONG) when it makes a name, and a directory move that would make one below it.
   */
  readonly maxPathBytes?: number;
  /**
   * Optional, with UfsWriter.leftover: removes what a writer that never finished
   * left behind. A handle that does not name such a thing under this store's root
   * is refused (INVALID_ARGUMENT); one already gone is no error.
   */
  discardLeftover?(handle: string, opts?: UfsCallOptions): Promise<void>;
  /**
   * Optional: drops what the driver remembers about the store (the S3 driver's directory
   * markers), because another process may have changed it meanwhile: called when a master
   * takes over (again) from another.
   */
  forgetCaches?(): void;
  close(): Promise<void>;
}

/**
 * The path parts of the temp file a `{tmp}` handle names (local and HDFS writers);
 * INVALID_ARGUMENT unless it is a valid path whose last name matches `tempName`:
 * handles come from workers' reports, and only our own temp files may go.
 */
export function tempFileOfHandle(handle: string, tempName: RegExp): string[] {
  const tmp = parseLeftoverHandle(handle)?.tmp;
  let parts: string[] = [];
  try {
    if (typeof tmp === 'string') parts = parsePath(tmp);
  } catch {
    // refused below
  }
  if (!parts.length || !tempName.test(parts[parts.length - 1]!)) throw new StrataError('INVALID_ARGUMENT', `discard: not a temp file of this store: ${handle.slice(0, 200)}`);
  return parts;
}

/** A leftover handle's fields (drivers write them as JSON objects), or undefined when it is not one. */
export function parseLeftoverHandle(handle: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(handle);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
