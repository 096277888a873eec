import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { ctl, eventually, startDaemon, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { AGENT_BUNDLE_FILES, agentNodeBinaries, buildAgentBundle, spawnAgentProgram, writeAgentDir } from '../helpers/agent-bundle.js';

/**
 * Issue 10 fault 8, "an installable agent": the agent could only be put on a device with the whole daemon
 * package and a native module. `npm run build:agent` makes one file; here it is copied alone into a
 * directory with no node_modules anywhere above it, started with `node xcare-agent.cjs`, and must connect
 * to a real daemon and heartbeat. Runs on this Node and, when XCARE_NODE18 names a Node 18 binary, on 18.
 */
describe('agent bundle installed alone (issue 10 "an installable agent")', () => {
  const dir = tempDir('xcare-agent-bundle-');
  let daemon: Daemon;
  let bundle: string;
  beforeAll(async () => {
    bundle = await buildAgentBundle(join(dir.path, 'dist-agent'));
    daemon = await startDaemon(join(dir.path, 'daemon'));
  }, 180_000);
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('is one bundle plus the systemd unit and the example config, with checksums', () => {
    const out = dirname(bundle);
    expect(readdirSync(out).sort()).toEqual([...AGENT_BUNDLE_FILES].sort());
    const sums = readFileSync(join(out, 'SHA256SUMS'), 'utf8');
    const digest = createHash('sha256').update(readFileSync(bundle)).digest('hex');
    expect(sums).toContain(`${digest}  xcare-agent.cjs`);
    expect(readFileSync(bundle, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  for (const node of agentNodeBinaries()) {
    it(`runs alone on ${node.name}: connects, heartbeats, and stops cleanly on SIGTERM`, async () => {
      const deviceId = `gw-bundle-${node.name.includes('18') ? '18' : 'cur'}`;
      const added = await ctl(daemon, ['device', 'add', deviceId, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
      expect(added.code, added.stderr).toBe(0);
      const token = (JSON.parse(added.stdout) as { token: string }).token;

      // /opt/xcare-agent on a device: the bundle and its config, nothing else.
      const device = join(dir.path, `device-${deviceId}`);
      mkdirSync(device);
      const installed = join(device, 'xcare-agent.cjs');
      copyFileSync(bundle, installed);
      for (let d = device; dirname(d) !== d; d = dirname(d)) expect(existsSync(join(d, 'node_modules')), d).toBe(false);
      const agentDir = writeAgentDir(device, { deviceId, token, brokerUrl: `mqtt://127.0.0.1:${daemon.mqttPort}`, daemonUrl: daemon.url, intervalS: 1 });

      const agent = spawnAgentProgram(node.path, installed, agentDir.configFile, '/');
      try {
        await eventually(
          async () => {
            const shown = await ctl(daemon, ['device', 'show', deviceId, '--json']);
            const d = JSON.parse(shown.stdout) as { connected: boolean; heartbeats: number; softwareVersion: string | null };
            return d.connected && d.heartbeats >= 2 && d.softwareVersion === '1.0.0';
          },
          60_000,
          `${deviceId} heartbeating: ${agent.output()}`,
        );
        expect(agent.output()).toContain('"patchSupport":true');
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    }, 120_000);
  }
});
