import { createWriteStream, mkdirSync, openSync, fsyncSync, closeSync, renameSync, rmSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { HashingStream, type Digest } from '../../patches/artifact-hash.js';
import { SHA256_HEX } from '../../patches/manifest.js';
import type { ArtifactBlobs } from './artifact-blobs.js';

export interface ReceivedArtifact extends Digest {
  tmpPath: string;
}

/**
 * Content-addressed artifact files under `<dataDir>/artifacts/<sha256>`: written to a temp file,
 * fsynced, then renamed, so a crash never leaves a half file under a digest name.
 */
export class ArtifactStore {
  private readonly fetching = new Map<string, Promise<boolean>>();

  /** `blobs`: the store's copy (PostgreSQL), for instances whose data dir lacks a file (issue 13). */
  constructor(private readonly deps: { dir: string; blobs?: ArtifactBlobs }) {}

  /** Puts a committed artifact into the store's copy too (no-op without one); resolves once committed there. */
  async share(sha256: string): Promise<void> {
    await this.deps.blobs?.put(sha256, this.path(sha256));
  }

  /**
   * Whether the artifact's file is here, fetching it from the store's copy when it is not (once per digest
   * at a time: a hundred devices downloading at once cause one fetch). False when neither has it.
   */
  async ensure(sha256: string, size: number): Promise<boolean> {
    if (this.has(sha256, size)) return true;
    const blobs = this.deps.blobs;
    if (!blobs) return false;
    let p = this.fetching.get(sha256);
    if (!p) {
      p = blobs.fetch(sha256, size, this.path(sha256)).finally(() => this.fetching.delete(sha256));
      this.fetching.set(sha256, p);
    }
    return p;
  }

  private ensureDir(): void {
    mkdirSync(join(this.deps.dir, 'tmp'), { recursive: true });
  }

  path(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return join(this.deps.dir, sha256);
  }

  has(sha256: string, size: number): boolean {
    const p = this.path(sha256);
    return existsSync(p) && statSync(p).size === size;
  }

  /** Stream `source` to a temp file, hashing it; fails as soon as more than `maxBytes` arrive. */
  async receive(source: Readable, maxBytes: number): Promise<ReceivedArtifact> {
    this.ensureDir();
    const tmpPath = join(this.deps.dir, 'tmp', `${Date.now()}-${randomBytes(6).toString('hex')}`);
    const hashing = new HashingStream(maxBytes);
    const file = createWriteStream(tmpPath, { mode: 0o600 });
    try {
      // pipe (not pipeline) from the source: on a size overflow the request stays open, so the
      // route can drain it and still answer 400 instead of resetting the connection.
      source.on('error', (err) => hashing.destroy(err));
      source.pipe(hashing);
      await pipeline(hashing, file);
      const fd = openSync(tmpPath, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      // The file may still be opening when the pipeline fails: remove it only once it is closed,
      // or an empty half upload would be created after the rm.
      if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
      rmSync(tmpPath, { force: true });
      throw err;
    }
    return { tmpPath, ...hashing.digest() };
  }

  /** Move a verified temp file to its content address (idempotent for an existing digest). */
  commit(tmpPath: string, sha256: string): string {
    const target = this.path(sha256);
    renameSync(tmpPath, target);
    try {
      const dfd = openSync(this.deps.dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      // fsync of a directory is not supported everywhere; the rename stays atomic
    }
    return target;
  }

  discard(tmpPath: string): void {
    rmSync(tmpPath, { force: true });
  }
}
