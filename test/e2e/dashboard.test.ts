/**
 * The master's web dashboard in a real browser: an in-process master and worker
 * (two tiers, no FUSE), files written and read through the client library, then
 * Debian's headless Chromium (driven by puppeteer-core) loads the overview, mount
 * table, namespace browser, a file page and the persist queue, and checks what a
 * person would see. Screenshots go to tmp/test-artefacts/dashboard/.
 * Skipped, saying why, when no Chromium is installed.
 */

import t from 'tap';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { REPO, tempRoot } from '../helpers/cluster';
import { startS3Server, type RunningS3Server } from '../../scripts/s3-server';
import { startMaster, RunningMaster } from '../../src/master/server';
import { startWorker, RunningWorker } from '../../src/worker/server';
import { StrataFileSystem } from '../../src/client/file-system';
import { silentLogger } from '../../src/common/log';
import { escapeHtml, parseBlockReads } from '../../src/master/dashboard';
import type { Browser, Page } from 'puppeteer-core';

const KiB = 1024;
const CHROMIUM = [process.env.STRATA_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
const HAVE_PUPPETEER = (() => {
  try {
    require.resolve('puppeteer-core');
    return true;
  } catch {
    return false;
  }
})();
const SKIP = !CHROMIUM ? 'no Chromium found (apt-get install chromium, or set STRATA_CHROMIUM)' : !HAVE_PUPPETEER ? 'puppeteer-core is not installed (npm install)' : false;
const ARTEFACTS = path.join(REPO, 'tmp', 'test-artefacts', 'dashboard');
/** A name that breaks a page that does not escape it. */
const NASTY = `<b>&"x'.txt`;

t.test('escapeHtml and the worker metrics parser', async (t) => {
  t.equal(escapeHtml(`<b>&"x'`), '&lt;b&gt;&amp;&quot;x&#39;');
  const text = [
    '# HELP strata_worker_block_reads_total Block range reads',
    '# TYPE strata_worker_block_reads_total counter',
    'strata_worker_block_reads_total{cache="hit",component="worker"} 7',
    'strata_worker_block_reads_total{cache="miss",component="worker"} 3',
    'strata_worker_block_reads_totally{cache="hit"} 99',
  ].join('\n');
  t.same(parseBlockReads(text), { hits: 7, misses: 3 });
  t.equal(parseBlockReads('strata_other 1\n'), undefined, 'no counters: no sample');
});

/** Without a browser: every page answers 200 with its parts, so the store calls behind them run wherever Chromium is missing. */
t.test('dashboard pages and master gauges over plain HTTP', async (t) => {
  const root = tempRoot('strata-dashboard-http-');
  const log = silentLogger();
  const ufsDir = path.join(root, 'ufs');
  mkdirSync(ufsDir, { recursive: true });
  const master = await startMaster({ home: path.join(root, 'master'), port: 0, ufsUri: `file://${ufsDir}`, blockSize: 64 * KiB, persistInitialWaitMs: 3600_000, logger: log, dashboard: { sampleIntervalMs: 250 } });
  let worker: RunningWorker | undefined;
  let client: StrataFileSystem | undefined;
  t.teardown(async () => {
    await client?.close();
    await worker?.close();
    await master.close();
    rmSync(root, { recursive: true, force: true });
  });
  worker = await startWorker({
    masterUrl: master.url,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [{ name: 'SSD', dir: path.join(root, 'tier-ssd'), capacityBytes: 16 * 1024 * KiB }],
    pageSize: 16 * KiB,
    heartbeatIntervalMs: 200,
    scrubBytesPerSec: 0,
    logger: log,
  });
  client = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, 'staging'), logger: log, shortCircuit: false, writeType: 'ASYNC_THROUGH' });
  await client.init();
  await client.mkdir('/data', 0o755);
  await client.writeFile(`/data/${NASTY}`, randomBytes(100 * KiB), 100 * KiB);
  await client.writeFile('/data/queued.bin', randomBytes(KiB), KiB);
  await client.unlink('/data/queued.bin'); // queued, then unlinked: its inode and queue entry are gone
  const page = async (p: string) => {
    const r = await fetch(`${master.url}${p}`);
    return { status: r.status, text: await r.text() };
  };
  const overview = await page('/');
  t.equal(overview.status, 200, 'overview');
  t.match(overview.text, /id="inodes"><div class="v">3</, 'the inode count: the root, /data and the file left');
  t.match(overview.text, /id="live-workers"><div class="v">1</);
  t.equal((await page('/mounts')).status, 200, 'mounts');
  const dir = await page('/browse?path=/data');
  t.equal(dir.status, 200, 'a directory');
  t.match(dir.text, escapeHtml(NASTY), 'its entries, escaped');
  t.notMatch(dir.text, NASTY, 'never raw');
  const file = await page(`/browse?path=${encodeURIComponent(`/data/${NASTY}`)}`);
  t.equal(file.status, 200, 'a file');
  t.match(file.text, /id="blocks"/, 'with its blocks');
  t.match(file.text, /queued/, 'and its place in the persist queue');
  const queue = await page('/persist-queue');
  t.equal(queue.status, 200, 'the persist queue');
  t.match(queue.text, escapeHtml(`/data/${NASTY}`));
  t.equal((await page('/browse?path=/nope')).status, 404, 'a missing path');
  const metrics = await (await fetch(`${master.url}/metrics`)).text();
  t.match(metrics, /^strata_master_inodes(\{[^}]*\})? 3$/m, 'gauges collected asynchronously');
  t.match(metrics, /^strata_master_workers\{[^}]*state="live"[^}]*\} 1$/m);
  t.match(metrics, /^strata_master_persist_queue_length(\{[^}]*\})? 1$/m);
  t.match(metrics, /^strata_master_store_changes(\{[^}]*\})? 0$/m, 'changes acting in a store: none now');

  // A directory of several listing pages (1,000) and browser pages (500), found in the store.
  mkdirSync(path.join(ufsDir, 'wide'));
  for (let i = 0; i < 1203; i++) writeFileSync(path.join(ufsDir, 'wide', `w-${String(i).padStart(4, '0')}`), '');
  const last = await page('/browse?path=/wide&offset=1000');
  t.equal(last.status, 200, 'a wide directory, its last page');
  t.match(last.text, /Entries 1001–1203 of 1203\./, 'counted whole');
  t.ok(last.text.includes('w-1000') && last.text.includes('w-1202') && !last.text.includes('w-0999'), 'the entries of that page only');
  const middle = await page('/browse?path=/wide&offset=500');
  t.match(middle.text, /Entries 501–1000 of 1203\./);
  t.ok(middle.text.includes('w-0500') && middle.text.includes('w-0999') && !middle.text.includes('w-1000') && !middle.text.includes('w-0499'), 'a page that ends where a listing page does');
});

t.test('dashboard in headless Chromium', { skip: SKIP }, async (t) => {
  const puppeteer = await import('puppeteer-core');
  mkdirSync(ARTEFACTS, { recursive: true });
  const root = tempRoot('strata-dashboard-');
  const log = silentLogger();
  let master: RunningMaster | undefined;
  let worker: RunningWorker | undefined;
  const clients: StrataFileSystem[] = [];
  let browser: Browser | undefined;
  let s3: RunningS3Server | undefined;
  // In reverse order of starting; each step runs even when an earlier one failed.
  t.teardown(async () => {
    const steps: (() => Promise<unknown> | undefined)[] = [
      // A browser that does not close within 10 s is killed below.
      () => browser && Promise.race([browser.close(), new Promise((r) => setTimeout(r, 10_000).unref())]),
      ...clients.map((c) => () => c.close()),
      () => worker?.close(),
      () => master?.close(),
      () => s3?.close(),
    ];
    for (const step of steps) {
      try {
        await step();
      } catch {
        // keep tearing down
      }
    }
    const proc = browser?.process();
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  const ufsDir = path.join(root, 'ufs');
  mkdirSync(ufsDir, { recursive: true });
  // A second store with a secret among its options, for the mount table's masking.
  delete process.env.AWS_CA_BUNDLE;
  s3 = await startS3Server({ dir: path.join(root, 's3'), buckets: ['archive'] });
  // s3rver checks signatures: a key pair whose secret the page must not show.
  (require('s3rver/lib/models/account') as { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } }).DUMMY_ACCOUNT.createKeyPair('DASHBOARDTEST', 'hunter2-do-not-show');
  master = await startMaster({
    home: path.join(root, 'master'),
    port: 0,
    ufsUri: `file://${ufsDir}`,
    blockSize: 64 * KiB,
    syncIntervalMs: 0,
    workerTimeoutMs: 2000,
    // ASYNC_THROUGH files stay queued for the whole test.
    persistInitialWaitMs: 3600_000,
    logger: log,
    dashboard: { sampleIntervalMs: 250 },
  });
  worker = await startWorker({
    masterUrl: master.url,
    home: path.join(root, 'worker'),
    port: 0,
    tiers: [
      { name: 'MEM', dir: path.join(root, 'tier-mem'), capacityBytes: 4 * 1024 * KiB },
      { name: 'SSD', dir: path.join(root, 'tier-ssd'), capacityBytes: 16 * 1024 * KiB },
    ],
    pageSize: 16 * KiB,
    heartbeatIntervalMs: 200,
    scrubBytesPerSec: 0,
    logger: log,
  });
  const api = (p: string, init?: RequestInit) => fetch(`${master!.url}/api/v1${p}`, init);
  const post = async (p: string, body: unknown) => {
    const r = await api(p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    t.equal(r.status, 200, `POST ${p}`, { body: r.status === 200 ? undefined : await r.text() });
  };
  await post('/mount', {
    path: '/archive',
    uri: 's3://archive/old',
    options: { 's3.endpoint': s3.endpoint, 's3.pathStyle': 'true', 's3.region': 'us-east-1', 's3.accessKeyId': 'DASHBOARDTEST', 's3.secretAccessKey': 'hunter2-do-not-show', readonly: 'true' },
  });

  // Reads go through the worker (not short-circuit) so they count as hits and misses.
  const client = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, 'staging'), logger: log, shortCircuit: false });
  clients.push(client);
  await client.init();
  const asyncClient = new StrataFileSystem({ masterUrl: master.url, stagingDir: path.join(root, 'staging-async'), logger: log, shortCircuit: false, writeType: 'ASYNC_THROUGH' });
  clients.push(asyncClient);
  await asyncClient.init();
  await client.mkdir('/data', 0o755);
  await client.mkdir('/data/sub dir', 0o755);
  const big = randomBytes(200 * KiB); // 4 blocks of 64 KiB
  await client.writeFile(`/data/${NASTY}`, big, big.length);
  await client.writeFile('/data/small.txt', Buffer.from('hello\n'), 6);
  await asyncClient.writeFile('/data/later.bin', randomBytes(10 * KiB), 10 * KiB);
  // Drop the cached copies of one file so its first read misses and the next hits.
  await post('/free', { path: `/data/${NASTY}` });
  // The deletions reach the worker with its next heartbeats.
  const cachedOnWorker = async () => {
    const text = await (await fetch(`${worker!.url}/metrics`)).text();
    return [...text.matchAll(/^strata_worker_cache_used_bytes\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };
  for (const deadline = Date.now() + 10_000; (await cachedOnWorker()) > 100 * KiB && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
  t.ok((await cachedOnWorker()) < 100 * KiB, 'the freed file left the worker');
  const readAll = async (p: string) => {
    const r = await client.openReader(p);
    return r.readBuffer(0, r.size);
  };
  // Small reads of cold pages miss; whole reads after them mostly hit. A sample between each.
  const cold = await client.openReader(`/data/${NASTY}`);
  for (const at of [0, 70 * KiB, 140 * KiB]) await cold.readBuffer(at, 4 * KiB);
  await new Promise((r) => setTimeout(r, 400));
  t.ok((await readAll(`/data/${NASTY}`)).equals(big), 'file reads back');
  await new Promise((r) => setTimeout(r, 400));
  await readAll(`/data/${NASTY}`);
  // Registered after the I/O so no write or read is routed to it.
  // A worker (nothing listens at its address) that registers and then goes silent: the overview shows it lost.
  await post('/workers/register', { uuid: 'deadbeef-0000-0000', address: 'http://127.0.0.1:9', host: 'ghost', tiers: [{ name: 'HDD', dir: '/nowhere', capacityBytes: 1024 * KiB, usedBytes: 0 }], pageSize: 16 * KiB, capacityBytes: 1024 * KiB, usedBytes: 0, blocks: [] });

  const executablePath = CHROMIUM!;
  browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const page: Page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const base = master.url;
  const shot = (name: string) => page.screenshot({ path: path.join(ARTEFACTS, `${name}.png`) as `${string}.png`, fullPage: true });
  // lib has no DOM types: the callbacks run in the page.
  type El = { innerText: string };
  const text = (sel: string) => page.$eval(sel, (e) => (e as unknown as El).innerText);
  const texts = (sel: string) => page.$$eval(sel, (es) => es.map((e) => (e as unknown as El).innerText));
  const open = async (p: string) => {
    const res = await page.goto(base + p, { waitUntil: 'load' });
    return res?.status();
  };

  await t.test('overview: workers, tiers, counts, hit ratio', async (t) => {
    // Wait for the master to see the block copies and the ghost worker's timeout, and for a sample with reads.
    const deadline = Date.now() + 15_000;
    for (;;) {
      t.equal(await open('/'), 200);
      const ready = (await text('#lost-workers .v')) === '1' && (await text('#hit-ratio .v')) !== '—';
      if (ready || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    t.equal(await text('#live-workers .v'), '1', 'one live worker');
    t.equal(await text('#lost-workers .v'), '1', 'one lost worker');
    t.equal(await text('#persist-queue-length .v'), '1', 'the ASYNC_THROUGH file is queued');
    t.match(await text('#hit-ratio .v'), /^\d+(\.\d)?%$/, 'a hit ratio is shown');
    const workers = await text('#workers');
    t.match(workers, /MEM/, 'tier MEM listed');
    t.match(workers, /SSD/, 'tier SSD listed');
    t.match(workers, /live/);
    t.match(workers, /lost/);
    t.match(workers, worker!.url.replace(/^http:\/\//, ''), 'worker address shown');
    t.match(await text('#tiers'), /MEM[\s\S]*SSD/, 'tiers aggregated over live workers');
    const points = await page.$$eval('#hit-ratio-chart circle', (es) => es.length);
    t.ok(points >= 1, `hit ratio chart has points (${points})`);
    t.ok(await page.$('header a[href="/metrics"]'), 'links to /metrics');
    await shot('overview');
  });

  await t.test('mount table masks secrets', async (t) => {
    t.equal(await open('/mounts'), 200);
    const mounts = await text('#mounts');
    t.match(mounts, '/archive');
    t.match(mounts, 's3://archive/old');
    t.match(mounts, 's3.secretAccessKey=******');
    t.notMatch(await page.content(), 'hunter2', 'the secret never reaches the page');
    await shot('mounts');
  });

  await t.test('namespace browser lists the directory with names shown literally', async (t) => {
    t.equal(await open('/browse?path=/data'), 200);
    const names = await texts('#listing td.name a');
    t.same(names.sort(), [NASTY, 'later.bin', 'small.txt', 'sub dir/'].sort(), 'every entry, the odd name literally');
    t.equal(await page.$('#listing td.name b'), null, 'no markup injected by a file name');
    const rows = await page.$$eval('#listing tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td as unknown as El).innerText)));
    const nasty = rows.find((r) => r[0] === NASTY);
    t.ok(nasty, 'row of the odd name');
    t.equal(nasty?.[2], '200 KiB');
    t.equal(nasty?.[4], 'yes', 'persisted (CACHE_THROUGH)');
    t.equal(nasty?.[5], '100%', 'fully cached after the read');
    t.equal(rows.find((r) => r[0] === 'later.bin')?.[4], 'no', 'ASYNC_THROUGH file not persisted yet');
    const html = await (await fetch(`${base}/browse?path=/data`)).text();
    t.match(html, '&lt;b&gt;&amp;&quot;x&#39;.txt', 'escaped in the HTML source');
    t.notMatch(html, NASTY, 'never raw in the HTML source');
    await shot('browse');
    // Into the subdirectory and back up through the breadcrumbs.
    await Promise.all([page.waitForNavigation(), page.click('#listing td.name a[href*="sub%20dir"]')]);
    t.match(await text('h1'), 'Directory /data/sub dir');
    t.match(await text('#crumbs'), 'data');
  });

  await t.test('file page: attributes and block locations', async (t) => {
    await open('/browse?path=/data');
    const link = await page.$$eval('#listing td.name a', (as, name) => as.find((a) => a.textContent === name)?.getAttribute('href'), NASTY);
    t.ok(link, 'the listing links to the file');
    await Promise.all([page.waitForNavigation(), page.click(`#listing td.name a[href="${link}"]`)]);
    t.equal(await text('h1'), `File /data/${NASTY}`, 'title shows the name literally');
    const attrs = await text('#attrs');
    t.match(attrs, /persisted\s+yes/);
    t.match(attrs, /pinned\s+no/);
    t.match(attrs, /TTL\s+none/);
    t.match(attrs, /size\s+200 KiB \(204800 bytes\)/);
    const locations = await texts('#blocks td.locations');
    t.equal(locations.length, 4, 'four blocks');
    const at = `worker ${worker!.workerId} ${worker!.url} · `;
    for (const l of locations) t.ok(l.startsWith(at) && /· (MEM|SSD) · \d+(\.\d+)? KiB$/.test(l), 'worker, tier and bytes', { found: l });
    await shot('file');

    t.equal(await open('/browse?path=/data/later.bin'), 200);
    t.match(await text('#attrs'), /persisted\s+no \(queued/, 'queued file says so');
  });

  await t.test('persist queue page', async (t) => {
    t.equal(await open('/persist-queue'), 200);
    t.match(await text('#persist-queue'), '/data/later.bin');
    await shot('persist-queue');
  });

  await t.test('bad paths get error pages', async (t) => {
    t.equal(await open('/browse?path=/no/such/file'), 404);
    t.match(await text('h1'), '404 Not found');
    t.equal(await open(`/browse?path=${encodeURIComponent(`/data/${NASTY}/below`)}`), 404, 'a path through a file');
    t.equal(await open('/browse?path=relative'), 400);
    t.equal(await open('/browse?path=/a/../b'), 400);
    t.equal(await open('/browse?path=/data&offset=-1'), 400);
    t.equal(await open('/browse?path=/a&path=/b'), 400);
    t.match(await text('h1'), '400 Bad request');
    await shot('error');
    t.equal(await open('/'), 200, 'the master still serves after bad requests');
  });
});
