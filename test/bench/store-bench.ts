import { readFileSync } from 'node:fs';
import { tempDir } from '../helpers/temp-dir.js';
import { BENCH_PG_URL, benchStore, seedDevices, type StoreKind } from './bench-store.js';
import { HealthStateWriter } from '../../src/health/health-state-writer.js';
import { silentLogger } from '../../src/log.js';

/**
 * `BENCH=store` (issue 13): what one synchronous store statement costs the daemon's event loop, SQLite
 * (better-sqlite3) against PostgreSQL (PgSyncDatabase: a round trip to a worker thread and the server while
 * the loop waits). The workload is the health evaluator's tick when devices change state, in the tick's one
 * transaction, three ways: `read`: per device a `SELECT 1 FROM devices`, an UPSERT and an INSERT of the
 * event (HealthStateWriter before 6823acc: each read is a round trip); `writer`: HealthStateWriter.write
 * itself (per device an UPSERT .. WHERE EXISTS and an INSERT, no read: PgSyncDatabase sends the queued
 * writes with the COMMIT); `batched`: multi-row statements, 500 devices each. Each figure is how long the
 * transaction holds the event loop.
 * BENCH_STORE_DEVICES (2000) devices change state per transaction; 3 rounds.
 */
export async function runStoreBench(opts: { log?: (s: string) => void } = {}): Promise<Record<string, unknown>> {
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const n = Number(process.env.BENCH_STORE_DEVICES ?? 2000);
  const kinds: StoreKind[] = BENCH_PG_URL ? ['sqlite', 'postgres'] : ['sqlite'];
  if (!BENCH_PG_URL) log('*** PostgreSQL NOT MEASURED: set BENCH_DATABASE_URL (or XCARE_TEST_DATABASE_URL) = postgres://... ***');
  const out: Record<string, unknown> = {};
  for (const kind of kinds) {
    const dir = tempDir('xcare-store-bench-');
    const store = await benchStore(kind, dir.path, 'store');
    const ids = Array.from({ length: n }, (_, i) => `st-${String(i).padStart(6, '0')}`);
    try {
      seedDevices(store, dir.path, ids, 'bench-token-0123456789abcdef');
      const db = store.open();
      try {
        const known = db.prepare('SELECT 1 FROM devices WHERE id = ?');
        const upsert = db.prepare(
          'INSERT INTO device_state (device_id, online, state_changed_at) VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, state_changed_at = excluded.state_changed_at',
        );
        const event = db.prepare('INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, ?, ?)');
        const writer = new HealthStateWriter({ db, log: silentLogger() });
        writer.start();
        const perDevice: number[] = [];
        const viaWriter: number[] = [];
        const batched: number[] = [];
        for (let round = 0; round < 3; round++) {
          let t0 = performance.now();
          db.transaction(() => {
            for (const id of ids) {
              if (known.get(id) === undefined) continue;
              upsert.run(id, round % 2, Date.now());
              event.run(Date.now(), id, round % 2 ? 'online' : 'offline', '{}');
            }
          })();
          perDevice.push(performance.now() - t0);
          for (const id of ids) writer.change(id, round % 2 === 0, Date.now(), round % 2 ? 'offline' : 'online');
          const pending = writer.take();
          t0 = performance.now();
          db.transaction(() => writer.write(pending))();
          viaWriter.push(performance.now() - t0);
          t0 = performance.now();
          db.transaction(() => {
            for (let i = 0; i < ids.length; i += 500) {
              const part = ids.slice(i, i + 500);
              const marks = part.map(() => '?').join(', ');
              const present = new Set((db.prepare(`SELECT id FROM devices WHERE id IN (${marks})`).all(...part) as { id: string }[]).map((r) => r.id));
              const rows = part.filter((id) => present.has(id));
              db.prepare(
                `INSERT INTO device_state (device_id, online, state_changed_at) VALUES ${rows.map(() => '(?, ?, ?)').join(', ')} ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, state_changed_at = excluded.state_changed_at`,
              ).run(...rows.flatMap((id) => [id, round % 2, Date.now()]));
              db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES ${rows.map(() => '(?, ?, ?, ?)').join(', ')}`).run(
                ...rows.flatMap((id) => [Date.now(), id, round % 2 ? 'online' : 'offline', '{}']),
              );
            }
          })();
          batched.push(performance.now() - t0);
        }
        const best = (xs: number[]) => Math.min(...xs);
        const r = {
          devices: n,
          load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
          readPerDeviceMs: perDevice.map((x) => Math.round(x)),
          // Writes inside a transaction travel with the next read (PgSyncDatabase): one round trip per device here.
          roundTripUs: Math.round((best(perDevice) * 1000) / n),
          writerMs: viaWriter.map((x) => Math.round(x)),
          batchedMs: batched.map((x) => Math.round(x)),
        };
        log(
          `${kind === 'postgres' ? 'PostgreSQL' : 'SQLite'}: ${n} devices changing state in one transaction, 3 rounds: with a read per device ${r.readPerDeviceMs.join(' / ')} ms (${r.roundTripUs} µs a device); HealthStateWriter.write ${r.writerMs.join(' / ')} ms; multi-row, 500 devices a statement ${r.batchedMs.join(' / ')} ms  [load ${r.load}]`,
        );
        out[kind] = r;
      } finally {
        db.close();
      }
    } finally {
      await store.drop();
      dir.cleanup();
    }
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runStoreBench();
}
