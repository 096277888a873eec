import { XcareError } from '../errors.js';
import type { Handler, Router } from '../http/router.js';

/** The change a follower cannot make: its copy of the leader-owned state is not live (answered 503). */
export class NotLeaderError extends XcareError {
  constructor(leader: string | null) {
    super('NOT_LEADER', `this xcared follows ${leader ?? 'no leader yet'}: send this change to the leader (see /readyz)`, 503);
  }
}

export interface LeaderGuardOptions {
  /** True while this instance is a cluster follower (false when not clustered or leading). */
  following(): boolean;
  /** The current leader's instance id, for the error message. */
  leader(): string | null;
  /** Before a read on a follower: refresh the in-memory view of leader-owned state from the store. */
  beforeFollowerRead?(path: string): void;
}

/**
 * A view of `router` for routes whose state the leader owns in memory (tickets, rollouts): on
 * a follower, every change answers 503 NOT_LEADER naming the leader (nothing changes), and reads first
 * refresh from the store. On the leader, or without a cluster, the routes run as registered.
 */
export function leaderGuarded(router: Router, options: LeaderGuardOptions): Router {
  const wrap = (method: string, path: string, handler: Handler): Handler =>
    method === 'GET' || method === 'HEAD'
      ? (ctx) => {
          if (options.following()) options.beforeFollowerRead?.(path);
          return handler(ctx);
        }
      : (ctx) => {
          if (options.following()) throw new NotLeaderError(options.leader());
          return handler(ctx);
        };
  return new Proxy(router, {
    get(target, prop, receiver) {
      // get()/post() call this.add(): through the proxy, so every registration is wrapped here once.
      // Every argument after the handler (route options: the role) passes through untouched.
      if (prop === 'add')
        return (method: string, path: string, auth: Parameters<Router['add']>[2], handler: Handler, ...rest: unknown[]) =>
          (target.add as (...args: unknown[]) => Router)(method, path, auth, wrap(method, path, handler), ...rest);
      return Reflect.get(target, prop, receiver);
    },
  });
}
