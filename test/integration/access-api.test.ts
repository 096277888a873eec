import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 14 over real HTTP on the wired daemon (real SQLite, real broker): roles on every route, API tokens stored
 * hashed, the audit trail, limit/cursor paging, and the console's session cookie with its CSRF protection.
 */
describe('roles, tokens, audit and paging over the API', () => {
  const dir = tempDir('xcare-access-');
  const adminToken = 'access-test-admin-token-0123';
  const clock = new ManualClock('2026-11-30T10:00:00Z');
  let app: App;
  let base: string;
  let operator = '';
  let viewer = '';

  const call = async (method: string, path: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, {
      method,
      redirect: 'manual',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      /* html or empty */
    }
    return { status: res.status, body: json, text, headers: res.headers };
  };
  const admin = (method: string, path: string, body?: unknown) => call(method, path, adminToken, body);
  const count = (table: string) => (app.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  const addDevice = (id: string) => admin('POST', '/api/v1/devices', { id, type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' });
  const openTicket = (subject: string, summary = 'checked by hand') =>
    admin('POST', '/api/v1/tickets', { subject, classification: 'consultative', severity: 'low', summary });

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken,
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      console: { sessionTtlS: 3600 },
    });
    app = new App(config, { clock, log: silentLogger() });
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
    operator = (await admin('POST', '/api/v1/tokens', { name: 'olga', role: 'operator' })).body.token as string;
    viewer = (await admin('POST', '/api/v1/tokens', { name: 'vera', role: 'viewer' })).body.token as string;
    for (const id of ['gw-b', 'gw-d', 'gw-f', 'gw-h', 'gw-j']) expect((await addDevice(id)).status).toBe(201);
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  it('stores API tokens only as hashes, shows the secret once, and answers 401 to unknown or revoked ones', async () => {
    const rows = app.db.prepare('SELECT * FROM api_tokens').all() as { token_hash: string }[];
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(operator);
    expect(dump).not.toContain(viewer);
    const listed = await admin('GET', '/api/v1/tokens');
    expect(JSON.stringify(listed.body)).not.toContain(operator.slice(4));
    const temp = (await admin('POST', '/api/v1/tokens', { name: 'temp', role: 'admin' })).body.token as string;
    expect((await call('GET', '/api/v1/whoami', temp)).body).toMatchObject({ name: 'temp', role: 'admin', via: 'bearer' });
    expect((await admin('POST', '/api/v1/tokens/temp/revoke', {})).status).toBe(200);
    expect((await call('GET', '/api/v1/whoami', temp)).status).toBe(401);
    expect((await call('GET', '/api/v1/devices', 'xct_not-a-real-token-0000000000000000000')).status).toBe(401);
    expect((await call('GET', '/api/v1/devices', undefined)).status).toBe(401);
  });

  it.each([
    ['a role that does not exist', { name: 'x1', role: 'root' }, 400, /^role:/],
    ['a missing name', { role: 'viewer' }, 400, /^name:/],
    ['a name with spaces', { name: 'two words', role: 'viewer' }, 400, /^name:/],
    ['the reserved name admin', { name: 'admin', role: 'viewer' }, 400, /^name:/],
    ['a live name again', { name: 'olga', role: 'viewer' }, 409, /already exists/],
  ])('refuses a token with %s and stores nothing', async (_what, body, status, message) => {
    const before = count('api_tokens');
    const res = await admin('POST', '/api/v1/tokens', body);
    expect(res.status).toBe(status);
    expect(res.body.error).toMatch(message);
    expect(count('api_tokens')).toBe(before);
  });

  it('every mutating route refuses a viewer with 403 JSON, changes nothing, and records the refusal', async () => {
    const mutating = app.router.list().filter((r) => r.auth === 'admin' && r.method !== 'GET' && r.method !== 'HEAD');
    expect(mutating.length).toBeGreaterThanOrEqual(15);
    const tables = ['devices', 'tickets', 'ticket_events', 'rollouts', 'patches', 'api_tokens', 'software_integrity', 'outbox'];
    const before = tables.map(count);
    const deniedBefore = (app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'denied'").get() as { n: number }).n;
    for (const route of mutating) {
      const path = route.path.replace(/:(\w+)/g, (_m, name: string) => (name === 'id' ? (route.path.includes('tickets') || route.path.includes('outbox') ? '1' : 'gw-b') : 'x'));
      const res = await call(route.method, path, viewer, {});
      expect(res.status, `${route.method} ${route.path}`).toBe(403);
      expect(res.body.error, route.path).toMatch(/vera \(role viewer\) may not .* needs role (operator|admin)/);
    }
    expect(tables.map(count)).toEqual(before);
    const denied = (app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'denied'").get() as { n: number }).n;
    expect(denied - deniedBefore).toBe(mutating.length);
  });

  it('an operator may ack, resolve and open tickets and pause and resume rollouts, and nothing else', async () => {
    const operatorRoutes = app.router
      .list()
      .filter((r) => r.role === 'operator')
      .map((r) => `${r.method} ${r.path}`)
      .sort();
    expect(operatorRoutes).toEqual(
      [
        'POST /api/v1/rollouts/:id/pause',
        'POST /api/v1/rollouts/:id/resume',
        'POST /api/v1/tickets',
        'POST /api/v1/tickets/:id/ack',
        'POST /api/v1/tickets/:id/resolve',
      ].sort(),
    );
    for (const route of app.router.list().filter((r) => r.auth === 'admin' && r.method === 'POST' && r.role === 'admin')) {
      const res = await call('POST', route.path.replace(/:\w+/g, 'gw-b'), operator, {});
      expect(res.status, route.path).toBe(403);
    }
    // Allowed to an operator: a real ticket opened, acked and resolved.
    const opened = await call('POST', '/api/v1/tickets', operator, { subject: 'gw-b', classification: 'problem', severity: 'medium', summary: 'fan noise' });
    expect(opened.status).toBe(201);
    const id = (opened.body.ticket as { id: number }).id;
    expect((await call('POST', `/api/v1/tickets/${id}/ack`, operator, {})).body.ticket).toMatchObject({ status: 'acknowledged' });
    expect((await call('POST', `/api/v1/tickets/${id}/resolve`, operator, { reason: 'fan replaced' })).body.ticket).toMatchObject({ status: 'resolved' });
    // Pause/resume pass the role check (404: no such rollout), abort does not.
    expect((await call('POST', '/api/v1/rollouts/r-none/pause', operator, {})).status).toBe(404);
    expect((await call('POST', '/api/v1/rollouts/r-none/resume', operator, {})).status).toBe(404);
    expect((await call('POST', '/api/v1/rollouts/r-none/abort', operator, {})).status).toBe(403);
  });

  it('every read answers a viewer', async () => {
    for (const route of app.router.list().filter((r) => r.auth === 'admin' && r.method === 'GET' && r.role === 'viewer')) {
      const path = route.path.replace(/:\w+/g, route.path.includes('tickets') ? '1' : 'gw-b');
      const res = await call('GET', path, viewer);
      expect([401, 403], `${route.path} -> ${res.status}`).not.toContain(res.status);
    }
    expect((await call('GET', '/api/v1/tokens', viewer)).status).toBe(403);
  });

  it('records who, when, what, to what and from where for each change; ticket events carry the actor', async () => {
    clock.advance(1000);
    const opened = await call('POST', '/api/v1/tickets', operator, { subject: 'gw-d', classification: 'consultative', summary: 'asks about tiers' });
    const id = (opened.body.ticket as { id: number }).id;
    await call('POST', `/api/v1/tickets/${id}/ack`, operator, {});
    const entries = (await call('GET', `/api/v1/audit?target=ticket:${id}`, viewer)).body.entries as Record<string, unknown>[];
    expect(entries.map((e) => e.action)).toEqual(['ticket.ack', 'ticket.open']);
    expect(entries[0]).toMatchObject({
      actor: 'olga',
      role: 'operator',
      via: 'bearer',
      target: `ticket:${id}`,
      method: 'POST',
      path: `/api/v1/tickets/${id}/ack`,
      status: 200,
      remote: '127.0.0.1',
      ts: new Date(clock.now()).toISOString(),
    });
    const events = (await call('GET', `/api/v1/tickets/${id}`, viewer)).body.events as { type: string; data: { actor?: string } }[];
    expect(events.map((e) => [e.type, e.data.actor])).toEqual([
      ['opened', 'olga'],
      ['acknowledged', 'olga'],
    ]);
    // The admin token acts as "admin"; device changes and token changes are in the trail too.
    await addDevice('gw-audit');
    await admin('POST', '/api/v1/devices/gw-audit/revoke', {});
    const byAdmin = (await call('GET', '/api/v1/audit?actor=admin&limit=5', viewer)).body.entries as Record<string, unknown>[];
    expect(byAdmin.slice(0, 2).map((e) => [e.action, e.target])).toEqual([
      ['device.revoke', 'device:gw-audit'],
      ['device.add', 'device:gw-audit'],
    ]);
    const tokenEntries = (await call('GET', '/api/v1/audit?action=token.create', viewer)).body.entries as Record<string, unknown>[];
    expect(tokenEntries.map((e) => e.target)).toEqual(expect.arrayContaining(['token:olga', 'token:vera']));
    // A failed change is not a change: nothing is recorded for a 404.
    const before = count('audit_log');
    expect((await admin('POST', '/api/v1/devices/nope/revoke', {})).status).toBe(404);
    expect(count('audit_log')).toBe(before);
  });

  it('pages devices with limit/cursor, stable across inserts before and after the cursor', async () => {
    const first = await admin('GET', '/api/v1/devices?limit=2');
    expect((first.body.devices as { id: string }[]).map((d) => d.id)).toEqual(['gw-b', 'gw-d']);
    // Inserted meanwhile: one before the cursor (not seen again) and one after it (seen once, in order).
    await addDevice('gw-a');
    await addDevice('gw-e');
    const seen: string[] = ['gw-b', 'gw-d'];
    let cursor = first.body.nextCursor as string | null;
    while (cursor) {
      const page = await admin('GET', `/api/v1/devices?limit=2&cursor=${cursor}`);
      seen.push(...(page.body.devices as { id: string }[]).map((d) => d.id));
      cursor = page.body.nextCursor as string | null;
    }
    expect(seen).toEqual(['gw-b', 'gw-d', 'gw-e', 'gw-f', 'gw-h', 'gw-j']);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('pages the audit trail newest first, stable while new entries arrive', async () => {
    const full = ((await admin('GET', '/api/v1/audit?limit=1000')).body.entries as { id: number }[]).map((e) => e.id);
    const first = await admin('GET', '/api/v1/audit?limit=3');
    const got = (first.body.entries as { id: number }[]).map((e) => e.id);
    await addDevice('gw-k'); // a new entry at the head must not shift later pages
    let cursor = first.body.nextCursor as string | null;
    while (cursor) {
      const page = await admin('GET', `/api/v1/audit?limit=3&cursor=${cursor}`);
      got.push(...(page.body.entries as { id: number }[]).map((e) => e.id));
      cursor = page.body.nextCursor as string | null;
    }
    expect(got).toEqual(full);
  });

  it('walks every list route page by page to exactly the unpaged list', async () => {
    for (let i = 0; i < 3; i++) await openTicket(`gw-${'fhj'[i]}`);
    const lists: [string, string][] = [
      ['/api/v1/devices', 'devices'],
      ['/api/v1/tickets?status=all', 'tickets'],
      ['/api/v1/audit', 'entries'],
      ['/api/v1/tokens?revoked=true', 'tokens'],
      ['/api/v1/outbox?state=all', 'entries'],
      ['/api/v1/patches', 'patches'],
      ['/api/v1/rollouts', 'rollouts'],
      ['/api/v1/integrity', 'integrity'],
    ];
    for (const [path, key] of lists) {
      const sep = path.includes('?') ? '&' : '?';
      const whole = (await admin('GET', `${path}${sep}limit=1000`)).body[key] as { id?: unknown; version?: unknown }[];
      const walked: unknown[] = [];
      let cursor: string | null = '';
      let pages = 0;
      do {
        const page = await admin('GET', `${path}${sep}limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(page.status, path).toBe(200);
        walked.push(...(page.body[key] as unknown[]));
        cursor = page.body.nextCursor as string | null;
        expect(++pages).toBeLessThan(500);
      } while (cursor);
      expect(walked.map((x) => JSON.stringify((x as { id?: unknown }).id ?? x)), path).toEqual(whole.map((x) => JSON.stringify(x.id ?? x)));
    }
  });

  it.each([
    ['limit=0', 400, /^limit:/],
    ['limit=abc', 400, /^limit:/],
    ['limit=100000', 400, /^limit:/],
    ['cursor=%%%', 400, /^cursor:/],
    ['cursor=bm90IGpzb24', 400, /^cursor:/],
    ['cursor=NDI', 400, /^cursor:/], // a number where the device list expects an id
  ])('refuses a bad page request (%s) with 400 naming the parameter', async (query, status, message) => {
    const res = await admin('GET', `/api/v1/devices?${query}`);
    expect(res.status).toBe(status);
    expect(res.body.error).toMatch(message);
  });

  describe('console session', () => {
    const login = async (token: string, origin = base) => {
      const res = await fetch(`${base}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
        body: new URLSearchParams({ token }).toString(),
      });
      return { status: res.status, cookie: res.headers.get('set-cookie') ?? '', location: res.headers.get('location') };
    };
    const page = async (path: string, cookie: string) => {
      const res = await fetch(`${base}${path}`, { redirect: 'manual', headers: { cookie } });
      return { status: res.status, text: await res.text(), headers: res.headers };
    };
    const sessionOf = (setCookie: string) => setCookie.split(';')[0]!;
    const csrfOf = (html: string) => /data-csrf="([^"]+)"/.exec(html)![1]!;

    it('signs in once into an HttpOnly, SameSite=Strict cookie for a server-side session stored hashed', async () => {
      const res = await login(operator);
      expect(res.status).toBe(303);
      expect(res.location).toBe('/');
      expect(res.cookie).toMatch(/^xcare_session=[A-Za-z0-9_-]{40,}; /);
      expect(res.cookie).toContain('HttpOnly');
      expect(res.cookie).toContain('SameSite=Strict');
      expect(res.cookie).toContain('Path=/');
      expect(res.cookie).toContain('Max-Age=3600');
      const id = sessionOf(res.cookie).split('=')[1]!;
      expect(JSON.stringify(app.db.prepare('SELECT * FROM console_sessions').all())).not.toContain(id);
      const queue = await page('/', sessionOf(res.cookie));
      expect(queue.status).toBe(200);
      expect(queue.headers.get('content-type')).toMatch(/^text\/html/);
      const csp = queue.headers.get('content-security-policy')!;
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(queue.headers.get('x-frame-options')).toBe('DENY');
      expect(queue.headers.get('cache-control')).toBe('no-store');
      expect(queue.text).not.toMatch(/<script>|<script [^>]*>[^<]/); // only <script src=...></script>
      expect((await admin('GET', '/api/v1/devices')).headers.get('cache-control')).toBe('no-store');
    });

    it('refuses a wrong token, a sign-in from another origin, and pages without a session', async () => {
      expect((await login('wrong-token-wrong-token')).status).toBe(401);
      expect((await login(operator, 'http://evil.example')).status).toBe(403);
      const anon = await page('/', '');
      expect(anon.status).toBe(303);
      expect(anon.headers.get('location')).toBe('/login');
      expect((await page('/console/queue/rows', '')).status).toBe(401);
    });

    it('refuses a cookie-borne change without the CSRF token, with a wrong one, or from another origin; accepts the right one', async () => {
      const { cookie } = await login(operator);
      const session = sessionOf(cookie);
      const csrf = csrfOf((await page('/', session)).text);
      const id = ((await openTicket('gw-h', 'csrf target')).body.ticket as { id: number }).id;
      const ack = (headers: Record<string, string>) => call('POST', `/api/v1/tickets/${id}/ack`, undefined, {}, { cookie: session, ...headers });
      const statusNow = () => (app.db.prepare('SELECT status FROM tickets WHERE id = ?').get(id) as { status: string }).status;
      const attempts: Record<string, string>[] = [
        {},
        { 'x-csrf-token': 'wrong' },
        { 'x-csrf-token': csrf, origin: 'http://evil.example' },
        { 'x-csrf-token': csrf, origin: 'null' },
        { 'x-csrf-token': csrf, origin: '::not a url' },
      ];
      for (const headers of attempts) {
        const res = await ack(headers);
        expect(res.status).toBe(403);
        expect(res.body.error).toMatch(/CSRF|cross-origin/);
        expect(statusNow()).toBe('open');
      }
      const ok = await ack({ 'x-csrf-token': csrf, origin: base });
      expect(ok.status).toBe(200);
      expect(statusNow()).toBe('acknowledged');
      const entry = ((await admin('GET', `/api/v1/audit?target=ticket:${id}&action=ticket.ack`)).body.entries as Record<string, unknown>[])[0]!;
      expect(entry).toMatchObject({ actor: 'olga', via: 'session' });
      // A viewer's session is refused by role even with a valid CSRF token.
      const v = sessionOf((await login(viewer)).cookie);
      const vCsrf = csrfOf((await page('/', v)).text);
      expect((await call('POST', `/api/v1/tickets/${id}/resolve`, undefined, { reason: 'x' }, { cookie: v, 'x-csrf-token': vCsrf })).status).toBe(403);
    });

    it('signs out only with the CSRF token, and the session is gone afterwards', async () => {
      const session = sessionOf((await login(viewer)).cookie);
      const csrf = csrfOf((await page('/', session)).text);
      const logout = (form: Record<string, string>) =>
        fetch(`${base}/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: session, origin: base, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
      expect((await logout({})).status).toBe(403);
      expect((await page('/', session)).status).toBe(200);
      const out = await logout({ _csrf: csrf });
      expect(out.status).toBe(303);
      expect(out.headers.get('set-cookie')).toMatch(/^xcare_session=; .*Max-Age=0/);
      expect((await page('/', session)).status).toBe(303);
    });

    it('expires a session after console.sessionTtlS, and revoking its token ends it at once', async () => {
      const session = sessionOf((await login(viewer)).cookie);
      expect((await page('/fleet', session)).status).toBe(200);
      clock.advance(3600 * 1000);
      expect((await page('/fleet', session)).status).toBe(303);
      const t = (await admin('POST', '/api/v1/tokens', { name: 'shortlived', role: 'viewer' })).body.token as string;
      const s2 = sessionOf((await login(t)).cookie);
      expect((await page('/fleet', s2)).status).toBe(200);
      await admin('POST', '/api/v1/tokens/shortlived/revoke', {});
      expect((await page('/fleet', s2)).status).toBe(303);
    });

    it('escapes hostile text from people and devices on every page', async () => {
      const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>"'&`;
      const id = ((await openTicket('gw-j', hostile)).body.ticket as { id: number }).id;
      const session = sessionOf((await login(viewer)).cookie);
      for (const path of ['/', `/tickets/${id}`, '/console/queue/rows', '/devices/gw-j', '/audit']) {
        const { status, text } = await page(path, session);
        expect(status, path).toBe(200);
        expect(text, path).not.toContain('<script>alert');
        expect(text, path).not.toContain('<img src=x');
        if (path !== '/audit') expect(text, path).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;');
      }
      // A hostile path segment is escaped too (the 404 page names what was asked for).
      const nf = await page(`/devices/${encodeURIComponent('<b>x</b>')}`, session);
      expect(nf.status).toBe(404);
      expect(nf.text).not.toContain('<b>x</b>');
    });
  });
});

describe('admin-token console sessions', () => {
  it('end when the configured admin token changes, and API-token sessions survive a restart', async () => {
    const dir = tempDir('xcare-access-restart-');
    const clock = new ManualClock('2026-11-30T10:00:00Z');
    const start = async (adminToken: string) => {
      const app = new App(
        validateConfig({ dataDir: join(dir.path, 'data'), adminToken, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } }),
        { clock, log: silentLogger() },
      );
      await app.start();
      return { app, base: `http://127.0.0.1:${app.http.port()}` };
    };
    const login = async (base: string, token: string) => {
      const res = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base }, body: `token=${encodeURIComponent(token)}` });
      return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
    };
    const status = async (base: string, cookie: string) => (await fetch(`${base}/fleet`, { redirect: 'manual', headers: { cookie } })).status;
    try {
      const first = await start('first-admin-token-0123456789');
      const created = await fetch(`${first.base}/api/v1/tokens`, {
        method: 'POST',
        headers: { authorization: 'Bearer first-admin-token-0123456789', 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'night-shift', role: 'viewer' }),
      });
      const apiToken = ((await created.json()) as { token: string }).token;
      const adminCookie = await login(first.base, 'first-admin-token-0123456789');
      const viewerCookie = await login(first.base, apiToken);
      expect(await status(first.base, adminCookie)).toBe(200);
      await first.app.stop();

      const same = await start('first-admin-token-0123456789');
      expect(await status(same.base, adminCookie)).toBe(200);
      await same.app.stop();

      const rotated = await start('second-admin-token-0123456789');
      expect(await status(rotated.base, adminCookie)).toBe(303);
      expect(await status(rotated.base, viewerCookie)).toBe(200);
      await rotated.app.stop();
    } finally {
      dir.cleanup();
    }
  });
});
