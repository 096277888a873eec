import type { Readable } from 'node:stream';
import type { Counter } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { PatchError } from '../../patches/patch-error.js';
import type { PatchCancel, PatchOffer, PatchStatus } from '../protocol/types.js';
import { FINAL_PATCH_STATES, PATCH_STATE_RANK, type PatchState } from '../protocol/names.js';
import { InstallGrace } from './install-grace.js';
import { LogThrottle } from '../log-throttle.js';
import { parseManifest, artifactPath, KEY_ID_PATTERN, type Manifest } from '../../patches/manifest.js';
import { loadPinnedKeys, verifySignatures, type PinnedKey } from '../../patches/signing.js';
import { ArtifactStore } from './artifact-store.js';
import { PatchRepository, type DevicePatchRow, type PatchRow } from './patch-repository.js';

export interface PatchServiceDeps {
  repo: PatchRepository;
  artifacts: ArtifactStore;
  clock: Clock;
  log: Logger;
  /** `fleet_patch_results_total{result}` from createPatchMetrics. */
  results: Counter<'result'>;
  /** `fleet_patch_status_dropped_total`: states for a patch the device was never offered. */
  dropped?: Counter;
  /** config.patches.releaseKeys: PEM public key paths. */
  releaseKeys: readonly string[];
  /** config.patches.threshold: distinct release keys that must have signed. */
  threshold: number;
  maxArtifactBytes: number;
  /**
   * Owned by the eligibility side (IntegrityRegistry.register): record `digest` as the expected
   * integrity of `version`. Called inside the publish transaction; throwing aborts the publish.
   */
  registerIntegrity(version: string, digest: string, source: string): void;
  /** Publish a command JSON (PatchOffer, PatchCancel) on fleet/v1/<id>/cmd/patch. */
  sendToDevice(deviceId: string, payload: string): void | Promise<void>;
  /**
   * Can the device receive a command now, i.e. is its subscription to its own `cmd/` topic in place in this
   * connection (PROTOCOL.md "Delivery of daemon -> device commands")? Commands for a device that cannot are
   * only recorded; {@link PatchService.onDeviceReady} sends them. Default: always (tests without a broker).
   */
  canReceive?(deviceId: string): boolean;
  /**
   * Is an offer made by this rollout still wanted? An offer the device never acted on is not re-sent once its
   * rollout has ended (aborted: no further offers). Default: always (manual offers have no rollout).
   */
  rolloutActive?(rolloutId: string): boolean;
  /** Install grace settings (RULES.md "Updates and alerting work together"). */
  installGrace?: { restartGraceMs: number; maxInstallMs: number };
}

export interface PatchView {
  id: string;
  version: string;
  appliesTo: Manifest['appliesTo'];
  artifact: Manifest['artifact'];
  createdAt: string;
  expiresAt: string;
  keyId: string;
  integrity: string | null;
  signers: string[];
  devices?: Record<string, number>;
}

export type StatusListener = (deviceId: string, status: PatchStatus, now: number) => void;

export interface SignatureInput {
  keyId: string;
  signature: string;
}

const TERMINAL = FINAL_PATCH_STATES;
/** Progress order (src/protocol/names.ts): a late or repeated status never moves a device backwards. */
const RANK: Record<string, number> = PATCH_STATE_RANK;

/**
 * The daemon's patch channel (issue 4 item 3): publish (signatures, size and sha256 verified
 * before anything is stored), offers to single devices, artifact access, device patch states.
 */
/** `latest` marker: the device reported a state for a patch it was never offered (dropped until an offer). */
const UNOFFERED = '(never offered)';

export class PatchService {
  private keys?: PinnedKey[];
  /**
   * The latest known state per device (one entry a device), so the heartbeat's `patch` field, which
   * agents repeat in every heartbeat after a patch, costs no SQL once it changes nothing.
   */
  private readonly latest = new Map<string, { patchId: string; state: string }>();
  private readonly listeners: StatusListener[] = [];
  private readonly grace: InstallGrace;
  /** One warn line per device a minute for unsolicited patch states (a heartbeat repeats them every beat). */
  private readonly unsolicitedLog = new LogThrottle(60_000);

  constructor(private readonly deps: PatchServiceDeps) {
    this.grace = new InstallGrace(deps.installGrace ?? { restartGraceMs: 300_000, maxInstallMs: 3_600_000 });
  }

  /** Loads the release keys; a missing or non-Ed25519 key file stops the daemon at start. */
  start(): void {
    // An install in progress when the daemon stopped is still one (its silence stays expected).
    for (const r of this.deps.repo.installing()) this.grace.restoreInstalling(r.device_id, r.updated_at);
    // And one that had just finished and was restarting: without this a daemon restart in that window judged the
    // device's expected restart silence as a loss once the start-up grace was over (a false page after patching).
    const now = this.deps.clock.now();
    for (const r of this.deps.repo.restarting(now - this.grace.restartGraceMs)) this.grace.restoreRestarting(r.device_id, r.updated_at);
    this.keys = loadPinnedKeys(this.deps.releaseKeys);
    this.deps.log.info({ keyIds: this.keys.map((k) => k.keyId), threshold: this.deps.threshold }, 'release keys loaded');
  }

  stop(): void {}

  onStatus(listener: StatusListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private releaseKeys(): PinnedKey[] {
    if (!this.keys) this.start();
    return this.keys!;
  }

  /**
   * Verify a manifest and its signatures against the release keys (RULES.md "Remote patching":
   * refuse unsigned patches and ones whose signatures do not verify). Signatures are checked over
   * the received bytes first, then the bytes are parsed.
   */
  verifyRelease(manifestBytes: Buffer, signatures: readonly SignatureInput[]): Manifest {
    const keys = this.releaseKeys();
    if (keys.length === 0) throw new ValidationError('patches.releaseKeys: no release keys configured; cannot publish');
    if (signatures.length === 0) throw new ValidationError('signatures: the patch is unsigned');
    const verdict = verifySignatures(manifestBytes, signatures, keys, this.deps.threshold);
    if (!verdict.ok) throw new ValidationError(`signatures: ${verdict.reason} (threshold ${this.deps.threshold})`);
    let manifest: Manifest;
    try {
      manifest = parseManifest(manifestBytes);
    } catch (err) {
      throw new ValidationError((err as PatchError).message);
    }
    if (!verdict.validKeyIds.includes(manifest.keyId)) throw new ValidationError(`keyId: ${manifest.keyId} is not a release key that signed the manifest`);
    if (Date.parse(manifest.expiresAt) <= this.deps.clock.now()) throw new ValidationError(`expiresAt: the manifest expired at ${manifest.expiresAt}`);
    return manifest;
  }

  /**
   * Publish in one request: manifest + signatures checked first (nothing read or stored when they
   * fail), then the artifact streamed to a temp file and checked for exact size and sha256, then
   * committed content-addressed, recorded, and its integrity registered for its version.
   */
  async publish(input: { manifestBytes: Buffer; signatures: SignatureInput[]; artifact: Readable; declaredLength?: number }): Promise<{ patch: PatchView; created: boolean }> {
    const manifest = this.verifyRelease(input.manifestBytes, input.signatures);
    const existing = this.deps.repo.get(manifest.id);
    if (existing && !existing.manifest.equals(input.manifestBytes)) throw new ConflictError(`patch ${manifest.id} already exists with another manifest`);
    const size = manifest.artifact.size;
    if (size > this.deps.maxArtifactBytes) throw new ValidationError(`artifact.size: ${size} exceeds patches.maxArtifactBytes ${this.deps.maxArtifactBytes}`);
    if (input.declaredLength !== undefined && input.declaredLength !== size) {
      throw new ValidationError(`artifact: upload is ${input.declaredLength} bytes, manifest says ${size}`);
    }
    let received;
    try {
      received = await this.deps.artifacts.receive(input.artifact, size);
    } catch (err) {
      if (/more than/.test((err as Error).message)) throw new ValidationError(`artifact: more than the ${size} bytes the manifest says`);
      throw err;
    }
    if (received.size !== size || received.sha256 !== manifest.artifact.sha256) {
      this.deps.artifacts.discard(received.tmpPath);
      throw new ValidationError(
        received.size !== size
          ? `artifact: ${received.size} bytes, manifest says ${size}`
          : `artifact: sha256 ${received.sha256} does not match the manifest's ${manifest.artifact.sha256}`,
      );
    }
    this.deps.artifacts.commit(received.tmpPath, received.sha256);
    // In the store's copy before the patch row: an instance without the file can serve it once offered.
    await this.deps.artifacts.share(received.sha256);
    if (existing) return { patch: this.view(existing), created: false };
    const row: PatchRow = {
      id: manifest.id,
      version: manifest.version,
      manifest: input.manifestBytes,
      signatures: JSON.stringify(input.signatures.map((s) => ({ keyId: s.keyId, signature: s.signature }))),
      sha256: manifest.artifact.sha256,
      size,
      integrity: manifest.integrity ?? null,
      created_at: Date.parse(manifest.createdAt),
      expires_at: Date.parse(manifest.expiresAt),
    };
    // One transaction: if the integrity registry refuses (e.g. another digest already registered
    // for this version) the patch is not published either.
    this.deps.repo.transaction(() => {
      this.deps.repo.insert(row);
      // RULES.md "Eligibility" 3: the digest registered for a version comes from a signed patch.
      if (manifest.integrity) this.deps.registerIntegrity(manifest.version, manifest.integrity, `patch:${manifest.id}`);
    });
    this.deps.log.info({ patchId: manifest.id, version: manifest.version, size }, 'patch published');
    return { patch: this.view(row), created: true };
  }

  view(row: PatchRow, devices?: Record<string, number>): PatchView {
    const m = parseManifest(row.manifest);
    const v: PatchView = {
      id: m.id,
      version: m.version,
      appliesTo: m.appliesTo,
      artifact: m.artifact,
      createdAt: m.createdAt,
      expiresAt: m.expiresAt,
      keyId: m.keyId,
      integrity: m.integrity ?? null,
      signers: (JSON.parse(row.signatures) as SignatureInput[]).map((s) => s.keyId),
    };
    if (devices) v.devices = devices;
    return v;
  }

  /** One published patch, without device counts (a primary-key lookup); undefined when unknown. */
  find(id: string): PatchView | undefined {
    const row = this.deps.repo.get(id);
    return row ? this.view(row) : undefined;
  }

  list(): PatchView[] {
    const counts = this.deps.repo.stateCounts();
    return this.deps.repo.list().map((r) => this.view(r, counts.get(r.id) ?? {}));
  }

  get(id: string): PatchView & { deviceStates: { deviceId: string; state: string; detail: string; rolloutId: string | null; updatedAt: string }[] } {
    const row = this.deps.repo.get(id);
    if (!row) throw new NotFoundError(`patch ${id} not found`);
    const states = this.deps.repo.devicesOf(id);
    const counts: Record<string, number> = {};
    for (const s of states) counts[s.state] = (counts[s.state] ?? 0) + 1;
    return {
      ...this.view(row, counts),
      deviceStates: states.map((s) => ({
        deviceId: s.device_id,
        state: s.state,
        detail: s.detail,
        rolloutId: s.rollout_id,
        updatedAt: new Date(s.updated_at).toISOString(),
      })),
    };
  }

  /** The PatchOffer for a patch: its exact signed bytes, the primary signature and all of them. */
  buildOffer(row: PatchRow, rolloutId?: string): PatchOffer {
    const manifest = parseManifest(row.manifest);
    const signatures = JSON.parse(row.signatures) as SignatureInput[];
    const primary = signatures.find((s) => s.keyId === manifest.keyId) ?? signatures[0]!;
    const offer: PatchOffer = { manifest: row.manifest.toString('base64'), signature: primary.signature, url: artifactPath(row.id) };
    if (rolloutId !== undefined) offer.rolloutId = rolloutId;
    if (signatures.length > 1) offer.signatures = signatures;
    return offer;
  }

  /**
   * Offer a patch to one device (issue 4: `POST /api/v1/devices/:id/offer`). One record of "offered" per
   * device and patch, whoever offers (issue 9 fault 6): a second offer of the same patch to the same device,
   * manual or by a rollout, is refused (409) and nothing is recorded. The record is committed before the
   * send; the send happens now only if the device can receive it, else on its next ready signal.
   */
  async offer(deviceId: string, patchId: string, rolloutId?: string): Promise<PatchOffer> {
    const row = this.deps.repo.get(patchId);
    if (!row) throw new NotFoundError(`patch ${patchId} not found`);
    const now = this.deps.clock.now();
    if (row.expires_at <= now) throw new ConflictError(`patch ${patchId} expired at ${new Date(row.expires_at).toISOString()}`);
    this.deps.repo.transaction(() => this.recordOffer(deviceId, patchId, rolloutId ?? null, now));
    return this.send(deviceId, patchId, rolloutId);
  }

  /**
   * The record half of an offer, for callers that commit it inside their own transaction (the rollout
   * scheduler commits the device's `offered` state and this record together). Throws ConflictError when the
   * device was already offered this patch, by a person or by any rollout.
   */
  recordOffer(deviceId: string, patchId: string, rolloutId: string | null, now: number): void {
    const conflict = this.recordOffers([{ deviceId, retry: false }], patchId, rolloutId, now).get(deviceId);
    if (conflict) throw conflict;
  }

  /**
   * A retry of an offer already recorded (RULES.md "Retries"): the one offer record stands; the device's patch
   * state goes back to `offered`, so its statuses for the new try are recorded and a lost retry is re-sent.
   */
  recordRetry(deviceId: string, patchId: string, rolloutId: string | null, now: number): void {
    this.recordOffers([{ deviceId, retry: true }], patchId, rolloutId, now);
  }

  /**
   * recordOffer and recordRetry for many devices of one patch at once (a rollout wave), inside the caller's
   * transaction: the offer records in one statement per 500 devices and no read per device, so a wave costs
   * the event loop a few round trips on PostgreSQL. Returns the ConflictError of each first offer whose
   * device was already offered this patch (nothing written for it); every other device is `offered` now.
   */
  recordOffers(items: readonly { deviceId: string; retry: boolean }[], patchId: string, rolloutId: string | null, now: number): Map<string, ConflictError> {
    const fresh = this.deps.repo.recordOffers(
      items.map((i) => i.deviceId),
      patchId,
      rolloutId,
      now,
    );
    const conflicts = new Map<string, ConflictError>();
    const offered: string[] = [];
    for (const { deviceId, retry } of items) {
      if (!fresh.has(deviceId) && !retry) {
        const prior = this.deps.repo.offerOf(deviceId, patchId);
        conflicts.set(deviceId, new ConflictError(`device ${deviceId} was already offered ${patchId}${prior?.rollout_id ? ` by rollout ${prior.rollout_id}` : ' (manual offer)'}`));
        continue;
      }
      offered.push(deviceId);
      this.latest.delete(deviceId); // the stored state is 'offered' again
    }
    this.deps.repo.markOffered(offered, patchId, rolloutId, now);
    return conflicts;
  }

  /**
   * The send half: publish the recorded offer if the device can receive it now (else its ready signal will).
   * A repeat of the same offer is harmless: the agent handles a repeated offer idempotently.
   */
  async send(deviceId: string, patchId: string, rolloutId?: string): Promise<PatchOffer> {
    const row = this.deps.repo.get(patchId);
    if (!row) throw new NotFoundError(`patch ${patchId} not found`);
    const offer = this.buildOffer(row, rolloutId);
    if (!this.canReceive(deviceId)) {
      this.deps.log.info({ deviceId, patchId, rolloutId }, 'patch offer recorded; sent once the device has subscribed');
      return offer;
    }
    await this.deps.sendToDevice(deviceId, JSON.stringify(offer));
    this.deps.log.info({ deviceId, patchId, rolloutId }, 'patch offered');
    return offer;
  }

  /**
   * Send an offer already recorded for this device again, unchanged and without recording a new one
   * (a reconnecting device reconciles; the agent handles a repeated offer idempotently). Only while
   * the device has reported nothing since the offer.
   */
  async redeliver(deviceId: string, patchId: string, rolloutId?: string): Promise<boolean> {
    const row = this.deps.repo.get(patchId);
    if (!row || !this.deps.repo.hasOffer(deviceId, patchId)) return false;
    if (this.deps.repo.devicePatch(deviceId, patchId)?.state !== 'offered') return false;
    if (row.expires_at <= this.deps.clock.now()) return false;
    if (!this.canReceive(deviceId)) return false;
    await this.deps.sendToDevice(deviceId, JSON.stringify(this.buildOffer(row, rolloutId)));
    return true;
  }

  /**
   * Ask the device to cancel its job of `patchId` (PROTOCOL.md "PatchCancel"): recorded first, sent now if the
   * device can receive it, and re-sent on every ready signal until the job ends. False when the device has
   * no unfinished job of this patch.
   */
  async cancel(deviceId: string, patchId: string, rolloutId?: string): Promise<boolean> {
    const prev = this.deps.repo.devicePatch(deviceId, patchId);
    if (!prev || TERMINAL.has(prev.state)) return false;
    this.deps.repo.requestCancel(deviceId, patchId, this.deps.clock.now());
    if (this.canReceive(deviceId)) await this.sendCancel(deviceId, patchId, rolloutId ?? prev.rollout_id ?? undefined);
    return true;
  }

  private async sendCancel(deviceId: string, patchId: string, rolloutId: string | undefined): Promise<void> {
    const cancel: PatchCancel = { action: 'cancel', patchId, ...(rolloutId ? { rolloutId } : {}) };
    await this.deps.sendToDevice(deviceId, JSON.stringify(cancel));
    this.deps.log.info({ deviceId, patchId, rolloutId }, 'patch cancel sent');
  }

  /**
   * The device's subscription to its own `cmd/` topic is in place (PROTOCOL.md "Delivery of daemon -> device
   * commands"): send every command still owed to it, offers it has not acted on and cancels of jobs not
   * ended. Called on each (re)connect once the device can receive; never records anything new.
   */
  async onDeviceReady(deviceId: string): Promise<number> {
    let sent = 0;
    const now = this.deps.clock.now();
    for (const owed of this.deps.repo.owedTo(deviceId)) {
      try {
        if (owed.cancel_requested_at != null) {
          await this.sendCancel(deviceId, owed.patch_id, owed.rollout_id ?? undefined);
          sent++;
          continue;
        }
        const row = this.deps.repo.get(owed.patch_id);
        if (!row || row.expires_at <= now) continue;
        if (owed.rollout_id && this.deps.rolloutActive && !this.deps.rolloutActive(owed.rollout_id)) continue;
        await this.deps.sendToDevice(deviceId, JSON.stringify(this.buildOffer(row, owed.rollout_id ?? undefined)));
        this.deps.log.info({ deviceId, patchId: owed.patch_id, rolloutId: owed.rollout_id }, 'pending patch offer sent on ready');
        sent++;
      } catch (err) {
        this.deps.log.warn({ err, deviceId, patchId: owed.patch_id }, 'pending command not sent; sent again at the next ready signal');
      }
    }
    return sent;
  }

  private canReceive(deviceId: string): boolean {
    return this.deps.canReceive ? this.deps.canReceive(deviceId) : true;
  }

  /** Was this device offered this patch, by anyone (the one record, issue 9 fault 6)? */
  wasOffered(deviceId: string, patchId: string): boolean {
    return this.deps.repo.hasOffer(deviceId, patchId);
  }

  /** Devices offered this patch and by what (rollout id, or null for a manual offer). */
  offeredDevices(patchId: string): Map<string, string | null> {
    return new Map(this.deps.repo.offersOfPatch(patchId).map((o) => [o.device_id, o.rollout_id]));
  }

  /** The install-grace predicate (src/patches/install-grace.ts): installing or restarting after it at wall `now`. */
  isInstallingOrRestarting(deviceId: string, now: number): boolean {
    return this.grace.isInstallingOrRestarting(deviceId, now);
  }

  /** For the health evaluator: when this device's install grace ends (wall ms, > `now`), or null (InstallGrace.graceUntil). */
  installGraceUntil(deviceId: string, now: number): number | null {
    return this.grace.graceUntil(deviceId, now);
  }

  /** Every heartbeat (after its `patch` field was recorded): the first one after an install's final status ends the grace. */
  noteHeartbeat(deviceId: string, at: number): void {
    this.grace.onHeartbeat(deviceId, at);
  }

  /**
   * May this device download this patch's artifact? Only with an offer (issue 4 item 3). Resolves its file
   * (fetched from the store's copy when this instance's data dir lacks it), or undefined.
   */
  async artifactFor(deviceId: string, patchId: string): Promise<{ path: string; size: number } | undefined> {
    if (!this.deps.repo.hasOffer(deviceId, patchId)) return undefined;
    const row = this.deps.repo.get(patchId);
    if (!row) return undefined;
    if (!(await this.deps.artifacts.ensure(row.sha256, row.size))) {
      throw new Error(`patch ${patchId}: artifact ${row.sha256} is neither in the data dir nor in the store`);
    }
    return { path: this.deps.artifacts.path(row.sha256), size: row.size };
  }

  /**
   * Record a PatchStatus (or the heartbeat's `patch` field, without detail). Cheap and idempotent:
   * a repeat, a stale (lower-ranked) state, a status after a terminal one, or one for an unknown
   * patch changes nothing. Terminal states are counted once per (device, patch, state).
   * Returns true when the stored state changed.
   */
  recordStatus(deviceId: string, status: PatchStatus, now: number): boolean {
    const state: string = status.state;
    if (!(state in RANK)) return false;
    // The same decisions as on the stored row below, taken from memory when nothing can change.
    const known = this.latest.get(deviceId);
    if (known && known.patchId === status.patchId) {
      if (known.state === UNOFFERED) {
        this.dropUnoffered(deviceId, status.patchId, state);
        return false;
      }
      if (TERMINAL.has(known.state) || RANK[state]! < RANK[known.state]!) return false;
      if (known.state === state && status.detail === undefined) return false;
    }
    const prev = this.deps.repo.devicePatch(deviceId, status.patchId);
    // Desired state lives here (PROTOCOL.md): a state for a patch this device was never offered is a claim, not a
    // transition. Stored, it showed in `patch list` and opened the install grace, so a device that said
    // "installing" once and went silent was `restarting` and opened no loss ticket for expectedRestartGraceS.
    if (!prev) {
      // Remembered too, so a device repeating the claim in every heartbeat costs no SQLite read (an offer clears it).
      this.latest.set(deviceId, { patchId: status.patchId, state: UNOFFERED });
      this.dropUnoffered(deviceId, status.patchId, state);
      return false;
    }
    // Remember the stored state: agents repeat their latest patch state in every heartbeat, and after a restart
    // each repeat of a finished install would otherwise read the store again (issue 12: no SQLite per heartbeat).
    this.latest.set(deviceId, { patchId: status.patchId, state: prev.state });
    if (TERMINAL.has(prev.state)) return false;
    if (RANK[state]! < RANK[prev.state]!) return false;
    if (prev.state === state && (status.detail === undefined || status.detail === prev.detail)) return false;
    const counted = new Set((prev?.counted ?? '').split(',').filter(Boolean));
    const countNow = TERMINAL.has(state) && !counted.has(state);
    if (countNow) counted.add(state);
    const row: DevicePatchRow = {
      device_id: deviceId,
      patch_id: status.patchId,
      rollout_id: status.rolloutId ?? prev?.rollout_id ?? null,
      state,
      detail: (status.detail ?? prev?.detail ?? '').slice(0, 1000),
      counted: [...counted].join(','),
      updated_at: now,
    };
    this.deps.repo.upsertDevicePatch(row);
    this.latest.set(deviceId, { patchId: status.patchId, state });
    // A stored state that moved forward: the only input that may open the install grace.
    this.grace.onTransition(deviceId, state, now);
    if (countNow) this.deps.results.inc({ result: state });
    for (const l of this.listeners) {
      try {
        l(deviceId, { ...status, state: state as PatchState }, now);
      } catch (err) {
        this.deps.log.error({ err, deviceId }, 'patch status listener failed');
      }
    }
    return true;
  }

  /** A state for a patch never offered to the device: counted, logged once a minute per device. */
  private dropUnoffered(deviceId: string, patchId: string, state: string): void {
    this.deps.dropped?.inc();
    if (this.unsolicitedLog.admit(deviceId, this.deps.clock.monotonicNow()) !== undefined) {
      this.deps.log.warn({ deviceId, patchId: patchId.slice(0, 128), state }, 'patch state for a patch never offered to this device: dropped');
    }
  }

  /** Patch states of one device, for `GET /api/v1/devices/:id` detail. */
  deviceStates(deviceId: string): { patchId: string; state: string; detail: string; rolloutId: string | null; updatedAt: string }[] {
    return this.deps.repo.patchesOfDevice(deviceId).map((r) => ({
      patchId: r.patch_id,
      state: r.state,
      detail: r.detail,
      rolloutId: r.rollout_id,
      updatedAt: new Date(r.updated_at).toISOString(),
    }));
  }
}

export function isKeyId(v: unknown): v is string {
  return typeof v === 'string' && KEY_ID_PATTERN.test(v);
}
