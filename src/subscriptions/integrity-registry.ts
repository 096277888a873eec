import type { Statement } from '../db/database.js';
import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { ConflictError, ValidationError } from '../errors.js';

export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;
const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;

export interface IntegrityEntry {
  version: string;
  digest: string;
  /** Who registered it: `api`, `patch:<id>`, `release:<id>`. */
  source: string;
  registeredAt: string;
}

interface Row {
  version: string;
  digest: string;
  source: string;
  registered_at: number;
}

/**
 * The digest each software version must report (RULES.md "Eligibility" 3). Registered by the API today and by
 * signed patch publication later. A version keeps one digest: registering a different one is a conflict unless
 * `replace` is asked for explicitly.
 */
/** How long an `expected()` answer is reused (ms). */
const EXPECTED_TTL_MS = 5000;

export class IntegrityRegistry {
  /** Prepared once: `expected()` runs on the ingest path, for each device's first heartbeat and each new digest. */
  private byVersion?: Statement;
  /**
   * `expected()` answers per version, kept EXPECTED_TTL_MS (wall ms of the answer). A fleet's first heartbeats
   * after a start asked SQLite once per device, thousands of reads of the same few rows on the event loop
   * (issue 12); a registration here drops its version at once, one made by another instance of a cluster is
   * seen within the TTL.
   */
  private readonly expectedCache = new Map<string, { digest: string | undefined; at: number }>();

  constructor(private readonly deps: { db: Database; clock: Clock }) {}

  register(version: string, digest: string, source: string, options: { replace?: boolean } = {}): IntegrityEntry {
    if (typeof version !== 'string' || !VERSION_PATTERN.test(version)) throw new ValidationError('version: expected a software version like 2.3.1');
    const normalized = typeof digest === 'string' ? digest.trim().toLowerCase() : '';
    if (!DIGEST_PATTERN.test(normalized)) throw new ValidationError('digest: expected sha256:<64 hex>');
    if (typeof source !== 'string' || source.length === 0) throw new ValidationError('source: required');
    const existing = this.get(version);
    if (existing && existing.digest === normalized) return existing;
    if (existing && !options.replace) {
      throw new ConflictError(`version ${version} already has digest ${existing.digest} (source ${existing.source}); pass replace to overwrite`);
    }
    const now = this.deps.clock.now();
    this.deps.db
      .prepare(
        `INSERT INTO software_integrity (version, digest, source, registered_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(version) DO UPDATE SET digest = excluded.digest, source = excluded.source, registered_at = excluded.registered_at`,
      )
      .run(version, normalized, source, now);
    this.expectedCache.delete(version);
    return { version, digest: normalized, source, registeredAt: new Date(now).toISOString() };
  }

  /** The registered digest, or undefined (eligibility then says no digest is registered). */
  expected(version: string): string | undefined {
    const now = this.deps.clock.now();
    const cached = this.expectedCache.get(version);
    if (cached && now - cached.at < EXPECTED_TTL_MS && now >= cached.at) return cached.digest;
    const digest = this.get(version)?.digest;
    // Versions are few (one row each); the bound only guards against a fleet reporting made-up ones.
    if (this.expectedCache.size >= 10_000) this.expectedCache.clear();
    this.expectedCache.set(version, { digest, at: now });
    return digest;
  }

  get(version: string): IntegrityEntry | undefined {
    this.byVersion ??= this.deps.db.prepare('SELECT * FROM software_integrity WHERE version = ?');
    const row = this.byVersion.get(version) as Row | undefined;
    return row ? toEntry(row) : undefined;
  }

  list(): IntegrityEntry[] {
    return (this.deps.db.prepare('SELECT * FROM software_integrity ORDER BY version').all() as Row[]).map(toEntry);
  }
}

function toEntry(row: Row): IntegrityEntry {
  return { version: row.version, digest: row.digest, source: row.source, registeredAt: new Date(row.registered_at).toISOString() };
}
