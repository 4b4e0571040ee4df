/**
 * A real S3-protocol server for tests and benchmarks: s3rver (a devDependency) on 127.0.0.1,
 * its objects stored under a directory, with the shims it needs to answer what real S3 answers.
 *
 *   const s3 = await startS3Server({ dir, buckets: ['b'] });   // s3.endpoint = http://127.0.0.1:PORT
 *   …
 *   await s3.close();
 *
 * Run as a program it serves until SIGINT/SIGTERM (or until its parent, if forked, goes away):
 *
 *   node dist/scripts/s3-server.js --dir DIR --bucket NAME [--bucket NAME…] [--port 0] [--latency-ms 0]
 *
 * and prints one JSON line `{"endpoint":…,"port":…}` on stdout once it listens. Forked with an IPC
 * channel it also answers the messages 'stats' (with `{stats}`) and 'reset-stats'. `--latency-ms N`
 * holds every request N ms before answering it, as a store in another building or region would (a
 * request to S3 in the same region takes 10-30 ms before its first byte; loopback takes none).
 * The access key is S3RVER, the secret S3RVER (s3rver checks only the key id, not signatures).
 *
 * s3rver (3.7.1) differs from S3 in ways the shims below work around, in front of its router:
 * - it decodes `x-amz-copy-source` with decodeURI, which leaves %23 (#), %3F (?), %26 (&)… encoded,
 *   while S3 wants every key segment URL-encoded; the shim re-encodes the header so s3rver's
 *   decodeURI yields the key;
 * - it has no AbortMultipartUpload (DELETE ?uploadId is a 405) and no UploadPartCopy; the shims
 *   implement both on top of s3rver's own store;
 * - a completed multipart upload's ETag is the MD5 of its bytes; S3's is the MD5 of the parts'
 *   binary MD5s followed by '-' and the part count, which the shim writes in its place;
 * - it takes keys of any length; S3 refuses a write of one over 1,024 bytes (KeyTooLongError), and so
 *   does the shim;
 * - it ignores If-Match on GET and HEAD; the shim answers 412 PreconditionFailed when the object's
 *   ETag is another;
 * - it encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 (Node >= 17)
 *   keeps in its legacy provider only, so every truncated listing would be a 500; while a server
 *   runs, `crypto.createCipheriv('des', …)` is handed three-key DES with K1 = K2 = K3, which is
 *   single DES and still in the default provider (undone when the last server closes).
 * Known differences that are not shimmed (callers work around them): it ignores
 * `encoding-type=url`; it maps keys onto files with path.join (no `a//b` or `a/../b`); a ranged GET
 * of a 0-byte object is a 206 'bytes 0-0/0' with Content-Length 1 and no body; a directory holding
 * only subdirectories is not reported as a common prefix; list pages follow its file walk, which is
 * not S3's key order around '/'; it does not verify SigV4 signatures.
 */

import { mkdirSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';

export const S3_ACCESS_KEY = 'S3RVER';
export const S3_SECRET_KEY = 'S3RVER';

// s3rver ships no types: the little of it this module uses.
export interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
  req: IncomingMessage;
  res: ServerResponse;
  /** After s3rver's XML parser ran: the request's parsed body. */
  request?: { body?: unknown };
}
export type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  getObject(bucket: string, key: string, range: { start: number; end: number }): Promise<{ content: Readable | null } | null>;
  putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<{ size: number; md5: string }>;
}
interface S3rverServer {
  middleware: KoaMiddleware[];
  httpServer?: Server;
  store: S3rverStore;
  run(): Promise<AddressInfo>;
  /** With a callback: the http.Server, listening once the callback runs. */
  listen(port: number, address: string, options: object, onListening: () => void): Server;
  close(): Promise<void>;
}
type S3rverOptions = { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] };

export interface S3ServerOptions {
  /** Where s3rver keeps buckets and objects (created if missing; left in place at close). */
  dir: string;
  /** Buckets that exist from the start. */
  buckets: string[];
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /**
   * Runs first for every request, before the shims and s3rver: sees the request as the client sent
   * it and may answer it itself (not calling `next`), e.g. to inject faults.
   */
  before?: KoaMiddleware;
}

export interface S3ServerStats {
  /** Every request. */
  requests: number;
  /** GETs of an object (not listings) and the body bytes sent for them. */
  objectGets: number;
  objectGetBytes: number;
  /** PUTs (objects and parts) and their body bytes (as the request headers announce them). */
  puts: number;
  putBytes: number;
  /** ListObjects(V2) requests. */
  lists: number;
  /** HEAD requests. */
  heads: number;
  /** UploadPart requests in flight now, and the most seen at once. */
  partsInFlight: number;
  maxPartsInFlight: number;
}

export interface RunningS3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  port: number;
  dir: string;
  stats: S3ServerStats;
  resetStats(): void;
  /** Where s3rver keeps the pending multipart uploads of a bucket. */
  uploadsDir(bucket: string): string;
  store: S3rverStore;
  close(): Promise<void>;
}

/** S3's limit on a key's length, in bytes of UTF-8. */
const MAX_KEY_BYTES = 1024;

/** '/bucket/key' with every segment URL-decoded (a malformed segment stays as it is). */
export function decodeS3Path(raw: string): string {
  return raw
    .split('/')
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    })
    .join('/');
}

/** Answers with an S3 error document. */
export function sendS3Error(ctx: KoaContext, status: number, code: string, message = 'from the s3-server shims'): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

const header = (ctx: KoaContext, name: string): string | undefined => {
  const v = ctx.headers[name];
  return typeof v === 'string' ? v : undefined;
};

// ---- the legacy-DES shim (see the top of this file) -------------------------------------------

const nodeCrypto = require('node:crypto') as typeof import('node:crypto');
let desUsers = 0;
let savedCrypto: { createCipheriv: typeof nodeCrypto.createCipheriv; createDecipheriv: typeof nodeCrypto.createDecipheriv } | undefined;

function acquireDesShim(): void {
  if (desUsers++ > 0) return;
  const { createCipheriv, createDecipheriv } = nodeCrypto;
  savedCrypto = { createCipheriv, createDecipheriv };
  const tripled = (alg: string, key: Buffer): [string, Buffer] => (alg === 'des' || alg === 'des-cbc' ? ['des-ede3-cbc', Buffer.concat([key, key, key])] : [alg, key]);
  nodeCrypto.createCipheriv = ((alg: string, key: Buffer, iv: Buffer) => createCipheriv(...tripled(alg, key), iv)) as typeof createCipheriv;
  nodeCrypto.createDecipheriv = ((alg: string, key: Buffer, iv: Buffer) => createDecipheriv(...tripled(alg, key), iv)) as typeof createDecipheriv;
}

function releaseDesShim(): void {
  if (--desUsers > 0 || !savedCrypto) return;
  nodeCrypto.createCipheriv = savedCrypto.createCipheriv;
  nodeCrypto.createDecipheriv = savedCrypto.createDecipheriv;
  savedCrypto = undefined;
}

// ---- the server -------------------------------------------------------------------------------

const emptyStats = (): S3ServerStats => ({ requests: 0, objectGets: 0, objectGetBytes: 0, puts: 0, putBytes: 0, lists: 0, heads: 0, partsInFlight: 0, maxPartsInFlight: 0 });

export async function startS3Server(opts: S3ServerOptions): Promise<RunningS3Server> {
  const S3rver = require('s3rver') as new (options: S3rverOptions) => S3rverServer;
  mkdirSync(opts.dir, { recursive: true });
  const server = new S3rver({
    address: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    silent: true,
    directory: opts.dir,
    configureBuckets: opts.buckets.map((name) => ({ name })),
  });
  // s3rver's own listen() waits for 'listening' only: a port in use (a restart on the old port) would be
  // an 'error' event nobody handles, which ends the process. Here it rejects run() instead.
  const s3rverListen = server.listen.bind(server);
  (server as { listen: unknown }).listen = (port: number, address: string, options: object) =>
    new Promise<Server>((resolve, reject) => {
      const http = s3rverListen(port, address, options, () => {
        http.off('error', reject);
        resolve(http);
      });
      http.once('error', reject);
    });
  const uploadsDir = (bucket: string): string => path.join(opts.dir, bucket, '._S3rver_uploads');
  const stats = emptyStats();

  /** Counts what moves, in front of everything else. */
  const count: KoaMiddleware = async (ctx, next) => {
    stats.requests++;
    const p = decodeS3Path(ctx.path);
    const segs = p.split('/');
    const isObject = segs.length > 2 && segs.slice(2).join('/') !== '';
    if (ctx.method === 'HEAD') stats.heads++;
    else if (ctx.method === 'GET' && !isObject && (ctx.query['list-type'] !== undefined || segs.length === 2 || segs[2] === '')) stats.lists++;
    else if (ctx.method === 'GET' && isObject) {
      stats.objectGets++;
      const res = ctx.res;
      const write = res.write.bind(res) as (...a: unknown[]) => boolean;
      const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
      const add = (chunk: unknown) => {
        if (typeof chunk === 'string') stats.objectGetBytes += Buffer.byteLength(chunk);
        else if (chunk instanceof Uint8Array) stats.objectGetBytes += chunk.length;
      };
      res.write = ((chunk: unknown, ...rest: unknown[]) => {
        add(chunk);
        return write(chunk, ...rest);
      }) as typeof res.write;
      res.end = ((chunk?: unknown, ...rest: unknown[]) => {
        if (typeof chunk !== 'function') add(chunk);
        return end(chunk, ...rest);
      }) as typeof res.end;
    } else if (ctx.method === 'PUT') {
      stats.puts++;
      // From the headers: a 'data' listener would take the body away from s3rver.
      stats.putBytes += Number(header(ctx, 'x-amz-decoded-content-length') ?? header(ctx, 'content-length') ?? 0) || 0;
    }
    await next();
  };

  /** The shims (see the top of this file). */
  const shims: KoaMiddleware = async (ctx, next) => {
    const p = decodeS3Path(ctx.path);
    const source = header(ctx, 'x-amz-copy-source');
    if (source !== undefined) ctx.headers['x-amz-copy-source'] = encodeURI(decodeURIComponent(source));
    const bucket = p.split('/')[1] ?? '';
    const uploadId = typeof ctx.query['uploadId'] === 'string' ? ctx.query['uploadId'] : undefined;
    if (uploadId !== undefined && !/^[0-9a-f]+$/.test(uploadId)) return sendS3Error(ctx, 404, 'NoSuchUpload');
    const key = p.split('/').slice(2).join('/');
    if ((ctx.method === 'PUT' || (ctx.method === 'POST' && ctx.query['uploads'] !== undefined)) && Buffer.byteLength(key) > MAX_KEY_BYTES) {
      return sendS3Error(ctx, 400, 'KeyTooLongError', 'Your key is too long');
    }
    if (ctx.method === 'DELETE' && uploadId !== undefined) {
      // AbortMultipartUpload.
      const dir = path.join(uploadsDir(bucket), uploadId);
      if (!existsSync(dir)) return sendS3Error(ctx, 404, 'NoSuchUpload');
      rmSync(dir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'PUT' && uploadId !== undefined && source !== undefined) {
      // UploadPartCopy: a byte range of an existing object becomes a part.
      const src = decodeURIComponent(source).replace(/^\//, '');
      const [srcBucket = '', ...srcKey] = src.split('/');
      const m = /^bytes=(\d+)-(\d+)$/.exec(header(ctx, 'x-amz-copy-source-range') ?? '');
      if (!m) return sendS3Error(ctx, 400, 'InvalidArgument');
      const obj = await server.store.getObject(srcBucket, srcKey.join('/'), { start: Number(m[1]), end: Number(m[2]) });
      if (!obj?.content) return sendS3Error(ctx, 404, 'NoSuchKey');
      const { md5 } = await server.store.putPart(bucket, uploadId, Number(ctx.query['partNumber']), obj.content);
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><ETag>"${md5}"</ETag><LastModified>${new Date().toISOString()}</LastModified></CopyPartResult>`;
      return;
    }
    if (ctx.method === 'PUT' && uploadId !== undefined) {
      stats.partsInFlight++;
      stats.maxPartsInFlight = Math.max(stats.maxPartsInFlight, stats.partsInFlight);
      try {
        await next();
      } finally {
        stats.partsInFlight--;
      }
      return;
    }
    if (ctx.method === 'POST' && uploadId !== undefined) {
      // CompleteMultipartUpload: S3's ETag for it is the MD5 of the parts' binary MD5s and '-N'.
      await next();
      const listed = (ctx.request?.body as { CompleteMultipartUpload?: { Part?: unknown } } | undefined)?.CompleteMultipartUpload?.Part;
      const partList = ([] as { ETag?: string }[]).concat((listed ?? []) as { ETag?: string }[]);
      if (ctx.status !== 200 || partList.length === 0) return;
      const md5s = partList.map((x) => Buffer.from(String(x.ETag ?? '').replace(/"/g, ''), 'hex'));
      const etag = `${nodeCrypto.createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${partList.length}`;
      writeFileSync(server.store.getResourcePath(bucket, key, 'object.md5'), etag);
      if (typeof ctx.body === 'string') ctx.body = ctx.body.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${etag}&quot;</ETag>`);
      else {
        const result = (ctx.body as { CompleteMultipartUploadResult?: { ETag?: string } } | null)?.CompleteMultipartUploadResult;
        if (result) result.ETag = JSON.stringify(etag);
      }
      return;
    }
    const ifMatch = header(ctx, 'if-match');
    if ((ctx.method === 'GET' || ctx.method === 'HEAD') && ifMatch !== undefined) {
      // s3rver ignores If-Match; S3 answers 412 when the object's ETag is another.
      await next();
      const etag = ctx.res.getHeader('etag');
      if (ctx.status < 300 && typeof etag === 'string' && ifMatch !== '*' && !ifMatch.split(',').some((m) => m.trim() === etag)) {
        (ctx.body as { destroy?: () => void } | null)?.destroy?.();
        for (const h of ['etag', 'content-range', 'content-length', 'last-modified', 'accept-ranges']) ctx.res.removeHeader(h);
        sendS3Error(ctx, 412, 'PreconditionFailed');
      }
      return;
    }
    await next();
  };

  // Koa composes its middleware when the server starts listening, so these must be in place first.
  server.middleware.unshift(count, ...(opts.before ? [opts.before] : []), shims);
  acquireDesShim();
  let addr: AddressInfo;
  try {
    addr = await server.run();
  } catch (err) {
    releaseDesShim();
    throw err;
  }
  let closed: Promise<void> | undefined;
  const endpoint = `http://${addr.address}:${addr.port}`;
  return {
    endpoint,
    port: addr.port,
    dir: opts.dir,
    stats,
    resetStats() {
      Object.assign(stats, emptyStats(), { partsInFlight: stats.partsInFlight });
    },
    uploadsDir,
    store: server.store,
    close() {
      return (closed ??= (async () => {
        const closing = server.close();
        server.httpServer?.closeAllConnections();
        try {
          await closing;
        } finally {
          releaseDesShim();
        }
      })());
    },
  };
}

// ---- as a program -----------------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  let dir: string | undefined;
  let port = 0;
  let latencyMs = 0;
  const buckets: string[] = [];
  const usage = 'usage: s3-server --dir DIR --bucket NAME [--bucket NAME…] [--port N] [--latency-ms N]\n';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--dir' && v) (dir = v), i++;
    else if (a === '--bucket' && v) buckets.push(v), i++;
    else if (a === '--port' && v) (port = Number(v)), i++;
    else if (a === '--latency-ms' && v && Number.isInteger(Number(v)) && Number(v) >= 0) (latencyMs = Number(v)), i++;
    else {
      process.stderr.write(usage);
      process.exit(2);
    }
  }
  if (!dir || buckets.length === 0) {
    process.stderr.write(usage);
    process.exit(2);
  }
  const delay: KoaMiddleware = async (_ctx, next) => {
    await new Promise((r) => setTimeout(r, latencyMs));
    await next();
  };
  const s3 = await startS3Server({ dir, buckets, port, ...(latencyMs > 0 ? { before: delay } : {}) });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => process.exit(0), 5_000);
    t.unref();
    void s3.close().finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (process.send) {
    process.on('disconnect', stop);
    process.on('message', (m) => {
      if (m === 'stats') process.send!({ stats: { ...s3.stats } });
      else if (m === 'reset-stats') {
        s3.resetStats();
        process.send!({ reset: true });
      }
    });
  }
  process.stdout.write(JSON.stringify({ endpoint: s3.endpoint, port: s3.port }) + '\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`s3-server: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
