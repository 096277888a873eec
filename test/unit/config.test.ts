import { describe, it, expect } from 'vitest';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { validateConfig, loadConfig, applyEnv } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([k, v]) => keyPaths(v, prefix ? `${prefix}.${k}` : k));
}

function errorOf(raw: unknown): string {
  try {
    validateConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('config.example.yaml documents every key with exactly the built-in default', () => {
    const example = parse(readFileSync('config.example.yaml', 'utf8'));
    const defaults = validateConfig({});
    expect(validateConfig(example)).toEqual(defaults);
    expect(keyPaths(example).sort()).toEqual(keyPaths(defaults).sort());
  });

  it('built-in defaults match PROTOCOL.md (broker 1883, HTTP 127.0.0.1:8080, ./data)', () => {
    const c = validateConfig({});
    expect([c.mqtt.port, c.http.host, c.http.port, c.dataDir]).toEqual([1883, '127.0.0.1', 8080, './data']);
  });

  it.each([
    [{ mqtt: { port: 'abc' } }, 'mqtt.port'],
    [{ mqtt: { port: 70000 } }, 'mqtt.port'],
    [{ http: { prot: 1 } }, 'http.prot: unknown key'],
    [{ tickets: { severityWeight: { urgent: 'x' } } }, 'tickets.severityWeight.urgent'],
    [{ health: { missedHeartbeats: 0 } }, 'health.missedHeartbeats'],
    [{ log: { level: 'loud' } }, 'log.level'],
    [{ adminToken: 'short' }, 'adminToken: must be at least 16 characters'],
    [{ webhook: { url: 'not a url' } }, 'webhook.url'],
    [{ rollouts: { abortThreshold: 2 } }, 'rollouts.abortThreshold'],
    [{ webhook: { url: 'https://helpdesk.example/hook' } }, 'webhook.secret: required when webhook.url is set'],
    [{ mqtt: { tls: { cert: '/etc/xcare/cert.pem' } } }, 'mqtt.tls.key'],
  ])('names the bad key: %j', (raw, expected) => {
    expect(errorOf(raw)).toContain(expected);
  });

  it('reports every bad key at once', () => {
    const message = errorOf({ mqtt: { port: -1 }, http: { port: 'x' } });
    expect(message).toContain('mqtt.port');
    expect(message).toContain('http.port');
  });

  it('environment overrides apply over the file and are validated like it', () => {
    const c = validateConfig(applyEnv({ http: { port: 1 } }, { XCARE_HTTP_PORT: '9090', XCARE_DATA_DIR: '/tmp/x', XCARE_LOG_LEVEL: 'debug' }));
    expect([c.http.port, c.dataDir, c.log.level]).toEqual([9090, '/tmp/x', 'debug']);
    expect(() => validateConfig(applyEnv({}, { XCARE_MQTT_PORT: 'eighty' }))).toThrow(/mqtt\.port/);
  });

  it('a file that is not YAML, or not a mapping, is a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xcare-config-'));
    writeFileSync(join(dir, 'bad.yaml'), 'mqtt: [\n');
    expect(() => loadConfig(join(dir, 'bad.yaml'), {})).toThrow(/not valid YAML/);
    writeFileSync(join(dir, 'list.yaml'), '- 1\n- 2\n');
    expect(() => loadConfig(join(dir, 'list.yaml'), {})).toThrow(/expected a mapping/);
    expect(() => loadConfig(join(dir, 'missing.yaml'), {})).toThrow(/cannot read/);
  });

  it('the result is frozen', () => {
    const c = validateConfig({});
    expect(Object.isFrozen(c.mqtt)).toBe(true);
  });
});
