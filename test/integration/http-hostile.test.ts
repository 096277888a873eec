import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { ManualClock, systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { Router, jsonObject } from '../../src/http/router.js';
import { HttpServer } from '../../src/http/server.js';
import { registerRolloutRoutes } from '../../src/http/routes/rollouts.js';
import { registerSystemRoutes } from '../../src/http/routes/system.js';
import { createMetricsRegistry } from '../../src/metrics/metrics.js';
import { RolloutScheduler } from '../../src/rollouts/rollout-scheduler.js';
import { tempDir } from '../helpers/temp-dir.js';
import { labelled } from '../helpers/metrics.js';
import { MemoryDirectory, RecordingPorts, device, examplePatch } from './rollout-fixtures.js';

/** Issue 11 faults 2, 3 and 4 and the HTTP side of fault 1, against the real wired daemon (real SQLite, real HTTP). */

const ADMIN = 'hostile-http-admin-token-0123';

type Answer = { status: number; json: Record<string, unknown> };

async function call(base: string, method: string, path: string, body?: string | object, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** POST a body in chunks with `Transfer-Encoding: chunked` (no Content-Length) and read the answer. */
function postChunked(base: string, path: string, chunks: Buffer[]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, base);
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown> });
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on('error', reject);
      },
    );
    // Our own writes may fail once the server has answered and stopped reading: the answer is what counts.
    req.on('error', reject);
    (async () => {
      for (const chunk of chunks) {
        if (!req.write(chunk)) await once(req, 'drain');
      }
      req.end();
    })().catch(() => {});
  });
}

const gw = (id: string) => ({ id, type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' });

describe('HTTP API under hostile input (real daemon, temp SQLite)', () => {
  const dir = tempDir('xcare-http-hostile-');
  let app: App;
  let base: string;
  const deviceCount = () => (app.db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken: ADMIN,
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0, maxJsonBytes: 4096, headersTimeoutMs: 600 },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  it('ten parallel identical POST /api/v1/devices: one 201, nine 409 naming the conflicting id (fault 2)', async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(base, 'POST', '/api/v1/devices', gw('gw-race'))));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([201, ...Array<number>(9).fill(409)]);
    for (const a of answers.filter((x) => x.status === 409)) {
      expect(a.json).toMatchObject({ code: 'conflict', id: 'gw-race', error: expect.stringContaining('gw-race') });
    }
    expect((app.db.prepare("SELECT COUNT(*) AS n FROM devices WHERE id = 'gw-race'").get() as { n: number }).n).toBe(1);
  });

  it('overlapping imports: one 201, the other 409 with the conflicting id, all or nothing (fault 2)', async () => {
    const before = deviceCount();
    const a = ['imp-1', 'imp-2', 'imp-3', 'imp-shared'].map(gw);
    const b = ['imp-shared', 'imp-4', 'imp-5'].map(gw);
    const [ra, rb] = await Promise.all([call(base, 'POST', '/api/v1/devices/import', { devices: a }), call(base, 'POST', '/api/v1/devices/import', { devices: b })]);
    expect([ra.status, rb.status].sort()).toEqual([201, 409]);
    const loser = ra.status === 409 ? ra : rb;
    expect(loser.json).toMatchObject({ code: 'conflict', id: 'imp-shared' });
    const winner = ra.status === 201 ? a : b;
    expect(deviceCount()).toBe(before + winner.length);
  });

  it.each([['null'], ['[]'], ['"x"'], ['42'], ['{"devices":null}'], ['{"devices":[null]}'], ['{"devices":[]}'], ['{"devices":[{"id":"x"}],"extra":1}']])(
    'POST /api/v1/devices/import with %s is a 400 JSON error and stores nothing (fault 3)',
    async (body) => {
      const before = deviceCount();
      const res = await call(base, 'POST', '/api/v1/devices/import', body);
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ error: expect.any(String), code: 'validation_failed' });
      expect(deviceCount()).toBe(before);
    },
  );

  // Found from outside: a filter with a value that cannot occur (`xcarectl device list --state lsot`,
  // `--type gatway`, `rollout list --state runing`) answered 200 with an empty list, which reads as "none in that
  // state"; `tickets --severity x` already answered 400. Every closed-set filter names its field and the values.
  it.each([
    ['/api/v1/devices?state=lsot', 'state'],
    ['/api/v1/devices?type=gatway', 'type'],
    ['/api/v1/devices?tier=pro', 'tier'],
    ['/api/v1/devices?revoked=yes', 'revoked'],
    ['/api/v1/rollouts?state=runing', 'state'],
  ])('GET %s is a 400 naming %s', async (path, field) => {
    const res = await call(base, 'GET', path);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: 'validation_failed', error: expect.stringMatching(new RegExp(`^${field}: `)) });
  });

  it.each([['/api/v1/devices?state=online'], ['/api/v1/devices?state=revoked&revoked=true'], ['/api/v1/devices?type=sensor&tier=xcare_pro&revoked=false'], ['/api/v1/rollouts?state=running']])(
    'GET %s (values that can occur) is a 200',
    async (path) => {
      expect((await call(base, 'GET', path)).status).toBe(200);
    },
  );

  it.each([['null'], ['[]'], ['"x"'], ['42'], ['']])('POST /api/v1/devices with %j is a 400 JSON error (fault 3)', async (body) => {
    const before = deviceCount();
    const res = await call(base, 'POST', '/api/v1/devices', body);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('validation_failed');
    expect(deviceCount()).toBe(before);
  });

  it.each([
    ['PUT', '/api/v1/customers/initech', '{"bogus":1}'],
    ['PUT', '/api/v1/customers/initech', 'null'],
    ['POST', '/api/v1/customers', '{"name":"initech","__fuzz":true}'],
    ['POST', '/api/v1/customers', '[]'],
  ])('%s %s with %s is a 400 and creates no customer (found by the HTTP fuzz on the customers routes)', async (method, path, body) => {
    const customers = () => (app.db.prepare('SELECT COUNT(*) AS n FROM customers').get() as { n: number }).n;
    const before = customers();
    const res = await call(base, method, path, body);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('validation_failed');
    expect(customers()).toBe(before);
  });

  it.each([['{"name":"ci-2","role":"viewer","scopes":["all"]}'], ['null'], ['["ci-2","viewer"]']])('POST /api/v1/tokens with %s is a 400 and creates no token', async (body) => {
    const tokens = () => (app.db.prepare('SELECT COUNT(*) AS n FROM api_tokens').get() as { n: number }).n;
    const before = tokens();
    const res = await call(base, 'POST', '/api/v1/tokens', body);
    expect(res.status).toBe(400);
    expect(tokens()).toBe(before);
  });

  it('an oversized chunked body gets the same 413 JSON error as an oversized Content-Length body (fault 4)', async () => {
    const before = deviceCount();
    const counted = await labelled(app.metrics, 'fleet_http_rejected_total', { status: '413' });
    const big = Buffer.alloc(64 * 1024, 0x20);
    const chunked = await postChunked(base, '/api/v1/devices', [Buffer.from('{"pad":"'), big, big, Buffer.from('"}')]);
    expect(chunked).toEqual({ status: 413, json: { error: 'body exceeds 4096 bytes', code: 'payload_too_large', limitBytes: 4096 } });
    const sized = await call(base, 'POST', '/api/v1/devices', `{"pad":"${' '.repeat(10_000)}"}`);
    expect(sized).toEqual(chunked);
    expect(deviceCount()).toBe(before);
    expect(await labelled(app.metrics, 'fleet_http_rejected_total', { status: '413' })).toBe(counted + 2);
    // The daemon is still fine.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('closes an HTTP connection that sends nothing at http.headersTimeoutMs (fault 1, fd class)', async () => {
    const socket: Socket = netConnect({ host: '127.0.0.1', port: app.http.port() });
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.resume();
    const started = Date.now();
    await once(socket, 'close');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('closes a connection whose headers never finish (slowloris)', async () => {
    const socket: Socket = netConnect({ host: '127.0.0.1', port: app.http.port() });
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.resume();
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X-A: b\r\n'), 100);
    try {
      await once(socket, 'close');
    } finally {
      clearInterval(drip);
    }
  });
});

describe('HTTP connection caps', () => {
  it('closes connections above http.maxConnections at once', async () => {
    const router = new Router();
    router.get('/healthz', 'public', () => ({ status: 'ok' }));
    const http = new HttpServer({ router, log: silentLogger(), host: '127.0.0.1', port: 0, adminToken: ADMIN, limits: { maxConnections: 2, headersTimeoutMs: 30_000 } });
    await http.start();
    try {
      const open = (): Promise<Socket> =>
        new Promise((resolve) => {
          const s = netConnect({ host: '127.0.0.1', port: http.port() }, () => resolve(s));
          s.on('error', () => {});
        });
      const held = [await open(), await open()];
      const third = await open();
      third.resume();
      await once(third, 'close');
      expect(held.every((s) => !s.destroyed)).toBe(true);
      for (const s of held) s.destroy();
    } finally {
      await http.stop();
    }
  });
});

describe('POST /api/v1/rollouts/:id/abort validates its body (fault 3)', () => {
  const dir = tempDir('xcare-abort-body-');
  let db: Database;
  let clock: ManualClock;
  let scheduler: RolloutScheduler;
  let http: HttpServer;
  let base: string;

  beforeAll(async () => {
    db = openDatabase(join(dir.path, 'xcare.db'));
    clock = new ManualClock('2026-11-26T00:00:00.000Z');
    const directory = new MemoryDirectory();
    const ports = new RecordingPorts();
    ports.patches.set(examplePatch.id, examplePatch);
    for (let i = 1; i <= 3; i++) {
      directory.add(device(`gw-${i}`));
      ports.versions.set(`gw-${i}`, '2.3.1');
    }
    scheduler = new RolloutScheduler({
      db, clock, log: silentLogger(), directory, ports,
      config: { tickMs: 1000, abortThreshold: 0.1, maxConcurrent: 500, maxPerGateway: 1, expectedRestartGraceS: 300 },
    });
    scheduler.start();
    const router = new Router();
    registerSystemRoutes(router, { metrics: createMetricsRegistry(false), readiness: () => ({}) });
    registerRolloutRoutes(router, { scheduler });
    http = new HttpServer({ router, log: silentLogger(), host: '127.0.0.1', port: 0, adminToken: ADMIN });
    await http.start();
    base = `http://127.0.0.1:${http.port()}`;
  });
  afterAll(async () => {
    const stopping = scheduler.stop(100);
    clock.advance(100);
    await stopping;
    await http.stop();
    db.close();
    dir.cleanup();
  });

  const stateOf = (id: string) => (db.prepare('SELECT state FROM rollouts WHERE id = ?').get(id) as { state: string }).state;

  it.each([['null'], ['[]'], ['"x"'], ['42'], ['{"reason":""}'], ['{"reason":7}'], ['{"why":"x"}']])('abort with %s is 400 and aborts nothing', async (body) => {
    const created = await call(base, 'POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: { cron: '0 2 * * *', duration: '4h', timezone: 'UTC' } });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const res = await call(base, 'POST', `/api/v1/rollouts/${id}/abort`, body);
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('validation_failed');
    expect(stateOf(id)).toBe('scheduled');
    // An absent body stays documented as allowed: it aborts.
    const ok = await fetch(`${base}/api/v1/rollouts/${id}/abort`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(ok.status).toBe(200);
    expect(stateOf(id)).toBe('aborted');
  });
});

describe('HTTP timeouts and keep-alive limits', () => {
  async function serve(limits: ConstructorParameters<typeof HttpServer>[0]['limits']): Promise<HttpServer> {
    const router = new Router();
    router.get('/healthz', 'public', () => ({ status: 'ok' }));
    router.post('/echo', 'public', async (ctx) => ctx.json(jsonObject));
    const http = new HttpServer({ router, log: silentLogger(), host: '127.0.0.1', port: 0, adminToken: ADMIN, limits });
    await http.start();
    return http;
  }
  async function rawExchange(port: number, write: (s: Socket) => void): Promise<string> {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    write(socket);
    await once(socket, 'close');
    return Buffer.concat(chunks).toString('utf8');
  }

  it('a body that does not arrive within http.requestTimeoutMs gets a 408 JSON error and the connection closes', async () => {
    // requestTimeoutMs below the default headersTimeoutMs: the server must still start (headers are part of the request).
    const http = await serve({ requestTimeoutMs: 600 });
    try {
      const text = await rawExchange(http.port(), (s) => s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'));
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(text).toContain('"code":"request_timeout"');
    } finally {
      await http.stop();
    }
  });

  it('a connection silent for http.idleTimeoutMs mid-body is closed long before the request timeout', async () => {
    const http = await serve({ idleTimeoutMs: 400, requestTimeoutMs: 120_000, headersTimeoutMs: 60_000 });
    try {
      const started = Date.now();
      await rawExchange(http.port(), (s) => s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'));
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await http.stop();
    }
  });

  it('headers over http.maxHeaderBytes get a 431 JSON error', async () => {
    const http = await serve({ maxHeaderBytes: 2048 });
    try {
      const text = await rawExchange(http.port(), (s) => s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`));
      expect(text).toMatch(/^HTTP\/1\.1 431 /);
      expect(text).toContain('"code":"headers_too_large"');
    } finally {
      await http.stop();
    }
  });

  it('closes a keep-alive connection after http.maxRequestsPerSocket requests and when idle for http.keepAliveTimeoutMs', async () => {
    const http = await serve({ maxRequestsPerSocket: 2, keepAliveTimeoutMs: 300 });
    try {
      const started = Date.now();
      const idle = await rawExchange(http.port(), (s) => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
      expect(idle).toMatch(/^HTTP\/1\.1 200 /);
      expect(Date.now() - started).toBeLessThan(10_000);
      const text = await rawExchange(http.port(), (s) => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      expect(statuses.slice(0, 2)).toEqual(['200', '200']);
      expect(statuses.slice(2).every((s) => s !== '200')).toBe(true);
      expect(text.toLowerCase()).toContain('connection: close');
    } finally {
      await http.stop();
    }
  });
});
