import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, startAgent, ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { tryConnect } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 10 fault 6 / PROTOCOL.md `device rotate-token ID`, through real processes: xcared, xcarectl and
 * an xcare-agent reading its token from `tokenFile`. The agent's reconnect ceiling is 60 s, so getting
 * back within seconds of the file changing proves it noticed the new token, not a blind retry.
 */
describe('end to end: xcarectl device rotate-token with a real agent on a tokenFile', () => {
  const dir = tempDir('xcare-e2e-rotate-');
  let daemon: Daemon;
  let agent: RunningProcess | undefined;
  const tokenFile = join(dir.path, 'agent', 'token');

  type Shown = { connected: boolean; heartbeats: number; state: string; revokedAt: number | null };
  const show = async (): Promise<Shown> => JSON.parse((await ctl(daemon, ['device', 'show', 'gw-rot', '--json'])).stdout) as Shown;
  /** Connected with heartbeats counted after `after` (the stored count moves with each flush). */
  const beating = (after: number) => eventually(async () => {
    const d = await show();
    return d.connected && d.heartbeats > after ? d : undefined;
  }, 30_000, 'agent connected and heartbeating');

  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
  });
  afterAll(async () => {
    await agent?.stop();
    await daemon?.stop();
    dir.cleanup();
  });

  it('the old token is dead at once, the live connection closes, and the agent comes back with the token written to its tokenFile', async () => {
    const added = await ctl(daemon, ['device', 'add', 'gw-rot', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--json']);
    expect(added.code, added.stderr).toBe(0);
    const first = (JSON.parse(added.stdout) as { token: string }).token;
    mkdirSync(join(dir.path, 'agent'), { recursive: true });
    writeFileSync(tokenFile, `${first}\n`, { mode: 0o600 });
    agent = startAgent({ deviceId: 'gw-rot', token: '', tokenFile, mqttPort: daemon.mqttPort, httpUrl: daemon.url, dir: join(dir.path, 'agent'), reconnectMaxMs: 60_000 });
    const before = await beating(0);

    const rotated = await ctl(daemon, ['device', 'rotate-token', 'gw-rot', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const { token: second, reenabled } = JSON.parse(rotated.stdout) as { token: string; reenabled: boolean };
    expect(second).not.toBe(first);
    expect(reenabled).toBe(false);
    // Dead at once: a real client with the old token is refused.
    expect(await tryConnect(`mqtt://127.0.0.1:${daemon.mqttPort}`, { id: 'gw-rot', token: first })).toMatchObject({ ok: false, code: 5 });
    // The agent's live connection was closed; it retried with the token it still had and was refused.
    await eventually(() => /broker refused the device credentials/.test(agent!.output()), 20_000, 'agent refused with the old token');

    const writtenAt = Date.now();
    writeFileSync(tokenFile, `${second}\n`);
    const after = await beating(before.heartbeats);
    expect(Date.now() - writtenAt).toBeLessThan(30_000); // well under the 60 s reconnect ceiling
    expect(after.state).not.toBe('revoked');
  });

  it('re-enables a revoked device: rotate-token after revoke, new token in the file, the agent is back', async () => {
    const revoked = await ctl(daemon, ['device', 'revoke', 'gw-rot']);
    expect(revoked.code, revoked.stderr).toBe(0);
    await eventually(async () => !(await show()).connected, 20_000, 'revoked device disconnected');
    const beforeCount = (await show()).heartbeats;
    expect((await show()).state).toBe('revoked');

    const rotated = await ctl(daemon, ['device', 'rotate-token', 'gw-rot']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/re-enabled/);
    const token = /token: (\S+)/.exec(rotated.stdout)![1]!;
    writeFileSync(tokenFile, `${token}\n`);
    const back = await beating(beforeCount);
    expect(back.revokedAt).toBeNull();
    expect(back.state).not.toBe('revoked');
  });

  it('refuses an unknown device id with a clear error and changes nothing', async () => {
    const res = await ctl(daemon, ['device', 'rotate-token', 'gw-nope']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/gw-nope not found/);
  });
});
