import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { DeviceStateWriter } from '../../src/ingest/device-state-writer.js';
import { DeviceMessageIngest } from '../../src/ingest/device-message-ingest.js';
import { createIngestMetrics, createMetricsRegistry } from '../../src/metrics/metrics.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import type { Heartbeat } from '../../src/protocol/types.js';
import { tempDir } from '../helpers/temp-dir.js';

const good: Heartbeat = {
  seq: 1,
  ts: '2026-11-26T17:00:00.000Z',
  intervalS: 30,
  agentVersion: '1.0.0',
  softwareVersion: '2.3.1',
  integrity: `sha256:${'a'.repeat(64)}`,
  sensors: [{ id: 'sen-007', ok: false, detail: 'no reading' }],
};

describe('device message ingest', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Database;
  let clock: ManualClock;
  let writer: DeviceStateWriter;
  let ingest: DeviceMessageIngest;
  let metrics: ReturnType<typeof createMetricsRegistry>;
  const heard: string[] = [];

  const stored = () => db.prepare('SELECT seq, software_version, heartbeats, last_seen, heartbeat FROM device_state WHERE device_id = ?').get('gw-1');
  const rejected = async (reason: string) => {
    const m = await metrics.getSingleMetric('fleet_heartbeat_rejected_total')!.get();
    return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
  };

  beforeEach(async () => {
    dir = tempDir();
    db = openDatabase(join(dir.path, 'x.db'));
    clock = new ManualClock('2026-11-26T17:00:05Z');
    const registry = new DeviceRegistry({ db, clock, log: silentLogger(), fiscalYearEnd: () => '2027-06-30', authCacheSize: 0 });
    registry.start();
    await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'minnovation' })]);
    await registry.add([parseDeviceInput({ id: 'gw-gone', type: 'gateway', customer: 'a', installer: 'minnovation' })]);
    registry.revoke('gw-gone');
    metrics = createMetricsRegistry(false);
    const m = createIngestMetrics(metrics);
    writer = new DeviceStateWriter({ db, clock, log: silentLogger(), flushIntervalMs: 100, maxBatch: 1000 });
    writer.start();
    heard.length = 0;
    ingest = new DeviceMessageIngest({
      clock,
      log: silentLogger(),
      directory: registry,
      writer,
      maxHeartbeatBytes: 2048,
      heartbeats: m.heartbeats,
      rejected: m.rejected,
      listeners: [
        {
          onHeartbeat: (id, hb, at) => heard.push(`hb:${id}:${hb.seq}:${at}`),
          onState: (id, online) => heard.push(`state:${id}:${online}`),
          onPatchStatus: (id, s) => heard.push(`patch:${id}:${s.state}`),
        },
      ],
    });
    ingest.handle('gw-1', 'heartbeat', Buffer.from(JSON.stringify(good)));
    clock.advance(100);
  });
  afterEach(() => {
    writer.stop();
    db.close();
    dir.cleanup();
  });

  it('stores the latest heartbeat with the daemon receive time, coalescing per device', () => {
    expect(stored()).toMatchObject({ seq: 1, software_version: '2.3.1', heartbeats: 1, last_seen: Date.parse('2026-11-26T17:00:05Z') });
    for (let seq = 2; seq <= 5; seq++) ingest.handle('gw-1', 'heartbeat', Buffer.from(JSON.stringify({ ...good, seq })));
    expect(writer.pendingCount()).toBe(1);
    clock.advance(100);
    expect(stored()).toMatchObject({ seq: 5, heartbeats: 5 });
    expect(heard.filter((h) => h.startsWith('hb:'))).toHaveLength(5);
  });

  it('strips unknown keys before storing', () => {
    ingest.handle('gw-1', 'heartbeat', Buffer.from(JSON.stringify({ ...good, seq: 2, evil: '<script>' })));
    clock.advance(100);
    expect((stored() as { heartbeat: string }).heartbeat).not.toContain('evil');
  });

  const bad: [string, string, Buffer][] = [
    ['json', 'malformed JSON', Buffer.from('{"seq": 2,')],
    ['json', 'binary garbage', Buffer.from([0xff, 0xfe, 0x00])],
    ['schema', 'wrong type for seq', Buffer.from(JSON.stringify({ ...good, seq: 'two' }))],
    ['schema', 'missing softwareVersion', Buffer.from(JSON.stringify({ ...good, softwareVersion: undefined }))],
    ['schema', 'negative interval', Buffer.from(JSON.stringify({ ...good, intervalS: -5 }))],
    ['schema', 'bad integrity format', Buffer.from(JSON.stringify({ ...good, integrity: 'md5:abc' }))],
    ['schema', 'a JSON array', Buffer.from('[1,2,3]')],
    ['size', 'oversize payload', Buffer.from(JSON.stringify({ ...good, agentVersion: 'x'.repeat(3000) }))],
  ];
  it.each(bad)('drops and counts (%s): %s, leaving stored state unchanged', async (reason, _what, payload) => {
    const before = stored();
    const count = await rejected(reason);
    ingest.handle('gw-1', 'heartbeat', payload);
    clock.advance(100);
    expect(stored()).toEqual(before);
    expect(await rejected(reason)).toBe(count + 1);
    expect(heard.filter((h) => h.startsWith('hb:'))).toHaveLength(1);
  });

  it('drops and counts messages from unknown or revoked devices', async () => {
    ingest.handle('ghost', 'heartbeat', Buffer.from(JSON.stringify(good)));
    ingest.handle('gw-gone', 'heartbeat', Buffer.from(JSON.stringify(good)));
    clock.advance(100);
    expect(await rejected('unknown_device')).toBe(2);
    expect(db.prepare('SELECT COUNT(*) n FROM device_state').get()).toEqual({ n: 1 });
  });

  it('validates state and patch status messages and passes them on', async () => {
    ingest.handle('gw-1', 'state', Buffer.from('{"online":false}'));
    ingest.handle('gw-1', 'state', Buffer.from('{"online":"no"}'));
    ingest.handle('gw-1', 'patch/status', Buffer.from('{"patchId":"p1","state":"installed"}'));
    ingest.handle('gw-1', 'patch/status', Buffer.from('{"patchId":"p1","state":"exploded"}'));
    expect(heard.slice(1)).toEqual(['state:gw-1:false', 'patch:gw-1:installed']);
    expect(await rejected('schema')).toBe(2);
  });

  it('stop() flushes what is pending (graceful shutdown loses nothing)', () => {
    ingest.handle('gw-1', 'heartbeat', Buffer.from(JSON.stringify({ ...good, seq: 9 })));
    writer.stop();
    expect(stored()).toMatchObject({ seq: 9 });
  });
});
