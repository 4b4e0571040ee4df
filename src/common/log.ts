/**
 * Structured logging for the daemons: JSON lines (pino) on stderr, so stdout stays
 * for what the CLI prints to people and scripts. On a terminal the lines are
 * rendered readably (pino-pretty) unless STRATA_LOG_FORMAT=json.
 */

import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(component: string, level: string = process.env.STRATA_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY && process.env.STRATA_LOG_FORMAT !== 'json';
  if (pretty) {
    const stream = require('pino-pretty')({ destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true });
    return pino({ level, base: { component } }, stream);
  }
  return pino({ level, base: { component, pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for library use in tests and the CLI. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
