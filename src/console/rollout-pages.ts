import type { Principal } from '../access/roles.js';
import type { RolloutSummary, RolloutView } from '../rollouts/rollout-scheduler.js';
import { formatWaveSize } from '../rollouts/rollout-spec.js';
import { html, seg, when, type Html } from './html.js';
import { actionForm, badge, layout } from './layout.js';

const str = (v: unknown): string => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
const COUNT_STATES = ['pending', 'offered', 'downloading', 'installing', 'installed', 'done', 'failed'] as const;

/** A bar of per-state shares: done (green), failed (red), in flight (blue), pending (grey). */
function progressBar(counts: Record<string, number>): Html {
  const total = COUNT_STATES.reduce((n, s) => n + (counts[s] ?? 0), 0);
  if (total === 0) return html`<div class="bar empty"></div>`;
  const part = (cls: string, n: number) => (n > 0 ? html`<span class="${cls}" data-w="${Math.round((n / total) * 1000) / 10}" title="${cls}: ${n}"></span>` : '');
  const inFlight = (counts.offered ?? 0) + (counts.downloading ?? 0) + (counts.installing ?? 0) + (counts.installed ?? 0);
  return html`<div class="bar">${part('done', counts.done ?? 0)}${part('failed', counts.failed ?? 0)}${part('flight', inFlight)}${part('pending', counts.pending ?? 0)}</div>`;
}

function rolloutActions(who: Principal, id: string, state: string): Html {
  const ended = state === 'completed' || state === 'aborted';
  if (ended) return html``;
  return html`${state === 'paused' ? actionForm(who, 'operator', `/api/v1/rollouts/${seg(id)}/resume`, 'Resume', { id: 'resume' }) : actionForm(who, 'operator', `/api/v1/rollouts/${seg(id)}/pause`, 'Pause', { id: 'pause' })}
${actionForm(who, 'admin', `/api/v1/rollouts/${seg(id)}/abort`, 'Abort', { id: 'abort', danger: true, confirm: 'Abort this rollout?', fields: html`<input name="reason" placeholder="reason" maxlength="500">` })}`;
}

/** The Rollouts page: newest first, state, wave, progress, pause/resume/abort. */
export function rolloutsPage(who: Principal, rollouts: RolloutSummary[], nextCursor: string | null, cursor: string | null): Html {
  return layout(
    'Rollouts',
    'rollouts',
    who,
    html`<h1>Rollouts <small>${rollouts.length}${cursor ? ' (later page)' : ''}</small></h1>
<table class="grid rollouts">
<thead><tr><th>Rollout</th><th>Patch</th><th>State</th><th>Wave</th><th>Progress</th><th>Done</th><th>Failed</th><th>Created</th><th>Reason</th><th></th></tr></thead>
<tbody id="rollout-rows">${
      rollouts.length
        ? rollouts.map(
            (r) => html`<tr data-rollout="${r.id}"><td><a href="/rollouts/${seg(r.id)}">${r.id}</a></td><td>${r.patchId}</td><td>${badge('rollout', r.state)}</td><td class="num">${r.currentWave + 1}/${r.waves}</td><td>${progressBar(r.counts)}</td><td class="num">${r.counts.done}</td><td class="num">${r.counts.failed}</td><td>${when(r.createdAt)}</td><td>${r.reason ?? ''}</td><td class="actions">${rolloutActions(who, r.id, r.state)}</td></tr>`,
          )
        : html`<tr><td colspan="10" class="empty">No rollouts.</td></tr>`
    }</tbody>
</table>
<p class="pager">${cursor ? html`<a href="/rollouts">« first page</a> ` : ''}${nextCursor ? html`<a rel="next" href="/rollouts?cursor=${nextCursor}">next page »</a>` : ''}</p>`,
  );
}

/**
 * Failed devices with their reasons: the rollout data's own list (`failedDevices`/`failed`) when it has one,
 * else the `failed` events among the recent ones (each names the device and the reason), with a note when the
 * count says there are more than the events show.
 */
function failedDevices(v: Record<string, unknown>, failedCount: number): Html {
  let list = (Array.isArray(v.failedDevices) ? v.failedDevices : Array.isArray(v.failed) ? v.failed : undefined) as Record<string, unknown>[] | undefined;
  if (!list) {
    const seen = new Set<string>();
    list = ((v.events as Record<string, unknown>[] | undefined) ?? [])
      .filter((e) => e.kind === 'failed' && typeof e.deviceId === 'string' && !seen.has(e.deviceId) && seen.add(e.deviceId))
      .map((e) => ({ deviceId: e.deviceId, state: 'failed', reason: e.detail ?? e.reason }));
  }
  if (list.length === 0) return failedCount > 0 ? html`<p class="empty">${failedCount} failed; their reasons are older than the recent events.</p>` : html`<p class="empty">No failed devices.</p>`;
  return html`<table class="grid" id="failed"><thead><tr><th>Device</th><th>Wave</th><th>State</th><th>Reason</th></tr></thead><tbody>${list.map(
    (f) => html`<tr><td><a href="/devices/${seg(str(f.deviceId))}">${str(f.deviceId)}</a></td><td>${typeof f.wave === 'number' ? f.wave + 1 : '-'}</td><td>${str(f.state ?? 'failed')}</td><td>${str(f.reason ?? f.detail)}</td></tr>`,
  )}</tbody></table>${failedCount > list.length ? html`<p class="empty">${failedCount - list.length} more failed devices.</p>` : ''}`;
}

/** Soak end of a wave when the data carries it (`soakEndsAt`, or `soak.endsAt`). */
function soakEnd(w: Record<string, unknown>): string | undefined {
  const v = w.soakEndsAt ?? (w.soak as Record<string, unknown> | undefined)?.endsAt ?? w.soakUntil;
  return typeof v === 'string' ? v : undefined;
}

/** Waves, counts, soak countdowns and failed devices: the part of the detail page that refreshes live. */
export function rolloutProgress(view: RolloutView): Html {
  const v = view as unknown as Record<string, unknown>;
  const waves = view.waves as unknown as Record<string, unknown>[];
  return html`<table class="grid waves"><thead><tr><th>Wave</th><th>Size</th><th>Progress</th>${COUNT_STATES.map((s) => html`<th>${s}</th>`)}<th>Soak</th></tr></thead><tbody>${waves.map((w, i) => {
    const counts = w.counts as Record<string, number>;
    const end = soakEnd(w) ?? (i === view.currentWave ? soakEnd(v) : undefined);
    return html`<tr class="${i === view.currentWave ? 'current' : ''}"><td>${i + 1}${i === view.currentWave ? ' ◀' : ''}</td><td class="num">${str(w.size)} <small>(${formatWaveSize(w.planned as RolloutView['waves'][number]['planned'])})</small></td><td>${progressBar(counts)}</td>${COUNT_STATES.map((s) => html`<td class="num">${counts[s] ?? 0}</td>`)}<td>${end ? html`<span data-countdown="${end}">${when(end)}</span>` : html`${Math.round(Number(w.soakMs) / 60000)} min`}</td></tr>`;
  })}</tbody></table>
<h2>Failed devices</h2>
${failedDevices(v, view.counts.failed ?? 0)}`;
}

/** One rollout: plan, window, totals, the live per-wave table, failed and left-out devices, recent events. */
export function rolloutPage(who: Principal, view: RolloutView): Html {
  const w = view.window;
  return layout(
    `Rollout ${view.id}`,
    'rollouts',
    who,
    html`<p class="crumbs"><a href="/rollouts">Rollouts</a> › ${view.id}</p>
<h1>${view.id} ${badge('rollout', view.state)} <small>patch ${view.patchId}</small></h1>
<div class="actions">${rolloutActions(who, view.id, view.state)}</div>
<div class="cols">
<section class="card"><h2>Plan</h2>
<dl class="kv">
<dt>Wave</dt><dd>${view.currentWave + 1} of ${view.waves.length}</dd>
<dt>Window</dt><dd>${w ? (w.open ? html`open until ${when(w.closesAt)}` : html`closed, opens ${when(w.opensAt)}`) : '-'}</dd>
<dt>Created</dt><dd>${when(view.createdAt)}</dd><dt>Started</dt><dd>${when(view.startedAt)}</dd><dt>Ended</dt><dd>${when(view.endedAt)}</dd>
<dt>Reason</dt><dd>${view.reason ?? '-'}</dd>
<dt>Excluded</dt><dd>${view.excludedAtPlanning} at planning</dd>
</dl></section>
<section class="card"><h2>Totals</h2>${progressBar(view.counts)}<dl class="kv">${COUNT_STATES.map((s) => html`<dt>${s}</dt><dd>${view.counts[s] ?? 0}</dd>`)}</dl></section>
</div>
<section class="card"><h2>Waves</h2>
<div id="rollout-progress" data-live="/console/rollouts/${seg(view.id)}/progress" data-live-ms="3000">${rolloutProgress(view)}</div>
</section>
<div class="cols">
<section class="card"><h2>Left out</h2>${view.excluded.length ? html`<table class="grid"><thead><tr><th>Device</th><th>Reason</th></tr></thead><tbody>${view.excluded.slice(0, 200).map((e) => html`<tr><td><a href="/devices/${seg(e.deviceId)}">${e.deviceId}</a></td><td>${e.reason}</td></tr>`)}</tbody></table>` : html`<p class="empty">None.</p>`}</section>
<section class="card"><h2>Recent events</h2>${view.events.length ? html`<table class="grid"><thead><tr><th>Time</th><th>Event</th><th>Device</th><th>Data</th></tr></thead><tbody>${view.events.slice(0, 100).map((e) => {
      const { at, ts, kind, type, deviceId, ...rest } = e;
      return html`<tr><td>${when((at ?? ts) as string)}</td><td>${str(kind ?? type)}</td><td>${deviceId ? html`<a href="/devices/${seg(str(deviceId))}">${str(deviceId)}</a>` : ''}</td><td class="mono">${Object.keys(rest).length ? JSON.stringify(rest) : ''}</td></tr>`;
    })}</tbody></table>` : html`<p class="empty">None.</p>`}</section>
</div>`,
  );
}
