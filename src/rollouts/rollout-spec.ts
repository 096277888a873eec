import { isValidRange } from '../../patches/version-match.js';
import { ValidationError } from '../errors.js';
import { DEVICE_TYPES } from '../protocol/names.js';
import { cronError, isValidTimezone, type MaintenanceWindow } from './window.js';

/**
 * A rollout as stored (normalized: durations in ms) and its input form (API body / CLI flags).
 * Structural checks live here; checks against the patch and the fleet are in the scheduler's create().
 * Every error is a ValidationError whose message starts with the field path.
 */
export type WaveSize = { count: number } | { percent: number };

export interface WaveSpec {
  size: WaveSize;
  /**
   * Bake time (RULES.md "Soak is bake time"): the wave passes its gate only once this much time has passed
   * since the last of its devices was done, with every one still healthy.
   */
  soakMs: number;
}

export interface TargetSpec {
  /** Device types (any of); empty = every type the patch applies to. */
  types: string[];
  /** Customers (any of); empty = all. */
  customers: string[];
  /** Tags the device must all carry; empty = no tag filter. */
  tags: string[];
  /** Semver range the current software must satisfy, or null for any (the patch's appliesTo still holds). */
  software: string | null;
}

export interface RolloutSpec {
  patchId: string;
  target: TargetSpec;
  waves: WaveSpec[];
  window: MaintenanceWindow;
  /** A wave whose failed share exceeds this stops the rollout (RULES.md, default 0.1). */
  abortThreshold: number;
  /** Devices updating at once across the fleet (all rollouts). */
  maxConcurrent: number;
  /** Devices updating at once per gateway group (a gateway and its sensors). */
  maxPerGateway: number;
  /** Offers of a wave are spread over [windowStart, windowStart + jitter), clamped to the window. */
  jitterMs: number;
  /** An offered device that reports no progress for this long counts as failed. */
  progressTimeoutMs: number;
  /** After its final `installed`, how long a device has to heartbeat the new version (time allowed to report). */
  reportTimeoutMs: number;
  /** Offers after the first one for a transient failure (RULES.md "Retries"); 0 = none. */
  retries: number;
  /** Base of the per-device retry backoff (doubles per try, capped at 16 x). */
  retryBackoffMs: number;
}

/**
 * Upper bounds of every number a rollout takes (issue 9 fault 8: a window of `300000000d` was stored and then
 * broke every tick). Anything above is refused at validation with 400, before anything is stored.
 */
export const LIMITS = {
  durationMs: 366 * 86_400_000,
  windowMs: 31 * 86_400_000,
  waves: 100,
  waveCount: 10_000_000,
  maxConcurrent: 1_000_000,
  maxPerGateway: 100_000,
  retries: 10,
} as const;

export interface SpecDefaults {
  abortThreshold: number;
  maxConcurrent: number;
  maxPerGateway: number;
}

export const DEFAULT_SOAK_MS = 30 * 60_000;
export const DEFAULT_PROGRESS_TIMEOUT_MS = 60 * 60_000;
export const DEFAULT_REPORT_TIMEOUT_MS = 15 * 60_000;
export const DEFAULT_RETRY_BACKOFF_MS = 60_000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `30m`, `4h`, `1h30m`, `2d`, `500ms`; a bare number is seconds. At most `maxMs` (default 366 days). */
export function parseDuration(value: unknown, field: string, maxMs: number = LIMITS.durationMs): number {
  const ms = parseDurationUnbounded(value, field);
  if (!(ms <= maxMs)) throw new ValidationError(`${field}: at most ${formatDuration(maxMs)}`);
  return ms;
}

function parseDurationUnbounded(value: unknown, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new ValidationError(`${field}: expected a non-negative duration`);
    return Math.round(value * 1000);
  }
  if (typeof value !== 'string' || value.trim() === '') throw new ValidationError(`${field}: expected a duration like 30m, 4h or 1h30m`);
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== text.length || pos === 0) throw new ValidationError(`${field}: "${value}" is not a duration like 30m, 4h or 1h30m`);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}

/** `5` (count) or `10%` (percent of the devices not in an earlier wave). */
export function parseWaveSize(value: unknown, field: string): WaveSize {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 1) throw new ValidationError(`${field}: a count must be a positive integer`);
    if (value > LIMITS.waveCount) throw new ValidationError(`${field}: a count must be at most ${LIMITS.waveCount}`);
    return { count: value };
  }
  if (typeof value === 'string') {
    const text = value.trim();
    const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
    if (pct) {
      const percent = Number(pct[1]);
      if (!(percent > 0 && percent <= 100)) throw new ValidationError(`${field}: a percentage must be in (0, 100]`);
      return { percent };
    }
    if (/^\d+$/.test(text)) return parseWaveSize(Number(text), field);
  }
  throw new ValidationError(`${field}: expected a count (5) or a percentage ("10%")`);
}

export function formatWaveSize(size: WaveSize): string {
  return 'count' in size ? String(size.count) : `${size.percent}%`;
}

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(list)) throw new ValidationError(`${field}: expected a list of strings`);
  const out: string[] = [];
  for (const [i, item] of list.entries()) {
    if (typeof item !== 'string' || item.trim() === '') throw new ValidationError(`${field}.${i}: expected a non-empty string`);
    out.push(item.trim());
  }
  return [...new Set(out)];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rejectUnknown(obj: Record<string, unknown>, allowed: readonly string[], prefix: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw new ValidationError(`${prefix}${key}: unknown field`);
  }
}

function boundedInt(value: unknown, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(`${field}: expected an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * Parse the API body of `POST /api/v1/rollouts`:
 * ```json
 * { "patchId": "gw-2.3.2",
 *   "target": { "types": ["gateway"], "customers": ["acme"], "tags": ["eu"], "software": ">=2.0.0 <2.3.2" },
 *   "waves": [ { "size": 5, "soak": "30m" }, { "size": "10%" }, { "size": "100%" } ],
 *   "soak": "30m",
 *   "window": { "cron": "0 2 * * *", "duration": "4h", "timezone": "Europe/Berlin" },
 *   "abortThreshold": 0.1, "maxConcurrent": 500, "maxPerGateway": 1, "jitter": "10m", "progressTimeout": "1h",
 *   "reportTimeout": "15m", "retries": 2, "retryBackoff": "1m" }
 * ```
 */
export function parseRolloutSpec(input: unknown, defaults: SpecDefaults): RolloutSpec {
  if (!isObject(input)) throw new ValidationError('body: expected a JSON object');
  rejectUnknown(
    input,
    ['patchId', 'target', 'waves', 'soak', 'window', 'abortThreshold', 'maxConcurrent', 'maxPerGateway', 'jitter', 'progressTimeout', 'reportTimeout', 'retries', 'retryBackoff'],
    '',
  );
  if (typeof input.patchId !== 'string' || input.patchId.trim() === '') throw new ValidationError('patchId: required');

  const targetIn = input.target ?? {};
  if (!isObject(targetIn)) throw new ValidationError('target: expected an object');
  rejectUnknown(targetIn, ['types', 'customers', 'tags', 'software'], 'target.');
  const types = stringList(targetIn.types, 'target.types');
  for (const [i, t] of types.entries()) {
    if (!(DEVICE_TYPES as readonly string[]).includes(t)) throw new ValidationError(`target.types.${i}: "${t}" is not one of ${DEVICE_TYPES.join(', ')}`);
  }
  let software: string | null = null;
  if (targetIn.software !== undefined && targetIn.software !== null && targetIn.software !== '') {
    if (typeof targetIn.software !== 'string' || !isValidRange(targetIn.software)) {
      throw new ValidationError(`target.software: "${String(targetIn.software)}" is not a semver range`);
    }
    software = targetIn.software.trim();
  }
  const target: TargetSpec = { types, customers: stringList(targetIn.customers, 'target.customers'), tags: stringList(targetIn.tags, 'target.tags'), software };

  const defaultSoakMs = input.soak === undefined ? DEFAULT_SOAK_MS : parseDuration(input.soak, 'soak');
  if (!Array.isArray(input.waves) || input.waves.length === 0) throw new ValidationError('waves: at least one wave is required');
  if (input.waves.length > LIMITS.waves) throw new ValidationError(`waves: at most ${LIMITS.waves} waves`);
  const waves: WaveSpec[] = input.waves.map((w, i) => {
    const field = `waves.${i}`;
    if (!isObject(w)) return { size: parseWaveSize(w, `${field}`), soakMs: defaultSoakMs };
    rejectUnknown(w, ['size', 'soak'], `${field}.`);
    return { size: parseWaveSize(w.size, `${field}.size`), soakMs: w.soak === undefined ? defaultSoakMs : parseDuration(w.soak, `${field}.soak`) };
  });

  if (!isObject(input.window)) throw new ValidationError('window: required (cron, duration, timezone)');
  rejectUnknown(input.window, ['cron', 'duration', 'timezone'], 'window.');
  const cron = input.window.cron;
  if (typeof cron !== 'string' || cron.trim() === '') throw new ValidationError('window.cron: required');
  const cronProblem = cronError(cron.trim());
  if (cronProblem) throw new ValidationError(`window.cron: "${cron}" is not a valid cron expression (${cronProblem})`);
  const durationMs = parseDuration(input.window.duration, 'window.duration', LIMITS.windowMs);
  if (durationMs < 60_000) throw new ValidationError('window.duration: must be at least 1m');
  const timezone = input.window.timezone;
  if (typeof timezone !== 'string' || !isValidTimezone(timezone)) {
    throw new ValidationError(`window.timezone: "${String(timezone)}" is not an IANA timezone (e.g. Europe/Berlin)`);
  }

  let abortThreshold = defaults.abortThreshold;
  if (input.abortThreshold !== undefined) {
    if (typeof input.abortThreshold !== 'number' || !(input.abortThreshold >= 0 && input.abortThreshold <= 1)) {
      throw new ValidationError('abortThreshold: expected a share in [0, 1]');
    }
    abortThreshold = input.abortThreshold;
  }
  const jitterMs = input.jitter === undefined ? 0 : parseDuration(input.jitter, 'jitter', LIMITS.windowMs);
  const progressTimeoutMs = input.progressTimeout === undefined ? DEFAULT_PROGRESS_TIMEOUT_MS : parseDuration(input.progressTimeout, 'progressTimeout', LIMITS.windowMs);
  if (progressTimeoutMs < 1000) throw new ValidationError('progressTimeout: must be at least 1s');
  const reportTimeoutMs = input.reportTimeout === undefined ? DEFAULT_REPORT_TIMEOUT_MS : parseDuration(input.reportTimeout, 'reportTimeout', LIMITS.windowMs);
  if (reportTimeoutMs < 1000) throw new ValidationError('reportTimeout: must be at least 1s');
  const retryBackoffMs = input.retryBackoff === undefined ? DEFAULT_RETRY_BACKOFF_MS : parseDuration(input.retryBackoff, 'retryBackoff', 86_400_000);
  if (retryBackoffMs < 100) throw new ValidationError('retryBackoff: must be at least 100ms');

  return {
    patchId: input.patchId.trim(),
    target,
    waves,
    window: { cron: cron.trim(), durationMs, timezone },
    abortThreshold,
    maxConcurrent: boundedInt(input.maxConcurrent, 'maxConcurrent', defaults.maxConcurrent, 1, LIMITS.maxConcurrent),
    maxPerGateway: boundedInt(input.maxPerGateway, 'maxPerGateway', defaults.maxPerGateway, 1, LIMITS.maxPerGateway),
    jitterMs,
    progressTimeoutMs,
    reportTimeoutMs,
    retries: boundedInt(input.retries, 'retries', 0, 0, LIMITS.retries),
    retryBackoffMs,
  };
}

/** A stored spec with the fields added later (issue 9: reportTimeout, retries) filled with their defaults. */
export function normalizeSpec(spec: RolloutSpec): RolloutSpec {
  return {
    ...spec,
    reportTimeoutMs: spec.reportTimeoutMs ?? DEFAULT_REPORT_TIMEOUT_MS,
    retries: spec.retries ?? 0,
    retryBackoffMs: spec.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS,
  };
}
