import { DEVICE_ID_PATTERN, MAX_INTERVAL_S, MIN_INTERVAL_S, PATCH_STATES, type PatchState } from './names.js';
import { isRfc3339 } from './rfc3339.js';
import { ILL_FORMED_TEXT, INTEGRITY_PATTERN, PAYLOAD_LIMITS, isWellFormedText, jsonRefusal, payloadText, type ParseResult } from './schemas.js';
import type { Heartbeat, HeartbeatPatch, SensorReport, SubsystemReport } from './types.js';

/**
 * The heartbeat check of the ingest hot path (issue 12): every device sends one every interval, and zod's
 * `heartbeatSchema.safeParse` (with its issue arrays, payload wrappers and closures) was ~12 % of the main
 * thread's busy time at 10,000 heartbeats/s. This is a hand-written twin of `heartbeatSchema`
 * (src/protocol/schemas.ts), which stays the specification: it accepts and refuses exactly what the schema
 * does, strips unknown keys the same way (the value has only the schema's keys, in the schema's order), and
 * on a refusal names the path of the schema's first issue (depth first, in shape order, an array's length
 * before its elements: zod 4 refuses an over-long array without walking it). String bounds count code points,
 * as zod 4 does. test/unit/heartbeat-check-equivalence.test.ts proves all this with generated heartbeats and
 * their mutations, against the zod version installed; every bound is imported, none copied.
 *
 * It allocates only the value it hands on; a refusal allocates its message.
 */

/** A refusal: the dotted path of the offending field ('' for the payload itself) and why. */
class Refusal {
  constructor(
    public path: string,
    readonly message: string,
  ) {}
  /** The same refusal seen from the parent object or array (`key` is a field name or an index). */
  under(key: string | number): Refusal {
    this.path = this.path === '' ? String(key) : `${key}.${this.path}`;
    return this;
  }
}

const PATCH_STATE_SET: ReadonlySet<unknown> = new Set(PATCH_STATES);
const L = PAYLOAD_LIMITS;

/** zod's `isObject`: anything `typeof 'object'` but null and arrays (a Date would pass, as it does there). */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return typeof value;
}

function wrongType(path: string, expected: string, value: unknown): Refusal {
  return new Refusal(path, `expected ${expected}, received ${kindOf(value)}`);
}

/** `z.number().min(min).max(max)` (zod 4 numbers are finite: NaN and ±Infinity are refused). */
function checkNumber(value: unknown, min: number, max: number, path: string): Refusal | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType(path, 'number', value);
  if (value < min || value > max) return new Refusal(path, `expected a number from ${min} to ${max}, received ${value}`);
  return undefined;
}

/**
 * Code points of `text` as zod 4 counts them for string lengths: a high surrogate followed by a low one is
 * one, anything else (a lone surrogate too) is one per UTF-16 unit.
 */
function codePoints(text: string): number {
  const units = text.length;
  let count = units;
  for (let i = 0; i < units - 1; i++) {
    if ((text.charCodeAt(i) & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count--;
      i++;
    }
  }
  return count;
}

/**
 * `z.string().min(min).max(max)`: zod 4 measures strings in code points, so 33 emoji (66 units) fit in 64.
 * Only a length in doubt is counted; an ASCII heartbeat never is.
 */
function checkString(value: unknown, min: number, max: number, path: string): Refusal | undefined {
  if (typeof value !== 'string') return wrongType(path, 'string', value);
  let length = value.length;
  if (length > max || length < 2 * min) length = codePoints(value);
  if (length < min || length > max) return new Refusal(path, `expected ${min} to ${max} characters, received ${length}`);
  // The schema's text() refinement: a lone surrogate is no text SQLite can store as it is.
  if (!isWellFormedText(value)) return new Refusal(path, ILL_FORMED_TEXT);
  return undefined;
}

function checkBoolean(value: unknown, path: string): Refusal | undefined {
  return typeof value === 'boolean' ? undefined : wrongType(path, 'boolean', value);
}

/**
 * An optional field read the way zod 4's object does: absent leaves it out, present-but-undefined keeps the
 * key with `undefined` (only possible from JS, never from JSON).
 */
function keepUndefined(source: Record<string, unknown>, key: string, target: Record<string, unknown>): void {
  if (key in source) target[key] = undefined;
}

/** A report's optional `detail` (up to L.textChars): the string, undefined (absent), or the refusal. */
function checkDetail(detail: unknown): Refusal | undefined {
  return detail === undefined ? undefined : checkString(detail, 0, L.textChars, 'detail');
}

/**
 * `subsystemSchema`: `{ name (1..L.nameChars), ok, detail? }`, built as one literal per shape (no property
 * added afterwards, no spread: this runs for every subsystem of every heartbeat, and a spread measured 5x slower).
 */
function checkSubsystem(item: unknown): SubsystemReport | Refusal {
  if (!isRecord(item)) return wrongType('', 'object', item);
  const name = item.name;
  const ok = item.ok;
  const detail = item.detail;
  const bad = checkString(name, 1, L.nameChars, 'name') ?? checkBoolean(ok, 'ok') ?? checkDetail(detail);
  if (bad) return bad;
  if (detail !== undefined) return { name: name as string, ok: ok as boolean, detail: detail as string };
  return 'detail' in item ? { name: name as string, ok: ok as boolean, detail: undefined } : { name: name as string, ok: ok as boolean };
}

/** `sensorSchema`: `{ id (DEVICE_ID_PATTERN), ok, detail? }`, built like a subsystem. */
function checkSensor(item: unknown): SensorReport | Refusal {
  if (!isRecord(item)) return wrongType('', 'object', item);
  const id = item.id;
  if (typeof id !== 'string') return wrongType('id', 'string', id);
  if (!DEVICE_ID_PATTERN.test(id)) return new Refusal('id', 'expected a device id (letters, digits, _ . -, up to 64)');
  const ok = item.ok;
  const detail = item.detail;
  const bad = checkBoolean(ok, 'ok') ?? checkDetail(detail);
  if (bad) return bad;
  if (detail !== undefined) return { id, ok: ok as boolean, detail: detail as string };
  return 'detail' in item ? { id, ok: ok as boolean, detail: undefined } : { id, ok: ok as boolean };
}

/** `z.array(item).max(max)`: the length before the elements, as zod 4 checks a size cap (an over-long array is not walked). */
function checkReports<T>(value: unknown, checkItem: (item: unknown) => T | Refusal, max: number, path: string): T[] | Refusal {
  if (!Array.isArray(value)) return wrongType(path, 'array', value);
  const length = value.length;
  if (length > max) return new Refusal(path, `expected at most ${max} items, received ${length}`);
  const out = new Array<T>(length);
  for (let i = 0; i < length; i++) {
    const report = checkItem(value[i]);
    if (report instanceof Refusal) return report.under(i).under(path);
    out[i] = report;
  }
  return out;
}

const HEALTH_KEYS = ['cpu', 'memUsed', 'diskUsed', 'load1'] as const;

/** An optional health figure from 0 to `max`, or the refusal (path `health.<key>`). */
function checkFigure(value: Record<string, unknown>, key: string, max: number): Refusal | undefined {
  const figure = value[key];
  return figure === undefined ? undefined : checkNumber(figure, 0, max, key)?.under('health');
}

/**
 * `health`: cpu, memUsed and diskUsed shares of 1, load1 up to L.load1, each optional. The usual report (all
 * four) is built as one literal; other subsets key by key in the schema's order.
 */
function checkHealth(value: unknown): Heartbeat['health'] | Refusal {
  if (!isRecord(value)) return wrongType('health', 'object', value);
  const bad = checkFigure(value, 'cpu', 1) ?? checkFigure(value, 'memUsed', 1) ?? checkFigure(value, 'diskUsed', 1) ?? checkFigure(value, 'load1', L.load1);
  if (bad) return bad;
  const { cpu, memUsed, diskUsed, load1 } = value as Record<string, number | undefined>;
  if (cpu !== undefined && memUsed !== undefined && diskUsed !== undefined && load1 !== undefined) return { cpu, memUsed, diskUsed, load1 };
  const health: Record<string, number | undefined> = {};
  for (const key of HEALTH_KEYS) {
    const figure = value[key];
    if (figure === undefined) keepUndefined(value, key, health);
    else health[key] = figure as number;
  }
  return health;
}

function checkPatch(value: unknown): HeartbeatPatch | Refusal {
  if (!isRecord(value)) return wrongType('patch', 'object', value);
  const patch = {} as HeartbeatPatch & Record<string, unknown>;
  const rolloutId = value.rolloutId;
  if (rolloutId === undefined) keepUndefined(value, 'rolloutId', patch);
  else {
    const bad = checkString(rolloutId, 0, L.idChars, 'rolloutId');
    if (bad) return bad.under('patch');
    patch.rolloutId = rolloutId as string;
  }
  const patchId = value.patchId;
  const bad = checkString(patchId, 1, L.idChars, 'patchId');
  if (bad) return bad.under('patch');
  patch.patchId = patchId as string;
  const state = value.state;
  if (!PATCH_STATE_SET.has(state)) return new Refusal('patch.state', `expected one of ${PATCH_STATES.join('|')}`);
  patch.state = state as PatchState;
  return patch;
}

/**
 * A decoded heartbeat checked against `heartbeatSchema`'s rules: the stripped value, or the refusal as
 * `path: message` (path `(root)` for a payload that is not an object), the form `parsePayload` gives.
 */
export function checkHeartbeat(data: unknown): { ok: true; value: Heartbeat } | { ok: false; message: string } {
  const result = check(data);
  if (result instanceof Refusal) return { ok: false, message: `${result.path || '(root)'}: ${result.message}` };
  return { ok: true, value: result };
}

function check(data: unknown): Heartbeat | Refusal {
  if (!isRecord(data)) return wrongType('', 'object', data);
  const beat = {} as Heartbeat & Record<string, unknown>;
  let bad: Refusal | undefined;

  const seq = data.seq;
  if (typeof seq !== 'number' || !Number.isFinite(seq)) return wrongType('seq', 'number', seq);
  if (!Number.isInteger(seq)) return new Refusal('seq', 'expected an integer');
  if ((bad = checkNumber(seq, 0, Number.MAX_SAFE_INTEGER, 'seq'))) return bad;
  beat.seq = seq;

  const ts = data.ts;
  if ((bad = checkString(ts, 0, L.tsChars, 'ts'))) return bad;
  if (!isRfc3339(ts)) return new Refusal('ts', 'expected an RFC 3339 date-time');
  beat.ts = ts as string;

  const bootId = data.bootId;
  if (bootId === undefined) keepUndefined(data, 'bootId', beat);
  else if ((bad = checkString(bootId, 0, L.nameChars, 'bootId'))) return bad;
  else beat.bootId = bootId as string;

  const intervalS = data.intervalS;
  if ((bad = checkNumber(intervalS, MIN_INTERVAL_S, MAX_INTERVAL_S, 'intervalS'))) return bad;
  beat.intervalS = intervalS as number;

  const uptimeS = data.uptimeS;
  if (uptimeS === undefined) keepUndefined(data, 'uptimeS', beat);
  else if ((bad = checkNumber(uptimeS, 0, L.uptimeS, 'uptimeS'))) return bad;
  else beat.uptimeS = uptimeS as number;

  const agentVersion = data.agentVersion;
  if ((bad = checkString(agentVersion, 1, L.nameChars, 'agentVersion'))) return bad;
  beat.agentVersion = agentVersion as string;

  const softwareVersion = data.softwareVersion;
  if ((bad = checkString(softwareVersion, 1, L.nameChars, 'softwareVersion'))) return bad;
  beat.softwareVersion = softwareVersion as string;

  const integrity = data.integrity;
  if (integrity === undefined) keepUndefined(data, 'integrity', beat);
  else if (typeof integrity !== 'string') return wrongType('integrity', 'string', integrity);
  else if (!INTEGRITY_PATTERN.test(integrity)) return new Refusal('integrity', 'expected sha256: and 64 lower-case hex digits');
  else beat.integrity = integrity;

  const health = data.health;
  if (health === undefined) keepUndefined(data, 'health', beat);
  else {
    const checked = checkHealth(health);
    if (checked instanceof Refusal) return checked;
    beat.health = checked;
  }

  const subsystems = data.subsystems;
  if (subsystems === undefined) keepUndefined(data, 'subsystems', beat);
  else {
    const checked = checkReports(subsystems, checkSubsystem, L.subsystems, 'subsystems');
    if (checked instanceof Refusal) return checked;
    beat.subsystems = checked;
  }

  const sensors = data.sensors;
  if (sensors === undefined) keepUndefined(data, 'sensors', beat);
  else {
    const checked = checkReports(sensors, checkSensor, L.sensors, 'sensors');
    if (checked instanceof Refusal) return checked;
    beat.sensors = checked;
  }

  const patch = data.patch;
  if (patch === undefined) keepUndefined(data, 'patch', beat);
  else {
    const checked = checkPatch(patch);
    if (checked instanceof Refusal) return checked;
    beat.patch = checked;
  }
  return beat;
}

/**
 * Parse a raw heartbeat payload: JSON first, then `checkHeartbeat`. The same result `parsePayload(heartbeatSchema,
 * payload)` gives (messages worded differently, same paths), at a fraction of the cost. Never throws.
 */
export function parseHeartbeat(payload: Buffer | string): ParseResult<Heartbeat> {
  let data: unknown;
  try {
    data = JSON.parse(payloadText(payload));
  } catch (err) {
    return jsonRefusal(err);
  }
  const checked = checkHeartbeat(data);
  return checked.ok ? checked : { ok: false, reason: 'schema', message: checked.message };
}
