import type { Principal } from '../access/roles.js';
import type { TicketEvent } from '../tickets/ticket-model.js';
import type { OutboxEntry } from '../helpdesk/outbox.js';
import type { AuditEntry } from '../audit/audit-log.js';
import { html, age, seg, when, type Html } from './html.js';
import { actionForm, badge, layout } from './layout.js';

/** Everything the ticket page shows. */
export interface TicketPageData {
  ticket: Record<string, unknown>;
  events: TicketEvent[];
  deliveries: OutboxEntry[];
  /** Changes people made to this ticket (audit entries with target ticket:<id>). */
  audit: AuditEntry[];
}

const str = (v: unknown): string => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/**
 * The success engineer of an xcare_pro customer (RULES.md "Tiers"), when the ticket data carries the customer's
 * record: `successEngineer` on the ticket, or on a `customer` object. Nothing is shown when it is absent.
 */
function engineerOf(t: Record<string, unknown>): Html {
  const candidates = [t.successEngineer, (t.customerRecord as Record<string, unknown> | undefined)?.successEngineer, (t.customer as Record<string, unknown> | null)?.successEngineer];
  const e = candidates.find((c) => c !== undefined && c !== null);
  if (e === undefined) return html``;
  if (typeof e !== 'object') return html`<dt>Success engineer</dt><dd>${str(e)}</dd>`;
  const o = e as Record<string, unknown>;
  return html`<dt>Success engineer</dt><dd class="engineer">${str(o.name)}${o.email ? html` · <a href="mailto:${str(o.email)}">${str(o.email)}</a>` : ''}${o.phone ? html` · ${str(o.phone)}` : ''}</dd>`;
}

function ticketLinks(ids: unknown): Html {
  if (!Array.isArray(ids) || ids.length === 0) return html`-`;
  return html`${ids.map((id, i) => html`${i ? ', ' : ''}<a href="/tickets/${seg(String(id))}">#${String(id)}</a>`)}`;
}

function deviceLinks(ids: unknown): Html {
  if (!Array.isArray(ids) || ids.length === 0) return html`-`;
  return html`${ids.map((id, i) => html`${i ? ', ' : ''}<a href="/devices/${seg(String(id))}">${String(id)}</a>`)}`;
}

function eventRow(e: TicketEvent): Html {
  const { actor, by, ...rest } = e.data;
  const who = actor !== undefined ? html`<span class="actor">${str(actor)}</span>` : by === 'auto' || by === undefined ? html`<span class="auto">automatic</span>` : html`${str(by)}`;
  return html`<tr><td>${when(e.ts)}</td><td>${badge('event', e.type)}</td><td>${who}</td><td class="mono">${Object.keys(rest).length ? JSON.stringify(rest) : ''}</td></tr>`;
}

function deliveryRow(d: OutboxEntry): Html {
  const state = d.deliveredAt ? 'delivered' : d.deadAt ? 'dead' : 'pending';
  return html`<tr><td>${d.id}</td><td>${d.eventType}</td><td>${badge('delivery', state)}</td><td class="num">${d.attempts}</td><td>${when(d.deliveredAt ?? d.deadAt ?? d.nextAttemptAt)}</td><td class="mono">${d.lastError ?? ''}</td></tr>`;
}

/** The ticket page: the ticket, who acted, helpdesk deliveries, the full history with each step's actor. */
export function ticketPage(who: Principal, data: TicketPageData): Html {
  const t = data.ticket;
  const id = str(t.id);
  const reasons = Array.isArray(t.ineligibleReasons) ? (t.ineligibleReasons as unknown[]) : [];
  const acted = data.audit.filter((a) => a.status < 400);
  return layout(
    `Ticket #${id}`,
    'queue',
    who,
    html`<p class="crumbs"><a href="/">Queue</a> › Ticket #${id}</p>
<h1>#${id} ${str(t.summary)}</h1>
<div class="cols">
<section class="card">
<h2>Ticket</h2>
<dl class="kv">
<dt>Status</dt><dd>${badge('status', str(t.status))}</dd>
<dt>Severity</dt><dd>${badge('sev', str(t.severity))}</dd>
<dt>Kind</dt><dd>${str(t.kind)} <small>(${str(t.classification)}, ${str(t.origin)})</small></dd>
<dt>Subject</dt><dd>${t.deviceId ? html`<a href="/devices/${seg(str(t.deviceId))}">${str(t.subject)}</a>` : str(t.subject)}</dd>
<dt>Customer</dt><dd>${typeof t.customer === 'object' && t.customer !== null ? str((t.customer as Record<string, unknown>).name ?? (t.customer as Record<string, unknown>).id) : str(t.customer)}</dd>
${engineerOf(t)}
<dt>Band · score</dt><dd>${badge('band', str(t.band))} ${typeof t.score === 'number' ? t.score.toFixed(2) : '-'}</dd>
<dt>Tier</dt><dd>${str(t.tier)}</dd>
<dt>Age</dt><dd>${typeof t.ageS === 'number' ? age(t.ageS) : '-'} <small>opened ${when(str(t.openedAt))}</small></dd>
<dt>Acknowledged</dt><dd>${when(t.ackedAt as string | null)}</dd>
<dt>Resolved</dt><dd>${when(t.resolvedAt as string | null)}${t.resolveReason ? html` — ${str(t.resolveReason)}` : ''}</dd>
<dt>Parent</dt><dd>${t.parentId ? ticketLinks([t.parentId]) : '-'}</dd>
<dt>Children</dt><dd>${ticketLinks(t.children)}</dd>
<dt>Covers</dt><dd>${deviceLinks(t.covers)}</dd>
<dt>Eligible</dt><dd>${t.eligible ? badge('eligible', 'yes') : badge('eligible', 'no')}${reasons.length ? html`<ul class="reasons">${reasons.map((r) => html`<li>${str(r)}</li>`)}</ul>` : ''}</dd>
</dl>
<div class="actions">${t.status === 'open' ? actionForm(who, 'operator', `/api/v1/tickets/${id}/ack`, 'Ack', { id: 'ack' }) : ''}
${t.status !== 'resolved' ? actionForm(who, 'operator', `/api/v1/tickets/${id}/resolve`, 'Resolve', { fields: html`<input name="reason" placeholder="reason" required maxlength="2000">` }) : ''}</div>
</section>
<section class="card">
<h2>People who acted</h2>
${acted.length ? html`<ul class="acted">${acted.map((a) => html`<li><span class="actor">${a.actor}</span> ${a.action} <small>${when(a.ts)} from ${a.remote ?? '-'}</small></li>`)}</ul>` : html`<p class="empty">Nobody yet.</p>`}
<h2>Helpdesk deliveries</h2>
${data.deliveries.length ? html`<table class="grid" id="deliveries"><thead><tr><th>#</th><th>Event</th><th>State</th><th>Attempts</th><th>At</th><th>Last error</th></tr></thead><tbody>${data.deliveries.map(deliveryRow)}</tbody></table>` : html`<p class="empty">No webhook deliveries (webhook off, or nothing yet).</p>`}
</section>
</div>
<section class="card">
<h2>History</h2>
<table class="grid" id="history"><thead><tr><th>Time</th><th>Event</th><th>By</th><th>Data</th></tr></thead><tbody>${data.events.map(eventRow)}</tbody></table>
${Object.keys((t.details as object) ?? {}).length ? html`<h3>Details</h3><pre>${JSON.stringify(t.details, null, 2)}</pre>` : ''}
</section>`,
  );
}
