/**
 * Every error that crosses a layer boundary in Strata is a StrataError with a
 * stable code. The code decides the errno the FUSE adapter returns and the HTTP
 * status the servers send; this table is the only place that mapping lives.
 */

import { constants as os } from 'node:os';

const E = os.errno;

/** One row per error code: the errno a file-system caller sees and the HTTP status on the wire. */
export const ERROR_TABLE = {
  NOT_FOUND: { errno: E.ENOENT, status: 404 },
  ALREADY_EXISTS: { errno: E.EEXIST, status: 409 },
  NOT_DIRECTORY: { errno: E.ENOTDIR, status: 409 },
  IS_DIRECTORY: { errno: E.EISDIR, status: 409 },
  NOT_EMPTY: { errno: E.ENOTEMPTY, status: 409 },
  NAME_TOO_LONG: { errno: E.ENAMETOOLONG, status: 400 },
  INVALID_ARGUMENT: { errno: E.EINVAL, status: 400 },
  PERMISSION_DENIED: { errno: E.EACCES, status: 403 },
  /** A request without the cluster token, or with a wrong one. The reply says nothing more. */
  UNAUTHENTICATED: { errno: E.EACCES, status: 401 },
  NOT_PERMITTED: { errno: E.EPERM, status: 403 },
  CROSS_DEVICE: { errno: E.EXDEV, status: 409 },
  BUSY: { errno: E.EBUSY, status: 409 },
  /** getxattr/removexattr of an attribute that is not there. */
  NO_ATTRIBUTE: { errno: E.ENODATA, status: 404 },
  /** A symlink loop or too many links on a path. */
  TOO_MANY_LINKS: { errno: E.ELOOP, status: 400 },
  READ_ONLY: { errno: E.EROFS, status: 403 },
  NO_SPACE: { errno: E.ENOSPC, status: 507 },
  FILE_TOO_LARGE: { errno: E.EFBIG, status: 400 },
  BAD_HANDLE: { errno: E.EBADF, status: 400 },
  NOT_SUPPORTED: { errno: E.ENOTSUP, status: 501 },
  /** Malformed request: bad JSON, wrong types, missing fields. */
  BAD_REQUEST: { errno: E.EINVAL, status: 400 },
  ROUTE_NOT_FOUND: { errno: E.ENOSYS, status: 404 },
  METHOD_NOT_ALLOWED: { errno: E.ENOSYS, status: 405 },
  PAYLOAD_TOO_LARGE: { errno: E.EFBIG, status: 413 },
  /** A peer (master, worker, under-store) could not be reached or answered 5xx. */
  UNAVAILABLE: { errno: E.EIO, status: 503 },
  /**
   * This master stands by; the reply names the leader (body `leader`, header
   * `strata-leader`). Nothing was applied. Clients follow the leader and only let it
   * through as UNAVAILABLE when none leads within their failover timeout; EIO, not
   * EAGAIN, should it ever reach a caller, so programs do not spin on it.
   */
  NOT_LEADER: { errno: E.EIO, status: 503 },
  TIMEOUT: { errno: E.EIO, status: 504 },
  IO_ERROR: { errno: E.EIO, status: 500 },
  /**
   * The under-store holds another version of a file than the one the namespace knows: it was
   * changed there directly, within the sync interval. Nothing of the other version is served
   * under this one's size; the master re-checks the file, and an open after that reads the new
   * version. ESTALE, as NFS answers for a file that changed under an open handle.
   */
  STORE_CHANGED: { errno: E.ESTALE, status: 412 },
  /**
   * A same-host client handed a file over (linked it into a worker tier's incoming dir) that
   * the worker may not read: another user's staged file, made readable by its owner only. The
   * client sends the bytes over HTTP instead; EIO should it ever reach a caller.
   */
  LOCAL_FILE_UNREADABLE: { errno: E.EIO, status: 422 },
  /** Bad configuration or command line; the CLI exits with code 2. */
  CONFIG: { errno: E.EINVAL, status: 400 },
  INTERNAL: { errno: E.EIO, status: 500 },
} as const;

export type ErrorCode = keyof typeof ERROR_TABLE;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_TABLE, code);
}

/** The one error type of Strata; `code` is stable and is what callers branch on. */
export class StrataError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
  }

  get errno(): number {
    return ERROR_TABLE[this.code].errno;
  }

  get status(): number {
    return ERROR_TABLE[this.code].status;
  }

  /** The wire form: `{code, message}`. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Maps Node's system error codes (from fs, net) onto ours; unknown ones become IO_ERROR. */
const SYSTEM_CODES: Record<string, ErrorCode> = {
  ENOENT: 'NOT_FOUND',
  EEXIST: 'ALREADY_EXISTS',
  ENOTDIR: 'NOT_DIRECTORY',
  EISDIR: 'IS_DIRECTORY',
  ENOTEMPTY: 'NOT_EMPTY',
  ENAMETOOLONG: 'NAME_TOO_LONG',
  EINVAL: 'INVALID_ARGUMENT',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'NOT_PERMITTED',
  EXDEV: 'CROSS_DEVICE',
  EBUSY: 'BUSY',
  ENODATA: 'NO_ATTRIBUTE',
  ELOOP: 'TOO_MANY_LINKS',
  EROFS: 'READ_ONLY',
  ENOSPC: 'NO_SPACE',
  EDQUOT: 'NO_SPACE',
  // better-sqlite3 errors carry SQLite's code: the master's disk is full.
  SQLITE_FULL: 'NO_SPACE',
  EFBIG: 'FILE_TOO_LARGE',
  ECONNREFUSED: 'UNAVAILABLE',
  ECONNRESET: 'UNAVAILABLE',
  EPIPE: 'UNAVAILABLE',
  ETIMEDOUT: 'TIMEOUT',
  UND_ERR_CONNECT_TIMEOUT: 'TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'TIMEOUT',
  UND_ERR_SOCKET: 'UNAVAILABLE',
  UND_ERR_CLOSED: 'UNAVAILABLE',
  ABORT_ERR: 'TIMEOUT',
};

/**
 * Wraps anything thrown by Node, an SDK or a peer into a StrataError, keeping the
 * original as `cause`. Already-typed errors pass through unchanged.
 */
export function toStrataError(err: unknown, context?: string): StrataError {
  if (err instanceof StrataError) return err;
  const sys = err as NodeJS.ErrnoException | undefined;
  const code = (sys && typeof sys.code === 'string' && SYSTEM_CODES[sys.code]) || undefined;
  const detail = err instanceof Error ? err.message : String(err);
  const message = context ? `${context}: ${detail}` : detail;
  if (code) return new StrataError(code, message, { cause: err });
  if (sys && (sys.name === 'AbortError' || sys.name === 'TimeoutError')) return new StrataError('TIMEOUT', message, { cause: err });
  return new StrataError('IO_ERROR', message, { cause: err });
}

const reportedUnknown = new Set<string>();

/**
 * The negative errno for a FUSE reply. Errors without a Strata code are logged once
 * (with their stack) through `onUnknown` and become EIO, so one bug does not flood logs.
 */
export function toErrno(err: unknown, onUnknown?: (err: unknown) => void): number {
  if (err == null) return 0;
  if (err instanceof StrataError) return -err.errno;
  const wrapped = toStrataError(err);
  if (wrapped.code === 'IO_ERROR' && onUnknown) {
    const key = err instanceof Error ? `${err.name}:${err.message}` : String(err);
    if (!reportedUnknown.has(key)) {
      reportedUnknown.add(key);
      onUnknown(err);
    }
  }
  return -wrapped.errno;
}

/**
 * A store's NOT_FOUND while an object is written there (its directory or bucket gone) as
 * IO_ERROR: between Strata's parts NOT_FOUND answers a write whose file moved or went away,
 * which the writer then takes for "write it again elsewhere" or "nothing to store".
 */
export function storeWriteError(err: unknown, path: string): unknown {
  if (err instanceof StrataError && err.code === 'NOT_FOUND') return new StrataError('IO_ERROR', `the store could not take ${path}: ${err.message}`, { cause: err });
  return err;
}
