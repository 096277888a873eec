import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PatchError } from '../patches/patch-error.js';
import type { PatchOffer } from '../src/protocol/types.js';
import { compareVersions as compare, parseVersion } from '../patches/version-match.js';
import { FINISHED_STATES, JOB_STATES, assertTransition, type JobState } from './patch-job-states.js';
import type { CommandGroup } from './patch-commands.js';

/** The persisted job: enough to resume it after a crash or reboot. */
export interface JobRecord {
  patchId: string;
  version: string;
  rolloutId?: string;
  /** The offer as received, so a resumed job re-verifies the same signed bytes. */
  offer: PatchOffer;
  state: JobState;
  detail: string;
  /** Software version when the job started installing (for rollback checks and reports). */
  fromVersion?: string;
  /** The rollback command has started; a resumed job re-runs it (rollback must be idempotent). */
  rollingBack?: boolean;
  /** Times this job was resumed after a restart; bounded so a crashing step can never loop. */
  resumes: number;
  /** The install/check/rollback command running now (persisted before it is awaited, issue 9 fault 7). */
  command?: CommandGroup | null;
  /** The daemon asked to cancel this job (PatchCancel); honoured until the point of no return. */
  cancelRequested?: boolean;
  /** A `failed` that may be retried (download timeout, install exit 75): reported, and not added to `finished`. */
  retryable?: boolean;
  /** Boot id when the install asked for a reboot: the job resumes once the boot id differs. */
  bootId?: string;
  updatedAt: string;
}

export interface PatchStateFile {
  version: 1;
  job: JobRecord | null;
  /** Highest version ever installed: no downgrade, no replay (issue 4 item 4). */
  highestInstalled: string | null;
  /** Patch ids that ever ran their install (installed, failed, rolled_back): never run again. */
  finished: string[];
}

const EMPTY: PatchStateFile = { version: 1, job: null, highestInstalled: null, finished: [] };

/** Write `data` to `file` atomically and durably: temp file, fsync, rename, fsync the directory. */
export function writeFileDurable(file: string, data: string | Buffer): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    const dfd = openSync(dirname(file), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}

function validate(raw: unknown, file: string): PatchStateFile {
  const bad = (why: string) => new PatchError('PATCH_STATE_CORRUPT', `${file}: ${why}`, 'fatal');
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const s = raw as PatchStateFile;
  if (s.version !== 1) throw bad('unknown version');
  if (!Array.isArray(s.finished) || !s.finished.every((x) => typeof x === 'string')) throw bad('finished: expected strings');
  if (s.highestInstalled !== null && (typeof s.highestInstalled !== 'string' || parseVersion(s.highestInstalled) === null)) throw bad('highestInstalled: invalid');
  if (s.job !== null) {
    const j = s.job;
    if (typeof j !== 'object' || typeof j.patchId !== 'string' || typeof j.version !== 'string' || !JOB_STATES.includes(j.state)) {
      throw bad('job: invalid');
    }
    if (typeof j.offer !== 'object' || j.offer === null || typeof j.offer.manifest !== 'string') throw bad('job.offer: invalid');
  }
  return s;
}

/**
 * The agent's patch state in `<stateDir>/patch/state.json`: the current job plus the replay
 * history, in ONE file so a transition and the history it implies are committed together.
 * Every transition is written durably BEFORE the step it names is acted on (issue 4 item 4).
 * A corrupt file throws: losing the history would silently re-enable downgrades.
 */
export class PatchJobStore {
  readonly file: string;
  private cached?: PatchStateFile;

  constructor(readonly dir: string) {
    this.file = join(dir, 'patch', 'state.json');
  }

  load(): PatchStateFile {
    if (this.cached) return this.cached;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return (this.cached = structuredClone(EMPTY));
      throw err;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new PatchError('PATCH_STATE_CORRUPT', `${this.file}: not JSON`, 'fatal');
    }
    return (this.cached = validate(raw, this.file));
  }

  job(): JobRecord | null {
    return this.load().job;
  }

  private save(next: PatchStateFile): void {
    writeFileDurable(this.file, `${JSON.stringify(next, null, 2)}\n`);
    this.cached = next;
  }

  /** Start a new job in `offered` (replacing a finished one). */
  begin(job: Omit<JobRecord, 'state' | 'detail' | 'resumes' | 'updatedAt'>, now: number): JobRecord {
    const current = this.load();
    const record: JobRecord = { ...job, state: 'offered', detail: '', resumes: 0, updatedAt: new Date(now).toISOString() };
    this.save({ ...current, job: record });
    return record;
  }

  /** Persist `to` for the current job (asserting the transition table), with the history it implies. */
  transition(to: JobState, detail: string, now: number, extra: Partial<Pick<JobRecord, 'fromVersion' | 'rollingBack' | 'retryable' | 'bootId'>> = {}): JobRecord {
    const current = this.load();
    const job = current.job;
    if (!job) throw new PatchError('ILLEGAL_TRANSITION', `no patch job to move to ${to}`, 'fatal');
    assertTransition(job.state, to);
    const next: PatchStateFile = { ...current, finished: [...current.finished] };
    next.job = { ...job, ...extra, state: to, detail, updatedAt: new Date(now).toISOString() };
    // A retryable failure did not use the patch up: the daemon may offer it again (RULES.md "Retries").
    if (FINISHED_STATES.has(to) && !(to === 'failed' && next.job.retryable) && !next.finished.includes(job.patchId)) next.finished.push(job.patchId);
    if (to === 'installed' && (!next.highestInstalled || compare(job.version, next.highestInstalled) > 0)) next.highestInstalled = job.version;
    this.save(next);
    return next.job;
  }

  /** Update the current job without changing its state (resume counter, rollback marker). */
  update(patch: Partial<Pick<JobRecord, 'resumes' | 'rollingBack' | 'detail' | 'fromVersion' | 'version' | 'command' | 'cancelRequested' | 'retryable' | 'bootId'>>, now: number): JobRecord {
    const current = this.load();
    if (!current.job) throw new PatchError('ILLEGAL_TRANSITION', 'no patch job to update', 'fatal');
    const job = { ...current.job, ...patch, updatedAt: new Date(now).toISOString() };
    this.save({ ...current, job });
    return job;
  }
}
