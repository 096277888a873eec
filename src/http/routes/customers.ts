import { z } from 'zod';
import type { Router } from '../router.js';
import type { CustomerStore } from '../../customers/customer-store.js';
import { pageOf, parsePage } from '../paging.js';

/**
 * Customers (RULES.md "Subscriptions"): `GET /api/v1/customers` (paged), `GET /api/v1/customers/:name`, and
 * `PUT /api/v1/customers/:name` / `POST /api/v1/customers` (name in the body) to create or update
 * (`engineerName`, `engineerEmail`, `engineerPhone`, `notes`; a field left out keeps its value, null clears it).
 */
// The shape here (issue 11: every route validates its body; an unknown key is a 400, not a silent create);
// the store checks each value (name pattern, email, phone) and names the field.
const customerFields = {
  engineerName: z.string().nullable().optional(),
  engineerEmail: z.string().nullable().optional(),
  engineerPhone: z.string().nullable().optional(),
  notes: z.string().nullable().optional(),
};
const postBody = z.strictObject({ name: z.string(), ...customerFields });
/** PUT names the customer in the path; a `name` in the body is tolerated and replaced by it. */
const putBody = z.strictObject({ name: z.string().optional(), ...customerFields });

export function registerCustomerRoutes(router: Router, deps: { customers: CustomerStore }): void {
  // Keyset-paged like every list route (`limit`, `cursor`; issue 14); without `limit`, the whole list.
  router.get('/api/v1/customers', 'admin', async ({ query }) => {
    const page = pageOf(await deps.customers.list(), parsePage(query), (c) => c.name);
    return { customers: page.items, nextCursor: page.nextCursor };
  });
  router.get('/api/v1/customers/:name', 'admin', async ({ params }) => ({ customer: await deps.customers.require(params.name!) }));
  router.post('/api/v1/customers', 'admin', async (ctx) => ({ customer: await deps.customers.set(await ctx.json(postBody)) }));
  router.add('PUT', '/api/v1/customers/:name', 'admin', async (ctx) => {
    const body = await ctx.json(putBody);
    return { customer: await deps.customers.set({ ...body, name: ctx.params.name! }) };
  });
}
