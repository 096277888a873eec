import { foundation } from './001-foundation.js';
import { tickets } from './002-tickets.js';
import { patches } from './003-patches.js';
import { rollouts } from './004-rollouts.js';
import { customers } from './005-customers.js';
import { rolloutPromises } from './006-rollout-promises.js';
import { access } from './011-access.js';
import { cluster } from './010-cluster.js';
import { sharedStore } from './012-shared-store.js';

export interface Migration {
  version: number;
  name: string;
  up: string;
}

/** Versioned migrations, applied in order at start. Never edit one that has shipped: add the next. */
export const migrations: readonly Migration[] = [foundation, tickets, patches, rollouts, customers, rolloutPromises, cluster, access, sharedStore];
