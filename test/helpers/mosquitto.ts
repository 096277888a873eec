import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.js';

/** Debian's Mosquitto and its dynamic-security plugin (package `mosquitto`). */
export const MOSQUITTO = '/usr/sbin/mosquitto';
export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

export interface RunningMosquitto {
  port: number;
  /** `mqtt://<xcared user>:<password>@127.0.0.1:<port>`: the URL xcared joins with. */
  daemonUrl: string;
  user: string;
  password: string;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
  /** Start again on the same port and files (after stop/kill9). */
  restart(): Promise<void>;
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`mosquitto did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * A real Mosquitto 2 on a free loopback port. With `dynsec` (default) it loads the dynamic-security
 * plugin with a config made by `mosquitto_ctrl dynsec init`, whose admin client is xcared's user;
 * its role also gets the device command topics (xcared publishes patch offers). Without `dynsec`,
 * anonymous clients are allowed (the broker of the EMQX-hook tests, whose auth is xcared's HTTP hook).
 */
export async function startMosquitto(dir: string, options: { dynsec?: boolean; extraConf?: string } = {}): Promise<RunningMosquitto> {
  const dynsec = options.dynsec ?? true;
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const user = 'xcared';
  const password = 'xcared-broker-password';
  const dynsecFile = join(dir, 'dynsec.json');
  if (dynsec) {
    execFileSync('mosquitto_ctrl', ['dynsec', 'init', dynsecFile, user, password], { stdio: 'ignore' });
    const json = JSON.parse(readFileSync(dynsecFile, 'utf8')) as { roles: { rolename: string; acls: unknown[] }[] };
    json.roles[0]!.acls.push({ acltype: 'publishClientSend', topic: 'fleet/v1/+/cmd/#', allow: true });
    writeFileSync(dynsecFile, JSON.stringify(json, null, 1));
  }
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      // Mosquitto started as root drops to user `mosquitto`, which could not write the dynsec file here.
      `user ${userInfo().username}`,
      'per_listener_settings false',
      dynsec ? 'allow_anonymous false' : 'allow_anonymous true',
      ...(dynsec ? [`plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${dynsecFile}`] : []),
      // As README "At scale" configures it: xcared reads refused CONNECTs from $SYS/broker/log/N.
      'log_dest stderr',
      'log_dest topic',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      options.extraConf ?? '',
    ].join('\n'),
  );
  let proc!: ChildProcess;
  let out = '';
  const launch = async () => {
    proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitForPort(port, 15_000);
  };
  const exited = () => new Promise<void>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : proc.once('exit', () => resolve())));
  await launch();
  return {
    port,
    daemonUrl: dynsec ? `mqtt://${user}:${password}@127.0.0.1:${port}` : `mqtt://127.0.0.1:${port}`,
    user,
    password,
    get proc() {
      return proc;
    },
    output: () => out,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited();
    },
    async kill9() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited();
    },
    restart: launch,
  };
}
