import { z } from 'zod';
import { noBody, type Router } from '../router.js';
import type { DeviceRegistry } from '../../registry/device-registry.js';
import { listDevices } from '../device-list.js';
import { deviceInputSchema, parseDeviceCsv, type DeviceInput } from '../../registry/device-input.js';
import type { DeviceRecord } from '../../registry/types.js';
import { NotFoundError, ValidationError } from '../../errors.js';
import { refuseNul } from '../query.js';

export interface DeviceView extends DeviceRecord {
  /** online | offline | lost | unknown | revoked ... as the health evaluator sees it. */
  state: string;
  [extra: string]: unknown;
}

export interface DeviceRouteDeps {
  registry: DeviceRegistry;
  /** Device plus live state for lists (cheap). */
  view(device: DeviceRecord): DeviceView;
  /** Full detail for one device: last heartbeat, eligibility, patches. */
  detail(device: DeviceRecord): Record<string, unknown>;
  /** Called after a revocation is committed: close the device's live connection. */
  onRevoked(deviceId: string): void;
  /** Liveness alone, for the `state` filter (defaults to `view(d).state`). */
  stateOf?(device: DeviceRecord): string;
  /** Called after a token rotation is committed: close the live connection made with the old token. */
  onTokenRotated(deviceId: string): void;
}

/** Devices one import may provision (each costs a scrypt hash): README "Limits". */
export const MAX_IMPORT_DEVICES = 10_000;

const importBody = z.strictObject({ devices: z.array(deviceInputSchema).min(1, 'nothing to import').max(MAX_IMPORT_DEVICES) });

export function registerDeviceRoutes(router: Router, deps: DeviceRouteDeps): void {
  router.get('/api/v1/devices', 'admin', ({ query }) => {
    const page = listDevices({ registry: deps.registry, view: deps.view, stateOf: deps.stateOf ?? ((d) => deps.view(d).state) }, query);
    return { devices: page.items, nextCursor: page.nextCursor, total: page.total };
  });

  router.get('/api/v1/devices/:id', 'admin', ({ params }) => {
    const device = deps.registry.get(params.id!);
    if (!device) throw new NotFoundError(`device ${params.id} not found`);
    return deps.detail(device);
  });

  router.post('/api/v1/devices', 'admin', async (ctx) => {
    const input = await ctx.json(deviceInputSchema);
    const [created] = await deps.registry.add([input]);
    ctx.res.statusCode = 201;
    return { device: created!.device, token: created!.token };
  });

  // Bulk provisioning: JSON {devices: [...]} or a CSV body (text/csv). All or nothing.
  router.post('/api/v1/devices/import', 'admin', async (ctx) => {
    const type = String(ctx.req.headers['content-type'] ?? '');
    let inputs: DeviceInput[];
    if (type.startsWith('text/csv')) {
      const csv = (await ctx.rawBody(16 * 1024 * 1024)).toString('utf8');
      refuseNul('(body)', csv);
      inputs = parseDeviceCsv(csv);
      if (inputs.length > MAX_IMPORT_DEVICES) throw new ValidationError(`devices: at most ${MAX_IMPORT_DEVICES} per import`);
    } else {
      inputs = (await ctx.json(importBody)).devices;
    }
    if (inputs.length === 0) throw new ValidationError('devices: nothing to import');
    const created = await deps.registry.add(inputs);
    ctx.res.statusCode = 201;
    return { devices: created.map((c) => ({ id: c.device.id, token: c.token })) };
  });

  router.post('/api/v1/devices/:id/revoke', 'admin', async (ctx) => {
    await ctx.json(noBody, { absent: 'empty' });
    const device = deps.registry.revoke(ctx.params.id!);
    deps.onRevoked(device.id);
    return { device };
  });

  // PROTOCOL.md `device rotate-token ID`: a new token, shown once; the old one is dead at once and the
  // connection made with it is closed. Also enables a revoked device again (issue 10 fault 6).
  router.post('/api/v1/devices/:id/rotate-token', 'admin', async (ctx) => {
    // No body, like revoke: an unknown key is refused (400), not ignored.
    await ctx.json(noBody, { absent: 'empty' });
    const { device, token, reenabled } = deps.registry.rotateToken(ctx.params.id!);
    deps.onTokenRotated(device.id);
    return { device, token, reenabled };
  });
}
