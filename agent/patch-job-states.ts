import { PatchError } from '../patches/patch-error.js';
import type { PatchState } from '../src/protocol/names.js';

/**
 * The agent's patch job as a table (issue 4 item 4; Mender's update state machine): every state,
 * the states it may move to, and how it is reported on the wire. Anything not in the table throws.
 *
 *   offered -> downloading -> verifying -> installing -> health-check -> installed
 *      |            |             |             |   \            `-> rolled_back | failed
 *      |            |             |             |    `-> rebooting -> health-check (on the new boot) | failed
 *      `------------+-------------+-> rejected  `-> failed
 *      `------------+-------------+-------------+-> cancelled (PatchCancel before the point of no return)
 *
 * The point of no return is the end of the install command: a cancel during download, verification or the
 * install itself stops it (the install's process group is killed and the rollback restores the old version);
 * once the install has finished (health check, reboot) the job completes and reports as usual.
 */
export const JOB_STATES = [
  'offered',
  'downloading',
  'verifying',
  'installing',
  'health-check',
  'installed',
  'failed',
  'rolled_back',
  'rejected',
  // issue 9: PatchCancel honoured (terminal, not finished: the patch may be offered again)
  'cancelled',
  // issue 9: the install asked for a reboot; the job resumes on the new boot and checks there
  'rebooting',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  // rejected: a check failed (signature, keyId, expiry, appliesTo, version, URL); failed: could not even try.
  offered: ['downloading', 'rejected', 'failed', 'cancelled'],
  // rejected: the server sent more than `size` bytes; failed: slow retrieval / network gave up.
  downloading: ['verifying', 'rejected', 'failed', 'cancelled'],
  // rejected: size or sha256 mismatch.
  verifying: ['installing', 'rejected', 'failed', 'cancelled'],
  // failed: the install command failed (rollback ran) or the job was interrupted mid-install.
  installing: ['health-check', 'rebooting', 'failed', 'cancelled'],
  rebooting: ['health-check', 'failed'],
  'health-check': ['installed', 'rolled_back', 'failed'],
  installed: [],
  failed: [],
  rolled_back: [],
  rejected: [],
  cancelled: [],
};

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['installed', 'failed', 'rolled_back', 'rejected', 'cancelled']);

/** Terminal states that ran (or tried to run) the install: their patch id may never run again. */
export const FINISHED_STATES: ReadonlySet<JobState> = new Set(['installed', 'failed', 'rolled_back']);

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(from: JobState, to: JobState): void {
  if (!canTransition(from, to)) throw new PatchError('ILLEGAL_TRANSITION', `illegal patch job transition ${from} -> ${to}`, 'fatal');
}

/**
 * The PROTOCOL.md PatchStatus state for a job state: `offered` is not reported (nothing happened
 * yet), `health-check` is still `installing` as far as the daemon is concerned.
 */
export function wireState(state: JobState): PatchState | undefined {
  if (state === 'offered') return undefined;
  if (state === 'health-check' || state === 'rebooting') return 'installing';
  return state;
}
