import { createServer, type Server } from 'node:http';
import type { Daemon } from './processes.js';

/** Shared by the detection end-to-end tests and the detection bench (issue 8). */

export interface Delivery {
  at: number;
  event: string;
  ticket?: { id: number; kind: string; subject: string; parentId: number | null; successEngineer?: unknown };
}

/** A real helpdesk endpoint on loopback that records every webhook delivery (answers 204). */
export async function startHelpdesk(): Promise<{ url: string; deliveries: Delivery[]; close(): void; server: Server }> {
  const deliveries: Delivery[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { ticket?: Delivery['ticket'] };
        deliveries.push({ at: Date.now(), event: String(req.headers['x-xcare-event']), ticket: body.ticket });
      } catch {
        /* not ours */
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks`, deliveries, close: () => server.close(), server };
}

export async function api<T>(daemon: Pick<Daemon, 'url' | 'adminToken'>, path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${daemon.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${daemon.adminToken}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as T;
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

export interface DeviceSpec {
  id: string;
  type: 'gateway' | 'sensor';
  parent?: string;
  customer: string;
  tier?: 'none' | 'xcare' | 'xcare_pro';
}

/** Provision devices in one import (all or nothing); returns id -> token. */
export async function provision(daemon: Pick<Daemon, 'url' | 'adminToken'>, devices: DeviceSpec[]): Promise<Map<string, string>> {
  const body = { devices: devices.map((d) => ({ installer: 'minnovation', tier: 'xcare', ...d })) };
  const res = await api<{ devices: { id: string; token: string }[] }>(daemon, '/api/v1/devices/import', { method: 'POST', body: JSON.stringify(body) });
  return new Map(res.devices.map((d) => [d.id, d.token]));
}

export interface TicketJson {
  id: number;
  kind: string;
  subject: string;
  status: string;
  severity: string;
  eligible: boolean;
  tier: string;
  band: string;
  ineligibleReasons: string[];
  openedAt: string;
}

/** Every ticket ever opened (open and resolved). */
export async function allTickets(daemon: Pick<Daemon, 'url' | 'adminToken'>): Promise<TicketJson[]> {
  return (await api<{ tickets: TicketJson[] }>(daemon, '/api/v1/tickets?status=all&limit=1000')).tickets;
}

/** /readyz as it answers: status code and body. */
export async function readyz(daemon: Pick<Daemon, 'url'>): Promise<{ status: number; body: { status: string; reasons?: string[] } }> {
  const res = await fetch(`${daemon.url}/readyz`, { signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: (await res.json()) as { status: string; reasons?: string[] } };
}
