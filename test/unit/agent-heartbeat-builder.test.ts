import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HeartbeatBuilder, UNKNOWN_VERSION } from '../../agent/heartbeat-builder.js';
import { silentAgentLogger } from '../../agent/log.js';
import { AGENT_VERSION } from '../../agent/version.js';
import { computeTreeDigest } from '../../patches/tree-digest.js';
import { heartbeatSchema } from '../../src/protocol/schemas.js';

const root = mkdtempSync(join(tmpdir(), 'hb-builder-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function setup(version = '2.3.1\n') {
  const dir = join(root, `d${n++}`);
  const softwareDir = join(dir, 'app');
  mkdirSync(join(softwareDir, 'lib'), { recursive: true });
  writeFileSync(join(softwareDir, 'lib/main.js'), 'console.log(1)\n');
  const softwareVersionFile = join(dir, 'VERSION');
  writeFileSync(softwareVersionFile, version);
  return { dir, softwareDir, softwareVersionFile };
}

function builder(paths: { softwareDir: string; softwareVersionFile: string }, extra: Partial<ConstructorParameters<typeof HeartbeatBuilder>[0]> = {}) {
  return new HeartbeatBuilder({
    intervalS: 0.2,
    agentVersion: AGENT_VERSION,
    softwareVersionFile: paths.softwareVersionFile,
    softwareDir: paths.softwareDir,
    subsystems: [
      { name: 'uplink', command: 'echo reachable', timeoutMs: 2000 },
      { name: 'storage', command: 'echo read-only; exit 1', timeoutMs: 2000 },
    ],
    sensors: [{ id: 'sen-007', command: 'echo "no reading for 120 s"; exit 2', timeoutMs: 2000 }],
    log: silentAgentLogger(),
    ...extra,
  });
}

describe('HeartbeatBuilder', () => {
  it('builds a heartbeat that validates against the daemon heartbeatSchema', async () => {
    const paths = setup();
    const b = builder(paths, { patchField: () => ({ rolloutId: 'r-1', patchId: 'gw-2.3.2', state: 'installed' }) });
    const hb = await b.build();
    const parsed = heartbeatSchema.safeParse(hb);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    expect(hb).toMatchObject({
      seq: 1,
      bootId: b.bootId,
      intervalS: 1, // announced: at least MIN_INTERVAL_S although it beats every 0.2 s
      agentVersion: AGENT_VERSION,
      softwareVersion: '2.3.1',
      integrity: await computeTreeDigest(paths.softwareDir),
      subsystems: [
        { name: 'uplink', ok: true, detail: 'reachable' },
        { name: 'storage', ok: false, detail: 'read-only' },
      ],
      sensors: [{ id: 'sen-007', ok: false, detail: 'no reading for 120 s' }],
      patch: { rolloutId: 'r-1', patchId: 'gw-2.3.2', state: 'installed' },
    });
    expect(new Date(hb.ts).toISOString()).toBe(hb.ts);
    expect(hb.bootId).toMatch(/^[0-9a-f-]{36}$/);
    for (const key of ['cpu', 'memUsed', 'diskUsed'] as const) {
      expect(hb.health?.[key]).toBeGreaterThanOrEqual(0);
      expect(hb.health?.[key]).toBeLessThanOrEqual(1);
    }
    expect(hb.health?.load1).toBeGreaterThanOrEqual(0);
  });

  it('increases seq on every beat and keeps the bootId', async () => {
    const paths = setup();
    const b = builder(paths, { subsystems: [], sensors: [] });
    const beats = [];
    for (let i = 0; i < 3; i++) beats.push(await b.build());
    expect(beats.map((hb) => hb.seq)).toEqual([1, 2, 3]);
    expect(new Set(beats.map((hb) => hb.bootId))).toEqual(new Set([b.bootId]));
    // a new process (a new builder) gets a new bootId
    expect(builder(paths).bootId).not.toBe(b.bootId);
  });

  it('omits subsystems, sensors and patch when none are configured', async () => {
    const hb = await builder(setup(), { subsystems: [], sensors: [] }).build();
    expect(hb).not.toHaveProperty('subsystems');
    expect(hb).not.toHaveProperty('sensors');
    expect(hb).not.toHaveProperty('patch');
  });

  it('reads the software version on every beat', async () => {
    const paths = setup('1.0.0\n');
    const b = builder(paths, { subsystems: [], sensors: [] });
    expect((await b.build()).softwareVersion).toBe('1.0.0');
    writeFileSync(paths.softwareVersionFile, '1.1.0\n');
    expect((await b.build()).softwareVersion).toBe('1.1.0');
  });

  it('reports "unknown" when the version file is missing, and still validates', async () => {
    const paths = setup();
    const hb = await builder({ ...paths, softwareVersionFile: join(paths.dir, 'missing') }, { subsystems: [], sensors: [] }).build();
    expect(hb.softwareVersion).toBe(UNKNOWN_VERSION);
    expect(heartbeatSchema.safeParse(hb).success).toBe(true);
  });

  it('omits integrity when the software directory is missing, and still validates', async () => {
    const paths = setup();
    const hb = await builder({ ...paths, softwareDir: join(paths.dir, 'missing') }, { subsystems: [], sensors: [] }).build();
    expect(hb).not.toHaveProperty('integrity');
    expect(heartbeatSchema.safeParse(hb).success).toBe(true);
  });

  it('caches the digest while the tree is unchanged and recomputes after a change', async () => {
    const paths = setup();
    const b = builder(paths, { subsystems: [], sensors: [] });
    const first = (await b.build()).integrity;
    expect((await b.build()).integrity).toBe(first);
    await new Promise((r) => setTimeout(r, 15));
    writeFileSync(join(paths.softwareDir, 'lib/main.js'), 'console.log(2)\n');
    const second = (await b.build()).integrity;
    expect(second).not.toBe(first);
    expect(second).toBe(await computeTreeDigest(paths.softwareDir));
  });

  it('invalidate() forces a rehash', async () => {
    const paths = setup();
    const b = builder(paths, { subsystems: [], sensors: [] });
    await b.build();
    b.invalidate();
    expect((await b.build()).integrity).toBe(await computeTreeDigest(paths.softwareDir));
  });

  it('a hung probe delays the beat only up to its timeout', async () => {
    const b = builder(setup(), { subsystems: [{ name: 'hung', command: 'sleep 30', timeoutMs: 150 }], sensors: [] });
    const started = Date.now();
    const hb = await b.build();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(hb.subsystems).toEqual([{ name: 'hung', ok: false, detail: 'timed out after 150 ms' }]);
  });

  it('a patch port that throws does not break the beat', async () => {
    const hb = await builder(setup(), {
      subsystems: [],
      sensors: [],
      patchField: () => {
        throw new Error('boom');
      },
    }).build();
    expect(hb).not.toHaveProperty('patch');
  });
});
