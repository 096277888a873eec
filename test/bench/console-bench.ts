import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { openDatabase } from '../../src/db/database.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * The console and the paged API on a large fleet (issue 14: "fast on 10,000 devices"): devices and their stored
 * live state are written straight into SQLite (provisioning 10,000 scrypt-hashed tokens through the API would
 * measure scrypt), then the real daemon serves the Fleet page and the device list over loopback HTTP. Per request
 * kind: p50 and p99 of N sequential requests, and the body size.
 */
export async function runConsoleBench(): Promise<Record<string, unknown>> {
  const devices = Number(process.env.BENCH_DEVICES ?? 10_000);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 40);
  const dir = tempDir('xcare-bench-console-');
  const dataDir = join(dir.path, 'data');
  const db = openDatabase(join(dataDir, 'xcare.db'));
  const now = Date.now();
  db.transaction(() => {
    const add = db.prepare(
      "INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at) VALUES (?, ?, ?, ?, 'minnovation', ?, '2026-07-01', '2027-06-30', '[]', 'bench-no-login', ?)",
    );
    const state = db.prepare(
      "INSERT INTO device_state (device_id, last_seen, online, connected, software_version, agent_version, heartbeat, heartbeats) VALUES (?, ?, 1, 0, '1.0.0', '1.0.0', ?, 1)",
    );
    for (let i = 0; i < devices; i++) {
      const gateway = i % 10 === 0;
      const id = gateway ? `gw-${String(i).padStart(6, '0')}` : `sen-${String(i).padStart(6, '0')}`;
      const parent = gateway ? null : `gw-${String(i - (i % 10)).padStart(6, '0')}`;
      add.run(id, gateway ? 'gateway' : 'sensor', parent, `cust-${i % 50}`, i % 3 === 0 ? 'xcare_pro' : 'xcare', now);
      state.run(id, now, JSON.stringify({ seq: 1, ts: new Date(now).toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '1.0.0' }));
    }
  })();
  db.close();

  const adminToken = 'bench-console-admin-token-01';
  const app = new App(validateConfig({ dataDir, adminToken, log: { level: 'silent' }, mqtt: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } }), {
    clock: systemClock,
    log: silentLogger(),
  });
  await app.start();
  const base = `http://127.0.0.1:${app.http.port()}`;
  const login = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base }, body: `token=${adminToken}` });
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  const middle = Buffer.from(JSON.stringify(`sen-${String(Math.floor(devices / 2)).padStart(6, '0')}`)).toString('base64url');
  const cases: [string, string, Record<string, string>][] = [
    ['console /fleet (first page of 50)', '/fleet', { cookie }],
    ['console /fleet (a page in the middle)', `/fleet?cursor=${middle}`, { cookie }],
    ['console /fleet?type=gateway&tier=xcare_pro', '/fleet?type=gateway&tier=xcare_pro', { cookie }],
    ['console /fleet?q=0042 (id contains)', '/fleet?q=0042', { cookie }],
    ['console /fleet?state=unknown', '/fleet?state=unknown', { cookie }],
    ['console live rows /console/fleet/rows', '/console/fleet/rows', { cookie }],
    ['api /api/v1/devices?limit=50', '/api/v1/devices?limit=50', { authorization: `Bearer ${adminToken}` }],
    [`api /api/v1/devices (all ${devices})`, '/api/v1/devices', { authorization: `Bearer ${adminToken}` }],
  ];
  const results: Record<string, unknown> = {};
  try {
    for (const [name, path, headers] of cases) {
      const times: number[] = [];
      let bytes = 0;
      for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        const res = await fetch(`${base}${path}`, { headers });
        const body = await res.arrayBuffer();
        times.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
        bytes = body.byteLength;
      }
      times.sort((a, b) => a - b);
      const p = (q: number) => Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))]! * 10) / 10;
      results[name] = { p50Ms: p(0.5), p99Ms: p(0.99), kb: Math.round(bytes / 1024) };
      process.stdout.write(`${name.padEnd(48)} p50 ${String(p(0.5)).padStart(6)} ms  p99 ${String(p(0.99)).padStart(6)} ms  ${Math.round(bytes / 1024)} KB\n`);
    }
  } finally {
    await app.stop();
    dir.cleanup();
  }
  return results;
}
