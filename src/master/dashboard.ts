/**
 * The master's read-only web dashboard: server-rendered HTML pages on the API's
 * port (overview, mount table, namespace browser, persist queue). No scripts, no
 * external assets: every page is one HTML document with inline CSS and SVG.
 *
 * Every value from the namespace or a worker (file names, mount URIs, error text)
 * passes through the `html` tag, which escapes whatever is not itself markup it
 * built; a Content-Security-Policy that forbids scripts backs that up.
 *
 * The master never sees reads, so the cache hit ratio comes from the workers: a
 * sampler scrapes each live worker's /metrics (strata_worker_block_reads_total)
 * and keeps a small ring of per-interval ratios. It runs only while the dashboard
 * is enabled and stops with the master.
 */

import { authHeaders } from '../common/auth';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StrataError, toStrataError } from '../common/errors';
import { intParam } from '../common/http';
import type { Logger } from '../common/log';
import { joinPath, normalizePath, parsePath } from '../common/paths';
import type { BlockInfo, DirEntry, FileBlocksResponse, Timespec, WorkerInfo } from '../common/protocol';
import type { Metastore } from './metastore';
import { LIST_PAGE, type Namespace } from './namespace';

export interface DashboardOptions {
  /** How often each live worker's /metrics is sampled for the cache hit ratio (ms). Default 10000. */
  sampleIntervalMs?: number;
  /** Samples kept for the hit-ratio chart. Default 60. */
  samples?: number;
  /** Timeout of one worker scrape (ms). Default: the smaller of 5000 and the interval. */
  scrapeTimeoutMs?: number;
}

export interface DashboardDeps {
  table: Metastore;
  ns: Namespace;
  logger: Logger;
  /** The cluster token, sent when scraping workers' /metrics. */
  token?: string;
}

/** The running dashboard: its sampler stops on close. */
export interface Dashboard {
  close(): Promise<void>;
}

/** Directory entries shown per page of the namespace browser. */
export const BROWSE_PAGE_SIZE = 500;

// ---- HTML --------------------------------------------------------------------

/** Markup built by `html`; anything else interpolated into `html` is escaped. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(v: unknown): string {
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === undefined || v === null || v === false) return '';
  return escapeHtml(String(v));
}

/** Template tag: interpolated values are escaped unless they are `Html` (or arrays of it). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

// ---- formatting ----------------------------------------------------------------

function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  // 1.5 MiB, 200 KiB: no trailing zeros.
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1).replace(/\.?0+$/, '')} ${units[u]}`;
}

function fmtPct(part: number, whole: number): string {
  if (whole <= 0) return '—';
  return `${((100 * part) / whole).toFixed(part === whole || part === 0 ? 0 : 1)}%`;
}

function fmtTimeMs(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtTimespec(t: Timespec): string {
  return fmtTimeMs(t.sec * 1000 + Math.floor(t.nsec / 1e6));
}

function fmtAgo(ms: number, now = Date.now()): string {
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return `in ${fmtDuration(-s)}`;
  return `${fmtDuration(s)} ago`;
}

function fmtDuration(s: number): string {
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function browseHref(path: string, offset = 0): string {
  return `/browse?path=${encodeURIComponent(path)}${offset > 0 ? `&offset=${offset}` : ''}`;
}

/** A usage bar: used of capacity, as a filled box and the numbers. */
function usageBar(used: number, capacity: number): Html {
  const pct = capacity > 0 ? Math.min(100, (100 * used) / capacity) : 0;
  return html`<span class="bar" title="${fmtPct(used, capacity)}"><span style="width:${pct.toFixed(1)}%"></span></span> ${fmtBytes(used)} / ${fmtBytes(capacity)} (${fmtPct(used, capacity)})`;
}

/** Bytes of a file cached on live workers: per block, the largest copy. */
function cachedBytesOf(blocks: BlockInfo[]): number {
  let n = 0;
  for (const b of blocks) n += Math.min(b.length, Math.max(0, ...(b.cached ?? []).map((c) => c.bytes)));
  return n;
}

const CSS = `
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2b45;color:#fff;padding:8px 20px;display:flex;gap:20px;align-items:baseline}
header b{font-size:17px;margin-right:12px}
header a{color:#cfe0ff;text-decoration:none}header a:hover{text-decoration:underline}
header a.on{color:#fff;font-weight:600}
main{padding:12px 20px 40px}
h1{font-size:20px;margin:8px 0 12px}h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;margin-bottom:8px}
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d8dce3;padding:8px 14px;min-width:120px}
.card .v{font-size:22px;font-weight:600}.card .k{color:#5a6475}
.bar{display:inline-block;width:120px;height:10px;background:#e3e7ee;vertical-align:middle;border:1px solid #c5ccd8}
.bar span{display:block;height:100%;background:#3f7be0}
.live{color:#0f7a2f;font-weight:600}.lost{color:#b3261e;font-weight:600}
.muted{color:#6b7484}.err{color:#b3261e}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.crumbs a{text-decoration:none}
svg.spark{background:#fff;border:1px solid #d8dce3}
`;

type Section = 'overview' | 'mounts' | 'browse' | 'persist';

function page(title: string, section: Section, body: Html): string {
  const nav = (s: Section, href: string, label: string) => html`<a href="${href}" class="${s === section ? 'on' : ''}">${label}</a>`;
  return (
    '<!doctype html>\n' +
    html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Strata</title><style>${new Html(CSS)}</style></head>
<body><header><b>Strata</b>${nav('overview', '/', 'Overview')}${nav('mounts', '/mounts', 'Mounts')}${nav('browse', '/browse', 'Browse')}${nav('persist', '/persist-queue', 'Persist queue')}<a href="/metrics">Metrics</a></header>
<main>${body}</main></body></html>`.value
  );
}

// ---- the hit-ratio sampler -----------------------------------------------------

/** One sampling interval, summed over the workers that answered. */
export interface HitSample {
  atMs: number;
  hits: number;
  misses: number;
  /** Workers scraped successfully / live workers asked. */
  answered: number;
  asked: number;
}

/** Hit and miss counts of `strata_worker_block_reads_total` in Prometheus text; undefined if absent. */
export function parseBlockReads(text: string): { hits: number; misses: number } | undefined {
  let hits: number | undefined;
  let misses: number | undefined;
  const re = /^strata_worker_block_reads_total\{([^}]*)\}\s+(\S+)/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const v = Number(m[2]);
    if (!Number.isFinite(v)) continue;
    if (/(^|,)cache="hit"/.test(m[1]!)) hits = v;
    else if (/(^|,)cache="miss"/.test(m[1]!)) misses = v;
  }
  if (hits === undefined && misses === undefined) return undefined;
  return { hits: hits ?? 0, misses: misses ?? 0 };
}

class HitSampler {
  readonly samples: HitSample[] = [];
  /** Last counters per worker id (with its address: a new address means a new process). */
  readonly #last = new Map<number, { address: string; hits: number; misses: number }>();
  readonly #deps: DashboardDeps;
  readonly #max: number;
  readonly #timeoutMs: number;
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;

  constructor(deps: DashboardDeps, readonly intervalMs: number, max: number, timeoutMs: number) {
    this.#deps = deps;
    this.#max = max;
    this.#timeoutMs = timeoutMs;
  }

  start(): void {
    const tick = () => {
      if (this.#pass) return;
      this.#pass = this.#sample().finally(() => (this.#pass = undefined));
    };
    tick(); // the baseline: the first ratio comes one interval later
    this.#timer = setInterval(tick, this.intervalMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#abort.abort();
    await this.#pass;
  }

  /** Hit ratio of each worker since it started, from its last scrape. */
  lifetime(workerId: number): { hits: number; misses: number } | undefined {
    return this.#last.get(workerId);
  }

  async #sample(): Promise<void> {
    const workers = (await this.#deps.table.workers()).filter((w) => w.live);
    let hits = 0;
    let misses = 0;
    let answered = 0;
    const results = await Promise.allSettled(workers.map((w) => this.#scrape(w)));
    if (this.#abort.signal.aborted) return;
    results.forEach((r, i) => {
      const w = workers[i]!;
      if (r.status === 'rejected') {
        this.#deps.logger.debug({ workerId: w.id, err: String(r.reason) }, 'dashboard: worker scrape failed');
        return;
      }
      answered++;
      const now = r.value;
      const prev = this.#last.get(w.id);
      this.#last.set(w.id, { address: w.address, ...now });
      if (!prev || prev.address !== w.address) return; // first sight of this process: a baseline only
      // Counters that went down mean the worker restarted: all it counted since is new.
      const reset = now.hits < prev.hits || now.misses < prev.misses;
      hits += reset ? now.hits : now.hits - prev.hits;
      misses += reset ? now.misses : now.misses - prev.misses;
    });
    for (const id of this.#last.keys()) if (!workers.some((w) => w.id === id)) this.#last.delete(id);
    this.samples.push({ atMs: Date.now(), hits, misses, answered, asked: workers.length });
    while (this.samples.length > this.#max) this.samples.shift();
  }

  async #scrape(w: WorkerInfo): Promise<{ hits: number; misses: number }> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#timeoutMs)]);
    const res = await fetch(`${w.address}/metrics`, { signal, headers: authHeaders(this.#deps.token) });
    if (!res.ok) {
      await res.body?.cancel();
      throw new StrataError('UNAVAILABLE', `HTTP ${res.status}`);
    }
    // prom-client prints a labelled counter only once it counted: a worker that served no read yet is at zero.
    return parseBlockReads(await res.text()) ?? { hits: 0, misses: 0 };
  }
}

/** The hit ratio per sample as an inline SVG line; intervals without reads are gaps. */
function sparkline(samples: HitSample[], capacity: number, intervalMs: number): Html {
  const W = 600;
  const H = 90;
  const pad = 6;
  const step = (W - 2 * pad) / Math.max(1, capacity - 1);
  const x = (i: number) => W - pad - (samples.length - 1 - i) * step;
  const y = (r: number) => pad + (1 - r) * (H - 2 * pad);
  const segments: string[][] = [];
  let cur: string[] = [];
  const dots: Html[] = [];
  samples.forEach((s, i) => {
    const total = s.hits + s.misses;
    if (total === 0) {
      if (cur.length) segments.push(cur);
      cur = [];
      return;
    }
    const r = s.hits / total;
    cur.push(`${x(i).toFixed(1)},${y(r).toFixed(1)}`);
    dots.push(html`<circle cx="${x(i).toFixed(1)}" cy="${y(r).toFixed(1)}" r="2.5"><title>${fmtTimeMs(s.atMs)}: ${fmtPct(s.hits, total)} (${s.hits} hits, ${s.misses} misses)</title></circle>`);
  });
  if (cur.length) segments.push(cur);
  const grid = [0, 0.5, 1].map((r) => html`<line x1="${pad}" x2="${W - pad}" y1="${y(r)}" y2="${y(r)}" stroke="#e3e7ee"/><text x="${pad + 2}" y="${y(r) + (r === 1 ? 10 : -2)}" font-size="10" fill="#6b7484">${r * 100}%</text>`);
  const lines = segments.map((seg) => html`<polyline fill="none" stroke="#3f7be0" stroke-width="2" points="${seg.join(' ')}"/>`);
  const span = fmtDuration(Math.round(((capacity - 1) * intervalMs) / 1000));
  return html`<svg class="spark" id="hit-ratio-chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="cache hit ratio over the last ${span}">${grid}${lines}<g fill="#1d4fa8">${dots}</g></svg>`;
}

// ---- pages ---------------------------------------------------------------------

/** Registers the dashboard's GET routes on the master's server and starts its sampler. */
export function registerDashboard(app: FastifyInstance, deps: DashboardDeps, opts: DashboardOptions = {}): Dashboard {
  const { table, ns } = deps;
  const intervalMs = opts.sampleIntervalMs ?? 10_000;
  const capacity = opts.samples ?? 60;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 100) throw new TypeError('dashboard sampleIntervalMs must be an integer of at least 100');
  if (!Number.isSafeInteger(capacity) || capacity < 2 || capacity > 10_000) throw new TypeError('dashboard samples must be an integer between 2 and 10000');
  const sampler = new HitSampler(deps, intervalMs, capacity, opts.scrapeTimeoutMs ?? Math.min(5000, intervalMs));
  sampler.start();

  /** Sends a page; any failure becomes an error page with the error's status, never a crash. */
  const route = (url: string, section: Section, build: (req: FastifyRequest) => Promise<{ title: string; body: Html }>) => {
    app.get(url, async (req: FastifyRequest, reply: FastifyReply) => {
      void reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'");
      try {
        const p = await build(req);
        return page(p.title, section, p.body);
      } catch (err) {
        const e = toStrataError(err);
        // A path through a file names nothing: for a browser that is "not found".
        const status = e.code === 'NOT_DIRECTORY' ? 404 : e.status;
        if (status >= 500) deps.logger.warn({ url: req.url, err: e.message, code: e.code }, 'dashboard page failed');
        void reply.status(status);
        const title = status === 404 ? 'Not found' : status < 500 ? 'Bad request' : 'Error';
        return page(title, section, html`<h1>${status} ${title}</h1><p class="err">${e.message}</p><p><a href="/browse">Browse from /</a> · <a href="/">Overview</a></p>`);
      }
    });
  };

  const query = (req: FastifyRequest, name: string): string | undefined => {
    const v = (req.query as Record<string, unknown>)[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new StrataError('BAD_REQUEST', `parameter '${name}' must be given once`);
    return v;
  };

  route('/', 'overview', async () => {
    const now = Date.now();
    const [workers, queue, inodes] = await Promise.all([table.workers(), table.persistQueue(), table.nodeCount()]);
    const live = workers.filter((w) => w.live);
    let oldest: number | undefined;
    for (const j of queue) oldest = Math.min(oldest ?? Infinity, j.enqueuedAt);
    const tiers = new Map<string, { capacity: number; used: number; workers: number }>();
    for (const w of live) {
      for (const t of w.tiers) {
        const agg = tiers.get(t.name) ?? { capacity: 0, used: 0, workers: 0 };
        agg.capacity += t.capacityBytes;
        agg.used += t.usedBytes;
        agg.workers++;
        tiers.set(t.name, agg);
      }
    }
    const cap = live.reduce((n, w) => n + w.capacityBytes, 0);
    const used = live.reduce((n, w) => n + w.usedBytes, 0);
    const samples = sampler.samples;
    const withReads = samples.filter((s) => s.hits + s.misses > 0);
    const last = withReads[withReads.length - 1];
    const sumHits = samples.reduce((n, s) => n + s.hits, 0);
    const sumReads = samples.reduce((n, s) => n + s.hits + s.misses, 0);
    const card = (k: string, v: unknown, id: string) => html`<div class="card" id="${id}"><div class="v">${v}</div><div class="k">${k}</div></div>`;
    const workerRows = workers.map((w) => {
      const life = sampler.lifetime(w.id);
      const n = w.tiers.length || 1;
      const first = html`<td rowspan="${n}" class="num">${w.id}</td><td rowspan="${n}" class="mono">${w.address}</td><td rowspan="${n}">${w.live ? html`<span class="live">live</span>` : html`<span class="lost">lost</span>`}</td><td rowspan="${n}" title="${fmtTimeMs(w.lastHeartbeatMs)}">${fmtAgo(w.lastHeartbeatMs, now)}</td><td rowspan="${n}">${usageBar(w.usedBytes, w.capacityBytes)}</td><td rowspan="${n}" class="num">${life ? fmtPct(life.hits, life.hits + life.misses) : '—'}</td>`;
      if (!w.tiers.length) return html`<tr class="worker" data-worker="${w.id}">${first}<td colspan="3" class="muted">no tiers reported</td></tr>`;
      return w.tiers.map((t, i) => html`<tr class="${i === 0 ? 'worker' : 'tier'}" data-worker="${w.id}">${i === 0 ? first : ''}<td>${t.name}${t.state && t.state !== 'ok' ? html` <span class="lost">(${t.state})</span>` : ''}</td><td class="mono">${t.dir}</td><td>${usageBar(t.usedBytes, t.capacityBytes)}</td></tr>`);
    });
    const body = html`<h1>Cluster overview</h1>
<div class="cards">${card('live workers', live.length, 'live-workers')}${card('lost workers', workers.length - live.length, 'lost-workers')}${card('inodes', inodes, 'inodes')}${card('persist queue', queue.length, 'persist-queue-length')}${card('cache used', `${fmtBytes(used)} / ${fmtBytes(cap)}`, 'cache-used')}${card('hit ratio (last interval)', last ? fmtPct(last.hits, last.hits + last.misses) : '—', 'hit-ratio')}</div>
<h2>Cache hit ratio</h2>
${sparkline(samples, capacity, intervalMs)}
<p class="muted">Block reads served by workers, sampled from each live worker's <code>/metrics</code> every ${intervalMs < 1000 ? `${intervalMs} ms` : fmtDuration(Math.round(intervalMs / 1000))}; ${samples.length} of ${capacity} samples, ${sumReads} reads, ${fmtPct(sumHits, sumReads)} hits over the chart. Gaps are intervals without reads. Short-circuit reads of mounts on a worker's host bypass the worker and are not counted.</p>
<h2>Tiers</h2>
${tiers.size ? html`<table id="tiers"><tr><th>tier</th><th class="num">live workers</th><th>used / capacity</th></tr>${[...tiers].map(([name, t]) => html`<tr><td>${name}</td><td class="num">${t.workers}</td><td>${usageBar(t.used, t.capacity)}</td></tr>`)}</table>` : html`<p class="muted">No live workers.</p>`}
<h2>Workers</h2>
${workers.length ? html`<table id="workers"><tr><th class="num">id</th><th>address</th><th>state</th><th>last heartbeat</th><th>used / capacity</th><th class="num">hit ratio since start</th><th>tier</th><th>dir</th><th>tier used / capacity</th></tr>${workerRows}</table>` : html`<p class="muted">No worker has registered.</p>`}
<h2>Persist queue</h2>
<p>${queue.length} file(s) waiting${oldest !== undefined ? html`, oldest queued ${fmtAgo(oldest, now)}` : ''}. <a href="/persist-queue">Details</a></p>`;
    return { title: 'Overview', body };
  });

  route('/mounts', 'mounts', async () => {
    const mounts = ns.mounts();
    const body = html`<h1>Mount table</h1>
<table id="mounts"><tr><th>path</th><th>under-store</th><th>read-only</th><th>options</th></tr>
${mounts.map((m) => html`<tr><td><a href="${browseHref(m.path)}">${m.path}</a></td><td class="mono">${m.uri}</td><td>${m.readOnly ? 'yes' : 'no'}</td><td class="mono">${Object.entries(m.options).map(([k, v], i) => html`${i ? html`<br>` : ''}${k}=${v}`)}</td></tr>`)}</table>
<p class="muted">Secrets in options are masked.</p>`;
    return { title: 'Mounts', body };
  });

  route('/browse', 'browse', async (req) => {
    const path = normalizePath(query(req, 'path') ?? '/');
    const node = await ns.resolve(path);
    const parts = parsePath(path);
    const crumbs = html`<p class="crumbs mono" id="crumbs"><a href="${browseHref('/')}">/</a>${parts.map((p, i) => html`${i ? '/' : ''}<a href="${browseHref('/' + parts.slice(0, i + 1).join('/'))}">${p}</a>`)}</p>`;
    if (node.type === 'directory') return { title: path, body: html`${crumbs}${await directoryBody(path, intParam(query(req, 'offset'), 'offset', 0))}` };
    return { title: path, body: html`${crumbs}${await fileBody(path, await ns.fileBlocks(path))}` };
  });

  const directoryBody = async (path: string, offset: number): Promise<Html> => {
    // Read in pages, other requests served between them: a directory can hold 100k names and more.
    const shown: DirEntry[] = [];
    let total = 0;
    for await (const page of ns.listPages(path, LIST_PAGE)) {
      for (const e of page) {
        if (total >= offset && shown.length < BROWSE_PAGE_SIZE) shown.push(e);
        total++;
      }
    }
    const rows = await Promise.all(shown.map(async (e) => {
      const p = joinPath(path, e.name);
      let cached: string = '—';
      if (e.type === 'file') {
        try {
          cached = fmtPct(cachedBytesOf(await table.blocks(e.ino)), e.size);
        } catch (err) {
          // Removed since the listing: leave it blank.
          if (!(err instanceof StrataError && err.code === 'NOT_FOUND')) throw err;
        }
      }
      const name = e.type === 'directory' ? `${e.name}/` : e.name;
      return html`<tr><td class="name"><a href="${browseHref(p)}">${name}</a></td><td>${e.type}</td><td class="num" title="${e.size} bytes">${e.type === 'directory' ? '' : fmtBytes(e.size)}</td><td>${fmtTimespec(e.mtime)}</td><td>${e.persistState === 'persisted' ? 'yes' : html`<b>no</b>`}</td><td class="num">${cached}</td></tr>`;
    }));
    const parent = path === '/' ? undefined : '/' + parsePath(path).slice(0, -1).join('/');
    const pager =
      total > BROWSE_PAGE_SIZE
        ? html`<p>Entries ${offset + 1}–${offset + shown.length} of ${total}. ${offset > 0 ? html`<a href="${browseHref(path, Math.max(0, offset - BROWSE_PAGE_SIZE))}">previous</a> ` : ''}${offset + BROWSE_PAGE_SIZE < total ? html`<a href="${browseHref(path, offset + BROWSE_PAGE_SIZE)}">next</a>` : ''}</p>`
        : '';
    return html`<h1>Directory ${path}</h1>
<p>${total} entr${total === 1 ? 'y' : 'ies'}${parent !== undefined ? html` · <a href="${browseHref(parent)}">up</a>` : ''}</p>${pager}
<table id="listing"><tr><th>name</th><th>type</th><th class="num">size</th><th>mtime (UTC)</th><th>persisted</th><th class="num">cached</th></tr>${rows}</table>${pager}`;
  };

  const fileBody = async (path: string, fb: FileBlocksResponse): Promise<Html> => {
    const a = fb.attrs;
    const [workerList, queue] = await Promise.all([table.workers(), table.persistQueue()]);
    const workers = new Map(workerList.map((w) => [w.id, w]));
    const queued = queue.find((j) => j.ino === a.ino);
    const cached = cachedBytesOf(fb.blocks);
    const row = (k: string, v: unknown) => html`<tr><th>${k}</th><td>${v}</td></tr>`;
    const attrs = html`<table id="attrs">
${row('type', a.type)}${a.target !== undefined ? row('symlink target', html`<span class="mono">${a.target}</span>`) : ''}
${row('size', `${fmtBytes(a.size)} (${a.size} bytes)`)}${row('inode', a.ino)}${row('mode', `0${a.mode.toString(8).padStart(3, '0')}`)}${row('owner', `uid ${a.uid}, gid ${a.gid}`)}${row('links', a.nlink)}
${row('mtime (UTC)', fmtTimespec(a.mtime))}${row('ctime (UTC)', fmtTimespec(a.ctime))}${row('atime (UTC)', fmtTimespec(a.atime))}${row('block size', fmtBytes(a.blockSize))}
${row('persisted', a.persistState === 'persisted' ? 'yes' : html`<b>no</b>${queued ? html` (queued ${fmtAgo(queued.enqueuedAt)}, ${queued.attempts} attempt(s)${queued.lastError ? html`, last error: <span class="err">${queued.lastError}</span>` : ''})` : ''}`)}
${row('pinned', fb.pinned ? 'yes' : 'no')}${row('TTL', fb.ttl ? `${fb.ttl.action} at ${fmtTimeMs(fb.ttl.expiresAtMs)} (${fmtAgo(fb.ttl.expiresAtMs)})` : 'none')}
${row('cached', a.type === 'file' ? `${fmtBytes(cached)} of ${fmtBytes(a.size)} (${fmtPct(cached, a.size)})` : '—')}</table>`;
    const blocks = fb.blocks.map((b) => {
      const copies = b.cached ?? b.locations.map((id) => ({ workerId: id, tier: '', bytes: b.length }));
      const locs = copies.length
        ? copies.map((c, i) => html`${i ? html`<br>` : ''}worker ${c.workerId} <span class="mono">${workers.get(c.workerId)?.address ?? '?'}</span> · ${c.tier || '?'} · ${fmtBytes(c.bytes)}`)
        : html`<span class="muted">not cached</span>`;
      return html`<tr><td class="num">${b.index}</td><td class="num mono">${b.id}</td><td class="num">${fmtBytes(b.offset)}</td><td class="num">${fmtBytes(b.length)}</td><td class="locations">${locs}</td></tr>`;
    });
    return html`<h1>${a.type === 'file' ? 'File' : a.type} ${path}</h1>${attrs}
<h2>Blocks</h2>
${fb.blocks.length ? html`<table id="blocks"><tr><th class="num">#</th><th class="num">block id</th><th class="num">offset</th><th class="num">length</th><th>cached copies (worker · tier · bytes)</th></tr>${blocks}</table>` : html`<p class="muted">No blocks.</p>`}`;
  };

  route('/persist-queue', 'persist', async () => {
    const now = Date.now();
    const queue = await table.persistQueue();
    const pathOf = async (ino: number): Promise<string | undefined> => {
      try {
        return await table.pathOf(ino);
      } catch (err) {
        if (err instanceof StrataError && err.code === 'NOT_FOUND') return undefined; // unlinked since it was queued
        throw err;
      }
    };
    const paths = await Promise.all(queue.map((j) => pathOf(j.ino)));
    const body = html`<h1>Persist queue</h1>
<p>${queue.length} file(s) written with ASYNC_THROUGH (or persisted on request) whose bytes are not in the under-store yet.</p>
${queue.length ? html`<table id="persist-queue"><tr><th>path</th><th class="num">inode</th><th>queued</th><th class="num">attempts</th><th>next attempt</th><th>last error</th></tr>${queue.map((j, i) => {
      const p = paths[i];
      return html`<tr><td>${p !== undefined ? html`<a href="${browseHref(p)}">${p}</a>` : html`<span class="muted">(unlinked)</span>`}</td><td class="num">${j.ino}</td><td title="${fmtTimeMs(j.enqueuedAt)}">${fmtAgo(j.enqueuedAt, now)}</td><td class="num">${j.attempts}</td><td title="${fmtTimeMs(j.nextAt)}">${j.nextAt <= now ? 'due' : fmtAgo(j.nextAt, now)}</td><td class="err">${j.lastError ?? ''}</td></tr>`;
    })}</table>` : html`<p class="muted">Empty: every file is persisted.</p>`}`;
    return { title: 'Persist queue', body };
  });

  return { close: () => sampler.close() };
}
