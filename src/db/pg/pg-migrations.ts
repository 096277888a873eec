/**
 * The PostgreSQL migration set (issue 13, item 3): versioned like the SQLite set, one list per engine,
 * same version numbers for the same change. Portable SQL only (no PL/pgSQL, no advisory locks, no
 * extensions) so a PostgreSQL-compatible distributed database (CockroachDB, YugabyteDB) runs it too.
 *
 * Ported so far: the cluster lease (010). The other SQLite tables (devices, device_state, tickets,
 * outbox, patches, rollouts) are not in this set yet; `store.url` refuses to start until they are
 * (src/db/store-engine.ts), rather than keep part of the state in SQLite.
 */
export interface PgMigration {
  version: number;
  name: string;
  up: string;
}

export const pgMigrations: readonly PgMigration[] = [
  {
    version: 10,
    name: 'cluster',
    up: `
CREATE TABLE cluster_lease (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  token BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  renewed_at BIGINT NOT NULL
);
`,
  },
];
