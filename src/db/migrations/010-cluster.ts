import type { Migration } from './index.js';

/**
 * Several xcared on one fleet (issue 13, item 3): the leader lease. One row per lease name; `token`
 * is the fencing token, raised by one at every change of holder (and at a holder's own return after
 * its lease ran out), so a term is never reused. Same columns and meaning as the PostgreSQL set.
 */
export const cluster: Migration = {
  version: 10,
  name: 'cluster',
  up: `
CREATE TABLE cluster_lease (
  name TEXT PRIMARY KEY,             -- 'leader'
  holder TEXT NOT NULL,              -- instance id (cluster.instanceId, default <hostname>-<pid>)
  token INTEGER NOT NULL,            -- fencing token: the leadership term, strictly increasing
  expires_at INTEGER NOT NULL,       -- ms since the epoch (holder's clock); free after this
  renewed_at INTEGER NOT NULL
);
`,
};
