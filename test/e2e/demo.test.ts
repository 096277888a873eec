import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from '../helpers/processes.js';
import { PROMISED_TICKETS } from '../../src/demo/day.js';
import { toolsMissing } from '../helpers/system-tools.js';

/**
 * Issue 10 "npm run demo": the demo as a person runs it (the built dist/src/demo/main.js, which `npm run demo`
 * starts after compiling), played straight through (--pace 0), then stopped with Ctrl-C (SIGINT). Bounded: the day
 * must be over within 4 minutes even on a busy machine.
 */
describe('npm run demo', () => {
  let proc: ChildProcess;
  let output = '';
  let exitCode: number | null | undefined;
  const exited = () => new Promise<number | null>((resolve) => (exitCode !== undefined ? resolve(exitCode) : proc.once('exit', (code) => resolve(code))));

  beforeAll(async () => {
    proc = spawn(process.execPath, [join(ROOT, 'dist/src/demo/main.js'), '--pace', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    proc.once('exit', (code) => (exitCode = code));
    const deadline = Date.now() + 240_000;
    while (!/The day is over/.test(output) && exitCode === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  }, 260_000);
  afterAll(() => {
    if (exitCode === undefined) proc.kill('SIGKILL');
  });

  it('plays the whole day', () => {
    expect(output, output).toMatch(/The day is over\. Promised tickets: 4 of 4 opened\./);
  });

  it('prints what to look at: the API, xcarectl with its URL and token, the metrics, the daemon log', () => {
    expect(output).toMatch(/API +http:\/\/127\.0\.0\.1:\d+\/api\/v1\/tickets/);
    expect(output).toMatch(/XCARE_URL=http:\/\/127\.0\.0\.1:\d+ XCARE_TOKEN=\S+ npx xcarectl tickets/);
    expect(output).toMatch(/metrics +http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect(output).toMatch(/all 8 gateways online/);
  });

  it.each(PROMISED_TICKETS.map((t) => [t.scene, t.kind, t.subject]))('%s: a %s ticket on %s opens', (_scene, kind, subject) => {
    expect(output).toMatch(new RegExp(`ticket #\\d+ +OPENED +\\w+ +${kind} +${subject.replace(':', '\\:')} `));
  });

  it('groups the customer outage: both gateway tickets attach under the cloud_loss_complete ticket', () => {
    const parent = /ticket #(\d+) +OPENED +high +cloud_loss_complete +customer:globex/.exec(output)?.[1];
    expect(parent).toBeDefined();
    for (const gw of ['gw-globex-1', 'gw-globex-2']) expect(output).toMatch(new RegExp(`ATTACHED .* ${gw} .*under #${parent}`));
  });

  it('shows a discretionary ticket for the device without a subscription', () => {
    expect(output).toMatch(/OPENED +low +flapping +gw-initech-1 +discretionary\/none/);
  });

  it('rolls the signed patch out in waves; the device whose check fails is rolled back', () => {
    expect(output).toMatch(/published: sample-app-1\.1\.0/);
    expect(output).toMatch(/rollout \S+ created .* in 2 waves/);
    expect(output).toMatch(/rollout \S+: completed/);
    expect(output).toMatch(/gw-globex-2: sample-app-1\.1\.0 rolled_back/);
  });

  describe.skipIf(toolsMissing(['promtool'], 'prometheus').length > 0)('its /metrics after the day', () => {
    it('passes `promtool check metrics` and counts every promised ticket kind', async () => {
      const url = /metrics +(http:\/\/\S+\/metrics)/.exec(output)?.[1];
      expect(url).toBeDefined();
      const text = await (await fetch(url!)).text();
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
      expect(check.status).toBe(0);
      for (const t of PROMISED_TICKETS) {
        const n = [...text.matchAll(new RegExp(`^fleet_tickets_opened_total\\{severity="\\w+",kind="${t.kind}"\\} (\\d+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
        expect(n, t.kind).toBeGreaterThanOrEqual(1);
      }
    });
  });

  it('stops cleanly on Ctrl-C: daemon exit 0, its temporary directory removed', async () => {
    const logFile = /daemon log (\S+)/.exec(output)?.[1];
    expect(logFile).toBeDefined();
    proc.kill('SIGINT');
    expect(await exited()).toBe(0);
    expect(output).toContain('Ctrl-C: stopping the agents and the daemon');
    expect(output).toContain('stopped (xcared exit 0)');
    expect(existsSync(dirname(logFile!))).toBe(false);
  }, 60_000);
});
