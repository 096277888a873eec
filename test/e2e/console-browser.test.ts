import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import type { Dialog } from 'playwright-core';
import { startDaemon, startAgent, ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { keygen, buildSignPublish, registerSampleIntegrity, provisionSampleAgent } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { chromiumPath, launchBrowser, signIn, type BrowserSession } from '../helpers/browser.js';

/**
 * Issue 14 "Done when", in a real headless browser (Debian chromium via playwright-core) against the real xcared
 * and a real xcare-agent: sign in, see the ticket a kill -9 of the agent opens appear in the queue without a
 * reload, ack it as operator, be refused a rollout abort as viewer, and see the audit entries.
 */
describe.skipIf(toolsMissing([chromiumPath()], 'chromium').length > 0)('console in a real browser', () => {
  const dir = tempDir('xcare-e2e-console-');
  let daemon: Daemon;
  let agent: RunningProcess | undefined;
  let rolloutAgent: RunningProcess | undefined;
  let browser: BrowserSession;
  let operator = '';
  let viewer = '';
  let rolloutId = '';
  let ticketId = 0;
  const dialogs: string[] = [];

  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${daemon.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${daemon.adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as T;
  };
  const tokenVia = async (role: string, name: string) => {
    const r = await ctl(daemon, ['token', 'create', '--role', role, '--name', name, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { token: string }).token;
  };

  beforeAll(async () => {
    const keys = await keygen(join(dir.path, 'keys'));
    daemon = await startDaemon(
      join(dir.path, 'daemon'),
      `health: { lastWillGraceS: 1, tickMs: 50, missedHeartbeats: 3 }\npatches: { releaseKeys: [${keys.publicKey}] }\n`,
    );
    await buildSignPublish(daemon, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
    await registerSampleIntegrity(daemon);
    rolloutAgent = await provisionSampleAgent(daemon, 'gw-rollout', join(dir.path, 'agents'), keys.publicKey);
    await eventually(async () => (await api<{ eligible: boolean }>('GET', '/api/v1/devices/gw-rollout/eligibility')).eligible, 20_000, 'gw-rollout eligible');
    // A rollout whose window opens only on January 1st: it stays scheduled, so aborting it is a real change.
    const created = await ctl(daemon, ['rollout', 'create', '--patch', 'sample-app-1.1.0', '--wave', '100%', '--window', '0 3 1 1 *', '--duration', '1h', '--tz', 'UTC', '--json']);
    expect(created.code, created.stderr).toBe(0);
    rolloutId = (JSON.parse(created.stdout) as { id: string }).id;
    operator = await tokenVia('operator', 'olga');
    viewer = await tokenVia('viewer', 'vera');
    const added = await ctl(daemon, ['device', 'add', 'gw-console', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
    expect(added.code, added.stderr).toBe(0);
    const token = (JSON.parse(added.stdout) as { token: string }).token;
    agent = startAgent({ deviceId: 'gw-console', token, mqttPort: daemon.mqttPort, httpUrl: daemon.url, dir: join(dir.path, 'agent'), intervalS: 1 });
    await eventually(async () => (await api<{ state: string }>('GET', '/api/v1/devices/gw-console')).state === 'online', 20_000, 'agent online');
    browser = await launchBrowser();
    browser.page.on('dialog', (d: Dialog) => {
      dialogs.push(`${d.type()}:${d.message()}`);
      void d.accept();
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    await rolloutAgent?.stop();
    await daemon?.stop();
    dir.cleanup();
  }, 60_000);

  it('shows the ticket a killed agent opens in the queue without a reload, and an operator acks it there', async () => {
    const { page } = browser;
    await signIn(page, daemon.url, operator);
    await expect(page.locator('.who .name').textContent()).resolves.toBe('olga');
    await expect(page.locator('#queue-rows tr', { hasText: 'gw-console' }).count()).resolves.toBe(0);
    // A marker in the page's own memory: it survives live updates and dies with any reload or navigation.
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'));

    await agent!.kill9();
    const row = page.locator('#queue-rows tr[data-ticket]', { hasText: 'gw-console' });
    await row.first().waitFor({ timeout: 30_000 });
    await expect(page.evaluate(() => (window as unknown as { marker?: string }).marker)).resolves.toBe('same page');
    await expect(row.first().textContent()).resolves.toContain('gateway_loss');
    ticketId = Number(await row.first().getAttribute('data-ticket'));

    await row.first().locator('form[data-api$="/ack"] button').click();
    await page.locator(`#queue-rows tr[data-ticket="${ticketId}"] .status-acknowledged`).waitFor({ timeout: 15_000 });
    await expect(page.evaluate(() => (window as unknown as { marker?: string }).marker)).resolves.toBe('same page');
    const stored = await api<{ ticket: { status: string } }>('GET', `/api/v1/tickets/${ticketId}`);
    expect(stored.ticket.status).toBe('acknowledged');
  }, 90_000);

  it('shows who acted on the ticket page and in the audit trail', async () => {
    const { page } = browser;
    await page.goto(`${daemon.url}/tickets/${ticketId}`);
    await expect(page.locator('ul.acted').textContent()).resolves.toMatch(/olga\s+ticket\.ack/);
    const history = page.locator('#history tr', { hasText: 'acknowledged' });
    await expect(history.first().locator('.actor').textContent()).resolves.toBe('olga');

    await page.click('nav a[href="/audit"]');
    const entry = page.locator('#audit-rows tr', { hasText: `ticket:${ticketId}` }).filter({ hasText: 'ticket.ack' });
    await expect(entry.locator('.actor').textContent()).resolves.toBe('olga');
    await expect(entry.textContent()).resolves.toContain('127.0.0.1');
  }, 60_000);

  it('refuses a rollout abort to a viewer, says why, and records the refusal', async () => {
    const { page } = browser;
    await page.click('.who button[type=submit]'); // sign out
    await page.waitForURL(`${daemon.url}/login`);
    await signIn(page, daemon.url, viewer);
    await page.goto(`${daemon.url}/rollouts/${rolloutId}`);
    await expect(page.locator('#abort .needs').textContent()).resolves.toBe('needs admin');
    await page.fill('#abort input[name=reason]', 'trying anyway');
    await page.click('#abort button');
    const flash = page.locator('#flash.error');
    await flash.waitFor({ timeout: 10_000 });
    await expect(flash.textContent()).resolves.toMatch(/vera \(role viewer\) may not POST \/api\/v1\/rollouts\/:id\/abort: needs role admin/);
    expect(dialogs).toContain('confirm:Abort this rollout?');
    expect((await api<{ state: string }>('GET', `/api/v1/rollouts/${rolloutId}`)).state).toBe('scheduled');

    await page.goto(`${daemon.url}/audit?actor=vera`);
    const denied = page.locator('#audit-rows tr.denied', { hasText: `rollout:${rolloutId}` });
    await expect(denied.textContent()).resolves.toMatch(/denied.*403/s);
  }, 90_000);

  it('renders hostile text as text: no script runs', async () => {
    const { page } = browser;
    const hostile = `<img src=x onerror="alert('pwned')"><script>alert('pwned')</script>`;
    await api('POST', '/api/v1/tickets', { subject: 'gw-console', classification: 'consultative', severity: 'low', summary: hostile });
    await page.goto(`${daemon.url}/`);
    const cell = page.locator('#queue-rows td.summary', { hasText: "alert('pwned')" });
    await cell.first().waitFor({ timeout: 10_000 });
    await expect(cell.first().textContent()).resolves.toBe(hostile);
    await expect(page.locator('#queue-rows img').count()).resolves.toBe(0);
    // One live refresh has replaced the rows with the server's fragment (console.js keeps it in data-last): the
    // fragment is escaped too.
    await page.locator('#queue-rows[data-last]').waitFor({ state: 'attached', timeout: 20_000 });
    await expect(page.locator('#queue-rows img').count()).resolves.toBe(0);
    expect(dialogs.filter((d) => d.startsWith('alert'))).toEqual([]);
  }, 60_000);
});
