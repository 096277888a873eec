import type { Router } from '../router.js';
import type { CustomerStore } from '../../customers/customer-store.js';
import { pageOf, parsePage } from '../paging.js';

/**
 * Customers (RULES.md "Subscriptions"): `GET /api/v1/customers` (paged), `GET /api/v1/customers/:name`, and
 * `PUT /api/v1/customers/:name` / `POST /api/v1/customers` (name in the body) to create or update
 * (`engineerName`, `engineerEmail`, `engineerPhone`, `notes`; a field left out keeps its value, null clears it).
 */
export function registerCustomerRoutes(router: Router, deps: { customers: CustomerStore }): void {
  // Keyset-paged like every list route (`limit`, `cursor`; issue 14); without `limit`, the whole list.
  router.get('/api/v1/customers', 'admin', ({ query }) => {
    const page = pageOf(deps.customers.list(), parsePage(query), (c) => c.name);
    return { customers: page.items, nextCursor: page.nextCursor };
  });
  router.get('/api/v1/customers/:name', 'admin', ({ params }) => ({ customer: deps.customers.require(params.name!) }));
  router.post('/api/v1/customers', 'admin', async (ctx) => ({ customer: deps.customers.set((await ctx.body()) as Record<string, unknown>) }));
  router.add('PUT', '/api/v1/customers/:name', 'admin', async (ctx) => {
    const body = await ctx.body();
    const input = body && typeof body === 'object' && !Array.isArray(body) ? { ...(body as Record<string, unknown>), name: ctx.params.name } : body;
    return { customer: deps.customers.set(input as Record<string, unknown>) };
  });
}
