import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { keygen, buildSignPublish, provisionSampleAgent, registerSampleIntegrity, restartAgent } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 9 end to end: each fault found from outside, reproduced with the real daemon, real agents running the
 * example patch's install/check/rollback scripts, and xcarectl. Each failed against the old code (see the
 * comment on each test for how it failed).
 */
describe('end to end: rollouts that keep their promises', () => {
  const dir = tempDir('xcare-e2e-promises-');
  let daemon: Daemon;
  let keys: { publicKey: string; privateKey: string };
  const running: RunningProcess[] = [];
  const PATCH = 'sample-app-1.1.0';

  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await ctl(daemon, [...args, '--json']);
    if (r.code !== 0) throw new Error(`xcarectl ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const agent = async (id: string, tag: string, env: NodeJS.ProcessEnv = {}, opts: Parameters<typeof provisionSampleAgent>[5] = {}) => {
    const a = await provisionSampleAgent(daemon, id, dir.path, keys.publicKey, env, { tags: [tag], ...opts });
    running.push(a);
    await eventually(async () => (await json<{ softwareVersion: string | null; state: string }>(['device', 'show', id])).softwareVersion, 20_000, `${id} heartbeating`);
    return a;
  };
  const create = async (tag: string, extra: string[] = []) => {
    const r = await ctl(daemon, [
      'rollout', 'create', '--patch', PATCH, '--tags', tag, '--wave', '100%', '--soak', '0s',
      '--window', '* * * * *', '--duration', '1h', '--tz', 'Europe/Berlin', '--jitter', '0s', ...extra, '--json',
    ]);
    if (r.code !== 0) throw new Error(`rollout create: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { id: string }).id;
  };
  type View = { state: string; reason: string | null; counts: Record<string, number>; failed: { deviceId: string; reason: string }[]; excluded: { deviceId: string; reason: string }[]; events: { kind: string; at: string; deviceId?: string }[] };
  const view = (id: string) => json<View>(['rollout', 'show', id]);
  const ended = (id: string, timeoutMs = 90_000) =>
    eventually(async () => {
      const v = await view(id);
      return ['completed', 'aborted', 'failed'].includes(v.state) ? v : undefined;
    }, timeoutMs, `rollout ${id} ended`);
  const jobState = (agentDir: string) => {
    const file = join(agentDir, 'state', 'patch', 'state.json');
    return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { job: { state: string; detail: string; command?: unknown } | null }).job : null;
  };

  beforeAll(async () => {
    keys = await keygen(join(dir.path, 'keys'));
    daemon = await startDaemon(join(dir.path, 'daemon'), `patches: { releaseKeys: [${keys.publicKey}] }\nrollouts: { tickMs: 100 }\nhealth: { tickMs: 100, lastWillGraceS: 2 }\n`);
    await registerSampleIntegrity(daemon);
    await buildSignPublish(daemon, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
  }, 60_000);
  afterAll(async () => {
    await Promise.all(running.map((a) => a.stop()));
    await daemon?.stop();
    dir.cleanup();
  });

  // Old code: the offer was published when the broker registered the connection, ~5 ms before the agent's
  // CONNACK and SUBSCRIBE; the device stayed `offered`, failed on the progress timeout, the rollout aborted.
  it('fault 1: a device that comes back after the rollout started gets its offer (progress timeout 30 s)', async () => {
    const a = await agent('gw-f1', 'f1');
    await a.stop();
    const id = await create('f1', ['--progress-timeout', '30s']);
    await new Promise((r) => setTimeout(r, 3000));
    running.push(restartAgent(a.configFile));
    const v = await ended(id, 60_000);
    expect(v.state, JSON.stringify(v.failed)).toBe('completed');
    expect(v.counts.done).toBe(1);
  }, 120_000);

  // Old code: a heartbeat on the new version while the check still ran (`patch.state: installing`) counted
  // the device done; the rollback then changed nothing and the rollout completed with 0 failed; watch said 0.
  it('fault 2 and 5: a device whose check fails after 5 s is failed, the rollout aborts, watch exits 3', async () => {
    await agent('gw-f2', 'f2', { XCARE_EXAMPLE_FAIL_CHECK: '1', XCARE_EXAMPLE_CHECK_SLEEP: '5' });
    const id = await create('f2', ['--abort-threshold', '0.5']);
    const v = await ended(id);
    expect(v.state).toBe('aborted');
    expect(v.counts).toMatchObject({ done: 0, failed: 1 });
    expect(v.failed[0]!.reason).toMatch(/rolled_back: check exited 1: check failing on purpose/);
    const watch = await ctl(daemon, ['rollout', 'watch', id]);
    expect(watch.code).toBe(3);
    expect(watch.stdout).toMatch(/failed: gw-f2/);
    expect((await ctl(daemon, ['rollout', 'watch', id, '--once'])).code).toBe(3);
    const shown = await ctl(daemon, ['rollout', 'show', id]);
    expect(shown.stdout).toMatch(/FAILED +WAVE +TRIES +REASON/);
    expect(shown.stdout).toMatch(/gw-f2 .*check failing on purpose/);
  }, 120_000);

  // Old code: with --soak 20s a two-wave rollout finished in 5.6 s (the next wave 1 ms after the last done).
  it('fault 3: soak is bake time: wave 2 starts only once the soak passed since the last device of wave 1 was done', async () => {
    await agent('gw-f3a', 'f3');
    await agent('gw-f3b', 'f3');
    const r = await ctl(daemon, [
      'rollout', 'create', '--patch', PATCH, '--tags', 'f3', '--wave', '1', '--wave', '100%', '--soak', '8s',
      '--window', '* * * * *', '--duration', '1h', '--tz', 'Europe/Berlin', '--jitter', '0s', '--json',
    ]);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const once = await eventually(async () => {
      const w = await ctl(daemon, ['rollout', 'watch', id, '--once']);
      return /soaking, passes in/.test(w.stdout) ? w : undefined;
    }, 60_000, 'soak countdown shown');
    expect(once.code).toBe(5); // still running
    const v = await ended(id);
    expect(v.state, v.reason ?? '').toBe('completed');
    const doneWave1 = v.events.find((e) => e.kind === 'done')!;
    const wave2 = v.events.find((e) => e.kind === 'wave')!;
    expect(Date.parse(wave2.at) - Date.parse(doneWave1.at)).toBeGreaterThanOrEqual(8000);
    const last = v.events.filter((e) => e.kind === 'done').at(-1)!;
    const completed = v.events.find((e) => e.kind === 'completed')!;
    expect(Date.parse(completed.at) - Date.parse(last.at)).toBeGreaterThanOrEqual(8000);
  }, 120_000);

  // Old code: the daemon matched loosely with prereleases, the agents (hand-written semver) refused: abort.
  it('fault 4: devices on 1.0.5-beta.1 and on 1.0 are left out with the reason; the others are patched', async () => {
    for (const [id, version] of [['gw-f4beta', '1.0.5-beta.1'], ['gw-f4short', '1.0']] as const) {
      const a = await agent(id, 'f4', {}, { version });
      const digest = (await ctl(daemon, ['patch', 'digest', join(a.dir, 'sample-app')])).stdout.trim();
      expect((await ctl(daemon, ['integrity', 'register', '--version', version, '--digest', digest])).code).toBe(0);
    }
    await agent('gw-f4ok', 'f4');
    const id = await create('f4');
    const v = await ended(id);
    expect(v.state, v.reason ?? '').toBe('completed');
    expect(v.counts.done).toBe(1);
    expect(v.excluded).toEqual(expect.arrayContaining([
      { deviceId: 'gw-f4beta', wave: null, reason: 'software 1.0.5-beta.1 outside patch range >=1.0.0 <1.1.0' },
      { deviceId: 'gw-f4short', wave: null, reason: 'software version "1.0" does not parse as semver' },
    ]));
  }, 120_000);

  // Old code: the rollout offered a device the same patch a person had offered by hand.
  it('fault 6: one record of "offered" per device and patch, whoever offered it', async () => {
    await agent('gw-f6', 'f6', { XCARE_EXAMPLE_FAIL_CHECK: '1' });
    const offer = () => fetch(`${daemon.url}/api/v1/devices/gw-f6/offer`, {
      method: 'POST', headers: { authorization: `Bearer ${daemon.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ patchId: PATCH }),
    });
    expect((await offer()).status).toBe(200);
    expect((await offer()).status).toBe(409);
    const r = await ctl(daemon, ['rollout', 'create', '--patch', PATCH, '--tags', 'f6', '--wave', '100%', '--window', '* * * * *', '--duration', '1h', '--tz', 'UTC']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already offered sample-app-1\.1\.0 \(manual offer\)/);
  }, 60_000);

  // Old code: the install kept running as an orphan after kill -9 of the agent and wrote 1.1.0 over the tree
  // the restarted agent had rolled back: neither version.
  it('fault 7: kill -9 of the agent mid-install: the restarted agent ends the orphan, rolls back, one final status', async () => {
    const pause = join(dir.path, 'f7.pid');
    const a = await agent('gw-f7', 'f7', { XCARE_EXAMPLE_PAUSE_FILE: pause, XCARE_EXAMPLE_PAUSE_S: '6' });
    const id = await create('f7');
    await eventually(() => existsSync(pause), 60_000, 'install paused');
    const installPid = Number(readFileSync(pause, 'utf8').trim());
    await a.kill9();
    running.push(restartAgent(a.configFile));
    const v = await ended(id);
    expect(v.counts.failed).toBe(1);
    expect(v.failed[0]!.reason).toMatch(/install interrupted by a restart/);
    // Past the moment the orphan would have written 1.1.0: the tree is still (and wholly) 1.0.0.
    await new Promise((r) => setTimeout(r, 7000));
    // The orphaned install is gone (a zombie nobody reaped, e.g. under a container's pid 1, counts as gone).
    const stat = existsSync(`/proc/${installPid}/stat`) ? readFileSync(`/proc/${installPid}/stat`, 'utf8') : '';
    expect(stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')).toBe(true);
    const tree = join(a.dir, 'sample-app');
    expect(readFileSync(join(tree, 'VERSION'), 'utf8').trim()).toBe('1.0.0');
    expect(readFileSync(join(tree, 'bin', 'hello.sh'), 'utf8')).toMatch(/1\.0\.0|VERSION/);
    expect(jobState(a.dir)).toMatchObject({ state: 'failed', command: null });
    const shown = await json<{ patches: { patchId: string; state: string }[] }>(['device', 'show', 'gw-f7']);
    expect(shown.patches).toEqual([expect.objectContaining({ patchId: PATCH, state: 'failed' })]);
  }, 120_000);

  it('forced cancel: abort --force stops an install before its point of no return; the agent reports cancelled', async () => {
    const pause = join(dir.path, 'f8.pid');
    const a = await agent('gw-f8', 'f8', { XCARE_EXAMPLE_PAUSE_FILE: pause, XCARE_EXAMPLE_PAUSE_S: '20' });
    const id = await create('f8');
    await eventually(() => existsSync(pause), 60_000, 'install paused');
    const r = await ctl(daemon, ['rollout', 'abort', id, '--force']);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => (await json<{ patches: { state: string }[] }>(['device', 'show', 'gw-f8'])).patches[0]?.state === 'cancelled', 30_000, 'cancelled reported');
    expect(readFileSync(join(a.dir, 'sample-app', 'VERSION'), 'utf8').trim()).toBe('1.0.0');
    expect(jobState(a.dir)).toMatchObject({ state: 'cancelled' });
    const v = await view(id);
    expect(v.state).toBe('aborted');
    expect(v.failed).toEqual([expect.objectContaining({ deviceId: 'gw-f8', reason: expect.stringMatching(/^cancelled/) })]);
  }, 120_000);

  it('reboot-spanning install: resumes after a reboot (new boot id) and commits only once the check passes there', async () => {
    const bootFile = join(dir.path, 'f9-boot-id');
    writeFileSync(bootFile, 'boot-1\n');
    const a = await agent('gw-f9', 'f9', { XCARE_EXAMPLE_REBOOT: '1' }, { patchYaml: [`bootIdFile: ${bootFile}`] });
    const id = await create('f9');
    await eventually(() => jobState(a.dir)?.state === 'rebooting', 60_000, 'install asked for a reboot');
    // The agent restarts without a reboot (same boot id): nothing is committed.
    await a.stop();
    running.push(restartAgent(a.configFile));
    await new Promise((r) => setTimeout(r, 3000));
    expect(jobState(a.dir)?.state).toBe('rebooting');
    expect((await view(id)).counts.done).toBe(0);
    // The simulated reboot: a new boot id, the agent starts again.
    await running.at(-1)!.stop();
    writeFileSync(bootFile, 'boot-2\n');
    running.push(restartAgent(a.configFile));
    const v = await ended(id);
    expect(v.state, v.reason ?? '').toBe('completed');
    expect(jobState(a.dir)).toMatchObject({ state: 'installed' });
  }, 120_000);

  it('retries: an install that fails transiently (exit 75) is offered again and succeeds', async () => {
    await agent('gw-f10', 'f10', { XCARE_EXAMPLE_TEMPFAIL_ONCE: join(dir.path, 'f10.once') });
    const id = await create('f10', ['--retries', '1', '--retry-backoff', '1s']);
    const v = await ended(id);
    expect(v.state, v.reason ?? '').toBe('completed');
    expect(v.events.some((e) => e.kind === 'retry')).toBe(true);
  }, 120_000);

  // Old code: 500, the row committed, every tick threw RangeError and other rollouts stayed scheduled.
  it('fault 8: a window of 300000000d is refused with 400 and nothing is stored', async () => {
    const before = (await json<unknown[]>(['rollout', 'list'])).length;
    for (const duration of ['300000000d', '1e308']) {
      const res = await fetch(`${daemon.url}/api/v1/rollouts`, {
        method: 'POST', headers: { authorization: `Bearer ${daemon.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ patchId: PATCH, waves: ['100%'], window: { cron: '* * * * *', duration, timezone: 'UTC' } }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(/^window\.duration/);
    }
    expect((await json<unknown[]>(['rollout', 'list'])).length).toBe(before);
  });
});
