import { createReadStream, createWriteStream, renameSync, rmSync, mkdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import type { PgPool } from '../db/pg/pg-database.js';

/** Bytes per stored chunk: one row each, small enough for any PostgreSQL-compatible database's row limits. */
export const CHUNK_BYTES = 1024 * 1024;

/**
 * Patch artifacts kept in the store as well as in the data dir (issue 13: instances on several hosts share
 * the store, not a data dir). Content-addressed like the files: the same sha256 is the same bytes, so writes
 * are idempotent and two instances publishing one artifact at once agree.
 */
export interface ArtifactBlobs {
  /** Store the bytes of `file` under `sha256` (`artifact_chunks`); resolves once committed. */
  put(sha256: string, file: string): Promise<void>;
  /**
   * Write the stored bytes of `sha256` to `target` (a temp file, then rename) after checking `size` and the
   * digest. Resolves false when the store does not hold them (complete); throws on a store error.
   */
  fetch(sha256: string, size: number, target: string): Promise<boolean>;
}

/** `artifact_chunks` on PostgreSQL, over the app's pool (async: a download never waits on the event loop's store calls). */
export class PgArtifactBlobs implements ArtifactBlobs {
  constructor(private readonly pool: PgPool) {}

  async put(sha256: string, file: string): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      let seq = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const write = async (chunk: Buffer) => {
        await client.query('INSERT INTO artifact_chunks (sha256, seq, data) VALUES ($1, $2, $3) ON CONFLICT (sha256, seq) DO NOTHING', [sha256, seq++, chunk]);
      };
      for await (const part of createReadStream(file, { highWaterMark: CHUNK_BYTES })) {
        pending.push(part as Buffer);
        pendingBytes += (part as Buffer).length;
        while (pendingBytes >= CHUNK_BYTES) {
          const all = Buffer.concat(pending);
          await write(all.subarray(0, CHUNK_BYTES));
          pending = [all.subarray(CHUNK_BYTES)];
          pendingBytes = all.length - CHUNK_BYTES;
        }
      }
      if (pendingBytes > 0 || seq === 0) await write(Buffer.concat(pending));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async fetch(sha256: string, size: number, target: string): Promise<boolean> {
    const chunks = Math.max(1, Math.ceil(size / CHUNK_BYTES));
    const have = await this.pool.query<{ n: string }>('SELECT COUNT(*) AS n FROM artifact_chunks WHERE sha256 = $1', [sha256]);
    if (Number(have.rows[0]?.n ?? 0) < chunks) return false;
    mkdirSync(dirname(target), { recursive: true });
    const tmp = join(dirname(target), `.fetch-${randomBytes(6).toString('hex')}`);
    const out = createWriteStream(tmp, { mode: 0o600 });
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      for (let seq = 0; seq < chunks; seq++) {
        const r = await this.pool.query<{ data: Buffer }>('SELECT data FROM artifact_chunks WHERE sha256 = $1 AND seq = $2', [sha256, seq]);
        const data = r.rows[0]?.data;
        if (!data) throw new Error(`artifact ${sha256}: chunk ${seq} missing in the store`);
        hash.update(data);
        bytes += data.length;
        if (!out.write(data)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'close');
      const digest = hash.digest('hex');
      if (bytes !== size || digest !== sha256) throw new Error(`artifact ${sha256}: the store holds ${bytes} bytes with sha256 ${digest}`);
      renameSync(tmp, target);
      return true;
    } catch (err) {
      out.destroy();
      rmSync(tmp, { force: true });
      throw err;
    }
  }
}
