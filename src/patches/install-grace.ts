import { FINAL_PATCH_STATES, INSTALLING_PATCH_STATES } from '../protocol/names.js';

/**
 * "Is this device installing or restarting after an install?" — the one place this fact lives (RULES.md
 * "Updates and alerting work together", issue 8 fault 1). The health evaluator asks it through its
 * `installGraceUntil(id, now)` dependency (PatchService.installGraceUntil); nothing else keeps its own copy.
 *
 * Rules:
 * - Only a *transition into* an install opens the grace: the caller feeds {@link InstallGrace.onTransition}
 *   with state changes only (PatchService.recordStatus fires its listeners only when the stored state moved
 *   forward), never with a state repeated by a heartbeat after a reconnect.
 * - While installing (`verifying`/`installing`) the device's silence is expected, bounded by
 *   `maxInstallMs` so a device stuck installing is judged again.
 * - A final status (installed, rolled_back, failed, cancelled) reached from an install keeps the grace for
 *   at most `restartGraceMs`, and the device's first heartbeat received after that final status ends it:
 *   from then on its silence and flapping are judged as any other device's.
 * - A final state that did not follow an install in this record (rejected before installing, a repeat)
 *   opens nothing.
 */
export interface InstallGraceSettings {
  /** The expected-restart grace after an install's final status (config health.expectedRestartGraceS). */
  restartGraceMs: number;
  /** Longest an install may hide a device's silence (the progress timeout of rollouts, default 1 h). */
  maxInstallMs: number;
}

interface Entry {
  /** Set while installing: when the install began. */
  installingSince: number | null;
  /** Set after an install's final status: when it arrived; cleared by the next heartbeat. */
  finalAt: number | null;
}

export class InstallGrace {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly settings: InstallGraceSettings) {}

  /** How long after an install's final status the device may stay silent (health.expectedRestartGraceS). */
  get restartGraceMs(): number {
    return this.settings.restartGraceMs;
  }

  /** A patch state change (never a repeat) heard at `at`. */
  onTransition(deviceId: string, state: string, at: number): void {
    const entry = this.entries.get(deviceId);
    if (INSTALLING_PATCH_STATES.has(state)) {
      this.entries.set(deviceId, { installingSince: entry?.installingSince ?? at, finalAt: null });
      return;
    }
    if (FINAL_PATCH_STATES.has(state)) {
      if (entry?.installingSince != null) this.entries.set(deviceId, { installingSince: null, finalAt: at });
      else this.entries.delete(deviceId);
      return;
    }
    // downloading: a new job, not yet installing; an older grace has no bearing on it.
    if (entry && entry.installingSince === null) this.entries.delete(deviceId);
  }

  /** A heartbeat received at `at`: the first one after an install's final status ends the grace. */
  onHeartbeat(deviceId: string, at: number): void {
    const entry = this.entries.get(deviceId);
    // >=: a heartbeat handled right after the status (its own `patch` field, or the same millisecond) is already "back".
    if (entry && entry.finalAt !== null && at >= entry.finalAt) this.entries.delete(deviceId);
  }

  /** Restore, at start, an install that ended at `finalAt` (wall ms) on a device not heard from since. */
  restoreRestarting(deviceId: string, finalAt: number): void {
    this.entries.set(deviceId, { installingSince: null, finalAt });
  }

  /** Restore an install in progress found in the store at start (its `since` from the stored row). */
  restoreInstalling(deviceId: string, since: number): void {
    this.entries.set(deviceId, { installingSince: since, finalAt: null });
  }

  /**
   * When the device's grace ends (wall ms, exclusive), or null when it is not installing or restarting after an
   * install at wall time `now`. While installing: the install's start + `maxInstallMs` (a device stuck installing
   * is judged again then); after the final status: that status + `restartGraceMs`, unless its first heartbeat
   * closed it earlier. The result is always > `now`, so a caller may schedule its next look at it.
   */
  graceUntil(deviceId: string, now: number): number | null {
    const entry = this.entries.get(deviceId);
    if (!entry) return null;
    const until = entry.installingSince !== null ? entry.installingSince + this.settings.maxInstallMs : entry.finalAt! + this.settings.restartGraceMs;
    if (now < until) return until;
    this.entries.delete(deviceId);
    return null;
  }

  /** True while the device installs, or restarts after the install's final status (until its first heartbeat). */
  isInstallingOrRestarting(deviceId: string, now: number): boolean {
    return this.graceUntil(deviceId, now) !== null;
  }

  /** Devices tracked now (tests, metrics): only the few updating at this moment. */
  size(): number {
    return this.entries.size;
  }
}
