import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from '../access/roles.js';

/**
 * Who is acting in the current request, for code below the HTTP layer that records history (ticket events carry
 * the actor, issue 14: "tickets show the person who acted"). The HTTP server runs each authenticated handler
 * inside `run`; the ticket service reads `actorName()` when it writes an event. One instance, made in app.ts and
 * passed to both; outside a request (the health evaluator, the scheduler) there is no actor.
 */
export class ActorContext {
  private readonly storage = new AsyncLocalStorage<Principal>();

  run<T>(principal: Principal | undefined, fn: () => T): T {
    return principal ? this.storage.run(principal, fn) : fn();
  }

  current(): Principal | undefined {
    return this.storage.getStore();
  }

  /** The acting token's name, or undefined outside a person's request. */
  actorName(): string | undefined {
    return this.storage.getStore()?.name;
  }
}
