import { z } from 'zod';
import { DEVICE_ID_PATTERN, MAX_INTERVAL_S, MIN_INTERVAL_S, PATCH_STATES } from './names.js';
import { isRfc3339 } from './rfc3339.js';
import type { Heartbeat, PatchStatus, StateMessage } from './types.js';

/**
 * Runtime validators for every payload a device sends (daemon side). Nothing untrusted
 * reaches the database unvalidated. Unknown keys are stripped, not stored.
 *
 * Every number, string and array has both bounds (issue 11 fault 6); a payload outside them is
 * rejected and counted as `fleet_heartbeat_rejected_total{reason="schema"}`. The limits are listed in
 * README "Limits" and exported here so tests and generators use the same figures.
 */
export const PAYLOAD_LIMITS = {
  textChars: 1024,
  nameChars: 64,
  idChars: 128,
  subsystems: 64,
  sensors: 1024,
  /** 100 years of uptime, in seconds. */
  uptimeS: 3_153_600_000,
  /** A load average above this is a broken probe, not a load. */
  load1: 100_000,
  /** A heartbeat's `ts`: the longest RFC 3339 date-time is 35 chars; the bound only stops a huge string early. */
  tsChars: 64,
} as const;

/** A heartbeat's `integrity`: the agent's tree digest (PROTOCOL.md "Heartbeat"). */
export const INTEGRITY_PATTERN = /^sha256:[0-9a-f]{64}$/;

/**
 * A lone surrogate (a JSON escape such as `"\ud800"` decodes to one): no Unicode text. SQLite stores it as the
 * ill-formed bytes ED A0 80 and reads back three U+FFFD, so a stored column and the stored heartbeat JSON
 * (which keeps the escape) would disagree (issue 12). With the u flag, a paired surrogate is one code point
 * and does not match. U+0000 (the escape `"\u0000"`): PostgreSQL's text cannot hold it (22021), so on that
 * store one such beat failed the ingest batch it travelled in and, once in a ticket's summary, every health
 * tick (issue 13); refused on both engines so they agree.
 */
const UNSTORABLE = /\p{Surrogate}|\u0000/u;
/** Is `text` well-formed UTF-16 without U+0000, i.e. text both SQLite and PostgreSQL store as it is? */
export function isWellFormedText(text: string): boolean {
  return !UNSTORABLE.test(text);
}
export const ILL_FORMED_TEXT = 'expected text without a lone surrogate or U+0000';
/** `z.string()` with both length bounds, refusing a lone surrogate and U+0000. */
function text(min: number, max: number) {
  return z.string().min(min).max(max).refine(isWellFormedText, ILL_FORMED_TEXT);
}
const shortText = text(0, PAYLOAD_LIMITS.textChars);
/** cpu, memUsed, diskUsed: shares of 1. */
const ratio = z.number().finite().min(0).max(1);

export const subsystemSchema = z.object({ name: text(1, PAYLOAD_LIMITS.nameChars), ok: z.boolean(), detail: shortText.optional() });
export const sensorSchema = z.object({
  id: z.string().regex(DEVICE_ID_PATTERN),
  ok: z.boolean(),
  detail: shortText.optional(),
});

export const heartbeatPatchSchema = z.object({
  rolloutId: text(0, PAYLOAD_LIMITS.idChars).optional(),
  patchId: text(1, PAYLOAD_LIMITS.idChars),
  state: z.enum(PATCH_STATES),
});

/**
 * The heartbeat's specification (PROTOCOL.md "Heartbeat"): the type, the docs and every caller but one use it.
 * The ingest hot path checks heartbeats with `parseHeartbeat` (heartbeat-check.ts), a hand-written twin that
 * accepts, refuses and strips exactly as this schema does (test/unit/heartbeat-check-equivalence.test.ts);
 * a change here must be made there too, and that test fails until it is.
 */
export const heartbeatSchema = z.object({
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  // Liveness never uses ts, but a date read is a strict RFC 3339 date (no Feb 30 rolled over).
  ts: z.string().max(PAYLOAD_LIMITS.tsChars).refine(isRfc3339, 'expected an RFC 3339 date-time'),
  bootId: text(0, PAYLOAD_LIMITS.nameChars).optional(),
  intervalS: z.number().min(MIN_INTERVAL_S).max(MAX_INTERVAL_S),
  uptimeS: z.number().nonnegative().max(PAYLOAD_LIMITS.uptimeS).optional(),
  agentVersion: text(1, PAYLOAD_LIMITS.nameChars),
  softwareVersion: text(1, PAYLOAD_LIMITS.nameChars),
  integrity: z.string().regex(INTEGRITY_PATTERN).optional(),
  health: z
    .object({ cpu: ratio.optional(), memUsed: ratio.optional(), diskUsed: ratio.optional(), load1: z.number().finite().min(0).max(PAYLOAD_LIMITS.load1).optional() })
    .optional(),
  subsystems: z.array(subsystemSchema).max(PAYLOAD_LIMITS.subsystems).optional(),
  sensors: z.array(sensorSchema).max(PAYLOAD_LIMITS.sensors).optional(),
  patch: heartbeatPatchSchema.optional(),
}) satisfies z.ZodType<Heartbeat>;

export const stateSchema = z.object({ online: z.boolean() }) satisfies z.ZodType<StateMessage>;

export const patchStatusSchema = z.object({
  rolloutId: text(0, PAYLOAD_LIMITS.idChars).optional(),
  patchId: text(1, PAYLOAD_LIMITS.idChars),
  state: z.enum(PATCH_STATES),
  detail: shortText.optional(),
  retryable: z.boolean().optional(),
}) satisfies z.ZodType<PatchStatus>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: 'json' | 'schema'; message: string };

/** The text of a raw MQTT payload (UTF-8). */
export function payloadText(payload: Buffer | string): string {
  return typeof payload === 'string' ? payload : payload.toString('utf8');
}

/** The refusal of a payload that is not JSON. */
export function jsonRefusal(err: unknown): ParseResult<never> {
  return { ok: false, reason: 'json', message: (err as Error).message };
}

/** Parse a raw MQTT payload: JSON first, then the schema. Never throws. */
export function parsePayload<T>(schema: z.ZodType<T>, payload: Buffer | string): ParseResult<T> {
  let data: unknown;
  try {
    data = JSON.parse(payloadText(payload));
  } catch (err) {
    return jsonRefusal(err);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: 'schema', message: `${issue?.path.join('.') || '(root)'}: ${issue?.message}` };
  }
  return { ok: true, value: parsed.data };
}
