import { parseArgs } from 'node:util';
import { CliError, onePositional, type Command } from '../command.js';
import { table } from '../cli-context.js';

const TICKET_ID = /^[1-9]\d*$/;

interface QueueItemJson {
  rank: number | null;
  id: number;
  band: string;
  score: number;
  severity: string;
  tier: string;
  kind: string;
  subject: string;
  status: string;
  ageS: number;
  summary: string;
  children: QueueItemJson[];
}

/** 95 -> "1m35s", 7260 -> "2h01m": the wait a support engineer reads at a glance. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

const queue: Command = {
  name: ['tickets'],
  summary: 'the support queue in priority order (RULES.md "Support queue order")',
  usage: 'xcarectl tickets [--status open|all] [--kind K] [--severity S] [--subject ID] [--customer C] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        status: { type: 'string', default: 'open' },
        kind: { type: 'string' },
        severity: { type: 'string' },
        subject: { type: 'string' },
        customer: { type: 'string' },
      },
    });
    if (positionals.length > 0) throw new CliError(`usage: ${queue.usage}`, 2);
    if (values.status !== 'open' && values.status !== 'all') throw new CliError('--status must be open or all', 2);
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v !== undefined) query.set(k, String(v));
    const res = await ctx.api<{ tickets: QueueItemJson[] }>('GET', `/api/v1/tickets?${query}`);
    if (ctx.json) return ctx.printJson(res.tickets);
    if (res.tickets.length === 0) return ctx.print(values.status === 'open' ? 'no open tickets' : 'no tickets');
    const rows: (string | number | null)[][] = [];
    for (const t of res.tickets) {
      rows.push([t.rank, t.id, t.band, t.score.toFixed(2), t.severity, t.tier, t.kind, t.subject, t.status, formatAge(t.ageS), t.summary]);
      // Children are listed under their parent and take no rank: they do not count in the queue.
      for (const c of t.children) {
        rows.push(['', `└ ${c.id}`, c.band, c.score.toFixed(2), c.severity, c.tier, c.kind, c.subject, c.status, formatAge(c.ageS), c.summary]);
      }
    }
    ctx.print(table(['RANK', 'ID', 'BAND', 'SCORE', 'SEVERITY', 'TIER', 'KIND', 'SUBJECT', 'STATUS', 'AGE', 'SUMMARY'], rows));
  },
};

const show: Command = {
  name: ['ticket', 'show'],
  summary: 'one ticket with its eligibility and full event history',
  usage: 'xcarectl ticket show ID [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, show.usage, TICKET_ID);
    const res = await ctx.api<{ ticket: Record<string, unknown>; events: { ts: string; type: string; data: unknown }[] }>('GET', `/api/v1/tickets/${id}`);
    if (ctx.json) return ctx.printJson(res);
    for (const [k, v] of Object.entries(res.ticket)) {
      ctx.print(`${k.padEnd(18)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
    }
    ctx.print('');
    ctx.print(table(['TIME', 'EVENT', 'DATA'], res.events.map((e) => [e.ts, e.type, JSON.stringify(e.data)])));
  },
};

const ack: Command = {
  name: ['ticket', 'ack'],
  summary: 'acknowledge a ticket',
  usage: 'xcarectl ticket ack ID [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, ack.usage, TICKET_ID);
    const res = await ctx.api<{ ticket: { id: number; status: string } }>('POST', `/api/v1/tickets/${id}/ack`, {});
    if (ctx.json) return ctx.printJson(res.ticket);
    ctx.print(`ticket ${res.ticket.id} ${res.ticket.status}`);
  },
};

const resolve: Command = {
  name: ['ticket', 'resolve'],
  summary: 'resolve a ticket with a reason',
  usage: 'xcarectl ticket resolve ID --reason R [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { reason: { type: 'string' } } });
    const id = onePositional(positionals, resolve.usage, TICKET_ID);
    if (!values.reason?.trim()) throw new CliError('--reason is required', 2);
    const res = await ctx.api<{ ticket: { id: number; status: string } }>('POST', `/api/v1/tickets/${id}/resolve`, { reason: values.reason });
    if (ctx.json) return ctx.printJson(res.ticket);
    ctx.print(`ticket ${res.ticket.id} ${res.ticket.status}`);
  },
};

const open: Command = {
  name: ['ticket', 'open'],
  summary: 'open a ticket by hand (consultative defaults to severity low)',
  usage: 'xcarectl ticket open --subject ID --classification consultative|problem [--severity urgent|high|medium|low] --summary TEXT [--kind K] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        subject: { type: 'string' },
        classification: { type: 'string' },
        severity: { type: 'string' },
        summary: { type: 'string' },
        kind: { type: 'string' },
      },
    });
    if (positionals.length > 0) throw new CliError(`usage: ${open.usage}`, 2);
    for (const required of ['subject', 'classification', 'summary'] as const) {
      if (!values[required]) throw new CliError(`--${required} is required`, 2);
    }
    const res = await ctx.api<{ ticket: { id: number; severity: string; band: string; tier: string } }>('POST', '/api/v1/tickets', values);
    if (ctx.json) return ctx.printJson(res.ticket);
    ctx.print(`ticket ${res.ticket.id} opened (${res.ticket.severity}, ${res.ticket.band}, tier ${res.ticket.tier})`);
  },
};

export const commands: Command[] = [queue, show, ack, resolve, open];
