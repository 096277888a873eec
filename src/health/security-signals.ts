import type { ConditionReport } from '../tickets/types.js';
import type { HealthSettings } from './liveness.js';
import { isSignatureOrHashFailure, securityConditions, type SecurityEvent } from './security.js';
import { SlidingWindowCounter } from './sliding-window.js';

/**
 * The security signals within `security.windowS` (RULES.md `security_incident`), counted O(1) per signal.
 * `evaluate` prunes the window and says whether the verdicts must be recomputed.
 */
export class SecuritySignals {
  private readonly auth = new SlidingWindowCounter();
  private readonly acl = new SlidingWindowCounter();
  private readonly patch = new SlidingWindowCounter();
  private readonly integrity = new SlidingWindowCounter();
  /** A signal arrived, or a tick's result was rolled back: recompute the verdicts. */
  dirty = false;

  /** Count one signal; false when it is malformed (the caller drops and counts it). */
  add(event: SecurityEvent, at: number): boolean {
    switch (event?.kind) {
      case 'auth_failure':
        this.auth.add(at, event.deviceId ?? '');
        break;
      case 'acl_violation':
        this.acl.add(at, event.deviceId ?? '');
        break;
      case 'patch_rejected':
        // The caller asserts a rejected patch; a detail, when given, must name the signature or hash.
        if (!event.deviceId || (event.detail !== undefined && !isSignatureOrHashFailure(event.detail))) return false;
        this.patch.add(at, event.deviceId);
        break;
      case 'integrity_mismatch':
        if (!event.deviceId) return false;
        this.integrity.add(at, event.deviceId);
        break;
      default:
        return false;
    }
    this.dirty = true;
    return true;
  }

  /** The reports holding now, or null when nothing changed since the last call. */
  evaluate(now: number, settings: HealthSettings): ConditionReport[] | null {
    const cutoff = now - settings.security.windowS * 1000;
    const before = this.total();
    this.auth.prune(cutoff);
    this.acl.prune(cutoff);
    this.patch.prune(cutoff);
    this.integrity.prune(cutoff);
    if (!this.dirty && before === this.total()) return null;
    this.dirty = false;
    return securityConditions(
      {
        authFailures: this.auth.total,
        aclViolations: this.acl.counts,
        patchFailures: this.patch.counts,
        integrityMismatchDevices: [...this.integrity.counts.keys()],
      },
      settings,
    );
  }

  private total(): number {
    return this.auth.total + this.acl.total + this.patch.total + this.integrity.total;
  }
}
