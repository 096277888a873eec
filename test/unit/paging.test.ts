import { describe, it, expect } from 'vitest';
import { compareKeys, encodeCursor, pageOf, parsePage } from '../../src/http/paging.js';
import { describeChange, describeDenied } from '../../src/audit/actions.js';
import { roleAllows } from '../../src/access/roles.js';
import { defaultRole } from '../../src/http/router.js';

const q = (s: string) => new URLSearchParams(s);

describe('keyset paging', () => {
  it('walks a list in pages and ends with a null cursor', () => {
    const items = ['a', 'b', 'c', 'd', 'e'];
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const page: { items: string[]; nextCursor: string | null } = pageOf(items, parsePage(q(`limit=2${cursor ? `&cursor=${cursor}` : ''}`)), (x) => x);
      pages.push(page.items);
      cursor = page.nextCursor;
    } while (cursor);
    expect(pages).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('continues strictly after the cursor key whatever was inserted or removed meanwhile', () => {
    const cursor = parsePage(q(`limit=2&cursor=${encodeCursor('c')}`));
    expect(pageOf(['a', 'b', 'bb', 'd', 'e'], cursor, (x) => x).items).toEqual(['d', 'e']);
    expect(pageOf(['a', 'c', 'cc', 'd'], cursor, (x) => x).items).toEqual(['cc', 'd']);
  });

  it('sorts a list that is out of order by its keys; newest first with a negated time', () => {
    const rows = [
      { id: 'r1', at: 100 },
      { id: 'r3', at: 300 },
      { id: 'r2', at: 300 },
    ];
    expect(pageOf(rows, parsePage(q('')), (r) => [-r.at, r.id]).items.map((r) => r.id)).toEqual(['r2', 'r3', 'r1']);
  });

  it.each([
    [[1, 'a'], [1, 'b'], -1],
    [[2], [1, 'z'], 1],
    ['b', 'a', 1],
    [3, 3, 0],
  ])('compares %j with %j as %d', (a, b, sign) => {
    expect(Math.sign(compareKeys(a, b))).toBe(sign);
  });

  it.each(['limit=0', 'limit=-1', 'limit=1.5', 'limit=1001', 'cursor=***', `cursor=${Buffer.from('null').toString('base64url')}`])('refuses %s', (s) => {
    expect(() => parsePage(q(s))).toThrow(/^(limit|cursor):/);
  });

  it('refuses a cursor of the wrong shape for the list', () => {
    expect(() => pageOf([{ id: 'a', at: 1 }], parsePage(q(`cursor=${encodeCursor('a')}`)), (r) => [-r.at, r.id])).toThrow(/^cursor:/);
  });
});

describe('roles and audit names', () => {
  it.each([
    ['viewer', 'viewer', true],
    ['viewer', 'operator', false],
    ['operator', 'operator', true],
    ['operator', 'admin', false],
    ['admin', 'operator', true],
  ] as const)('%s may use a route needing %s: %s', (held, needed, ok) => {
    expect(roleAllows(held, needed)).toBe(ok);
  });

  it('defaults reads to viewer and everything else to admin', () => {
    expect([defaultRole('GET'), defaultRole('HEAD'), defaultRole('POST'), defaultRole('DELETE')]).toEqual(['viewer', 'viewer', 'admin', 'admin']);
  });

  it('names known changes from the route and the result, and unknown routes from their path', () => {
    expect(describeChange('POST', '/api/v1/tickets/:id/ack', { id: '12' }, { ticket: { id: 12, status: 'acknowledged' } })).toMatchObject({
      action: 'ticket.ack',
      target: 'ticket:12',
      detail: { status: 'acknowledged' },
    });
    expect(describeChange('POST', '/api/v1/rollouts', {}, { id: 'r-1', state: 'scheduled' })).toMatchObject({ action: 'rollout.create', target: 'rollout:r-1' });
    expect(describeChange('POST', '/api/v1/customers/:id/engineer', { id: 'acme' }, {})).toEqual({ action: 'customers.engineer', target: 'id:acme', detail: {} });
    expect(describeDenied('POST', '/api/v1/rollouts/:id/abort', { id: 'r-1' })).toEqual({ action: 'denied', target: 'rollout:r-1', detail: { wanted: 'rollout.abort' } });
    expect(describeDenied('POST', '/api/v1/devices', {})).toMatchObject({ action: 'denied', target: null });
  });
});
