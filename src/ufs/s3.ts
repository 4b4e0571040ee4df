/**
 * `s3://bucket/prefix`: an under-store on an S3 bucket, or on any store that speaks the S3 protocol.
 *
 * How a file system maps onto keys:
 * - the file `/a/b` is the object `prefix/a/b`;
 * - the directory `/a` exists while any key starts with `prefix/a/` (a common prefix) or while the
 *   zero-byte marker `prefix/a/` exists. `mkdir` writes such a marker so an empty directory
 *   survives, and removing the last entry of a directory without a marker writes one (as Hadoop's
 *   S3A does), so deleting a file never makes its directory vanish;
 * - when an object `a` and keys below `a/` both exist (both written by someone else), the file
 *   wins, in `stat` and in `list` alike;
 * - S3 keeps no directory times: directories report `mtimeMs: 0`;
 * - `create` needs no parent directory: writing `a/b/c` makes `a` and `a/b` exist, as keys do;
 * - keys that are no valid Strata path (`a//b`, `/abs`, `..` segments, over-long names) are skipped
 *   in listings and never followed.
 * A file's fingerprint is its ETag plus its size. Nothing is atomic across keys: renaming a
 * directory copies every key below it and then deletes the originals.
 */

import { constants as bufferConstants } from 'node:buffer';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { StrataError, toStrataError, type ErrorCode } from '../common/errors';
import { parseBytes } from '../common/config';
import { mapLimit } from '../common/map-limit';
import { parsePath, validateName } from '../common/paths';
import { parseLeftoverHandle, type UfsCallOptions, type UfsStatus, type UfsWriter, type UnderFileSystem } from './ufs';
import { S3HttpHandler } from './s3-http-handler';

// The SDK warns on every start under Node 20 that its releases after January 2027 will need Node 22.
// The versions in package-lock.json keep working here, so the warning only alarms the user; it still
// shows when the variable is set otherwise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** S3's limits: every part but the last is 5 MiB to 5 GiB, at most 10,000 parts; CopyObject copies at most 5 GiB. */
const MIN_PART_SIZE = 5 * MiB;
/** S3 takes parts of up to 5 GiB, but a part is assembled in one Buffer, which holds at most 4 GiB on Node 20. */
const MAX_PART_SIZE = Math.min(5 * GiB, bufferConstants.MAX_LENGTH);
const MAX_PARTS = 10_000;
const MAX_SINGLE_COPY = 5 * GiB;
/** The part size doubles every this many parts, so a stream of unknown length can grow to ~500 GiB with 8 MiB parts. */
const PARTS_PER_SIZE_STEP = 2_000;
/** Copy and delete requests a directory rename keeps in flight. */
const TREE_CONCURRENCY = 8;
/** The region when neither `s3.region`, the environment nor a profile names one. */
const DEFAULT_REGION = 'us-east-1';

/**
 * The driver's settings, read from the mount's `s3.*` options (all strings). Defaults in brackets.
 */
export interface S3UfsSettings {
  /** `s3.endpoint`: e.g. `http://127.0.0.1:9000` [the SDK's: AWS_ENDPOINT_URL(_S3), the profile, else AWS]. */
  endpoint?: string;
  /** `s3.region` [the SDK's chain: AWS_REGION, the profile; else 'us-east-1']. */
  region?: string;
  /** `s3.pathStyle`: 'true' for `endpoint/bucket/key` URLs, as most self-hosted stores need [the SDK's: virtual-hosted]. */
  forcePathStyle?: boolean;
  /** `s3.accessKeyId` + `s3.secretAccessKey`, both or neither [the SDK's chain: env, profile, SSO, IMDS…]. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** `s3.partSize`: bytes per multipart part, 5 MiB…5 GiB [8 MiB]; a smaller object is a single PutObject. */
  partSize: number;
  /** `s3.uploadConcurrency`: parts of one upload in flight, 1…64 [4]; a writer holds at most (this + 1) parts in memory. */
  uploadConcurrency: number;
  /** `s3.maxAttempts`: tries per request, 1…20 [4]; only throttling, 5xx and network errors are retried, with backoff. */
  maxAttempts: number;
  /** `s3.connectTimeoutMs`: to open a connection [5000]. */
  connectTimeoutMs: number;
  /**
   * `s3.requestTimeoutMs`: from sending a request until the response headers arrive, and the
   * longest silence while a body streams [60000]. An upload (a part, a small object) is bounded by
   * silence only, whether sending its body or waiting for the answer, so a slow link is not a failure.
   */
  requestTimeoutMs: number;
  /** `s3.multipartCopyThreshold`: objects larger than this are renamed with UploadPartCopy in parts of this size, 5 MiB…5 GiB [5 GiB]. */
  multipartCopyThreshold: number;
  /**
   * `s3.fixedPartSize=true`: every part but the last is `partSize`, as Cloudflare R2 requires
   * (it refuses the completion otherwise, after every byte was sent); a file then holds at most
   * 10,000 parts. By default parts double every 2,000, so a stream grows to ~500 GiB [false].
   */
  fixedPartSize?: boolean;
}

/** The size of part `partNumber` (from 1) of a streamed upload: doubling every 2,000 parts unless fixed. */
export function partSizeOf(partNumber: number, settings: Pick<S3UfsSettings, 'partSize' | 'fixedPartSize'>): number {
  if (settings.fixedPartSize) return settings.partSize;
  const step = Math.floor((partNumber - 1) / PARTS_PER_SIZE_STEP);
  return Math.min(MAX_PART_SIZE, settings.partSize * 2 ** step);
}

/** Reads and validates the `s3.*` options; anything malformed is a CONFIG error. */
export function parseS3Options(options: Record<string, string>): S3UfsSettings {
  const str = (k: string): string | undefined => {
    const v = options[k];
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (k: string, def: number, min: number, max: number): number => {
    const v = str(k);
    if (v === undefined) return def;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new StrataError('CONFIG', `${k} must be an integer between ${min} and ${max}, got '${v}'`);
    return n;
  };
  // Sizes as the README writes them (8MiB, 5GiB) or in bytes.
  const bytes = (k: string, def: number, min: number, max: number): number => {
    const v = str(k);
    if (v === undefined) return def;
    const n = parseBytes(v);
    if (n === undefined || n < min || n > max) throw new StrataError('CONFIG', `${k} must be a size from ${min} to ${max} bytes (e.g. 8MiB), got '${v}'`);
    return n;
  };
  const settings: S3UfsSettings = {
    partSize: bytes('s3.partSize', 8 * MiB, MIN_PART_SIZE, MAX_PART_SIZE),
    uploadConcurrency: int('s3.uploadConcurrency', 4, 1, 64),
    maxAttempts: int('s3.maxAttempts', 4, 1, 20),
    connectTimeoutMs: int('s3.connectTimeoutMs', 5_000, 1, 600_000),
    requestTimeoutMs: int('s3.requestTimeoutMs', 60_000, 1, 3_600_000),
    multipartCopyThreshold: bytes('s3.multipartCopyThreshold', MAX_SINGLE_COPY, MIN_PART_SIZE, MAX_SINGLE_COPY),
  };
  const endpoint = str('s3.endpoint');
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new StrataError('CONFIG', `s3.endpoint must be an http(s) URL, got '${endpoint}'`);
    settings.endpoint = endpoint;
  }
  const region = str('s3.region');
  if (region !== undefined) {
    if (!/^[a-z0-9-]{1,64}$/i.test(region)) throw new StrataError('CONFIG', `s3.region is not a region name: '${region}'`);
    settings.region = region;
  }
  const fixed = str('s3.fixedPartSize');
  if (fixed !== undefined) {
    if (fixed !== 'true' && fixed !== 'false') throw new StrataError('CONFIG', `s3.fixedPartSize must be 'true' or 'false', got '${fixed}'`);
    settings.fixedPartSize = fixed === 'true';
  }
  const pathStyle = str('s3.pathStyle');
  if (pathStyle !== undefined) {
    if (pathStyle !== 'true' && pathStyle !== 'false') throw new StrataError('CONFIG', `s3.pathStyle must be 'true' or 'false', got '${pathStyle}'`);
    settings.forcePathStyle = pathStyle === 'true';
  }
  const accessKeyId = str('s3.accessKeyId');
  const secretAccessKey = str('s3.secretAccessKey');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new StrataError('CONFIG', 's3.accessKeyId and s3.secretAccessKey must be given together');
  }
  if (accessKeyId !== undefined && secretAccessKey !== undefined) settings.credentials = { accessKeyId, secretAccessKey };
  return settings;
}

/** What a listing or a HEAD tells about one object. */
interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  mtimeMs: number;
}

const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload']);
const DENIED_NAMES = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AllAccessDisabled', 'AccountProblem', 'ExpiredToken', 'InvalidToken']);
const BUSY_NAMES = new Set(['SlowDown', 'ServiceUnavailable', 'InternalError', 'Throttling', 'ThrottlingException', 'TooManyRequests', 'RequestLimitExceeded', 'RequestTimeout']);

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function httpStatus(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/**
 * Wraps an SDK error into a StrataError, keeping it as `cause`. Network failures (no HTTP status)
 * take the system-code mapping of `toStrataError`: ECONNREFUSED → UNAVAILABLE, timeouts → TIMEOUT.
 */
export function s3Error(err: unknown, context: string): StrataError {
  if (err instanceof StrataError) return err;
  const e = (err ?? {}) as SdkError;
  const name = e.Code ?? e.name ?? '';
  const status = httpStatus(err);
  const wrap = (code: ErrorCode): StrataError => {
    const detail = err instanceof Error && err.message && err.message !== name ? `${name}: ${err.message}` : name || String(err);
    return new StrataError(code, `${context}: ${detail}${status ? ` (HTTP ${status})` : ''}`, { cause: err });
  };
  // A missing bucket is the store's setup, not a missing file: EIO, never "the store has nothing there"
  // (a listing answered NOT_FOUND is taken for an empty directory, and its names would be dropped).
  if (name === 'NoSuchBucket') return wrap('IO_ERROR');
  if (NOT_FOUND_NAMES.has(name) || status === 404) return wrap('NOT_FOUND');
  if (DENIED_NAMES.has(name) || status === 403) return wrap('PERMISSION_DENIED');
  if (name === 'EntityTooLarge') return wrap('FILE_TOO_LARGE');
  if (name === 'KeyTooLongError') return wrap('NAME_TOO_LONG');
  if (BUSY_NAMES.has(name) || status === 429 || (status !== undefined && status >= 500)) return wrap('UNAVAILABLE');
  if (status !== undefined) return wrap('IO_ERROR');
  return toStrataError(err, context);
}

function isInvalidRange(err: unknown): boolean {
  const e = err as SdkError | undefined;
  return e?.Code === 'InvalidRange' || e?.name === 'InvalidRange' || httpStatus(err) === 416;
}

/** Whether a failed CompleteMultipartUpload may have been carried out by the store all the same. */
function completionMayHaveLanded(err: unknown): boolean {
  const status = httpStatus(err);
  const name = (err as SdkError | undefined)?.Code ?? (err as SdkError | undefined)?.name;
  return isResumable(err) || name === 'NoSuchUpload' || status === undefined || status >= 500;
}

/**
 * The ETag S3 gives the object a multipart upload of `parts` makes: the MD5 of the parts' binary
 * MD5s, then '-' and their count. Null when a part's ETag is not its MD5 (SSE-KMS, SSE-C).
 */
export function multipartEtag(parts: CompletedPart[]): string | null {
  const md5s: Buffer[] = [];
  for (const p of parts) {
    const hex = (p.ETag ?? '').replace(/"/g, '');
    if (!/^[0-9a-f]{32}$/i.test(hex)) return null;
    md5s.push(Buffer.from(hex, 'hex'));
  }
  return `${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${parts.length}`;
}

/** ETags come quoted on the wire; the fingerprint does without the quotes. */
function fingerprint(etag: string | undefined, size: number): string {
  return `${(etag ?? '').replace(/"/g, '')}:${size}`;
}

function fileStatus(name: string, o: Pick<ObjectInfo, 'size' | 'etag' | 'mtimeMs'>): UfsStatus {
  return { name, type: 'file', size: o.size, mtimeMs: o.mtimeMs, fingerprint: fingerprint(o.etag, o.size) };
}

/** What a rename's copy made at `to`, from the ETag the copy answered. */
function copiedStatus(to: string[], etag: string, size: number): UfsStatus {
  return { name: to[to.length - 1]!, type: 'file', size, mtimeMs: Date.now(), fingerprint: fingerprint(etag, size) };
}

function dirStatus(name: string): UfsStatus {
  return { name, type: 'directory', size: 0, mtimeMs: 0, fingerprint: 'dir' };
}

/** The Strata name a listed key (relative to its directory) stands for, or null when it cannot be one. */
function childName(rel: string): string | null {
  if (rel.includes('/')) return null;
  try {
    return validateName(rel);
  } catch {
    return null;
  }
}

/** `x-amz-copy-source`: the bucket and the key, every key segment URL-encoded ('?' would start a versionId). */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/**
 * With `encoding-type=url` S3 sends keys form-encoded ('+' for a space), so keys that XML cannot
 * carry survive a listing. Stores that ignore the parameter do not echo it, and their keys are raw.
 */
function decodeListed(s: string, encoded: boolean): string | null {
  if (!encoded) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

function unquoted(etag: string | undefined): string | undefined {
  return etag?.replace(/"/g, '');
}

/** A connection lost or stalled in the middle of a body: the rest can be asked for again. */
function isResumable(err: unknown): boolean {
  const e = err as { code?: string; name?: string } | undefined;
  if (!e || typeof e !== 'object' || e.name === 'AbortError') return false;
  return e.name === 'TimeoutError' || ['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET'].includes(e.code ?? '');
}

/**
 * Asks for the body's bytes from `delivered` (relative to the first response's start) on, of the
 * same object version.
 */
type ResumeBody = (delivered: number, signal: AbortSignal) => Promise<Readable>;

/**
 * Streams `[skip, skip+take)` of a response body, mapping its errors to StrataErrors and ending it
 * when `signal` aborts. With `exact`, a body that ends early is an IO_ERROR instead of a short read.
 * With `resume`, a body cut by a lost or stalled connection (or ending early) is continued from
 * where it stopped, at most `resumes` times per call, never after the caller destroyed the stream.
 */
function clipBody(first: Readable, skip: number, take: number, exact: boolean, context: string, signal?: AbortSignal, resume?: ResumeBody, resumes = 0): Readable {
  let body = first;
  let gone = false;
  // Ends a resume request in flight when the caller goes.
  const leaving = new AbortController();
  async function* pump(): AsyncGenerator<Buffer> {
    let toSkip = skip;
    let left = take;
    for (;;) {
      try {
        for await (const c of body) {
          let chunk = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
          if (toSkip > 0) {
            if (chunk.length <= toSkip) {
              toSkip -= chunk.length;
              continue;
            }
            chunk = chunk.subarray(toSkip);
            toSkip = 0;
          }
          if (chunk.length > left) chunk = chunk.subarray(0, left);
          left -= chunk.length;
          if (chunk.length > 0) yield chunk;
          if (left <= 0) break;
        }
        if (!exact || left <= 0) return;
        throw Object.assign(new Error(`the store ended the body ${left} bytes early`), { code: 'ECONNRESET', early: true });
      } catch (err) {
        if (!resume || resumes <= 0 || gone || !isResumable(err) || signal?.aborted) {
          if ((err as { early?: boolean }).early) throw new StrataError('IO_ERROR', `${context}: ${(err as Error).message}`);
          throw s3Error(err, context);
        }
      } finally {
        body.destroy();
      }
      resumes--;
      body = await resume(take - left, leaving.signal);
      if (gone) {
        body.destroy();
        return;
      }
    }
  }
  const out = Readable.from(pump(), { objectMode: false });
  // A caller that destroys the stream is gone: the body in hand goes at once (a generator waiting
  // on a stalled one would finish only at the body timeout), and nothing is asked for again.
  // Destroyed before its first read, the generator never runs its finally at all: the connection
  // would stay with an unread body (undici's body timeout does not run while it is paused).
  const destroyOut = out._destroy.bind(out);
  out._destroy = (err, cb) => {
    gone = true;
    leaving.abort();
    body.destroy();
    destroyOut(err, cb);
  };
  out.once('close', () => body.destroy());
  if (signal) {
    const onAbort = (): void => {
      out.destroy(toStrataError(signal.reason, context));
    };
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      out.once('close', () => signal.removeEventListener('abort', onAbort));
    }
  }
  return out;
}

/** What a writer needs from its store. */
interface WriterContext {
  client: S3Client;
  bucket: string;
  key: string;
  name: string;
  path: string;
  settings: S3UfsSettings;
  http: { abortSignal?: AbortSignal } | undefined;
  /** True when the target is a directory, which an object must not replace. */
  isDirectory(): Promise<boolean>;
  head(): Promise<ObjectInfo | null>;
}

/**
 * Buffers of whole multipart parts, kept for the next part. A fresh multi-MiB buffer is new
 * memory, and on this VM first touching it cost more than the copy into it: 1 GiB copied into
 * fresh 8 MiB buffers took 0.54 s of CPU, into reused ones 0.08 s; a profile of a 1 GiB upload
 * had 2.1 s of the worker's CPU in that copy. Only a part the store accepted gives its buffer
 * back (a failed request might still be reading its body); what is kept is let go after a while
 * without uploads, so an idle process does not hold it.
 */
export class PartBuffers {
  readonly #free = new Map<number, Buffer[]>();
  #freeBytes = 0;
  #lastUse = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly maxFreeBytes: number,
    readonly idleMs: number,
  ) {}

  /** Bytes kept for reuse now. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /** A buffer of `size` bytes, of unspecified content: a kept one, or a new one. */
  take(size: number): Buffer {
    this.#lastUse = Date.now();
    const b = this.#free.get(size)?.pop();
    if (!b) return Buffer.allocUnsafe(size);
    this.#freeBytes -= size;
    return b;
  }

  /** Keeps `b` for a later take() of its size, unless it is a view of another buffer or the pool is full. */
  give(b: Buffer): void {
    // A view (of Node's small-buffer pool, or a subarray) shares its memory with others.
    if (b.byteOffset !== 0 || b.buffer.byteLength !== b.length || this.#freeBytes + b.length > this.maxFreeBytes) return;
    let list = this.#free.get(b.length);
    if (!list) this.#free.set(b.length, (list = []));
    list.push(b);
    this.#freeBytes += b.length;
    this.#lastUse = Date.now();
    this.#timer ??= setTimeout(() => this.#expire(), this.idleMs).unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const idle = Date.now() - this.#lastUse;
    if (idle < this.idleMs) {
      this.#timer = setTimeout(() => this.#expire(), this.idleMs - idle).unref();
      return;
    }
    this.#free.clear();
    this.#freeBytes = 0;
  }
}

/** Up to 64 MiB of part buffers (eight 8 MiB parts: two uploads at the default concurrency), for 30 s. Exported for tests. */
export const PART_BUFFERS = new PartBuffers(64 * MiB, 30_000);

/**
 * A streamed object write. Bytes collect in memory until a part is full; the first full part turns
 * the write into a multipart upload and later parts upload while the caller goes on writing, at
 * most `uploadConcurrency` at a time (write() waits for a slot). A write that never fills a part is
 * one PutObject at complete(). Either way the object appears only when complete() succeeds.
 *
 * Until a first part is full, bytes are kept as copies of the caller's chunks, so an object smaller
 * than a part holds only its size; from then on they are copied straight into part buffers from
 * PART_BUFFERS. Copies into new memory per chunk were 2.5 s of the worker's CPU per GiB written
 * through (the memory's first touch, on this VM). write() calls run one after another, in call order.
 */
class S3Writer implements UfsWriter {
  readonly #c: WriterContext;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The part being filled (the whole buffer; `#partFill` bytes of it written so far). */
  #part: Buffer | undefined;
  #partFill = 0;
  #total = 0;
  #partCount = 0;
  #uploadId: Promise<string> | null = null;
  /** The upload's id once the store gave it: what a crash would leave open. */
  #openUpload: string | undefined;
  #parts: CompletedPart[] = [];
  #inFlight = new Set<Promise<void>>();
  #failure: StrataError | null = null;
  /** 'open' until complete() or abort() starts; 'done' once either has finished (or failed). */
  #state: 'open' | 'closing' | 'done' = 'open';

  constructor(c: WriterContext) {
    this.#c = c;
  }

  /** The write() before this one: a chunk is placed only after the previous one is. */
  #writing: Promise<unknown> = Promise.resolve();
  /** onLeftover was awaited for the multipart upload. */
  #announced = false;
  onLeftover?: () => Promise<void>;

  write(chunk: Buffer): Promise<void> {
    const run = this.#writing.then(() => this.#write(chunk));
    this.#writing = run.catch(() => undefined);
    return run;
  }

  #checkOpen(): void {
    if (this.#state !== 'open') throw new StrataError('INVALID_ARGUMENT', `write ${this.#c.path}: the writer is closed`);
    if (this.#failure) throw this.#failure;
  }

  async #write(chunk: Buffer): Promise<void> {
    this.#checkOpen();
    if (chunk.length === 0) return;
    this.#total += chunk.length;
    // Copies either way: the caller may reuse its buffer as soon as write() resolves.
    if (!this.#part && this.#uploadId === null && this.#pendingBytes + chunk.length < this.#partSize(1)) {
      this.#pending.push(Buffer.from(chunk));
      this.#pendingBytes += chunk.length;
      return;
    }
    for (let off = 0; off < chunk.length; ) {
      // An abort() or a failed part while this write waited for a slot ends it here.
      this.#checkOpen();
      const part = this.#part ?? this.#startPart();
      const n = Math.min(part.length - this.#partFill, chunk.length - off);
      chunk.copy(part, this.#partFill, off, off + n);
      this.#partFill += n;
      off += n;
      if (this.#partFill === part.length) {
        this.#part = undefined;
        this.#partFill = 0;
        await this.#uploadPart(part);
      }
    }
  }

  /** Takes a buffer for the next part and moves the kept small chunks into it. */
  #startPart(): Buffer {
    const part = PART_BUFFERS.take(this.#partSize(this.#partCount + 1));
    let fill = 0;
    // Kept only while fewer than a first part: they fit.
    for (const b of this.#pending) fill += b.copy(part, fill);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#part = part;
    this.#partFill = fill;
    return part;
  }

  async complete(): Promise<UfsStatus> {
    if (this.#state !== 'open') throw new StrataError('INVALID_ARGUMENT', `complete ${this.#c.path}: the writer is closed`);
    // A write() its caller did not wait for places its bytes first.
    await this.#writing;
    if (this.#state !== 'open') throw new StrataError('INVALID_ARGUMENT', `complete ${this.#c.path}: the writer is closed`);
    this.#state = 'closing';
    const c = this.#c;
    try {
      if (this.#failure) throw this.#failure;
      if (await c.isDirectory()) throw new StrataError('IS_DIRECTORY', `complete ${c.path}: is a directory`);
      let etag: string | undefined;
      // What is left: in the part being filled, or (less than a part) in kept chunks.
      const part = this.#part;
      const rest = part ? part.subarray(0, this.#partFill) : this.#takeKept();
      this.#part = undefined;
      this.#partFill = 0;
      if (!this.#uploadId) {
        const out = await c.client.send(new PutObjectCommand({ Bucket: c.bucket, Key: c.key, Body: rest, ContentLength: rest.length }), c.http);
        if (part) PART_BUFFERS.give(part);
        etag = out.ETag;
      } else {
        // The last part may be smaller than 5 MiB.
        if (rest.length > 0) await this.#uploadPart(rest);
        await Promise.all(this.#inFlight);
        if (this.#failure) throw this.#failure;
        // Every part was accepted, the last one (a view of `part`) too.
        if (part) PART_BUFFERS.give(part);
        const parts = this.#parts.slice().sort((a, b) => a.PartNumber! - b.PartNumber!);
        try {
          const out = await c.client.send(
            new CompleteMultipartUploadCommand({ Bucket: c.bucket, Key: c.key, UploadId: await this.#uploadId, MultipartUpload: { Parts: parts } }),
            c.http,
          );
          etag = out.ETag;
          this.#openUpload = undefined;
        } catch (err) {
          // The store may have completed it and lost only its answer (a connection lost, a 5xx after
          // the work, or a retry that finds the upload gone: S3 answers a retry as the first time,
          // MinIO and Ceph answer NoSuchUpload). The object then carries the ETag S3 gives a
          // multipart upload of exactly these parts, which an earlier upload of the same bytes has
          // too: either way the object holds them. A refusal (InvalidPart, 403…) is a failure.
          const expected = completionMayHaveLanded(err) ? multipartEtag(parts) : null;
          const st = expected ? await c.head().catch(() => null) : null;
          if (!st || st.etag.replace(/"/g, '') !== expected || st.size !== this.#total) throw err;
          etag = st.etag;
          // If it was not this upload that landed, its parts would stay stored for good: abort it
          // (NoSuchUpload is fine). Should that fail, leftover() still names it for a later cleanup.
          await this.#discard().catch(() => undefined);
        }
      }
      this.#state = 'done';
      if (!etag) {
        // Some stores answer without an ETag; the object's own HEAD has it.
        const st = await c.head();
        if (!st) throw new StrataError('IO_ERROR', `complete ${c.path}: the object is missing right after it was written`);
        return fileStatus(c.name, st);
      }
      return { name: c.name, type: 'file', size: this.#total, mtimeMs: Date.now(), fingerprint: fingerprint(etag, this.#total) };
    } catch (err) {
      if (this.#state !== 'done') {
        this.#state = 'done';
        await this.#discard().catch(() => undefined);
      }
      throw s3Error(err, `complete ${c.path}`);
    }
  }

  async abort(): Promise<void> {
    if (this.#state === 'done') return;
    this.#state = 'done';
    await this.#discard();
  }

  leftover(): string | undefined {
    return this.#openUpload === undefined ? undefined : JSON.stringify({ key: this.#c.key, uploadId: this.#openUpload });
  }

  /** Drops buffered bytes and aborts the multipart upload, if one was started. */
  async #discard(): Promise<void> {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#part = undefined;
    this.#partFill = 0;
    const uploadId = this.#uploadId;
    this.#uploadId = null;
    if (!uploadId) return;
    await Promise.all(this.#inFlight);
    let id: string;
    try {
      id = await uploadId;
    } catch {
      return; // it was never created
    }
    const c = this.#c;
    try {
      await c.client.send(new AbortMultipartUploadCommand({ Bucket: c.bucket, Key: c.key, UploadId: id }), c.http);
    } catch (err) {
      const e = s3Error(err, `abort ${c.path}`);
      if (e.code !== 'NOT_FOUND') throw e;
    }
    this.#openUpload = undefined;
  }

  /** Parts grow with their number, so a stream of unknown length still fits in 10,000 parts. */
  #partSize(partNumber: number): number {
    return partSizeOf(partNumber, this.#c.settings);
  }

  /** The kept chunks (all under a part) as one buffer. */
  #takeKept(): Buffer {
    const out = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    return out;
  }

  async #uploadPart(body: Buffer): Promise<void> {
    const c = this.#c;
    // The checksum mode is explicit: S3 rejects part checksums on an upload created without an
    // algorithm, and the SDK adds them to UploadPart by default. CRC32 is what it computes anyway.
    this.#uploadId ??= c.client
      .send(new CreateMultipartUploadCommand({ Bucket: c.bucket, Key: c.key, ChecksumAlgorithm: 'CRC32' }), c.http)
      .then((out) => {
        if (!out.UploadId) throw new StrataError('IO_ERROR', `write ${c.path}: the store returned no upload id`);
        if (this.#state !== 'done') this.#openUpload = out.UploadId;
        return out.UploadId;
      });
    const uploadId = await this.#uploadId.catch((err) => {
      throw (this.#failure ??= s3Error(err, `write ${c.path}`));
    });
    if (!this.#announced) {
      // Recorded before its first part is sent (parts run in parallel with later writes).
      this.#announced = true;
      // Best effort, as the record is: a failed one must not cost the part.
      await this.onLeftover?.().catch(() => undefined);
    }
    while (this.#inFlight.size >= c.settings.uploadConcurrency) await Promise.race(this.#inFlight);
    if (this.#failure) throw this.#failure;
    if (this.#state === 'done') throw new StrataError('INVALID_ARGUMENT', `write ${c.path}: the writer was aborted`);
    const partNumber = ++this.#partCount;
    if (partNumber > MAX_PARTS) {
      throw (this.#failure = new StrataError('FILE_TOO_LARGE', `write ${c.path}: more than ${MAX_PARTS} parts`));
    }
    const p: Promise<void> = c.client
      .send(
        new UploadPartCommand({ Bucket: c.bucket, Key: c.key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ChecksumAlgorithm: 'CRC32' }),
        c.http,
      )
      .then((out) => {
        // The store has the whole body: a whole part's buffer can hold the next one (a last part,
        // a view of its buffer, is refused by give and goes back in complete()).
        PART_BUFFERS.give(body);
        if (!out.ETag) throw new StrataError('IO_ERROR', `write ${c.path}: the store returned no ETag for part ${partNumber}`);
        // Each part's checksum must come back in CompleteMultipartUpload.
        this.#parts.push({
          PartNumber: partNumber,
          ETag: out.ETag,
          ChecksumCRC32: out.ChecksumCRC32,
          ChecksumCRC32C: out.ChecksumCRC32C,
          ChecksumCRC64NVME: out.ChecksumCRC64NVME,
          ChecksumSHA1: out.ChecksumSHA1,
          ChecksumSHA256: out.ChecksumSHA256,
        });
      })
      .catch((err) => {
        this.#failure ??= s3Error(err, `write ${c.path}: part ${partNumber}`);
      })
      .finally(() => {
        this.#inFlight.delete(p);
      });
    this.#inFlight.add(p);
  }
}

/** S3's limit on a key's length, in bytes of UTF-8. */
const MAX_KEY_BYTES = 1024;

/**
 * The S3 driver. Every call takes the caller's AbortSignal; every request has connect and response
 * timeouts and is retried with backoff only on throttling, 5xx and network errors (never on a 4xx
 * such as a 404), so a dead endpoint fails within `maxAttempts × timeouts` instead of hanging.
 */
export class S3UnderFileSystem implements UnderFileSystem {
  readonly uri: string;
  readonly #bucket: string;
  /** '' or the key prefix of the root, ending in '/'. */
  readonly #prefix: string;
  readonly #settings: S3UfsSettings;
  readonly #client: S3Client;
  /**
   * Directory markers this driver wrote or saw, so removing a file need not list its
   * directory to keep it (the marker does; on a large directory that listing is the
   * dearest part of an unlink). Dropped when this driver removes or moves a directory.
   * A marker removed by someone else is missed only if that directory's last file then
   * goes through here: the directory vanishes from the store, as if they had removed
   * that file too.
   */
  readonly #markers = new LRUCache<string, true>({ max: 100_000 });

  constructor(uri: string, options: Record<string, string> = {}) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new StrataError('CONFIG', `not a valid s3:// URI: '${uri}'`);
    }
    if (url.protocol !== 's3:') throw new StrataError('CONFIG', `not an s3:// URI: ${uri}`);
    if (url.username || url.password || url.port || url.search || url.hash) {
      throw new StrataError('CONFIG', `s3:// URI must be s3://bucket/prefix, without credentials, port, query or fragment: ${uri}`);
    }
    if (!/^[a-z0-9][a-z0-9._-]{1,253}[a-z0-9]$/i.test(url.hostname)) throw new StrataError('CONFIG', `s3:// URI does not name a valid bucket: ${uri}`);
    const segments = url.pathname.split('/').filter((s) => s.length > 0);
    let prefixParts: string[];
    try {
      prefixParts = segments.map((s) => validateName(decodeURIComponent(s)));
    } catch (err) {
      throw new StrataError('CONFIG', `s3:// URI has a malformed prefix: ${uri}`, { cause: err });
    }
    this.uri = uri;
    this.#bucket = url.hostname;
    this.#prefix = prefixParts.length ? prefixParts.join('/') + '/' : '';
    // Room for at least a name of one byte and its directory's '/'.
    if (Buffer.byteLength(this.#prefix) > MAX_KEY_BYTES - 2) throw new StrataError('CONFIG', `s3:// URI has a prefix of ${Buffer.byteLength(this.#prefix)} bytes; S3 keys are at most ${MAX_KEY_BYTES}: ${uri}`);
    this.#settings = parseS3Options(options);
    this.#client = new S3Client(this.#clientConfig());
  }

  /**
   * S3 keys are at most 1,024 bytes of UTF-8. The key of `/a/b` is the prefix and `a/b`, and a
   * directory's marker key has a '/' more, as many bytes as the path. A longer key would be refused
   * only when bytes go to the store (EIO at close, or an ASYNC_THROUGH persist that never
   * succeeds), so the master refuses the name when it is made.
   */
  get maxPathBytes(): number {
    return MAX_KEY_BYTES - Buffer.byteLength(this.#prefix);
  }

  /**
   * The SDK client, for callers that add middleware (metrics, tests); the driver owns and
   * closes it. Handing it out turns off the SDK's cache of resolved middleware (see #http),
   * so middleware added later applies to every later request.
   */
  get client(): S3Client {
    this.#stackMayChange = true;
    return this.#client;
  }

  /** Whether someone may change the client's middleware: then no request may use a cached stack. */
  #stackMayChange = false;

  #clientConfig(): S3ClientConfig {
    const s = this.#settings;
    const config: S3ClientConfig = {
      region: s.region ?? this.#fallbackRegion,
      maxAttempts: s.maxAttempts,
      retryMode: 'standard',
      // Resolve each command's middleware stack once, not per request: 10-20% of the SDK's CPU
      // per 64 KiB GetObject here (1.0-1.2 ms without, against 0.4 ms for a bare signed GET).
      // The SDK uses the cache only for requests sent without options (see #http).
      cacheMiddleware: true,
      requestHandler: new S3HttpHandler({ connectionTimeout: s.connectTimeoutMs, requestTimeout: s.requestTimeoutMs }),
    };
    if (s.endpoint !== undefined) config.endpoint = s.endpoint;
    if (s.forcePathStyle !== undefined) config.forcePathStyle = s.forcePathStyle;
    if (s.credentials) config.credentials = s.credentials;
    return config;
  }

  forgetCaches(): void {
    this.#markers.clear();
  }

  #region: Promise<string> | null = null;

  /** The SDK's own region chain (env, profile), falling back to us-east-1 instead of failing every request. */
  readonly #fallbackRegion = (): Promise<string> => {
    return (this.#region ??= (async () => {
      const probe = new S3Client({});
      try {
        return await probe.config.region();
      } catch {
        return DEFAULT_REGION;
      } finally {
        probe.destroy();
      }
    })());
  };

  #http(opts?: UfsCallOptions): { abortSignal?: AbortSignal } | undefined {
    if (opts?.signal) return { abortSignal: opts.signal };
    return this.#stackMayChange ? {} : undefined;
  }

  #objectKey(parts: string[]): string {
    return this.#prefix + parts.join('/');
  }

  #dirKey(parts: string[]): string {
    return parts.length ? `${this.#prefix}${parts.join('/')}/` : this.#prefix;
  }

  async #head(key: string, opts: UfsCallOptions | undefined, context: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }), this.#http(opts));
      return { key, size: out.ContentLength ?? 0, etag: out.ETag ?? '', mtimeMs: out.LastModified?.getTime() ?? 0 };
    } catch (err) {
      const e = s3Error(err, context);
      if (e.code === 'NOT_FOUND') return null;
      throw e;
    }
  }

  /** One ListObjectsV2 page, with keys decoded. */
  async #listPage(
    input: { Prefix: string; Delimiter?: string; MaxKeys?: number; ContinuationToken?: string },
    opts: UfsCallOptions | undefined,
    context: string,
  ): Promise<{ objects: ObjectInfo[]; prefixes: string[]; undecodable: number; next?: string }> {
    let out;
    try {
      out = await this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, EncodingType: 'url', ...input }), this.#http(opts));
    } catch (err) {
      throw s3Error(err, context);
    }
    const encoded = out.EncodingType === 'url';
    const objects: ObjectInfo[] = [];
    const prefixes: string[] = [];
    let undecodable = 0;
    for (const o of out.Contents ?? []) {
      const key = o.Key === undefined ? null : decodeListed(o.Key, encoded);
      if (key === null) undecodable++;
      else objects.push({ key, size: o.Size ?? 0, etag: o.ETag ?? '', mtimeMs: o.LastModified?.getTime() ?? 0 });
    }
    for (const p of out.CommonPrefixes ?? []) {
      const prefix = p.Prefix === undefined ? null : decodeListed(p.Prefix, encoded);
      if (prefix === null) undecodable++;
      else prefixes.push(prefix);
    }
    const next = out.IsTruncated ? out.NextContinuationToken : undefined;
    if (out.IsTruncated && !next) throw new StrataError('IO_ERROR', `${context}: the store truncated a listing without a continuation token`);
    return next ? { objects, prefixes, undecodable, next } : { objects, prefixes, undecodable };
  }

  /** Up to `max` keys below `dirKey` (a directory exists while this is non-empty). */
  async #keysUnder(dirKey: string, max: number, opts: UfsCallOptions | undefined, context: string): Promise<ObjectInfo[]> {
    const page = await this.#listPage({ Prefix: dirKey, MaxKeys: max }, opts, context);
    return page.objects;
  }

  /** What is at `parts`: the root and prefixes are directories; a file wins over a directory of the same name. */
  async #kind(parts: string[], opts: UfsCallOptions | undefined, context: string): Promise<'file' | 'directory' | null> {
    if (!parts.length) return 'directory';
    if (await this.#head(this.#objectKey(parts), opts, context)) return 'file';
    return (await this.#keysUnder(this.#dirKey(parts), 1, opts, context)).length ? 'directory' : null;
  }

  /** The error for an object that is not there: IS_DIRECTORY when a directory is. */
  async #missingObject(parts: string[], opts: UfsCallOptions | undefined, context: string): Promise<StrataError> {
    const isDir = !parts.length || (await this.#keysUnder(this.#dirKey(parts), 1, opts, context)).length > 0;
    return isDir ? new StrataError('IS_DIRECTORY', `${context}: is a directory`) : new StrataError('NOT_FOUND', `${context}: no such file`);
  }

  /**
   * Before an entry of a directory goes (delete, rmdir, a move out of it), makes sure the directory
   * has its marker, so it stays when that was its last entry. Before, not after: a directory without
   * a marker exists only through its keys, and between the last one's delete and a marker written
   * after it, another change in the directory (a mkdir or a rename into it, which check their
   * parent) would find no directory there. A one-key listing (and a PUT when there is no marker) per
   * directory this driver has not seen a marker of, where a look after each delete cost a listing per
   * delete in a directory without one. An existing marker is left as it is: other tools keep a
   * directory's mode, owner and times on it (s3fs). A listing, not a HEAD: some S3-compatible stores
   * answer a HEAD of `dir/` for any prefix with keys under it, marker or not.
   */
  async #keepDirectory(parts: string[], opts: UfsCallOptions | undefined, context: string): Promise<void> {
    if (!parts.length || opts?.parentMayGo) return;
    const dirKey = this.#dirKey(parts);
    if (this.#markers.has(dirKey)) return;
    // Listed first when present ("dir/" sorts before "dir/x").
    if ((await this.#keysUnder(dirKey, 1, opts, context))[0]?.key === dirKey) {
      this.#markers.set(dirKey, true);
      return;
    }
    try {
      await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: dirKey, Body: Buffer.alloc(0), ContentLength: 0 }), this.#http(opts));
    } catch (err) {
      throw s3Error(err, context);
    }
    this.#markers.set(dirKey, true);
  }

  async #deleteKey(key: string, opts: UfsCallOptions | undefined, context: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }), this.#http(opts));
    } catch (err) {
      throw s3Error(err, context);
    }
  }

  async stat(path: string, opts?: UfsCallOptions): Promise<UfsStatus | null> {
    const parts = parsePath(path);
    if (!parts.length) return dirStatus('');
    const name = parts[parts.length - 1]!;
    const context = `stat ${path}`;
    const obj = await this.#head(this.#objectKey(parts), opts, context);
    if (obj) return fileStatus(name, obj);
    const under = await this.#keysUnder(this.#dirKey(parts), 1, opts, context);
    return under.length ? dirStatus(name) : null;
  }

  async list(path: string, opts?: UfsCallOptions): Promise<UfsStatus[]> {
    const parts = parsePath(path);
    const dirKey = this.#dirKey(parts);
    const context = `list ${path}`;
    const entries = new Map<string, UfsStatus>();
    let seen = false;
    let token: string | undefined;
    do {
      const page = await this.#listPage(token ? { Prefix: dirKey, Delimiter: '/', ContinuationToken: token } : { Prefix: dirKey, Delimiter: '/' }, opts, context);
      if (page.objects.length || page.prefixes.length || page.undecodable) seen = true;
      for (const o of page.objects) {
        if (o.key === dirKey || !o.key.startsWith(dirKey)) continue; // the directory's own marker
        const name = childName(o.key.slice(dirKey.length));
        if (name !== null) entries.set(name, fileStatus(name, o));
      }
      for (const p of page.prefixes) {
        if (!p.startsWith(dirKey) || !p.endsWith('/')) continue;
        const name = childName(p.slice(dirKey.length, -1));
        // An object of the same name wins, as in stat().
        if (name !== null && !entries.has(name)) entries.set(name, dirStatus(name));
      }
      token = page.next;
    } while (token);
    if (!seen && parts.length) {
      const isFile = await this.#head(this.#objectKey(parts), opts, context);
      throw isFile ? new StrataError('NOT_DIRECTORY', `${context}: not a directory`) : new StrataError('NOT_FOUND', `${context}: no such directory`);
    }
    return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new StrataError('INVALID_ARGUMENT', `read ${path}: bad range ${offset}+${length}`);
    }
    const parts = parsePath(path);
    const context = `read ${path}`;
    if (!parts.length) throw new StrataError('IS_DIRECTORY', `${context}: is a directory`);
    const key = this.#objectKey(parts);
    if (length === 0) {
      if (!(await this.#head(key, opts, context))) throw await this.#missingObject(parts, opts, context);
      return Readable.from([]);
    }
    // A version asked for: only its size is compared. Its ETag is no proof of other content: a
    // directory's move copies each object, and a copy of a multipart object (or any, under SSE-KMS)
    // has another ETag for the same bytes, which the namespace does not learn of.
    const want = opts?.ifFingerprint;
    const wantSize = want === undefined ? undefined : Number(want.slice(want.lastIndexOf(':') + 1));
    let out;
    try {
      out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }), this.#http(opts));
    } catch (err) {
      // A range that starts at or after the end: nothing to read, as a file system's read() past EOF.
      // Unless a version was asked for: its size is past the range's start, so this is another one.
      if (isInvalidRange(err)) {
        if (wantSize !== undefined) throw new StrataError('STORE_CHANGED', `${context}: the object changed in the store (it ends before ${offset}, expected ${wantSize} bytes)`, { cause: err });
        return Readable.from([]);
      }
      const e = s3Error(err, context);
      if (e.code === 'NOT_FOUND') throw await this.#missingObject(parts, opts, context);
      throw e;
    }
    const body = out.Body as Readable | undefined;
    if (!body) return Readable.from([]);
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange ?? '');
    const size = range ? Number(range[3]) : out.ContentLength;
    if (wantSize !== undefined && Number.isSafeInteger(wantSize) && size !== undefined && size !== wantSize) {
      body.destroy();
      throw new StrataError('STORE_CHANGED', `${context}: the object changed in the store (${size} bytes, expected ${wantSize})`);
    }
    if (!range) {
      // The store ignored the Range header and sends the whole object (some do for 0-byte objects).
      return clipBody(body, offset, length, false, context, opts?.signal);
    }
    const [start, total] = [Number(range[1]), Number(range[3])];
    if (offset >= total) {
      // Stores that answer an unsatisfiable range with a 206 instead of a 416 (s3rver does for 0-byte objects).
      body.destroy();
      return Readable.from([]);
    }
    if (start !== offset) {
      body.destroy();
      throw new StrataError('IO_ERROR', `${context}: asked for bytes from ${offset}, the store sent ${out.ContentRange}`);
    }
    const take = Math.min(length, total - offset);
    // Without a strong ETag there is no telling whether a second request reads the same version.
    const etag = out.ETag;
    const resume: ResumeBody | undefined =
      etag && !etag.startsWith('W/')
        ? (delivered, leaving) => this.#readMore(key, offset + delivered, offset + take - 1, { etag, total }, { ...opts, signal: opts?.signal ? AbortSignal.any([opts.signal, leaving]) : leaving }, context)
        : undefined;
    return clipBody(body, 0, take, true, context, opts?.signal, resume, this.#settings.maxAttempts - 1);
  }

  /**
   * The rest of a read whose body was cut: bytes `[from, to]` of the version read so far (its ETag
   * and size), or IO_ERROR if the object changed since. If-Match asks the store to refuse another
   * version; the answer's own ETag is checked too, as some stores ignore If-Match on GET.
   */
  async #readMore(key: string, from: number, to: number, version: { etag: string; total: number }, opts: UfsCallOptions | undefined, context: string): Promise<Readable> {
    const replaced = (cause?: unknown) => new StrataError('IO_ERROR', `${context}: the object was replaced while it was read (its connection was cut at byte ${from})`, cause ? { cause } : undefined);
    let out;
    try {
      out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key, Range: `bytes=${from}-${to}`, IfMatch: version.etag }), this.#http(opts));
    } catch (err) {
      if (httpStatus(err) === 412 || (err as SdkError).name === 'PreconditionFailed') throw replaced(err);
      const e = s3Error(err, context);
      // Mid-stream, a missing object is a failed read of bytes already begun, not a missing file.
      if (e.code === 'NOT_FOUND') throw new StrataError('IO_ERROR', `${context}: the object was deleted while it was read (its connection was cut at byte ${from})`, { cause: err });
      throw e;
    }
    const body = out.Body as Readable | undefined;
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange ?? '');
    // Some stores quote ETags in one answer and not in another.
    if (unquoted(out.ETag) !== unquoted(version.etag) || (range && Number(range[3]) !== version.total)) {
      body?.destroy();
      throw replaced();
    }
    if (!body || !range || Number(range[1]) !== from) {
      body?.destroy();
      throw new StrataError('IO_ERROR', `${context}: asked for bytes from ${from} to go on after a cut connection, the store sent ${out.ContentRange ?? 'no range'}`);
    }
    return body;
  }

  async create(path: string, opts?: UfsCallOptions): Promise<UfsWriter> {
    const parts = parsePath(path);
    if (!parts.length) throw new StrataError('IS_DIRECTORY', `create ${path}: is a directory`);
    const key = this.#objectKey(parts);
    const context = `create ${path}`;
    return new S3Writer({
      client: this.#client,
      bucket: this.#bucket,
      key,
      name: parts[parts.length - 1]!,
      path,
      settings: this.#settings,
      http: this.#http(opts),
      isDirectory: async () => !(opts?.noDirectoryUntil !== undefined && Date.now() < opts.noDirectoryUntil) && (await this.#keysUnder(this.#dirKey(parts), 1, opts, context)).length > 0,
      head: () => this.#head(key, opts, context),
    });
  }

  async delete(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = parsePath(path);
    const context = `delete ${path}`;
    if (!parts.length) throw new StrataError('IS_DIRECTORY', `${context}: is a directory`);
    const key = this.#objectKey(parts);
    // DeleteObject succeeds on a missing key, so look first, unless the caller does not care (one request less).
    if (!opts?.missingOk && !(await this.#head(key, opts, context))) {
      if (opts?.ifPresent) return;
      throw await this.#missingObject(parts, opts, context);
    }
    await this.#keepDirectory(parts.slice(0, -1), opts, context);
    await this.#deleteKey(key, opts, context);
  }

  async discardLeftover(handle: string, opts?: UfsCallOptions): Promise<void> {
    const h = parseLeftoverHandle(handle);
    const key = h?.key;
    const uploadId = h?.uploadId;
    // Only uploads of objects under this store's root, named as our paths are: the handle comes from a worker's report.
    let valid = typeof key === 'string' && typeof uploadId === 'string' && uploadId.length > 0 && key.startsWith(this.#prefix);
    if (valid) {
      try {
        valid = this.#objectKey(parsePath('/' + (key as string).slice(this.#prefix.length))) === key && key !== this.#prefix;
      } catch {
        valid = false;
      }
    }
    if (!valid) throw new StrataError('INVALID_ARGUMENT', `discard: not an upload under this store's root: ${handle.slice(0, 200)}`);
    try {
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: key as string, UploadId: uploadId as string }), this.#http(opts));
    } catch (err) {
      const e = s3Error(err, `discard the upload of ${key}`);
      if (e.code !== 'NOT_FOUND') throw e;
    }
  }

  async mkdir(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = parsePath(path);
    const context = `mkdir ${path}`;
    if (!parts.length) throw new StrataError('ALREADY_EXISTS', `${context}: exists`);
    const [here, parent] = await Promise.all([this.#kind(parts, opts, context), this.#kind(parts.slice(0, -1), opts, context)]);
    if (here) throw new StrataError('ALREADY_EXISTS', `${context}: exists`);
    if (parent === null) throw new StrataError('NOT_FOUND', `${context}: no such parent directory`);
    if (parent === 'file') throw new StrataError('NOT_DIRECTORY', `${context}: the parent is a file`);
    try {
      await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.#dirKey(parts), Body: Buffer.alloc(0), ContentLength: 0 }), this.#http(opts));
    } catch (err) {
      throw s3Error(err, context);
    }
    this.#markers.set(this.#dirKey(parts), true);
  }

  async rmdir(path: string, opts?: UfsCallOptions): Promise<void> {
    const parts = parsePath(path);
    const context = `rmdir ${path}`;
    if (!parts.length) throw new StrataError('NOT_PERMITTED', `${context}: cannot remove the root`);
    const dirKey = this.#dirKey(parts);
    const under = await this.#keysUnder(dirKey, 2, opts, context);
    if (under.some((o) => o.key !== dirKey)) throw new StrataError('NOT_EMPTY', `${context}: not empty`);
    if (!under.length) {
      const isFile = await this.#head(this.#objectKey(parts), opts, context);
      throw isFile ? new StrataError('NOT_DIRECTORY', `${context}: not a directory`) : new StrataError('NOT_FOUND', `${context}: no such directory`);
    }
    await this.#keepDirectory(parts.slice(0, -1), opts, context);
    this.#markers.delete(dirKey);
    await this.#deleteKey(dirKey, opts, context);
  }

  async rename(src: string, dst: string, opts?: UfsCallOptions): Promise<UfsStatus | void> {
    const from = parsePath(src);
    const to = parsePath(dst);
    const context = `rename ${src} -> ${dst}`;
    if (!from.length || !to.length) throw new StrataError('INVALID_ARGUMENT', `${context}: cannot move or replace the root`);
    const known = opts?.knownFile;
    // The caller vouches for what the looks below would find: one CopyObject and the delete. A larger
    // file is looked at, since its copy in parts needs its true size.
    if (known && known.size <= this.#settings.multipartCopyThreshold && from.join('/') !== to.join('/') && !to.join('/').startsWith(from.join('/') + '/')) {
      const dstKey = this.#objectKey(to);
      // Before the copy: a failure here leaves nothing at the destination.
      await this.#keepDirectory(from.slice(0, -1), opts, context);
      const etag = await this.#copy(this.#objectKey(from), dstKey, known.size, opts, context);
      await this.#deleteMoved([this.#objectKey(from)], opts, context);
      return etag ? copiedStatus(to, etag, known.size) : undefined;
    }
    const srcFile = await this.#head(this.#objectKey(from), opts, context);
    const srcDirKey = this.#dirKey(from);
    const srcIsDir = !srcFile && (await this.#keysUnder(srcDirKey, 1, opts, context)).length > 0;
    if (!srcFile && !srcIsDir) throw new StrataError('NOT_FOUND', `${context}: no such file or directory`);
    const parent = await this.#kind(to.slice(0, -1), opts, context);
    if (parent === null) throw new StrataError('NOT_FOUND', `${context}: no such destination directory`);
    if (parent === 'file') throw new StrataError('NOT_DIRECTORY', `${context}: the destination's parent is a file`);
    const fromPath = from.join('/');
    const toPath = to.join('/');
    if (fromPath === toPath) return;
    // The same checks as rename(2), so a move never orphans keys below a name that no longer exists.
    if (toPath.startsWith(fromPath + '/')) throw new StrataError('INVALID_ARGUMENT', `${context}: cannot move a directory into itself`);
    const dstDirKey = this.#dirKey(to);
    const [dstFile, dstUnder] = await Promise.all([this.#head(this.#objectKey(to), opts, context), this.#keysUnder(dstDirKey, 2, opts, context)]);
    let moved: UfsStatus | undefined;
    if (srcFile) {
      if (dstUnder.length) throw new StrataError('IS_DIRECTORY', `${context}: the destination is a directory`);
      await this.#keepDirectory(from.slice(0, -1), opts, context);
      const etag = await this.#copy(srcFile.key, this.#objectKey(to), srcFile.size, opts, context);
      await this.#deleteMoved([srcFile.key], opts, context);
      if (etag) moved = copiedStatus(to, etag, srcFile.size);
    } else {
      if (dstFile) throw new StrataError('NOT_DIRECTORY', `${context}: the destination is a file`);
      if (dstUnder.some((o) => o.key !== dstDirKey)) throw new StrataError('NOT_EMPTY', `${context}: the destination is not empty`);
      for (const k of [...this.#markers.keys()]) if (k.startsWith(srcDirKey)) this.#markers.delete(k);
      await this.#keepDirectory(from.slice(0, -1), opts, context);
      await this.#moveTree(srcDirKey, dstDirKey, dstUnder.some((o) => o.key === dstDirKey), opts, context);
    }
    return moved;
  }

  /**
   * Copies every key below `srcDirKey` (verbatim, whatever it is) to the same place below
   * `dstDirKey`, then deletes the originals. If a copy fails, the copies made so far are removed.
   */
  async #moveTree(srcDirKey: string, dstDirKey: string, dstMarkerWas: boolean, opts: UfsCallOptions | undefined, context: string): Promise<void> {
    const keys: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.#listPage(token ? { Prefix: srcDirKey, ContinuationToken: token } : { Prefix: srcDirKey }, opts, context);
      if (page.undecodable) throw new StrataError('IO_ERROR', `${context}: the store listed ${page.undecodable} keys it did not encode`);
      keys.push(...page.objects.filter((o) => o.key.startsWith(srcDirKey)));
      token = page.next;
    } while (token);
    // Checked before any copy: S3 would refuse the long ones midway, after some were copied.
    const longest = keys.reduce((n, o) => Math.max(n, Buffer.byteLength(o.key) - Buffer.byteLength(srcDirKey)), 0) + Buffer.byteLength(dstDirKey);
    if (longest > MAX_KEY_BYTES) throw new StrataError('NAME_TOO_LONG', `${context}: a key below it would become ${longest} bytes long; S3 allows ${MAX_KEY_BYTES}`);
    const copied: string[] = [];
    try {
      await mapLimit(keys, TREE_CONCURRENCY, async (o) => {
        const target = dstDirKey + o.key.slice(srcDirKey.length);
        await this.#copy(o.key, target, o.size, opts, context);
        copied.push(target);
      });
    } catch (err) {
      // The marker of an empty destination directory that was being replaced stays; one copied from the source goes.
      await mapLimit(
        copied.filter((k) => k !== dstDirKey || !dstMarkerWas),
        TREE_CONCURRENCY,
        (k) => this.#deleteKey(k, undefined, context),
      ).catch(() => undefined);
      throw err;
    }
    await this.#deleteMoved(
      keys.map((o) => o.key),
      opts,
      context,
    );
  }

  /**
   * Deletes the sources of a move whose copies all exist: the move has happened, so it
   * is not reported as failed (the master would then keep the old names for objects that
   * are gone). Every key is tried, those that fail again twice more; a key the store still
   * refuses stays behind and shows up as a file at its old place at the next sync.
   */
  async #deleteMoved(keys: readonly string[], opts: UfsCallOptions | undefined, context: string): Promise<void> {
    let left = [...keys];
    for (let round = 0; round < 3 && left.length > 0; round++) {
      if (round > 0) await new Promise((r) => setTimeout(r, 200 * round));
      const failed: string[] = [];
      await mapLimit(left, TREE_CONCURRENCY, async (k) => {
        await this.#deleteKey(k, opts, context).catch(() => void failed.push(k));
      });
      left = failed;
    }
  }

  /** Server-side copy: CopyObject, or UploadPartCopy in parts for objects over the single-copy limit. Answers the copy's ETag when the store gave one. */
  async #copy(srcKey: string, dstKey: string, size: number, opts: UfsCallOptions | undefined, context: string): Promise<string | undefined> {
    const http = this.#http(opts);
    const source = copySource(this.#bucket, srcKey);
    const partSize = this.#settings.multipartCopyThreshold;
    if (size <= partSize) {
      try {
        const out = await this.#client.send(new CopyObjectCommand({ Bucket: this.#bucket, Key: dstKey, CopySource: source }), http);
        return out.CopyObjectResult?.ETag;
      } catch (err) {
        throw s3Error(err, context);
      }
    }
    const count = Math.ceil(size / partSize);
    if (count > MAX_PARTS) throw new StrataError('FILE_TOO_LARGE', `${context}: ${size} bytes need more than ${MAX_PARTS} copy parts`);
    let uploadId: string | undefined;
    try {
      const created = await this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: dstKey }), http);
      uploadId = created.UploadId;
      if (!uploadId) throw new StrataError('IO_ERROR', `${context}: the store returned no upload id`);
      const id = uploadId;
      const parts: CompletedPart[] = [];
      const numbers = Array.from({ length: count }, (_, i) => i + 1);
      await mapLimit(numbers, this.#settings.uploadConcurrency, async (n) => {
        const first = (n - 1) * partSize;
        const last = Math.min(size, n * partSize) - 1;
        const out = await this.#client.send(
          new UploadPartCopyCommand({ Bucket: this.#bucket, Key: dstKey, UploadId: id, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${first}-${last}` }),
          http,
        );
        // No checksums: this upload was created without an algorithm, so Complete must not name any.
        const etag = out.CopyPartResult?.ETag;
        if (!etag) throw new StrataError('IO_ERROR', `${context}: the store returned no ETag for copy part ${n}`);
        parts.push({ PartNumber: n, ETag: etag });
      });
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      const done = await this.#client.send(new CompleteMultipartUploadCommand({ Bucket: this.#bucket, Key: dstKey, UploadId: id, MultipartUpload: { Parts: parts } }), http);
      return done.ETag;
    } catch (err) {
      if (uploadId) {
        // Without the caller's signal: an abort may be what ended the copy, and the parts must still go.
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: dstKey, UploadId: uploadId })).catch(() => undefined);
      }
      throw s3Error(err, context);
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }
}
