/**
 * Access control: with `--auth token` every API of master, worker and the mount's
 * metrics answers 401 without the cluster token, saying nothing more, while the
 * parts of the cluster (worker -> master, mount -> both, master -> worker, CLI)
 * present it and work.
 */

import t from 'tap';
import { promises as fsp, statSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { request } from 'undici';
import { runCli, startLocal, tempRoot, isMounted } from '../helpers/cluster';

const UNAUTH = { code: 'UNAUTHENTICATED', message: 'authentication required' };

t.test('a cluster started with --auth token', async (t) => {
  const c = await startLocal(t, { args: ['--auth', 'token', '--write-type', 'MUST_CACHE'] });
  const tokenFile = path.join(c.home, 'token');
  const st = statSync(tokenFile);
  t.equal(st.mode & 0o777, 0o600, 'the token file was generated with mode 0600');
  const token = readFileSync(tokenFile, 'utf8').trim();
  t.ok(token.length >= 43, 'holds a 256-bit token');
  const metricsUrl = /client metrics (http:\/\/\S+)\)/.exec(c.stdout())?.[1];
  t.ok(metricsUrl, 'the mount serves metrics');

  const call = async (method: string, url: string, headers: Record<string, string> = {}, body?: string) => {
    const res = await request(url, { method: method as 'GET', headers, body, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const text = await res.body.text();
    return { status: res.statusCode, text, headers: res.headers };
  };

  // The mount, writing and reading, proves mount -> master, mount -> worker and worker -> master carry the token.
  const data = Buffer.from('secret bytes\n'.repeat(1000));
  await fsp.writeFile(path.join(c.mnt, 'f.txt'), data);
  t.ok((await fsp.readFile(path.join(c.mnt, 'f.txt'))).equals(data), 'the mount writes and reads with auth on');

  await t.test('no token, a wrong one or a malformed header: 401 and nothing else', async (t) => {
    const api = `${c.masterUrl}/api/v1`;
    const targets: [string, string, string?][] = [
      ['GET', `${api}/stat?path=/f.txt`],
      ['GET', `${api}/list?path=/`],
      ['POST', `${api}/mkdir`, JSON.stringify({ path: '/intruder' })],
      ['POST', `${api}/workers/register`, JSON.stringify({ uuid: '00000000-0000', address: 'http://127.0.0.1:1' })],
      ['GET', `${api}/workers`],
      ['GET', `${c.masterUrl}/`],
      ['GET', `${c.masterUrl}/metrics`],
      ['GET', `${c.masterUrl}/no/such/route`],
      ['DELETE', `${api}/stat`],
      ['GET', `${c.workerUrl}/blocks/1?offset=0&length=10`],
      ['POST', `${c.workerUrl}/blocks/1/load`],
      ['PUT', `${c.workerUrl}/files/2?container=1&blockSize=4096&size=3`, 'abc'],
      ['POST', `${c.workerUrl}/persist/2?container=1&blocks=1`],
      ['GET', `${c.workerUrl}/metrics`],
      ['GET', `${c.workerUrl}/nope`],
      ['GET', metricsUrl!],
    ];
    const badHeaders: [string, Record<string, string>][] = [
      ['no header', {}],
      ['a wrong token', { authorization: `Bearer ${'x'.repeat(token.length)}` }],
      ['the token with one character changed', { authorization: `Bearer ${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}` }],
      ['a prefix of the token', { authorization: `Bearer ${token.slice(0, 10)}` }],
      ['Basic scheme', { authorization: `Basic ${Buffer.from(`strata:${token}`).toString('base64')}` }],
      ['the token without a scheme', { authorization: token }],
      ['the token as a query parameter is not a credential', {}],
    ];
    for (const [method, url, body] of targets) {
      for (const [what, headers] of badHeaders) {
        const u = what.includes('query') ? `${url}${url.includes('?') ? '&' : '?'}token=${token}` : url;
        const r = await call(method, u, body ? { ...headers, 'content-type': 'application/json' } : headers, body);
        t.equal(r.status, 401, `${method} ${new URL(url).pathname} with ${what} -> 401`);
        t.same(JSON.parse(r.text), UNAUTH, 'the body says only that authentication is required');
        t.equal(r.headers['www-authenticate'], 'Bearer realm="strata"');
      }
    }
    // Nothing of the change feed either (a header once told its counter).
    const refused = await call('POST', `${api}/mkdir`, { 'content-type': 'application/json' }, JSON.stringify({ path: '/intruder' }));
    t.equal(refused.headers['strata-changes'], undefined, 'a refused change carries no change-feed header');
    // A body announced as huge and trickled in: the refusal ends the connection, so it holds no slot.
    for (const url of [c.masterUrl, c.workerUrl]) {
      const { host, port } = new URL(url);
      const closed = await new Promise<string>((resolve) => {
        const s = net.connect(Number(port), host.replace(/:\d+$/, ''), () => s.write(`PUT /files/1?container=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nx`));
        let got = '';
        s.on('data', (d) => (got += d));
        const trickle = setInterval(() => s.writable && s.write('a'), 100);
        const timer = setTimeout(() => (clearInterval(trickle), s.destroy(), resolve(`still open: ${got.split('\r\n')[0]}`)), 3000);
        s.on('close', () => (clearInterval(trickle), clearTimeout(timer), resolve(got.split('\r\n')[0] ?? '')));
        s.on('error', () => undefined);
      });
      t.equal(closed, 'HTTP/1.1 401 Unauthorized', `${url === c.masterUrl ? 'master' : 'worker'}: a refused request with a trickling body has its connection closed`);
    }
    for (const url of [c.masterUrl, c.workerUrl]) {
      const h = await call('GET', `${url}/healthz`);
      t.equal(h.status, 200, 'health checks need no token');
      t.same(JSON.parse(h.text), { ok: true }, 'and tell nothing but liveness');
    }
    const ok = await call('GET', `${api}/stat?path=/f.txt`, { authorization: `Bearer ${token}` });
    t.equal(ok.status, 200, 'the token opens the API');
    const okWorker = await call('GET', `${c.workerUrl}/metrics`, { authorization: `Bearer ${token}` });
    t.equal(okWorker.status, 200, 'and the worker');
    t.same(await fsp.readdir(c.mnt), ['f.txt'], 'no request without the token changed the namespace');
  });

  await t.test('the CLI presents the token from the home dir, --token-file or $STRATA_TOKEN', async (t) => {
    const elsewhere = tempRoot('strata-nohome-');
    t.teardown(() => fsp.rm(elsewhere, { recursive: true, force: true }));
    const env = { STRATA_MASTER: c.masterUrl, STRATA_HOME: path.join(elsewhere, 'h') };
    const none = await runCli(['fs', 'ls', '/'], env);
    t.equal(none.code, 1, 'without a token the command fails');
    t.match(none.stderr, /^strata: \/: authentication required: the cluster token is missing or wrong/, 'and says why in one line');
    t.equal(none.stderr.trim().split('\n').length, 1);
    const wrong = await runCli(['fs', 'ls', '/'], { ...env, STRATA_TOKEN: 'w'.repeat(43) });
    t.equal(wrong.code, 1, 'a wrong $STRATA_TOKEN fails the same way');
    t.match(wrong.stderr, /authentication required/);
    for (const [what, args, extra] of [
      ['the home dir', [], { STRATA_HOME: c.home }],
      ['--token-file', ['--token-file', tokenFile], {}],
      ['$STRATA_TOKEN', [], { STRATA_TOKEN: token }],
    ] as [string, string[], Record<string, string>][]) {
      const r = await runCli(['fs', 'ls', ...args, '/'], { ...env, ...extra });
      t.equal(r.code, 0, `with the token from ${what}`, { stderr: r.stderr });
      t.match(r.stdout, /f\.txt/);
    }
    // MUST_CACHE: the bytes are only on the worker until persist, which the master orders the worker to do.
    await t.rejects(fsp.stat(path.join(c.ufsDir, 'f.txt')), { code: 'ENOENT' }, 'not in the under-store yet');
    const persist = await runCli(['fs', 'persist', '/f.txt'], { ...env, STRATA_HOME: c.home });
    t.equal(persist.code, 0, 'persist: the master calls the worker with the token', { stderr: persist.stderr });
    t.ok((await fsp.readFile(path.join(c.ufsDir, 'f.txt'))).equals(data), 'and the bytes reached the under-store');
    const load = await runCli(['fs', 'load', '/f.txt'], { ...env, STRATA_HOME: c.home });
    t.equal(load.code, 0, 'load: the CLI calls the worker with the token', { stderr: load.stderr });
  });

  t.equal(await c.stop(), 0, 'stops cleanly');
  t.notOk(isMounted(c.mnt), 'unmounted');
});

t.test('a daemon refuses a token file that other users can read', async (t) => {
  const root = tempRoot('strata-loose-');
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const tokenFile = path.join(root, 'token');
  await fsp.writeFile(tokenFile, 'k'.repeat(43) + '\n', { mode: 0o644 });
  await fsp.chmod(tokenFile, 0o644);
  const r = await runCli(['master', '--home', path.join(root, 'home'), '--port', '0', '--auth', 'token', '--token-file', tokenFile]);
  t.equal(r.code, 2, 'exit code 2');
  t.match(r.stderr, /token file .*token is open to other users \(mode 0644\); run chmod 600/);
  t.equal(await fsp.readFile(tokenFile, 'utf8'), 'k'.repeat(43) + '\n', 'the file is left alone');

  const home = path.join(root, 'worker-home');
  const w = await runCli(['worker', '--home', home, '--port', '0', '--auth', 'token', '--master', 'http://127.0.0.1:9']);
  t.equal(w.code, 2, 'a worker with auth on and no token stops with exit code 2');
  t.match(w.stderr, /no cluster token at .*worker-home\/token: copy the master's <home>\/token there/);
  await t.rejects(fsp.stat(path.join(home, 'token')), { code: 'ENOENT' }, 'and made none up');
});
