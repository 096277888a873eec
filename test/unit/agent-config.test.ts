import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentConfigError, loadAgentConfig, parseAgentConfig } from '../../agent/config.js';
import { parsePatchSettings, PatchSettingsError } from '../../agent/patch-settings.js';

const dir = mkdtempSync(join(tmpdir(), 'agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = {
  deviceId: 'gw-1',
  deviceType: 'gateway',
  token: 'secret-token',
  brokerUrl: 'mqtt://127.0.0.1:1883',
  softwareVersionFile: 'VERSION',
  softwareDir: 'app',
};

function issuesOf(data: unknown): string[] {
  try {
    parseAgentConfig(data, dir);
  } catch (err) {
    expect(err).toBeInstanceOf(AgentConfigError);
    return [...(err as AgentConfigError).issues];
  }
  throw new Error('expected the config to be rejected');
}

describe('agent config: defaults and paths', () => {
  it('fills defaults and resolves relative paths against the config directory', () => {
    const config = parseAgentConfig(minimal, dir);
    expect(config).toMatchObject({
      deviceId: 'gw-1',
      deviceType: 'gateway',
      token: 'secret-token',
      intervalS: 30,
      reconnect: { minMs: 1000, maxMs: 60000 },
      logLevel: 'info',
      stateDir: '/var/lib/xcare-agent',
      softwareVersionFile: join(dir, 'VERSION'),
      softwareDir: join(dir, 'app'),
      daemonUrl: 'http://127.0.0.1:8080',
      subsystems: [],
      sensors: [],
      patches: undefined,
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.reconnect)).toBe(true);
  });

  it('accepts a fractional intervalS (tests use 0.2 s)', () => {
    expect(parseAgentConfig({ ...minimal, intervalS: 0.2 }, dir).intervalS).toBe(0.2);
  });

  it('fills probe timeouts and keeps probes in order', () => {
    const config = parseAgentConfig(
      { ...minimal, subsystems: [{ name: 'uplink', command: 'true' }, { name: 'disk', command: 'false', timeoutMs: 50 }], sensors: [{ id: 'sen-1', command: 'echo x' }] },
      dir,
    );
    expect(config.subsystems).toEqual([{ name: 'uplink', command: 'true', timeoutMs: 5000 }, { name: 'disk', command: 'false', timeoutMs: 50 }]);
    expect(config.sensors).toEqual([{ id: 'sen-1', command: 'echo x', timeoutMs: 5000 }]);
  });

  it('reads the token from tokenFile, trimmed', () => {
    writeFileSync(join(dir, 'token'), 'tok-from-file\n');
    const { token: _omit, ...rest } = minimal;
    const config = parseAgentConfig({ ...rest, tokenFile: 'token' }, dir);
    expect(config.token).toBe('tok-from-file');
    expect(config.tokenFile).toBe(join(dir, 'token'));
  });

  it('passes `patches:` through raw', () => {
    const patches = { keys: ['a.pem'], install: { command: 'x', timeoutMs: 5 }, anything: true };
    expect(parseAgentConfig({ ...minimal, patches }, dir).patches).toEqual(patches);
  });

  it('derives daemonUrl from an IPv6 broker host', () => {
    expect(parseAgentConfig({ ...minimal, brokerUrl: 'mqtt://[::1]:1883' }, dir).daemonUrl).toBe('http://[::1]:8080');
  });

  it('loads agent/agent.example.yaml except for its token file and CA', () => {
    expect(() => loadAgentConfig(new URL('../../agent/agent.example.yaml', import.meta.url).pathname)).toThrow(
      /tokenFile: cannot read \/etc\/xcare\/agent.token: ENOENT; ca: cannot read \/etc\/xcare\/ca.pem: ENOENT$/,
    );
  });

  it('loadAgentConfig reports a YAML error with its line', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'deviceId: gw-1\n  oops: 1\n');
    expect(() => loadAgentConfig(file)).toThrow(/bad\.yaml: YAML line 2: unexpected indentation/);
  });

  it('loadAgentConfig reports a missing file', () => {
    expect(() => loadAgentConfig(join(dir, 'nope.yaml'))).toThrow(/cannot read config: ENOENT/);
  });

  it('reports every problem at once', () => {
    expect(issuesOf({ deviceType: 'router', intervalS: -1 })).toEqual([
      'deviceId: is required',
      'deviceType: must be "gateway" or "sensor"',
      'token: is required (or give tokenFile)',
      'brokerUrl: is required',
      'intervalS: must be a positive number',
      'softwareVersionFile: is required',
      'softwareDir: is required',
    ]);
  });
});

describe('agent config: each bad key is named with its path', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['root not a mapping', { __root: ['a'] }, '(root): must be a mapping of keys'],
    ['unknown top-level key', { ...minimal, intervalSeconds: 5 }, 'intervalSeconds: unknown key'],
    ['bad deviceId', { ...minimal, deviceId: 'gw 1' }, 'deviceId: must match'],
    ['deviceId not a string', { ...minimal, deviceId: 12 }, 'deviceId: must be a non-empty string'],
    ['missing deviceType', { ...minimal, deviceType: undefined }, 'deviceType: is required'],
    ['token and tokenFile both', { ...minimal, tokenFile: 'x' }, 'token: give either token or tokenFile, not both'],
    ['empty token', { ...minimal, token: '' }, 'token: must be a non-empty string'],
    ['unreadable tokenFile', { ...minimal, token: undefined, tokenFile: 'missing.token' }, 'tokenFile: cannot read'],
    ['brokerUrl with http scheme', { ...minimal, brokerUrl: 'http://x:1883' }, 'brokerUrl: must be an mqtt:// or mqtts:// URL'],
    ['brokerUrl not a URL', { ...minimal, brokerUrl: 'not a url' }, 'brokerUrl: must be an mqtt:// or mqtts:// URL'],
    ['unreadable ca', { ...minimal, ca: 'missing-ca.pem' }, 'ca: cannot read'],
    ['daemonUrl with ftp scheme', { ...minimal, daemonUrl: 'ftp://x' }, 'daemonUrl: must be an http:// or https:// URL'],
    ['intervalS zero', { ...minimal, intervalS: 0 }, 'intervalS: must be a positive number'],
    ['intervalS a string', { ...minimal, intervalS: '30' }, 'intervalS: must be a positive number'],
    ['intervalS above a day', { ...minimal, intervalS: 86401 }, 'intervalS: must be at most 86400'],
    ['stateDir empty', { ...minimal, stateDir: '' }, 'stateDir: must be a non-empty string'],
    ['softwareVersionFile a number', { ...minimal, softwareVersionFile: 3 }, 'softwareVersionFile: must be a non-empty string'],
    ['softwareDir missing', { ...minimal, softwareDir: undefined }, 'softwareDir: is required'],
    ['subsystems not a list', { ...minimal, subsystems: { a: 1 } }, 'subsystems: must be a list'],
    ['subsystem not a mapping', { ...minimal, subsystems: ['uplink'] }, 'subsystems[0]: must be a mapping'],
    ['subsystem without name', { ...minimal, subsystems: [{ command: 'true' }] }, 'subsystems[0].name: is required'],
    ['subsystem name too long', { ...minimal, subsystems: [{ name: 'x'.repeat(65), command: 'true' }] }, 'subsystems[0].name: must be at most 64 characters'],
    ['duplicate subsystem', { ...minimal, subsystems: [{ name: 'a', command: 'true' }, { name: 'a', command: 'true' }] }, 'subsystems[1].name: duplicate "a"'],
    ['subsystem without command', { ...minimal, subsystems: [{ name: 'a' }] }, 'subsystems[0].command: is required'],
    ['subsystem negative timeout', { ...minimal, subsystems: [{ name: 'a', command: 'true', timeoutMs: -5 }] }, 'subsystems[0].timeoutMs: must be a positive number'],
    ['subsystem unknown key', { ...minimal, subsystems: [{ name: 'a', command: 'true', timeout: 5 }] }, 'subsystems[0].timeout: unknown key'],
    ['sensor id not a device id', { ...minimal, sensors: [{ id: 'bad id', command: 'true' }] }, 'sensors[0].id: must be a device id'],
    ['reconnect not a mapping', { ...minimal, reconnect: 5 }, 'reconnect: must be a mapping with minMs and maxMs'],
    ['reconnect.minMs negative', { ...minimal, reconnect: { minMs: -1 } }, 'reconnect.minMs: must be a positive number'],
    ['reconnect.maxMs zero', { ...minimal, reconnect: { maxMs: 0 } }, 'reconnect.maxMs: must be a positive number'],
    ['reconnect.maxMs below minMs', { ...minimal, reconnect: { minMs: 5000, maxMs: 1000 } }, 'reconnect.maxMs: must be >= reconnect.minMs'],
    ['reconnect unknown key', { ...minimal, reconnect: { minMs: 1, maxMs: 2, factor: 2 } }, 'reconnect.factor: unknown key'],
    ['bad logLevel', { ...minimal, logLevel: 'verbose' }, 'logLevel: must be one of debug, info, warn, error'],
    ['patches a list', { ...minimal, patches: ['x'] }, 'patches: must be a mapping'],
  ];
  it.each(cases)('%s', (_name, data, message) => {
    const input = '__root' in data ? data.__root : data;
    const issues = issuesOf(input);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toContain(message);
  });
});

// Found from outside: Node runs a timer longer than 2^31-1 ms after 1 ms. `reconnect.maxMs: 1e10` let the backoff
// draw delays past that (a reconnect storm at 1 ms), a probe `timeoutMs: 3e9` killed every probe at once (false
// `ok:false` subsystems, gateway_partial tickets), `patches.commandTimeoutS: 3e6` killed every install at once.
// Every timer key is bounded (2147483647 ms, 2147483 s); the real agent exits 2 naming it.
describe('agent config: timer keys are bounded where Node keeps them', () => {
  it.each([
    ['reconnect.maxMs', { reconnect: { minMs: 1000, maxMs: 1e10 } }],
    ['reconnect.minMs', { reconnect: { minMs: 3e9, maxMs: 4e9 } }],
    ['subsystems[0].timeoutMs', { subsystems: [{ name: 'uplink', command: 'true', timeoutMs: 3e9 }] }],
  ])('%s out of bounds is refused, naming it', (key, extra) => {
    expect(issuesOf({ ...minimal, ...extra }).some((i) => i.startsWith(`${key}:`))).toBe(true);
  });

  it.each([
    ['patches.commandTimeoutS', { commandTimeoutS: 3e6 }],
    ['patches.downloadDeadlineS', { downloadDeadlineS: 1e300 }],
    ['patches.clockSkewS', { clockSkewS: 1e300 }],
  ])('%s out of bounds is refused, naming it', (key, raw) => {
    expect(() => parsePatchSettings({ keys: ['k.pem'], ...raw }, dir, dir)).toThrow(PatchSettingsError);
    expect(() => parsePatchSettings({ keys: ['k.pem'], ...raw }, dir, dir)).toThrow(`${key}: `);
    expect(() => parsePatchSettings({ keys: ['k.pem'], ...Object.fromEntries(Object.keys(raw).map((k) => [k, 3600])) }, dir, dir)).not.toThrow();
  });

  it('the real xcare-agent exits 2 with one line naming the key', () => {
    const file = join(dir, 'timer-agent.yaml');
    writeFileSync(file, 'deviceId: gw-1\ndeviceType: gateway\ntoken: t\nbrokerUrl: mqtt://127.0.0.1:1\nsoftwareVersionFile: V\nsoftwareDir: app\nreconnect:\n  minMs: 1000\n  maxMs: 10000000000\n');
    const r = spawnSync(process.execPath, [join(import.meta.dirname, '../../bin/xcare-agent.js'), '--config', file], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('reconnect.maxMs');
  });
});
