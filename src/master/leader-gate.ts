/**
 * The master's side of leader election, as one hook on its HTTP server: a standby
 * answers every request with 503 NOT_LEADER and the leader's address, except
 * liveness (/healthz), /metrics and `GET /api/v1/leader`. Without an election the
 * master leads from the start, as a single master always has.
 */

import type { FastifyInstance } from 'fastify';
import { StrataError } from '../common/errors';
import type { Logger } from '../common/log';
import { LEADER_HEADER, LEADER_TERM_HEADER, LeaderResponse, MASTER_API } from '../common/protocol';
import { LeaderElection } from './leadership';

/** How a master takes part in leader election (absent: it always leads). */
export interface LeaderElectionConfig {
  /** The PostgreSQL database holding the lease; `metastore`: the master's postgres:// metastore (its writes are then fenced by the lease). */
  url: string;
  /** Lease length (ms). Default 6000; see leadership.ts for what it bounds. */
  leaseMs?: number;
  /** The URL clients are sent to while this master leads. Default: the URL it listens on. */
  advertiseUrl?: string;
}

/** What the gate answers without asking anyone, for every path. */
const ALWAYS_SERVED = new Set(['/healthz', '/metrics', `${MASTER_API}/leader`]);

export interface LeaderGate {
  /** True while this master leads (always true without an election). */
  isLeader(): boolean;
  /** How long it leads for sure without another renew (ms); Infinity without an election. */
  msLeft(): number;
  /** Begins contending (after the server listens, so the address is known). */
  start(listenUrl: string): void;
  /** The lease a fenced store's writes require while this master leads; undefined otherwise (or without an election). */
  fence(): { name: string; holder: string; term: number } | undefined;
  /** Steps down and hands the lease over at once. */
  close(): Promise<void>;
}

export interface LeaderGateHooks {
  /** Runs when this master starts to lead: start the jobs only a leader runs. */
  onElected(): void;
  /** Runs when it stops leading. */
  onDemoted(): void;
}

export function registerLeaderGate(app: FastifyInstance, config: LeaderElectionConfig | undefined, log: Logger, hooks: LeaderGateHooks): LeaderGate {
  let election: LeaderElection | undefined;
  let self = '';
  const isLeader = (): boolean => (config ? election?.isLeader() === true : true);

  app.get(`${MASTER_API}/leader`, async (): Promise<LeaderResponse> => {
    if (!election) return { leader: self, term: 0, self, role: 'leader' };
    const l = election.leader();
    return { leader: l?.address ?? null, term: l?.term ?? 0, self, role: election.isLeader() ? 'leader' : 'standby' };
  });

  if (config) {
    app.addHook('onRequest', async (req, reply) => {
      if (ALWAYS_SERVED.has(req.url.split('?')[0]!) || isLeader()) return;
      const leader = election?.leader()?.address;
      const err = new StrataError('NOT_LEADER', leader ? `this master stands by; the leader is ${leader}` : 'this master stands by; no leader is known yet');
      if (leader) void reply.header(LEADER_HEADER, leader);
      return reply.status(err.status).send({ ...err.toJSON(), leader: leader ?? null });
    });
    app.addHook('onSend', async (_req, reply, payload) => {
      const term = election?.fence;
      if (term !== undefined) void reply.header(LEADER_TERM_HEADER, String(term));
      return payload;
    });
  }

  return {
    isLeader,
    msLeft: () => (config ? (election?.msLeft() ?? 0) : Infinity),
    start(listenUrl) {
      self = config?.advertiseUrl || listenUrl;
      if (!config) {
        hooks.onElected();
        return;
      }
      election = new LeaderElection({ url: config.url, address: self, leaseMs: config.leaseMs, logger: log });
      election.on('elected', () => hooks.onElected());
      election.on('demoted', () => hooks.onDemoted());
      election.start();
    },
    fence() {
      const term = election?.fence;
      return election && term !== undefined ? { name: election.name, holder: election.holderId, term } : undefined;
    },
    async close() {
      await election?.close();
    },
  };
}
