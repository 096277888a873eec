/**
 * The demo's daemon: the real `xcared` (bin/xcared.js) as a child process on free loopback ports with a temporary
 * data dir and timings shortened so a day of faults plays in minutes, plus a small client for its API.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createWriteStream, existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The clone (or installed package) root: the folder above dist/ or src/ with package.json. */
export function packageRoot(from = import.meta.dirname): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** A free loopback TCP port (bound and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Demo timings (seconds): heartbeats every 2 s, lost after 3 missed, tickets resolve 10 s after clearing. */
export const DEMO_INTERVAL_S = 2;

export interface DemoDaemon {
  url: string;
  mqttUrl: string;
  adminToken: string;
  logFile: string;
  proc: ChildProcess;
  /** GET/POST the API with the admin token; throws with the daemon's error on a non-2xx answer. */
  api<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** Run the real xcarectl against this daemon; resolves its stdout, throws with its stderr. */
  ctl(args: string[]): Promise<string>;
  /** SIGTERM and wait for the exit code (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Start xcared in `dir` with `releaseKey` pinned; resolves once /readyz answers 200. */
export async function startDemoDaemon(dir: string, releaseKey: string): Promise<DemoDaemon> {
  const root = packageRoot();
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const adminToken = randomBytes(18).toString('base64url');
  const configFile = join(dir, 'xcared.yaml');
  writeFileSync(
    configFile,
    [
      `dataDir: ${JSON.stringify(join(dir, 'data'))}`,
      `adminToken: ${adminToken}`,
      'log: { level: info, format: json }',
      `mqtt: { host: 127.0.0.1, port: ${mqttPort} }`,
      `http: { host: 127.0.0.1, port: ${httpPort} }`,
      // A day in minutes: loss after 3 missed 2 s heartbeats, faults correlated within 30 s, flapping = 4 changes a minute.
      'health: { tickMs: 200, lastWillGraceS: 3, correlationWindowS: 30, expectedRestartGraceS: 20, flapping: { changes: 4, windowS: 60 } }',
      'tickets: { resolveAfterS: 10 }',
      'rollouts: { tickMs: 200 }',
      `patches: { releaseKeys: [${JSON.stringify(releaseKey)}] }`,
      '',
    ].join('\n'),
  );
  const logFile = join(dir, 'xcared.log');
  const log = createWriteStream(logFile);
  const proc = spawn(process.execPath, [join(root, 'bin/xcared.js'), '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.pipe(log);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${httpPort}`;

  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = (await res.json().catch(() => ({}))) as T & { error?: string };
    if (!res.ok) throw new Error(`${method} ${path}: ${data.error ?? res.status}`);
    return data;
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`xcared exited ${proc.exitCode}: ${stderr.trim()}`);
    const ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`xcared did not become ready within 60 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    adminToken,
    logFile,
    proc,
    api,
    async ctl(args) {
      try {
        const { stdout } = await run(process.execPath, [join(root, 'bin/xcarectl.js'), ...args], {
          cwd: dir,
          env: { ...process.env, XCARE_URL: url, XCARE_TOKEN: adminToken },
        });
        return stdout;
      } catch (err) {
        throw new Error(`xcarectl ${args.slice(0, 2).join(' ')}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
      }
    },
    async stop(timeoutMs = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      log.end();
      return code;
    },
  };
}
