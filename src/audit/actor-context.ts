import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from '../access/roles.js';

/** The principal of one request, valid only until that request's handler has finished. */
interface ActorHolder {
  principal: Principal;
  active: boolean;
}

/**
 * Who is acting in the current request, for code below the HTTP layer that records history (ticket events carry
 * the actor, issue 14: "tickets show the person who acted"). The HTTP server runs each authenticated handler
 * inside `run`; the ticket service reads `actorName()` when it writes an event. One instance, made in app.ts and
 * passed to both; outside a request (the health evaluator, the scheduler) there is no actor.
 *
 * AsyncLocalStorage hands its store on to every timer and promise created inside the request, so a timer a
 * request arms (a scheduler tick, a webhook retry) would otherwise name that person on whatever it does hours
 * later. The holder is switched off when the handler settles, so only work done while the request is in flight
 * carries the actor.
 */
export class ActorContext {
  private readonly storage = new AsyncLocalStorage<ActorHolder>();

  async run<T>(principal: Principal | undefined, fn: () => T | Promise<T>): Promise<T> {
    if (!principal) return fn();
    const holder: ActorHolder = { principal, active: true };
    try {
      return await this.storage.run(holder, fn);
    } finally {
      holder.active = false;
    }
  }

  current(): Principal | undefined {
    const holder = this.storage.getStore();
    return holder?.active ? holder.principal : undefined;
  }

  /** The acting token's name, or undefined outside a person's request. */
  actorName(): string | undefined {
    return this.current()?.name;
  }
}
