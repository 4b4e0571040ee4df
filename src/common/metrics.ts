/**
 * Prometheus metrics (prom-client): one registry per daemon with the process
 * defaults (RSS, CPU, event-loop lag, GC) and a request histogram per route; each
 * component adds its own counters and gauges. Served as text at GET /metrics.
 */

import { Registry, Histogram, collectDefaultMetrics } from 'prom-client';

export interface DaemonMetrics {
  registry: Registry;
  /** Seconds per HTTP request, by route, method and status. */
  requestSeconds: Histogram<'route' | 'method' | 'status'>;
}

export function createDaemonMetrics(component: string): DaemonMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  // The event-loop delay monitor samples on a timer: at prom-client's default 10 ms it woke every idle
  // daemon 100 times a second. 100 ms still catches any stall worth a metric.
  collectDefaultMetrics({ register: registry, prefix: 'strata_', eventLoopMonitoringPrecision: 100 });
  const requestSeconds = new Histogram({
    name: 'strata_http_request_seconds',
    help: 'HTTP request latency by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  return { registry, requestSeconds };
}
