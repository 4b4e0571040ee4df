/**
 * Test helper: an HTTP proxy on loopback in front of an S3-protocol server (s3rver)
 * that injects under-store faults into the requests a predicate picks: answers 500
 * (S3's InternalError), stalls (never answers), resets the connection, cuts the
 * connection in the middle of the answer's body, delays the request (then forwards
 * it, so a test can act while an upload is in flight), or loses the answer (forwards the
 * request, lets the store act on it, and resets the connection instead of answering). It counts
 * what it faulted, so tests can check that retries are bounded.
 */

import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode = 'pass' | '500' | 'stall' | 'reset' | 'cut' | 'delay' | 'lose';

export interface FaultProxy {
  endpoint: string;
  /** Current fault; `pass` forwards everything. */
  mode: FaultMode;
  /** Which requests the fault applies to (others pass); default all. */
  match: (req: http.IncomingMessage) => boolean;
  /** How long `delay` holds a request before forwarding it (ms). */
  delayMs: number;
  /** Requests faulted since the last reset, by method. */
  faulted: Record<string, number>;
  /** Answers `cut` actually cut (their body was longer than the cut point) since the last reset. */
  cuts: number;
  resetCounts(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string, t: { teardown(fn: () => unknown): void }): Promise<FaultProxy> {
  const up = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = {
    endpoint: '',
    mode: 'pass',
    match: () => true,
    delayMs: 1000,
    faulted: {},
    cuts: 0,
    resetCounts() {
      proxy.faulted = {};
      proxy.cuts = 0;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  /** Forwards the request; with `cutAfter`, resets the connection once that many bytes of the answer's body went out. */
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, cutAfter?: number) => {
    const out = http.request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode!, upRes.headers);
        if (cutAfter === undefined) {
          upRes.pipe(res);
          return;
        }
        let sent = 0;
        upRes.on('end', () => {
          if (sent < cutAfter) res.end(); // shorter than the cut point: passed whole
        });
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= cutAfter) return;
          const part = chunk.subarray(0, cutAfter - sent);
          sent += part.length;
          res.write(part);
          if (sent >= cutAfter) {
            proxy.cuts++;
            upRes.destroy();
            // Let the bytes leave, then drop the connection as a failing peer would.
            setTimeout(() => req.socket.resetAndDestroy(), 20);
          }
        });
      },
    );
    out.on('error', () => req.socket.destroy());
    req.pipe(out);
  };
  const server = http.createServer((req, res) => {
    if (proxy.mode !== 'pass' && proxy.match(req)) {
      proxy.faulted[req.method!] = (proxy.faulted[req.method!] ?? 0) + 1;
      if (proxy.mode === 'delay') {
        // The body waits in the request stream until it is forwarded.
        setTimeout(() => forward(req, res), proxy.delayMs);
      } else if (proxy.mode === '500') {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/xml', connection: 'close' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected by the fault proxy</Message></Error>');
      } else if (proxy.mode === 'reset') {
        req.socket.resetAndDestroy();
      } else if (proxy.mode === 'lose') {
        const out = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
          upRes.resume();
          upRes.on('end', () => req.socket.resetAndDestroy());
        });
        out.on('error', () => req.socket.destroy());
        req.pipe(out);
      } else if (proxy.mode === 'cut') {
        forward(req, res, 64 * 1024);
      } else {
        req.resume(); // stall: read the request, never answer
      }
      return;
    }
    forward(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(() => proxy.close());
  return proxy;
}
