import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ctl, spawnAgent, startAgent, ROOT, type Daemon, type RunningProcess } from './processes.js';

const run = promisify(execFile);
export const EXAMPLES = join(ROOT, 'patches', 'examples');

async function ok(daemon: Pick<Daemon, 'url' | 'adminToken'>, args: string[]): Promise<string> {
  const r = await ctl(daemon, args);
  if (r.code !== 0) throw new Error(`xcarectl ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** `xcarectl keygen` into `dir`; returns the PEM paths. Needs no daemon. */
export async function keygen(dir: string): Promise<{ publicKey: string; privateKey: string }> {
  await ok({ url: 'http://127.0.0.1:1', adminToken: 'unused-admin-token-000' }, ['keygen', '--out', dir]);
  return { publicKey: join(dir, 'public.pem'), privateKey: join(dir, 'private.pem') };
}

/** Build the example patch at `version`, sign it with xcarectl and publish it to the daemon. */
export async function buildSignPublish(daemon: Daemon, privateKey: string, out: string, version: string, applies: string): Promise<string> {
  mkdirSync(out, { recursive: true });
  await run('sh', [join(EXAMPLES, 'build-patch.sh'), out, version]);
  const id = `sample-app-${version}`;
  const digest = (await ok(daemon, ['patch', 'digest', join(out, `tree-${version}`)])).trim();
  await ok(daemon, [
    'patch', 'sign', '--key', privateKey, '--artifact', join(out, `${id}.tar.gz`), '--id', id, '--version', version,
    '--types', 'gateway,sensor', '--applies', applies, '--expires', '30d', '--integrity', digest, '--out', out,
  ]);
  await ok(daemon, ['patch', 'publish', '--manifest', join(out, `${id}.manifest.json`), '--sig', join(out, `${id}.sig`), '--artifact', join(out, `${id}.tar.gz`)]);
  return id;
}

/** Register the digest of the example app at 1.0.0, so devices running it are eligible. */
export async function registerSampleIntegrity(daemon: Daemon): Promise<void> {
  const digest = (await ok(daemon, ['patch', 'digest', join(EXAMPLES, 'sample-app')])).trim();
  await ok(daemon, ['integrity', 'register', '--version', '1.0.0', '--digest', digest]);
}

/** Provision a gateway and start a real agent running a copy of the example app at 1.0.0. */
export async function provisionSampleAgent(
  daemon: Daemon,
  id: string,
  baseDir: string,
  publicKey: string,
  env: NodeJS.ProcessEnv = {},
  opts: { tags?: string[]; version?: string; patchYaml?: string[] } = {},
): Promise<RunningProcess & { configFile: string; dir: string }> {
  const tagArgs = (opts.tags ?? []).flatMap((t) => ['--tag', t]);
  const { token } = JSON.parse(
    await ok(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', ...tagArgs, '--json']),
  ) as { token: string };
  const agentDir = join(baseDir, id);
  const software = join(agentDir, 'sample-app');
  mkdirSync(agentDir, { recursive: true });
  cpSync(join(EXAMPLES, 'sample-app'), software, { recursive: true });
  if (opts.version) writeFileSync(join(software, 'VERSION'), `${opts.version}\n`);
  const agent = startAgent({
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
      `  keys: [${publicKey}]`,
      `  install: sh ${join(EXAMPLES, 'install.sh')}`,
      `  check: sh ${join(EXAMPLES, 'check.sh')}`,
      `  rollback: sh ${join(EXAMPLES, 'rollback.sh')}`,
      '  commandTimeoutS: 30',
      ...(opts.patchYaml ?? []).map((l) => `  ${l}`),
    ].join('\n'),
  });
  return { ...agent, dir: agentDir };
}

/** Start the agent again from the config file an earlier start wrote (a restart: same state dir and tree). */
export function restartAgent(configFile: string, env: NodeJS.ProcessEnv = {}): RunningProcess {
  return spawnAgent(configFile, env);
}
