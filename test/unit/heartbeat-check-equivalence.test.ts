/**
 * Issue 12: the ingest hot path checks heartbeats with the hand-written `checkHeartbeat`/`parseHeartbeat`
 * instead of zod's `heartbeatSchema`, which stays the specification. These properties prove the twin
 * equal to the specification: on generated heartbeats and on mutations of them (a field removed, the
 * wrong type, numbers out of bounds incl. NaN/±Infinity/-0/MAX_SAFE_INTEGER+1, strings one past their
 * bound, dates that do not exist, extra keys, arrays at their maximum length and one over, nested objects
 * replaced by anything) both give the same verdict; an accepted value is strictly deep-equal (undefined
 * keys and -0 included) with the same key order; a refusal names the path of zod's first issue.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkHeartbeat, parseHeartbeat } from '../../src/protocol/heartbeat-check.js';
import { MAX_INTERVAL_S, MIN_INTERVAL_S, PATCH_STATES } from '../../src/protocol/names.js';
import { heartbeatPatchSchema, heartbeatSchema, parsePayload, PAYLOAD_LIMITS as L, sensorSchema, subsystemSchema } from '../../src/protocol/schemas.js';

type Key = string | number;

// ---------- generators: heartbeats as the schema describes them, edges included ----------

/** Strings of `min..max` characters (zod counts code points), often exactly at a bound. */
function text(min: number, max: number): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.string({ minLength: min, maxLength: Math.min(max, 24) }), weight: 5 },
    { arbitrary: fc.string({ unit: 'binary', minLength: min, maxLength: Math.min(max, 24) }), weight: 1 },
    { arbitrary: fc.constantFrom('x'.repeat(max), 'x'.repeat(Math.max(min, 1)), '😀'.repeat(Math.floor(max / 2))), weight: 1 },
  );
}
const ratio = fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(0, 1, -0, 0.5));
const isoDate = fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString());
const ts = fc.oneof(isoDate, isoDate.map((t) => t.replace('Z', '+05:30')), isoDate.map((t) => t.slice(0, 19) + '.123456789-00:00'), fc.constantFrom('2028-02-29T00:00:00Z', '0000-01-01T00:00:00Z'));
const deviceLikeId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
/** Short arrays mostly; sometimes exactly at the maximum, or one over it. */
function reports<T>(item: fc.Arbitrary<T>, max: number, rename: (x: T, i: number) => T): fc.Arbitrary<T[]> {
  return fc.oneof(
    { arbitrary: fc.array(item, { maxLength: 4 }), weight: 30 },
    { arbitrary: fc.tuple(item, fc.constantFrom(max, max + 1)).map(([x, n]) => Array.from({ length: n }, (_, i) => rename(x, i))), weight: 1 },
  );
}

const healthFields = {
  cpu: ratio,
  memUsed: ratio,
  diskUsed: ratio,
  load1: fc.oneof(fc.double({ min: 0, max: L.load1, noNaN: true }), fc.constantFrom(0, L.load1)),
};
const subsystemFields = { name: text(1, L.nameChars), ok: fc.boolean(), detail: text(0, L.textChars) };
const sensorFields = { id: deviceLikeId, ok: fc.boolean(), detail: text(0, L.textChars) };
const patchFields = { rolloutId: text(0, L.idChars), patchId: text(1, L.idChars), state: fc.constantFrom(...PATCH_STATES) };
const heartbeatFields = {
  seq: fc.oneof(fc.nat(), fc.maxSafeNat(), fc.constantFrom(0, -0, Number.MAX_SAFE_INTEGER)),
  ts,
  bootId: text(0, L.nameChars),
  intervalS: fc.oneof(fc.double({ min: MIN_INTERVAL_S, max: MAX_INTERVAL_S, noNaN: true }), fc.constantFrom(MIN_INTERVAL_S, MAX_INTERVAL_S, 30)),
  uptimeS: fc.oneof(fc.double({ min: 0, max: L.uptimeS, noNaN: true }), fc.constantFrom(0, -0, L.uptimeS)),
  agentVersion: text(1, L.nameChars),
  softwareVersion: text(1, L.nameChars),
  integrity: fc.stringMatching(/^[0-9a-f]{64}$/).map((hex) => `sha256:${hex}`),
  health: fc.record(healthFields, { requiredKeys: [] }),
  subsystems: reports(fc.record(subsystemFields, { requiredKeys: ['name', 'ok'] }), L.subsystems, (s, i) => ({ ...s, name: `s${i}` })),
  sensors: reports(fc.record(sensorFields, { requiredKeys: ['id', 'ok'] }), L.sensors, (s, i) => ({ ...s, id: `n${i}` })),
  patch: fc.record(patchFields, { requiredKeys: ['patchId', 'state'] }),
};
const heartbeatLike = fc.record(heartbeatFields, { requiredKeys: ['seq', 'ts', 'intervalS', 'agentVersion', 'softwareVersion'] });

// ---------- mutations ----------

/** Values that break some rule somewhere (and some that break none): the pool a mutation draws from. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    undefined, null, true, false, 0, -0, 1, -1, 0.5, 1.5, NaN, Infinity, -Infinity, 1e-300, 1e308,
    Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, 2 ** 60, L.uptimeS + 1, L.load1 + 1, MAX_INTERVAL_S + 1, MIN_INTERVAL_S - 0.5,
    '', 'x', '30', 'true', 'yes', 'installed', 'unknown-state', 'gw-1', 'bad id!', '-starts-with-dash',
    `sha256:${'ab'.repeat(32)}`, `sha256:${'AB'.repeat(32)}`, `sha256:${'ab'.repeat(31)}`,
    '2027-02-30T10:00:00Z', '2027-02-29T10:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01 00:00:00Z', '2026-11-26T17:00:00.000Z', 'yesterday',
    `2026-11-26T17:00:00.${'0'.repeat(9)}Z${' '.repeat(40)}`,
    [], {}, [{}], { name: 'a', ok: true }, { id: 'a', ok: true }, { patchId: 'p', state: 'installed' }, { cpu: 2 },
  ),
  // zod 4 counts code points: n emoji (2n units) fit a bound of n, n + 1 do not; a lone surrogate counts one.
  fc
    .constantFrom(L.nameChars, L.idChars, L.textChars, L.tsChars, 63, 1)
    .chain((n) => fc.constantFrom('y'.repeat(n), 'y'.repeat(n + 1), '😀'.repeat(n), '😀'.repeat(n + 1), `${'😀'.repeat(n - 1)}y`, '\ud83d'.repeat(n + 1), `\ude00${'😀'.repeat(n)}`)),
  fc.anything({ maxDepth: 2 }),
);

/** Field names of every level, plus keys no level knows (incl. prototype names). */
const someKey = fc.constantFrom(
  'seq', 'ts', 'bootId', 'intervalS', 'uptimeS', 'agentVersion', 'softwareVersion', 'integrity', 'health', 'subsystems', 'sensors', 'patch',
  'cpu', 'memUsed', 'diskUsed', 'load1', 'name', 'id', 'ok', 'detail', 'rolloutId', 'patchId', 'state',
  'extra', 'online', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '',
);

function pathsOf(value: unknown, prefix: Key[] = []): Key[][] {
  const out: Key[][] = [prefix];
  if (Array.isArray(value)) value.forEach((item, i) => out.push(...pathsOf(item, [...prefix, i])));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

/** An own data property, even for `__proto__` (plain assignment would set the prototype instead). */
function define(target: object, key: Key, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

type Mutation = { how: 'set' | 'delete' | 'add'; pick: number; key: string; value: unknown };
const mutation: fc.Arbitrary<Mutation> = fc.record({ how: fc.constantFrom('set', 'set', 'delete', 'add'), pick: fc.nat(), key: someKey, value: oddValue });

/** A deep copy of `beat` with one mutation applied at one of its paths (the root included). */
function mutate(beat: object, m: Mutation): unknown {
  const copy = structuredClone(beat) as Record<string, unknown>;
  const paths = pathsOf(copy);
  const path = paths[m.pick % paths.length]!;
  if (path.length === 0) {
    if (m.how === 'set') return m.value;
    if (m.how === 'add') define(copy, m.key, m.value);
    return copy;
  }
  const parent = path.slice(0, -1).reduce<any>((node, k) => node[k], copy);
  const last = path[path.length - 1]!;
  const target = parent[last];
  if (m.how === 'set') define(parent, last, m.value);
  else if (m.how === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (typeof target === 'object' && target !== null && !Array.isArray(target)) define(target, m.key, m.value);
  else if (Array.isArray(target)) target.push(m.value);
  else define(parent, last, m.value);
  return copy;
}

// ---------- the comparison ----------

const pathOf = (message: string) => message.slice(0, message.indexOf(': '));

/** Both verdicts on a JS value (no JSON in between: undefined, NaN, -0 and `__proto__` keys reach both). */
function expectSameOnValue(value: unknown): boolean {
  const spec = heartbeatSchema.safeParse(value);
  const twin = checkHeartbeat(value);
  expect(twin.ok, `verdict on ${String(JSON.stringify(value))?.slice(0, 300)}`).toBe(spec.success);
  if (spec.success && twin.ok) {
    expect(twin.value).toStrictEqual(spec.data);
    expect(JSON.stringify(twin.value)).toBe(JSON.stringify(spec.data)); // same key order too
  } else if (!spec.success && !twin.ok) {
    expect(pathOf(twin.message)).toBe(spec.error.issues[0]!.path.join('.') || '(root)');
  }
  return spec.success;
}

/** Both verdicts on the same wire bytes, the way ingest sees a heartbeat. */
function expectSameOnPayload(value: unknown): void {
  const json = JSON.stringify(value);
  if (json === undefined) return;
  const payload = Buffer.from(json);
  const spec = parsePayload(heartbeatSchema, payload);
  const twin = parseHeartbeat(payload);
  expect(twin.ok).toBe(spec.ok);
  if (spec.ok && twin.ok) expect(twin.value).toStrictEqual(spec.value);
  if (!spec.ok && !twin.ok) {
    expect(twin.reason).toBe(spec.reason);
    expect(pathOf(twin.message)).toBe(pathOf(spec.message));
  }
}

describe('checkHeartbeat equals heartbeatSchema (zod, the specification)', () => {
  it('generates every field the schema names, at every level (a field added to the schema must be added here, then to the twin)', () => {
    const keys = (shape: object) => Object.keys(shape).sort();
    expect(keys(heartbeatFields)).toEqual(keys(heartbeatSchema.shape));
    expect(keys(healthFields)).toEqual(keys(heartbeatSchema.shape.health.unwrap().shape));
    expect(keys(subsystemFields)).toEqual(keys(subsystemSchema.shape));
    expect(keys(sensorFields)).toEqual(keys(sensorSchema.shape));
    expect(keys(patchFields)).toEqual(keys(heartbeatPatchSchema.shape));
  });

  it('on generated heartbeats (edges and arrays at their maximum or one over included)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(heartbeatLike, (beat) => {
        if (expectSameOnValue(beat)) accepted++;
        expectSameOnPayload(beat);
      }),
      { numRuns: 3_000 },
    );
    // The generator mostly makes valid heartbeats, so acceptance (and the stripped value) is really compared.
    expect(accepted).toBeGreaterThan(2_000);
  });

  it('on heartbeats with one field removed, replaced by an odd value, or an extra key added, at any depth', () => {
    let refused = 0;
    fc.assert(
      fc.property(heartbeatLike, mutation, (beat, m) => {
        const value = mutate(beat, m);
        if (!expectSameOnValue(value)) refused++;
        expectSameOnPayload(value);
      }),
      { numRuns: 4_000 },
    );
    expect(refused).toBeGreaterThan(1_000);
  });

  it('on heartbeats with two mutations (the first issue in zod order is the one named)', () => {
    fc.assert(
      fc.property(heartbeatLike, mutation, mutation, (beat, m1, m2) => {
        const once = mutate(beat, m1);
        const value = typeof once === 'object' && once !== null ? mutate(once, m2) : once;
        expectSameOnValue(value);
        expectSameOnPayload(value);
      }),
      { numRuns: 2_000 },
    );
  });

  it('on anything at all', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3, withNullPrototype: true }), (value) => {
        expectSameOnValue(value);
        expectSameOnPayload(value);
      }),
      { numRuns: 2_000 },
    );
  });
});
