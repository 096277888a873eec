import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ctl, eventually, type Daemon } from '../helpers/processes.js';
import { connectDevice, endAll } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 12, from outside: heartbeat strings at their bounds through a real xcared and real MQTT. A JSON
 * escape can carry a lone surrogate (`"\ud800"`), which is no Unicode text: SQLite stores it as the
 * ill-formed bytes ED A0 80 and reads back three U+FFFD, so the stored columns and the stored heartbeat JSON
 * would disagree. It must be refused like any other schema violation, nothing stored.
 */
describe('end to end: heartbeat text fields through the real daemon', () => {
  const dir = tempDir('xcare-e2e-hbtext-');
  let daemon: Daemon;
  let token: string;

  type Shown = { softwareVersion: string | null; agentVersion: string | null; heartbeats: number; lastHeartbeat: { softwareVersion: string; agentVersion: string } | null };
  const show = async (): Promise<Shown> => JSON.parse((await ctl(daemon, ['device', 'show', 'gw-txt', '--json'])).stdout) as Shown;
  const rejected = async (reason: string): Promise<number> => {
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    const m = new RegExp(`^fleet_heartbeat_rejected_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text);
    return Number(m?.[1] ?? NaN);
  };
  const beat = (seq: number, fields: string) => `{"seq":${seq},"ts":"2026-11-30T06:00:00Z","intervalS":30,${fields}}`;

  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
    const added = await ctl(daemon, ['device', 'add', 'gw-txt', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--json']);
    expect(added.code, added.stderr).toBe(0);
    token = (JSON.parse(added.stdout) as { token: string }).token;
  });
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('64 emoji in a version are 64 characters: stored, and the column and the stored heartbeat agree', async () => {
    const client = await connectDevice(`mqtt://127.0.0.1:${daemon.mqttPort}`, { id: 'gw-txt', token });
    const emoji = '😀'.repeat(64);
    await client.publishAsync('fleet/v1/gw-txt/heartbeat', beat(1, `"agentVersion":"${emoji}","softwareVersion":"1.0.0"`), { qos: 1 });
    const shown = await eventually(async () => {
      const d = await show();
      return d.heartbeats === 1 ? d : undefined;
    }, 20_000, 'the beat stored');
    expect(shown.agentVersion).toBe(emoji);
    expect(shown.lastHeartbeat?.agentVersion).toBe(emoji);
    await endAll(client);
  });

  it('a lone surrogate (JSON escape) in a version or a detail is refused as schema, nothing stored', async () => {
    const client = await connectDevice(`mqtt://127.0.0.1:${daemon.mqttPort}`, { id: 'gw-txt', token });
    const before = await rejected('schema');
    await client.publishAsync('fleet/v1/gw-txt/heartbeat', beat(2, '"agentVersion":"1.0.0","softwareVersion":"\\ud800x"'), { qos: 1 });
    await client.publishAsync('fleet/v1/gw-txt/heartbeat', beat(3, '"agentVersion":"1.0.0","softwareVersion":"1.0.0","subsystems":[{"name":"db","ok":false,"detail":"\\udc00"}]'), { qos: 1 });
    await eventually(async () => (await rejected('schema')) === before + 2, 20_000, 'two schema rejections');
    // A good beat after them, so the store has certainly caught up with what came before.
    await client.publishAsync('fleet/v1/gw-txt/heartbeat', beat(4, '"agentVersion":"1.0.0","softwareVersion":"1.0.1"'), { qos: 1 });
    const shown = await eventually(async () => {
      const d = await show();
      return d.heartbeats === 2 ? d : undefined;
    }, 20_000, 'the good beat stored');
    expect(shown.softwareVersion).toBe('1.0.1');
    expect(JSON.stringify(shown)).not.toMatch(/\\ud800|\\udc00|\ufffd/);
    await endAll(client);
  });
});
