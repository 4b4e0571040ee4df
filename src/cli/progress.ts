/** Progress of long `strata fs` commands on stderr, and the number formats they share. */

import { Presets, SingleBar } from 'cli-progress';

/** 1536 -> "1.5 KiB": binary units, one decimal. */
export function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(n)} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** `part` of `whole` as a percentage for people: never 100% before the end, never 0% once something is there. */
export function percent(part: number, whole: number): string {
  if (whole <= 0) return part > 0 ? '100%' : '0%';
  const p = (100 * part) / whole;
  // Never round a partly cached file up to 100% or a little cached data down to 0%.
  return `${p >= 100 ? 100 : p > 99 ? Math.floor(p * 10) / 10 : p > 0 && p < 1 ? Math.ceil(p * 10) / 10 : Math.round(p)}%`;
}

/** "12.5 MiB/s" from bytes and milliseconds; "-" before there is anything to measure. */
export function rate(bytes: number, ms: number): string {
  return ms > 0 ? `${human((bytes * 1000) / ms)}/s` : '-';
}

/** Where and how a Progress draws; every field has a default. */
export interface ProgressOptions {
  /** Where to draw; default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Draw a bar (a terminal) or print plain lines (logs, CI, pipes); default: whether `stream` is a TTY. */
  tty?: boolean;
  /** Longest time between two plain lines, in ms; default 2000. */
  intervalMs?: number;
}

/**
 * Progress in bytes and files: a cli-progress bar on a terminal; elsewhere a plain
 * line (`label: 45% 2.0 MiB of 4.5 MiB, 12/30 files, 8.1 MiB/s`) every `intervalMs`
 * or 10 %, whichever comes first, and one for the final state.
 */
export class Progress {
  readonly #label: string;
  readonly #totalBytes: number;
  readonly #totalFiles: number;
  readonly #stream: NodeJS.WriteStream;
  readonly #intervalMs: number;
  readonly #bar: SingleBar | undefined;
  readonly #started = Date.now();
  #bytes = 0;
  #files = 0;
  #lastLine = Date.now();
  #lastTenth = 0;
  #printed = '';

  constructor(label: string, totalBytes: number, totalFiles: number, opts: ProgressOptions = {}) {
    this.#label = label;
    this.#totalBytes = totalBytes;
    this.#totalFiles = totalFiles;
    this.#stream = opts.stream ?? process.stderr;
    this.#intervalMs = opts.intervalMs ?? 2000;
    if (opts.tty ?? this.#stream.isTTY) {
      this.#bar = new SingleBar(
        {
          format: `${label} [{bar}] {percentage}% | {doneH} of {totalH} | {files}/{totalFiles} files | {rate} | ETA {eta_formatted}`,
          stream: this.#stream,
          hideCursor: true,
          etaBuffer: 50,
        },
        Presets.shades_classic,
      );
      // An all-empty tree moves by files, not bytes.
      this.#bar.start(this.#barTotal(), 0, this.#payload());
    }
  }

  #barTotal(): number {
    return this.#totalBytes > 0 ? this.#totalBytes : Math.max(this.#totalFiles, 1);
  }

  #payload() {
    return { doneH: human(this.#bytes), totalH: human(this.#totalBytes), files: this.#files, totalFiles: this.#totalFiles, rate: rate(this.#bytes, Date.now() - this.#started) };
  }

  #line(): string {
    const pct = this.#totalBytes > 0 ? percent(this.#bytes, this.#totalBytes) : percent(this.#files, this.#totalFiles);
    return `${this.#label}: ${pct} ${human(this.#bytes)} of ${human(this.#totalBytes)}, ${this.#files}/${this.#totalFiles} files, ${rate(this.#bytes, Date.now() - this.#started)}\n`;
  }

  /** Sets the absolute progress. */
  update(bytes: number, files: number): void {
    this.#bytes = bytes;
    this.#files = files;
    if (this.#bar) {
      this.#bar.update(this.#totalBytes > 0 ? bytes : files, this.#payload());
      return;
    }
    const done = this.#totalBytes > 0 ? bytes / this.#totalBytes : this.#totalFiles > 0 ? files / this.#totalFiles : 1;
    const tenth = Math.floor(10 * Math.min(done, 1));
    const now = Date.now();
    if (tenth > this.#lastTenth || now - this.#lastLine >= this.#intervalMs) {
      this.#lastTenth = tenth;
      this.#lastLine = now;
      this.#print();
    }
  }

  /** Adds to the progress. */
  add(bytes: number, files = 0): void {
    this.update(this.#bytes + bytes, this.#files + files);
  }

  #print(): void {
    const state = `${this.#bytes}/${this.#files}`;
    this.#stream.write(this.#line());
    this.#printed = state;
  }

  /** Ends the bar, or prints the final state unless the last line showed it. */
  stop(): void {
    if (this.#bar) {
      this.#bar.update(this.#totalBytes > 0 ? this.#bytes : this.#files, this.#payload());
      this.#bar.stop();
      return;
    }
    if (this.#printed !== `${this.#bytes}/${this.#files}`) this.#print();
  }
}
