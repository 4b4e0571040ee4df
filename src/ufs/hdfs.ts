/**
 * `hdfs://namenode:port/path`: an under-store on HDFS through the WebHDFS REST API
 * (`http://namenode:port/webhdfs/v1/<path>?op=...`), so no Hadoop client or JVM is needed.
 * The URI names the namenode's HTTP address (9870 when no port is given) and the
 * directory that becomes the store's root.
 *
 * Options (per mount):
 * - `hdfs.user`: sent as `user.name` (simple authentication); default `$HADOOP_USER_NAME`,
 *   else the name of the user running the process.
 * - `hdfs.scheme`: `http` or `https` for the namenode; default `http`.
 * - `hdfs.timeoutMs`: bound on each metadata call and on every wait for response headers
 *   or for the next body chunk of a data transfer; default 30000.
 * - `hdfs.connectTimeoutMs`: bound on opening a connection; default 10000 (or `hdfs.timeoutMs` if smaller).
 *
 * Data never goes through the namenode: OPEN and CREATE are answered with a 307 to a
 * datanode, which this driver follows itself so the bytes stream straight from/to it.
 * Writes go to a hidden temp name (`.strata-tmp-*`) in the target's directory and are
 * renamed into place by `complete()`; with a server that honours RENAME's `renameoptions`
 * (HDFS 2.x+ namenodes; detected once) the replace is one atomic rename2, otherwise
 * (e.g. HttpFS) the destination is deleted first, which leaves a short window without it.
 */

import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import { PassThrough, Readable, pipeline } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { StrataError, toStrataError, type ErrorCode } from '../common/errors';
import { parsePath, validateName } from '../common/paths';
import { driverOptionKeys } from './index';
import { tempFileOfHandle, type UfsCallOptions, type UfsStatus, type UfsWriter, type UnderFileSystem } from './ufs';

/** Temp files of in-flight writes carry this prefix. */
const TEMP_PREFIX = '.strata-tmp-';
/** A writer's temp file: the prefix and 16 hex digits. */
const TEMP_NAME = /^\.strata-tmp-[0-9a-f]{16}$/;
/** What listings hide, and users may not name: writers' temp files and write probes. */
const HIDDEN_NAME = /^\.strata-tmp-(probe-)?[0-9a-f]{16}$/;
/** The namenode's default HTTP port (Hadoop 3). */
const DEFAULT_PORT = 9870;
/** Bytes of a streamed write held in memory before `write()` waits for the datanode. */
const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Tries of the rename that puts a write in place once the old file is deleted (servers without rename2). */
const RENAME_ATTEMPTS = 4;
/** Longest error body read from a server (bigger ones are cut, not buffered). */
const MAX_ERROR_BODY = 64 * 1024;

/** Why a WebHDFS server refused a call: its RemoteException, kept as the `cause` of the StrataError. */
export class WebHdfsError extends Error {
  constructor(
    message: string,
    /** HTTP status of the answer. */
    readonly status: number,
    /** Short Java class name, e.g. `FileNotFoundException`; undefined when the body was not a RemoteException. */
    readonly exception?: string,
    readonly javaClassName?: string,
  ) {
    super(message);
    this.name = 'WebHdfsError';
  }
}

/** Hadoop exception names onto our codes; anything else is IO_ERROR. */
const REMOTE_CODES: Record<string, ErrorCode> = {
  FileNotFoundException: 'NOT_FOUND',
  FileAlreadyExistsException: 'ALREADY_EXISTS',
  AccessControlException: 'PERMISSION_DENIED',
  SecurityException: 'PERMISSION_DENIED',
  AuthorizationException: 'PERMISSION_DENIED',
  PathIsNotEmptyDirectoryException: 'NOT_EMPTY',
  ParentNotDirectoryException: 'NOT_DIRECTORY',
  InvalidPathException: 'INVALID_ARGUMENT',
  IllegalArgumentException: 'INVALID_ARGUMENT',
  UnsupportedOperationException: 'NOT_SUPPORTED',
  DSQuotaExceededException: 'NO_SPACE',
  NSQuotaExceededException: 'NO_SPACE',
  QuotaExceededException: 'NO_SPACE',
  // The namenode is there but cannot serve now (HA standby, safe mode, retry later).
  StandbyException: 'UNAVAILABLE',
  RetriableException: 'UNAVAILABLE',
  SafeModeException: 'UNAVAILABLE',
};

/** Transport failures that mean the server could not be reached at all. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** A FileStatus object of the WebHDFS JSON, with the fields this driver reads checked. */
interface FileStatusJson {
  pathSuffix: string;
  type: string;
  length: number;
  modificationTime: number;
  fileId?: number;
  childrenNum?: number;
}

type Params = Record<string, string | number | boolean | undefined>;

function processUser(): string {
  try {
    const name = os.userInfo().username;
    if (name) return name;
  } catch {
    // No passwd entry for this uid (common in containers).
  }
  return process.env.USER || process.env.LOGNAME || 'strata';
}

function positiveInt(options: Record<string, string>, key: string, dflt: number): number {
  const raw = options[key];
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new StrataError('CONFIG', `${key} must be a positive integer (milliseconds), got '${raw}'`);
  return n;
}

/** The hdfs.* keys this driver reads (listed with the other drivers' in ufs/index.ts). */
const KNOWN_OPTIONS = new Set(driverOptionKeys('hdfs://'));

function errorCodeOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: { code?: unknown }[] } | undefined;
  for (const c of [e?.code, e?.cause?.code, e?.errors?.[0]?.code]) if (typeof c === 'string') return c;
  return undefined;
}

function parseFileStatus(v: unknown, what: string): FileStatusJson {
  const s = v as Partial<FileStatusJson> | undefined;
  if (!s || typeof s !== 'object' || typeof s.type !== 'string' || typeof s.length !== 'number' || typeof s.modificationTime !== 'number' || typeof (s.pathSuffix ?? '') !== 'string') {
    throw new StrataError('IO_ERROR', `${what}: the server answered a malformed FileStatus: ${JSON.stringify(v)?.slice(0, 200)}`);
  }
  return { pathSuffix: s.pathSuffix ?? '', type: s.type, length: s.length, modificationTime: s.modificationTime, fileId: s.fileId, childrenNum: s.childrenNum };
}

function toStatus(name: string, s: FileStatusJson): UfsStatus | null {
  const type = s.type === 'DIRECTORY' ? 'directory' : s.type === 'FILE' ? 'file' : null;
  if (!type) return null; // symlinks (off by default in HDFS) are not part of the store
  // fileId changes when an overwrite (a new temp file renamed into place) lands, even at equal length and mtime.
  const fingerprint = `${s.length}:${s.modificationTime}` + (typeof s.fileId === 'number' ? `:${s.fileId}` : '');
  return { name, type, size: type === 'file' ? s.length : 0, mtimeMs: s.modificationTime, fingerprint };
}

/** The short Java class name of the RemoteException behind a StrataError, if any. */
function remoteException(err: unknown): string | undefined {
  const cause = err instanceof StrataError ? err.cause : undefined;
  return cause instanceof WebHdfsError ? cause.exception : undefined;
}

/** `PassThrough.write()` said "full": wait until it drains, or fail once the upload has settled. */
function drained(body: PassThrough, upload: Promise<void>, failed: () => StrataError): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: StrataError) => {
      body.off('drain', onDrain);
      body.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    // The upload settles right after its body closes, and then knows why it failed.
    const onClose = () => void upload.then(() => done(failed()));
    body.on('drain', onDrain);
    body.on('close', onClose);
  });
}

/** A status and a body to read: what #failure needs of an answer (undici's or node:http's). */
interface Answer {
  statusCode: number;
  body: AsyncIterable<unknown>;
}

/**
 * Streams `body` to a datanode with a PUT through node:http, not undici: a Hadoop datanode
 * answers every CREATE and APPEND with an interim `100 Continue` before reading the upload,
 * asked for or not (WebHdfsHandler.writeContinueHeader), and undici drops the connection on
 * an unrequested 1xx ("bad response"), so no write would ever land. node:http skips it.
 * Connecting is bounded by `connectTimeoutMs`; a datanode that takes no bytes of the upload,
 * or does not answer once it is sent, by `timeoutMs` (a writer may pause between writes for
 * as long as it likes).
 */
function putStream(url: string, body: Readable, agents: { http: http.Agent; https: https.Agent }, opts: { signal: AbortSignal; connectTimeoutMs: number; timeoutMs: number }): Promise<{ statusCode: number; body: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https:');
    const req = (secure ? https : http).request(url, {
      method: 'PUT',
      agent: secure ? agents.https : agents.http,
      signal: opts.signal,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const fail = (code: string, message: string) => req.destroy(Object.assign(new Error(message), { code }));
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => fail('UND_ERR_CONNECT_TIMEOUT', `connect timeout (${opts.connectTimeoutMs} ms)`), opts.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    });
    req.setTimeout(opts.timeoutMs, () => {
      // A connection idle because the writer paused is fine; idle with bytes the datanode does
      // not take, or while waiting for its answer, is a datanode that stopped.
      const stalled = req.writableFinished || body.readableLength > 0 || req.writableLength > 0 || (req.socket?.writableLength ?? 0) > 0;
      if (stalled) fail('UND_ERR_HEADERS_TIMEOUT', `the datanode did not move for ${opts.timeoutMs} ms`);
    });
    req.once('response', (res) => resolve({ statusCode: res.statusCode ?? 0, body: res }));
    req.once('error', reject);
    // A body that fails or is destroyed ends the request too (and a failed request, the body).
    pipeline(body, req, () => undefined);
  });
}

/** Reads an answer's body to its end (so its connection can be reused). */
async function drain(body: AsyncIterable<unknown>): Promise<void> {
  for await (const _chunk of body) {
    // nothing to keep
  }
}

export class HdfsUnderFileSystem implements UnderFileSystem {
  readonly uri: string;
  /** `http://host:port` of the namenode. */
  readonly #base: string;
  /** The store root as HDFS path components. */
  readonly #root: string[];
  readonly #user: string;
  readonly #timeoutMs: number;
  readonly #agent: Agent;
  /** Datanode uploads go through node:http (see putStream). */
  readonly #uploadAgents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  readonly #connectTimeoutMs: number;
  /** Whether the namenode serves LISTSTATUS_BATCH; learned on the first list. */
  #batch: boolean | undefined;
  /** Whether the namenode honours RENAME's `renameoptions` (rename2); learned on the first rename. */
  #rename2: boolean | undefined;
  #closed: Promise<void> | undefined;

  constructor(uri: string, options: Record<string, string> = {}) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new StrataError('CONFIG', `not a valid hdfs:// URI: '${uri}'`);
    }
    if (url.protocol !== 'hdfs:') throw new StrataError('CONFIG', `not an hdfs:// URI: ${uri}`);
    if (!url.hostname) throw new StrataError('CONFIG', `hdfs:// URI must name the namenode's HTTP address, e.g. hdfs://namenode:${DEFAULT_PORT}/path: ${uri}`);
    if (url.username || url.password) throw new StrataError('CONFIG', `hdfs:// URI must not carry credentials (use the hdfs.user option): ${uri}`);
    if (url.search || url.hash) throw new StrataError('CONFIG', `hdfs:// URI must not have a query or fragment (percent-encode '?' and '#'): ${uri}`);
    for (const key of Object.keys(options)) {
      if (key.startsWith('hdfs.') && !KNOWN_OPTIONS.has(key)) throw new StrataError('CONFIG', `unknown option '${key}' (known: ${[...KNOWN_OPTIONS].join(', ')})`);
    }
    const scheme = options['hdfs.scheme'] ?? 'http';
    if (scheme !== 'http' && scheme !== 'https') throw new StrataError('CONFIG', `hdfs.scheme must be 'http' or 'https', got '${scheme}'`);
    const user = options['hdfs.user'] ?? process.env.HADOOP_USER_NAME ?? processUser();
    if (!user) throw new StrataError('CONFIG', 'hdfs.user must not be empty');
    this.#timeoutMs = positiveInt(options, 'hdfs.timeoutMs', 30_000);
    const connectTimeoutMs = positiveInt(options, 'hdfs.connectTimeoutMs', Math.min(10_000, this.#timeoutMs));

    const root: string[] = [];
    for (const seg of url.pathname.split('/')) {
      if (!seg) continue;
      let name: string;
      try {
        name = validateName(decodeURIComponent(seg));
      } catch (err) {
        throw new StrataError('CONFIG', `hdfs:// URI has an invalid path component '${seg}': ${uri}`, { cause: err });
      }
      root.push(name);
    }
    this.#root = root;
    this.#user = user;
    this.#base = `${scheme}://${url.hostname}:${url.port || DEFAULT_PORT}`;
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#agent = new Agent({ connect: { timeout: connectTimeoutMs }, headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs });
    this.uri = uri;
  }

  /** HDFS refuses ':' in a name (DFSUtil.isValidName), whatever the call: better said when the name is made. */
  checkName(name: string): void {
    if (name.includes(':')) throw new StrataError('INVALID_ARGUMENT', `HDFS does not allow ':' in names: '${name}'`);
    // A name listings hide would be a file that is there and never listed (the next sync drops it).
    if (HIDDEN_NAME.test(name)) throw new StrataError('INVALID_ARGUMENT', `the name '${name}' is reserved for Strata's temp files`);
  }

  /** A store path as HDFS path components; parsePath rejects '..', NUL and over-long names. */
  #hdfs(path: string): string[] {
    return [...this.#root, ...parsePath(path)];
  }

  #isRoot(parts: string[]): boolean {
    return parts.length === this.#root.length;
  }

  #url(parts: string[], op: string, params: Params = {}): string {
    let q = `op=${op}&user.name=${encodeURIComponent(this.#user)}`;
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q += `&${k}=${encodeURIComponent(String(v))}`;
    return `${this.#base}/webhdfs/v1/${parts.map(encodeURIComponent).join('/')}?${q}`;
  }

  /** The per-call deadline, joined with the caller's signal. */
  #deadline(signal?: AbortSignal): { signal: AbortSignal; expired: AbortSignal } {
    const expired = AbortSignal.timeout(this.#timeoutMs);
    return { signal: signal ? AbortSignal.any([signal, expired]) : expired, expired };
  }

  /** Wraps a transport failure (no answer at all) into a StrataError. */
  #transportError(err: unknown, what: string, expired?: AbortSignal): StrataError {
    if (err instanceof StrataError) return err;
    if (expired?.aborted) return new StrataError('TIMEOUT', `${what}: no answer from ${this.#base} within ${this.#timeoutMs} ms`, { cause: err });
    const code = errorCodeOf(err);
    if (code && UNREACHABLE.has(code)) {
      return new StrataError('UNAVAILABLE', `${what}: WebHDFS server unreachable (${code}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return toStrataError(err, what);
  }

  /** Turns a non-success answer into a StrataError carrying the server's RemoteException as `cause`. */
  async #failure(res: Answer, what: string): Promise<StrataError> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        chunks.push(chunk as Buffer);
        size += (chunk as Buffer).length;
        if (size > MAX_ERROR_BODY) break; // leaving the loop destroys the body
      }
    } catch {
      // The body is only for the message.
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let remote: { exception?: unknown; javaClassName?: unknown; message?: unknown } | undefined;
    try {
      remote = (JSON.parse(text) as { RemoteException?: typeof remote }).RemoteException;
    } catch {
      remote = undefined;
    }
    const status = res.statusCode;
    if (remote && typeof remote.exception === 'string') {
      const message = typeof remote.message === 'string' ? remote.message : '';
      const cause = new WebHdfsError(message, status, remote.exception, typeof remote.javaClassName === 'string' ? remote.javaClassName : undefined);
      let code = REMOTE_CODES[remote.exception] ?? 'IO_ERROR';
      // rename2 reports a non-empty destination directory as a plain IOException.
      if (remote.exception === 'IOException' && /directory is not empty/i.test(message)) code = 'NOT_EMPTY';
      return new StrataError(code, `${what}: ${remote.exception}: ${message}`, { cause });
    }
    // No RemoteException: a proxy, a gateway or not a WebHDFS endpoint. A bare 404 is not
    // "no such file" (it may be a wrong address), so only auth and 5xx get their own codes.
    const code: ErrorCode = status === 401 || status === 403 ? 'PERMISSION_DENIED' : status >= 500 ? 'UNAVAILABLE' : 'IO_ERROR';
    const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 200);
    return new StrataError(code, `${what}: HTTP ${status} from the WebHDFS server${snippet ? `: ${snippet}` : ''}`, { cause: new WebHdfsError(snippet, status) });
  }

  /** One namenode call that answers JSON (status 200); bounded by the per-call deadline. */
  async #json(method: Dispatcher.HttpMethod, parts: string[], op: string, params: Params, what: string, opts?: UfsCallOptions): Promise<Record<string, unknown>> {
    const { signal, expired } = this.#deadline(opts?.signal);
    try {
      const res = await request(this.#url(parts, op, params), { method, dispatcher: this.#agent, signal });
      if (res.statusCode !== 200) throw await this.#failure(res, what);
      const text = await res.body.text();
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch (err) {
        throw new StrataError('IO_ERROR', `${what}: the server answered something that is not JSON: ${text.slice(0, 200)}`, { cause: err });
      }
    } catch (err) {
      throw this.#transportError(err, what, expired);
    }
  }

  async #boolean(method: Dispatcher.HttpMethod, parts: string[], op: string, params: Params, what: string, opts?: UfsCallOptions): Promise<boolean> {
    const json = await this.#json(method, parts, op, params, what, opts);
    if (typeof json.boolean !== 'boolean') throw new StrataError('IO_ERROR', `${what}: expected {"boolean": ...}, got ${JSON.stringify(json).slice(0, 200)}`);
    return json.boolean;
  }

  /** A namenode call answered with a 307 to a datanode: answers the datanode URL, or the answer itself when there was no redirect. */
  async #redirect(method: Dispatcher.HttpMethod, parts: string[], op: string, params: Params, what: string, signal?: AbortSignal): Promise<{ location: string } | { res: Dispatcher.ResponseData }> {
    const res = await request(this.#url(parts, op, params), { method, dispatcher: this.#agent, signal });
    if (res.statusCode === 307) {
      await res.body.dump();
      const raw = res.headers.location;
      const loc = Array.isArray(raw) ? raw[0] : raw;
      let url: URL | undefined;
      try {
        url = loc ? new URL(loc, this.#base) : undefined;
      } catch {
        url = undefined;
      }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        throw new StrataError('IO_ERROR', `${what}: the namenode answered ${res.statusCode} without a usable Location: ${String(loc)}`);
      }
      return { location: url.href };
    }
    return { res };
  }

  async #statParts(parts: string[], what: string, opts?: UfsCallOptions): Promise<FileStatusJson | null> {
    try {
      const json = await this.#json('GET', parts, 'GETFILESTATUS', {}, what, opts);
      return parseFileStatus(json.FileStatus, what);
    } catch (err) {
      // A missing path, or one through a file (some HDFS versions say ParentNotDirectory), is simply not there.
      const name = remoteException(err);
      if (name === 'FileNotFoundException' || name === 'ParentNotDirectoryException') return null;
      throw err;
    }
  }

  async stat(path: string, opts?: UfsCallOptions): Promise<UfsStatus | null> {
    const parts = this.#hdfs(path);
    const s = await this.#statParts(parts, `stat ${path}`, opts);
    return s && toStatus(this.#isRoot(parts) ? '' : parts[parts.length - 1]!, s);
  }

  async list(path: string, opts?: UfsCallOptions): Promise<UfsStatus[]> {
    const parts = this.#hdfs(path);
    const what = `list ${path}`;
    const raw = await this.#listRaw(parts, what, opts);
    // Listing a file answers the file itself, with an empty pathSuffix.
    if (raw.length === 1 && raw[0]!.pathSuffix === '' && raw[0]!.type !== 'DIRECTORY') throw new StrataError('NOT_DIRECTORY', `${what}: not a directory`);
    const out: UfsStatus[] = [];
    for (const s of raw) {
      if (HIDDEN_NAME.test(s.pathSuffix)) continue;
      try {
        validateName(s.pathSuffix);
      } catch {
        continue; // a name Strata cannot represent (e.g. not valid UTF-8) is not part of the store
      }
      const st = toStatus(s.pathSuffix, s);
      if (st) out.push(st);
    }
    // HDFS orders by UTF-8 bytes; the contract is code-unit order.
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async #listRaw(parts: string[], what: string, opts?: UfsCallOptions): Promise<FileStatusJson[]> {
    if (this.#batch === false) return this.#listPlain(parts, what, opts);
    try {
      const out = await this.#listBatched(parts, what, opts);
      this.#batch = true;
      return out;
    } catch (err) {
      const cause = err instanceof StrataError ? err.cause : undefined;
      const unknownOp = cause instanceof WebHdfsError && cause.status === 400 && this.#batch === undefined;
      if (!unknownOp) throw err;
    }
    // A namenode older than Hadoop 2.8 does not know the op: fall back, and remember once that works.
    const out = await this.#listPlain(parts, what, opts);
    this.#batch = false;
    return out;
  }

  async #listPlain(parts: string[], what: string, opts?: UfsCallOptions): Promise<FileStatusJson[]> {
    const json = await this.#json('GET', parts, 'LISTSTATUS', {}, what, opts);
    const list = (json.FileStatuses as { FileStatus?: unknown } | undefined)?.FileStatus;
    if (!Array.isArray(list)) throw new StrataError('IO_ERROR', `${what}: malformed LISTSTATUS answer`);
    return list.map((s) => parseFileStatus(s, what));
  }

  /** LISTSTATUS_BATCH pages of (by default) 1000 entries, each after the last name of the previous one. */
  async #listBatched(parts: string[], what: string, opts?: UfsCallOptions): Promise<FileStatusJson[]> {
    const out: FileStatusJson[] = [];
    let startAfter: string | undefined;
    for (;;) {
      const json = await this.#json('GET', parts, 'LISTSTATUS_BATCH', { startAfter }, what, opts);
      const listing = json.DirectoryListing as { partialListing?: { FileStatuses?: { FileStatus?: unknown } }; remainingEntries?: unknown } | undefined;
      const page = listing?.partialListing?.FileStatuses?.FileStatus;
      if (!Array.isArray(page) || typeof listing?.remainingEntries !== 'number') throw new StrataError('IO_ERROR', `${what}: malformed LISTSTATUS_BATCH answer`);
      for (const s of page) out.push(parseFileStatus(s, what));
      if (listing.remainingEntries <= 0) return out;
      if (page.length === 0) throw new StrataError('IO_ERROR', `${what}: LISTSTATUS_BATCH made no progress`);
      startAfter = out[out.length - 1]!.pathSuffix;
    }
  }

  async read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new StrataError('INVALID_ARGUMENT', `read ${path}: bad range ${offset}+${length}`);
    }
    const parts = this.#hdfs(path);
    const what = `read ${path}`;
    if (length === 0) {
      const st = await this.#statParts(parts, what, opts);
      if (!st) throw new StrataError('NOT_FOUND', `${what}: no such file`);
      if (st.type === 'DIRECTORY') throw new StrataError('IS_DIRECTORY', `${what}: is a directory`);
      return Readable.from([]);
    }
    // WebHDFS has no conditional OPEN: the version is checked right before the read. A replace
    // landing between the two is read as the new version (HDFS replaces by renaming a whole file over).
    if (opts?.ifFingerprint !== undefined) {
      const st = await this.#statParts(parts, what, opts);
      if (!st) throw new StrataError('NOT_FOUND', `${what}: no such file`);
      const found = toStatus('', st)?.fingerprint;
      if (found !== opts.ifFingerprint) throw new StrataError('STORE_CHANGED', `${what}: the file changed in the store (${found}, expected ${opts.ifFingerprint})`);
    }
    // No overall deadline here, it would cut long transfers: the agent bounds connect, headers and body stalls.
    let res: Dispatcher.ResponseData;
    try {
      const first = await this.#redirect('GET', parts, 'OPEN', { offset, length }, what, opts?.signal);
      // HttpFS serves the bytes itself (200); a namenode redirects to a datanode.
      res = 'res' in first ? first.res : await request(first.location, { method: 'GET', dispatcher: this.#agent, signal: opts?.signal });
    } catch (err) {
      throw this.#transportError(err, what);
    }
    if (res.statusCode === 200) return this.#stream(res.body, length, what);
    const err = await this.#failure(res, what);
    // Seeking past the end is an EOFException in HDFS; the contract clips instead.
    if (remoteException(err) === 'EOFException') return Readable.from([]);
    if (err.code === 'NOT_FOUND') {
      const st = await this.#statParts(parts, what, opts).catch(() => null);
      if (st?.type === 'DIRECTORY') throw new StrataError('IS_DIRECTORY', `${what}: is a directory`, { cause: err });
    }
    throw err;
  }

  /** The datanode's body as our stream: errors become StrataErrors, and never more than `length` bytes. */
  #stream(body: Readable, length: number, what: string): Readable {
    const transportError = (err: unknown) => this.#transportError(err, what);
    async function* pump(): AsyncGenerator<Buffer> {
      let left = length;
      try {
        for await (const chunk of body) {
          const buf = chunk as Buffer;
          const keep = buf.length > left ? buf.subarray(0, left) : buf;
          left -= keep.length;
          if (keep.length) yield keep;
          // A server that ignores `length` is cut off; one that ends on time keeps its connection alive.
          if (keep.length < buf.length) return;
        }
      } catch (err) {
        throw transportError(err);
      } finally {
        if (!body.destroyed) body.destroy();
      }
    }
    return Readable.from(pump(), { objectMode: false });
  }

  async create(path: string, opts?: UfsCallOptions): Promise<UfsWriter> {
    const parts = this.#hdfs(path);
    const what = `create ${path}`;
    if (this.#isRoot(parts)) throw new StrataError('IS_DIRECTORY', `${what}: the store root is a directory`);
    const dir = parts.slice(0, -1);
    // HDFS would create missing parents; the contract (and abort() leaving nothing) wants them to exist.
    const parent = await this.#statParts(dir, what, opts);
    if (!parent) throw new StrataError('NOT_FOUND', `${what}: no such directory`);
    if (parent.type !== 'DIRECTORY') throw new StrataError('NOT_DIRECTORY', `${what}: parent is not a directory`);
    const tmp = [...dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`];

    let location: string;
    const { signal: nnSignal, expired } = this.#deadline(opts?.signal);
    try {
      const r = await this.#redirect('PUT', tmp, 'CREATE', { overwrite: true }, what, nnSignal);
      if ('res' in r) {
        if (r.res.statusCode !== 200 && r.res.statusCode !== 201) throw await this.#failure(r.res, what);
        await r.res.body.dump();
        throw new StrataError('IO_ERROR', `${what}: the namenode answered CREATE without redirecting to a datanode`);
      }
      location = r.location;
    } catch (err) {
      throw this.#transportError(err, what, expired);
    }

    // The datanode PUT streams from `body`; its buffer is all the memory a write holds.
    const body = new PassThrough({ highWaterMark: WRITE_BUFFER_BYTES });
    const cancel = new AbortController();
    const signal = opts?.signal ? AbortSignal.any([opts.signal, cancel.signal]) : cancel.signal;
    let ended = false;
    let failure: StrataError | undefined;
    const upload: Promise<void> = putStream(location, body, this.#uploadAgents, { signal, connectTimeoutMs: this.#connectTimeoutMs, timeoutMs: this.#timeoutMs })
      .then(async (res) => {
        // A datanode (and HttpFS) answers 201 Created; anything else did not store the bytes.
        if (res.statusCode !== 201) throw await this.#failure(res, `write ${path}`);
        await drain(res.body);
        if (!ended) throw new StrataError('IO_ERROR', `write ${path}: the datanode answered before the upload ended`);
      })
      .catch((err: unknown) => {
        failure = this.#transportError(err, `write ${path}`);
        body.destroy();
      });
    const failed = () => failure ?? new StrataError('IO_ERROR', `write ${path}: the upload stream closed`);

    let state: 'open' | 'completing' | 'done' = 'open';
    /** Until the temp file is moved into place or deleted (or kept, below), a crash would leave it. */
    let tmpGone = false;
    const name = parts[parts.length - 1]!;
    const discard = () =>
      this.#boolean('DELETE', tmp, 'DELETE', { recursive: false }, `discard ${path}`).then(
        () => void (tmpGone = true),
        () => undefined,
      );

    return {
      write: async (chunk: Buffer) => {
        if (state !== 'open') throw new StrataError('INVALID_ARGUMENT', `write ${path}: the writer is already completed or aborted`);
        if (failure) throw failure;
        if (chunk.length === 0) return;
        // A copy: the caller may reuse its buffer as soon as write() resolves.
        if (!body.write(Buffer.from(chunk))) await drained(body, upload, failed);
        if (failure) throw failure;
      },
      complete: async () => {
        if (state !== 'open') throw new StrataError('INVALID_ARGUMENT', `complete ${path}: the writer is already completed or aborted`);
        state = 'completing';
        ended = true;
        body.end();
        await upload;
        try {
          if (failure) throw failure;
          const dest = await this.#statParts(parts, `complete ${path}`, opts);
          // As on a real file system: an object never replaces a directory.
          if (dest?.type === 'DIRECTORY') throw new StrataError('IS_DIRECTORY', `complete ${path}: is a directory`);
          await this.#move(tmp, parts, true, `complete ${path}`, opts, () => {
            // The old file is deleted: the temp file now holds the only copy of either, and is never discarded.
            tmpGone = true;
          });
          tmpGone = true;
          const st = await this.#statParts(parts, `complete ${path}`, opts);
          const status = st && toStatus(name, st);
          if (!status) throw new StrataError('IO_ERROR', `complete ${path}: the file vanished right after it was renamed into place`);
          return status;
        } catch (err) {
          if (!tmpGone) await discard();
          throw err;
        } finally {
          state = 'done';
        }
      },
      abort: async () => {
        if (state !== 'open') return;
        state = 'done';
        // Finish the (bounded, already buffered) upload so the datanode has closed the temp file
        // before it is deleted; a stuck datanode is cut off.
        ended = true;
        body.end();
        const timer = setTimeout(() => cancel.abort(), Math.min(this.#timeoutMs, 5000));
        await upload;
        clearTimeout(timer);
        await discard();
      },
      // The temp file as a path in this store, for discardLeftover after a crash.
      leftover: () => (tmpGone ? undefined : JSON.stringify({ tmp: '/' + tmp.slice(this.#root.length).join('/') })),
    };
  }

  async discardLeftover(handle: string, opts?: UfsCallOptions): Promise<void> {
    const parts = tempFileOfHandle(handle, TEMP_NAME);
    await this.#boolean('DELETE', [...this.#root, ...parts], 'DELETE', { recursive: false }, `discard /${parts.join('/')}`, opts);
  }

  /**
   * Whether the namenode honours `renameoptions` (rename2), found once with a rename of a name
   * that does not exist: rename2 answers FileNotFoundException, the old rename `{"boolean": false}`.
   */
  async #supportsRename2(dir: string[], what: string, opts?: UfsCallOptions): Promise<boolean> {
    if (this.#rename2 !== undefined) return this.#rename2;
    const probe = [...dir, `${TEMP_PREFIX}probe-${randomBytes(8).toString('hex')}`];
    const destination = '/' + [...probe.slice(0, -1), `${probe[probe.length - 1]}-to`].join('/');
    try {
      const json = await this.#json('PUT', probe, 'RENAME', { destination, renameoptions: 'NONE' }, what, opts);
      this.#rename2 = typeof json.boolean !== 'boolean';
    } catch (err) {
      // Undecided (the namenode failed): guessing "no" would replace a file by deleting it first on a
      // server that can do it atomically, so the call fails instead, as the rename itself would have.
      if (remoteException(err) !== 'FileNotFoundException') throw err;
      this.#rename2 = true;
    }
    return this.#rename2;
  }

  /**
   * Renames `src` to `dst`; `replace` when `dst` exists (a file, or an empty directory) and may be replaced.
   * Without rename2, `dst` is deleted first; `onDestinationGone` is told so, since from then on `src`
   * is the only copy of either, and a failing rename is tried again before giving up.
   */
  async #move(src: string[], dst: string[], replace: boolean, what: string, opts?: UfsCallOptions, onDestinationGone?: () => void): Promise<void> {
    const destination = '/' + dst.join('/');
    if (await this.#supportsRename2(src.slice(0, -1), what, opts)) {
      const { signal, expired } = this.#deadline(opts?.signal);
      try {
        const res = await request(this.#url(src, 'RENAME', { destination, renameoptions: replace ? 'OVERWRITE' : 'NONE' }), { method: 'PUT', dispatcher: this.#agent, signal });
        if (res.statusCode !== 200) throw await this.#failure(res, what);
        await res.body.dump();
        return;
      } catch (err) {
        throw this.#transportError(err, what, expired);
      }
    }
    // The old RENAME neither replaces nor fails with a reason; it would even move *into* a directory.
    if (replace) {
      await this.#boolean('DELETE', dst, 'DELETE', { recursive: false }, what, opts);
      onDestinationGone?.();
    }
    for (let attempt = 1; ; attempt++) {
      let renamed: boolean;
      try {
        renamed = await this.#boolean('PUT', src, 'RENAME', { destination }, what, opts);
      } catch (err) {
        const code = err instanceof StrataError ? err.code : undefined;
        if (!replace || attempt >= RENAME_ATTEMPTS || opts?.signal?.aborted || (code !== 'UNAVAILABLE' && code !== 'TIMEOUT' && code !== 'IO_ERROR')) {
          if (!replace) throw err;
          throw new StrataError(code ?? 'IO_ERROR', `${what}: the old file was deleted but the new one could not be renamed into place; it is kept at /${src.join('/')}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(250 * attempt);
        continue;
      }
      if (renamed) return;
      throw new StrataError('IO_ERROR', `${what}: the namenode refused the rename (did the destination appear meanwhile?)${replace ? `; the new file is kept at /${src.join('/')}` : ''}`);
    }
  }

  async delete(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = this.#hdfs(path);
    const what = `delete ${path}`;
    const st = await this.#statParts(parts, what, opts);
    if (!st) throw new StrataError('NOT_FOUND', `${what}: no such file`);
    if (st.type === 'DIRECTORY') throw new StrataError('IS_DIRECTORY', `${what}: is a directory`);
    if (!(await this.#boolean('DELETE', parts, 'DELETE', { recursive: false }, what, opts))) throw new StrataError('NOT_FOUND', `${what}: no such file`);
  }

  async mkdir(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = this.#hdfs(path);
    const what = `mkdir ${path}`;
    // MKDIRS is `mkdir -p` and succeeds on an existing directory; the contract is mkdir(2).
    if (this.#isRoot(parts) || (await this.#statParts(parts, what, opts))) throw new StrataError('ALREADY_EXISTS', `${what}: exists`);
    const parent = await this.#statParts(parts.slice(0, -1), what, opts);
    if (!parent) throw new StrataError('NOT_FOUND', `${what}: no such parent directory`);
    if (parent.type !== 'DIRECTORY') throw new StrataError('NOT_DIRECTORY', `${what}: parent is not a directory`);
    if (!(await this.#boolean('PUT', parts, 'MKDIRS', {}, what, opts))) throw new StrataError('IO_ERROR', `${what}: the namenode answered false`);
  }

  async rmdir(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = this.#hdfs(path);
    const what = `rmdir ${path}`;
    if (this.#isRoot(parts)) throw new StrataError('NOT_PERMITTED', `${what}: cannot remove the root`);
    const st = await this.#statParts(parts, what, opts);
    if (!st) throw new StrataError('NOT_FOUND', `${what}: no such directory`);
    if (st.type !== 'DIRECTORY') throw new StrataError('NOT_DIRECTORY', `${what}: not a directory`);
    // Non-recursive: a non-empty directory is a PathIsNotEmptyDirectoryException (NOT_EMPTY).
    if (!(await this.#boolean('DELETE', parts, 'DELETE', { recursive: false }, what, opts))) throw new StrataError('NOT_FOUND', `${what}: no such directory`);
  }

  async rename(src: string, dst: string, opts?: UfsCallOptions): Promise<void> {
    const from = this.#hdfs(src);
    const to = this.#hdfs(dst);
    const what = `rename ${src} -> ${dst}`;
    const s = await this.#statParts(from, what, opts);
    if (!s) throw new StrataError('NOT_FOUND', `${what}: no such file or directory`);
    if (!this.#isRoot(to)) {
      const parent = await this.#statParts(to.slice(0, -1), what, opts);
      if (!parent) throw new StrataError('NOT_FOUND', `${what}: no such destination directory`);
      if (parent.type !== 'DIRECTORY') throw new StrataError('NOT_DIRECTORY', `${what}: destination parent is not a directory`);
    }
    const fromKey = from.join('/');
    const toKey = to.join('/');
    if (fromKey === toKey) return;
    // The same checks as rename(2), before anything moves.
    if (this.#isRoot(from) || toKey.startsWith(fromKey + '/')) throw new StrataError('INVALID_ARGUMENT', `${what}: cannot move a directory into itself`);
    const d = await this.#statParts(to, what, opts);
    if (!d) return this.#move(from, to, false, what, opts);
    const srcDir = s.type === 'DIRECTORY';
    const dstDir = d.type === 'DIRECTORY';
    if (srcDir && !dstDir) throw new StrataError('NOT_DIRECTORY', `${what}: destination is not a directory`);
    if (!srcDir && dstDir) throw new StrataError('IS_DIRECTORY', `${what}: destination is a directory`);
    if (dstDir && (this.#isRoot(to) || (d.childrenNum ?? 0) > 0)) throw new StrataError('NOT_EMPTY', `${what}: destination directory is not empty`);
    return this.#move(from, to, true, what, opts);
  }

  async close(): Promise<void> {
    this.#closed ??= (async () => {
      // Let calls in flight finish, but never wait on a stream nobody reads any more:
      // the agent's close() waits for every response body to be consumed.
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.min(this.#timeoutMs, 5000))));
      const closing = this.#agent.close().then(
        () => 'closed' as const,
        () => 'closed' as const,
      );
      const outcome = await Promise.race([closing, grace]);
      clearTimeout(timer);
      if (outcome === 'late') await this.#agent.destroy().catch(() => undefined);
      this.#uploadAgents.http.destroy();
      this.#uploadAgents.https.destroy();
    })();
    return this.#closed;
  }
}
