import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { ROOT, ctl, eventually, freePort, startAgent, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { EXAMPLES, buildSignPublish, keygen, registerSampleIntegrity } from '../helpers/sample-patch.js';
import { selfSignedCert, type SelfSignedCert } from '../helpers/tls-cert.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

function readyOverHttps(url: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(`${url}/readyz`, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/**
 * Issue 10 fault 5: remote agents could not download patches safely (no HTTPS; the device token, also its
 * MQTT password, would cross the network in clear). With `http.tls` the daemon serves HTTPS, and the agent,
 * given `daemonUrl: https://...` and its `ca`, verifies the daemon's certificate and downloads the artifact.
 * An agent without the CA refuses the self-signed daemon and installs nothing.
 */
describe.skipIf(toolsMissing(['openssl'], 'openssl').length > 0)('patch download over HTTPS verified with the agent ca (issue 10 fault 5)', () => {
  const dir = tempDir('xcare-https-patch-');
  let cert: SelfSignedCert;
  let daemon: Daemon;
  const agents: RunningProcess[] = [];
  let keys: { publicKey: string; privateKey: string };
  const savedCa = process.env.NODE_EXTRA_CA_CERTS;

  beforeAll(async () => {
    cert = await selfSignedCert(dir.path);
    keys = await keygen(join(dir.path, 'keys'));
    const dataDir = join(dir.path, 'daemon');
    mkdirSync(dataDir, { recursive: true });
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    const adminToken = 'https-admin-token-0123456789';
    const configFile = join(dataDir, 'config.yaml');
    writeFileSync(
      configFile,
      `dataDir: ${dataDir}\nadminToken: ${adminToken}\nmqtt: { host: 127.0.0.1, port: ${mqttPort} }\n` +
        `http: { host: 127.0.0.1, port: ${httpPort}, tls: { cert: ${cert.certPath}, key: ${cert.keyPath} } }\n` +
        `patches: { releaseKeys: [${keys.publicKey}] }\n`,
    );
    const proc = spawn(process.execPath, [join(ROOT, 'bin/xcared.js'), '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const url = `https://localhost:${httpPort}`;
    daemon = {
      proc,
      output: () => out,
      async stop() {
        if (proc.exitCode !== null) return proc.exitCode;
        proc.kill('SIGTERM');
        return exited;
      },
      async kill9() {
        proc.kill('SIGKILL');
        await exited;
      },
      url,
      mqttPort,
      httpPort,
      adminToken,
      dataDir,
      configFile,
    };
    await eventually(() => readyOverHttps(url, cert.cert), 30_000, `xcared ready over https: ${out}`);
    // xcarectl (Node's fetch) trusts the test CA through the standard variable, as an operator's would.
    process.env.NODE_EXTRA_CA_CERTS = cert.certPath;
  }, 60_000);
  afterAll(async () => {
    if (savedCa === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
    else process.env.NODE_EXTRA_CA_CERTS = savedCa;
    for (const a of agents) await a.stop();
    await daemon?.stop();
    dir.cleanup();
  });

  const show = async (id: string) => JSON.parse((await ctl(daemon, ['device', 'show', id, '--json'])).stdout);

  async function sampleAgent(id: string, withCa: boolean): Promise<RunningProcess> {
    const added = await ctl(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
    expect(added.code, added.stderr).toBe(0);
    const { token } = JSON.parse(added.stdout) as { token: string };
    const agentDir = join(dir.path, id);
    const software = join(agentDir, 'sample-app');
    mkdirSync(agentDir, { recursive: true });
    cpSync(join(EXAMPLES, 'sample-app'), software, { recursive: true });
    const agent = startAgent({
      deviceId: id,
      token,
      mqttPort: daemon.mqttPort,
      httpUrl: daemon.url,
      dir: agentDir,
      softwareDir: software,
      versionFile: join(software, 'VERSION'),
      // The agent must not inherit the test's NODE_EXTRA_CA_CERTS: its own `ca` is what is tested.
      env: { NODE_EXTRA_CA_CERTS: '' },
      extraYaml: [
        ...(withCa ? [`ca: ${cert.certPath}`] : []),
        'patches:',
        `  keys: [${keys.publicKey}]`,
        `  install: sh ${join(EXAMPLES, 'install.sh')}`,
        `  check: sh ${join(EXAMPLES, 'check.sh')}`,
        `  rollback: sh ${join(EXAMPLES, 'rollback.sh')}`,
        '  commandTimeoutS: 30',
        '  downloadDeadlineS: 10',
      ].join('\n'),
    });
    agents.push(agent);
    await eventually(async () => (await show(id)).softwareVersion === '1.0.0', 20_000, `${id} online`);
    return agent;
  }

  it('an agent with the ca downloads and installs; one without it refuses the certificate and installs nothing', async () => {
    const patchId = await buildSignPublish(daemon, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
    await registerSampleIntegrity(daemon);
    await sampleAgent('gw-https-ca', true);
    await sampleAgent('gw-https-noca', false);
    for (const id of ['gw-https-ca', 'gw-https-noca']) {
      const offered = await ctl(daemon, ['patch', 'offer', id, '--patch', patchId]);
      expect(offered.code, offered.stderr).toBe(0);
    }
    await eventually(async () => (await show('gw-https-ca')).softwareVersion === '1.1.0', 60_000, 'gw-https-ca heartbeats 1.1.0').catch((err: Error) => {
      throw new Error(`${err.message}: ${agents[0]!.output().split('\n').filter((l) => l.includes('patch')).slice(-8).join('\n')}`);
    });
    const refused = await eventually(
      async () => ((d) => (JSON.stringify(d.patches).includes('failed') ? d : undefined))(await show('gw-https-noca')),
      60_000,
      'gw-https-noca gives up the download',
    );
    expect(refused.softwareVersion).toBe('1.0.0');
  }, 180_000);
});
