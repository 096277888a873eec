import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { keygen, buildSignPublish, provisionSampleAgent, registerSampleIntegrity } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 5 end to end with real processes: a three-wave rollout of the example patch over ten real
 * agents on the real broker. Every healthy agent ends on the new version; the one whose check fails
 * is rolled back and counted; no installing device opened a loss ticket.
 */
describe('end to end: three-wave rollout to ten real agents', () => {
  const dir = tempDir('xcare-e2e-rollout-');
  let daemon: Daemon;
  const agents: RunningProcess[] = [];
  const ids = Array.from({ length: 10 }, (_, i) => `gw-r${i}`);
  const failing = 'gw-r7';

  beforeAll(async () => {
    const keys = await keygen(join(dir.path, 'keys'));
    daemon = await startDaemon(
      join(dir.path, 'daemon'),
      `patches: { releaseKeys: [${keys.publicKey}] }\nrollouts: { tickMs: 100 }\nhealth: { tickMs: 100, lastWillGraceS: 2 }\n`,
    );
    await registerSampleIntegrity(daemon);
    await buildSignPublish(daemon, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
    for (const id of ids) {
      agents.push(await provisionSampleAgent(daemon, id, dir.path, keys.publicKey, id === failing ? { XCARE_EXAMPLE_FAIL_CHECK: '1' } : {}));
    }
    await eventually(
      async () => {
        const list = JSON.parse((await ctl(daemon, ['device', 'list', '--json'])).stdout) as { state: string; eligible?: boolean }[];
        return list.filter((d) => d.state === 'online').length === ids.length;
      },
      120_000,
      'all agents online',
    );
  }, 240_000); // ten real agents: starting them on a busy 2-core machine takes far longer than alone
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await daemon?.stop();
    dir.cleanup();
  });

  it('completes wave by wave; the failing agent is rolled back and counted; no loss tickets', async () => {
    const created = await ctl(daemon, [
      'rollout', 'create', '--patch', 'sample-app-1.1.0', '--types', 'gateway', '--software', '>=1.0.0 <1.1.0',
      '--wave', '2', '--wave', '40%', '--wave', '100%', '--soak', '10s',
      '--window', '* * * * *', '--duration', '1h', '--tz', 'Europe/Berlin', '--abort-threshold', '0.5', '--jitter', '0s', '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const rollout = JSON.parse(created.stdout) as { id: string; rollout?: { id: string } };
    const id = rollout.id ?? rollout.rollout!.id;

    const view = await eventually(
      async () => {
        const v = JSON.parse((await ctl(daemon, ['rollout', 'show', id, '--json'])).stdout);
        if (v.state === 'aborted') throw new Error(`aborted: ${v.reason}`);
        return v.state === 'completed' ? v : undefined;
      },
      240_000,
      'rollout completed',
    );
    expect(view.waves).toHaveLength(3);
    expect(view.counts.done).toBe(9);
    expect(view.counts.failed).toBe(1);
    for (const d of ids) {
      const shown = JSON.parse((await ctl(daemon, ['device', 'show', d, '--json'])).stdout);
      expect(shown.softwareVersion, d).toBe(d === failing ? '1.0.0' : '1.1.0');
    }
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/fleet_patch_results_total\{result="installed"\} 9/);
    expect(metrics).toMatch(/fleet_patch_results_total\{result="rolled_back"\} 1/);
    const tickets = JSON.parse((await ctl(daemon, ['tickets', '--status', 'all', '--json'])).stdout);
    expect(JSON.stringify(tickets)).not.toMatch(/gateway_loss/);
    const watch = await ctl(daemon, ['rollout', 'watch', id, '--once']);
    expect(watch.code).toBe(0);
    expect(watch.stdout).toMatch(/completed/);
  }, 300_000);
});
