import { z } from 'zod';
import type { Router } from '../router.js';
import type { SubscriptionService } from '../../subscriptions/subscription-service.js';
import type { IntegrityRegistry } from '../../subscriptions/integrity-registry.js';
import { NotFoundError, ValidationError } from '../../errors.js';
import { pageOf, parsePage } from '../paging.js';

export interface SubscriptionRouteDeps {
  subscriptions: SubscriptionService;
  integrity: IntegrityRegistry;
}

/** `renew ID [--tier T]`: the CLI sends `{}` without --tier; an absent body is the same. */
// `to`: the June 30 the renewal runs to (issue 10 fault 7); its form is checked by SubscriptionService.renew.
const renewBody = z.strictObject({ tier: z.enum(['xcare', 'xcare_pro']).optional(), to: z.string().max(10).optional() });
const integrityBody = z.strictObject({ version: z.string().max(64), digest: z.string().max(80), replace: z.boolean().optional() });

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
    const body = await ctx.json(renewBody, { absent: 'empty' });
    return deps.subscriptions.renew(ctx.params.id!, { tier: body.tier, to: body.to });
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
    const body = await ctx.json(integrityBody);
    const entry = deps.integrity.register(body.version, body.digest, 'api', { replace: body.replace === true });
    ctx.res.statusCode = 201;
    return { integrity: entry };
  });
}
