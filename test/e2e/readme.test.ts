import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, freePort } from '../helpers/processes.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { tempDir } from '../helpers/temp-dir.js';
import { defaultDaemonUrl } from '../../src/cli/cli-context.js';

/**
 * Issue 10 fault 2: the README's walkthrough, run as written. Every ```sh block preceded by `<!-- walkthrough -->`
 * runs in one bash, in order, from the clone (like a reader in one terminal), against the built programs on free
 * ports. The only change made to the text is the one port line, which must be the only place ports appear.
 */
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const PORT_LINE = 'XCARE_MQTT_PORT=1883 XCARE_HTTP_PORT=8080';

/** The walkthrough blocks of README.md, in order. */
function walkthroughBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^<!-- walkthrough -->\n```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

interface Run {
  code: number | null;
  output: string;
}

/** Runs `script` in its own process group (so every background job can be ended), with a deadline. */
function runBash(script: string, opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((resolve) => {
    const proc = spawn('bash', ['-c', script], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-proc.pid!, signal);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      output += `\n[readme test: timed out after ${opts.timeoutMs} ms]\n`;
      killGroup('SIGKILL');
    }, opts.timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      killGroup('SIGKILL'); // anything the script left behind
      resolve({ code, output });
    });
  });
}

describe('README walkthrough blocks', () => {
  it('are found, in order, with the port set in exactly one place', () => {
    const blocks = walkthroughBlocks(README);
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const script = blocks.join('\n');
    expect(script.split(PORT_LINE).length - 1).toBe(1);
    // No other literal port: everything else derives from the two variables.
    expect(script.replace(PORT_LINE, '')).not.toMatch(/\b(1883|8080)\b/);
    // The quick start's device is the one the patch walkthrough offers to.
    expect(script).toContain('device add gw-001');
    expect(script).toContain('patch offer gw-001');
    expect(script).not.toMatch(/\bgw-1\b/);
  });

  it('xcarectl finds the daemon from XCARE_HTTP_HOST/XCARE_HTTP_PORT when XCARE_URL is not set', () => {
    expect(defaultDaemonUrl({})).toBe('http://127.0.0.1:8080');
    expect(defaultDaemonUrl({ XCARE_HTTP_PORT: '9090' })).toBe('http://127.0.0.1:9090');
    expect(defaultDaemonUrl({ XCARE_HTTP_HOST: '0.0.0.0', XCARE_HTTP_PORT: '9090' })).toBe('http://127.0.0.1:9090');
    expect(defaultDaemonUrl({ XCARE_HTTP_HOST: '::1', XCARE_HTTP_PORT: '9090' })).toBe('http://[::1]:9090');
  });

  describe.skipIf(toolsMissing(['curl', 'openssl'], 'curl openssl').length > 0)('run in one shell', () => {
    const dir = tempDir('xcare-readme-');
    let run: Run;

    beforeAll(async () => {
      // The quick start's `npm link` line, as written, into a private npm prefix instead of the global one: it puts
      // xcared, xcarectl and xcare-agent on PATH, pointing at this clone.
      const linkLine = /^npm link\b.*$/m.exec(README)?.[0];
      expect(linkLine).toBeDefined();
      const prefix = join(dir.path, 'npm-global');
      const linked = await runBash(linkLine!, { cwd: ROOT, env: { ...process.env, NPM_CONFIG_PREFIX: prefix, npm_config_prefix: prefix }, timeoutMs: 120_000 });
      expect(linked.code, linked.output).toBe(0);
      const bin = join(prefix, 'bin');
      for (const name of ['xcared', 'xcarectl', 'xcare-agent']) expect(existsSync(join(bin, name)), `${name} linked`).toBe(true);
      const tmp = join(dir.path, 'tmp'); // mktemp -d lands here, so cleanup takes the scratch dir too
      mkdirSync(tmp);
      const [mqtt, http] = [await freePort(), await freePort()];
      const script = [
        'set -eo pipefail',
        walkthroughBlocks(README).join('\n').replace(PORT_LINE, `XCARE_MQTT_PORT=${mqtt} XCARE_HTTP_PORT=${http}`),
        // The reader would go on; the test stops what the walkthrough started, gracefully.
        'kill $(jobs -p) 2>/dev/null; wait',
        'echo "walkthrough finished"',
      ].join('\n');
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMPDIR: tmp };
      for (const key of Object.keys(env)) if (key.startsWith('XCARE_')) delete env[key];
      run = await runBash(script, { cwd: ROOT, env, timeoutMs: 150_000 });
    }, 300_000);
    afterAll(() => dir.cleanup());

    it('exits 0', () => {
      expect(run.code, run.output).toBe(0);
      expect(run.output).toContain('walkthrough finished');
    });

    it('the quick-start gateway heartbeats, is eligible and shows in /metrics', () => {
      expect(run.output).toMatch(/device gw-001 provisioned \(gateway, xcare, until \d{4}-06-30\)/);
      expect(run.output).toContain('eligibility        {"eligible":true');
      expect(run.output).toMatch(/^fleet_devices\{type="gateway",tier="xcare",state="online"\} 1$/m);
    });

    it('the patch walkthrough signs, verifies with openssl, publishes and installs 1.1.0 on gw-001', () => {
      expect(run.output).toContain('Signature Verified Successfully');
      expect(run.output).toContain('published: sample-app-1.1.0');
      expect(run.output).toContain('offered sample-app-1.1.0 to gw-001');
      expect(run.output).toMatch(/sample-app-1\.1\.0 .* installed=1/);
      expect(run.output).toMatch(/^softwareVersion +1\.1\.0$/m);
      expect(run.output).not.toMatch(/"eligible":false/);
    });
  });
});

describe('a port clash', () => {
  let holder: Server;
  let port: number;
  beforeAll(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    port = (holder.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => holder.close(() => resolve())));

  /** Starts the real xcared with `env` over defaults; resolves its exit code and stderr. */
  const xcared = (env: Record<string, string>) => {
    const dir = tempDir('xcare-clash-');
    return new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, [join(ROOT, 'bin/xcared.js')], {
        cwd: dir.path,
        env: { ...process.env, XCARE_DATA_DIR: join(dir.path, 'data'), XCARE_LOG_LEVEL: 'fatal', XCARE_MQTT_PORT: '0', XCARE_HTTP_PORT: '0', ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.once('exit', (code) => {
        dir.cleanup();
        resolve({ code, stderr });
      });
    });
  };

  it('on the HTTP port names http.port and XCARE_HTTP_PORT', async () => {
    const r = await xcared({ XCARE_HTTP_PORT: String(port) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`http.port: cannot listen on 127.0.0.1:${port}: address already in use`);
    expect(r.stderr).toContain('XCARE_HTTP_PORT');
  });

  it('on the MQTT port names mqtt.port and XCARE_MQTT_PORT', async () => {
    const r = await xcared({ XCARE_MQTT_PORT: String(port) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`mqtt.port: cannot listen on 0.0.0.0:${port}: address already in use`);
    expect(r.stderr).toContain('XCARE_MQTT_PORT');
  });
});
