/** `strata master` started on its own, as the README's multi-host set-up does, with its defaults. */

import t from 'tap';
import type { Test as TapTest } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CLI, runCli, tempRoot } from '../helpers/cluster';
import { waitExit } from '../helpers/multi-cluster';
import { MasterClient } from '../../src/client/master-client';

/** `strata master` on its own, stopped when `t` ends; its URL. */
async function startMaster(t: TapTest, home: string, ...extra: string[]): Promise<string> {
  const p = spawn(process.execPath, [CLI, 'master', '--home', home, '--port', '0', '--auth', 'none', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn' } });
  t.teardown(async () => {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await waitExit(p, 10_000).catch(() => p.kill('SIGKILL'));
    }
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`master did not start: ${out}`)), 30_000);
    p.stdout.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    p.on('exit', (code) => reject(new Error(`master exited with ${code}: ${out}`)));
  });
}

t.test('the default under-store directory is created: the first mkdir works', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const home = path.join(root, 'home');
  const url = await startMaster(t, home);
  t.ok(statSync(path.join(home, 'ufs')).isDirectory(), '<home>/ufs exists');
  const res = await fetch(`${url}/api/v1/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/data', mode: 0o755 }) });
  t.equal(res.status, 200, `mkdir /data: ${res.status} ${await res.text()}`);
  t.ok(existsSync(path.join(home, 'ufs', 'data')), 'and it is in the under-store');
});

t.test('a listing larger than one page comes whole, in order, each name once, and merges store changes on every page', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const ufs = path.join(root, 'ufs');
  // Pages are LIST_PAGE (1,000) entries: one directory of several pages and a part, one of exactly one page.
  const sizes: Record<string, number> = { big: 2_345, page: 1_000, small: 3 };
  for (const [dir, n] of Object.entries(sizes)) {
    mkdirSync(path.join(ufs, dir), { recursive: true });
    for (let i = 0; i < n; i++) writeFileSync(path.join(ufs, dir, `f-${i}`), i % 7 === 0 ? 'x' : '');
  }
  const url = await startMaster(t, path.join(root, 'home'), '--ufs', `file://${ufs}`);
  for (const [dir, n] of Object.entries(sizes)) {
    const res = await fetch(`${url}/api/v1/list?path=/${dir}`);
    t.equal(res.status, 200, `list /${dir}`);
    t.ok(res.headers.get('strata-changes'), 'with the change-feed header');
    const { entries } = (await res.json()) as { entries: { name: string; size: number; type: string }[] };
    const names = entries.map((e) => e.name);
    const expected = Array.from({ length: n }, (_, i) => `f-${i}`).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
    t.same(names, expected, `/${dir}: ${n} names, in byte order, each once`);
    t.ok(entries.every((e) => e.type === 'file' && e.size === (Number(e.name.slice(2)) % 7 === 0 ? 1 : 0)), 'each with its attributes');
  }
  // Changed in the store behind Strata's back, on several pages: merged again in batches.
  const big = path.join(ufs, 'big');
  for (const gone of ['f-5', 'f-1500', 'f-999']) rmSync(path.join(big, gone));
  writeFileSync(path.join(big, 'f-2000'), 'now longer');
  writeFileSync(path.join(big, 'g-new'), 'new');
  const synced = await fetch(`${url}/api/v1/sync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/big' }) });
  t.equal(synced.status, 200, `sync /big: ${synced.status}`);
  const after = ((await (await fetch(`${url}/api/v1/list?path=/big`)).json()) as { entries: { name: string; size: number }[] }).entries;
  const sizes2 = new Map(after.map((e) => [e.name, e.size]));
  t.equal(after.length, sizes.big! - 3 + 1, 'three names fewer, one more');
  t.notOk(['f-5', 'f-1500', 'f-999'].some((n) => sizes2.has(n)), 'the removed ones are gone');
  t.equal(sizes2.get('g-new'), 3, 'the new one is there');
  t.equal(sizes2.get('f-2000'), 10, 'the changed one has its new size');
  t.equal(sizes2.get('f-2001'), 0, 'the others are as they were');
  // du lists every directory below, page by page: one found on the last page of /big counts too.
  mkdirSync(path.join(big, 'zz-sub'));
  writeFileSync(path.join(big, 'zz-sub', 'a'), 'hello');
  writeFileSync(path.join(big, 'zz-sub', 'b'), '');
  await fetch(`${url}/api/v1/sync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/big' }) });
  const du = (await (await fetch(`${url}/api/v1/du?path=/big`)).json()) as { files: number; directories: number; size: number };
  t.equal(du.files, sizes.big! - 3 + 1 + 2, `du counts the files of /big and of /big/zz-sub (${JSON.stringify(du)})`);
  t.equal(du.size, [...sizes2.values()].reduce((a, b) => a + b, 0) + 5, 'and their bytes');
  // A second link, on another page and in another directory: the file counts once.
  const post = (p: string, body: object) => fetch(`${url}/api/v1/${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const a = (await (await fetch(`${url}/api/v1/stat?path=/big/zz-sub/a`)).json()) as { ino: number };
  const bigIno = ((await (await fetch(`${url}/api/v1/stat?path=/big`)).json()) as { ino: number }).ino;
  t.equal((await post('link', { ino: a.ino, newParent: bigIno, newName: 'a-link' })).status, 200, 'a hard link in /big');
  t.same((await (await fetch(`${url}/api/v1/du?path=/big`)).json()), du, 'du counts the linked file once');
  // Asked page by page (as a mount reads a directory): `limit` entries past `after`, with `next` until the last page.
  type Page = { entries: { name: string }[]; next?: string; seq?: number };
  const paged: string[] = [];
  let asks = 0;
  for (let cursor: string | undefined; ; ) {
    const res = await fetch(`${url}/api/v1/list?path=/big&limit=700${cursor !== undefined ? `&after=${encodeURIComponent(cursor)}` : ''}`);
    t.equal(res.status, 200);
    const p = (await res.json()) as Page;
    asks++;
    t.ok(p.entries.length <= 700 && typeof p.seq === 'number', 'at most the limit, with the feed seq it shows');
    paged.push(...p.entries.map((e) => e.name));
    if (p.next === undefined) break;
    t.equal(p.next, p.entries[p.entries.length - 1]!.name, 'next is the last name of a full page');
    cursor = p.next;
  }
  t.same(paged, after.map((e) => e.name).concat(['zz-sub', 'a-link']).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1)), 'the pages together are the whole directory, each name once');
  t.equal(asks, Math.ceil(paged.length / 700), 'one request per page');
  // A client's whole listing is asked for page by page: a failure midway is an error, not a cut answer.
  const listRequests = async () => Number(/^strata_http_request_seconds_count\{[^}]*route="\/api\/v1\/list"[^}]*\} (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0);
  const client = new MasterClient(url);
  t.teardown(() => client.close());
  const asked = await listRequests();
  t.same((await client.list('/big')).map((e) => e.name), paged, 'MasterClient.list: the whole directory');
  t.equal((await listRequests()) - asked, Math.ceil(paged.length / 1000), 'in one request per page of 1,000');
  for (const bad of ['limit=0', 'limit=1001', 'limit=x', 'limit=5&after=', 'after=f-1']) {
    const res = await fetch(`${url}/api/v1/list?path=/big&${bad}`);
    t.equal(res.status, 400, `${bad}: 400 (${await res.text()})`);
  }
  const missing = await fetch(`${url}/api/v1/list?path=/nope`);
  t.equal(missing.status, 404, 'a missing directory is still a 404');
  const notDir = await fetch(`${url}/api/v1/list?path=/big/f-1`);
  t.ok(notDir.status >= 400 && notDir.status < 500, `a file is still a 4xx (${notDir.status})`);
});

t.test('an explicit under-store directory must exist: a usage error at start otherwise', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // Not created: it may be a file system that is not mounted yet.
  const missing = path.join(root, 'not-mounted', 'data');
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--auth', 'none', '--ufs', `file://${missing}`]);
  t.equal(r.code, 2, 'exit code 2 (usage)');
  t.match(r.stderr, /cannot use under-store directory .*not-mounted\/data: ENOENT \(create it, or mount the file system it is on\)/, r.stderr);
  t.notOk(existsSync(missing), 'and it was not created');
});

t.test('an under-store directory that cannot be made is a usage error at start', async (t) => {
  const root = tempRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const file = path.join(root, 'a-file');
  writeFileSync(file, 'not a directory');
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--auth', 'none', '--ufs', `file://${file}/ufs`]);
  t.equal(r.code, 2, 'exit code 2 (usage)');
  t.match(r.stderr, /cannot use under-store directory .*a-file\/ufs: ENOTDIR/, r.stderr);
});
