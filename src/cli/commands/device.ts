import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CliError, onePositional, type Command } from '../command.js';
import { table } from '../cli-context.js';
import { isCalendarDate } from '../../protocol/rfc3339.js';

interface DeviceJson {
  id: string;
  type: string;
  parent: string | null;
  customer: string;
  installer: string;
  tier: string;
  subscriptionEnd: string | null;
  state?: string;
  lastSeen?: string | null;
  softwareVersion?: string | null;
  tags: string[];
}

const add: Command = {
  name: ['device', 'add'],
  summary: 'provision a device and print its token (shown once)',
  usage:
    'xcarectl device add ID --type gateway|sensor [--parent GW] --customer C --installer CONTRACTOR --tier none|xcare|xcare_pro [--since YYYY-MM-DD] [--tag T ...]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        type: { type: 'string' },
        parent: { type: 'string' },
        customer: { type: 'string' },
        installer: { type: 'string' },
        tier: { type: 'string' },
        since: { type: 'string' },
        tag: { type: 'string', multiple: true },
      },
    });
    const id = onePositional(positionals, add.usage);
    for (const required of ['type', 'customer', 'installer'] as const) {
      if (!values[required]) throw new CliError(`--${required} is required`, 2);
    }
    if (values.since !== undefined && !isCalendarDate(values.since)) throw new CliError(`--since: '${values.since}' is not a calendar date YYYY-MM-DD`, 2);
    const res = await ctx.api<{ device: DeviceJson; token: string }>('POST', '/api/v1/devices', {
      id,
      type: values.type,
      parent: values.parent,
      customer: values.customer,
      installer: values.installer,
      tier: values.tier ?? 'none',
      since: values.since,
      tags: values.tag ?? [],
    });
    if (ctx.json) ctx.printJson(res);
    else {
      ctx.print(`device ${res.device.id} provisioned (${res.device.type}, ${res.device.tier}${res.device.subscriptionEnd ? `, until ${res.device.subscriptionEnd}` : ''})`);
      ctx.print(`token: ${res.token}`);
      ctx.print('The token is shown once: put it in the agent configuration now.');
    }
  },
};

const list: Command = {
  name: ['device', 'list'],
  summary: 'list devices (filters: --type --tier --customer --installer --parent --tag --state)',
  usage: 'xcarectl device list [--type T] [--tier T] [--customer C] [--installer I] [--parent GW] [--tag T] [--state S] [--revoked] [--json]',
  async run(argv, ctx) {
    const { values } = parseArgs({
      args: argv,
      options: {
        type: { type: 'string' },
        tier: { type: 'string' },
        customer: { type: 'string' },
        installer: { type: 'string' },
        parent: { type: 'string' },
        tag: { type: 'string' },
        state: { type: 'string' },
        revoked: { type: 'boolean' },
      },
    });
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== false) query.set(k, String(v));
    const res = await ctx.api<{ devices: DeviceJson[] }>('GET', `/api/v1/devices${query.size ? `?${query}` : ''}`);
    if (ctx.json) return ctx.printJson(res.devices);
    ctx.print(
      table(
        ['ID', 'TYPE', 'PARENT', 'CUSTOMER', 'TIER', 'STATE', 'SOFTWARE', 'LAST SEEN'],
        res.devices.map((d) => [d.id, d.type, d.parent, d.customer, d.tier, d.state, d.softwareVersion, d.lastSeen]),
      ),
    );
  },
};

const show: Command = {
  name: ['device', 'show'],
  summary: 'show one device with its last heartbeat',
  usage: 'xcarectl device show ID [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, show.usage);
    const res = await ctx.api<Record<string, unknown>>('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
    if (ctx.json) return ctx.printJson(res);
    for (const [k, v] of Object.entries(res)) {
      if (k === 'lastHeartbeat') continue;
      ctx.print(`${k.padEnd(18)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
    }
    if (res.lastHeartbeat) ctx.print(`lastHeartbeat      ${JSON.stringify(res.lastHeartbeat)}`);
  },
};

const revoke: Command = {
  name: ['device', 'revoke'],
  summary: 'revoke a device: its connection is closed and its token refused',
  usage: 'xcarectl device revoke ID',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, revoke.usage);
    const res = await ctx.api<{ device: DeviceJson }>('POST', `/api/v1/devices/${encodeURIComponent(id)}/revoke`);
    if (ctx.json) ctx.printJson(res);
    else ctx.print(`device ${id} revoked`);
  },
};

const importCsv: Command = {
  name: ['device', 'import'],
  summary: 'provision devices from a CSV file (id,type,parent,customer,installer,tier,since,tags)',
  usage: 'xcarectl device import FILE.csv [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const file = onePositional(positionals, importCsv.usage);
    let body: string;
    try {
      body = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
    }
    const res = await ctx.fetch('/api/v1/devices/import', { method: 'POST', headers: { 'content-type': 'text/csv' }, body });
    const data = (await res.json()) as { devices?: { id: string; token: string }[]; error?: string };
    if (!res.ok) throw new CliError(`${data.error ?? 'import failed'} (HTTP ${res.status})`);
    if (ctx.json) return ctx.printJson(data.devices);
    ctx.print(table(['ID', 'TOKEN'], data.devices!.map((d) => [d.id, d.token])));
    ctx.print(`${data.devices!.length} devices provisioned; tokens are shown once.`);
  },
};

const rotateToken: Command = {
  name: ['device', 'rotate-token'],
  summary: 'give a device a new token (the old one stops working at once); also re-enables a revoked device',
  usage: 'xcarectl device rotate-token ID [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, rotateToken.usage);
    const res = await ctx.api<{ device: DeviceJson; token: string; reenabled: boolean }>(
      'POST',
      `/api/v1/devices/${encodeURIComponent(id)}/rotate-token`,
    );
    if (ctx.json) return ctx.printJson(res);
    ctx.print(`device ${id}: new token${res.reenabled ? ' (device re-enabled)' : ''}; the old token no longer works`);
    ctx.print(`token: ${res.token}`);
    ctx.print('The token is shown once: write it to the agent\'s tokenFile (it reconnects with it on its own).');
  },
};

export const commands: Command[] = [add, list, show, revoke, importCsv, rotateToken];
