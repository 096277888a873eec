/**
 * What a change was and what it was done to, derived centrally from the route that made it (issue 14 "Audit
 * trail"): the HTTP server records one audit entry after every successful mutating request, named here, plus the
 * route's own `auditDetail`. A route missing from the table is still recorded, under a name made from its path,
 * so a new mutating route can never escape the log.
 */
export interface AuditAction {
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}

type Result = Record<string, unknown> | undefined;
type Describe = (params: Record<string, string>, result: Result) => AuditAction;

const pick = (value: unknown, ...keys: string[]): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  if (!value || typeof value !== 'object') return out;
  for (const k of keys) if ((value as Record<string, unknown>)[k] !== undefined) out[k] = (value as Record<string, unknown>)[k];
  return out;
};
const obj = (value: unknown): Record<string, unknown> | undefined =>
  value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;

const ticketAction =
  (action: string): Describe =>
  (p, r) => {
    const t = obj(r?.ticket);
    return { action, target: `ticket:${p.id ?? t?.id}`, detail: pick(t, 'status', 'subject', 'kind', 'severity', 'summary', 'resolveReason') };
  };
const rolloutAction =
  (action: string): Describe =>
  (p, r) => ({ action, target: `rollout:${p.id ?? r?.id}`, detail: pick(r, 'state', 'patchId', 'reason', 'currentWave') });

const customerAction: Describe = (p, r) => {
  const c = obj(r?.customer);
  return { action: 'customer.set', target: `customer:${p.name ?? c?.name}`, detail: pick(c, 'successEngineer') };
};

const TABLE: Record<string, Describe> = {
  'POST /api/v1/devices': (_p, r) => ({ action: 'device.add', target: `device:${obj(r?.device)?.id}`, detail: pick(r?.device, 'type', 'parent', 'customer', 'installer', 'tier') }),
  'POST /api/v1/devices/import': (_p, r) => {
    const ids = (Array.isArray(r?.devices) ? r.devices : []).map((d) => obj(d)?.id);
    return { action: 'device.import', target: null, detail: { count: ids.length, ids: ids.slice(0, 100) } };
  },
  'POST /api/v1/devices/:id/revoke': (p) => ({ action: 'device.revoke', target: `device:${p.id}`, detail: {} }),
  'POST /api/v1/devices/:id/rotate-token': (p) => ({ action: 'device.rotate', target: `device:${p.id}`, detail: {} }),
  // A repeated renewal (issue 10 fault 7) is audited too, as renewed: false, charged: 0.
  'POST /api/v1/devices/:id/renew': (p, r) => ({ action: 'subscription.renew', target: `device:${p.id}`, detail: { ...pick(obj(r)?.device, 'tier', 'subscriptionEnd'), ...pick(r, 'renewed', 'to', 'charged') } }),
  'POST /api/v1/devices/:id/offer': (p, r) => ({ action: 'patch.offer', target: `device:${p.id}`, detail: pick(r?.offered, 'patchId', 'rolloutId') }),
  'POST /api/v1/tickets': ticketAction('ticket.open'),
  'POST /api/v1/tickets/:id/ack': ticketAction('ticket.ack'),
  'POST /api/v1/tickets/:id/resolve': ticketAction('ticket.resolve'),
  'POST /api/v1/patches': (_p, r) => ({ action: 'patch.publish', target: `patch:${obj(r?.patch)?.id}`, detail: { ...pick(r?.patch, 'version'), created: r?.created } }),
  'POST /api/v1/rollouts': rolloutAction('rollout.create'),
  'POST /api/v1/rollouts/:id/pause': rolloutAction('rollout.pause'),
  'POST /api/v1/rollouts/:id/resume': rolloutAction('rollout.resume'),
  'POST /api/v1/rollouts/:id/abort': rolloutAction('rollout.abort'),
  'POST /api/v1/integrity': (_p, r) => ({ action: 'integrity.register', target: `version:${obj(r?.integrity)?.version}`, detail: pick(r?.integrity, 'digest') }),
  'POST /api/v1/outbox/:id/retry': (p) => ({ action: 'outbox.retry', target: `outbox:${p.id}`, detail: {} }),
  'PUT /api/v1/customers/:name': customerAction,
  'POST /api/v1/customers': customerAction,
  'POST /api/v1/tokens': (_p, r) => ({ action: 'token.create', target: `token:${obj(r?.apiToken)?.name}`, detail: pick(r?.apiToken, 'id', 'role') }),
  'POST /api/v1/tokens/:id/revoke': (_p, r) => ({ action: 'token.revoke', target: `token:${obj(r?.apiToken)?.name}`, detail: pick(r?.apiToken, 'id', 'role') }),
};

/** `/api/v1/customers/:id/engineer` -> `customers.engineer`: the fallback name of a route not in the table. */
function nameFromPath(path: string): string {
  return (
    path
      .replace(/^\/api\/v1\//, '')
      .split('/')
      .filter((s) => s && !s.startsWith(':'))
      .join('.') || path
  );
}

/** The audit action of a successful request to `method routePath`. */
export function describeChange(method: string, routePath: string, params: Record<string, string>, result: unknown): AuditAction {
  const describe = TABLE[`${method} ${routePath}`];
  if (describe) return describe(params, obj(result));
  const firstParam = Object.entries(params)[0];
  return { action: nameFromPath(routePath), target: firstParam ? `${firstParam[0]}:${firstParam[1]}` : null, detail: {} };
}

/** Target of a refused request, for `denied` entries: the route's own target naming when it has one. */
export function describeDenied(method: string, routePath: string, params: Record<string, string>): AuditAction {
  const { action, target } = describeChange(method, routePath, params, undefined);
  return { action: 'denied', target: target?.endsWith(':undefined') ? null : target, detail: { wanted: action } };
}
