/**
 * How `strata` reports a failure: one line on stderr, `strata: <path>: <cause>`
 * (just `strata: <cause>` when no path is involved), exit 1 when an operation
 * failed and 2 for bad usage or configuration. The cause is worded from the error's
 * code, as strerror(3) words an errno, so it reads the same whichever layer (master,
 * worker, local disk) failed; codes without a fixed wording keep their message.
 */

import { ErrorCode, StrataError, toStrataError } from '../common/errors';

/** Exit code of a failed operation. */
export const EXIT_FAILED = 1;
/** Exit code of bad usage or configuration. */
export const EXIT_USAGE = 2;

/** The cause shown for a code, whatever the message said. */
const CAUSES: Partial<Record<ErrorCode, string>> = {
  NOT_FOUND: 'no such file or directory',
  ALREADY_EXISTS: 'file exists',
  NOT_DIRECTORY: 'not a directory',
  IS_DIRECTORY: 'is a directory',
  NOT_EMPTY: 'directory not empty',
  NAME_TOO_LONG: 'file name too long',
  PERMISSION_DENIED: 'permission denied',
  NOT_PERMITTED: 'operation not permitted',
  CROSS_DEVICE: 'crosses a mount point',
  BUSY: 'busy',
  READ_ONLY: 'read-only file system',
  NO_SPACE: 'no space left',
  FILE_TOO_LARGE: 'file too large',
  UNAUTHENTICATED: 'authentication required: the cluster token is missing or wrong (see --token-file, $STRATA_TOKEN)',
};

/** A command's own wording for some codes, e.g. `{ NOT_FOUND: 'nothing is mounted there' }`. */
export type Causes = Partial<Record<ErrorCode, string>>;

/** Errors whose message already reads `<path>: <cause>`. */
const described = new WeakSet<StrataError>();

/** An error about `path` with the given cause, reported as is. */
export function pathError(path: string, code: ErrorCode, cause: string, original?: unknown): StrataError {
  const e = new StrataError(code, `${path}: ${cause}`, original === undefined ? undefined : { cause: original });
  described.add(e);
  return e;
}

/** A bad argument: exit 2. */
export function usageError(message: string): StrataError {
  const e = new StrataError('CONFIG', message);
  described.add(e);
  return e;
}

/** `err` as the failure of an operation on `path`; an error that already names its path passes through. */
export function onPath(path: string, err: unknown, causes?: Causes): StrataError {
  const e = toStrataError(err);
  if (described.has(e)) return e;
  return pathError(path, e.code, causes?.[e.code] ?? CAUSES[e.code] ?? e.message, e);
}

/** Runs `fn`; its failure is reported as one on `path`. */
export async function at<T>(path: string, fn: () => Promise<T>, causes?: Causes): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw onPath(path, err, causes);
  }
}

/** Failures already printed (eachOperand): the command ends with their exit code and prints nothing more. */
const reported = new WeakSet<StrataError>();

export function isReported(err: StrataError): boolean {
  return reported.has(err);
}

/**
 * Runs `fn` for each operand, as rm(1) or cat(1) do: a failed one is reported (its one line on
 * stderr) and the others still run; the command then fails with the first failure's exit code.
 * Bad usage (exit 2) ends it at once. `fn` returns 'stop' to end early without an error (a
 * reader of the output went away).
 */
export async function eachOperand<T>(items: readonly T[], fn: (item: T) => Promise<void | 'stop'>): Promise<void> {
  let first: StrataError | undefined;
  for (const item of items) {
    try {
      if ((await fn(item)) === 'stop') break;
    } catch (err) {
      const e = toStrataError(err);
      if (exitCodeOf(e) === EXIT_USAGE) throw e;
      process.stderr.write(errorLine(e));
      first ??= e;
    }
  }
  if (first) {
    reported.add(first);
    throw first;
  }
}

/** The exit code for an error that ends the command. */
export function exitCodeOf(err: StrataError): number {
  return err.code === 'CONFIG' || err.code === 'BAD_REQUEST' ? EXIT_USAGE : EXIT_FAILED;
}

/** The one line printed for an error that ends the command. */
export function errorLine(err: StrataError): string {
  // Messages of peers can hold newlines (a stack, a body); the report is one line.
  return `strata: ${err.message.replace(/\s*\n\s*/g, ' ').trim()}\n`;
}
