import { loadPinnedKeys, type PinnedKey } from '../patches/signing.js';
import type { PatchPort, PatchPortDeps, PatchPortFactory } from './patch-port.js';
import { parsePatchSettings, type PatchSettings } from './patch-settings.js';
import { PatchJobStore } from './patch-job-store.js';
import { PatchJobRunner } from './patch-job.js';
import { parseCancel } from '../patches/offer.js';

/**
 * The agent's patch port (agent/patch-port.ts). Bad `patches:` settings or unreadable keys do not
 * stop the agent: monitoring keeps working and every offer is reported `rejected` with the reason,
 * so the daemon sees why this device cannot be patched.
 */
export const createPatchPort: PatchPortFactory = (deps: PatchPortDeps): PatchPort => {
  const log = deps.log.child({ module: 'patch' });
  let settings: PatchSettings;
  let disabledReason: string | undefined;
  try {
    settings = parsePatchSettings(deps.settings, deps.stateDir);
  } catch (err) {
    disabledReason = (err as Error).message;
    settings = parsePatchSettings(undefined, deps.stateDir);
  }
  let pinnedKeys: PinnedKey[] = [];
  if (!disabledReason) {
    try {
      pinnedKeys = loadPinnedKeys(settings.keys);
      if (pinnedKeys.length === 0) disabledReason = 'no release keys pinned (patches.keys)';
      else if (pinnedKeys.length < settings.threshold) disabledReason = `patches.threshold ${settings.threshold} exceeds the ${pinnedKeys.length} distinct pinned keys`;
    } catch (err) {
      disabledReason = `patches.keys: ${(err as Error).message}`;
    }
  }
  // No keys at all is a device that simply takes no patches (a warning); bad keys or an impossible
  // threshold are a broken configuration (an error).
  if (disabledReason) (pinnedKeys.length === 0 && !disabledReason.startsWith('patches.keys:') ? log.warn : log.error).call(log, 'patching disabled', { reason: disabledReason });
  else log.info('patching ready', { keyIds: pinnedKeys.map((k) => k.keyId), threshold: settings.threshold });

  const store = new PatchJobStore(deps.stateDir);
  const runner = new PatchJobRunner({
    deviceId: deps.deviceId,
    deviceType: deps.deviceType,
    get token() {
      return deps.token; // a getter upstream (the tokenFile, re-read): keep it live
    },
    daemonUrl: deps.daemonUrl,
    ...(deps.ca ? { ca: deps.ca } : {}),
    settings,
    pinnedKeys,
    ...(disabledReason !== undefined ? { disabledReason } : {}),
    store,
    currentVersion: deps.currentVersion,
    softwareDir: deps.softwareDir,
    softwareVersionFile: deps.softwareVersionFile,
    publishStatus: deps.publishStatus,
    onInstalled: deps.onInstalled,
    log,
  });
  let resumed = false;
  return {
    // Every cmd/patch message: a PatchCancel (PROTOCOL.md) acts at once; anything else is an offer.
    handleOffer: (payload) => {
      const cancel = parseCancel(payload);
      if (cancel) runner.cancel(cancel.patchId, cancel.rolloutId);
      else void runner.handleOffer(payload);
    },
    heartbeatField: () => {
      try {
        return runner.latest();
      } catch (err) {
        log.error('patch state unreadable', { err });
        return undefined;
      }
    },
    onConnected: () => {
      try {
        runner.republishLatest();
      } catch (err) {
        log.error('patch state unreadable', { err });
        return;
      }
      // Resume once per process: a reconnect while the job runs must not start it twice.
      if (!resumed) {
        resumed = true;
        void runner.resume();
      }
    },
    stop: () => runner.stop(),
  };
};
