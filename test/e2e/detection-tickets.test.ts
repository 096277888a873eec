import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { startDaemon, ctl, eventually, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { SimDevice } from '../helpers/sim-device.js';
import { allTickets, api, provision, type TicketJson } from '../helpers/detection-fixtures.js';

/**
 * Issue 8, faults 8-10 end to end: the real xcared, real MQTT devices, people acting through the real xcarectl.
 * The June 30 expiry is reached by stepping the daemon's wall clock (XCARE_WALL_OFFSET_FILE).
 */
const DIGEST = `sha256:${'c'.repeat(64)}`;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(yaml: string, env?: NodeJS.ProcessEnv): Promise<{ daemon: Daemon; device: (id: string, extra?: () => Record<string, unknown>) => Promise<SimDevice> }> {
  const dir = tempDir('xcare-e2e-tickets8-');
  const daemon = await startDaemon(join(dir.path, 'daemon'), yaml, undefined, env);
  cleanups.push(() => dir.cleanup(), () => daemon.stop());
  // Eligible devices: the digest of the version they run is registered.
  await api(daemon, '/api/v1/integrity', { method: 'POST', body: JSON.stringify({ version: '2.3.1', digest: DIGEST }) });
  const device = async (id: string, extra?: () => Record<string, unknown>) => {
    const tokens = await provision(daemon, [{ id, type: 'gateway', customer: 'acme', tier: 'xcare' }]);
    const d = new SimDevice({ id, token: tokens.get(id)!, url: `mqtt://127.0.0.1:${daemon.mqttPort}`, intervalS: 1, softwareVersion: '2.3.1', integrity: DIGEST, extra });
    d.start();
    cleanups.push(() => d.stop());
    await eventually(async () => (await api<{ state: string }>(daemon, `/api/v1/devices/${id}`)).state === 'online', 20_000, `${id} online`);
    return d;
  };
  return { daemon, device };
}

const ticketOf = async (daemon: Daemon, subject: string, kind?: string) =>
  (await allTickets(daemon)).find((t) => t.subject === subject && (!kind || t.kind === kind));
const detail = (daemon: Daemon, id: number) =>
  api<{ ticket: TicketJson & { classification: string; kind: string }; events: { type: string; data: Record<string, unknown> }[] }>(daemon, `/api/v1/tickets/${id}`);

describe('end to end: tickets against people and time (issue 8)', () => {
  it('fault 10: a person resolves a ticket while the gateway is still lost: it reopens at the next evaluation, saying so', async () => {
    const { daemon, device } = await setup('health: { missedHeartbeats: 3, lastWillGraceS: 2 }');
    (await device('gw-r')).kill();
    const t = await eventually(() => ticketOf(daemon, 'gw-r', 'gateway_loss'), 20_000, 'gateway_loss');
    const resolved = await ctl(daemon, ['ticket', 'resolve', String(t.id), '--reason', 'looks fine from here']);
    expect(resolved.code, resolved.stderr).toBe(0);
    const reopened = await eventually(async () => {
      const d = await detail(daemon, t.id);
      return d.ticket.status === 'open' && d.events.some((e) => e.type === 'reopened') ? d : undefined;
    }, 15_000, 'reopened');
    expect(reopened.events.find((e) => e.type === 'reopened')?.data).toMatchObject({ cause: 'resolved_while_holding' });
  }, 60_000);

  it('fault 9: over the fair-use cap, a gateway loss folds into the newest automatic ticket, never into the question a person opened', async () => {
    const { daemon, device } = await setup('health: { missedHeartbeats: 3, lastWillGraceS: 2 }\ntickets: { maxTicketsPerDay: 1, resolveAfterS: 1, reopenWindowS: 1 }');
    let failing = true;
    const d = await device('gw-f', () => (failing ? { subsystems: [{ name: 'modbus', ok: false, detail: 'timeout' }] } : {}));
    const auto = await eventually(() => ticketOf(daemon, 'gw-f', 'gateway_partial'), 15_000, 'the day\'s one automatic ticket');
    failing = false;
    await eventually(async () => (await detail(daemon, auto.id)).ticket.status === 'resolved', 15_000, 'auto ticket resolved');
    const asked = await ctl(daemon, ['ticket', 'open', '--subject', 'gw-f', '--classification', 'consultative', '--summary', 'how do I rotate tokens?', '--json']);
    expect(asked.code, asked.stderr).toBe(0);
    const question = JSON.parse(asked.stdout) as { id: number };
    await new Promise((r) => setTimeout(r, 1500)); // past the reopen window
    d.kill();
    await eventually(async () => (await detail(daemon, auto.id)).events.some((e) => e.type === 'folded'), 20_000, 'folded into the automatic ticket');
    const q = await detail(daemon, question.id);
    expect(q.ticket).toMatchObject({ status: 'open', severity: 'low', classification: 'consultative' });
    expect(q.events.map((e) => e.type)).toEqual(['opened']);
    expect((await detail(daemon, auto.id)).ticket).toMatchObject({ status: 'open', severity: 'medium' });
  }, 90_000);

  it('fault 8: a paid ticket opened before the June 30 expiry stays paid when updated after it; its reasons record the expiry', async () => {
    const offsetDir = tempDir('xcare-offset8-');
    cleanups.push(() => offsetDir.cleanup());
    const offsetFile = join(offsetDir.path, 'offset');
    writeFileSync(offsetFile, '0');
    const { daemon, device } = await setup('health: { missedHeartbeats: 3 }', { XCARE_WALL_OFFSET_FILE: offsetFile });
    let faults = [{ name: 'modbus', ok: false, detail: 'timeout' }];
    await device('gw-x', () => ({ subsystems: faults }));
    const t = await eventually(() => ticketOf(daemon, 'gw-x', 'gateway_partial'), 15_000, 'ticket');
    expect(t).toMatchObject({ band: 'paid', tier: 'xcare' });
    const end = (await api<{ subscriptionEnd: string }>(daemon, '/api/v1/devices/gw-x')).subscriptionEnd;
    // The daemon's date passes the device's June 30.
    writeFileSync(offsetFile, String(Date.parse(`${end}T23:59:59Z`) + 86_400_000 - Date.now()));
    await eventually(async () => (await api<{ state: string }>(daemon, '/api/v1/devices/gw-x/eligibility')).state === 'expired', 10_000, 'expired');
    faults = [...faults, { name: 'lte', ok: false, detail: 'no carrier' }];
    const updated = await eventually(async () => {
      const d = await detail(daemon, t.id);
      return d.events.some((e) => e.type === 'updated') ? d : undefined;
    }, 15_000, 'updated after the expiry');
    expect(updated.ticket).toMatchObject({ band: 'paid', tier: 'xcare', eligible: true });
    expect(updated.ticket.ineligibleReasons.join(' ')).toMatch(/expired/);
    const queue = await api<{ tickets: TicketJson[] }>(daemon, '/api/v1/tickets?status=open');
    expect(queue.tickets.find((q) => q.id === t.id)?.band).toBe('paid');
  }, 60_000);
});
