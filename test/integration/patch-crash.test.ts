/**
 * Crash safety of the agent patch job (issue 4 "Crash safety"): for each state, persist it as the
 * job would, leave the side effects a kill -9 at that point leaves, then build a FRESH store and
 * runner from the state dir (as after a restart) and resume. The job must end on the old or the
 * new version with exactly one terminal status, and a second resume must do nothing (no loop).
 * One case kills a real agent process with SIGKILL in the middle of the install command.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PatchStatus } from '../../src/protocol/types.js';
import { computeTreeDigest } from '../../patches/tree-digest.js';
import { loadPinnedKeys } from '../../patches/signing.js';
import { PatchJobRunner, MAX_RESUMES } from '../../agent/patch-job.js';
import { PatchJobStore } from '../../agent/patch-job-store.js';
import { parsePatchSettings } from '../../agent/patch-settings.js';
import type { JobState } from '../../agent/patch-job-states.js';
import { createPatchPort } from '../../agent/patch-port-impl.js';
import { silentAgentLogger } from '../../agent/log.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  ArtifactServer, REPO, buildArtifact, exampleCommands, makeDevice, makeKey, makeOffer, manifestFor, TERMINAL,
  type BuiltArtifact, type TestKey,
} from '../helpers/patch-fixtures.js';

const NOW = Date.parse('2026-11-26T12:00:00Z');
const PATCH = 'app-1.1.0';

let tmp: { path: string; cleanup(): void };
let key: TestKey;
let artifact: BuiltArtifact;
let device: ReturnType<typeof makeDevice>;
let server: ArtifactServer;
let baseUrl: string;
let originalDigest: string;
let newDigest: string;

beforeEach(async () => {
  tmp = tempDir('xcare-patch-crash-');
  key = makeKey(tmp.path, 'a');
  artifact = buildArtifact(tmp.path);
  device = makeDevice(tmp.path);
  server = new ArtifactServer(new Map([[`/patches/${PATCH}/artifact`, artifact.bytes]]));
  baseUrl = await server.start();
  originalDigest = await computeTreeDigest(device.softwareDir);
  newDigest = await computeTreeDigest(artifact.tree);
});

afterEach(async () => {
  await server.stop();
  tmp.cleanup();
});

function settingsRaw(extraEnv = ''): Record<string, unknown> {
  const p = extraEnv ? `${extraEnv} ` : '';
  return { keys: [key.pubPath], downloadDeadlineS: 20, commandTimeoutS: 20, install: p + exampleCommands.install, check: exampleCommands.check, rollback: exampleCommands.rollback };
}

function freshRunner(statuses: PatchStatus[]): PatchJobRunner {
  const settings = parsePatchSettings(settingsRaw(), device.stateDir);
  return new PatchJobRunner({
    deviceId: 'gw-1', deviceType: 'gateway', token: 'tok', daemonUrl: baseUrl, settings,
    pinnedKeys: loadPinnedKeys(settings.keys), store: new PatchJobStore(device.stateDir),
    currentVersion: device.version, softwareDir: device.softwareDir, softwareVersionFile: device.versionFile,
    publishStatus: (s) => statuses.push(s), onInstalled: () => {}, log: silentAgentLogger(), now: () => NOW,
  });
}

const staging = () => join(device.stateDir, 'staging', PATCH);

function installEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    XCARE_ARTIFACT: join(staging(), artifact.path.split('/').pop()!),
    XCARE_STAGING: staging(),
    XCARE_SOFTWARE_DIR: device.softwareDir,
    XCARE_VERSION_FILE: device.versionFile,
    XCARE_PATCH_VERSION: '1.1.0',
    ...extra,
  };
}

/** Run the example install as far as a crash would have let it get. */
function partialInstall(complete: boolean): void {
  mkdirSync(staging(), { recursive: true });
  copyFileSync(artifact.path, join(staging(), 'sample-app-1.1.0.tar.gz'));
  try {
    execFileSync('sh', [join(REPO, 'patches/examples/install.sh')], { env: installEnv(complete ? {} : { XCARE_EXAMPLE_FAIL_INSTALL: '1' }), stdio: 'ignore' });
  } catch {
    // the half-done install exits 1 after replacing the tree, before writing VERSION
  }
}

interface Row {
  state: JobState;
  /** Side effects present at the crash. */
  setup?: () => void;
  rollingBack?: boolean;
  resumes?: number;
  final: 'installed' | 'failed' | 'rolled_back' | 'rejected' | 'none';
  version: '1.0.0' | '1.1.0';
}

const PATHS: Record<string, JobState[]> = {
  offered: [],
  downloading: ['downloading'],
  verifying: ['downloading', 'verifying'],
  installing: ['downloading', 'verifying', 'installing'],
  'health-check': ['downloading', 'verifying', 'installing', 'health-check'],
  installed: ['downloading', 'verifying', 'installing', 'health-check', 'installed'],
  rolled_back: ['downloading', 'verifying', 'installing', 'health-check', 'rolled_back'],
  failed: ['downloading', 'verifying', 'installing', 'failed'],
  rejected: ['rejected'],
};

const ROWS: Row[] = [
  { state: 'offered', final: 'installed', version: '1.1.0' },
  {
    state: 'downloading',
    setup: () => {
      mkdirSync(staging(), { recursive: true });
      writeFileSync(join(staging(), 'download.part'), artifact.bytes.subarray(0, 200));
    },
    final: 'installed',
    version: '1.1.0',
  },
  {
    state: 'verifying',
    setup: () => {
      mkdirSync(staging(), { recursive: true });
      writeFileSync(join(staging(), 'download.part'), artifact.bytes);
    },
    final: 'installed',
    version: '1.1.0',
  },
  { state: 'installing', setup: () => partialInstall(false), final: 'failed', version: '1.0.0' },
  { state: 'installing', setup: () => partialInstall(false), rollingBack: true, final: 'failed', version: '1.0.0' },
  { state: 'health-check', setup: () => partialInstall(true), final: 'installed', version: '1.1.0' },
  { state: 'health-check', setup: () => partialInstall(true), rollingBack: true, final: 'rolled_back', version: '1.0.0' },
  { state: 'health-check', setup: () => partialInstall(true), resumes: MAX_RESUMES, final: 'rolled_back', version: '1.0.0' },
  { state: 'downloading', resumes: MAX_RESUMES, final: 'failed', version: '1.0.0' },
  { state: 'installed', setup: () => partialInstall(true), final: 'none', version: '1.1.0' },
  { state: 'failed', final: 'none', version: '1.0.0' },
  { state: 'rolled_back', final: 'none', version: '1.0.0' },
  { state: 'rejected', final: 'none', version: '1.0.0' },
];

describe('patch job crash safety (table: crash in each state, restart, resume)', () => {
  for (const row of ROWS) {
    const name = `${row.state}${row.rollingBack ? ' (rolling back)' : ''}${row.resumes ? ` (resumed ${row.resumes}x already)` : ''} -> ${row.final} on ${row.version}`;
    it(name, async () => {
      const offer = makeOffer(manifestFor(artifact, key), [key]);
      // Persist the state exactly as the job does (transition table enforced).
      const before = new PatchJobStore(device.stateDir);
      before.begin({ patchId: PATCH, version: '0.0.0', offer }, NOW);
      if (row.state !== 'offered') before.update({ version: '1.1.0' }, NOW);
      for (const s of PATHS[row.state]!) before.transition(s, '', NOW, s === 'installing' ? { fromVersion: '1.0.0' } : {});
      if (row.rollingBack) before.update({ rollingBack: true }, NOW);
      if (row.resumes) before.update({ resumes: row.resumes }, NOW);
      row.setup?.();

      const statuses: PatchStatus[] = [];
      await freshRunner(statuses).resume();
      const terminal = statuses.filter((s) => TERMINAL.includes(s.state));
      if (row.final === 'none') expect(statuses).toEqual([]);
      else {
        expect(terminal.map((s) => s.state)).toEqual([row.final]);
        expect(statuses.at(-1)!.state).toBe(row.final);
      }
      expect(device.version()).toBe(row.version);
      expect(await computeTreeDigest(device.softwareDir)).toBe(row.version === '1.1.0' ? newDigest : originalDigest);
      if (row.state === 'downloading' && !row.resumes) expect(server.requests[0]!.range).toBe('bytes=200-');

      // A second restart finds a finished job: nothing runs, nothing is reported (never looping).
      const again: PatchStatus[] = [];
      await freshRunner(again).resume();
      expect(again).toEqual([]);
      const state = new PatchJobStore(device.stateDir).load();
      expect(TERMINAL).toContain(state.job!.state);
      expect(existsSync(staging())).toBe(false);
    });
  }
});

describe('patch job crash safety with a real process', () => {
  let out = '';
  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), 'xcare-patch-build-'));
    // Compile the agent's patch port to JS so a real `node` child can run it and be SIGKILLed.
    execFileSync(
      join(REPO, 'node_modules/.bin/tsc'),
      ['--outDir', out, '--rootDir', REPO, '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--strict', '--skipLibCheck', '--types', 'node', '--sourceMap', 'false', join(REPO, 'agent/patch-port-impl.ts')],
      { cwd: REPO, stdio: 'pipe' },
    );
    writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
    // The agent imports `semver` (PROTOCOL.md allows it): resolve it from the repository's node_modules.
    symlinkSync(join(REPO, 'node_modules'), join(out, 'node_modules'));
  }, 180_000); // a tsc run: ~10 s alone, much longer beside other builds
  afterAll(() => {
    rmSync(out, { recursive: true, force: true });
  });

  it('SIGKILL of the agent mid-install: after restart the job rolls back and reports failed once', async () => {
    const pauseFile = join(tmp.path, 'install.pid');
    const offer = makeOffer(manifestFor(artifact, key), [key]);
    const childScript = join(tmp.path, 'agent-child.mjs');
    writeFileSync(
      childScript,
      `import { readFileSync } from 'node:fs';
import { createPatchPort } from ${JSON.stringify(join(out, 'agent/patch-port-impl.js'))};
const cfg = JSON.parse(process.argv[2]);
const log = { debug() {}, info() {}, warn() {}, error() {}, child() { return log; } };
const port = createPatchPort({ ...cfg, currentVersion: () => readFileSync(cfg.softwareVersionFile, 'utf8').trim(),
  publishStatus: (s) => process.stdout.write(JSON.stringify(s) + '\\n'), onInstalled() {}, log });
port.onConnected();
port.handleOffer(Buffer.from(cfg.offer));
setInterval(() => {}, 1000);
`,
    );
    const cfg = {
      deviceId: 'gw-1', deviceType: 'gateway', token: 'tok', daemonUrl: baseUrl, stateDir: device.stateDir,
      settings: settingsRaw(`XCARE_EXAMPLE_PAUSE_FILE=${pauseFile}`),
      softwareDir: device.softwareDir, softwareVersionFile: device.versionFile, offer: JSON.stringify(offer),
    };
    const child = spawn(process.execPath, [childScript, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let childOut = '';
    child.stdout.on('data', (d: Buffer) => (childOut += d.toString()));
    child.stderr.on('data', (d: Buffer) => (childOut += d.toString()));
    for (let i = 0; i < 400 && !existsSync(pauseFile); i++) await new Promise((r) => setTimeout(r, 25));
    expect(existsSync(pauseFile), childOut).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const installPid = Number(readFileSync(pauseFile, 'utf8').trim());
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    // Power loss takes the install command (its own process group) down with the agent.
    try {
      process.kill(-installPid, 'SIGKILL');
    } catch {
      // gone already
    }
    expect(childOut.trim().split('\n').map((l) => (JSON.parse(l) as PatchStatus).state)).toEqual(['downloading', 'verifying', 'installing']);
    expect(new PatchJobStore(device.stateDir).load().job!.state).toBe('installing');
    // Half installed: the tree (VERSION included) is already replaced, the check never ran.
    expect(device.version()).toBe('1.1.0');

    const statuses: PatchStatus[] = [];
    let installed = 0;
    const port = createPatchPort({
      deviceId: 'gw-1', deviceType: 'gateway', token: 'tok', daemonUrl: baseUrl, stateDir: device.stateDir,
      settings: settingsRaw(), currentVersion: device.version, softwareDir: device.softwareDir,
      softwareVersionFile: device.versionFile, publishStatus: (s) => statuses.push(s), onInstalled: () => installed++,
      log: silentAgentLogger(),
    });
    port.onConnected();
    for (let i = 0; i < 400 && !statuses.some((s) => TERMINAL.includes(s.state)); i++) await new Promise((r) => setTimeout(r, 25));
    port.onConnected(); // a reconnect re-publishes, never re-runs
    await port.stop();
    // The first status re-publishes the persisted `installing`; then exactly one terminal status.
    expect(statuses.map((s) => s.state)).toEqual(['installing', 'failed', 'failed']);
    expect(statuses[1]!.detail).toMatch(/install interrupted/);
    expect(device.version()).toBe('1.0.0');
    expect(await computeTreeDigest(device.softwareDir)).toBe(originalDigest);
    expect(installed).toBe(0);
  });
});
