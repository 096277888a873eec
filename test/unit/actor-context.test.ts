import { describe, it, expect } from 'vitest';
import { ActorContext } from '../../src/audit/actor-context.js';
import type { Principal } from '../../src/access/roles.js';

const olga: Principal = { name: 'olga', role: 'operator', tokenId: 1, via: 'bearer' };

describe('ActorContext', () => {
  it('names the actor inside the request, across awaits, and nobody outside it', async () => {
    const actors = new ActorContext();
    const seen: (string | undefined)[] = [];
    await actors.run(olga, async () => {
      seen.push(actors.actorName());
      await new Promise((r) => setImmediate(r));
      seen.push(actors.actorName());
    });
    seen.push(actors.actorName());
    expect(seen).toEqual(['olga', 'olga', undefined]);
  });

  it('does not hand the actor to a timer the request armed that fires after it finished', async () => {
    const actors = new ActorContext();
    let later: string | undefined = 'unset';
    let fired!: () => void;
    const done = new Promise<void>((r) => (fired = r));
    await actors.run(olga, () => {
      setTimeout(() => {
        later = actors.actorName();
        fired();
      }, 20);
    });
    await done;
    expect(later).toBeUndefined();
  });
});
