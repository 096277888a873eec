import { z } from 'zod';
import { jsonObject, noBody, type Router } from '../router.js';
import type { RolloutScheduler } from '../../rollouts/rollout-scheduler.js';
import { ValidationError } from '../../errors.js';
import { pageOf, parsePage } from '../paging.js';
import { choiceParam } from '../query.js';
import { ROLLOUT_STATES } from '../../rollouts/rollout-states.js';

export interface RolloutRouteDeps {
  scheduler: Pick<RolloutScheduler, 'create' | 'list' | 'view' | 'pause' | 'resume' | 'abort'>;
}

/** `POST .../abort`: an absent body is documented (PROTOCOL.md: `rollout abort ID [--reason R] [--force]`). */
const abortBody = z.strictObject({
  reason: z.string().trim().min(1, 'expected a non-empty string of at most 1000 characters').max(1000, 'expected a non-empty string of at most 1000 characters').optional(),
  force: z.boolean({ error: 'expected true or false' }).optional(),
});

/**
 * Rollouts API (issue 5, PROTOCOL.md "HTTP"), admin token:
 * - `POST /api/v1/rollouts` body as in rollout-spec.ts `parseRolloutSpec` -> 201 with the rollout view;
 *   invalid input -> 400 naming the field, nothing stored.
 * - `GET /api/v1/rollouts` -> `{ rollouts: [...] }` newest first, with state counts.
 * - `GET /api/v1/rollouts/:id` -> plan, spec, window, per-wave counts, excluded devices with reasons, recent events.
 * - `POST /api/v1/rollouts/:id/pause|resume|abort` -> the rollout view; 409 when the state does not allow it.
 *   abort takes `{reason?, force?}`; `force: true` cancels devices in flight (PatchCancel).
 */
export function registerRolloutRoutes(router: Router, deps: RolloutRouteDeps): void {
  router.post('/api/v1/rollouts', 'admin', async (ctx) => {
    // The outer shape here; parseRolloutSpec names each bad field.
    const view = deps.scheduler.create(await ctx.json(jsonObject));
    ctx.res.statusCode = 201;
    return view;
  });

  router.get('/api/v1/rollouts', 'admin', ({ query }) => {
    const state = choiceParam(query, 'state', ROLLOUT_STATES);
    const rollouts = deps.scheduler.list();
    // Newest first: keyed by (created time, id) descending, negated so the key ascends.
    const page = pageOf(state ? rollouts.filter((r) => r.state === state) : rollouts, parsePage(query), (r) => [-Date.parse(r.createdAt), r.id]);
    return { rollouts: page.items, nextCursor: page.nextCursor };
  });

  router.get('/api/v1/rollouts/:id', 'admin', ({ params, query }) => {
    const limit = query.get('excludedLimit');
    const n = limit === null ? 1000 : Number(limit);
    if (!Number.isInteger(n) || n < 0 || n > 100_000) throw new ValidationError('excludedLimit: expected an integer 0..100000');
    return deps.scheduler.view(params.id!, n);
  });

  router.post(
    '/api/v1/rollouts/:id/pause',
    'admin',
    async (ctx) => {
      await ctx.json(noBody, { absent: 'empty' });
      return deps.scheduler.pause(ctx.params.id!);
    },
    { role: 'operator' },
  );
  router.post(
    '/api/v1/rollouts/:id/resume',
    'admin',
    async (ctx) => {
      await ctx.json(noBody, { absent: 'empty' });
      return deps.scheduler.resume(ctx.params.id!);
    },
    { role: 'operator' },
  );
  router.post('/api/v1/rollouts/:id/abort', 'admin', async (ctx) => {
    // Issue 11 fault 3: null, [], "x" and 42 used to abort; only an object (or no body) is an abort request.
    const body = await ctx.json(abortBody, { absent: 'empty' });
    // force: also send PatchCancel to every device in flight (PROTOCOL.md "PatchCancel").
    return deps.scheduler.abort(ctx.params.id!, body.reason !== undefined ? `aborted by operator: ${body.reason}` : undefined, body.force === true);
  });
}
