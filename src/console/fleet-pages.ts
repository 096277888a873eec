import type { Principal } from '../access/roles.js';
import type { DeviceListItem } from '../http/device-list.js';
import type { DeviceEvent } from '../registry/device-events.js';
import type { QueueItem } from '../tickets/ticket-service.js';
import { html, age, seg, when, type Html } from './html.js';
import { badge, layout } from './layout.js';

/** Fleet filters (the device list's, src/http/device-list.ts). */
export const FLEET_FILTERS = ['q', 'type', 'tier', 'state', 'customer', 'tag'] as const;
const STATES = ['online', 'offline', 'lost', 'restarting', 'unknown', 'revoked'];

/** A Fleet row: the device list item plus its eligibility now. */
export interface FleetRow extends DeviceListItem {
  eligible: boolean | null;
  eligibilityReasons: string[];
}

const str = (v: unknown): string => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));

function fleetRow(d: FleetRow): Html {
  return html`<tr data-device="${d.id}">
<td><a href="/devices/${seg(d.id)}">${d.id}</a></td>
<td>${d.type}</td>
<td>${d.parent ? html`<a href="/devices/${seg(d.parent)}">${d.parent}</a>` : '-'}</td>
<td>${d.customer}</td>
<td>${d.tier}</td>
<td>${d.subscriptionEnd ?? '-'}</td>
<td>${badge('state', d.state)}</td>
<td>${when(d.lastSeen as string | null)}</td>
<td>${str(d.softwareVersion)}</td>
<td>${d.eligible === null ? '-' : d.eligible ? badge('eligible', 'yes') : html`<span title="${d.eligibilityReasons.join('; ')}">${badge('eligible', 'no')}</span>`}</td>
</tr>`;
}

/** The device rows of one page (the live region the Fleet page polls). */
export function fleetRows(rows: FleetRow[]): Html {
  if (rows.length === 0) return html`<tr><td colspan="10" class="empty">No devices match.</td></tr>`;
  return html`${rows.map(fleetRow)}`;
}

/** The Fleet page: filters, one page of devices (server-side paging, 50 a page) and links to the next page. */
export function fleetPage(who: Principal, query: URLSearchParams, rows: FleetRow[], total: number, nextCursor: string | null): Html {
  const keep = new URLSearchParams();
  for (const k of FLEET_FILTERS) {
    const v = query.get(k);
    if (v) keep.set(k, v);
  }
  const live = new URLSearchParams(keep);
  const cursor = query.get('cursor');
  if (cursor) live.set('cursor', cursor);
  const next = new URLSearchParams(keep);
  if (nextCursor) next.set('cursor', nextCursor);
  const sel = (name: string, values: string[]) =>
    html`<select name="${name}"><option value="">any</option>${values.map((v) => html`<option${query.get(name) === v ? html` selected` : ''}>${v}</option>`)}</select>`;
  return layout(
    'Fleet',
    'fleet',
    who,
    html`<h1>Fleet <small>${total} device${total === 1 ? '' : 's'}${cursor ? ' (later page)' : ''}</small></h1>
<form class="filters" method="get" action="/fleet">
  <label>Id <input name="q" value="${query.get('q') ?? ''}" size="12" placeholder="contains"></label>
  <label>Type ${sel('type', ['gateway', 'sensor'])}</label>
  <label>Tier ${sel('tier', ['none', 'xcare', 'xcare_pro'])}</label>
  <label>State ${sel('state', STATES)}</label>
  <label>Customer <input name="customer" value="${query.get('customer') ?? ''}" size="10"></label>
  <label>Tag <input name="tag" value="${query.get('tag') ?? ''}" size="8"></label>
  <button type="submit">Filter</button> <a href="/fleet">clear</a>
</form>
<table class="grid fleet">
<thead><tr><th>Device</th><th>Type</th><th>Gateway</th><th>Customer</th><th>Tier</th><th>Expires</th><th>State</th><th>Last seen</th><th>Version</th><th>Eligible</th></tr></thead>
<tbody id="fleet-rows" data-live="/console/fleet/rows?${live.toString()}" data-live-ms="5000">${fleetRows(rows)}</tbody>
</table>
<p class="pager">${cursor ? html`<a href="/fleet?${keep.toString()}">« first page</a> ` : ''}${nextCursor ? html`<a rel="next" href="/fleet?${next.toString()}">next page »</a>` : ''}</p>`,
  );
}

/** Everything the device page shows: the API's device detail, the device's events and its tickets. */
export interface DevicePageData {
  detail: Record<string, unknown>;
  events: DeviceEvent[];
  tickets: QueueItem[];
}

function health(hb: Record<string, unknown> | null): Html {
  if (!hb) return html`<p class="empty">No heartbeat yet.</p>`;
  const h = (hb.health ?? {}) as Record<string, unknown>;
  const pct = (v: unknown) => (typeof v === 'number' ? `${Math.round(v * 100)} %` : '-');
  const subsystems = Array.isArray(hb.subsystems) ? (hb.subsystems as Record<string, unknown>[]) : [];
  const sensors = Array.isArray(hb.sensors) ? (hb.sensors as Record<string, unknown>[]) : [];
  const okRow = (name: Html, ok: unknown, detail: unknown) => html`<tr><td>${name}</td><td>${ok === true ? badge('ok', 'ok') : badge('ok', 'failing')}</td><td>${str(detail ?? '')}</td></tr>`;
  return html`<dl class="kv">
<dt>CPU</dt><dd>${pct(h.cpu)}</dd><dt>Memory</dt><dd>${pct(h.memUsed)}</dd><dt>Disk</dt><dd>${pct(h.diskUsed)}</dd><dt>Load (1 min)</dt><dd>${str(h.load1)}</dd>
<dt>Uptime</dt><dd>${typeof hb.uptimeS === 'number' ? age(hb.uptimeS) : '-'}</dd><dt>Sequence</dt><dd>${str(hb.seq)}</dd><dt>Agent</dt><dd>${str(hb.agentVersion)}</dd>
</dl>
<h3>Subsystems</h3>
${subsystems.length ? html`<table class="grid"><thead><tr><th>Name</th><th>State</th><th>Detail</th></tr></thead><tbody>${subsystems.map((s) => okRow(html`${str(s.name)}`, s.ok, s.detail))}</tbody></table>` : html`<p class="empty">None reported.</p>`}
<h3>Sensors</h3>
${sensors.length ? html`<table class="grid"><thead><tr><th>Sensor</th><th>State</th><th>Detail</th></tr></thead><tbody>${sensors.map((s) => okRow(html`<a href="/devices/${seg(str(s.id))}">${str(s.id)}</a>`, s.ok, s.detail))}</tbody></table>` : html`<p class="empty">None reported.</p>`}`;
}

/** The device page: record, eligibility, heartbeat health (subsystems, sensors), tickets, patch history, events. */
export function devicePage(who: Principal, data: DevicePageData): Html {
  const d = data.detail;
  const id = str(d.id);
  const elig = d.eligibility as { eligible: boolean; reasons: string[] } | null;
  const patches = Array.isArray(d.patches) ? (d.patches as Record<string, unknown>[]) : [];
  return layout(
    id,
    'fleet',
    who,
    html`<p class="crumbs"><a href="/fleet">Fleet</a> › ${id}</p>
<h1>${id} ${badge('state', str(d.state))} ${d.connected ? html`<small>connected</small>` : html`<small>not connected</small>`}</h1>
<div class="cols">
<section class="card"><h2>Device</h2>
<dl class="kv">
<dt>Type</dt><dd>${str(d.type)}</dd>
<dt>Gateway</dt><dd>${d.parent ? html`<a href="/devices/${seg(str(d.parent))}">${str(d.parent)}</a>` : '-'}</dd>
<dt>Customer</dt><dd>${str(d.customer)}</dd><dt>Installer</dt><dd>${str(d.installer)}</dd>
<dt>Tier</dt><dd>${str(d.tier)}</dd><dt>Subscription</dt><dd>${str(d.subscriptionStart)} → ${str(d.subscriptionEnd)}</dd>
<dt>Tags</dt><dd>${Array.isArray(d.tags) && d.tags.length ? (d.tags as unknown[]).map(str).join(', ') : '-'}</dd>
<dt>Last seen</dt><dd>${when(d.lastSeen as string | null)}</dd>
<dt>Version</dt><dd>${str(d.softwareVersion)} <small>agent ${str(d.agentVersion)}</small></dd>
<dt>Integrity</dt><dd class="mono">${str(d.integrity)}</dd>
<dt>Eligible</dt><dd>${elig ? (elig.eligible ? badge('eligible', 'yes') : badge('eligible', 'no')) : '-'}${elig && elig.reasons.length ? html`<ul class="reasons">${elig.reasons.map((r) => html`<li>${r}</li>`)}</ul>` : ''}</dd>
</dl></section>
<section class="card"><h2>Heartbeat health</h2>${health(d.lastHeartbeat as Record<string, unknown> | null)}</section>
</div>
<div class="cols">
<section class="card"><h2>Tickets</h2>
${data.tickets.length ? html`<table class="grid"><thead><tr><th>Ticket</th><th>Severity</th><th>Kind</th><th>Status</th><th>Summary</th></tr></thead><tbody>${data.tickets.map((t) => html`<tr><td><a href="/tickets/${t.id}">#${t.id}</a></td><td>${badge('sev', str(t.severity))}</td><td>${str(t.kind)}</td><td>${badge('status', str(t.status))}</td><td>${str(t.summary)}</td></tr>`)}</tbody></table>` : html`<p class="empty">No tickets.</p>`}
<h2>Patch history</h2>
${patches.length ? html`<table class="grid"><thead><tr><th>Patch</th><th>State</th><th>Rollout</th><th>Updated</th><th>Detail</th></tr></thead><tbody>${patches.map((p) => html`<tr><td>${str(p.patchId)}</td><td>${badge('patch', str(p.state))}</td><td>${p.rolloutId ? html`<a href="/rollouts/${seg(str(p.rolloutId))}">${str(p.rolloutId)}</a>` : '-'}</td><td>${when(p.updatedAt as string)}</td><td>${str(p.detail)}</td></tr>`)}</tbody></table>` : html`<p class="empty">No patches offered.</p>`}
</section>
<section class="card"><h2>Events</h2>
${data.events.length ? html`<table class="grid"><thead><tr><th>Time</th><th>Event</th><th>Data</th></tr></thead><tbody>${data.events.map((e) => html`<tr><td>${when(e.ts)}</td><td>${badge('event', e.kind)}</td><td class="mono">${Object.keys(e.data).length ? JSON.stringify(e.data) : ''}</td></tr>`)}</tbody></table>` : html`<p class="empty">No events.</p>`}
</section>
</div>`,
  );
}
