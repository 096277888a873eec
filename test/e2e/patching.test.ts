import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startDaemon, startAgent, ctl, eventually, ROOT, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const examples = join(ROOT, 'patches', 'examples');

/**
 * Issue 4 end to end with real processes: keygen, sign and publish with xcarectl, offer to real
 * agents over the real broker; one installs and heartbeats the new version, the other's check
 * fails and it is rolled back.
 */
describe('end to end: signed patch from keygen to installed', () => {
  const dir = tempDir('xcare-e2e-patch-');
  let daemon: Daemon;
  const agents: RunningProcess[] = [];
  const keys = join(dir.path, 'keys');
  const out = join(dir.path, 'patch');

  async function provisionAndStart(id: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
    const added = await ctl(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
    expect(added.code, added.stderr).toBe(0);
    const { token } = JSON.parse(added.stdout) as { token: string };
    const agentDir = join(dir.path, id);
    const software = join(agentDir, 'sample-app');
    mkdirSync(agentDir, { recursive: true });
    cpSync(join(examples, 'sample-app'), software, { recursive: true });
    agents.push(
      startAgent({
        deviceId: id,
        token,
        mqttPort: daemon.mqttPort,
        httpUrl: daemon.url,
        dir: agentDir,
        softwareDir: software,
        versionFile: join(software, 'VERSION'),
        env,
        extraYaml: [
          'patches:',
          `  keys: [${join(keys, 'public.pem')}]`,
          `  install: sh ${join(examples, 'install.sh')}`,
          `  check: sh ${join(examples, 'check.sh')}`,
          `  rollback: sh ${join(examples, 'rollback.sh')}`,
          '  commandTimeoutS: 30',
        ].join('\n'),
      }),
    );
  }

  beforeAll(async () => {
    mkdirSync(out, { recursive: true });
    const keygen = await ctl({ url: 'http://127.0.0.1:1', adminToken: 'unused-admin-token-000' }, ['keygen', '--out', keys]);
    expect(keygen.code, keygen.stderr).toBe(0);
    daemon = await startDaemon(join(dir.path, 'daemon'), `patches: { releaseKeys: [${join(keys, 'public.pem')}] }\n`);
  });
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await daemon?.stop();
    dir.cleanup();
  });

  it('publishes, offers, installs on one agent and rolls back on the other', async () => {
    await run('sh', [join(examples, 'build-patch.sh'), out, '1.1.0']);
    const digest = await ctl(daemon, ['patch', 'digest', join(out, 'tree-1.1.0')]);
    expect(digest.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const signed = await ctl(daemon, [
      'patch', 'sign', '--key', join(keys, 'private.pem'), '--artifact', join(out, 'sample-app-1.1.0.tar.gz'),
      '--id', 'sample-app-1.1.0', '--version', '1.1.0', '--types', 'gateway', '--applies', '>=1.0.0 <1.1.0',
      '--expires', '30d', '--integrity', digest.stdout.trim(), '--out', out,
    ]);
    expect(signed.code, signed.stderr).toBe(0);
    const published = await ctl(daemon, [
      'patch', 'publish', '--manifest', join(out, 'sample-app-1.1.0.manifest.json'), '--sig', join(out, 'sample-app-1.1.0.sig'),
      '--artifact', join(out, 'sample-app-1.1.0.tar.gz'),
    ]);
    expect(published.code, published.stderr).toBe(0);

    await provisionAndStart('gw-ok');
    await provisionAndStart('gw-bad', { XCARE_EXAMPLE_FAIL_CHECK: '1' });
    for (const id of ['gw-ok', 'gw-bad']) {
      await eventually(async () => JSON.parse((await ctl(daemon, ['device', 'show', id, '--json'])).stdout).softwareVersion === '1.0.0', 10_000, `${id} online`);
      const offered = await ctl(daemon, ['patch', 'offer', id, '--patch', 'sample-app-1.1.0']);
      expect(offered.code, offered.stderr).toBe(0);
    }

    const ok = await eventually(
      async () => {
        const d = JSON.parse((await ctl(daemon, ['device', 'show', 'gw-ok', '--json'])).stdout);
        return d.softwareVersion === '1.1.0' ? d : undefined;
      },
      20_000,
      'gw-ok heartbeats 1.1.0',
    );
    expect(JSON.stringify(ok.patches)).toContain('installed');
    const bad = await eventually(
      async () => {
        const d = JSON.parse((await ctl(daemon, ['device', 'show', 'gw-bad', '--json'])).stdout);
        return JSON.stringify(d.patches).includes('rolled_back') ? d : undefined;
      },
      20_000,
      'gw-bad rolled back',
    );
    expect(bad.softwareVersion).toBe('1.0.0');
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/fleet_patch_results_total\{result="installed"\} 1/);
    expect(metrics).toMatch(/fleet_patch_results_total\{result="rolled_back"\} 1/);
  });
});
