/**
 * The master client's deadlines: a master that takes a request and never answers makes each
 * call fail with TIMEOUT (ETIMEDOUT) after its timeout, also when many calls share one deadline
 * (and with no "possible leak" warning for the listeners they add), also when the answer trickles
 * in too slowly to ever finish; `stop` ends every call at once.
 */

import t from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JsonClient } from '../../src/common/json-client';

/** A server that reads requests and answers none (a hung master), on 127.0.0.1. */
async function silentServer(t: { teardown(fn: () => unknown): void }, trickle = false): Promise<{ url: string; seen: () => number }> {
  let seen = 0;
  const held: ServerResponse[] = [];
  const timers: NodeJS.Timeout[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen++;
    req.resume();
    held.push(res);
    if (!trickle) return;
    // Headers at once, then a byte of the body every 100 ms: no gap long enough for undici's own timeouts.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(' ');
    timers.push(setInterval(() => res.write(' '), 100));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    for (const timer of timers) clearInterval(timer);
    for (const res of held) res.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen: () => seen };
}

/** Ms from now until `call` fails (undefined if it succeeds), once `stop` was aborted after `afterMs`. */
async function msUntilFailure(call: Promise<unknown>, stop: AbortController, afterMs: number): Promise<number | undefined> {
  const started = performance.now();
  const failed = call.then(
    () => undefined,
    () => performance.now() - started,
  );
  await new Promise((r) => setTimeout(r, afterMs));
  stop.abort();
  return failed;
}

t.test('calls to a master that never answers fail with TIMEOUT after their timeout', async (t) => {
  const { url, seen } = await silentServer(t);
  const client = new JsonClient(url, { timeoutMs: 400, retryForMs: 0 });
  t.teardown(() => client.close());
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const started = performance.now();
  // More calls at once than an EventTarget takes listeners before it warns (10).
  const calls = Array.from({ length: 14 }, (_, i) => client.post('/api/v1/anything', { i }).then(
    () => ({ ok: true, code: undefined as string | undefined, ms: performance.now() - started }),
    (err: { code?: string }) => ({ ok: false, code: err.code, ms: performance.now() - started }),
  ));
  const results = await Promise.all(calls);
  t.equal(seen(), 14, 'every call reached the server');
  for (const r of results) {
    t.same({ ok: r.ok, code: r.code }, { ok: false, code: 'TIMEOUT' });
    // The deadline is the timeout plus at most one slot (250 ms); generous on a loaded machine.
    t.ok(r.ms >= 390 && r.ms < 3000, `failed after ${Math.round(r.ms)} ms`);
  }
  await new Promise((r) => setImmediate(r));
  t.same(warnings.map((w) => w.message), [], 'no warning about listeners');
});

t.test('an answer that trickles in without end fails with TIMEOUT after the timeout', async (t) => {
  const { url } = await silentServer(t, true);
  const client = new JsonClient(url, { timeoutMs: 400, retryForMs: 0 });
  t.teardown(() => client.close());
  const started = performance.now();
  const err = await client.get('/api/v1/stat').then(() => undefined, (e: { code?: string }) => e);
  const ms = performance.now() - started;
  t.equal(err?.code, 'TIMEOUT');
  t.ok(ms >= 390 && ms < 3000, `failed after ${Math.round(ms)} ms`);
});

t.test('stop ends every call in flight, and calls made after it fail at once', async (t) => {
  const { url } = await silentServer(t);
  const stop = new AbortController();
  const client = new JsonClient(url, { timeoutMs: 30_000, retryForMs: 0, stop: stop.signal });
  t.teardown(() => client.close());
  const ms = await msUntilFailure(client.get('/api/v1/changes'), stop, 200);
  t.type(ms, 'number', 'the call failed');
  t.ok((ms as number) < 5000, `ended ${Math.round(ms as number)} ms after it began, not at its 30 s timeout`);
  const after = performance.now();
  await t.rejects(client.get('/api/v1/changes'));
  t.ok(performance.now() - after < 5000, 'a call after stop fails at once');
});

t.test('stop also ends a call that is retrying against a master that refuses connections', async (t) => {
  // A port nothing listens on: bound, then closed.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const stop = new AbortController();
  let retries = 0;
  const client = new JsonClient(`http://127.0.0.1:${port}`, { retryForMs: 10_000, stop: stop.signal, onRetry: () => void retries++ });
  t.teardown(() => client.close());
  let retriesAtStop = -1;
  stop.signal.addEventListener('abort', () => (retriesAtStop = retries));
  const ms = await msUntilFailure(client.get('/api/v1/changes'), stop, 300);
  t.type(ms, 'number', 'the call failed');
  t.ok((ms as number) < 3000, `ended ${Math.round(ms as number)} ms after it began, not when its 10 s of retries ran out`);
  t.ok(retriesAtStop > 0, 'it was retrying when stopped');
  t.ok(retries <= retriesAtStop + 1, `no retries after stop (${retries - retriesAtStop})`);
});

t.test('a call given a timeout of its own waits that long, beyond the client timeout', async (t) => {
  // Answers each request after 1 s (a master finishing a persist before it answers).
  const server = createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end('{"ok":true}'), 1000);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const client = new JsonClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { timeoutMs: 300, retryForMs: 0 });
  t.teardown(() => client.close());
  await t.rejects(client.post('/api/v1/persist', {}), { code: 'TIMEOUT' }, 'the client timeout (300 ms) ends a plain call');
  t.same(await client.post('/api/v1/persist', {}, undefined, undefined, { timeoutMs: 5000 }), { ok: true }, 'a call with 5 s of its own gets its answer');
});
