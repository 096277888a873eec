import { describe, it, expect } from 'vitest';
import { html, escapeHtml, Html } from '../../src/console/html.js';
import { ticketPage } from '../../src/console/ticket-page.js';
import { devicePage } from '../../src/console/fleet-pages.js';
import { rolloutProgress } from '../../src/console/rollout-pages.js';
import type { RolloutView } from '../../src/rollouts/rollout-scheduler.js';
import type { Principal } from '../../src/access/roles.js';

const HOSTILE = `<script>alert(1)</script><img src=x onerror=alert(2)>"'\`&`;
const who: Principal = { name: 'vera', role: 'viewer', tokenId: 2, via: 'session', csrf: 'csrf-token-value' };

describe('console HTML escaping', () => {
  it.each([
    ['<', '&lt;'],
    ['>', '&gt;'],
    ['&', '&amp;'],
    ['"', '&quot;'],
    ["'", '&#39;'],
    ['`', '&#96;'],
  ])('escapes %s as %s', (raw, escaped) => {
    expect(escapeHtml(raw)).toBe(escaped);
    expect(html`<p title="${raw}">${raw}</p>`.value).toBe(`<p title="${escaped}">${escaped}</p>`);
  });

  it('escapes every interpolated value, nested arrays included, and passes only Html through', () => {
    const out = html`<ul>${[HOSTILE, html`<li>${HOSTILE}</li>`]}</ul>${null}${undefined}${false}${0}`;
    expect(out).toBeInstanceOf(Html);
    expect(out.value).not.toContain('<script>');
    expect(out.value).not.toContain('<img');
    expect(out.value).toContain('<li>&lt;script&gt;');
    expect(out.value.endsWith('</ul>0')).toBe(true);
  });

  it('renders hostile ticket data and device-reported details as text', () => {
    const page = ticketPage(who, {
      ticket: { id: 7, summary: HOSTILE, subject: HOSTILE, status: 'open', severity: 'low', details: { note: HOSTILE }, ineligibleReasons: [HOSTILE], covers: [HOSTILE], children: [HOSTILE] },
      events: [{ id: 1, ticketId: 7, ts: '2026-11-30T10:00:00.000Z', type: 'opened', data: { actor: HOSTILE, summary: HOSTILE } }],
      deliveries: [],
      audit: [],
    }).value;
    expect(page).not.toMatch(/<script>|<img/);
    const device = devicePage(who, {
      detail: {
        id: 'gw-1',
        state: 'online',
        lastHeartbeat: { subsystems: [{ name: HOSTILE, ok: false, detail: HOSTILE }], sensors: [{ id: HOSTILE, ok: true, detail: HOSTILE }], health: {} },
        eligibility: { eligible: false, reasons: [HOSTILE] },
        patches: [{ patchId: HOSTILE, state: 'failed', detail: HOSTILE, rolloutId: HOSTILE, updatedAt: '2026-11-30T10:00:00.000Z' }],
      },
      events: [{ id: 1, ts: '2026-11-30T10:00:00.000Z', kind: HOSTILE, data: { x: HOSTILE } }],
      tickets: [],
    }).value;
    expect(device).not.toMatch(/<script>|<img/);
    expect(device).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    // A hostile value inside an href is percent-encoded, so it cannot leave the attribute either.
    expect(device).toContain('href="/devices/%3Cscript%3E');
  });

  it('shows the success engineer of an xcare_pro customer when the ticket data carries one, and nothing otherwise', () => {
    const base = { id: 3, summary: 's', status: 'open', tier: 'xcare_pro' };
    const data = { events: [], deliveries: [], audit: [] };
    const withEngineer = ticketPage(who, { ...data, ticket: { ...base, successEngineer: { name: 'Sam Lee', email: 'sam@minnovation.example', phone: '+49 30 1234' } } }).value;
    expect(withEngineer).toMatch(/Success engineer<\/dt><dd class="engineer">Sam Lee · <a href="mailto:sam@minnovation.example">/);
    expect(withEngineer).toContain('+49 30 1234');
    expect(ticketPage(who, { ...data, ticket: base }).value).not.toContain('Success engineer');
  });

  it('lists failed rollout devices with their reasons from the rollout events, and a countdown when a wave has a soak end', () => {
    const counts = { pending: 0, offered: 0, downloading: 0, installing: 0, installed: 0, done: 1, failed: 2, excluded: 0 };
    const view = {
      currentWave: 0,
      counts,
      waves: [{ index: 0, size: 3, soakMs: 1_800_000, planned: { count: 3 }, counts, soakEndsAt: '2026-11-30T10:30:00.000Z' }],
      events: [
        { at: '2026-11-30T10:02:00.000Z', kind: 'failed', deviceId: 'gw-2', detail: 'rolled_back: check failed' },
        { at: '2026-11-30T10:01:00.000Z', kind: 'failed', deviceId: 'gw-1', detail: `signature ${HOSTILE}` },
        { at: '2026-11-30T10:00:00.000Z', kind: 'done', deviceId: 'gw-3' },
      ],
    } as unknown as RolloutView;
    const out = rolloutProgress(view).value;
    expect(out).toMatch(/gw-2<\/a><\/td><td>-<\/td><td>failed<\/td><td>rolled_back: check failed/);
    expect(out).toContain('signature &lt;script&gt;');
    expect(out).not.toContain('gw-3</a>');
    expect(out).toContain('data-countdown="2026-11-30T10:30:00.000Z"');
    const older = rolloutProgress({ ...view, events: [] } as unknown as RolloutView).value;
    expect(older).toContain('2 failed; their reasons are older than the recent events.');
  });
});
