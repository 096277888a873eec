import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { manifestBytes } from '../../patches/manifest.js';
import { signBytes } from '../../patches/signing.js';
import { tempDir } from '../helpers/temp-dir.js';
import { buildArtifact, makeKey, manifestFor } from '../helpers/patch-fixtures.js';

/**
 * Issue 11 fault 2, the rest of its class: creates that race past a service's "already exists?" check
 * (the check, then an await, then the INSERT) must answer 2xx or 409, never a 500 from the storage
 * constraint, and store exactly one row.
 */
const ADMIN = 'race-admin-token-0123456789';

describe('racing creates over HTTP (real daemon, temp SQLite)', () => {
  const dir = tempDir('xcare-races-');
  let app: App;
  let base: string;
  let key: ReturnType<typeof makeKey>;
  let artifact: ReturnType<typeof buildArtifact>;

  beforeAll(async () => {
    key = makeKey(dir.path, 'release');
    artifact = buildArtifact(dir.path);
    app = new App(
      validateConfig({
        dataDir: join(dir.path, 'data'),
        adminToken: ADMIN,
        mqtt: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        patches: { releaseKeys: [key.pubPath] },
      }),
      { clock: systemClock, log: silentLogger() },
    );
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  it('six identical patch publishes at once: one 201, the rest 200 or 409, one stored patch', async () => {
    const bytes = manifestBytes(manifestFor(artifact, key, { expiresAt: '2099-01-01T00:00:00Z' }));
    const signatures = [{ keyId: key.keyId, signature: signBytes(bytes, key.privateKey).toString('base64') }];
    const publish = () =>
      fetch(`${base}/api/v1/patches`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${ADMIN}`,
          'content-type': 'application/octet-stream',
          'x-xcare-manifest': bytes.toString('base64'),
          'x-xcare-signatures': Buffer.from(JSON.stringify(signatures)).toString('base64'),
        },
        body: new Uint8Array(artifact.bytes),
      }).then(async (res) => ({ status: res.status, json: (await res.json()) as Record<string, unknown> }));
    const answers = await Promise.all(Array.from({ length: 6 }, publish));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    for (const a of answers) {
      expect([200, 201, 409]).toContain(a.status);
      if (a.status === 409) expect(a.json.code).toBe('conflict');
    }
    expect((app.db.prepare('SELECT COUNT(*) AS n FROM patches').get() as { n: number }).n).toBe(1);
  });
});
