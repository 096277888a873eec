import { z } from 'zod';
import { noBody, type Router } from '../router.js';
import type { TokenStore } from '../../access/token-store.js';
import type { SessionStore } from '../../access/session-store.js';
import type { AuditLog } from '../../audit/audit-log.js';
import { ValidationError } from '../../errors.js';
import { pageOf, parsePage } from '../paging.js';

/** Token store, sessions (ended on revoke) and the audit log. */
export interface AccessRouteDeps {
  tokens: TokenStore;
  sessions: SessionStore;
  audit: AuditLog;
}

/** `POST /api/v1/tokens`: the shape here (issue 11: unknown keys are a 400); the store checks name and role. */
const createBody = z.strictObject({ name: z.unknown(), role: z.unknown() });

/**
 * Roles, tokens and the audit trail over HTTP (issue 14, PROTOCOL.md "HTTP"):
 * - `GET /api/v1/whoami` (any role) -> `{name, role, via}`.
 * - `GET /api/v1/tokens[?revoked=true]` (admin) -> `{tokens, nextCursor}`; never a secret.
 * - `POST /api/v1/tokens` `{name, role}` (admin) -> 201 `{token, apiToken}`: the secret, shown once.
 * - `POST /api/v1/tokens/:id/revoke` (admin; id or name) -> `{apiToken}`; its console sessions end.
 * - `GET /api/v1/audit[?actor=&action=&target=]` (viewer) -> `{entries, nextCursor}` newest first.
 */
export function registerAccessRoutes(router: Router, deps: AccessRouteDeps): void {
  router.get('/api/v1/whoami', 'admin', ({ principal }) => ({ name: principal!.name, role: principal!.role, via: principal!.via }));

  router.get(
    '/api/v1/tokens',
    'admin',
    async ({ query }) => {
      const page = pageOf(await deps.tokens.list(query.get('revoked') === 'true'), parsePage(query), (t) => t.id);
      return { tokens: page.items, nextCursor: page.nextCursor };
    },
    { role: 'admin' },
  );

  router.post('/api/v1/tokens', 'admin', async (ctx) => {
    const body = await ctx.json(createBody);
    const created = await deps.tokens.create({ name: body.name, role: body.role }, ctx.principal!.name);
    ctx.res.statusCode = 201;
    return created;
  });

  router.post('/api/v1/tokens/:id/revoke', 'admin', async (ctx) => {
    await ctx.json(noBody, { absent: 'empty' });
    return { apiToken: await deps.tokens.revoke(ctx.params.id!, ctx.principal!.name, (tokenId) => deps.sessions.deleteForToken(tokenId)) };
  });

  router.get('/api/v1/audit', 'admin', async ({ query }) => {
    const filter: { actor?: string; action?: string; target?: string } = {};
    for (const key of ['actor', 'action', 'target'] as const) {
      const v = query.get(key);
      if (v !== null) {
        if (v.length === 0 || v.length > 200) throw new ValidationError(`${key}: expected 1-200 characters`);
        filter[key] = v;
      }
    }
    const page = await deps.audit.list(filter, parsePage(query));
    return { entries: page.items, nextCursor: page.nextCursor };
  });
}
