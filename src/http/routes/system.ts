import type { Registry } from 'prom-client';
import type { Router } from '../router.js';
import { sendJson } from '../server.js';

export interface SystemRouteDeps {
  metrics: Registry;
  /** Components whose readiness /readyz reports (broker, store, scheduler...). */
  readiness(): Record<string, boolean>;
}

/** `/healthz` (process up), `/readyz` (components up), `/metrics` (Prometheus text). PROTOCOL.md "HTTP". */
export function registerSystemRoutes(router: Router, deps: SystemRouteDeps): void {
  router.get('/healthz', 'public', () => ({ status: 'ok' }));
  router.get('/readyz', 'public', ({ res }) => {
    const checks = deps.readiness();
    const ready = Object.values(checks).every(Boolean);
    sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
  });
  router.get('/metrics', 'public', async ({ res }) => {
    const body = await deps.metrics.metrics();
    res.writeHead(200, { 'content-type': deps.metrics.contentType });
    res.end(body);
  });
}
