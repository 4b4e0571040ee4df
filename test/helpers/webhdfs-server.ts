/**
 * A WebHDFS STAND-IN for tests: this is not Hadoop. It speaks the WebHDFS REST
 * protocol (https://hadoop.apache.org/docs/stable/hadoop-project-dist/hadoop-hdfs/WebHDFS.html)
 * over a local temp directory, so the hdfs:// driver can be tested where no
 * Hadoop can run. It has two HTTP servers on 127.0.0.1, port 0:
 *
 * - a "namenode" answering GETFILESTATUS, LISTSTATUS, LISTSTATUS_BATCH, MKDIRS,
 *   RENAME (with `renameoptions`, i.e. HDFS rename2, unless turned off) and DELETE,
 *   and answering OPEN and CREATE with a 307 to the datanode, as Hadoop does;
 * - a "datanode" that serves OPEN with offset/length and accepts the CREATE body
 *   (streamed, answered 201, after an unasked-for 100 Continue as Hadoop's sends),
 *   reachable only through the namenode's Location.
 *
 * Errors are Hadoop's JSON `{"RemoteException":{"exception","javaClassName","message"}}`
 * with the statuses of the WebHDFS spec's table (IllegalArgumentException and
 * UnsupportedOperationException 400, SecurityException 401, IOException and its
 * subclasses such as AccessControlException 403, FileNotFoundException 404,
 * RuntimeException 500). Every request must carry `user.name`. Paths are decoded
 * once, as Jersey does, and any '.'/'..' component is refused, so nothing outside
 * the root can be reached. Symlinks are not created by the tests and are not
 * treated specially.
 *
 * What it does not model: blocks, replication, leases, permissions (beyond the
 * `deny` hook), quotas, delegation tokens and the other operations of the spec.
 */

import * as http from 'node:http';
import { promises as fsp, createReadStream, createWriteStream, mkdtempSync, rmSync, type Stats } from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AddressInfo } from 'node:net';

const PREFIX = '/webhdfs/v1';

/** Hadoop's exceptions as they travel in a RemoteException, with the HTTP status WebHDFS gives each. */
const EXCEPTIONS = {
  FileNotFoundException: ['java.io.FileNotFoundException', 404],
  AccessControlException: ['org.apache.hadoop.security.AccessControlException', 403],
  FileAlreadyExistsException: ['org.apache.hadoop.fs.FileAlreadyExistsException', 403],
  PathIsNotEmptyDirectoryException: ['org.apache.hadoop.fs.PathIsNotEmptyDirectoryException', 403],
  ParentNotDirectoryException: ['org.apache.hadoop.fs.ParentNotDirectoryException', 403],
  EOFException: ['java.io.EOFException', 403],
  IOException: ['java.io.IOException', 403],
  InvalidPathException: ['org.apache.hadoop.fs.InvalidPathException', 400],
  IllegalArgumentException: ['java.lang.IllegalArgumentException', 400],
  UnsupportedOperationException: ['java.lang.UnsupportedOperationException', 400],
  SecurityException: ['java.lang.SecurityException', 401],
  RuntimeException: ['java.lang.RuntimeException', 500],
} as const;

export type HadoopException = keyof typeof EXCEPTIONS;

/** A refusal the handlers throw; turned into a RemoteException response. */
class Remote extends Error {
  constructor(
    readonly exception: HadoopException,
    message: string,
  ) {
    super(message);
  }
}

export interface WebHdfsStandInOptions {
  /** Directory served as the HDFS root; default a fresh temp directory, removed by `stop()`. */
  root?: string;
  /** Serve LISTSTATUS_BATCH (Hadoop 2.8+); default true. When false the op is unknown (400). */
  listStatusBatch?: boolean;
  /** Honour RENAME's `renameoptions` (rename2: NONE/OVERWRITE); default true. When false the parameter is ignored, as HttpFS does. */
  renameOptions?: boolean;
  /** Entries per LISTSTATUS_BATCH page (HDFS's dfs.ls.limit); default 1000. */
  batchSize?: number;
  /** Paths (HDFS-absolute, e.g. '/secret/x') to refuse with AccessControlException, per user and op. */
  deny?: (hdfsPath: string, user: string, op: string) => boolean;
}

/** One request as the stand-in saw it. */
export interface LoggedRequest {
  node: 'namenode' | 'datanode';
  method: string;
  op: string;
  /** The decoded HDFS path ('/a/b'), or the raw URL path when it could not be decoded. */
  path: string;
  user: string | null;
  params: Record<string, string>;
  /** Request headers as received (e.g. to see that no body went to the namenode). */
  headers: http.IncomingHttpHeaders;
  /** Request body bytes received (0 for everything but datanode CREATE). */
  bodyBytes: number;
  /** Set once the response is finished. */
  status?: number;
}

/** What an `intercept` hook makes the stand-in answer instead of the real operation. */
export type InterceptAction =
  | 'hang'
  | {
      status: number;
      exception?: string;
      javaClassName?: string;
      message?: string;
      /** A raw body instead of a RemoteException. */
      body?: string;
      contentType?: string;
      /** Announce this Content-Length, send `body`, then drop the connection (a server dying mid-transfer). */
      declaredLength?: number;
    };

export interface WebHdfsStandIn {
  /** The local directory behind the HDFS root. */
  readonly root: string;
  /** `127.0.0.1:port` of the namenode, for `hdfs://` URIs. */
  readonly authority: string;
  readonly namenodeUrl: string;
  readonly datanodeUrl: string;
  /** Every request received, in arrival order; tests may clear it (`requests.length = 0`). */
  readonly requests: LoggedRequest[];
  /** Body bytes the datanode has received over all CREATEs so far. */
  readonly uploadedBytes: number;
  /** Answers a request instead of the real handler when it returns an action. */
  intercept: ((req: LoggedRequest) => InterceptAction | undefined) | undefined;
  /** `hdfs://127.0.0.1:port/<path>` with each component percent-encoded. */
  uri(hdfsPath?: string): string;
  /** Makes the datanode stop reading CREATE bodies (after creating the file) until the returned function is called. */
  holdUploads(): () => void;
  stop(): Promise<void>;
}

const byUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

function encodePath(comps: string[]): string {
  return '/' + comps.map(encodeURIComponent).join('/');
}

/** Splits a decoded HDFS path; refuses relative paths and '.'/'..' components as HDFS does (InvalidPathException). */
function parseHdfsPath(p: string): string[] {
  if (!p.startsWith('/')) throw new Remote('InvalidPathException', `Invalid path name ${p}: path is not absolute`);
  const comps = p.split('/').filter((c) => c.length > 0);
  for (const c of comps) {
    if (c === '.' || c === '..' || c.includes('\0')) throw new Remote('InvalidPathException', `Invalid path name Invalid file name: ${p}`);
  }
  return comps;
}

async function lstatOrNull(abs: string): Promise<Stats | null> {
  try {
    const st = await fsp.lstat(abs);
    return st.isFile() || st.isDirectory() ? st : null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Starts the stand-in namenode and datanode; call `stop()` in teardown. */
export async function startWebHdfsStandIn(options: WebHdfsStandInOptions = {}): Promise<WebHdfsStandIn> {
  const ownRoot = !options.root;
  const root = nodePath.resolve(options.root ?? mkdtempSync(nodePath.join(os.tmpdir(), 'strata-webhdfs-')));
  const batchSize = options.batchSize ?? 1000;
  const listStatusBatch = options.listStatusBatch ?? true;
  const renameOptions = options.renameOptions ?? true;
  const requests: LoggedRequest[] = [];
  let uploadedBytes = 0;
  let gate: Promise<void> | null = null;
  let nnAuthority = '';
  let dnUrl = '';

  const abs = (comps: string[]): string => (comps.length ? nodePath.join(root, ...comps) : root);
  const show = (comps: string[]): string => '/' + comps.join('/');

  async function fileStatus(pathSuffix: string, st: Stats, absPath: string): Promise<Record<string, unknown>> {
    const dir = st.isDirectory();
    return {
      accessTime: dir ? 0 : Math.floor(st.atimeMs),
      blockSize: dir ? 0 : 134217728,
      childrenNum: dir ? (await fsp.readdir(absPath)).length : 0,
      fileId: st.ino,
      group: 'supergroup',
      length: dir ? 0 : st.size,
      modificationTime: Math.floor(st.mtimeMs),
      owner: 'hdfs',
      pathSuffix,
      permission: (st.mode & 0o777).toString(8),
      replication: dir ? 0 : 1,
      storagePolicy: 0,
      type: dir ? 'DIRECTORY' : 'FILE',
    };
  }

  /** The statuses of a directory's children, in HDFS order (UTF-8 bytes), after `startAfter`. */
  async function children(dirAbs: string, startAfter = ''): Promise<Record<string, unknown>[]> {
    const names = (await fsp.readdir(dirAbs)).sort(byUtf8).filter((n) => !startAfter || byUtf8(n, startAfter) > 0);
    const out: Record<string, unknown>[] = [];
    for (const n of names) {
      const st = await lstatOrNull(nodePath.join(dirAbs, n));
      if (st) out.push(await fileStatus(n, st, nodePath.join(dirAbs, n)));
    }
    return out;
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function sendRemote(res: http.ServerResponse, exception: string, message: string, status?: number, javaClassName?: string): void {
    const known = (EXCEPTIONS as Record<string, readonly [string, number]>)[exception];
    sendJson(res, status ?? known?.[1] ?? 500, { RemoteException: { exception, javaClassName: javaClassName ?? known?.[0] ?? `org.example.${exception}`, message } });
  }

  function redirect(res: http.ServerResponse, op: string, comps: string[], params: Record<string, string | undefined>): void {
    let q = `op=${op}`;
    for (const [k, v] of Object.entries(params)) if (v !== undefined) q += `&${k}=${encodeURIComponent(v)}`;
    res.writeHead(307, { location: `${dnUrl}${PREFIX}${encodePath(comps)}?${q}`, 'content-type': 'application/octet-stream', 'content-length': '0' });
    res.end();
  }

  function unknownOp(method: string, op: string): Remote {
    const kind = { GET: 'Get', PUT: 'Put', POST: 'Post', DELETE: 'Delete' }[method] ?? 'Get';
    return new Remote('IllegalArgumentException', `Invalid value for webhdfs parameter "op": No enum constant org.apache.hadoop.hdfs.web.resources.${kind}OpParam.Op.${op}`);
  }

  function nonNegative(params: URLSearchParams, name: string): number | undefined {
    const v = params.get(name);
    if (v === null) return undefined;
    if (!/^\d+$/.test(v)) throw new Remote('IllegalArgumentException', `Invalid value for webhdfs parameter "${name}": Failed to parse "${v}" as a non-negative long`);
    return Number(v);
  }

  function checkAccess(comps: string[], user: string, op: string): void {
    const p = show(comps);
    if (options.deny?.(p, user, op)) {
      throw new Remote('AccessControlException', `Permission denied: user=${user}, access=ALL, inode="${p}":hdfs:supergroup:drwx------`);
    }
  }

  /** Parses, logs, authenticates and intercepts; answers the parsed request, or null when it was already answered. */
  function begin(node: 'namenode' | 'datanode', req: http.IncomingMessage, res: http.ServerResponse): { comps: string[]; params: URLSearchParams; op: string; user: string; entry: LoggedRequest } | null {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    const op = (params.get('op') ?? '').toUpperCase();
    const user = params.get('user.name');
    const entry: LoggedRequest = { node, method: req.method ?? '', op, path: rawPath, user, params: Object.fromEntries(params), headers: req.headers, bodyBytes: 0 };
    requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    if (rawPath !== PREFIX && !rawPath.startsWith(PREFIX + '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not a WebHDFS path\n');
      return null;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(rawPath.slice(PREFIX.length)) || '/';
    } catch {
      throw new Remote('IllegalArgumentException', `Malformed escape in path: ${rawPath}`);
    }
    entry.path = decoded;
    const action = stand.intercept?.(entry);
    if (action === 'hang') return null; // left open until stop() closes the connection
    if (action) {
      if (action.declaredLength !== undefined) {
        res.writeHead(action.status, { 'content-type': action.contentType ?? 'application/octet-stream', 'content-length': action.declaredLength });
        res.write(action.body ?? '', () => res.destroy());
      } else if (action.body !== undefined) {
        res.writeHead(action.status, { 'content-type': action.contentType ?? 'text/html' });
        res.end(action.body);
      } else {
        sendRemote(res, action.exception ?? 'RuntimeException', action.message ?? 'injected by the test', action.status, action.javaClassName);
      }
      return null;
    }
    const comps = parseHdfsPath(decoded);
    if (!user) throw new Remote('SecurityException', 'Failed to obtain user group information: user.name is required (simple authentication, anonymous access disallowed)');
    if (!op) throw new Remote('IllegalArgumentException', 'Invalid value for webhdfs parameter "op": op is required');
    checkAccess(comps, user, op);
    return { comps, params, op, user, entry };
  }

  async function namenode(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const r = begin('namenode', req, res);
    if (!r) return;
    const { comps, params, op, user } = r;
    const here = abs(comps);
    const p = show(comps);
    switch (`${req.method} ${op}`) {
      case 'GET GETFILESTATUS': {
        const st = await lstatOrNull(here);
        if (!st) throw new Remote('FileNotFoundException', `File does not exist: ${p}`);
        return sendJson(res, 200, { FileStatus: await fileStatus('', st, here) });
      }
      case 'GET LISTSTATUS': {
        const st = await lstatOrNull(here);
        if (!st) throw new Remote('FileNotFoundException', `File ${p} does not exist.`);
        const list = st.isDirectory() ? await children(here) : [await fileStatus('', st, here)];
        return sendJson(res, 200, { FileStatuses: { FileStatus: list } });
      }
      case 'GET LISTSTATUS_BATCH': {
        if (!listStatusBatch) throw unknownOp('GET', op);
        const st = await lstatOrNull(here);
        if (!st) throw new Remote('FileNotFoundException', `File ${p} does not exist.`);
        if (!st.isDirectory()) {
          return sendJson(res, 200, { DirectoryListing: { partialListing: { FileStatuses: { FileStatus: [await fileStatus('', st, here)] } }, remainingEntries: 0 } });
        }
        const all = await children(here, params.get('startAfter') ?? '');
        const page = all.slice(0, batchSize);
        return sendJson(res, 200, { DirectoryListing: { partialListing: { FileStatuses: { FileStatus: page } }, remainingEntries: all.length - page.length } });
      }
      case 'GET OPEN': {
        const offset = nonNegative(params, 'offset');
        const length = nonNegative(params, 'length');
        const st = await lstatOrNull(here);
        if (!st) throw new Remote('FileNotFoundException', `File does not exist: ${p}`);
        if (st.isDirectory()) throw new Remote('FileNotFoundException', `Path is not a file: ${p}`);
        return redirect(res, 'OPEN', comps, { 'user.name': user, namenoderpcaddress: nnAuthority, offset: offset?.toString(), length: length?.toString() });
      }
      case 'PUT CREATE': {
        const overwrite = params.get('overwrite') ?? 'false';
        if (overwrite !== 'true' && overwrite !== 'false') throw new Remote('IllegalArgumentException', `Invalid value for webhdfs parameter "overwrite": ${overwrite}`);
        return redirect(res, 'CREATE', comps, { 'user.name': user, namenoderpcaddress: nnAuthority, overwrite, permission: params.get('permission') ?? undefined });
      }
      case 'PUT MKDIRS': {
        for (let i = 1; i <= comps.length; i++) {
          const st = await lstatOrNull(abs(comps.slice(0, i)));
          if (!st) {
            await fsp.mkdir(here, { recursive: true });
            break;
          }
          if (!st.isDirectory()) {
            if (i < comps.length) throw new Remote('ParentNotDirectoryException', `${show(comps.slice(0, i))} (is not a directory)`);
            throw new Remote('FileAlreadyExistsException', `Path is not a directory: ${p}`);
          }
        }
        return sendJson(res, 200, { boolean: true });
      }
      case 'PUT RENAME': {
        const destination = params.get('destination');
        if (!destination) throw new Remote('IllegalArgumentException', 'Required param destination for op: RENAME is null or empty');
        const dst = parseHdfsPath(destination);
        checkAccess(dst, user, op);
        const opts = renameOptions ? (params.get('renameoptions') ?? '') : '';
        if (opts) {
          const set = opts.split(',').map((s) => s.trim().toUpperCase());
          for (const o of set) {
            if (o !== 'NONE' && o !== 'OVERWRITE' && o !== 'TO_TRASH') throw new Remote('IllegalArgumentException', `Invalid value for webhdfs parameter "renameoptions": ${opts}`);
          }
          await rename2(comps, dst, set.includes('OVERWRITE'));
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '0' });
          return void res.end();
        }
        return sendJson(res, 200, { boolean: await rename(comps, dst) });
      }
      case 'DELETE DELETE': {
        const recursive = params.get('recursive') === 'true';
        const st = await lstatOrNull(here);
        if (!st || comps.length === 0) return sendJson(res, 200, { boolean: false });
        if (st.isDirectory()) {
          if (!recursive && (await fsp.readdir(here)).length > 0) throw new Remote('PathIsNotEmptyDirectoryException', `\`${p} is non empty': Directory is not empty`);
          await fsp.rm(here, { recursive: true });
        } else {
          await fsp.unlink(here);
        }
        return sendJson(res, 200, { boolean: true });
      }
      default:
        throw unknownOp(req.method ?? 'GET', op);
    }
  }

  /** HDFS's old rename: false rather than an error for most refusals; moves *into* an existing directory. */
  async function rename(src: string[], dst: string[]): Promise<boolean> {
    const srcSt = await lstatOrNull(abs(src));
    if (!srcSt || src.length === 0) return false;
    if (show(src) === show(dst)) return true;
    if (show(dst).startsWith(show(src) + '/')) throw new Remote('IOException', `Rename destination ${show(dst)} is a directory or file under source ${show(src)}`);
    let target = dst;
    const dstSt = await lstatOrNull(abs(dst));
    if (dstSt?.isDirectory()) target = [...dst, src[src.length - 1]!];
    if (await lstatOrNull(abs(target))) return false;
    const parent = await lstatOrNull(abs(target.slice(0, -1)));
    if (!parent?.isDirectory()) return false;
    await fsp.rename(abs(src), abs(target));
    return true;
  }

  /** HDFS's rename2 (`renameoptions`): typed errors, never moves into a directory, replaces only with OVERWRITE. */
  async function rename2(src: string[], dst: string[], overwrite: boolean): Promise<void> {
    const s = show(src);
    const d = show(dst);
    const srcSt = await lstatOrNull(abs(src));
    if (!srcSt) throw new Remote('FileNotFoundException', `rename source ${s} is not found.`);
    if (s === d) throw new Remote('FileAlreadyExistsException', `The source ${s} and destination ${d} are the same`);
    if (src.length === 0) throw new Remote('IOException', `Rename source cannot be the root`);
    if (d.startsWith(s + '/')) throw new Remote('IOException', `Rename destination ${d} is a directory or file under source ${s}`);
    const dstSt = await lstatOrNull(abs(dst));
    if (dstSt) {
      if (dst.length === 0) throw new Remote('IOException', `rename destination cannot be the root`);
      if (dstSt.isDirectory() !== srcSt.isDirectory()) throw new Remote('IOException', `Source ${s} and destination ${d} must both be directories`);
      if (!overwrite) throw new Remote('FileAlreadyExistsException', `rename destination ${d} already exists`);
      if (dstSt.isDirectory() && (await fsp.readdir(abs(dst))).length > 0) throw new Remote('IOException', `rename destination directory is not empty: ${d}`);
    }
    const parent = await lstatOrNull(abs(dst.slice(0, -1)));
    if (!parent) throw new Remote('FileNotFoundException', `rename destination parent ${d} not found.`);
    if (!parent.isDirectory()) throw new Remote('ParentNotDirectoryException', `rename destination parent ${d} is a file.`);
    await fsp.rename(abs(src), abs(dst));
  }

  async function datanode(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const r = begin('datanode', req, res);
    if (!r) return;
    const { comps, params, op, entry } = r;
    if (params.get('namenoderpcaddress') !== nnAuthority) throw new Remote('IllegalArgumentException', 'Invalid value for webhdfs parameter "namenoderpcaddress"');
    const here = abs(comps);
    const p = show(comps);
    switch (`${req.method} ${op}`) {
      case 'GET OPEN': {
        const offset = nonNegative(params, 'offset') ?? 0;
        const length = nonNegative(params, 'length');
        const st = await lstatOrNull(here);
        if (!st) throw new Remote('FileNotFoundException', `File does not exist: ${p}`);
        if (st.isDirectory()) throw new Remote('FileNotFoundException', `Path is not a file: ${p}`);
        if (offset > st.size) throw new Remote('EOFException', 'Cannot seek after EOF');
        const count = Math.min(st.size - offset, length ?? Infinity);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': count });
        if (count === 0) return void res.end();
        await pipeline(createReadStream(here, { start: offset, end: offset + count - 1 }), res).catch(() => res.destroy());
        return;
      }
      case 'PUT CREATE': {
        // Hadoop's datanode sends an interim 100 Continue before reading any upload, asked for
        // or not (WebHdfsHandler.onCreate calls writeContinueHeader unconditionally).
        res.writeContinue();
        const overwrite = params.get('overwrite') === 'true';
        for (let i = 1; i < comps.length; i++) {
          const st = await lstatOrNull(abs(comps.slice(0, i)));
          if (!st) await fsp.mkdir(abs(comps.slice(0, i)));
          else if (!st.isDirectory()) throw new Remote('ParentNotDirectoryException', `Parent path is not a directory: ${show(comps.slice(0, i))}`);
        }
        const st = await lstatOrNull(here);
        if (comps.length === 0 || st?.isDirectory()) throw new Remote('FileAlreadyExistsException', `${p} already exists as a directory`);
        if (st && !overwrite) throw new Remote('FileAlreadyExistsException', `${p} for client 127.0.0.1 already exists`);
        // Like HDFS, the file exists (empty, under construction) from the start of the upload.
        const out = createWriteStream(here);
        await new Promise<void>((resolve, reject) => out.once('open', () => resolve()).once('error', reject));
        if (gate) await gate;
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            entry.bodyBytes += chunk.length;
            uploadedBytes += chunk.length;
            cb(null, chunk);
          },
        });
        try {
          await pipeline(req, counter, out);
        } catch {
          res.destroy(); // the client went away; like HDFS, the partial file stays
          return;
        }
        res.writeHead(201, { location: `hdfs://${nnAuthority}${encodePath(comps)}`, 'content-length': '0' });
        return void res.end();
      }
      default:
        throw unknownOp(req.method ?? 'GET', op);
    }
  }

  function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>): http.Server {
    return http.createServer((req, res) => {
      handler(req, res).catch((err: unknown) => {
        if (res.headersSent) return void res.destroy();
        const answer = () => {
          if (err instanceof Remote) return sendRemote(res, err.exception, err.message);
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'ENOTDIR') return sendRemote(res, 'FileNotFoundException', String((err as Error).message));
          sendRemote(res, 'RuntimeException', String((err as Error)?.message ?? err));
        };
        // Read what is left of a request body before answering, so the client sees the answer.
        if (req.readableEnded) answer();
        else {
          req.on('end', answer).on('error', () => res.destroy());
          req.resume();
        }
      });
    });
  }

  const nn = serve(namenode);
  const dn = serve(datanode);
  const listen = (s: http.Server) => new Promise<number>((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
  const [nnPort, dnPort] = await Promise.all([listen(nn), listen(dn)]);
  nnAuthority = `127.0.0.1:${nnPort}`;
  dnUrl = `http://127.0.0.1:${dnPort}`;

  const stand: WebHdfsStandIn = {
    root,
    authority: nnAuthority,
    namenodeUrl: `http://${nnAuthority}`,
    datanodeUrl: dnUrl,
    requests,
    get uploadedBytes() {
      return uploadedBytes;
    },
    intercept: undefined,
    uri: (hdfsPath = '/') => `hdfs://${nnAuthority}${encodePath(parseHdfsPath(hdfsPath))}`,
    holdUploads() {
      let release!: () => void;
      gate = new Promise<void>((resolve) => (release = resolve));
      return () => {
        gate = null;
        release();
      };
    },
    async stop() {
      gate = null;
      for (const s of [nn, dn]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      if (ownRoot) rmSync(root, { recursive: true, force: true });
    },
  };
  return stand;
}
