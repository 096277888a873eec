import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { DeviceStateWriter } from '../../src/ingest/device-state-writer.js';
import { DeviceMessageIngest } from '../../src/ingest/device-message-ingest.js';
import { createIngestMetrics, createMetricsRegistry } from '../../src/metrics/metrics.js';
import { ManualClock } from '../../src/clock.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { LogThrottle } from '../../src/log-throttle.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('LogThrottle', () => {
  it.each([
    // [events at ms, window, admitted results]
    [[0, 10, 20, 60_000, 60_001, 130_000], 60_000, [0, undefined, undefined, 2, undefined, 1]],
    [[0, 0, 0], 1, [0, undefined, undefined]],
  ] as const)('admits one line per window and reports what it held back (%j)', (times, windowMs, expected) => {
    const t = new LogThrottle(windowMs);
    expect(times.map((at) => t.admit('k', at))).toEqual(expected);
  });

  it('keeps keys apart', () => {
    const t = new LogThrottle(60_000);
    expect([t.admit('a', 0), t.admit('b', 1), t.admit('a', 2)]).toEqual([0, 0, undefined]);
  });
});

describe('rejected device messages are counted every time but logged once per device and window', () => {
  it('2,000 malformed heartbeats from one device: counter 2,000, one log line; the next window logs again with the count held back', async () => {
    const dir = tempDir();
    const db = openDatabase(join(dir.path, 'x.db'));
    const clock = new ManualClock('2026-11-26T17:00:05Z');
    const registry = new DeviceRegistry({ db, clock, log: silentLogger(), fiscalYearEnd: () => '2027-06-30', authCacheSize: 0 });
    registry.start();
    await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'minnovation' })]);
    const metrics = createMetricsRegistry(false);
    const m = createIngestMetrics(metrics);
    const writer = new DeviceStateWriter({ db, clock, log: silentLogger(), flushIntervalMs: 100, maxBatch: 1000 });
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });
    const ingest = new DeviceMessageIngest({
      clock, log, directory: registry, writer, maxHeartbeatBytes: 2048,
      heartbeats: m.heartbeats, rejected: m.rejected, listeners: [],
    });
    try {
      for (let i = 0; i < 2000; i++) ingest.handle('gw-1', 'heartbeat', Buffer.from('notjson'));
      const count = (await metrics.getSingleMetric('fleet_heartbeat_rejected_total')!.get()).values.find((v) => v.labels.reason === 'json')?.value;
      expect(count).toBe(2000);
      const rejectedLines = () => lines.filter((l) => l.msg === 'device message rejected');
      expect(rejectedLines()).toHaveLength(1);
      expect(rejectedLines()[0]).toMatchObject({ deviceId: 'gw-1', reason: 'json', suppressed: 0 });
      clock.advance(61_000);
      ingest.handle('gw-1', 'heartbeat', Buffer.from('notjson'));
      expect(rejectedLines()).toHaveLength(2);
      expect(rejectedLines()[1]).toMatchObject({ deviceId: 'gw-1', suppressed: 1999 });
    } finally {
      writer.stop();
      db.close();
      dir.cleanup();
    }
  });
});
