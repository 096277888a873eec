import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, freePort, eventually } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { selfSignedCert, type SelfSignedCert } from '../helpers/tls-cert.js';
import { expiredCert } from '../helpers/expired-cert.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { makeKey } from '../helpers/patch-fixtures.js';

const run = promisify(execFile);

/** Run the real xcared to completion (it must exit on its own: a config fault). */
async function xcared(args: string[], cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'bin/xcared.js'), ...args], { cwd, timeout: 30_000, env: { ...process.env, XCARE_DATA_DIR: '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function httpsGet(url: string, ca?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Issue 10 fault 4: `xcared --check` said "configuration ok" for a release key that did not exist, the real
 * start then failed after creating the database; relative paths resolved against the working directory; an
 * unwritable data dir said only "unable to open database file"; an expired certificate was accepted.
 * Fault 5: the daemon had no HTTPS.
 */
describe.skipIf(toolsMissing(['openssl'], 'openssl').length > 0)('xcared config files (issue 10 faults 4 and 5)', () => {
  const dir = tempDir('xcare-config-files-');
  let cert: SelfSignedCert;
  let expired: { certPath: string; keyPath: string };
  beforeAll(async () => {
    cert = await selfSignedCert(dir.path);
    expired = await expiredCert(join(dir.path, 'expired'));
  });
  afterAll(() => dir.cleanup());

  function writeConfig(name: string, yaml: string): { file: string; home: string } {
    const home = join(dir.path, name);
    mkdirSync(home, { recursive: true });
    const file = join(home, 'config.yaml');
    writeFileSync(file, `adminToken: config-files-admin-token\nmqtt: { host: 127.0.0.1, port: 0 }\nhttp: { host: 127.0.0.1, port: 0 }\n${yaml}`);
    return { file, home };
  }

  it('--check and a real start exit 2 naming patches.releaseKeys for a key file that does not exist, writing nothing', async () => {
    const { file, home } = writeConfig('missing-key', 'dataDir: data\npatches: { releaseKeys: [keys/nope.pem] }\n');
    const check = await xcared(['--config', file, '--check']);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('patches.releaseKeys[0]');
    expect(check.stderr).toContain(join(home, 'keys/nope.pem'));
    expect(check.stderr).toContain('ENOENT');
    expect(check.stdout).not.toContain('configuration ok');
    const start = await xcared(['--config', file]);
    expect(start.code).toBe(2);
    expect(start.stderr).toContain('patches.releaseKeys[0]');
    expect(start.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(join(home, 'data'))).toBe(false);
  });

  it('--check refuses a file that is not a public key, naming the key and the file', async () => {
    const { file, home } = writeConfig('bad-key', 'dataDir: data\npatches: { releaseKeys: [bad.pem] }\n');
    writeFileSync(join(home, 'bad.pem'), 'not a key\n');
    const check = await xcared(['--config', file, '--check']);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('patches.releaseKeys[0]');
    expect(existsSync(join(home, 'data'))).toBe(false);
  });

  it('relative paths resolve against the config file, not the working directory (systemd starts in /)', async () => {
    const { file, home } = writeConfig('relative', '');
    writeFileSync(file, 'adminToken: config-files-admin-token\ndataDir: data\nmqtt: { host: 127.0.0.1, port: 0, tls: { port: 0, cert: tls/cert.pem, key: tls/key.pem }, plainWithTls: true }\npatches: { releaseKeys: [keys/public.pem] }\n');
    mkdirSync(join(home, 'keys'));
    const key = makeKey(join(home, 'keys'), 'release');
    await run('cp', [key.pubPath, join(home, 'keys/public.pem')]);
    mkdirSync(join(home, 'tls'));
    await run('cp', [cert.certPath, join(home, 'tls/cert.pem')]);
    await run('cp', [cert.keyPath, join(home, 'tls/key.pem')]);
    const check = await xcared(['--config', file, '--check'], '/');
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('configuration ok');
    expect(existsSync(join(home, 'data'))).toBe(false); // --check writes nothing

    const httpPort = await freePort();
    writeFileSync(file, `adminToken: config-files-admin-token\ndataDir: data\nmqtt: { host: 127.0.0.1, port: 0, tls: { port: 0, cert: tls/cert.pem, key: tls/key.pem }, plainWithTls: true }\nhttp: { host: 127.0.0.1, port: ${httpPort} }\npatches: { releaseKeys: [keys/public.pem] }\n`);
    const proc = spawn(process.execPath, [join(ROOT, 'bin/xcared.js'), '--config', file], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually(async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok, 30_000, `xcared ready: ${out}`);
      expect(readdirSync(join(home, 'data'))).toContain('xcare.db');
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  });

  it('a data dir that cannot be created names dataDir, the path and the cause, and exits 2', async () => {
    const { file, home } = writeConfig('unwritable', 'dataDir: blocker/data\n');
    writeFileSync(join(home, 'blocker'), 'a file where a directory should be\n');
    for (const args of [['--config', file, '--check'], ['--config', file]]) {
      const r = await xcared(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('dataDir:');
      expect(r.stderr).toContain(join(home, 'blocker/data'));
      expect(r.stderr).toContain('is not a directory');
    }
  });

  it.skipIf(process.getuid?.() === 0)('a read-only data dir names the path and EACCES (not run as root: root writes anywhere)', async () => {
    const { file, home } = writeConfig('readonly', 'dataDir: ro\n');
    mkdirSync(join(home, 'ro'), { mode: 0o500 });
    const r = await xcared(['--config', file, '--check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`dataDir: ${join(home, 'ro')} is not writable: EACCES`);
  });

  it.each([
    ['mqtt.tls', (c: { certPath: string; keyPath: string }) => `mqtt: { host: 127.0.0.1, port: 0, tls: { port: 0, cert: ${c.certPath}, key: ${c.keyPath} } }\n`],
    ['http.tls', (c: { certPath: string; keyPath: string }) => `http: { host: 127.0.0.1, port: 0, tls: { cert: ${c.certPath}, key: ${c.keyPath} } }\n`],
  ])('an expired %s certificate is refused at start with exit 2, naming the key and the date', async (key, yaml) => {
    const { file, home } = writeConfig(`expired-${key}`, `dataDir: data\n`);
    writeFileSync(file, `adminToken: config-files-admin-token\ndataDir: data\n${yaml(expired)}`);
    for (const args of [['--config', file, '--check'], ['--config', file]]) {
      const r = await xcared(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${key}.cert:`);
      expect(r.stderr).toContain('expired on 2021-01-01');
    }
    expect(existsSync(join(home, 'data'))).toBe(false);
  });

  // Found from outside: `health.tickMs: 3000000000` passed --check and the daemon started with a
  // TimeoutOverflowWarning: Node runs a timer over 2^31-1 ms after 1 ms, so the evaluator ticked every millisecond
  // (the same for every *Ms timer: ingest flush, webhook backoff, rollouts tick). A number of seconds of 1e308
  // made deadlines Infinity; a webhook url of ftp:// was accepted and every delivery would fail.
  it.each([
    ['health.tickMs', 'health: { tickMs: 3000000000 }'],
    ['ingest.flushIntervalMs', 'ingest: { flushIntervalMs: 2147483648 }'],
    ['webhook.backoffMaxMs', 'webhook: { url: "http://127.0.0.1:9/x", secret: s1234567, backoffMaxMs: 10000000000 }'],
    ['rollouts.tickMs', 'rollouts: { tickMs: 1e12 }'],
    ['mqtt.connectTimeoutMs', 'mqtt: { host: 127.0.0.1, port: 0, connectTimeoutMs: 3000000000 }'],
    ['http.requestTimeoutMs', 'http: { host: 127.0.0.1, port: 0, requestTimeoutMs: 3000000000 }'],
    ['health.lastWillGraceS', 'health: { lastWillGraceS: 1e308 }'],
    ['tickets.resolveAfterS', 'tickets: { resolveAfterS: 1e308 }'],
    ['webhook.url', 'webhook: { url: "ftp://example.invalid/hook", secret: s1234567 }'],
  ])('--check and a real start exit 2 naming %s out of bounds, writing nothing', async (key, yaml) => {
    const { file, home } = writeConfig(`bounds-${key}`, '');
    writeFileSync(file, `adminToken: config-files-admin-token\ndataDir: data\n${yaml.startsWith('mqtt') ? '' : 'mqtt: { host: 127.0.0.1, port: 0 }\n'}${yaml.startsWith('http') ? '' : 'http: { host: 127.0.0.1, port: 0 }\n'}${yaml}\n`);
    for (const args of [['--config', file, '--check'], ['--config', file]]) {
      const r = await xcared(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${key}: `);
    }
    expect(existsSync(join(home, 'data'))).toBe(false);
  });

  it('http.tls serves the API over HTTPS, verified with the CA, and exports days to expiry', async () => {
    const httpPort = await freePort();
    const { file } = writeConfig('https', '');
    writeFileSync(file, `adminToken: config-files-admin-token\ndataDir: data\nmqtt: { host: 127.0.0.1, port: 0 }\nhttp: { host: 127.0.0.1, port: ${httpPort}, tls: { cert: ${cert.certPath}, key: ${cert.keyPath} } }\n`);
    const proc = spawn(process.execPath, [join(ROOT, 'bin/xcared.js'), '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually(async () => (await httpsGet(`https://localhost:${httpPort}/readyz`, cert.cert)) === 200, 30_000, `xcared ready over https: ${out}`);
      // Without the CA the self-signed certificate is refused; plain HTTP gets no answer.
      await expect(httpsGet(`https://localhost:${httpPort}/readyz`)).rejects.toThrow(/self[- ]signed|unable to verify/i);
      await expect(fetch(`http://127.0.0.1:${httpPort}/readyz`)).rejects.toThrow();
      const metrics = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(`https://localhost:${httpPort}/metrics`, { ca: cert.cert }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(body));
        });
        req.on('error', reject);
        req.end();
      });
      const days = Number(/fleet_tls_cert_expiry_days\{listener="https"\} ([\d.]+)/.exec(metrics)?.[1]);
      expect(days).toBeGreaterThan(0);
      expect(days).toBeLessThanOrEqual(1); // selfSignedCert() is valid for one day
      expect(out).toContain('TLS certificate expires soon');
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  });
});
