import type { Router } from '../router.js';
import type { SubscriptionService } from '../../subscriptions/subscription-service.js';
import type { IntegrityRegistry } from '../../subscriptions/integrity-registry.js';
import { NotFoundError, ValidationError } from '../../errors.js';
import { pageOf, parsePage } from '../paging.js';

export interface SubscriptionRouteDeps {
  subscriptions: SubscriptionService;
  integrity: IntegrityRegistry;
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ValidationError('body: expected a JSON object');
  return body as Record<string, unknown>;
}

/** Quotes, renewals, eligibility and the expected software digests (RULES.md "Subscriptions", "Eligibility"). */
export function registerSubscriptionRoutes(router: Router, deps: SubscriptionRouteDeps): void {
  router.get('/api/v1/subscriptions/quote', 'admin', ({ query }) => {
    const tier = query.get('tier');
    const start = query.get('start');
    if (!tier) throw new ValidationError('tier: required (xcare or xcare_pro)');
    if (!start) throw new ValidationError('start: required (YYYY-MM-DD)');
    const rawDevices = query.get('devices');
    if (rawDevices !== null && !/^[1-9]\d{0,6}$/.test(rawDevices)) throw new ValidationError('devices: expected a positive integer');
    return { quote: deps.subscriptions.quote(tier, start, rawDevices === null ? undefined : Number(rawDevices)) };
  });

  router.post('/api/v1/devices/:id/renew', 'admin', async (ctx) => {
    const body = objectBody(await ctx.body());
    if (body.tier !== undefined && typeof body.tier !== 'string') throw new ValidationError('tier: expected xcare or xcare_pro');
    return deps.subscriptions.renew(ctx.params.id!, body.tier as string | undefined);
  });

  router.get('/api/v1/devices/:id/eligibility', 'admin', ({ params }) => {
    const result = deps.subscriptions.eligibilityOf(params.id!);
    if (!result) throw new NotFoundError(`device ${params.id} not found`);
    return { deviceId: params.id, ...result };
  });

  router.get('/api/v1/integrity', 'admin', ({ query }) => {
    const page = pageOf(deps.integrity.list(), parsePage(query), (e) => e.version);
    return { integrity: page.items, nextCursor: page.nextCursor };
  });

  router.post('/api/v1/integrity', 'admin', async (ctx) => {
    const body = objectBody(await ctx.body());
    if (body.replace !== undefined && typeof body.replace !== 'boolean') throw new ValidationError('replace: expected a boolean');
    const entry = deps.integrity.register(body.version as string, body.digest as string, 'api', { replace: body.replace === true });
    ctx.res.statusCode = 201;
    return { integrity: entry };
  });
}
