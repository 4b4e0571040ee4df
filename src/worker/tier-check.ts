/**
 * Checks each cache tier's disk on a timer, as HDFS's DataNode checks its volumes: a
 * small write and fdatasync of a file in the tier. A request that touches a tier whose
 * disk hangs (a hung NFS mount, a dying drive) hangs with it, while the worker's event
 * loop still answers `/healthz`; clients waiting on this worker then kept waiting up to
 * their 10-minute bound. A check that has not finished within `stallMs` marks the tier
 * stalled, until a check succeeds (one that hangs and then fails, as a soft NFS mount's
 * EIO, is no recovery). `/healthz` answers 503 while any tier is stalled: clients
 * probing it give up on this worker when another one can serve them.
 *
 * A check that fails (EIO, EROFS, ENOSPC) marks the tier failing, which is reported but
 * leaves `/healthz` at 200: requests on such a tier fail fast by themselves, and a worker
 * with a full disk still serves what it has in memory.
 *
 * One check per tier at a time: a stuck one holds a thread of libuv's pool, and piling
 * more onto it would take the pool from the requests that still work.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
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
  /** When the running check began (performance.now(); 0 = none runs). */
  runningSince: number;
  step: string;
  failedSince: number;
  error: string | undefined;
  /** A check ran past the stall time: the tier counts as stalled until one succeeds (a hang that ends in EIO is no recovery). */
  stalledSince: number;
}

const PROBE = Buffer.alloc(4096, 0x5a);

export class TierChecker {
  readonly #tiers: Checked[];
  readonly #opts: TierCheckOptions;
  #timer: NodeJS.Timeout | undefined;

  /** `tiers`: each tier's name and a directory of its own for scratch files (on the tier's disk). */
  constructor(tiers: readonly { name: string; scratchDir: string }[], opts: TierCheckOptions) {
    this.#opts = opts;
    this.#tiers = tiers.map((t) => ({ name: t.name, file: nodePath.join(t.scratchDir, 'health-check'), runningSince: 0, step: '', failedSince: 0, error: undefined, stalledSince: 0 }));
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
    const now = performance.now();
    for (const t of this.#tiers) {
      if (t.runningSince === 0) void this.#check(t);
      else if (t.stalledSince === 0 && now - t.runningSince >= this.#opts.stallMs) {
        t.stalledSince = t.runningSince;
        this.#opts.log.error({ tier: t.name, step: t.step, forMs: Math.round(now - t.runningSince) }, 'cache tier stalled: a check of its disk has not finished; /healthz answers 503 until one succeeds');
      }
    }
  }

  async #check(t: Checked): Promise<void> {
    const began = performance.now();
    t.runningSince = began;
    let error: string | undefined;
    let fh: fsp.FileHandle | undefined;
    try {
      t.step = 'open';
      // Overwritten in place once it exists (no O_TRUNC): no blocks freed and allocated again, so the
      // fdatasync writes 4 KiB and need not wait for a journal commit behind other files' data.
      fh = await fsp.open(t.file, fsc.O_WRONLY).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        return fsp.open(t.file, fsc.O_WRONLY | fsc.O_CREAT, 0o600);
      });
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
    const took = performance.now() - began;
    t.runningSince = 0;
    if (took >= this.#opts.stallMs && !t.stalledSince) t.stalledSince = began;
    this.#opts.onCheck?.(t.name, took / 1000, !error);
    if (t.stalledSince && !error) {
      t.stalledSince = 0;
      this.#opts.log.warn({ tier: t.name, tookMs: Math.round(took) }, 'cache tier answers again: a check of its disk succeeded');
    }
    if (error && !t.error) {
      t.failedSince = performance.now();
      this.#opts.log.error({ tier: t.name, err: error }, 'cache tier failing: a small write to its disk failed');
    } else if (!error && t.error) {
      this.#opts.log.warn({ tier: t.name, was: t.error }, 'cache tier writes again');
    }
    t.error = error;
  }

  /** Each tier's state now. */
  health(): TierHealth[] {
    const now = performance.now();
    return this.#tiers.map((t) => {
      if (t.runningSince && now - t.runningSince >= this.#opts.stallMs) return { tier: t.name, state: 'stalled', forMs: Math.round(now - t.runningSince), detail: `${t.step} has not returned` };
      if (t.stalledSince) return { tier: t.name, state: 'stalled', forMs: Math.round(now - t.stalledSince), detail: `a check hung, then failed with ${t.error ?? 'an error'}` };
      if (t.error) return { tier: t.name, state: 'failing', forMs: Math.round(now - t.failedSince), detail: t.error };
      return { tier: t.name, state: 'ok' };
    });
  }
}
