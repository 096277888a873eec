import { describe, it, expect } from 'vitest';
import { parseDuration, parseRolloutSpec, parseWaveSize } from '../../src/rollouts/rollout-spec.js';
import { ValidationError } from '../../src/errors.js';

const defaults = { abortThreshold: 0.1, maxConcurrent: 500, maxPerGateway: 1 };
const good = () => ({
  patchId: 'gw-2.3.2',
  target: { types: ['gateway'], customers: ['acme'], tags: ['eu'], software: '>=2.0.0 <2.3.2' },
  waves: [{ size: 5, soak: '30m' }, { size: '10%' }, '100%'],
  soak: '15m',
  window: { cron: '0 2 * * *', duration: '4h', timezone: 'Europe/Berlin' },
  jitter: '10m',
});

describe('parseRolloutSpec', () => {
  it('normalizes a full spec', () => {
    const spec = parseRolloutSpec(good(), defaults);
    expect(spec.waves).toEqual([{ size: { count: 5 }, soakMs: 1_800_000 }, { size: { percent: 10 }, soakMs: 900_000 }, { size: { percent: 100 }, soakMs: 900_000 }]);
    expect(spec.window).toEqual({ cron: '0 2 * * *', durationMs: 14_400_000, timezone: 'Europe/Berlin' });
    expect(spec).toMatchObject({ abortThreshold: 0.1, maxConcurrent: 500, maxPerGateway: 1, jitterMs: 600_000, progressTimeoutMs: 3_600_000 });
  });

  const bad: [string, (b: ReturnType<typeof good>) => unknown, RegExp][] = [
    ['not an object', () => 'x', /^body:/],
    ['missing patchId', (b) => ({ ...b, patchId: undefined }), /^patchId:/],
    ['unknown top-level field', (b) => ({ ...b, colour: 'red' }), /^colour: unknown field/],
    ['bad device type', (b) => ({ ...b, target: { ...b.target, types: ['toaster'] } }), /^target\.types\.0:/],
    ['bad semver range', (b) => ({ ...b, target: { ...b.target, software: 'latest please' } }), /^target\.software:/],
    ['customers not a list', (b) => ({ ...b, target: { ...b.target, customers: 5 } }), /^target\.customers:/],
    ['no waves', (b) => ({ ...b, waves: [] }), /^waves:/],
    ['zero count wave', (b) => ({ ...b, waves: [0] }), /^waves\.0:/],
    ['percentage over 100', (b) => ({ ...b, waves: [{ size: '150%' }] }), /^waves\.0\.size:/],
    ['percentage 0', (b) => ({ ...b, waves: [{ size: '0%' }] }), /^waves\.0\.size:/],
    ['bad wave soak', (b) => ({ ...b, waves: [{ size: 5, soak: 'soon' }] }), /^waves\.0\.soak:/],
    ['missing window', (b) => ({ ...b, window: undefined }), /^window:/],
    ['bad cron', (b) => ({ ...b, window: { ...b.window, cron: '61 2 * * *' } }), /^window\.cron:/],
    ['cron with 4 fields', (b) => ({ ...b, window: { ...b.window, cron: '0 2 * *' } }), /^window\.cron:/],
    ['bad timezone', (b) => ({ ...b, window: { ...b.window, timezone: 'Mars/Olympus' } }), /^window\.timezone:/],
    ['missing duration', (b) => ({ ...b, window: { ...b.window, duration: undefined } }), /^window\.duration:/],
    ['duration too short', (b) => ({ ...b, window: { ...b.window, duration: '10s' } }), /^window\.duration:/],
    ['abort threshold over 1', (b) => ({ ...b, abortThreshold: 1.5 }), /^abortThreshold:/],
    ['maxPerGateway 0', (b) => ({ ...b, maxPerGateway: 0 }), /^maxPerGateway:/],
    ['bad jitter', (b) => ({ ...b, jitter: '-5m' }), /^jitter:/],
  ];
  for (const [name, mutate, message] of bad) {
    it(`refuses ${name}, naming the field`, () => {
      let err: unknown;
      try {
        parseRolloutSpec(mutate(good()), defaults);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
    });
  }
});

describe('durations and wave sizes', () => {
  const rows: [unknown, number][] = [['30m', 1_800_000], ['4h', 14_400_000], ['1h30m', 5_400_000], ['90s', 90_000], ['500ms', 500], ['2d', 172_800_000], [45, 45_000], ['0', 0]];
  for (const [input, ms] of rows) it(`${JSON.stringify(input)} = ${ms} ms`, () => expect(parseDuration(input, 'x')).toBe(ms));
  it('refuses "4 hours"', () => expect(() => parseDuration('4 hours', 'x')).toThrow(/^x:/));
  it('wave sizes', () => {
    expect(parseWaveSize('5', 'w')).toEqual({ count: 5 });
    expect(parseWaveSize('12.5%', 'w')).toEqual({ percent: 12.5 });
    expect(() => parseWaveSize('1.5', 'w')).toThrow(/^w:/);
  });
});
