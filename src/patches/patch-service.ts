import type { Readable } from 'node:stream';
import type { Counter } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { PatchError } from '../../patches/patch-error.js';
import type { PatchOffer, PatchStatus } from '../protocol/types.js';
import type { PatchState } from '../protocol/names.js';
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
  /** Publish a PatchOffer JSON on fleet/v1/<id>/cmd/patch. */
  sendToDevice(deviceId: string, payload: string): void | Promise<void>;
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

const TERMINAL: ReadonlySet<string> = new Set(['installed', 'failed', 'rolled_back', 'rejected']);
/** Progress order: a late or repeated status never moves a device backwards. */
const RANK: Record<string, number> = { offered: 0, downloading: 1, verifying: 2, installing: 3, installed: 4, failed: 4, rolled_back: 4, rejected: 4 };

/**
 * The daemon's patch channel (issue 4 item 3): publish (signatures, size and sha256 verified
 * before anything is stored), offers to single devices, artifact access, device patch states.
 */
export class PatchService {
  private keys?: PinnedKey[];
  /**
   * The latest known state per device (one entry a device), so the heartbeat's `patch` field, which
   * agents repeat in every heartbeat after a patch, costs no SQL once it changes nothing.
   */
  private readonly latest = new Map<string, { patchId: string; state: string }>();
  private readonly listeners: StatusListener[] = [];

  constructor(private readonly deps: PatchServiceDeps) {}

  /** Loads the release keys; a missing or non-Ed25519 key file stops the daemon at start. */
  start(): void {
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

  /** Offer a patch to one device (issue 4: `POST /api/v1/devices/:id/offer`; the rollout scheduler reuses it). */
  async offer(deviceId: string, patchId: string, rolloutId?: string): Promise<PatchOffer> {
    const row = this.deps.repo.get(patchId);
    if (!row) throw new NotFoundError(`patch ${patchId} not found`);
    const now = this.deps.clock.now();
    if (row.expires_at <= now) throw new ConflictError(`patch ${patchId} expired at ${new Date(row.expires_at).toISOString()}`);
    const offer = this.buildOffer(row, rolloutId);
    // Record first: the device may fetch the artifact as soon as the message arrives.
    this.deps.repo.transaction(() => {
      this.deps.repo.recordOffer(deviceId, patchId, rolloutId ?? null, now);
      const prev = this.deps.repo.devicePatch(deviceId, patchId);
      this.deps.repo.upsertDevicePatch({
        device_id: deviceId,
        patch_id: patchId,
        rollout_id: rolloutId ?? null,
        state: 'offered',
        detail: '',
        counted: prev?.counted ?? '',
        updated_at: now,
      });
    });
    this.latest.delete(deviceId); // the stored state is 'offered' again
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
    await this.deps.sendToDevice(deviceId, JSON.stringify(this.buildOffer(row, rolloutId)));
    return true;
  }

  /** May this device download this patch's artifact? Only with an offer (issue 4 item 3). */
  artifactFor(deviceId: string, patchId: string): { path: string; size: number } | undefined {
    if (!this.deps.repo.hasOffer(deviceId, patchId)) return undefined;
    const row = this.deps.repo.get(patchId);
    if (!row) return undefined;
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
      if (TERMINAL.has(known.state) || RANK[state]! < RANK[known.state]!) return false;
      if (known.state === state && status.detail === undefined) return false;
    }
    const prev = this.deps.repo.devicePatch(deviceId, status.patchId);
    if (!prev && !this.deps.repo.exists(status.patchId)) return false;
    if (prev) {
      if (TERMINAL.has(prev.state)) return false;
      if (RANK[state]! < RANK[prev.state]!) return false;
      if (prev.state === state && (status.detail === undefined || status.detail === prev.detail)) return false;
    }
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
