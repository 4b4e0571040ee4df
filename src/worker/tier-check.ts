/**
 * Checks each cache tier's disk on a timer, as HDFS's DataNode checks its volumes: a
 * small write and fdatasync of a file in the tier. A request that touches a tier whose
 * disk hangs (a hung NFS mount, a dying drive) hangs with it, while the worker's event
 * loop still answers `/healthz`; clients waiting on this worker then kept waiting up to
 * their 10-minute bound. A check that has not finished within `stallMs` marks the tier
 * stalled, and `/healthz` answers 503 while any tier is: clients probing it give up on
 * this worker at once and read elsewhere (another worker, or the store through one).
 *
 * A check that fails (EIO, EROFS, ENOSPC) marks the tier failing, which is reported but
 * leaves `/healthz` at 200: requests on such a tier fail fast by themselves, and a worker
 * with a full disk still serves what it has in memory.
 *
 * One check per tier at a time: a stuck one holds a thread of libuv's pool, and piling
 * more onto it would take the pool from the requests that still work.
 */

import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import type { Logger } from 'pino';
import type { TierState } from '../common/protocol';

export interface TierHealth {
  tier: string;
  state: TierState;
  /** How long the tier has been in this state (ms), when it is not ok. */
  forMs?: number;
  /** The failing check's error code, or what a stalled check was doing. */
  detail?: string;
}

export interface TierCheckOptions {
  /** How often each tier is checked (ms); 0 = never. */
  intervalMs: number;
  /** A check still running after this long (ms) marks its tier stalled. */
  stallMs: number;
  log: Logger;
  /** Called with each finished check's duration (seconds) and outcome, for metrics. */
  onCheck?: (tier: string, seconds: number, ok: boolean) => void;
}

interface Checked {
  name: string;
  file: string;
  /** When the running check began (0 = none runs). */
  runningSince: number;
  step: string;
  failedSince: number;
  error: string | undefined;
  /** Whether the log said this tier stalled (so its recovery is logged once too). */
  saidStalled: boolean;
}

const PROBE = Buffer.alloc(4096, 0x5a);

export class TierChecker {
  readonly #tiers: Checked[];
  readonly #opts: TierCheckOptions;
  #timer: NodeJS.Timeout | undefined;

  /** `tiers`: each tier's name and a directory of its own for scratch files (on the tier's disk). */
  constructor(tiers: readonly { name: string; scratchDir: string }[], opts: TierCheckOptions) {
    this.#opts = opts;
    this.#tiers = tiers.map((t) => ({ name: t.name, file: nodePath.join(t.scratchDir, 'health-check'), runningSince: 0, step: '', failedSince: 0, error: undefined, saidStalled: false }));
  }

  start(): void {
    if (this.#opts.intervalMs <= 0 || this.#timer) return;
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#opts.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const now = Date.now();
    for (const t of this.#tiers) {
      if (t.runningSince === 0) void this.#check(t);
      else if (!t.saidStalled && now - t.runningSince >= this.#opts.stallMs) {
        t.saidStalled = true;
        this.#opts.log.error({ tier: t.name, step: t.step, forMs: now - t.runningSince }, 'cache tier stalled: a check of its disk has not finished; /healthz answers 503 until it does');
      }
    }
  }

  async #check(t: Checked): Promise<void> {
    const began = Date.now();
    t.runningSince = began;
    let error: string | undefined;
    let fh: fsp.FileHandle | undefined;
    try {
      t.step = 'open';
      fh = await fsp.open(t.file, 'w');
      t.step = 'write';
      await fh.write(PROBE, 0, PROBE.length, 0);
      t.step = 'fdatasync';
      await fh.datasync();
    } catch (err) {
      error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    } finally {
      t.step = 'close';
      await fh?.close().catch(() => undefined);
    }
    const took = Date.now() - began;
    t.runningSince = 0;
    this.#opts.onCheck?.(t.name, took / 1000, !error);
    if (t.saidStalled) {
      t.saidStalled = false;
      this.#opts.log.warn({ tier: t.name, tookMs: took, ...(error ? { err: error } : {}) }, 'cache tier answers again: its stalled check finished');
    }
    if (error && !t.error) {
      t.failedSince = Date.now();
      this.#opts.log.error({ tier: t.name, err: error }, 'cache tier failing: a small write to its disk failed');
    } else if (!error && t.error) {
      this.#opts.log.warn({ tier: t.name, was: t.error }, 'cache tier writes again');
    }
    t.error = error;
  }

  /** Each tier's state now. */
  health(): TierHealth[] {
    const now = Date.now();
    return this.#tiers.map((t) => {
      if (t.runningSince && now - t.runningSince >= this.#opts.stallMs) return { tier: t.name, state: 'stalled', forMs: now - t.runningSince, detail: `${t.step} has not returned` };
      if (t.error) return { tier: t.name, state: 'failing', forMs: now - t.failedSince, detail: t.error };
      return { tier: t.name, state: 'ok' };
    });
  }
}
