/**
 * Under-store calls timed and counted in the metrics of the daemon that makes them
 * (`strata_ufs_request_seconds`, by store scheme, operation and result: `ok` or the
 * error code). A slow or failing store otherwise showed only as slow reads, slow
 * lookups past the sync interval, or EIO at a mount, with nothing to say which store
 * call it was. One wrapper for every driver, so a new driver is metered as it is.
 */

import type { Readable } from 'node:stream';
import { Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { toStrataError } from '../common/errors';
import type { UfsCallOptions, UfsStatus, UfsWriter, UnderFileSystem } from './ufs';

type Label = 'scheme' | 'op' | 'result';

/** The histogram of one daemon; shared by every store driver it makes. */
export class UfsMeter {
  readonly seconds: Histogram<Label>;

  constructor(registry: Registry) {
    this.seconds = new Histogram({
      name: 'strata_ufs_request_seconds',
      help: 'Under-store calls by store scheme, operation (read and create: until the stream or writer is ready; complete: an upload finishing) and result (ok, or the error code)',
      labelNames: ['scheme', 'op', 'result'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
      registers: [registry],
    });
  }

  async time<T>(scheme: string, op: string, call: () => Promise<T>): Promise<T> {
    const end = this.seconds.startTimer({ scheme, op });
    try {
      const r = await call();
      end({ result: 'ok' });
      return r;
    } catch (err) {
      end({ result: toStrataError(err).code });
      throw err;
    }
  }
}

export class MeteredUnderFileSystem implements UnderFileSystem {
  readonly #inner: UnderFileSystem;
  readonly #meter: UfsMeter;
  readonly #scheme: string;
  readonly checkName?: (name: string) => void;
  readonly discardLeftover?: (handle: string, opts?: UfsCallOptions) => Promise<void>;
  readonly forgetCaches?: () => void;

  constructor(inner: UnderFileSystem, meter: UfsMeter) {
    this.#inner = inner;
    this.#meter = meter;
    this.#scheme = inner.uri.slice(0, Math.max(0, inner.uri.indexOf(':')));
    // The optional methods exist here exactly when the driver has them: callers test for them.
    if (inner.checkName) this.checkName = (name) => inner.checkName!(name);
    if (inner.discardLeftover) this.discardLeftover = (handle, opts) => this.#time('discardLeftover', () => inner.discardLeftover!(handle, opts));
    if (inner.forgetCaches) this.forgetCaches = () => inner.forgetCaches!();
  }

  get uri(): string {
    return this.#inner.uri;
  }

  get maxPathBytes(): number | undefined {
    return this.#inner.maxPathBytes;
  }

  #time<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.#meter.time(this.#scheme, op, call);
  }

  stat(path: string, opts?: UfsCallOptions): Promise<UfsStatus | null> {
    return this.#time('stat', () => this.#inner.stat(path, opts));
  }

  list(path: string, opts?: UfsCallOptions): Promise<UfsStatus[]> {
    return this.#time('list', () => this.#inner.list(path, opts));
  }

  read(path: string, offset: number, length: number, opts?: UfsCallOptions): Promise<Readable> {
    return this.#time('read', () => this.#inner.read(path, offset, length, opts));
  }

  async create(path: string, opts?: UfsCallOptions): Promise<UfsWriter> {
    const w = await this.#time('create', () => this.#inner.create(path, opts));
    // The driver's own writer, not a wrapper: callers set `onLeftover` on it for the driver to await.
    const complete = w.complete.bind(w);
    w.complete = () => this.#time('complete', complete);
    return w;
  }

  delete(path: string, opts?: UfsCallOptions): Promise<void> {
    return this.#time('delete', () => this.#inner.delete(path, opts));
  }

  mkdir(path: string, opts?: UfsCallOptions): Promise<void> {
    return this.#time('mkdir', () => this.#inner.mkdir(path, opts));
  }

  rmdir(path: string, opts?: UfsCallOptions): Promise<void> {
    return this.#time('rmdir', () => this.#inner.rmdir(path, opts));
  }

  rename(src: string, dst: string, opts?: UfsCallOptions): Promise<UfsStatus | void> {
    return this.#time('rename', () => this.#inner.rename(src, dst, opts));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
