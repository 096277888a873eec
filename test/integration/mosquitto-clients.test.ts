import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';
import { toolsMissing } from '../helpers/system-tools.js';

/**
 * The broker's refusals checked by an independent MQTT implementation: Eclipse Mosquitto's
 * `mosquitto_pub` / `mosquitto_sub` (Debian package mosquitto-clients, 2.0.x). Catches anything
 * that only works because MQTT.js and aedes share mqtt-packet.
 */
// Without mosquitto-clients these skip, loudly; under CI=true they never skip (issue 10: `npm ci && npm test`
// must pass on a fresh machine, and CI must still run them).
const missing = toolsMissing(['mosquitto_pub', 'mosquitto_sub'], 'mosquitto-clients');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mosquitto(program: 'mosquitto_pub' | 'mosquitto_sub', args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    // -W/timeout bound every run; the kill timeout is only a safety net.
    execFile(program, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe.skipIf(missing.length > 0)('mosquitto clients against FleetBroker', () => {
  describe('with the clients', () => {
    let fx: BrokerFixture;
    let port: string;
    const login = (id: string, token: string, clientId = id) => ['-h', '127.0.0.1', '-p', port, '-i', clientId, '-u', id, '-P', token];

    beforeAll(async () => {
      fx = await startFleetBroker({ 'gw-001': 'token-gw-001', 'gw-002': 'token-gw-002' });
      port = String(fx.broker.ports().mqtt);
    });
    afterAll(async () => {
      await fx.stop();
    });

    it('publishes a heartbeat with good credentials (QoS 1, PUBACK received)', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'token-gw-001'), '-V', 'mqttv311', '-q', '1', '-d', '-t', 'fleet/v1/gw-001/heartbeat', '-m', '{"peer":"mosquitto"}']);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('received CONNACK (0)');
      expect(run.stdout).toContain('received PUBACK');
      expect((await fx.waitMessage((m) => m.payload === '{"peer":"mosquitto"}')).deviceId).toBe('gw-001');
    });

    it('refuses a wrong password: non-zero exit, "not authorised"', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'wrong'), '-q', '1', '-t', 'fleet/v1/gw-001/heartbeat', '-m', 'x']);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/Connection Refused: not authori[sz]ed/i);
    });

    it('refuses an unknown device: "not authorised"', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-404', 'token-gw-001'), '-q', '1', '-t', 'fleet/v1/gw-404/heartbeat', '-m', 'x']);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/not authori[sz]ed/i);
    });

    it('refuses clientId spoofing (-i differs from -u): "not authorised"', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'token-gw-001', 'gw-002'), '-q', '1', '-t', 'fleet/v1/gw-001/heartbeat', '-m', 'x']);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/not authori[sz]ed/i);
    });

    it('refuses MQTT 5 (-V mqttv5): unsupported protocol version', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'token-gw-001'), '-V', 'mqttv5', '-q', '1', '-t', 'fleet/v1/gw-001/heartbeat', '-m', 'x']);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/Unsupported Protocol Version/i);
    });

    it('refuses a will on another device\'s state topic: "not authorised"', async () => {
      const run = await mosquitto('mosquitto_pub', [
        ...login('gw-001', 'token-gw-001'),
        '--will-topic', 'fleet/v1/gw-002/state', '--will-payload', '{"online":false}', '--will-qos', '1',
        '-q', '1', '-t', 'fleet/v1/gw-001/heartbeat', '-m', 'x',
      ]);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toMatch(/not authori[sz]ed/i);
    });

    it('closes the connection on a publish to another device\'s topic; nothing is delivered', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'token-gw-001'), '-q', '1', '-d', '-t', 'fleet/v1/gw-002/heartbeat', '-m', 'forged-by-mosquitto']);
      expect(run.code).not.toBe(0);
      expect(run.stdout).toContain('received CONNACK (0)');
      expect(run.stdout).not.toContain('received PUBACK');
      expect(run.stderr).toMatch(/connection was lost/i);
      // A later honest message proves the forged one was dropped, not late.
      await mosquitto('mosquitto_pub', [...login('gw-002', 'token-gw-002'), '-q', '1', '-t', 'fleet/v1/gw-002/heartbeat', '-m', 'honest-after-forgery']);
      await fx.waitMessage((m) => m.payload === 'honest-after-forgery');
      expect(fx.messages.some((m) => m.payload === 'forged-by-mosquitto')).toBe(false);
    });

    it('closes the connection on a publish to the device\'s own cmd/ topic', async () => {
      const run = await mosquitto('mosquitto_pub', [...login('gw-001', 'token-gw-001'), '-q', '1', '-d', '-t', 'fleet/v1/gw-001/cmd/patch', '-m', 'x']);
      expect(run.code).not.toBe(0);
      expect(run.stdout).not.toContain('received PUBACK');
    });

    it('denies mosquitto_sub -t $SYS/#: SUBACK 128 and "All subscription requests were denied."', async () => {
      const run = await mosquitto('mosquitto_sub', [...login('gw-001', 'token-gw-001'), '-d', '-W', '5', '-t', '$SYS/#']);
      expect(run.stdout).toContain('Subscribed (mid: 1): 128');
      expect(run.stderr).toContain('All subscription requests were denied.');
      expect(run.stdout).not.toMatch(/received PUBLISH/);
    });

    it('denies mosquitto_sub -t fleet/v1/+/cmd/#: SUBACK 128', async () => {
      const run = await mosquitto('mosquitto_sub', [...login('gw-001', 'token-gw-001'), '-d', '-W', '5', '-t', 'fleet/v1/+/cmd/#']);
      expect(run.stdout).toContain('Subscribed (mid: 1): 128');
      expect(run.stderr).toContain('All subscription requests were denied.');
    });

    it('grants mosquitto_sub its own cmd/# and delivers a patch offer to it', async () => {
      const sub = mosquitto('mosquitto_sub', [...login('gw-001', 'token-gw-001'), '-d', '-q', '1', '-C', '1', '-W', '5', '-t', 'fleet/v1/gw-001/cmd/#']);
      // The offer goes out once the subscription is live in the broker.
      await expect.poll(() => fx.broker.isConnected('gw-001'), { interval: 20 }).toBe(true);
      let run: Run | undefined;
      void sub.then((r) => (run = r));
      for (let i = 0; i < 50 && !run; i++) {
        await fx.broker.publishToDevice('gw-001', '{"rolloutId":"r-mosq"}');
        await new Promise((r) => setTimeout(r, 50));
      }
      const done = await sub;
      expect(done.code).toBe(0);
      expect(done.stdout).toContain('Subscribed (mid: 1): 1');
      expect(done.stdout).toContain('{"rolloutId":"r-mosq"}');
    });
  });
});
