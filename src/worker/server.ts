/**
 * The worker: caches blocks on local disk, serves byte ranges of them over HTTP,
 * fills misses from the under-store, and writes files through to the under-store.
 * It learns where a file lives in the under-store from the master, never from the
 * request, so a client cannot make it read or write outside the namespace.
 */

import * as nodePath from 'node:path';
import { promises as fsp } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { StrataError, toStrataError } from '../common/errors';
import { createHttpServer, intParam } from '../common/http';
import { JsonClient } from '../common/json-client';
import type { Logger } from '../common/log';
import {
  BlockSource,
  HeartbeatResponse,
  MASTER_API,
  PersistResponse,
  WRITE_TYPES,
  WriteType,
  RegisterWorkerResponse,
  UfsLocation,
  WriteFileResponse,
  blockIdOf,
} from '../common/protocol';
import { createUfs } from '../ufs';
import { hostIdentity } from '../common/host';
import { Counter, Gauge } from 'prom-client';
import { createDaemonMetrics } from '../common/metrics';
import type { UnderFileSystem, UfsWriter } from '../ufs/ufs';
import { BlockStore, BlockWriter } from './block-store';

export interface WorkerOptions {
  /** Master API URL, e.g. http://127.0.0.1:19998. */
  masterUrl: string;
  /** Directory for cached blocks (`<home>/worker/blocks`). */
  home: string;
  host?: string;
  /** Data port; 0 picks a free one. Default 29999. */
  port?: number;
  /** Cache quota in bytes. Default 8 GiB. */
  capacityBytes?: number;
  /** Heartbeat period in ms. Default 2000. */
  heartbeatIntervalMs?: number;
  logger: Logger;
}

export interface RunningWorker {
  url: string;
  port: number;
  workerId: number;
  close(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const log = opts.logger;
  const master = new JsonClient(opts.masterUrl, { retryForMs: 60_000 });
  const store = new BlockStore({ dir: nodePath.resolve(opts.home, 'worker', 'blocks'), capacityBytes: opts.capacityBytes ?? 8 * 1024 ** 3 });
  await store.open();
  log.info({ blocks: store.blockIds().length, usedBytes: store.usedBytes }, 'block store opened');

  /** Drivers by mount URI and options (credentials or endpoints may differ per mount). */
  const ufsByUri = new Map<string, UnderFileSystem>();
  const ufsFor = (loc: UfsLocation): UnderFileSystem => {
    const key = `${loc.mountUri}\n${JSON.stringify(loc.options ?? {})}`;
    let u = ufsByUri.get(key);
    if (!u) {
      u = createUfs(loc.mountUri, loc.options ?? {});
      ufsByUri.set(key, u);
    }
    return u;
  };

  /** One fill per missing block; concurrent readers share it. */
  const fills = new Map<number, Promise<void>>();
  const fill = (id: number): Promise<void> => {
    let p = fills.get(id);
    if (!p) {
      p = (async () => {
        const src = await master.get<BlockSource>(`${MASTER_API}/block-source`, { id });
        const ufs = ufsFor(src.ufs);
        const writer = await store.create(id, src.length);
        try {
          // Parallel ranged reads: a remote store answers one stream slowly, several quickly.
          const PART = 8 * 1024 * 1024;
          const PARALLEL = 4;
          const parts: number[] = [];
          for (let off = 0; off < src.length; off += PART) parts.push(off);
          let next = 0;
          let got = 0;
          const lane = async () => {
            while (next < parts.length) {
              const off = parts[next++]!;
              const len = Math.min(PART, src.length - off);
              const stream = await ufs.read(src.ufs.path, src.offset + off, len);
              let pos = off;
              for await (const chunk of stream) {
                await writer.writeAt(chunk as Buffer, pos);
                pos += (chunk as Buffer).length;
              }
              if (pos - off !== len) throw new StrataError('IO_ERROR', `under-store returned ${pos - off} bytes at ${src.offset + off}, expected ${len}: the file changed`);
              got += len;
            }
          };
          // allSettled: every lane has stopped touching the writer before it is committed or aborted.
          const lanes = await Promise.allSettled(Array.from({ length: Math.min(PARALLEL, parts.length) }, lane));
          const failed = lanes.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failed) throw failed.reason;
          const n = await writer.commit();
          if (n !== src.length || got !== src.length) {
            await store.remove(id);
            throw new StrataError('IO_ERROR', `under-store returned ${n} bytes for block ${id}, expected ${src.length}: the file changed`);
          }
          fillBytes.inc(n);
          fillCount.inc({ result: 'ok' });
          log.debug({ blockId: id, bytes: n }, 'block filled from the under-store');
        } catch (err) {
          fillCount.inc({ result: 'error' });
          await writer.abort();
          throw toStrataError(err, `fill block ${id}`);
        }
      })().finally(() => fills.delete(id));
      fills.set(id, p);
    }
    return p;
  };

  const metrics = createDaemonMetrics('worker');
  const reg = [metrics.registry];
  const servedBytes = new Counter({ name: 'strata_worker_served_bytes_total', help: 'Bytes served to clients over HTTP from the block cache', registers: reg });
  const fillBytes = new Counter({ name: 'strata_worker_ufs_read_bytes_total', help: 'Bytes read from under-stores to fill cache misses', registers: reg });
  const fillCount = new Counter({ name: 'strata_worker_block_fills_total', help: 'Blocks filled from under-stores (cache misses)', labelNames: ['result'] as const, registers: reg });
  const hits = new Counter({ name: 'strata_worker_block_reads_total', help: 'Block reads by whether the block was cached', labelNames: ['cache'] as const, registers: reg });
  const writtenBytes = new Counter({ name: 'strata_worker_written_bytes_total', help: 'File bytes written through this worker, by write type', labelNames: ['write_type'] as const, registers: reg });
  new Gauge({ name: 'strata_worker_cache_used_bytes', help: 'Bytes of cached blocks', registers: reg, collect() { this.set(store.usedBytes); } });
  new Gauge({ name: 'strata_worker_cache_capacity_bytes', help: 'Cache quota', registers: reg, collect() { this.set(store.capacityBytes); } });
  new Gauge({ name: 'strata_worker_cache_blocks', help: 'Cached blocks', registers: reg, collect() { this.set(store.blockIds().length); } });
  new Gauge({ name: 'strata_worker_pinned_blocks', help: 'Blocks pinned because their bytes are not persisted yet', registers: reg, collect() { this.set(store.pinnedCount); } });
  new Gauge({ name: 'strata_worker_evictions', help: 'Blocks evicted since start', registers: reg, collect() { this.set(store.evictions); } });
  const app = createHttpServer({ logger: log, metrics });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/blocks/:id', async (req, reply) => {
    const id = intParam((req.params as Record<string, string>).id, 'id');
    const q = req.query as Record<string, unknown>;
    const offset = intParam(q.offset, 'offset', 0);
    const length = intParam(q.length, 'length', Number.MAX_SAFE_INTEGER);
    const cached = store.has(id);
    hits.inc({ cache: cached ? 'hit' : 'miss' });
    if (!cached) await fill(id);
    const total = store.length(id)!;
    const end = Math.min(total, offset + length);
    servedBytes.inc(Math.max(0, end - offset));
    const stream = store.read(id, offset, end);
    void reply.header('content-type', 'application/octet-stream').header('content-length', String(Math.max(0, end - offset)));
    return reply.send(stream);
  });

  /**
   * Writes a whole file: the body is split into blocks cached here and streamed to
   * the under-store at the same time; the reply lists the blocks for the commit.
   */
  app.put('/files/:ino', async (req): Promise<WriteFileResponse> => {
    const ino = intParam((req.params as Record<string, string>).ino, 'ino');
    const q = req.query as Record<string, unknown>;
    const containerId = intParam(q.container, 'container');
    const blockSize = intParam(q.blockSize, 'blockSize');
    const size = intParam(q.size, 'size');
    const writeType = (q.writeType ?? 'CACHE_THROUGH') as WriteType;
    if (!WRITE_TYPES.includes(writeType)) throw new StrataError('BAD_REQUEST', `writeType must be one of ${WRITE_TYPES.join(', ')}`);
    if (blockSize < 4096 || blockSize > 2 ** 30) throw new StrataError('BAD_REQUEST', 'blockSize out of range');
    // Where the bytes go: the cache here, the under-store now, or both.
    const cache = writeType !== 'THROUGH';
    const through = writeType === 'CACHE_THROUGH' || writeType === 'THROUGH';
    let ufsWriter: UfsWriter | undefined;
    if (through) {
      const loc = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino });
      ufsWriter = await ufsFor(loc).create(loc.path);
    }
    const done: BlockWriter[] = [];
    const lengths: number[] = [];
    let cur: BlockWriter | undefined;
    let curLen = 0;
    let total = 0;
    /** Walks `n` bytes of the file through the blocks they fall in; `piece` is undefined for a hole. */
    const advance = async (n: number, piece: Buffer | undefined) => {
      if (total + n > size) throw new StrataError('BAD_REQUEST', `body is longer than the declared size ${size}`);
      total += n;
      let left = n;
      let chunk = piece;
      while (left > 0) {
        if (!cur && cache) {
          cur = await store.create(blockIdOf(containerId, lengths.length), Math.min(blockSize, size - lengths.length * blockSize));
        }
        const take = Math.min(left, blockSize - curLen);
        if (cur) {
          if (chunk) await cur.write(take === chunk.length ? chunk : chunk.subarray(0, take));
          else await cur.skip(take);
        }
        curLen += take;
        left -= take;
        if (chunk) chunk = chunk.subarray(take);
        if (curLen === blockSize) {
          if (cur) done.push(cur);
          lengths.push(curLen);
          cur = undefined;
          curLen = 0;
        }
      }
    };
    const ZEROS = Buffer.alloc(1024 * 1024);
    /** Data: into the store and the blocks at once. */
    const writePiece = async (piece: Buffer) => {
      const ufsWrite = ufsWriter?.write(piece);
      await advance(piece.length, piece);
      await ufsWrite;
    };
    /** A run of zeros: holes where the disk allows, zeros where the store needs bytes. */
    const writeHole = async (n: number) => {
      if (ufsWriter?.skip) await ufsWriter.skip(n);
      else if (ufsWriter) for (let left = n; left > 0; left -= ZEROS.length) await ufsWriter.write(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
      await advance(n, undefined);
    };
    try {
      if (q.format === 'extents') {
        // Sparse body: frames of [u64 offset][u32 length][bytes]; gaps between them are zeros.
        for await (const ext of readExtents(req.body as Readable)) {
          if (ext.offset < total) throw new StrataError('BAD_REQUEST', 'extents must be in order and must not overlap');
          if (ext.offset > total) await writeHole(ext.offset - total);
          await writePiece(ext.data);
        }
        if (total < size) await writeHole(size - total);
      } else {
        // Network chunks are ~64 KiB; disks like fewer, larger writes.
        const COALESCE = 4 * 1024 * 1024;
        let pending: Buffer[] = [];
        let pendingLen = 0;
        for await (const raw of req.body as Readable) {
          const chunk = raw as Buffer;
          if (total + pendingLen + chunk.length > size) throw new StrataError('BAD_REQUEST', `body is longer than the declared size ${size}`);
          pending.push(chunk);
          pendingLen += chunk.length;
          if (pendingLen >= COALESCE) {
            const piece = Buffer.concat(pending, pendingLen);
            pending = [];
            pendingLen = 0;
            await writePiece(piece);
          }
        }
        if (pendingLen > 0) await writePiece(Buffer.concat(pending, pendingLen));
      }
      if (total !== size) throw new StrataError('BAD_REQUEST', `body has ${total} bytes, declared ${size}`);
      if (curLen > 0) {
        if (cur) done.push(cur);
        lengths.push(curLen);
        cur = undefined;
      }
      const st = ufsWriter ? await ufsWriter.complete() : undefined;
      for (const w of done) await w.commit();
      const blocks = lengths.map((length, i) => ({ id: blockIdOf(containerId, i), length }));
      // Bytes that are only here must survive eviction until they are persisted.
      if (!through) for (const b of blocks) await store.pin(b.id);
      writtenBytes.inc({ write_type: writeType }, size);
      return { size, blocks, ufsFingerprint: st ? st.fingerprint : null, cached: cache };
    } catch (err) {
      await ufsWriter?.abort();
      for (const w of [...done, ...(cur ? [cur] : [])]) await w.abort();
      throw toStrataError(err, `write inode ${ino}`);
    }
  });

  /**
   * Persists a file whose blocks are all cached here (ASYNC_THROUGH, MUST_CACHE):
   * streams them in order into the under-store, then unpins them.
   */
  app.post('/persist/:ino', async (req): Promise<PersistResponse> => {
    const ino = intParam((req.params as Record<string, string>).ino, 'ino');
    const q = req.query as Record<string, unknown>;
    const containerId = intParam(q.container, 'container');
    const count = intParam(q.blocks, 'blocks');
    const ids = Array.from({ length: count }, (_, i) => blockIdOf(containerId, i));
    const missing = ids.filter((id) => !store.has(id));
    if (missing.length) throw new StrataError('NOT_FOUND', `blocks ${missing.slice(0, 4).join(', ')} are not cached on this worker`);
    const loc = await master.get<UfsLocation>(`${MASTER_API}/ufs-location`, { ino });
    const writer = await ufsFor(loc).create(loc.path);
    try {
      for (const id of ids) {
        for await (const chunk of store.read(id, 0, store.length(id)!)) await writer.write(chunk as Buffer);
      }
      const st = await writer.complete();
      for (const id of ids) await store.unpin(id);
      log.info({ ino, blocks: count }, 'persisted a file to the under-store');
      return { ufsFingerprint: st.fingerprint };
    } catch (err) {
      await writer.abort();
      throw toStrataError(err, `persist inode ${ino}`);
    }
  });

  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 29999 });
  const port = (app.server.address() as AddressInfo).port;
  const url = `http://${opts.host ?? '127.0.0.1'}:${port}`;

  const uuid = await workerUuid(opts.home);
  const register = async (): Promise<number> => {
    const r = await master.post<RegisterWorkerResponse>(`${MASTER_API}/workers/register`, {
      uuid,
      address: url,
      host: hostIdentity(),
      blockDir: store.dir,
      capacityBytes: store.capacityBytes,
      usedBytes: store.usedBytes,
      blocks: store.blockIds(),
    });
    store.takeChanges();
    return r.workerId;
  };
  let workerId = await register();
  log.info({ url, workerId, master: opts.masterUrl }, 'worker started');

  let beating = false;
  const beat = async () => {
    if (beating) return;
    beating = true;
    const changes = store.takeChanges();
    try {
      const r = await master.post<HeartbeatResponse>(`${MASTER_API}/workers/heartbeat`, {
        workerId,
        capacityBytes: store.capacityBytes,
        usedBytes: store.usedBytes,
        addedBlocks: changes.added,
        removedBlocks: changes.removed,
      });
      if (r.reregister) {
        workerId = await register();
        log.info({ workerId }, 'registered again with the master');
      }
      for (const id of r.deleteBlocks) await store.remove(id);
    } catch (err) {
      store.restoreChanges(changes);
      log.warn({ err: (err as Error).message }, 'heartbeat failed');
    } finally {
      beating = false;
    }
  };
  const timer = setInterval(() => void beat(), opts.heartbeatIntervalMs ?? 2000);
  timer.unref();

  return {
    url,
    port,
    get workerId() {
      return workerId;
    },
    async close() {
      clearInterval(timer);
      await app.close();
      await master.close();
      for (const u of ufsByUri.values()) await u.close();
    },
  };
}

/** The worker's persistent identity: created once, kept in `<home>/worker/id`. */
async function workerUuid(home: string): Promise<string> {
  const file = nodePath.join(home, 'worker', 'id');
  try {
    const id = (await fsp.readFile(file, 'utf8')).trim();
    if (/^[0-9a-f-]{8,64}$/.test(id)) return id;
  } catch {
    // first start
  }
  const id = randomUUID();
  await fsp.mkdir(nodePath.dirname(file), { recursive: true });
  await fsp.writeFile(file + '.tmp', id + '\n');
  await fsp.rename(file + '.tmp', file);
  return id;
}

/** Parses a sparse write body: frames of [u64 offset][u32 length][length bytes]. */
async function* readExtents(body: Readable): AsyncGenerator<{ offset: number; data: Buffer }> {
  const MAX_EXTENT = 64 * 1024 * 1024;
  const it = body[Symbol.asyncIterator]();
  let chunks: Buffer[] = [];
  let have = 0;
  let ended = false;
  /** Makes at least `n` bytes available (false at a clean end of body). */
  const fill = async (n: number): Promise<boolean> => {
    while (have < n && !ended) {
      const r = await it.next();
      if (r.done) ended = true;
      else {
        chunks.push(r.value as Buffer);
        have += (r.value as Buffer).length;
      }
    }
    return have >= n;
  };
  const take = (n: number): Buffer => {
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, have);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length ? [rest] : [];
    have = rest.length;
    return out;
  };
  for (;;) {
    if (!(await fill(12))) {
      if (have) throw new StrataError('BAD_REQUEST', 'truncated extent header');
      return;
    }
    const head = take(12);
    const offset = Number(head.readBigUInt64BE(0));
    const len = head.readUInt32BE(8);
    if (!Number.isSafeInteger(offset) || len === 0 || len > MAX_EXTENT) throw new StrataError('BAD_REQUEST', 'malformed extent header');
    if (!(await fill(len))) throw new StrataError('BAD_REQUEST', 'truncated extent');
    yield { offset, data: Buffer.from(take(len)) };
  }
}
