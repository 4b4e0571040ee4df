/**
 * The on-disk format of one cached page, shared by the worker (which writes and
 * serves page files) and the client (which reads them directly on the same host).
 *
 * A page file is `<tier dir>/<block id>/<page index>`: the page's bytes followed by
 * a 32-byte trailer that names the page and carries its CRC-32:
 *
 *   0  'STPG'            4  u32 data length     8  u64 block id
 *   16 u32 page index    20 u32 crc32(data)      24 u64 block length
 *
 * The trailer makes a page file self-describing: a file copied under the wrong
 * name, cut short by a crash, or changed on disk fails `verifyPage` and is never
 * served. Page files are immutable once renamed into place (a block id never
 * changes content), so a page verified once stays good until its inode changes;
 * `PageIdentity` is what a reader remembers to skip re-hashing it.
 */

import { crc32 as zlibCrc32 } from 'node:zlib';
import { type BigIntStats, promises as fsp, fstatSync, statSync, statfsSync } from 'node:fs';

/**
 * CRC-32 with zlib's polynomial, so a page file written with either verifies with
 * the other. @node-rs/crc32 folds with carry-less multiplication: 13.7 GB/s on
 * 1 MiB pages here against node:zlib's 5.1, and a cold fill checksums every byte
 * it caches (0.2 s of the worker's CPU per GiB with zlib). Where its prebuilt
 * binary does not load, zlib's.
 */
const [crc32, crcImpl]: [(data: Uint8Array, prev: number) => number, string] = (() => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return [(require('@node-rs/crc32') as typeof import('@node-rs/crc32')).crc32, '@node-rs/crc32'];
  } catch {
    return [zlibCrc32, 'node:zlib'];
  }
})();

/** Which CRC-32 code checksums pages (for the worker's start log). */
export const PAGE_CRC_IMPLEMENTATION = crcImpl;

export const PAGE_TRAILER_BYTES = 32;
const MAGIC = 0x53545047; // 'STPG'

export interface PageTrailer {
  dataLength: number;
  blockId: number;
  pageIndex: number;
  crc: number;
  blockLength: number;
}

export function encodeTrailer(t: PageTrailer): Buffer {
  const b = Buffer.alloc(PAGE_TRAILER_BYTES);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(t.dataLength, 4);
  b.writeBigUInt64BE(BigInt(t.blockId), 8);
  b.writeUInt32BE(t.pageIndex, 16);
  b.writeUInt32BE(t.crc >>> 0, 20);
  b.writeBigUInt64BE(BigInt(t.blockLength), 24);
  return b;
}

export function decodeTrailer(b: Buffer): PageTrailer | undefined {
  if (b.length !== PAGE_TRAILER_BYTES || b.readUInt32BE(0) !== MAGIC) return undefined;
  const blockId = Number(b.readBigUInt64BE(8));
  const blockLength = Number(b.readBigUInt64BE(24));
  if (!Number.isSafeInteger(blockId) || !Number.isSafeInteger(blockLength)) return undefined;
  return { dataLength: b.readUInt32BE(4), blockId, pageIndex: b.readUInt32BE(16), crc: b.readUInt32BE(20), blockLength };
}

/** The page checksum of `data`; `prev` continues one over bytes before it. */
export function pageCrc(data: Buffer, prev = 0): number {
  return crc32(data, prev) >>> 0;
}

/** statfs types of memory file systems: tmpfs, ramfs. */
const MEMORY_FS = new Set([0x01021994, 0x858458f6]);

/**
 * Whether `dir` is on a memory file system (tmpfs, ramfs): reading or writing its
 * files is a memory copy that never waits for a device. Reading a whole file cannot
 * fail midway; writing can (ENOSPC once the file system is full).
 */
export function onMemoryFs(dir: string): boolean {
  try {
    return MEMORY_FS.has(statfsSync(dir).type);
  } catch {
    return false;
  }
}

/** What identifies one version of a page file on disk: a rewrite or a change gives a new one. */
export interface PageIdentity {
  ino: number;
  ctimeNs: bigint;
  size: number;
}

function identityOfStats(st: BigIntStats): PageIdentity {
  return { ino: Number(st.ino), ctimeNs: st.ctimeNs, size: Number(st.size) };
}

export async function identityOf(fh: fsp.FileHandle): Promise<PageIdentity> {
  return identityOfStats(await fh.stat({ bigint: true }));
}

export async function identityOfPath(file: string): Promise<PageIdentity> {
  return identityOfStats(await fsp.stat(file, { bigint: true }));
}

/** For a file on a memory file system, or an open one: no disk to wait for. */
export function identityOfFd(fd: number): PageIdentity {
  return identityOfStats(fstatSync(fd, { bigint: true }));
}

export function identityOfPathSync(file: string): PageIdentity {
  return identityOfStats(statSync(file, { bigint: true }));
}

export function sameIdentity(a: PageIdentity | undefined, b: PageIdentity): boolean {
  return !!a && a.ino === b.ino && a.ctimeNs === b.ctimeNs && a.size === b.size;
}

export type VerifyResult = { ok: true; trailer: PageTrailer; data: Buffer } | { ok: false; reason: string };

/**
 * Reads a whole page file and checks its trailer and checksum against the page it
 * should be. `data` is the page's bytes (valid only when ok).
 */
export async function verifyPage(fh: fsp.FileHandle, size: number, blockId: number, pageIndex: number): Promise<VerifyResult> {
  if (size < PAGE_TRAILER_BYTES) return { ok: false, reason: `file of ${size} bytes has no trailer` };
  const all = Buffer.allocUnsafe(size);
  let n = 0;
  while (n < size) {
    const { bytesRead } = await fh.read(all, n, size - n, n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  if (n !== size) return { ok: false, reason: `short read: ${n} of ${size} bytes` };
  const trailer = decodeTrailer(all.subarray(size - PAGE_TRAILER_BYTES));
  if (!trailer) return { ok: false, reason: 'bad trailer' };
  if (trailer.blockId !== blockId || trailer.pageIndex !== pageIndex) return { ok: false, reason: `trailer names block ${trailer.blockId} page ${trailer.pageIndex}` };
  if (trailer.dataLength !== size - PAGE_TRAILER_BYTES) return { ok: false, reason: `trailer says ${trailer.dataLength} data bytes, file has ${size - PAGE_TRAILER_BYTES}` };
  const data = all.subarray(0, trailer.dataLength);
  if (pageCrc(data) !== trailer.crc) return { ok: false, reason: 'checksum mismatch' };
  return { ok: true, trailer, data };
}

/** A page's path below a tier directory. */
export function pageRelPath(blockId: number, pageIndex: number): string {
  return `${blockId}/${pageIndex}`;
}
