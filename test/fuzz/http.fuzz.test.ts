import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { tempDir } from '../helpers/temp-dir.js';
import { labelled } from '../helpers/metrics.js';
import { tableDigests } from './db-digest.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from './fuzz-runner.js';

/**
 * Issue 11 fuzzing, HTTP side: every route of the real daemon (temp SQLite), with generated bodies,
 * queries, path parameters, methods and content types. What must hold for every request:
 * no 5xx; every error is JSON `{"error": string, "code": string}`; nothing stored changed (a digest of
 * every table before and after); the process still answers /healthz.
 *
 * Bodies are invalid by construction (not an object, an unknown key, not JSON, too large), so a
 * route that validates its body can never act on one, whatever the path parameters name.
 */

const ADMIN = 'fuzz-http-admin-token-0123456789';
const MAX_JSON = 2048;

interface Sent {
  status: number;
  type: string;
  body: string;
}

function send(port: number, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, chunked: boolean): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        // Explicit framing: node:http would send a DELETE body with neither header (then it is garbage).
        headers: { ...headers, ...(body ? (chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.length) }) : {}) },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body) {
      if (chunked) {
        // Two writes without a length: Transfer-Encoding: chunked.
        const half = Math.floor(body.length / 2);
        req.write(body.subarray(0, half));
        req.end(body.subarray(half));
      } else req.end(body);
    } else req.end();
  });
}

describe('HTTP fuzzing against the real daemon (every route)', { timeout: FUZZ_TEST_TIMEOUT_MS }, () => {
  const dir = tempDir('xcare-fuzz-http-');
  let app: App;
  let port: number;
  let routes: ReadonlyArray<{ method: string; path: string; auth: string }>;

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken: ADMIN,
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0, maxJsonBytes: MAX_JSON },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    port = app.http.port();
    routes = app.http.routes();
    // Real resources for the path parameters to hit: a gateway, a sensor, a person's ticket.
    await app.registry.add([
      parseDeviceInput({ id: 'gw-fz', type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' }),
      parseDeviceInput({ id: 'sen-fz', type: 'sensor', parent: 'gw-fz', customer: 'acme', installer: 'minnovation' }),
    ]);
    app.tickets.openByPerson({ subject: 'gw-fz', classification: 'consultative', summary: 'fuzz target' } as never);
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  const totalRejected = async () => ((await app.metrics.getSingleMetric('fleet_http_rejected_total')?.get())?.values ?? []).reduce((n, v) => n + v.value, 0);

  const expectJsonError = (res: Sent) => {
    expect(res.type).toMatch(/^application\/json/);
    const json = JSON.parse(res.body) as Record<string, unknown>;
    expect(typeof json.error).toBe('string');
    expect(typeof json.code).toBe('string');
  };

  // Path parameters: the real ids, and hostile segments (encoded, unicode, traversal, huge, numbers).
  const segment = fc.oneof(
    fc.constantFrom('gw-fz', 'sen-fz', '1', '0', '-1', '99999999999999999999', 'r-20261126-1', '..', '%2e%2e', '%00', '%ZZ', '%E0%A4%A', 'a'.repeat(300), 'null', '[]'),
    fc.string({ minLength: 1, maxLength: 12 }).map((s) => encodeURIComponent(s)),
    fc.integer().map(String),
  );
  // Bodies that no route may act on: JSON that is not an object, an object with a key no schema has,
  // text that is not JSON, and a body over http.maxJsonBytes.
  const body = fc.oneof(
    fc.oneof(fc.constant(null), fc.boolean(), fc.double(), fc.integer(), fc.string({ maxLength: 20 }), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 })).map((v) => ({ kind: 'not-object', text: JSON.stringify(v) })),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map((d) => ({ kind: 'unknown-key', text: JSON.stringify({ ...d, __fuzz: true }) })),
    fc.string({ minLength: 1, maxLength: 40 }).map((s) => ({ kind: 'not-json', text: `{${s}` })),
    fc.integer({ min: MAX_JSON + 1, max: MAX_JSON * 8 }).map((n) => ({ kind: 'too-large', text: `{"pad":"${'x'.repeat(n)}"}` })),
  );
  const request = fc.record({
    route: fc.nat(),
    params: fc.array(segment, { minLength: 3, maxLength: 3 }),
    query: fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom('type', 'tier', 'state', 'limit', 'status', 'kind', 'severity', 'excludedLimit', 'start', 'devices', 'revoked', 'subject', 'customer', 'installer', 'parent', 'tag'), fc.string({ maxLength: 6 })),
        fc.oneof(fc.constantFrom('', '0', '-1', '1e9', 'open', 'all', 'xcare', 'gateway', '2027-02-30', 'true', '%00'), fc.string({ maxLength: 10 })),
      ),
      { maxLength: 4 },
    ),
    body,
    chunked: fc.boolean(),
    contentType: fc.constantFrom('application/json', 'text/csv', 'text/plain', 'application/octet-stream', ''),
    auth: fc.constantFrom('admin', 'admin', 'admin', 'none', 'wrong'),
    method: fc.constantFrom('route', 'route', 'route', 'PUT', 'DELETE', 'PATCH'),
  });

  it('no route answers 5xx or a non-JSON error, and no request changes what is stored', async () => {
    const before = tableDigests(app.db);
    let exercised = 0;
    await fuzz(
      'http.routes',
      [request],
      async (r) => {
        const route = routes[r.route % routes.length]!;
        let i = 0;
        const path = route.path
          .split('/')
          .map((part) => (part.startsWith(':') ? r.params[i++ % r.params.length]! : part))
          .join('/');
        const qs = r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const method = r.method === 'route' ? route.method : r.method;
        const headers: Record<string, string> = {};
        if (r.auth === 'admin') headers.authorization = `Bearer ${ADMIN}`;
        if (r.auth === 'wrong') headers.authorization = 'Bearer not-the-admin-token-0000';
        if (r.contentType) headers['content-type'] = r.contentType;
        const withBody = method !== 'GET' && method !== 'HEAD';
        const rejectedBefore = await totalRejected();
        const res = await send(port, method, `${path}${qs ? `?${qs}` : ''}`, headers, withBody ? Buffer.from(r.body.text) : undefined, r.chunked);
        exercised++;
        expect(res.status, `${method} ${path} -> ${res.status} ${res.body.slice(0, 200)}`).toBeLessThan(500);
        // Console pages (issue 14) answer people in HTML; everything else is the JSON API.
        const consolePage = !/^\/(api|patches)\//.test(route.path) && !['/healthz', '/readyz', '/metrics'].includes(route.path) && r.method === 'route';
        if (res.status >= 400) {
          if (consolePage && res.type.startsWith('text/html')) expect(res.body.length).toBeGreaterThan(0);
          else expectJsonError(res);
          // The right counter moved: exactly one rejection, under this status.
          expect(await totalRejected()).toBe(rejectedBefore + 1);
          expect(await labelled(app.metrics, 'fleet_http_rejected_total', { status: String(res.status) })).toBeGreaterThan(0);
        } else expect(await totalRejected()).toBe(rejectedBefore);
        // A body the route cannot accept: never a success for a route that takes a body.
        if (withBody && route.method === 'POST' && r.method === 'route' && route.auth !== 'device' && !consolePage) {
          expect(res.status, `${method} ${path} accepted ${r.body.kind} body ${r.body.text.slice(0, 80)}`).toBeGreaterThanOrEqual(400);
          if (r.body.kind === 'too-large' && r.auth === 'admin' && route.path !== '/api/v1/patches') expect([400, 404, 413]).toContain(res.status);
        }
      },
      { numRuns: 300, timeLimitMs: 8000 },
    );
    expect(exercised).toBeGreaterThan(20);
    expect(tableDigests(app.db)).toEqual(before);
    expect((await send(port, 'GET', '/healthz', {}, undefined, false)).status).toBe(200);
  });

  it('GET routes answer 200 or a 4xx JSON error for any query, and change nothing', async () => {
    const before = tableDigests(app.db);
    const gets = routes.filter((r) => r.method === 'GET' && r.auth === 'admin');
    expect(gets.length).toBeGreaterThan(5);
    await fuzz(
      'http.get-queries',
      [fc.nat(), fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 12 })), { maxLength: 5 }), segment],
      async (n, query, id) => {
        const route = gets[n % gets.length]!;
        const path = route.path.replace(/:[a-zA-Z]+/g, id);
        const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const res = await send(port, 'GET', `${path}?${qs}`, { authorization: `Bearer ${ADMIN}` }, undefined, false);
        expect(res.status, `GET ${path}?${qs} -> ${res.body.slice(0, 200)}`).toBeLessThan(500);
        if (res.status >= 400) expectJsonError(res);
        else expect(() => JSON.parse(res.body)).not.toThrow();
      },
      { numRuns: 150, timeLimitMs: 5000 },
    );
    expect(tableDigests(app.db)).toEqual(before);
  });
});
