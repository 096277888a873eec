import { describe, it, expect } from 'vitest';
import { Router } from '../../src/http/router.js';
import { leaderGuarded, NotLeaderError } from '../../src/cluster/leader-guard.js';

/** Cluster followers: changes to leader-owned routes refused (503 naming the leader), reads refreshed first, registrations intact. */
describe('leaderGuarded router view', () => {
  const setup = (following: boolean) => {
    const router = new Router();
    const reads: string[] = [];
    const guarded = leaderGuarded(router, { following: () => following, leader: () => 'xa', beforeFollowerRead: (p) => void reads.push(p) });
    guarded.get('/api/v1/tickets', 'admin', () => 'list');
    guarded.post('/api/v1/tickets/:id/ack', 'admin', () => 'acked', { role: 'operator' });
    return { router, reads };
  };
  const run = (router: Router, method: string, path: string) => {
    const found = router.match(method, path);
    if (!('route' in found)) throw new Error('no route');
    return found.route.handler({} as never);
  };

  it('keeps every registration argument, the role included', () => {
    const { router } = setup(false);
    const found = router.match('POST', '/api/v1/tickets/7/ack');
    expect('route' in found && found.route.role).toBe('operator');
  });

  it('on the leader (or without a cluster) routes run as registered', () => {
    const { router, reads } = setup(false);
    expect(run(router, 'POST', '/api/v1/tickets/7/ack')).toBe('acked');
    expect(run(router, 'GET', '/api/v1/tickets')).toBe('list');
    expect(reads).toEqual([]);
  });

  it('on a follower a change is refused with 503 NOT_LEADER naming the leader', () => {
    const { router } = setup(true);
    let error: unknown;
    try {
      run(router, 'POST', '/api/v1/tickets/7/ack');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(NotLeaderError);
    expect(error).toMatchObject({ status: 503, code: 'NOT_LEADER' });
    expect((error as Error).message).toContain('follows xa');
  });

  it('on a follower a read refreshes first, then runs', () => {
    const { router, reads } = setup(true);
    expect(run(router, 'GET', '/api/v1/tickets')).toBe('list');
    expect(reads).toEqual(['/api/v1/tickets']);
  });
});
