/**
 * The cluster token: one shared secret that master, workers, mounts and the CLI
 * present as `Authorization: Bearer …` when auth is on. Daemons check it before any
 * route runs; clients send it whenever they have one, so a mixed cluster works.
 */

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync, constants as fsc } from 'node:fs';
import { isIP } from 'node:net';
import * as nodePath from 'node:path';
import { StrataError } from './errors';

/** The keys of the config that decide authentication. */
export interface AuthConfig {
  auth: string;
  bind: string;
  tokenFile: string;
  token: string;
  metricsAuth?: string;
}

/** Shortest token accepted from a file or the environment: anything shorter is guessable. */
const MIN_TOKEN_CHARS = 16;

/** True for addresses only this host can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(addr: string): boolean {
  const a = addr.replace(/^\[|\]$/g, '').toLowerCase();
  if (a === 'localhost' || a === '::1') return true;
  if (isIP(a) === 4) return a.startsWith('127.');
  if (a.startsWith('::ffff:')) return isLoopback(a.slice(7));
  return false;
}

/** Whether daemons with this config require the token: `auth`, where `auto` means "when bound beyond loopback". */
export function authRequired(cfg: Pick<AuthConfig, 'auth' | 'bind'>): boolean {
  if (cfg.auth === 'token') return true;
  if (cfg.auth === 'none') return false;
  return !isLoopback(cfg.bind);
}

function checkToken(token: string, where: string): string {
  const t = token.trim();
  if (t.length < MIN_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(t)) {
    throw new StrataError('CONFIG', `the cluster token in ${where} must be at least ${MIN_TOKEN_CHARS} printable characters without spaces`);
  }
  return t;
}

/** Reads a token file; a file others may read is refused, as ssh refuses a loose private key. */
function readTokenFile(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new StrataError('CONFIG', `cannot read token file ${file}: ${code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new StrataError('CONFIG', `token file ${file} is not a regular file`);
    if (st.mode & 0o077) throw new StrataError('CONFIG', `token file ${file} is open to other users (mode 0${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
    return checkToken(readFileSync(fd, 'utf8'), file);
  } finally {
    closeSync(fd);
  }
}

/** Creates the token file with a fresh random token, mode 0600; an existing file (a concurrent start) wins. */
function createTokenFile(file: string): string {
  mkdirSync(nodePath.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  let fd: number;
  try {
    fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readTokenFile(file)!;
    throw new StrataError('CONFIG', `cannot create token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    writeSync(fd, token + '\n');
  } finally {
    closeSync(fd);
  }
  return token;
}

/**
 * The token a daemon requires, or undefined when auth is off. `token` (from the
 * environment or config file) wins; else the token file. Only the master (and
 * `strata local`) creates a missing one: a worker or mount that made its own
 * would hold a token the master does not know, so for them a missing file is a
 * CONFIG error that says where the token should come from.
 */
export function serverToken(cfg: AuthConfig, opts: { create?: boolean } = {}): string | undefined {
  if (!authRequired(cfg)) return undefined;
  if (cfg.token) return checkToken(cfg.token, 'token (STRATA_TOKEN)');
  const existing = readTokenFile(cfg.tokenFile);
  if (existing) return existing;
  if (!opts.create) {
    throw new StrataError('CONFIG', `auth is on but there is no cluster token at ${cfg.tokenFile}: copy the master's <home>/token there (mode 0600), or set --token-file or $STRATA_TOKEN`);
  }
  return createTokenFile(cfg.tokenFile);
}

/** The token a client presents: `token`, else the token file when there is one, else none. */
export function clientToken(cfg: Pick<AuthConfig, 'tokenFile' | 'token'>): string | undefined {
  if (cfg.token) return checkToken(cfg.token, 'token (STRATA_TOKEN)');
  return readTokenFile(cfg.tokenFile);
}

/** `Authorization` header value for a token; {} when there is none. */
export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * Checks an `Authorization` header against the token in constant time: both sides
 * are hashed first, so neither the length nor a common prefix shows in the timing.
 */
export function tokenMatches(header: string | string[] | undefined, expected: Buffer): boolean {
  const h = Array.isArray(header) ? header[0] : header;
  const m = typeof h === 'string' ? /^Bearer +(\S+) *$/i.exec(h) : null;
  const given = createHash('sha256').update(m ? m[1]! : '').digest();
  // Always compare, even without a header, so a missing one costs the same.
  return timingSafeEqual(given, expected) && m !== null;
}

/** The digest that `tokenMatches` compares with. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
