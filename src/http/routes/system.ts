import type { Registry } from 'prom-client';
import type { Router } from '../router.js';
import { sendJson } from '../server.js';

export interface SystemRouteDeps {
  metrics: Registry;
  /** Components whose readiness /readyz reports (broker, store, scheduler...). */
  readiness(): Record<string, boolean>;
  /** Why it is not ready, one line each (e.g. `store read only (probe): attempt to write a readonly database`). */
  reasons?(): string[];
  /** Extra facts for /readyz that do not decide readiness (cluster: this instance, the leader, the term). */
  details?(): Record<string, unknown>;
}

/**
 * `/healthz` (process up), `/readyz` (components up and the store taking writes; a 503 names each reason),
 * `/metrics` (Prometheus text). PROTOCOL.md "HTTP".
 */
export function registerSystemRoutes(router: Router, deps: SystemRouteDeps): void {
  router.get('/healthz', 'public', () => ({ status: 'ok' }));
  router.get('/readyz', 'public', ({ res }) => {
    const checks = deps.readiness();
    const ready = Object.values(checks).every(Boolean);
    const reasons = deps.reasons?.() ?? [];
    for (const [name, ok] of Object.entries(checks)) if (!ok && !reasons.some((r) => r.startsWith(`${name} `))) reasons.push(`${name} not started`);
    sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks, ...(ready ? {} : { reasons }), ...deps.details?.() });
  });
  router.get('/metrics', 'public', async ({ res }) => {
    const body = await deps.metrics.metrics();
    res.writeHead(200, { 'content-type': deps.metrics.contentType });
    res.end(body);
  });
}
