import type { IncomingMessage } from 'node:http';
import type { Router, RequestContext } from '../http/router.js';
import type { AccessControl } from '../access/access-control.js';
import { SESSION_COOKIE, parseCookies } from '../access/access-control.js';
import type { SessionStore } from '../access/session-store.js';
import type { Principal } from '../access/roles.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { TicketService } from '../tickets/ticket-service.js';
import type { Outbox } from '../helpdesk/outbox.js';
import type { RolloutScheduler } from '../rollouts/rollout-scheduler.js';
import type { DeviceRecord } from '../registry/types.js';
import type { DeviceEvent } from '../registry/device-events.js';
import { listDevices, type DeviceListDeps } from '../http/device-list.js';
import { pageOf, parsePage } from '../http/paging.js';
import { sendJson, sameOriginOrNone as sameOrigin } from '../http/server.js';
import { XcareError, wireCode } from '../errors.js';
import { refuseNul } from '../http/query.js';
import { loadConsoleAssets } from './assets.js';
import { html } from './html.js';
import { layout, redirect, sendHtml } from './layout.js';
import { queuePage, queueQueryFrom, queueRows } from './queue-page.js';
import { ticketPage } from './ticket-page.js';
import { devicePage, fleetPage, fleetRows, type FleetRow } from './fleet-pages.js';
import { rolloutPage, rolloutProgress, rolloutsPage } from './rollout-pages.js';
import { auditPage, auditRows, loginPage } from './audit-page.js';

/** What the console reads: the same services the API uses, so a page shows exactly what the API would answer. */
export interface ConsoleDeps {
  access: AccessControl;
  sessions: SessionStore;
  audit: AuditLog;
  tickets: Pick<TicketService, 'queue' | 'detail'>;
  outbox: Pick<Outbox, 'forTicket'>;
  devices: DeviceListDeps & {
    get(id: string): DeviceRecord | undefined;
    detail(device: DeviceRecord): Record<string, unknown>;
    eligibilityOf(id: string): { eligible: boolean; reasons: string[] } | undefined;
    events(id: string): DeviceEvent[];
  };
  rollouts: Pick<RolloutScheduler, 'list' | 'view'>;
  /** Session lifetime (seconds), for the cookie's Max-Age. */
  sessionTtlS: number;
}

/** Rows per Fleet page. */
const FLEET_PAGE = 50;

function sessionCookie(value: string, maxAgeS: number, req: IncomingMessage): string {
  // Secure whenever the console is reached over TLS; HttpOnly keeps it from scripts; Strict keeps it off every
  // cross-site request, which with the CSRF token makes cookie-borne changes safe.
  const secure = (req.socket as { encrypted?: boolean }).encrypted ? '; Secure' : '';
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${secure}`;
}

async function formBody(ctx: RequestContext): Promise<URLSearchParams> {
  const type = String(ctx.req.headers['content-type'] ?? '');
  if (!type.startsWith('application/x-www-form-urlencoded')) throw new XcareError('UNSUPPORTED_MEDIA', 'expected a form', 415);
  const form = new URLSearchParams((await ctx.rawBody(8 * 1024)).toString('utf8'));
  for (const [key, value] of form) {
    refuseNul(key, key);
    refuseNul(key, value);
  }
  return form;
}

/**
 * The operators' console at `/` (issue 14, PROTOCOL.md "HTTP": same listener, same TLS): server-rendered pages,
 * one small script and stylesheet from the package (no CDN), sign-in with a token into a server-side session.
 * Pages are reads (role viewer); every change goes through the JSON API with the session's CSRF token, so roles,
 * validation and the audit trail are the API's.
 */
export function registerConsoleRoutes(router: Router, deps: ConsoleDeps): void {
  const assets = loadConsoleAssets();

  /** A page handler for signed-in visitors; others are sent to /login (fragments answer 401 for the script). */
  type Rendered = ReturnType<typeof html> | undefined;
  const page = (render: (who: Principal, ctx: RequestContext) => Rendered | Promise<Rendered>, fragment = false) => async (ctx: RequestContext) => {
    const who = ctx.principal;
    if (!who) {
      if (fragment) sendJson(ctx.res, 401, { error: 'signed out', code: wireCode('UNAUTHORIZED') });
      else redirect(ctx.res, '/login');
      return;
    }
    try {
      const body = await render(who, ctx);
      if (body) sendHtml(ctx.res, 200, body);
    } catch (err) {
      if (!(err instanceof XcareError) || err.status >= 500 || fragment) throw err;
      sendHtml(ctx.res, err.status, layout('Not found', 'queue', who, html`<h1>${err.status === 404 ? 'Not found' : 'Cannot show this'}</h1><p>${err.message}</p>`));
    }
  };

  router.get('/assets/:name', 'public', ({ req, res, params }) => {
    const asset = assets.get(params.name!);
    if (!asset) {
      sendJson(res, 404, { error: `no asset ${params.name}`, code: wireCode('NOT_FOUND') });
      return;
    }
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, { etag: asset.etag });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': asset.contentType, 'content-length': asset.body.length, etag: asset.etag, 'cache-control': 'no-cache' });
    res.end(asset.body);
  });

  // Browsers ask for it on every first visit; an empty answer keeps their consoles free of 404 noise.
  router.get('/favicon.ico', 'public', ({ res }) => {
    res.writeHead(204, { 'cache-control': 'max-age=86400' });
    res.end();
  });

  router.get('/login', 'session', ({ res, principal }) => {
    if (principal) redirect(res, '/');
    else sendHtml(res, 200, loginPage());
  });

  router.post('/login', 'public', async (ctx) => {
    const { req, res } = ctx;
    // Login CSRF: a sign-in posted from another site is refused.
    if (!sameOrigin(req)) {
      sendHtml(res, 403, loginPage('Sign-in from another site refused.'));
      return;
    }
    const token = (await formBody(ctx)).get('token')?.trim() ?? '';
    const principal = token ? await deps.access.secret(token, 'session') : undefined;
    if (!principal) {
      sendHtml(res, 401, loginPage('That token is not valid (unknown, revoked or mistyped).'));
      return;
    }
    const session = await deps.sessions.create(principal, token);
    await deps.audit.record({ principal, action: 'session.login', target: null, method: 'POST', path: '/login', status: 303, remote: req.socket.remoteAddress ?? null });
    redirect(res, '/', { 'set-cookie': sessionCookie(session.sessionId, deps.sessionTtlS, req) });
  });

  // Sign-out is a plain form (it must work even when the script does not): it carries the CSRF token as a field.
  router.post('/logout', 'public', async (ctx) => {
    const { req, res } = ctx;
    const sessionId = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    const who = sessionId ? await deps.sessions.resolve(sessionId) : undefined;
    if (who) {
      const csrf = (await formBody(ctx)).get('_csrf') ?? undefined;
      if (!sameOrigin(req) || !deps.access.csrfMatches(who, csrf)) {
        sendJson(res, 403, { error: 'missing or wrong CSRF token', code: wireCode('FORBIDDEN') });
        return;
      }
      await deps.sessions.delete(sessionId!);
      await deps.audit.record({ principal: who, action: 'session.logout', target: null, method: 'POST', path: '/logout', status: 303, remote: req.socket.remoteAddress ?? null });
    }
    redirect(res, '/login', { 'set-cookie': sessionCookie('', 0, req) });
  });

  // ---------------------------------------------------------------- Queue and tickets
  router.get('/', 'session', page((who, { query }) => queuePage(who, queueQueryFrom(query), deps.tickets.queue(queueQueryFrom(query)))));
  router.get('/console/queue/rows', 'session', page((who, { query }) => queueRows(who, deps.tickets.queue(queueQueryFrom(query))), true));

  router.get(
    '/tickets/:id',
    'session',
    page(async (who, { params }) => {
      const id = /^[1-9]\d{0,15}$/.test(params.id!) ? Number(params.id) : NaN;
      const detail = Number.isNaN(id) ? undefined : deps.tickets.detail(id);
      if (!detail) throw new XcareError('NOT_FOUND', `ticket ${params.id} not found`, 404);
      return ticketPage(who, {
        ...detail,
        deliveries: deps.outbox.forTicket(id),
        audit: (await deps.audit.list({ target: `ticket:${id}` }, { limit: 50, after: undefined })).items,
      });
    }),
  );

  // ---------------------------------------------------------------- Fleet and devices
  const fleet = (query: URLSearchParams) => {
    const page = listDevices(deps.devices, query, FLEET_PAGE);
    const rows: FleetRow[] = page.items.map((d) => {
      const e = deps.devices.eligibilityOf(d.id);
      return { ...d, eligible: e ? e.eligible : null, eligibilityReasons: e?.reasons ?? [] };
    });
    return { rows, total: page.total, nextCursor: page.nextCursor };
  };
  router.get(
    '/fleet',
    'session',
    page((who, { query }) => {
      const f = fleet(query);
      return fleetPage(who, query, f.rows, f.total, f.nextCursor);
    }),
  );
  router.get('/console/fleet/rows', 'session', page((_who, { query }) => fleetRows(fleet(query).rows), true));

  router.get(
    '/devices/:id',
    'session',
    page((who, { params }) => {
      const device = deps.devices.get(params.id!);
      if (!device) throw new XcareError('NOT_FOUND', `device ${params.id} not found`, 404);
      return devicePage(who, {
        detail: deps.devices.detail(device),
        events: deps.devices.events(device.id),
        // Open ones, then resolved ones among the 1,000 most recently resolved in the fleet (the queue's own read).
        tickets: deps.tickets.queue({ status: 'all', subject: device.id, limit: 1000 }),
      });
    }),
  );

  // ---------------------------------------------------------------- Rollouts
  router.get(
    '/rollouts',
    'session',
    page((who, { query }) => {
      const p = pageOf(deps.rollouts.list(), { ...parsePage(query), limit: 50 }, (r) => [-Date.parse(r.createdAt), r.id]);
      return rolloutsPage(who, p.items, p.nextCursor, query.get('cursor'));
    }),
  );
  router.get('/rollouts/:id', 'session', page((who, { params }) => rolloutPage(who, deps.rollouts.view(params.id!, 200))));
  router.get('/console/rollouts/:id/progress', 'session', page((_who, { params }) => rolloutProgress(deps.rollouts.view(params.id!, 0)), true));

  // ---------------------------------------------------------------- Audit
  const auditFilter = (query: URLSearchParams) => {
    const f: { actor?: string; action?: string; target?: string } = {};
    for (const k of ['actor', 'action', 'target'] as const) {
      const v = query.get(k);
      if (v) f[k] = v.slice(0, 200);
    }
    return f;
  };
  router.get(
    '/audit',
    'session',
    page(async (who, { query }) => {
      const p = await deps.audit.list(auditFilter(query), { ...parsePage(query), limit: 100 });
      return auditPage(who, query, p.items, p.nextCursor);
    }),
  );
  router.get('/console/audit/rows', 'session', page(async (_who, { query }) => auditRows((await deps.audit.list(auditFilter(query), { after: undefined, limit: 100 })).items), true));
}

