import type { Principal } from '../access/roles.js';
import type { QueueItem } from '../tickets/ticket-service.js';
import { SEVERITIES, TICKET_KINDS } from '../tickets/types.js';
import { html, age, seg, type Html } from './html.js';
import { actionForm, badge, layout } from './layout.js';

/** Queue filters the page understands (the API's, RULES.md "Support queue order"). */
export interface QueueQuery {
  status: 'open' | 'all';
  kind?: string;
  severity?: string;
  customer?: string;
  subject?: string;
}

/** Queue filters from a query string; unknown kinds or severities are ignored (a page never errors on a filter). */
export function queueQueryFrom(query: URLSearchParams): QueueQuery {
  const q: QueueQuery = { status: query.get('status') === 'all' ? 'all' : 'open' };
  const kind = query.get('kind');
  if (kind && (TICKET_KINDS as readonly string[]).includes(kind)) q.kind = kind;
  const severity = query.get('severity');
  if (severity && (SEVERITIES as readonly string[]).includes(severity)) q.severity = severity;
  const customer = query.get('customer');
  if (customer) q.customer = customer.slice(0, 200);
  const subject = query.get('subject');
  if (subject) q.subject = subject.slice(0, 200);
  return q;
}

function queryString(q: QueueQuery): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && !(k === 'status' && v === 'open')) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

function ticketActions(who: Principal, t: QueueItem): Html {
  if (t.status === 'resolved') return html``;
  const id = String(t.id);
  return html`${t.status === 'open' ? actionForm(who, 'operator', `/api/v1/tickets/${id}/ack`, 'Ack') : ''}${actionForm(
    who,
    'operator',
    `/api/v1/tickets/${id}/resolve`,
    'Resolve…',
    { prompt: { field: 'reason', question: `Resolve ticket #${id}: reason?` } },
  )}`;
}

function row(who: Principal, t: QueueItem, child: boolean): Html {
  const subjectIsDevice = typeof t.deviceId === 'string' && t.deviceId !== '';
  return html`<tr class="${child ? 'child' : 'top'} row-${t.status === 'acknowledged' ? 'acknowledged' : t.status === 'resolved' ? 'resolved' : 'open'}" data-ticket="${t.id}">
<td class="num">${t.rank ?? ''}</td>
<td><a href="/tickets/${t.id}">${child ? '└ ' : ''}#${t.id}</a></td>
<td>${badge('band', String(t.band))}</td>
<td class="num">${Number(t.score).toFixed(2)}</td>
<td>${badge('sev', String(t.severity))}</td>
<td>${String(t.tier)}</td>
<td>${String(t.kind)}</td>
<td>${subjectIsDevice ? html`<a href="/devices/${seg(String(t.deviceId))}">${String(t.subject)}</a>` : String(t.subject)}</td>
<td>${badge('status', String(t.status))}</td>
<td class="num">${age(t.ageS)}</td>
<td class="summary">${String(t.summary ?? '')}</td>
<td class="actions">${ticketActions(who, t)}</td>
</tr>`;
}

/** The queue's rows (the live region the page polls): parents in queue order, each child under its parent. */
export function queueRows(who: Principal, items: QueueItem[]): Html {
  if (items.length === 0) return html`<tr><td colspan="12" class="empty">No tickets match.</td></tr>`;
  return html`${items.map((t) => html`${row(who, t, false)}${t.children.map((c) => row(who, c, true))}`)}`;
}

/** The Queue page: filters, the live queue table and the "open a ticket" form. */
export function queuePage(who: Principal, q: QueueQuery, items: QueueItem[]): Html {
  const option = (value: string, current: string | undefined, label = value) =>
    html`<option value="${value}"${value === (current ?? '') ? html` selected` : ''}>${label}</option>`;
  const open = items.length;
  return layout(
    'Queue',
    'queue',
    who,
    html`<h1>Support queue <small>${open} ${q.status === 'open' ? 'open' : ''} ticket${open === 1 ? '' : 's'}, live</small></h1>
<form class="filters" method="get" action="/">
  <label>Status <select name="status">${option('open', q.status)}${option('all', q.status)}</select></label>
  <label>Severity <select name="severity">${option('', q.severity, 'any')}${SEVERITIES.map((s) => option(s, q.severity))}</select></label>
  <label>Kind <select name="kind">${option('', q.kind, 'any')}${TICKET_KINDS.map((k) => option(k, q.kind))}</select></label>
  <label>Customer <input name="customer" value="${q.customer ?? ''}" size="10"></label>
  <label>Subject <input name="subject" value="${q.subject ?? ''}" size="10"></label>
  <button type="submit">Filter</button> <a href="/">clear</a>
</form>
<table class="grid queue">
<thead><tr><th>Rank</th><th>Ticket</th><th>Band</th><th>Score</th><th>Severity</th><th>Tier</th><th>Kind</th><th>Subject</th><th>Status</th><th>Age</th><th>Summary</th><th></th></tr></thead>
<tbody id="queue-rows" data-live="/console/queue/rows${queryString(q)}">${queueRows(who, items)}</tbody>
</table>
<details class="open-ticket"><summary>Open a ticket</summary>
${actionForm(who, 'operator', '/api/v1/tickets', 'Open ticket', {
  id: 'open-ticket',
  fields: html`<label>Subject <input name="subject" required></label>
<label>Classification <select name="classification"><option>problem</option><option>consultative</option></select></label>
<label>Severity <select name="severity">${SEVERITIES.map((s) => html`<option>${s}</option>`)}</select></label>
<label>Summary <input name="summary" required maxlength="500" size="40"></label>`,
})}
</details>`,
  );
}
