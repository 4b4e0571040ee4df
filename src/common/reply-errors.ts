/**
 * Reading a peer's HTTP replies, for clients. Kept apart from http.ts so that a
 * client (the CLI, a mount) does not load the HTTP server framework at start.
 */

import { StrataError, isErrorCode } from './errors';

/** Parses a reply body as JSON; undefined when it is not JSON (a proxy's HTML page, an empty body). */
export function parseJsonOrUndefined(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Rebuilds a typed error from a peer's `{code, message}` reply. */
export function errorFromBody(status: number, body: unknown, what: string): StrataError {
  const b = body as { code?: unknown; message?: unknown } | null;
  if (b && isErrorCode(b.code)) return new StrataError(b.code, typeof b.message === 'string' ? b.message : what);
  if (status >= 500) return new StrataError('UNAVAILABLE', `${what}: HTTP ${status}`);
  return new StrataError('IO_ERROR', `${what}: HTTP ${status}`);
}
