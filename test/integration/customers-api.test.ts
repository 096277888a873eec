import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';
import { ctl } from '../helpers/processes.js';
import type { SqliteDatabase } from '../../src/db/database.js';

/**
 * The wired daemon in-process (real SQLite, real HTTP) for issue 8's customers resource and store-fault readiness,
 * plus the real xcarectl binary against it.
 */
describe('customers and store readiness through the daemon API', () => {
  const dir = tempDir('xcare-customers-');
  const adminToken = 'customers-admin-token-0123';
  let app: App;
  let base: string;

  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const customerRows = () => (app.db.prepare('SELECT COUNT(*) AS n FROM customers').get() as { n: number }).n;

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken,
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  it('PUT creates, GET shows, a second PUT updates only the fields given, GET lists', async () => {
    const put = await call('PUT', '/api/v1/customers/acme', { engineerName: 'Ada Lovelace', engineerEmail: 'ada@minnovation.example', engineerPhone: '+44 20 7946 0000', notes: 'gold' });
    expect(put.status).toBe(200);
    await call('PUT', '/api/v1/customers/acme', { notes: 'platinum' });
    const shown = (await (await call('GET', '/api/v1/customers/acme')).json()) as { customer: Record<string, unknown> };
    expect(shown.customer).toMatchObject({ name: 'acme', notes: 'platinum', successEngineer: { name: 'Ada Lovelace', email: 'ada@minnovation.example', phone: '+44 20 7946 0000' } });
    const listed = (await (await call('GET', '/api/v1/customers')).json()) as { customers: { name: string }[] };
    expect(listed.customers.map((c) => c.name)).toEqual(['acme']);
  });

  it('lists page by page (limit, cursor) to exactly the whole list', async () => {
    for (const name of ['delta', 'epsilon', 'zeta']) await call('PUT', `/api/v1/customers/${name}`, { notes: name });
    const whole = ((await (await call('GET', '/api/v1/customers')).json()) as { customers: { name: string }[] }).customers.map((c) => c.name);
    const walked: string[] = [];
    let cursor = '';
    for (let i = 0; i < 10; i++) {
      const page = (await (await call('GET', `/api/v1/customers?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json()) as { customers: { name: string }[]; nextCursor: string | null };
      walked.push(...page.customers.map((c) => c.name));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(walked).toEqual(whole);
    expect((await call('GET', '/api/v1/customers?limit=0')).status).toBe(400);
  });

  // Issue 14 "Audit trail": a customer change is a person's change like any other. It was recorded under the
  // fallback name `customers`, targeting `name:acme`, with nothing of what changed (and by POST with no target).
  it('customer set is audited as customer.set on customer:<name>, with the engineer it names, by PUT and by POST', async () => {
    await call('PUT', '/api/v1/customers/audited', { engineerName: 'Grace Hopper', notes: 'n' });
    await call('POST', '/api/v1/customers', { name: 'audited-too', engineerEmail: 'g@minnovation.example' });
    const entries = ((await (await call('GET', '/api/v1/audit?limit=2')).json()) as { entries: Record<string, unknown>[] }).entries;
    expect(entries.map((e) => [e.action, e.target])).toEqual([
      ['customer.set', 'customer:audited-too'],
      ['customer.set', 'customer:audited'],
    ]);
    expect(entries[1]!.detail).toMatchObject({ successEngineer: { name: 'Grace Hopper' } });
    expect(entries[0]!.detail).toMatchObject({ successEngineer: { email: 'g@minnovation.example' } });
  });

  it('an unknown customer is a 404', async () => {
    expect((await call('GET', '/api/v1/customers/nobody')).status).toBe(404);
  });

  it.each([
    ['a bad email', { engineerEmail: 'not-an-email' }, 'engineerEmail'],
    ['a bad phone', { engineerPhone: 'call me maybe' }, 'engineerPhone'],
    ['a number as notes', { notes: 42 }, 'notes'],
    ['notes over 4000 characters', { notes: 'x'.repeat(4001) }, 'notes'],
    ['an engineer name that is not a string', { engineerName: ['Ada'] }, 'engineerName'],
  ])('refuses %s with a 400 naming the field, storing nothing', async (_what, body, field) => {
    const before = customerRows();
    const res = await call('PUT', '/api/v1/customers/beta', body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(new RegExp(`^${field}:`));
    expect(customerRows()).toBe(before);
  });

  it('refuses a bad customer name and a body that is not an object', async () => {
    const before = customerRows();
    expect((await call('POST', '/api/v1/customers', { name: '../etc' })).status).toBe(400);
    expect((await call('POST', '/api/v1/customers', [1, 2])).status).toBe(400);
    expect(customerRows()).toBe(before);
  });

  it('xcarectl customer set / show / list talk to it', async () => {
    const daemon = { url: base, adminToken };
    const set = await ctl(daemon, ['customer', 'set', 'gamma', '--engineer', 'Grace Hopper', '--email', 'grace@minnovation.example']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('Grace Hopper');
    const show = await ctl(daemon, ['customer', 'show', 'gamma', '--json']);
    expect(JSON.parse(show.stdout)).toMatchObject({ name: 'gamma', successEngineer: { name: 'Grace Hopper', email: 'grace@minnovation.example', phone: null } });
    const list = await ctl(daemon, ['customer', 'list']);
    expect(list.stdout).toMatch(/gamma\s+Grace Hopper/);
    const bad = await ctl(daemon, ['customer', 'set', 'gamma', '--email', 'nope']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/engineerEmail/);
  });

  it('/readyz answers 503 naming a full store, and 200 again once there is room', async () => {
    const pages = (app.db as SqliteDatabase).pragma('page_count', { simple: true }) as number;
    (app.db as SqliteDatabase).pragma(`max_page_count = ${pages}`);
    const fill = app.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (0, NULL, 'filler', ?)`);
    for (const size of [500, 50, 0]) {
      try {
        for (let i = 0; i < 100_000; i++) fill.run('x'.repeat(size));
      } catch {
        /* full */
      }
    }
    // A person opens tickets until a new row needs a page the store cannot give: the write fails and says so.
    let failed = false;
    for (let i = 0; i < 500 && !failed; i++) {
      const r = await call('POST', '/api/v1/tickets', { subject: 'fleet', classification: 'consultative', summary: `question ${i} ${'?'.repeat(200)}` });
      failed = r.status >= 500;
    }
    expect(failed).toBe(true);
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reasons: string[] }).reasons.join('\n')).toMatch(/store disk full/);
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/fleet_store_healthy 0/);
    app.db.exec(`DELETE FROM events WHERE kind = 'filler'`);
    (app.db as SqliteDatabase).pragma('max_page_count = 1073741823');
    expect((await call('POST', '/api/v1/tickets', { subject: 'fleet', classification: 'consultative', summary: 'room again?' })).status).toBe(201);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });
});

/**
 * Issue 13 item 2: the success engineer the tickets ask for synchronously comes from the customer store's
 * in-memory view, which the daemon loads at start: after a restart, a record set before it is still there.
 */
describe('the success engineer survives a daemon restart', () => {
  const dir = tempDir('xcare-customers-restart-');
  const adminToken = 'customers-admin-token-0123';
  const config = validateConfig({ dataDir: join(dir.path, 'data'), adminToken, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } });
  afterAll(() => dir.cleanup());

  it('a restarted daemon names the engineer set before the restart', async () => {
    const first = new App(config, { clock: systemClock, log: silentLogger() });
    await first.start();
    try {
      const res = await fetch(`http://127.0.0.1:${first.http.port()}/api/v1/customers/acme`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ engineerName: 'Ada Lovelace', engineerEmail: 'ada@minnovation.example' }),
      });
      expect(res.status).toBe(200);
      expect(first.customers.successEngineerOf('acme')?.name).toBe('Ada Lovelace');
    } finally {
      await first.stop();
    }
    const second = new App(config, { clock: systemClock, log: silentLogger() });
    await second.start();
    try {
      expect(second.customers.successEngineerOf('acme')).toEqual({ name: 'Ada Lovelace', email: 'ada@minnovation.example', phone: null });
      expect(second.customers.successEngineerOf('nobody')).toBeUndefined();
    } finally {
      await second.stop();
    }
  });
});
