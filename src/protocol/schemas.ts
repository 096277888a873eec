import { z } from 'zod';
import { DEVICE_ID_PATTERN, PATCH_STATES } from './names.js';
import type { Heartbeat, PatchStatus, StateMessage } from './types.js';

/**
 * Runtime validators for every payload a device sends (daemon side). Nothing untrusted
 * reaches the database unvalidated. Unknown keys are stripped, not stored.
 */
const shortText = z.string().max(1024);
const ratio = z.number().finite().min(0);

export const subsystemSchema = z.object({ name: z.string().min(1).max(64), ok: z.boolean(), detail: shortText.optional() });
export const sensorSchema = z.object({
  id: z.string().regex(DEVICE_ID_PATTERN),
  ok: z.boolean(),
  detail: shortText.optional(),
});

export const heartbeatPatchSchema = z.object({
  rolloutId: z.string().max(128).optional(),
  patchId: z.string().min(1).max(128),
  state: z.enum(PATCH_STATES),
});

export const heartbeatSchema = z.object({
  seq: z.number().int().nonnegative(),
  ts: z.string().max(64),
  bootId: z.string().max(64).optional(),
  intervalS: z.number().positive().max(86_400),
  uptimeS: z.number().nonnegative().optional(),
  agentVersion: z.string().min(1).max(64),
  softwareVersion: z.string().min(1).max(64),
  integrity: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
  health: z
    .object({ cpu: ratio.optional(), memUsed: ratio.optional(), diskUsed: ratio.optional(), load1: ratio.optional() })
    .optional(),
  subsystems: z.array(subsystemSchema).max(64).optional(),
  sensors: z.array(sensorSchema).max(1024).optional(),
  patch: heartbeatPatchSchema.optional(),
}) satisfies z.ZodType<Heartbeat>;

export const stateSchema = z.object({ online: z.boolean() }) satisfies z.ZodType<StateMessage>;

export const patchStatusSchema = z.object({
  rolloutId: z.string().max(128).optional(),
  patchId: z.string().min(1).max(128),
  state: z.enum(PATCH_STATES),
  detail: shortText.optional(),
  retryable: z.boolean().optional(),
}) satisfies z.ZodType<PatchStatus>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: 'json' | 'schema'; message: string };

/** Parse a raw MQTT payload: JSON first, then the schema. Never throws. */
export function parsePayload<T>(schema: z.ZodType<T>, payload: Buffer | string): ParseResult<T> {
  let data: unknown;
  try {
    data = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'json', message: (err as Error).message };
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: 'schema', message: `${issue?.path.join('.') || '(root)'}: ${issue?.message}` };
  }
  return { ok: true, value: parsed.data };
}
