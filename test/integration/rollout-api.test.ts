import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { Router } from '../../src/http/router.js';
import { HttpServer } from '../../src/http/server.js';
import { registerRolloutRoutes } from '../../src/http/routes/rollouts.js';
import { registerSystemRoutes } from '../../src/http/routes/system.js';
import { createMetricsRegistry } from '../../src/metrics/metrics.js';
import { registerRolloutMetrics } from '../../src/metrics/rollout-metrics.js';
import { RolloutScheduler } from '../../src/rollouts/rollout-scheduler.js';
import { createCliContext } from '../../src/cli/cli-context.js';
import { commands, createBody, renderProgress, watchExitCode, type RolloutViewJson } from '../../src/cli/commands/rollout.js';
import { CliError, type Command } from '../../src/cli/command.js';
import { tempDir } from '../helpers/temp-dir.js';
import { MemoryDirectory, RecordingPorts, device, examplePatch } from './rollout-fixtures.js';

const TOKEN = 'test-admin-token-0123456789';
const WINDOW = { cron: '0 2 * * *', duration: '4h', timezone: 'Europe/Berlin' };

describe('rollouts over HTTP, the CLI and /metrics', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Database;
  let clock: ManualClock;
  let ports: RecordingPorts;
  let directory: MemoryDirectory;
  let scheduler: RolloutScheduler;
  let http: HttpServer;
  let url: string;
  let out: string[];

  const api = async (method: string, path: string, body?: unknown, token = TOKEN) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const cli = async (words: string[], json = false) => {
    const command = commands.find((c: Command) => c.name.every((w, i) => words[i] === w))!;
    const ctx = createCliContext({ url, token: TOKEN, json, env: {}, cwd: dir.path, out: (s) => void out.push(s) });
    await command.run(words.slice(command.name.length), ctx);
    return out.join('');
  };
  const rowCount = () => (db.prepare('SELECT COUNT(*) AS n FROM rollouts').get() as { n: number }).n;

  beforeEach(async () => {
    dir = tempDir('xcare-rollout-api-');
    db = openDatabase(join(dir.path, 'xcare.db'));
    clock = new ManualClock('2026-11-26T00:00:00.000Z');
    directory = new MemoryDirectory();
    ports = new RecordingPorts();
    ports.patches.set(examplePatch.id, examplePatch);
    for (let i = 1; i <= 10; i++) {
      const id = `gw-${i}`;
      directory.add(device(id, { customer: i <= 5 ? 'acme' : 'globex' }));
      ports.versions.set(id, i === 10 ? '2.3.2' : '2.3.1');
      ports.connected.add(id);
    }
    scheduler = new RolloutScheduler({
      db, clock, log: silentLogger(), directory, ports,
      config: { tickMs: 1000, abortThreshold: 0.1, maxConcurrent: 500, maxPerGateway: 1, expectedRestartGraceS: 300 },
    });
    scheduler.start();
    const metrics = createMetricsRegistry(false);
    registerRolloutMetrics(metrics, { db, clock });
    const router = new Router();
    registerSystemRoutes(router, { metrics, readiness: () => ({}) });
    registerRolloutRoutes(router, { scheduler });
    http = new HttpServer({ router, log: silentLogger(), host: '127.0.0.1', port: 0, adminToken: TOKEN });
    await http.start();
    url = `http://127.0.0.1:${http.port()}`;
    out = [];
  });

  afterEach(async () => {
    const stopping = scheduler.stop(100);
    clock.advance(100);
    await stopping;
    await http.stop();
    db.close();
    dir.cleanup();
  });

  it('POST creates (201) and GET shows the plan with per-wave counts and the devices left out', async () => {
    const created = await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: [2, '100%'], window: WINDOW });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(id).toBe('r-20261126-1');
    const shown = await api('GET', `/api/v1/rollouts/${id}`);
    expect(shown.status).toBe(200);
    const view = shown.body as unknown as RolloutViewJson;
    expect(view.waves.map((w) => w.size)).toEqual([2, 7]);
    expect(view.excluded).toEqual([{ deviceId: 'gw-10', wave: null, reason: 'already runs 2.3.2 (patch is 2.3.2)' }]);
    expect(view.window).toMatchObject({ open: false, opensAt: '2026-11-26T01:00:00.000Z' });
    const listed = await api('GET', '/api/v1/rollouts');
    expect((listed.body.rollouts as { id: string }[]).map((r) => r.id)).toEqual([id]);
  });

  it('refuses bad input with 400 naming the field and stores nothing', async () => {
    const cases: [unknown, RegExp][] = [
      [{ patchId: 'nope', waves: ['100%'], window: WINDOW }, /^patchId:/],
      [{ patchId: examplePatch.id, waves: ['100%'], window: { ...WINDOW, timezone: 'Nowhere/Land' } }, /^window\.timezone:/],
      [{ patchId: examplePatch.id, waves: ['100%'], window: { ...WINDOW, cron: 'often' } }, /^window\.cron:/],
      [{ patchId: examplePatch.id, waves: ['100%'], window: WINDOW, target: { customers: ['initech'] } }, /^target: no eligible device/],
      [{ patchId: examplePatch.id, waves: ['100%'], window: WINDOW, target: { software: '^1.0.0' } }, /^target\.software:/],
      ['{not json', /not valid JSON/],
    ];
    for (const [body, message] of cases) {
      const res = await api('POST', '/api/v1/rollouts', body);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(message);
    }
    expect(rowCount()).toBe(0);
  });

  it('needs the admin token', async () => {
    expect((await api('GET', '/api/v1/rollouts', undefined, 'wrong-token-wrong-token')).status).toBe(401);
  });

  it('pause, resume and abort; 404 for an unknown rollout, 409 for a state that does not allow it', async () => {
    const id = (await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: WINDOW })).body.id as string;
    expect((await api('POST', `/api/v1/rollouts/${id}/pause`)).body.state).toBe('paused');
    expect((await api('POST', `/api/v1/rollouts/${id}/pause`)).status).toBe(409);
    expect((await api('POST', `/api/v1/rollouts/${id}/resume`)).body.state).toBe('scheduled');
    const aborted = await api('POST', `/api/v1/rollouts/${id}/abort`, { reason: 'wrong patch' });
    expect(aborted.body).toMatchObject({ state: 'aborted', reason: 'aborted by operator: wrong patch' });
    expect((await api('POST', `/api/v1/rollouts/${id}/resume`)).status).toBe(409);
    expect((await api('GET', '/api/v1/rollouts/r-19990101-1')).status).toBe(404);
    expect((await api('POST', '/api/v1/rollouts/r-19990101-1/abort')).status).toBe(404);
  });

  it('xcarectl rollout create/list/show/pause/resume/abort/watch --once', async () => {
    await cli(['rollout', 'create', '--patch', examplePatch.id, '--customers', 'acme', '--wave', '2', '--wave', '100%:1h', '--soak', '30m', '--window', '0 2 * * *', '--duration', '4h', '--tz', 'Europe/Berlin', '--jitter', '5m', '--max-per-gateway', '2']);
    expect(out.join('')).toMatch(/rollout r-20261126-1 created \(scheduled\): 5 devices in 2 waves \(2 \/ 3\), 5 left out/);
    out = [];
    const listed = JSON.parse(await cli(['rollout', 'list'], true)) as { id: string; state: string }[];
    expect(listed).toEqual([expect.objectContaining({ id: 'r-20261126-1', state: 'scheduled' })]);
    out = [];
    const shown = await cli(['rollout', 'show', 'r-20261126-1']);
    expect(shown).toMatch(/waves {6}2 \(soak 30m\), 100% \(soak 1h\)/);
    expect(shown).toMatch(/gw-6 +plan +customer globex not in target/);
    out = [];
    clock.set('2026-11-26T01:10:00.000Z');
    await scheduler.tick();
    // started mid-window at 01:10: the 5 min jitter spreads the canary offers from there
    clock.set('2026-11-26T01:15:00.000Z');
    await scheduler.tick();
    // issue 9 fault 5: --once on a rollout still running exits non-zero (5), after drawing it
    await expect(cli(['rollout', 'watch', 'r-20261126-1', '--once'])).rejects.toMatchObject({ exitCode: 5, message: 'rollout r-20261126-1 is still running' });
    const drawn = out.join('');
    expect(drawn).toMatch(/r-20261126-1 {2}gw-2.3.2 {2}running {2}wave 1\/2 {2}window open until 2026-11-26T05:00:00.000Z/);
    expect(drawn).toMatch(/> wave 1 {2}\[={30}\] +0% {2}pending 0 {2}offered 2 {2}installing 0 {2}done 0 {2}failed 0 {2}excluded 0/);
    expect(drawn).toMatch(/ {2}wave 2 {2}\[\.{30}\] +0% {2}pending 3/);
    out = [];
    await cli(['rollout', 'pause', 'r-20261126-1']);
    await cli(['rollout', 'resume', 'r-20261126-1']);
    await cli(['rollout', 'abort', 'r-20261126-1', '--reason', 'testing']);
    expect(out.join('')).toBe('rollout r-20261126-1 paused\nrollout r-20261126-1 running\nrollout r-20261126-1 aborted\n');
    out = [];
    // watch exits by itself once the rollout has ended: aborted is exit 3, never 0
    await expect(cli(['rollout', 'watch', 'r-20261126-1'])).rejects.toMatchObject({ exitCode: 3, message: expect.stringMatching(/^rollout r-20261126-1 aborted: aborted by operator: testing/) });
    expect(out.join('')).toMatch(/aborted/);
    out = [];
    await expect(cli(['rollout', 'watch', 'r-20261126-1', '--once'], true)).rejects.toMatchObject({ exitCode: 3 });
    expect(JSON.parse(out.join(''))).toMatchObject({ id: 'r-20261126-1', state: 'aborted' });
  });

  it('abort --force cancels devices in flight; a bad force value is refused with 400', async () => {
    const id = (await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: WINDOW })).body.id as string;
    expect((await api('POST', `/api/v1/rollouts/${id}/abort`, { force: 'yes' })).status).toBe(400);
    expect((await api('GET', `/api/v1/rollouts/${id}`)).body.state).toBe('scheduled');
    clock.set('2026-11-26T01:00:00.000Z');
    await scheduler.tick();
    const offered = ports.offeredIds();
    expect(offered.length).toBeGreaterThan(0);
    await cli(['rollout', 'abort', id, '--force']);
    expect(out.join('')).toMatch(/aborted/);
    expect(ports.cancels.map((c) => c.deviceId).sort()).toEqual([...offered].sort());
    expect((await api('GET', `/api/v1/rollouts/${id}`)).body.reason).toMatch(/forced: cancel sent to \d+ devices/);
  });

  it('watch exit codes: 0 only for completed', () => {
    expect([watchExitCode('completed'), watchExitCode('aborted'), watchExitCode('failed'), watchExitCode('running'), watchExitCode('paused'), watchExitCode('scheduled')]).toEqual([0, 3, 4, 5, 5, 5]);
  });

  it('the CLI refuses missing required flags before calling the daemon', async () => {
    await expect(cli(['rollout', 'create', '--wave', '5'])).rejects.toThrow(/--patch is required/);
    expect(() => createBody({ patch: 'p', wave: ['5'], window: '0 2 * * *', duration: '4h' })).toThrow(CliError);
    expect(() => createBody({ patch: 'p', wave: ['5'], window: '0 2 * * *', duration: '4h', tz: 'UTC', 'max-concurrent': 'lots' })).toThrow(/--max-concurrent/);
    await expect(cli(['rollout', 'show'])).rejects.toThrow(/usage/);
  });

  it('the CLI prints the daemon error naming the field', async () => {
    await expect(cli(['rollout', 'create', '--patch', examplePatch.id, '--wave', '100%', '--window', '0 2 * * *', '--duration', '4h', '--tz', 'Mars/Base'])).rejects.toThrow(/window\.timezone: "Mars\/Base" is not an IANA timezone.*\(HTTP 400\)/);
  });

  it('renders a finished wave as a full bar', () => {
    const counts = { pending: 0, offered: 0, downloading: 0, installing: 0, installed: 0, done: 9, failed: 1, excluded: 0 };
    const lines = renderProgress({
      id: 'r-1', patchId: 'p', state: 'completed', currentWave: 0, reason: null, createdAt: '', startedAt: null, endedAt: null, spec: {} as never,
      window: null, counts, waves: [{ index: 0, size: 10, soakMs: 0, counts }], excludedAtPlanning: 0, excluded: [],
    });
    expect(lines[1]).toBe(`  wave 1  [${'#'.repeat(27)}xxx] 100%  pending 0  offered 0  installing 0  done 9  failed 1  excluded 0`);
  });

  it('an aborted rollout leaves no device pending: store, view and /metrics agree; ended rollouts drop out after 24 h', async () => {
    const id = (await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: [2, '100%'], window: WINDOW })).body.id as string;
    clock.set('2026-11-26T01:00:00.000Z');
    await scheduler.tick();
    expect((await api('POST', `/api/v1/rollouts/${id}/abort`, { reason: 'wrong patch' })).body.state).toBe('aborted');
    const pendingInStore = (db.prepare(`SELECT COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? AND state = 'pending'`).get(id) as { n: number }).n;
    expect(pendingInStore).toBe(0);
    const view = (await api('GET', `/api/v1/rollouts/${id}`)).body as unknown as RolloutViewJson;
    expect(view.counts).toMatchObject({ pending: 0, offered: 2, excluded: 8 });
    expect(view.excluded).toContainEqual(expect.objectContaining({ wave: 1, reason: 'not offered: rollout aborted (aborted by operator: wrong patch)' }));
    let text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="pending"} 0`);
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="excluded"} 8`);
    clock.advance(24 * 3_600_000 + 1000);
    text = await (await fetch(`${url}/metrics`)).text();
    expect(text).not.toContain(`rollout="${id}"`);
  });

  it('the create summary counts every planned device and each wave its own size, as progress and --json do', async () => {
    // Window open at creation: the scheduler offers the canary wave at once, which must not change the summary.
    clock.set('2026-11-26T01:00:00.000Z');
    await cli(['rollout', 'create', '--patch', examplePatch.id, '--customers', 'acme', '--wave', '2', '--wave', '100%', '--window', '0 2 * * *', '--duration', '4h', '--tz', 'Europe/Berlin']);
    await scheduler.tick();
    expect(out.join('')).toMatch(/rollout r-20261126-1 created \((scheduled|running)\): 5 devices in 2 waves \(2 \/ 3\), 5 left out\n/);
    out = [];
    await expect(cli(['rollout', 'watch', 'r-20261126-1', '--once'])).rejects.toMatchObject({ exitCode: 5 });
    expect(out.join('')).toMatch(/wave 1 {2}\[={30}\] +0% {2}pending 0 {2}offered 2/);
    out = [];
    await cli(['rollout', 'create', '--patch', examplePatch.id, '--customers', 'globex', '--wave', '1', '--wave', '100%', '--window', '0 2 * * *', '--duration', '4h', '--tz', 'Europe/Berlin'], true);
    const json = JSON.parse(out.join('')) as RolloutViewJson & { devices: number };
    expect(json.devices).toBe(4);
    expect(json.waves.map((w) => w.size)).toEqual([1, 3]);
  });

  it('refuses a window that can never open (30 February) with 400 naming the window, stores nothing', async () => {
    for (const cron of ['0 0 30 2 *', '0 0 31 4 *', '0 0 31 11 *']) {
      const res = await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: { cron, duration: '1h', timezone: 'UTC' } });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/^window\.cron: ".*" never opens/);
    }
    for (const duration of ['0s', '0', 0]) {
      const res = await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: { ...WINDOW, duration } });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/^window\.duration:/);
    }
    const res = await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: { ...WINDOW, timezone: 'Mars/Olympus' } });
    expect(res.body.error).toMatch(/^window\.timezone:/);
    expect(rowCount()).toBe(0);
    // Then the same devices can go into a rollout whose window does open.
    expect((await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: ['100%'], window: WINDOW })).status).toBe(201);
  });

  it('/metrics exports fleet_rollout_devices{rollout,state} and fleet_rollout_wave{rollout}', async () => {
    const id = (await api('POST', '/api/v1/rollouts', { patchId: examplePatch.id, waves: [2, '100%'], window: WINDOW })).body.id as string;
    clock.set('2026-11-26T01:00:00.000Z');
    await scheduler.tick();
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="offered"} 2`);
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="pending"} 7`);
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="excluded"} 1`);
    expect(text).toContain(`fleet_rollout_devices{rollout="${id}",state="failed"} 0`);
    expect(text).toContain(`fleet_rollout_wave{rollout="${id}"} 1`);
  });
});
