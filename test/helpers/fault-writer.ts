/**
 * Test helper: a writer process for fault tests. It runs `node -e WRITER_SCRIPT dir tag`
 * and loops create+write+close of `<tag>-<i>.tmp`, then renames it to `<tag>-<i>`,
 * printing one line per operation that returned (`ok write NAME`, `ok rename NAME`,
 * `err write NAME CODE`, ...), until it reads anything on stdin. The checker
 * recomputes every file's bytes from its name with `contentOf`.
 */

import { spawn, ChildProcess } from 'node:child_process';

/** Deterministic bytes of a file named `name` (1 KiB to ~200 KiB). */
export function contentOf(name: string): Buffer {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  const b = Buffer.alloc(1024 + (h % (200 * 1024)));
  let x = h || 1;
  for (let k = 0; k < b.length; k++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[k] = x >>> 24;
  }
  return b;
}

const SCRIPT = `
const fsp = require('node:fs/promises');
const [dir, tag, renames] = process.argv.slice(1);
${contentOf.toString()}
let stop = false;
process.stdin.on('data', () => { stop = true; });
process.stdin.on('end', () => { stop = true; });
const say = (s) => process.stdout.write(Date.now() + ' ' + s + '\\n');
(async () => {
  for (let i = 0; !stop; i++) {
    const name = tag + '-' + i;
    try {
      const fh = await fsp.open(dir + '/' + name + '.tmp', 'wx');
      try { await fh.write(contentOf(name)); } finally { await fh.close(); }
      say('ok write ' + name);
    } catch (e) { say('err write ' + name + ' ' + (e.code || e.message)); await new Promise((r) => setTimeout(r, 100)); continue; }
    if (renames === 'no') continue;
    try {
      await fsp.rename(dir + '/' + name + '.tmp', dir + '/' + name);
      say('ok rename ' + name);
    } catch (e) { say('err rename ' + name + ' ' + (e.code || e.message)); await new Promise((r) => setTimeout(r, 100)); }
  }
  say('done');
  process.exit(0);
})();
`;

export interface WriterOp {
  at: number;
  ok: boolean;
  op: 'write' | 'rename';
  name: string;
  code?: string;
}

export interface FaultWriter {
  proc: ChildProcess;
  ops(): WriterOp[];
  /** Asks it to stop after the operation in progress; resolves when it exited. */
  stop(timeoutMs?: number): Promise<boolean>;
}

/** Starts a writer into `dir` whose files are named `<tag>-<i>`; `renames: false` leaves the `.tmp` names. */
export function startWriter(t: { teardown(fn: () => unknown): void }, dir: string, tag: string, renames = true): FaultWriter {
  const proc = spawn(process.execPath, ['-e', SCRIPT, dir, tag, renames ? 'yes' : 'no'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += `stderr ${d}`));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return {
    proc,
    ops() {
      const r: WriterOp[] = [];
      for (const m of out.matchAll(/^(\d+) (ok|err) (write|rename) (\S+)(?: (.*))?$/gm)) {
        r.push({ at: Number(m[1]), ok: m[2] === 'ok', op: m[3] as 'write' | 'rename', name: m[4]!, ...(m[5] ? { code: m[5] } : {}) });
      }
      return r;
    },
    stop(timeoutMs = 60_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
      proc.stdin!.end('stop\n');
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        proc.once('exit', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
  };
}
