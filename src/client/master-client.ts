/** Typed calls of the master's namespace API, for the FUSE client and the CLI. */

import { JsonClient, JsonClientOptions } from '../common/json-client';
import {
  DirEntry,
  FileAttributes,
  FileBlocksResponse,
  ListResponse,
  MASTER_API,
  SetAttrRequest,
  WorkerInfo,
  WriteBeginResponse,
  WriteCommitRequest,
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

  fileBlocks(path: string): Promise<FileBlocksResponse> {
    return this.#http.get(`${MASTER_API}/blocks`, { path });
  }

  fileBlocksByIno(ino: number): Promise<FileBlocksResponse> {
    return this.#http.get(`${MASTER_API}/blocks`, { ino });
  }

  beginWrite(ino: number): Promise<WriteBeginResponse> {
    return this.#http.post(`${MASTER_API}/write/begin`, { ino });
  }

  commitWrite(req: WriteCommitRequest): Promise<FileAttributes> {
    return this.#http.post(`${MASTER_API}/write/commit`, req);
  }

  workers(): Promise<WorkerInfo[]> {
    return this.#http.get(`${MASTER_API}/workers`);
  }

  close(): Promise<void> {
    return this.#http.close();
  }
}
