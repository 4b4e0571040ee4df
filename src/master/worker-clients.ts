/** The master's HTTP clients for workers: one keep-alive pool per worker address. */

import { JsonClient } from '../common/json-client';

/** Workers that moved or went leave clients behind: beyond this many, the oldest goes. */
const MAX_CLIENTS = 64;

export class WorkerClients {
  readonly #clients = new Map<string, JsonClient>();
  readonly #timeoutMs: number;
  readonly #token: string | undefined;

  constructor(opts: { timeoutMs: number; token?: string | undefined }) {
    this.#timeoutMs = opts.timeoutMs;
    this.#token = opts.token;
  }

  get(address: string): JsonClient {
    let c = this.#clients.get(address);
    if (!c) {
      if (this.#clients.size >= MAX_CLIENTS) {
        const [oldest, old] = this.#clients.entries().next().value as [string, JsonClient];
        this.#clients.delete(oldest);
        // A pool's close lets its requests finish.
        void old.close().catch(() => undefined);
      }
      c = new JsonClient(address, { timeoutMs: this.#timeoutMs, retryForMs: 0, token: this.#token });
      this.#clients.set(address, c);
    }
    return c;
  }

  async close(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    await Promise.allSettled(clients.map((c) => c.close()));
  }
}
