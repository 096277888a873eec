import type { Principal } from '../access/roles.js';
import type { AuditEntry } from '../audit/audit-log.js';
import { html, seg, when, type Html } from './html.js';
import { badge, layout } from './layout.js';

/** `ticket:12` -> a link to the ticket's page; other targets as text. */
function targetLink(target: string | null): Html {
  if (!target) return html`-`;
  const [kind, ...rest] = target.split(':');
  const id = rest.join(':');
  const href = kind === 'ticket' ? `/tickets/${seg(id)}` : kind === 'device' ? `/devices/${seg(id)}` : kind === 'rollout' ? `/rollouts/${seg(id)}` : undefined;
  return href ? html`<a href="${href}">${target}</a>` : html`${target}`;
}

/** The detail as compact JSON without empty fields, cut to a line or two (the API has it whole). */
function detailText(detail: Record<string, unknown>): string {
  const kept = Object.fromEntries(Object.entries(detail).filter(([, v]) => v !== null && v !== undefined && v !== ''));
  const text = Object.keys(kept).length ? JSON.stringify(kept) : '';
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

/** The audit table's rows (the live region of /audit); refused requests are marked `denied`. */
export function auditRows(entries: AuditEntry[]): Html {
  if (entries.length === 0) return html`<tr><td colspan="8" class="empty">No entries.</td></tr>`;
  return html`${entries.map(
    (e) => html`<tr class="${e.status >= 400 ? 'denied' : ''}" data-audit="${e.id}"><td>${when(e.ts)}</td><td class="actor">${e.actor}</td><td>${badge('role', e.role)}</td><td>${e.action}</td><td>${targetLink(e.target)}</td><td class="num">${e.status}</td><td>${e.remote ?? '-'} <small>${e.via}</small></td><td class="mono detail">${detailText(e.detail)}</td></tr>`,
  )}`;
}

/** The Audit page: filters by who, action and target, newest first, paged with the API's cursor. */
export function auditPage(who: Principal, query: URLSearchParams, entries: AuditEntry[], nextCursor: string | null): Html {
  const keep = new URLSearchParams();
  for (const k of ['actor', 'action', 'target']) {
    const v = query.get(k);
    if (v) keep.set(k, v);
  }
  const next = new URLSearchParams(keep);
  if (nextCursor) next.set('cursor', nextCursor);
  return layout(
    'Audit',
    'audit',
    who,
    html`<h1>Audit trail <small>who changed what, newest first</small></h1>
<form class="filters" method="get" action="/audit">
  <label>Who <input name="actor" value="${query.get('actor') ?? ''}" size="10"></label>
  <label>Action <input name="action" value="${query.get('action') ?? ''}" size="12" placeholder="ticket.ack"></label>
  <label>Target <input name="target" value="${query.get('target') ?? ''}" size="12" placeholder="ticket:12"></label>
  <button type="submit">Filter</button> <a href="/audit">clear</a>
</form>
<table class="grid audit"><thead><tr><th>When</th><th>Who</th><th>Role</th><th>What</th><th>Target</th><th>Status</th><th>From</th><th>Detail</th></tr></thead>
<tbody id="audit-rows"${query.get('cursor') ? '' : html` data-live="/console/audit/rows?${keep.toString()}" data-live-ms="5000"`}>${auditRows(entries)}</tbody></table>
<p class="pager">${query.get('cursor') ? html`<a href="/audit?${keep.toString()}">« newest</a> ` : ''}${nextCursor ? html`<a rel="next" href="/audit?${next.toString()}">older »</a>` : ''}</p>`,
  );
}

/** The sign-in page: one token field; the token is posted once and exchanged for a session cookie. */
export function loginPage(error?: string): Html {
  return html`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · xcare NOC</title>
<link rel="stylesheet" href="/assets/console.css"></head>
<body class="login">
<main class="login-box">
<h1>xcare <span>NOC</span></h1>
<p>Sign in with an API token (<code>xcarectl token create --role viewer --name you</code>) or the admin token.</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/login">
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>`;
}
