import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentConfig } from '../../agent/config.js';
import { EdgeAgent } from '../../agent/edge-agent.js';
import { createAgentLogger } from '../../agent/log.js';
import type { PatchPortDeps } from '../../agent/patch-port.js';

/**
 * Issue 10 fault 6: after `xcarectl device rotate-token`, the agent takes the new token from its
 * tokenFile without a restart, for artifact downloads (device Basic auth) as for MQTT.
 */
describe('agent tokenFile', () => {
  const dirs: string[] = [];
  const agents: EdgeAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('the patch port reads the token file at each use, so a rotated token reaches artifact downloads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-token-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'app'));
    writeFileSync(join(dir, 'VERSION'), '1.0.0\n');
    writeFileSync(join(dir, 'token'), 'first-token-0123456789abcdef\n', { mode: 0o600 });
    const config = parseAgentConfig(
      {
        deviceId: 'gw-1',
        deviceType: 'gateway',
        tokenFile: 'token',
        brokerUrl: 'mqtt://127.0.0.1:1', // nothing listens: the test needs no broker
        stateDir: 'state',
        softwareVersionFile: 'VERSION',
        softwareDir: 'app',
        reconnect: { minMs: 60_000, maxMs: 60_000 },
      },
      dir,
    );
    let seen: PatchPortDeps | undefined;
    const agent = new EdgeAgent({
      config,
      log: createAgentLogger({ level: 'error', write: () => {} }),
      patchPortFactory: (deps) => {
        seen = deps;
        return { handleOffer: () => {}, heartbeatField: () => undefined, onConnected: () => {}, stop: async () => {} };
      },
    });
    agents.push(agent);
    agent.start();
    expect(seen?.token).toBe('first-token-0123456789abcdef');
    writeFileSync(join(dir, 'token'), 'second-token-0123456789abcdef\n');
    expect(seen?.token).toBe('second-token-0123456789abcdef');
  });
});
