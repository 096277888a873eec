import { z } from 'zod';
import { noBody, type Router } from '../router.js';
import type { TicketService, QueueFilter } from '../../tickets/ticket-service.js';
import { ticketView } from '../../tickets/ticket-model.js';
import type { Outbox, OutboxState } from '../../helpdesk/outbox.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { encodeCursor, parsePage } from '../paging.js';
import { SEVERITIES, TICKET_KINDS, type Severity, type TicketKind } from '../../tickets/types.js';

export interface TicketRouteDeps {
  tickets: TicketService;
  outbox: Outbox;
}

/** `POST /api/v1/tickets`: the shape here, the rules (severity defaults, subject exists) in parseOpenInput. */
const openBody = z.strictObject({
  subject: z.string().max(200),
  classification: z.string().max(32),
  severity: z.string().max(16).nullable().optional(),
  summary: z.string().max(2000),
  kind: z.string().max(64).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});
const resolveBody = z.strictObject({ reason: z.string().max(2000) });

function parseId(raw: string | undefined, what = 'ticket'): number {
  if (!raw || !/^[1-9]\d{0,15}$/.test(raw)) throw new ValidationError(`${what} id: expected a positive integer`);
  return Number(raw);
}

function parseLimit(raw: string | null, max = 1000): number | undefined {
  if (raw === null) return undefined;
  if (!/^[1-9]\d{0,5}$/.test(raw) || Number(raw) > max) throw new ValidationError(`limit: expected an integer 1..${max}`);
  return Number(raw);
}

/** Outbox entries newest first, keyset-paged on the id. */
function outboxPage(outbox: Outbox, state: OutboxState, query: URLSearchParams): { entries: unknown[]; nextCursor: string | null } {
  const page = parsePage(query);
  if (page.after !== undefined && (typeof page.after !== 'number' || !Number.isInteger(page.after))) throw new ValidationError('cursor: invalid');
  const limit = page.limit ?? 100;
  const rows = outbox.list(state, limit + 1, page.after as number | undefined);
  const entries = rows.slice(0, limit);
  return { entries, nextCursor: rows.length > limit ? encodeCursor(entries[entries.length - 1]!.id) : null };
}

/** Tickets, the support queue (PROTOCOL.md "HTTP": GET /api/v1/tickets?status=open in priority order) and the outbox. */
export function registerTicketRoutes(router: Router, deps: TicketRouteDeps): void {
  router.get('/api/v1/tickets', 'admin', ({ query }) => {
    const status = query.get('status') ?? 'open';
    if (status !== 'open' && status !== 'all') throw new ValidationError('status: expected open or all');
    // `resolved` caps the resolved tickets that follow the queue with status=all (newest first, default 200).
    const filter: QueueFilter = { status, limit: parseLimit(query.get('resolved')) };
    const kind = query.get('kind');
    if (kind !== null) {
      if (!TICKET_KINDS.includes(kind as TicketKind)) throw new ValidationError(`kind: unknown ticket kind ${JSON.stringify(kind)}`);
      filter.kind = kind;
    }
    const severity = query.get('severity');
    if (severity !== null) {
      if (!SEVERITIES.includes(severity as Severity)) throw new ValidationError('severity: expected urgent, high, medium or low');
      filter.severity = severity;
    }
    const subject = query.get('subject');
    if (subject) filter.subject = subject;
    const customer = query.get('customer');
    if (customer) filter.customer = customer;
    const all = deps.tickets.queue(filter);
    // The queue is a live priority order (scores grow with age), so a page continues after the ticket that ended
    // the previous one, in the order as it is now; when that ticket has left the queue the client starts over.
    const page = parsePage(query);
    let start = 0;
    if (page.after !== undefined) {
      const index = all.findIndex((t) => t.id === page.after);
      if (index < 0) throw new ConflictError('cursor: the ticket that ended the previous page has left this list; start again without a cursor');
      start = index + 1;
    }
    const items = page.limit === undefined ? all.slice(start) : all.slice(start, start + page.limit);
    const more = page.limit !== undefined && start + page.limit < all.length;
    return { status, tickets: items, nextCursor: more ? encodeCursor(items[items.length - 1]!.id) : null };
  });

  router.get('/api/v1/tickets/:id', 'admin', ({ params }) => {
    const id = parseId(params.id);
    const detail = deps.tickets.detail(id);
    if (!detail) throw new NotFoundError(`ticket ${id} not found`);
    return detail;
  });

  router.post('/api/v1/tickets', 'admin', async (ctx) => {
    const ticket = deps.tickets.openByPerson((await ctx.json(openBody)) as never, ctx.principal?.name);
    ctx.res.statusCode = 201;
    return { ticket: ticketView(ticket) };
  }, { role: 'operator' });

  router.post(
    '/api/v1/tickets/:id/ack',
    'admin',
    async (ctx) => {
      const id = parseId(ctx.params.id);
      await ctx.json(noBody, { absent: 'empty' });
      return { ticket: ticketView(deps.tickets.ack(id, ctx.principal?.name)) };
    },
    { role: 'operator' },
  );

  router.post('/api/v1/tickets/:id/resolve', 'admin', async (ctx) => {
    const id = parseId(ctx.params.id);
    const body = await ctx.json(resolveBody);
    return { ticket: ticketView(deps.tickets.resolve(id, body.reason, ctx.principal?.name)) };
  }, { role: 'operator' });

  router.get('/api/v1/outbox', 'admin', ({ query }) => {
    const state = query.get('state') ?? 'pending';
    if (!['pending', 'delivered', 'dead', 'all'].includes(state)) throw new ValidationError('state: expected pending, delivered, dead or all');
    return {
      state,
      pending: deps.outbox.pendingCount(),
      dead: deps.outbox.deadCount(),
      ...outboxPage(deps.outbox, state as OutboxState, query),
    };
  });

  router.post('/api/v1/outbox/:id/retry', 'admin', async (ctx) => {
    const id = parseId(ctx.params.id, 'outbox');
    await ctx.json(noBody, { absent: 'empty' });
    const existing = deps.outbox.get(id);
    if (!existing) throw new NotFoundError(`outbox entry ${id} not found`);
    if (existing.deadAt === null) throw new ValidationError(`outbox entry ${id} is not a dead letter`);
    return { entry: deps.outbox.retry(id) };
  });
}
