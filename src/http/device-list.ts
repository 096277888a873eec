import type { DeviceRegistry, DeviceFilter } from '../registry/device-registry.js';
import type { DeviceRecord } from '../registry/types.js';
import { ValidationError } from '../errors.js';
import { pageOf, parsePage, type Page } from './paging.js';
import { choiceParam } from './query.js';
import { DEVICE_TYPES, TIERS } from '../protocol/names.js';
import type { LiveState } from '../health/device-conditions.js';

/** A device with its live state, as lists show it. */
export interface DeviceListItem extends DeviceRecord {
  state: string;
  [extra: string]: unknown;
}

/** The registry and the two views of a device the list needs. */
export interface DeviceListDeps {
  registry: Pick<DeviceRegistry, 'list'>;
  /** Device plus live state (one primary-key lookup). Called only for the devices of the page. */
  view(device: DeviceRecord): DeviceListItem;
  /** Liveness alone (in memory), for the `state` filter over the whole fleet. */
  stateOf(device: DeviceRecord): string;
}

const FILTERS = ['customer', 'installer', 'parent', 'tag'] as const;

/** What `stateOf` answers: the evaluator's liveness, or `revoked`. */
const LIST_STATES: readonly (LiveState | 'revoked')[] = ['unknown', 'online', 'offline', 'restarting', 'lost', 'revoked'];

/**
 * The device list of `GET /api/v1/devices` and the console's Fleet page, in one place: filters (type, tier,
 * customer, installer, parent, tag, state, `q` = id contains, case-insensitive, `revoked=true`), sorted by id,
 * keyset-paged on the id (`limit`, `cursor`). Filtering runs over the in-memory registry; the stored live state
 * is read only for the page, so a page of 10,000 devices costs what the page costs.
 */
export function listDevices(deps: DeviceListDeps, query: URLSearchParams, defaultLimit?: number): Page<DeviceListItem> & { total: number } {
  // Closed sets are checked: a value that cannot occur is a 400 naming the key, not an empty list.
  const filter: DeviceFilter = { includeRevoked: choiceParam(query, 'revoked', ['true', 'false']) === 'true' };
  const type = choiceParam(query, 'type', DEVICE_TYPES);
  if (type) filter.type = type;
  const tier = choiceParam(query, 'tier', TIERS);
  if (tier) filter.tier = tier;
  for (const key of FILTERS) {
    const v = query.get(key);
    if (v) filter[key] = v;
  }
  let devices = deps.registry.list(filter);
  const state = choiceParam(query, 'state', LIST_STATES);
  if (state) devices = devices.filter((d) => deps.stateOf(d) === state);
  const q = query.get('q');
  if (q) {
    if (q.length > 200) throw new ValidationError('q: at most 200 characters');
    const needle = q.toLowerCase();
    devices = devices.filter((d) => d.id.toLowerCase().includes(needle));
  }
  const req = parsePage(query);
  if (req.after !== undefined && typeof req.after !== 'string') throw new ValidationError('cursor: invalid');
  const page = pageOf(devices, { limit: req.limit ?? defaultLimit, after: req.after }, (d) => d.id);
  return { items: page.items.map((d) => deps.view(d)), nextCursor: page.nextCursor, total: devices.length };
}
