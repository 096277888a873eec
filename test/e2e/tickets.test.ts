import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { createHmac } from 'node:crypto';
import { startDaemon, startAgent, ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';

interface TicketJson {
  id: number;
  kind: string;
  subject: string;
  status: string;
  severity: string;
}

/**
 * Issue 3 end to end with real processes: a kill -9 of a real agent opens gateway_loss within
 * grace + 1 s; the agent back resolves it after resolveAfter; a kill -9 of the daemon right after a
 * ticket opens loses neither the ticket nor its outbox event.
 */
describe('end to end: liveness tickets from real agents', () => {
  const dir = tempDir('xcare-e2e-tickets-');
  let daemon: Daemon;
  let agent: RunningProcess | undefined;
  let token = '';
  const graceS = 1;
  const resolveAfterS = 2;
  const secret = 'helpdesk-shared-secret';
  // A real helpdesk endpoint: records every delivery with its headers and raw body.
  const deliveries: { event: string; key: string; signatureOk: boolean; body: { event: { type: string }; ticket?: { id: number; kind: string } } }[] = [];
  let helpdesk: Server;
  let daemonYaml = '';

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${daemon.url}${path}`, { headers: { authorization: `Bearer ${daemon.adminToken}` } });
    return (await res.json()) as T;
  };
  const lossTicket = async (status: 'open' | 'all') =>
    (await api<{ tickets: TicketJson[] }>(`/api/v1/tickets?status=${status}`)).tickets.find((t) => t.subject === 'gw-life' && t.kind === 'gateway_loss');
  const runAgent = () =>
    startAgent({ deviceId: 'gw-life', token, mqttPort: daemon.mqttPort, httpUrl: daemon.url, dir: join(dir.path, 'agent'), intervalS: 1 });

  beforeAll(async () => {
    helpdesk = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const expected = `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
        deliveries.push({
          event: String(req.headers['x-xcare-event']),
          key: String(req.headers['x-xcare-idempotency-key']),
          signatureOk: req.headers['x-xcare-signature'] === expected,
          body: JSON.parse(raw.toString('utf8')),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => helpdesk.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${(helpdesk.address() as { port: number }).port}/hooks/xcare`;
    daemonYaml =
      `health: { lastWillGraceS: ${graceS}, tickMs: 50, missedHeartbeats: 3 }\n` +
      `tickets: { resolveAfterS: ${resolveAfterS}, reopenWindowS: 3600 }\n` +
      `webhook: { url: "${hookUrl}", secret: ${secret}, backoffBaseMs: 100, backoffMaxMs: 1000 }\n`;
    daemon = await startDaemon(join(dir.path, 'daemon'), daemonYaml);
    const added = await ctl(daemon, ['device', 'add', 'gw-life', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
    expect(added.code, added.stderr).toBe(0);
    token = (JSON.parse(added.stdout) as { token: string }).token;
  });
  afterAll(async () => {
    await agent?.stop();
    await daemon?.stop();
    helpdesk?.close();
    dir.cleanup();
  });

  it('kill -9 of the agent opens gateway_loss (medium) within grace + 1 s', async () => {
    agent = runAgent();
    await eventually(async () => (await api<{ state: string }>('/api/v1/devices/gw-life')).state === 'online', 10_000, 'online');
    const killedAt = Date.now();
    await agent.kill9();
    agent = undefined;
    const ticket = await eventually(() => lossTicket('open'), (graceS + 1) * 1000 + 500, 'gateway_loss in the queue');
    expect(Date.now() - killedAt).toBeLessThan((graceS + 1) * 1000 + 500);
    expect(ticket.severity).toBe('medium');
    const queue = await ctl(daemon, ['tickets']);
    expect(queue.stdout).toContain('gateway_loss');
  });

  it('the agent back resolves the ticket after resolveAfter', async () => {
    agent = runAgent();
    const backAt = await eventually(async () => ((await api<{ state: string }>('/api/v1/devices/gw-life')).state === 'online' ? Date.now() : 0), 10_000, 'back online');
    expect(await lossTicket('open')).toBeDefined(); // not resolved at once
    const resolved = await eventually(
      async () => {
        const t = await lossTicket('all');
        return t?.status === 'resolved' ? t : undefined;
      },
      (resolveAfterS + 3) * 1000,
      'ticket resolved',
    );
    expect(Date.now() - backAt).toBeGreaterThanOrEqual(resolveAfterS * 1000 - 500);
    expect(resolved.kind).toBe('gateway_loss');
  });

  it('kill -9 of the daemon right after a ticket opens loses neither ticket nor outbox event', async () => {
    const opened = await ctl(daemon, ['ticket', 'open', '--subject', 'gw-life', '--classification', 'consultative', '--summary', 'how do I rotate tokens?', '--json']);
    expect(opened.code, opened.stderr).toBe(0);
    await daemon.kill9();
    daemon = await startDaemon(daemon.dataDir, daemonYaml, { mqtt: daemon.mqttPort, http: daemon.httpPort });
    const all = (await api<{ tickets: (TicketJson & { summary: string })[] }>('/api/v1/tickets?status=all')).tickets;
    const consult = all.find((t) => t.summary === 'how do I rotate tokens?');
    expect(consult?.status).toBe('open');
    const outbox = await api<{ entries: { ticketId: number; eventType: string }[] }>('/api/v1/outbox?state=all');
    expect(outbox.entries.some((e) => e.ticketId === consult!.id && e.eventType === 'opened')).toBe(true);
    // The gateway_loss history survived too.
    expect(all.some((t) => t.kind === 'gateway_loss' && t.status === 'resolved')).toBe(true);
    // The helpdesk got the consultative ticket's event, after the restart if not before.
    await eventually(() => deliveries.some((d) => d.body.ticket?.id === consult!.id && d.event === 'opened'), 30_000, 'opened delivered');
  });

  it('the helpdesk received every ticket event signed, in order per ticket, once per idempotency key', async () => {
    expect(deliveries.length).toBeGreaterThan(0);
    expect(deliveries.every((d) => d.signatureOk)).toBe(true);
    const unique = new Map(deliveries.map((d) => [d.key, d]));
    const lossEvents = [...unique.values()].filter((d) => d.body.ticket?.kind === 'gateway_loss').map((d) => d.event);
    expect(lossEvents[0]).toBe('opened');
    expect(lossEvents).toContain('resolved');
    expect(lossEvents.indexOf('resolved')).toBeGreaterThan(lossEvents.indexOf('opened'));
  });
});
