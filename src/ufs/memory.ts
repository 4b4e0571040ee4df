/** `mem://name`: an in-memory under-store for unit tests; its contents die with the process. */

import { Readable } from 'node:stream';
import { StrataError } from '../common/errors';
import { parsePath } from '../common/paths';
import type { UfsCallOptions, UfsStatus, UfsWriter, UnderFileSystem } from './ufs';

interface MemEntry {
  type: 'file' | 'directory';
  data: Buffer;
  mtimeMs: number;
  version: number;
}

/** Stores sharing a name share contents, so a test can open the same `mem://x` twice. */
const stores = new Map<string, Map<string, MemEntry>>();
let versions = 0;

export class MemoryUnderFileSystem implements UnderFileSystem {
  readonly uri: string;
  readonly #files: Map<string, MemEntry>;

  constructor(uri: string) {
    const url = new URL(uri);
    if (url.protocol !== 'mem:') throw new StrataError('CONFIG', `not a mem:// URI: ${uri}`);
    const name = url.host || url.pathname;
    let files = stores.get(name);
    if (!files) {
      files = new Map([['', { type: 'directory', data: Buffer.alloc(0), mtimeMs: Date.now(), version: ++versions }]]);
      stores.set(name, files);
    }
    this.#files = files;
    this.uri = uri;
  }

  #key(path: string): string {
    return parsePath(path).join('/');
  }

  #parentKey(key: string): string {
    const i = key.lastIndexOf('/');
    return i < 0 ? '' : key.slice(0, i);
  }

  #status(key: string, e: MemEntry): UfsStatus {
    return { name: key.slice(key.lastIndexOf('/') + 1), type: e.type, size: e.type === 'file' ? e.data.length : 0, mtimeMs: e.mtimeMs, fingerprint: `v${e.version}` };
  }

  #requireDir(key: string, what: string): void {
    const e = this.#files.get(key);
    if (!e) throw new StrataError('NOT_FOUND', `${what}: no such directory /${key}`);
    if (e.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `${what}: /${key} is not a directory`);
  }

  #hasChildren(key: string): boolean {
    for (const k of this.#files.keys()) {
      if (k !== key && (key === '' || k.startsWith(key + '/'))) return true;
    }
    return false;
  }

  async stat(path: string): Promise<UfsStatus | null> {
    const key = this.#key(path);
    const e = this.#files.get(key);
    return e ? this.#status(key, e) : null;
  }

  async list(path: string): Promise<UfsStatus[]> {
    const key = this.#key(path);
    this.#requireDir(key, 'list');
    const out: UfsStatus[] = [];
    for (const [k, e] of this.#files) {
      if (k !== '' && k !== key && this.#parentKey(k) === key) out.push(this.#status(k, e));
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable> {
    const key = this.#key(path);
    const e = this.#files.get(key);
    if (!e) throw new StrataError('NOT_FOUND', `read: no such file ${path}`);
    if (e.type !== 'file') throw new StrataError('IS_DIRECTORY', `read: ${path} is a directory`);
    if (opts?.ifFingerprint !== undefined && `v${e.version}` !== opts.ifFingerprint) throw new StrataError('STORE_CHANGED', `read: ${path} changed in the store`);
    return Readable.from([e.data.subarray(offset, offset + length)]);
  }

  async create(path: string): Promise<UfsWriter> {
    const key = this.#key(path);
    this.#requireDir(this.#parentKey(key), 'create');
    const chunks: Buffer[] = [];
    let done = false;
    return {
      write: async (chunk) => {
        if (done) throw new StrataError('INVALID_ARGUMENT', 'write after complete');
        chunks.push(Buffer.from(chunk));
      },
      complete: async () => {
        done = true;
        // As on a real file system: an object never replaces a directory (and orphans its children).
        if (this.#files.get(key)?.type === 'directory') throw new StrataError('IS_DIRECTORY', `create: ${path} is a directory`);
        const entry: MemEntry = { type: 'file', data: Buffer.concat(chunks), mtimeMs: Date.now(), version: ++versions };
        this.#files.set(key, entry);
        return this.#status(key, entry);
      },
      abort: async () => {
        done = true;
      },
    };
  }

  async delete(path: string): Promise<void> {
    const key = this.#key(path);
    const e = this.#files.get(key);
    if (!e) throw new StrataError('NOT_FOUND', `delete: no such file ${path}`);
    if (e.type !== 'file') throw new StrataError('IS_DIRECTORY', `delete: ${path} is a directory`);
    this.#files.delete(key);
  }

  async mkdir(path: string): Promise<void> {
    const key = this.#key(path);
    this.#requireDir(this.#parentKey(key), 'mkdir');
    if (this.#files.has(key)) throw new StrataError('ALREADY_EXISTS', `mkdir: ${path} exists`);
    this.#files.set(key, { type: 'directory', data: Buffer.alloc(0), mtimeMs: Date.now(), version: ++versions });
  }

  async rmdir(path: string): Promise<void> {
    const key = this.#key(path);
    this.#requireDir(key, 'rmdir');
    if (key === '') throw new StrataError('NOT_PERMITTED', 'rmdir: cannot remove the root');
    if (this.#hasChildren(key)) throw new StrataError('NOT_EMPTY', `rmdir: ${path} is not empty`);
    this.#files.delete(key);
  }

  async rename(src: string, dst: string): Promise<void> {
    const from = this.#key(src);
    const to = this.#key(dst);
    const e = this.#files.get(from);
    if (!e) throw new StrataError('NOT_FOUND', `rename: no such file ${src}`);
    this.#requireDir(this.#parentKey(to), 'rename');
    if (to === from) return;
    // The same checks as rename(2), so a move never orphans entries below a key that no longer exists.
    if (from === '' || to.startsWith(from + '/')) throw new StrataError('INVALID_ARGUMENT', `rename: cannot move ${src} into itself`);
    const target = this.#files.get(to);
    if (target) {
      if (e.type === 'directory' && target.type !== 'directory') throw new StrataError('NOT_DIRECTORY', `rename: ${dst} is not a directory`);
      if (e.type !== 'directory' && target.type === 'directory') throw new StrataError('IS_DIRECTORY', `rename: ${dst} is a directory`);
      if (target.type === 'directory' && this.#hasChildren(to)) throw new StrataError('NOT_EMPTY', `rename: ${dst} is not empty`);
    }
    const moves: [string, MemEntry][] = [];
    for (const [k, v] of this.#files) {
      if (k === from || k.startsWith(from + '/')) moves.push([k, v]);
    }
    for (const [k] of moves) this.#files.delete(k);
    for (const [k, v] of moves) this.#files.set(to + k.slice(from.length), v);
  }

  async close(): Promise<void> {}
}
