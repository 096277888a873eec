import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { ROOT, ctl, startDaemon, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { E2E_ON_POSTGRES } from '../helpers/store-engines.js';
import { existsSync } from 'node:fs';

const run = promisify(execFile);

async function xcared(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'bin/xcared.js'), ...args], { timeout: 60_000, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** README "Upgrade and backup": `xcared --backup FILE` copies the live database with SQLite's online backup API. */
describe.skipIf(E2E_ON_POSTGRES)('xcared --backup', () => {
  const dir = tempDir('xcare-backup-');
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
  });
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('writes a consistent copy while the daemon runs, with every migration and every committed device', async () => {
    for (const id of ['gw-b1', 'gw-b2']) {
      const r = await ctl(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare']);
      expect(r.code, r.stderr).toBe(0);
    }
    const target = join(dir.path, 'xcare-backup.db');
    const r = await xcared(['--config', daemon.configFile, '--backup', target]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const copy = new BetterSqlite3(target, { readonly: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      expect((copy.prepare('SELECT id FROM devices ORDER BY id').all() as { id: string }[]).map((d) => d.id)).toEqual(['gw-b1', 'gw-b2']);
      expect((copy.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n).toBeGreaterThan(0);
    } finally {
      copy.close();
    }
    expect((await fetch(`${daemon.url}/readyz`)).status).toBe(200);
  });

  it('refuses to overwrite an existing file and exits 1 naming it', async () => {
    const target = join(dir.path, 'twice.db');
    expect((await xcared(['--config', daemon.configFile, '--backup', target])).code).toBe(0);
    const again = await xcared(['--config', daemon.configFile, '--backup', target]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`${target} exists`);
  });
});

describe('xcared --backup on PostgreSQL', () => {
  it('exits 2 pointing to pg_dump, and writes nothing', async () => {
    const dir = tempDir('xcare-backup-pg-');
    try {
      const target = join(dir.path, 'copy.db');
      const r = await xcared(['--backup', target], { XCARE_DATA_DIR: join(dir.path, 'data'), XCARE_DATABASE_URL: 'postgres://xcare@127.0.0.1:1/none' });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/PostgreSQL \(store\.url\): back it up with pg_dump/);
      expect(existsSync(target)).toBe(false);
    } finally {
      dir.cleanup();
    }
  });
});
