/** The cluster token: when auth is on, where the token comes from, how it is checked. */

import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { authRequired, clientToken, isLoopback, serverToken, tokenDigest, tokenMatches } from '../../src/common/auth';
import { StrataError } from '../../src/common/errors';

t.test('auto means token exactly when bound beyond loopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopback(a), `${a} is loopback`);
  for (const a of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', 'example.com', '::ffff:10.0.0.1']) t.notOk(isLoopback(a), `${a} is not loopback`);
  t.equal(authRequired({ auth: 'auto', bind: '127.0.0.1' }), false);
  t.equal(authRequired({ auth: 'auto', bind: '0.0.0.0' }), true);
  t.equal(authRequired({ auth: 'token', bind: '127.0.0.1' }), true);
  t.equal(authRequired({ auth: 'none', bind: '0.0.0.0' }), false, 'an explicit none is obeyed (the daemon warns)');
});

t.test('the token file: generated 0600 on first start, reused, refused when open to others', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strata-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'home', 'token');
  const cfg = { auth: 'token', bind: '127.0.0.1', tokenFile, token: '' };
  t.equal(clientToken(cfg), undefined, 'a client without a token file has no token');
  t.equal(serverToken({ ...cfg, auth: 'auto' }), undefined, 'auth off: no token, no file');
  t.throws(() => statSync(tokenFile), 'and nothing was created');

  t.throws(() => serverToken(cfg), { code: 'CONFIG', message: /no cluster token at .*token: copy the master's <home>\/token there/ }, 'a worker or mount never makes up a token');
  t.throws(() => statSync(tokenFile), 'and created nothing');
  const tok = serverToken(cfg, { create: true })!;
  t.match(tok, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'mode 0600');
  t.equal(readFileSync(tokenFile, 'utf8').trim(), tok);
  t.equal(serverToken(cfg), tok, 'the next start reuses it');
  t.equal(clientToken(cfg), tok, 'clients read the same file');
  t.not(serverToken({ ...cfg, tokenFile: path.join(dir, 'other') }, { create: true }), tok, 'another home gets another token');

  t.equal(clientToken({ ...cfg, token: 'x'.repeat(20) }), 'x'.repeat(20), '$STRATA_TOKEN wins over the file');
  t.throws(() => clientToken({ ...cfg, token: 'short' }), { code: 'CONFIG' }, 'a short token is refused');
  t.throws(() => clientToken({ ...cfg, token: 'has a space in it here' }), { code: 'CONFIG' });

  chmodSync(tokenFile, 0o644);
  t.throws(() => serverToken(cfg), new StrataError('CONFIG', `token file ${tokenFile} is open to other users (mode 0644); run chmod 600 ${tokenFile}`));
  t.throws(() => clientToken(cfg), { code: 'CONFIG' }, 'clients refuse it too');
  chmodSync(tokenFile, 0o600);
  writeFileSync(tokenFile, 'tiny\n');
  t.throws(() => serverToken(cfg), { code: 'CONFIG' }, 'a token file holding a guessable token is refused');
});

t.test('tokenMatches takes exactly "Bearer <token>"', async (t) => {
  const tok = 'a'.repeat(43);
  const d = tokenDigest(tok);
  t.ok(tokenMatches(`Bearer ${tok}`, d));
  t.ok(tokenMatches(`bearer ${tok}`, d), 'the scheme is case-insensitive (RFC 7235)');
  for (const h of [undefined, '', 'Bearer', 'Bearer ', `Basic ${tok}`, `Bearer ${tok}x`, `Bearer ${tok.slice(1)}`, `Bearer ${tok} extra`, `${tok}`, 'Bearer ' + 'a'.repeat(100_000)]) {
    t.notOk(tokenMatches(h, d), `rejects ${JSON.stringify(h?.slice(0, 60))}`);
  }
  t.notOk(tokenMatches(['Bearer x'], d));
  t.notOk(tokenMatches('Bearer ', tokenDigest('')), 'an empty token never matches, even against an empty one');
});
