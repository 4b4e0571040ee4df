/** Typed calls of the master's namespace API, for the FUSE client and the CLI. */

import { JsonClient, JsonClientOptions } from '../common/json-client';
import {
  DirEntry,
  DuResponse,
  FileAttributes,
  FileBlocksResponse,
  FreeResponse,
  ListResponse,
  MASTER_API,
  MountInfo,
  SetAttrRequest,
  TtlAction,
  WorkerInfo,
  WriteBeginResponse,
  WriteCommitRequest,
  WriteType,
  Timespec,
} from '../common/protocol';

export class MasterClient {
  readonly #http: JsonClient;

  constructor(url: string, opts: JsonClientOptions = {}) {
    this.#http = new JsonClient(url, opts);
  }

  get url(): string {
    return this.#http.baseUrl;
  }

  stat(path: string): Promise<FileAttributes> {
    return this.#http.get(`${MASTER_API}/stat`, { path });
  }

  lookup(parent: number, name: string): Promise<FileAttributes> {
    return this.#http.get(`${MASTER_API}/lookup`, { parent, name });
  }

  statIno(ino: number): Promise<FileAttributes> {
    return this.#http.get(`${MASTER_API}/stat`, { ino });
  }

  async listIno(ino: number): Promise<DirEntry[]> {
    return (await this.#http.get<ListResponse>(`${MASTER_API}/list`, { ino })).entries;
  }

  mkdirAt(parent: number, name: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/mkdir`, { parent, name, mode, ...owner });
  }

  createAt(parent: number, name: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/create`, { parent, name, mode, ...owner });
  }

  linkAt(ino: number, newParent: number, newName: string): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/link`, { ino, newParent, newName });
  }

  symlinkAt(parent: number, name: string, target: string, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/symlink`, { parent, name, target, ...owner });
  }

  mknodAt(parent: number, name: string, type: string, mode: number, rdev: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/mknod`, { parent, name, type, mode, rdev, ...owner });
  }

  async setXattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    await this.#http.post(`${MASTER_API}/xattr/set`, { ino, name, value: value.toString('base64'), flags });
  }

  async getXattr(ino: number, name: string): Promise<Buffer> {
    const r = await this.#http.post<{ value: string }>(`${MASTER_API}/xattr/get`, { ino, name });
    return Buffer.from(r.value, 'base64');
  }

  async listXattrs(ino: number): Promise<string[]> {
    return (await this.#http.post<{ names: string[] }>(`${MASTER_API}/xattr/list`, { ino })).names;
  }

  async removeXattr(ino: number, name: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/xattr/remove`, { ino, name });
  }

  async unlinkAt(parent: number, name: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/unlink`, { parent, name });
  }

  async rmdirAt(parent: number, name: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/rmdir`, { parent, name });
  }

  async renameAt(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    await this.#http.post(`${MASTER_API}/rename`, { parent, name, newParent, newName, flags });
  }

  setAttributesIno(ino: number, req: Omit<SetAttrRequest, 'path'>): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/setattr`, { ino, ...req });
  }

  async list(path: string): Promise<DirEntry[]> {
    return (await this.#http.get<ListResponse>(`${MASTER_API}/list`, { path })).entries;
  }

  mkdir(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/mkdir`, { path, mode, ...owner });
  }

  create(path: string, mode: number, owner?: { uid: number; gid: number }): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/create`, { path, mode, ...owner });
  }

  async unlink(path: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/unlink`, { path });
  }

  async rmdir(path: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/rmdir`, { path });
  }

  async rename(src: string, dst: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/rename`, { src, dst });
  }

  setAttributes(req: SetAttrRequest): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/setattr`, req);
  }

  /** A file's blocks and cache state; with `allowDirectory`, a directory answers too (no blocks). */
  fileBlocks(path: string, opts: { allowDirectory?: boolean } = {}): Promise<FileBlocksResponse> {
    return this.#http.get(`${MASTER_API}/blocks`, opts.allowDirectory ? { path, allowDirectory: 'true' } : { path });
  }

  fileBlocksByIno(ino: number): Promise<FileBlocksResponse> {
    return this.#http.get(`${MASTER_API}/blocks`, { ino });
  }

  beginWrite(ino: number): Promise<WriteBeginResponse> {
    return this.#http.post(`${MASTER_API}/write/begin`, { ino });
  }

  /** Closes a file written empty: one request, no worker (see Namespace.commitEmpty). */
  commitEmpty(ino: number, writeType?: WriteType, mtime?: Timespec): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/write/empty`, { ino, ...(writeType ? { writeType } : {}), ...(mtime ? { mtime } : {}) });
  }

  commitWrite(req: WriteCommitRequest): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/write/commit`, req);
  }

  mounts(): Promise<MountInfo[]> {
    return this.#http.get(`${MASTER_API}/mounts`);
  }

  mount(path: string, uri: string, options: Record<string, string>, readOnly: boolean): Promise<MountInfo> {
    return this.#http.post(`${MASTER_API}/mount`, { path, uri, options, readOnly });
  }

  async unmount(path: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/unmount`, { path });
  }

  /** Persists a file now; resolves with its attributes once its bytes are in the under-store. */
  persist(path: string): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/persist`, { path });
  }

  async sync(path: string): Promise<void> {
    await this.#http.post(`${MASTER_API}/sync`, { path });
  }

  workers(): Promise<WorkerInfo[]> {
    return this.#http.get(`${MASTER_API}/workers`);
  }

  /** Pins or unpins a file; a directory needs `recursive` and then covers everything below it. */
  pin(path: string, pinned: boolean, recursive = false): Promise<{ path: string; pinned: boolean; files: number }> {
    return this.#http.post(`${MASTER_API}/pin`, { path, pinned, recursive });
  }

  /** Sets a time to live (ms from now) and what happens then, or clears it with `null`. */
  setTtl(path: string, ttlMs: number | null, action: TtlAction = 'free'): Promise<{ path: string; ttl: FileBlocksResponse['ttl'] }> {
    return this.#http.post(`${MASTER_API}/ttl`, { path, ttlMs, action });
  }

  /** Drops cached copies of persisted files; a directory needs `recursive`. */
  free(path: string, recursive = false): Promise<FreeResponse> {
    return this.#http.post(`${MASTER_API}/free`, { path, recursive });
  }

  /** Size and cached bytes of a file or subtree. */
  du(path: string): Promise<DuResponse> {
    return this.#http.get(`${MASTER_API}/du`, { path });
  }

  close(): Promise<void> {
    return this.#http.close();
  }
}
