import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeOffer, fitHeartbeat, MAX_HEARTBEAT_BYTES } from '../../agent/edge-agent.js';
import { createAgentLogger } from '../../agent/log.js';
import { AGENT_VERSION } from '../../agent/version.js';
import type { Heartbeat } from '../../src/protocol/types.js';

describe('agent logger', () => {
  const capture = (level: 'debug' | 'info' | 'warn' | 'error') => {
    const lines: string[] = [];
    const log = createAgentLogger({ level, base: { deviceId: 'gw-1' }, write: (l) => lines.push(l), now: () => Date.parse('2026-11-26T17:00:00.000Z') });
    return { log, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
  };

  it('writes one JSON object per line with level, time, msg, deviceId and fields', () => {
    const { log, lines, records } = capture('info');
    log.child({ module: 'mqtt' }).info('connected', { brokerUrl: 'mqtt://x' });
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(records()).toEqual([
      { level: 'info', time: '2026-11-26T17:00:00.000Z', msg: 'connected', deviceId: 'gw-1', module: 'mqtt', brokerUrl: 'mqtt://x' },
    ]);
  });

  it('drops lines below the level', () => {
    const { log, records } = capture('warn');
    log.debug('a');
    log.info('b');
    log.warn('c');
    log.error('d');
    expect(records().map((r) => r.msg)).toEqual(['c', 'd']);
  });

  it('serializes errors under err and redacts credentials', () => {
    const { log, records } = capture('debug');
    const err = Object.assign(new Error('nope'), { code: 'ECONNREFUSED' });
    log.error('failed', { err, token: 's3cret', nested: { password: 'p' } });
    const [r] = records();
    expect(r!.err).toMatchObject({ type: 'Error', message: 'nope', code: 'ECONNREFUSED' });
    expect(r!.token).toBe('[redacted]');
    expect(r!.nested).toEqual({ password: '[redacted]' });
  });

  it('survives circular fields', () => {
    const { log, records } = capture('info');
    const a: Record<string, unknown> = {};
    a.self = a;
    log.info('cycle', { a });
    expect(records()[0]!.a).toEqual({ self: '[circular]' });
  });
});

describe('AGENT_VERSION', () => {
  it('equals package.json version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(AGENT_VERSION).toBe(pkg.version);
  });
});

describe('describeOffer (for rejecting offers without a patch port)', () => {
  const manifest = Buffer.from(JSON.stringify({ id: 'gw-2.3.2', version: '2.3.2' })).toString('base64');
  it('takes rolloutId and the manifest id', () => {
    expect(describeOffer(Buffer.from(JSON.stringify({ rolloutId: 'r-1', manifest, signature: 'x', url: '/p' })))).toEqual({
      rolloutId: 'r-1',
      patchId: 'gw-2.3.2',
    });
  });
  it('falls back to "unknown" for malformed JSON', () => {
    expect(describeOffer(Buffer.from('{not json'))).toEqual({ patchId: 'unknown' });
  });
  it('falls back to "unknown" for a manifest that is not base64 JSON', () => {
    expect(describeOffer(Buffer.from(JSON.stringify({ rolloutId: 'r-2', manifest: '!!!' })))).toEqual({ rolloutId: 'r-2', patchId: 'unknown' });
  });
});

describe('fitHeartbeat', () => {
  const base: Heartbeat = { seq: 1, ts: '2026-11-26T17:00:00.000Z', intervalS: 30, agentVersion: '0.1.0', softwareVersion: '1.0.0' };
  it('returns the plain JSON when it fits', () => {
    expect(fitHeartbeat(base)).toBe(JSON.stringify(base));
  });
  it('drops details of healthy probes first when too large', () => {
    const sensors = Array.from({ length: 400 }, (_, i) => ({ id: `sen-${i}`, ok: i % 2 === 0, detail: 'x'.repeat(200) }));
    const json = fitHeartbeat({ ...base, sensors })!;
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(MAX_HEARTBEAT_BYTES);
    const parsed = JSON.parse(json) as Heartbeat;
    expect(parsed.sensors![0]!.detail).toBe('');
    expect(parsed.sensors![1]!.detail).toBe('x'.repeat(200));
  });
  it('gives up (undefined) when even empty details do not fit', () => {
    const sensors = Array.from({ length: 3000 }, (_, i) => ({ id: `sensor-with-a-long-id-${i}`, ok: false, detail: 'x' }));
    expect(fitHeartbeat({ ...base, sensors })).toBeUndefined();
  });
});
