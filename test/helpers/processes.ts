import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, packageRoot } from '../../src/demo/daemon.js';
import { daemonStoreEnv } from './store-engines.js';

/** Real processes for end-to-end tests: the built `xcared`, `xcare-agent` and `xcarectl` (dist/). */
// From test/helpers (vitest) or dist/test/helpers (benchmarks): the folder with package.json.
export const ROOT = packageRoot(import.meta.dirname);
export { freePort };
const run = promisify(execFile);

export interface RunningProcess {
  proc: ChildProcess;
  output(): string;
  /** SIGTERM and wait; resolves the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  kill9(): Promise<void>;
}

function track(proc: ChildProcess, name?: () => string | undefined): RunningProcess {
  let out = '';
  let stopping = false;
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.once('exit', (code, signal) => {
    // A daemon that was up and died on its own: say why in the test log (a later assertion only sees ECONNREFUSED).
    const what = name?.();
    if (what && !stopping && signal !== 'SIGKILL') {
      process.stderr.write(`\n*** ${what} exited on its own (code ${code}, signal ${signal}); its last output:\n${out.slice(-4000)}\n`);
    }
  });
  return {
    proc,
    output: () => out,
    async stop(timeoutMs = 10_000) {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill9() {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface Daemon extends RunningProcess {
  url: string;
  mqttPort: number;
  httpPort: number;
  adminToken: string;
  dataDir: string;
  configFile: string;
}

/** Start the real daemon on free ports with `extraYaml` appended to its config; waits for /readyz. */
export async function startDaemon(dataDir: string, extraYaml = '', ports?: { mqtt: number; http: number }, env?: NodeJS.ProcessEnv): Promise<Daemon> {
  const mqttPort = ports?.mqtt ?? (await freePort());
  const httpPort = ports?.http ?? (await freePort());
  const adminToken = 'e2e-admin-token-0123456789';
  mkdirSync(dataDir, { recursive: true });
  const configFile = join(dataDir, 'config.yaml');
  writeFileSync(
    configFile,
    `dataDir: ${dataDir}\nadminToken: ${adminToken}\nlog: { level: info }\nmqtt: { host: 127.0.0.1, port: ${mqttPort} }\nhttp: { host: 127.0.0.1, port: ${httpPort} }\n${extraYaml}`,
  );
  const storeEnv = await daemonStoreEnv(dataDir);
  const proc = spawn(process.execPath, [join(ROOT, 'bin/xcared.js'), '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...storeEnv, ...env },
  });
  let ready = false;
  const tracked = track(proc, () => (ready ? `xcared (${dataDir})` : undefined));
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`xcared exited ${proc.exitCode}: ${tracked.output()}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`xcared not ready: ${tracked.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  ready = true;
  return { ...tracked, url, mqttPort, httpPort, adminToken, dataDir, configFile };
}

/** Run the real xcarectl against a daemon. */
export async function ctl(daemon: Pick<Daemon, 'url' | 'adminToken'>, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'bin/xcarectl.js'), ...args], {
      env: { ...process.env, XCARE_URL: daemon.url, XCARE_TOKEN: daemon.adminToken },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export interface AgentOptions {
  deviceId: string;
  deviceType?: 'gateway' | 'sensor';
  token: string;
  mqttPort: number;
  httpUrl: string;
  dir: string;
  intervalS?: number;
  softwareVersion?: string;
  extraYaml?: string;
  /** Use this software tree and version file instead of a generated one. */
  softwareDir?: string;
  versionFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Read the token from this file (the agent's `tokenFile`) instead of writing `token` into the config. */
  tokenFile?: string;
  /** reconnect.maxMs (default 1000: tests retry fast). */
  reconnectMaxMs?: number;
}

/** Write an agent.yaml plus a tiny software tree, and start the real agent process. */
export function startAgent(opts: AgentOptions): RunningProcess & { configFile: string } {
  const softwareDir = opts.softwareDir ?? join(opts.dir, 'software');
  const versionFile = opts.versionFile ?? join(opts.dir, 'VERSION');
  mkdirSync(join(opts.dir, 'state'), { recursive: true });
  if (!opts.softwareDir) {
    mkdirSync(softwareDir, { recursive: true });
    writeFileSync(join(softwareDir, 'app.txt'), 'sample app\n');
  }
  if (!opts.versionFile) writeFileSync(versionFile, `${opts.softwareVersion ?? '1.0.0'}\n`);
  const configFile = join(opts.dir, 'agent.yaml');
  writeFileSync(
    configFile,
    [
      `deviceId: ${opts.deviceId}`,
      `deviceType: ${opts.deviceType ?? 'gateway'}`,
      opts.tokenFile ? `tokenFile: ${opts.tokenFile}` : `token: "${opts.token}"`,
      `brokerUrl: mqtt://127.0.0.1:${opts.mqttPort}`,
      `daemonUrl: ${opts.httpUrl}`,
      `intervalS: ${opts.intervalS ?? 1}`,
      `stateDir: ${join(opts.dir, 'state')}`,
      `softwareVersionFile: ${versionFile}`,
      `softwareDir: ${softwareDir}`,
      'reconnect:',
      '  minMs: 100',
      `  maxMs: ${opts.reconnectMaxMs ?? 1000}`,
      opts.extraYaml ?? '',
    ].join('\n'),
  );
  return { ...spawnAgent(configFile, opts.env), configFile };
}

/** Start a real agent process on an existing agent.yaml (also used to restart one). */
export function spawnAgent(configFile: string, env: NodeJS.ProcessEnv = {}): RunningProcess {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/xcare-agent.js'), '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  return track(proc);
}

/** Poll `probe` until it returns a truthy value or the timeout passes. */
export async function eventually<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
