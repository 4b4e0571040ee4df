/**
 * Strata paths are absolute, '/'-separated, UTF-8. Every path that arrives from a
 * client, a flag or the wire goes through `parsePath` before it reaches the
 * namespace or an under-store, so no `..` can escape a mount or a block dir.
 */

import { StrataError } from './errors';

/** Longest name of one path component in bytes, as NAME_MAX on Linux. */
export const NAME_MAX = 255;
/** Longest whole path in bytes, as PATH_MAX on Linux. */
export const PATH_MAX = 4096;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether a string arrived as valid UTF-8: no U+FFFD (what a decoder makes of bad bytes) and no lone
 * UTF-16 surrogate (JSON can carry one; it has no UTF-8 form and would be stored as U+FFFD, another string).
 */
export function isValidUtf8Text(s: string): boolean {
  return !s.includes('\uFFFD') && !LONE_SURROGATE.test(s);
}

/** Checks one directory-entry name; throws NAME_TOO_LONG or INVALID_ARGUMENT. */
export function validateName(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new StrataError('INVALID_ARGUMENT', 'empty file name');
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX) {
    throw new StrataError('NAME_TOO_LONG', `name is longer than ${NAME_MAX} bytes: ${name.slice(0, 32)}…`);
  }
  if (name === '.' || name === '..') throw new StrataError('INVALID_ARGUMENT', `'${name}' is not allowed as a file name`);
  if (name.includes('/')) throw new StrataError('INVALID_ARGUMENT', `file name contains '/': ${name}`);
  if (name.includes('\0')) throw new StrataError('INVALID_ARGUMENT', 'file name contains a NUL byte');
  if (!isValidUtf8Text(name)) throw new StrataError('INVALID_ARGUMENT', 'file name is not valid UTF-8');
  return name;
}

/** Splits an absolute path into validated components; '/' is []. */
export function parsePath(path: unknown): string[] {
  if (typeof path !== 'string') throw new StrataError('BAD_REQUEST', 'path must be a string');
  if (!path.startsWith('/')) throw new StrataError('INVALID_ARGUMENT', `path must be absolute: ${path.slice(0, 64)}`);
  if (Buffer.byteLength(path, 'utf8') > PATH_MAX) throw new StrataError('NAME_TOO_LONG', `path is longer than ${PATH_MAX} bytes`);
  const parts = path.split('/').filter((p) => p.length > 0);
  for (const p of parts) validateName(p);
  return parts;
}

/** The canonical form of a path: leading '/', no trailing or doubled slashes. */
export function normalizePath(path: unknown): string {
  return '/' + parsePath(path).join('/');
}

export function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

export function dirname(path: string): string {
  const parts = parsePath(path);
  return '/' + parts.slice(0, -1).join('/');
}

export function basename(path: string): string {
  const parts = parsePath(path);
  return parts.length ? parts[parts.length - 1]! : '';
}
