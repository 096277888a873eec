import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PatchError } from '../patches/patch-error.js';
import type { HeartbeatPatch, PatchStatus } from '../src/protocol/types.js';
import { parseManifest, artifactPath, type Manifest } from '../patches/manifest.js';
import { verifySignatures, type PinnedKey } from '../patches/signing.js';
import { parseOffer, type ParsedOffer } from '../patches/offer.js';
import { hashFile } from '../patches/artifact-hash.js';
import { compareVersions as compare, parseVersion, versionSatisfies as satisfies } from '../patches/version-match.js';
import type { AgentLogger } from './log.js';
import { FINISHED_STATES, isTerminal, wireState, type JobState } from './patch-job-states.js';
import { PatchJobStore, type JobRecord } from './patch-job-store.js';
import { downloadArtifact } from './patch-download.js';
import { runCommand, describeResult, endLeftoverGroup, type CommandResult } from './patch-commands.js';
import type { PatchSettings } from './patch-settings.js';

export interface OfferCheckContext {
  pinnedKeys: readonly PinnedKey[];
  threshold: number;
  now: number;
  clockSkewMs: number;
  deviceType: 'gateway' | 'sensor';
  currentVersion: string;
  highestInstalled: string | null;
  finished: readonly string[];
}

export type OfferVerdict = { ok: true; manifest: Manifest } | { ok: false; reason: string; manifest?: Manifest };

/** Best-effort read of an unverified manifest, only to name the patch in a rejection report. */
export function unverifiedPatchId(offer: ParsedOffer): string | undefined {
  try {
    const id = (JSON.parse(offer.manifestBytes.toString('utf8')) as { id?: unknown }).id;
    return typeof id === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pre-download checks, in the order issue 4 prescribes; the first failure is the reason.
 * Pure: a function of (offer, context), table-tested. Signatures are verified over the received
 * bytes BEFORE the manifest is parsed (TUF: never interpret unauthenticated metadata).
 */
export function checkOffer(offer: ParsedOffer, ctx: OfferCheckContext): OfferVerdict {
  // 1. signatures + threshold, counting distinct pinned keys
  const sig = verifySignatures(offer.manifestBytes, offer.signatures, ctx.pinnedKeys, ctx.threshold);
  if (!sig.ok) return { ok: false, reason: `signature: ${sig.reason}` };
  let manifest: Manifest;
  try {
    manifest = parseManifest(offer.manifestBytes);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  // 2. keyId names a pinned key, and that key is one that signed
  if (!ctx.pinnedKeys.some((k) => k.keyId === manifest.keyId)) return { ok: false, manifest, reason: `keyId ${manifest.keyId} is not a pinned key` };
  if (!sig.validKeyIds.includes(manifest.keyId)) return { ok: false, manifest, reason: `keyId ${manifest.keyId} did not sign the manifest` };
  // 3. expiry and not-yet-valid, with the clock-skew allowance (RULES.md: default 5 min)
  if (ctx.now - ctx.clockSkewMs >= Date.parse(manifest.expiresAt)) return { ok: false, manifest, reason: `expired at ${manifest.expiresAt}` };
  if (Date.parse(manifest.createdAt) > ctx.now + ctx.clockSkewMs) return { ok: false, manifest, reason: `createdAt ${manifest.createdAt} is in the future` };
  // 4. type and current version against appliesTo
  if (!manifest.appliesTo.types.includes(ctx.deviceType)) {
    return { ok: false, manifest, reason: `type ${ctx.deviceType} not in appliesTo.types [${manifest.appliesTo.types.join(',')}]` };
  }
  if (parseVersion(ctx.currentVersion) === null) return { ok: false, manifest, reason: `current software version '${ctx.currentVersion}' is not semver` };
  if (!satisfies(ctx.currentVersion, manifest.appliesTo.software)) {
    return { ok: false, manifest, reason: `current version ${ctx.currentVersion} outside appliesTo.software '${manifest.appliesTo.software}'` };
  }
  // 5. strictly newer than what runs and than anything ever installed; never the same patch twice
  if (compare(manifest.version, ctx.currentVersion) <= 0) {
    return { ok: false, manifest, reason: `downgrade: version ${manifest.version} is not greater than current ${ctx.currentVersion}` };
  }
  if (ctx.highestInstalled && compare(manifest.version, ctx.highestInstalled) <= 0) {
    return { ok: false, manifest, reason: `replay: version ${manifest.version} is not greater than ${ctx.highestInstalled}, installed before` };
  }
  if (ctx.finished.includes(manifest.id)) return { ok: false, manifest, reason: `replay: patch ${manifest.id} already ran` };
  // 6. the artifact URL names this patch (a signed manifest with another patch's URL is a mix-and-match attack)
  if (offer.url !== artifactPath(manifest.id)) return { ok: false, manifest, reason: `url '${offer.url.slice(0, 100)}' is not ${artifactPath(manifest.id)}` };
  return { ok: true, manifest };
}

export interface PatchJobDeps {
  deviceId: string;
  deviceType: 'gateway' | 'sensor';
  token: string;
  daemonUrl: string;
  /** agent.yaml `ca`: verifies an https daemonUrl (issue 10 fault 5). */
  ca?: Buffer;
  settings: PatchSettings;
  pinnedKeys: readonly PinnedKey[];
  /** Set when patching cannot work (bad settings, unreadable keys): every offer is rejected with it. */
  disabledReason?: string;
  store: PatchJobStore;
  currentVersion(): string;
  softwareDir: string;
  softwareVersionFile: string;
  publishStatus(status: PatchStatus): void;
  onInstalled(): void;
  log: AgentLogger;
  now?: () => number;
}

/** Restarts a job may survive in one state before it is ended (never loop on a step that crashes us). */
export const MAX_RESUMES = 3;

/**
 * Exit codes an install command may use (documented in README "Signed patches"):
 * 75 (EX_TEMPFAIL) = a transient failure, the daemon may retry; 76 = installed, a reboot is needed to take
 * effect (the agent reboots with `patches.reboot`, resumes on the new boot and commits only once the check
 * passes there: Mender's ArtifactReboot / ArtifactCommit).
 */
export const EXIT_RETRYABLE = 75;
export const EXIT_REBOOT = 76;

class Stopped extends Error {}

/**
 * Runs patch jobs one at a time: persisted transition first, then the step (issue 4 item 4).
 * After a crash `resume()` continues from the persisted state: pre-install states re-verify and
 * continue; an interrupted install is rolled back (`failed`); an interrupted health check is
 * re-run, at most MAX_RESUMES times, else rolled back. Every path ends in one terminal state.
 */
export class PatchJobRunner {
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private abort = new AbortController();
  /** Aborted by a PatchCancel or stop(): ends the download and kills the running command's process group. */
  private jobAbort = new AbortController();

  constructor(private readonly deps: PatchJobDeps) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** The latest job's state for the heartbeat's `patch` field. */
  latest(): HeartbeatPatch | undefined {
    const job = this.deps.store.job();
    if (!job) return undefined;
    const state = wireState(job.state);
    if (!state) return undefined;
    return { ...(job.rolloutId !== undefined ? { rolloutId: job.rolloutId } : {}), patchId: job.patchId, state };
  }

  republishLatest(): void {
    const job = this.deps.store.job();
    if (job) this.publish(job);
  }

  handleOffer(payload: Buffer): Promise<void> {
    return this.enqueue(() => this.offer(payload));
  }

  resume(): Promise<void> {
    return this.enqueue(() => this.resumeJob());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.jobAbort.abort();
    await this.queue;
  }

  /**
   * PROTOCOL.md "PatchCancel": stop a download, or an install not past its point of no return (the end of the
   * install command), restore the old version and report `cancelled`. Acts at once (not queued behind the
   * running step): it marks the job durably, then aborts the step. A cancel for a job past that point, or
   * already ended, is answered with the job's state as it is.
   */
  cancel(patchId: string, rolloutId?: string): void {
    const job = this.deps.store.job();
    if (!job || job.patchId !== patchId || (rolloutId !== undefined && job.rolloutId !== undefined && job.rolloutId !== rolloutId)) return;
    if (isTerminal(job.state) || job.state === 'health-check' || job.state === 'rebooting') {
      this.deps.log.info('cancel ignored: past the point of no return or ended', { patchId, state: job.state });
      if (isTerminal(job.state)) this.publish(job);
      return;
    }
    if (!job.cancelRequested) this.deps.store.update({ cancelRequested: true }, this.now());
    this.deps.log.info('patch job cancel requested', { patchId, state: job.state });
    this.jobAbort.abort();
  }

  private cancelRequested(): boolean {
    return this.deps.store.job()?.cancelRequested === true;
  }

  /** Read the boot id (a reboot changes it). */
  private bootId(): string {
    try {
      return readFileSync(this.deps.settings.bootIdFile, 'utf8').trim();
    } catch {
      return '';
    }
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step).catch((err: unknown) => {
      if (err instanceof Stopped) return;
      this.deps.log.error('patch job step failed', { err });
    });
    this.queue = run;
    return run;
  }

  private publish(job: JobRecord): void {
    const state = wireState(job.state);
    if (!state) return;
    const status: PatchStatus = { patchId: job.patchId, state, detail: job.detail };
    if (job.rolloutId !== undefined) status.rolloutId = job.rolloutId;
    if (state === 'failed' && job.retryable) status.retryable = true;
    try {
      this.deps.publishStatus(status);
    } catch (err) {
      this.deps.log.warn('could not publish patch status', { err, patchId: job.patchId });
    }
  }

  /** Persist, then report, then (the caller) act. */
  private move(to: JobState, detail = '', extra: { fromVersion?: string; rollingBack?: boolean; retryable?: boolean; bootId?: string } = {}): JobRecord {
    if (this.stopped) throw new Stopped();
    const job = this.deps.store.transition(to, detail, this.now(), extra);
    this.deps.log.info('patch job state', { patchId: job.patchId, state: to, detail });
    // health-check and rebooting are still `installing` on the wire: nothing new to report.
    if (to !== 'health-check' && to !== 'rebooting') this.publish(job);
    if (isTerminal(to)) this.cleanup(job);
    return job;
  }

  private stagingFor(patchId: string): string {
    return join(this.deps.settings.stagingDir, patchId);
  }

  private cleanup(job: JobRecord): void {
    try {
      rmSync(this.stagingFor(job.patchId), { recursive: true, force: true });
    } catch (err) {
      this.deps.log.warn('could not clean the staging dir', { err, patchId: job.patchId });
    }
  }

  private context(): OfferCheckContext {
    const state = this.deps.store.load();
    return {
      pinnedKeys: this.deps.pinnedKeys,
      threshold: this.deps.settings.threshold,
      now: this.now(),
      clockSkewMs: this.deps.settings.clockSkewS * 1000,
      deviceType: this.deps.deviceType,
      currentVersion: this.deps.currentVersion(),
      highestInstalled: state.highestInstalled,
      finished: state.finished,
    };
  }

  private async offer(payload: Buffer): Promise<void> {
    const log = this.deps.log;
    let parsed: ParsedOffer;
    try {
      parsed = parseOffer(payload);
    } catch (err) {
      // Without a well-formed envelope there is no patch id to report against: log and drop.
      log.warn('patch offer dropped', { err, payload: payload.subarray(0, 256) });
      return;
    }
    const patchId = unverifiedPatchId(parsed);
    if (!patchId) {
      log.warn('patch offer dropped: manifest names no valid id', { payload: payload.subarray(0, 256) });
      return;
    }
    const current = this.deps.store.job();
    if (current && !isTerminal(current.state)) {
      // One job at a time; the daemon re-offers later (desired state lives in its database).
      if (current.patchId !== patchId) log.warn('patch offer ignored: another job is running', { patchId, running: current.patchId });
      return;
    }
    if (current && current.patchId === patchId && current.offer.manifest === parsed.raw.manifest && FINISHED_STATES.has(current.state) && !current.retryable) {
      // The same offer again (QoS 1 redelivery, daemon retry): repeat the result, run nothing.
      this.publish(current);
      return;
    }
    this.jobAbort = new AbortController();
    this.deps.store.begin(
      {
        patchId,
        version: '0.0.0', // unknown until the manifest is authenticated (run() sets it)
        offer: parsed.raw,
        ...(parsed.rolloutId !== undefined ? { rolloutId: parsed.rolloutId } : {}),
      },
      this.now(),
    );
    await this.run(parsed);
  }

  private async resumeJob(): Promise<void> {
    let job = this.deps.store.job();
    if (!job) return;
    if (isTerminal(job.state)) {
      this.cleanup(job); // a crash may have hit between the terminal write and the cleanup
      return;
    }
    job = this.deps.store.update({ resumes: job.resumes + 1 }, this.now());
    this.jobAbort = new AbortController();
    this.deps.log.info('resuming patch job', { patchId: job.patchId, state: job.state, resumes: job.resumes });
    // Issue 9 fault 7: a command the previous agent process left running (kill -9 of the agent alone) is ended
    // before anything else, so it cannot write into the tree the rollback restores.
    if (job.command) {
      const gone = await endLeftoverGroup(job.command);
      this.deps.log.warn('ended a command left running by the previous agent process', { patchId: job.patchId, pgid: job.command.pgid, gone });
      job = this.deps.store.update({ command: null }, this.now());
    }
    const tooMany = job.resumes > MAX_RESUMES;
    switch (job.state) {
      case 'offered':
      case 'downloading':
      case 'verifying': {
        if (job.cancelRequested) {
          this.move('cancelled', 'cancelled by the daemon');
          return;
        }
        if (tooMany) {
          this.move('failed', `gave up after ${job.resumes - 1} restarts in ${job.state}`);
          return;
        }
        await this.run(parseOffer(JSON.stringify(job.offer)));
        return;
      }
      case 'installing':
        // We cannot know how far the install got: put the old version back.
        if (job.cancelRequested && !job.rollingBack) await this.rollback(job, 'cancelled', 'cancelled by the daemon during install');
        // An install cut short by a restart did not fail on its own: the daemon may retry it.
        else await this.rollback(job, 'failed', job.rollingBack ? 'rollback interrupted; re-ran it' : 'install interrupted by a restart', !job.rollingBack);
        return;
      case 'rebooting': {
        if (job.rollingBack) {
          await this.rollback(job, 'failed', 'rollback interrupted; re-ran it');
          return;
        }
        if (this.bootId() !== (job.bootId ?? '')) {
          // The reboot happened: check on the new boot, commit only if it passes (Mender ArtifactCommit).
          job = this.move('health-check', `rebooted; checking ${job.version} on the new boot`);
          await this.healthCheck(job);
          return;
        }
        if (tooMany) {
          await this.rollback(job, 'failed', `the requested reboot did not happen after ${job.resumes - 1} restarts`);
          return;
        }
        await this.requestReboot(job);
        return;
      }
      case 'health-check': {
        if (job.rollingBack) {
          await this.rollback(job, 'rolled_back', 'rollback interrupted; re-ran it');
          return;
        }
        if (tooMany) {
          await this.rollback(job, 'rolled_back', `health check interrupted ${job.resumes - 1} times`);
          return;
        }
        await this.healthCheck(job);
        return;
      }
      default:
        return;
    }
  }

  /** From `offered`, `downloading` or `verifying`: check, download, verify, install. */
  private async run(offer: ParsedOffer): Promise<void> {
    const verdict = this.deps.disabledReason
      ? ({ ok: false, reason: `patching disabled: ${this.deps.disabledReason}` } as const)
      : checkOffer(offer, this.context());
    let job = this.deps.store.job()!;
    if (!verdict.ok) {
      this.move('rejected', verdict.reason);
      this.deps.log.warn('patch offer rejected', { patchId: job.patchId, reason: verdict.reason });
      return;
    }
    const manifest = verdict.manifest;
    // The version is known only now that the manifest is authenticated.
    if (job.version !== manifest.version) job = this.deps.store.update({ version: manifest.version }, this.now());
    const staging = this.stagingFor(manifest.id);
    const partial = join(staging, 'download.part');
    if (job.state === 'offered') job = this.move('downloading');
    if (job.state === 'downloading') {
      try {
        await downloadArtifact({
          baseUrl: this.deps.daemonUrl,
          ...(this.deps.ca ? { ca: this.deps.ca } : {}),
          path: offer.url,
          deviceId: this.deps.deviceId,
          token: this.deps.token,
          file: partial,
          size: manifest.artifact.size,
          deadlineMs: this.deps.settings.downloadDeadlineS * 1000,
          // jobAbort: a PatchCancel or stop() ends the download (stop() aborts it too).
          signal: this.jobAbort.signal,
        });
      } catch (err) {
        if (this.stopped) throw new Stopped();
        if (this.cancelRequested()) {
          rmSync(partial, { force: true });
          this.move('cancelled', 'cancelled by the daemon during download');
          return;
        }
        const e = err as PatchError;
        if (e.code === 'ARTIFACT_TOO_LARGE') {
          rmSync(partial, { force: true });
          this.move('rejected', e.message);
        } else this.move('failed', e.message, { retryable: e.kind === 'transient' });
        return;
      }
      job = this.move('verifying');
    }
    if (this.cancelRequested()) {
      rmSync(partial, { force: true });
      this.move('cancelled', 'cancelled by the daemon');
      return;
    }
    // verifying
    const digest = await hashFile(partial).catch(() => undefined);
    if (!digest || digest.size !== manifest.artifact.size || digest.sha256 !== manifest.artifact.sha256) {
      rmSync(partial, { force: true });
      const why = !digest
        ? 'artifact missing'
        : digest.size !== manifest.artifact.size
          ? `artifact size ${digest.size} != ${manifest.artifact.size}`
          : `artifact sha256 ${digest.sha256} != ${manifest.artifact.sha256}`;
      this.move('rejected', why);
      return;
    }
    const fromVersion = this.deps.currentVersion();
    job = this.move('installing', '', { fromVersion });
    await this.install(job, manifest, partial);
  }

  private env(job: JobRecord, artifact: string): Record<string, string> {
    return {
      XCARE_ARTIFACT: artifact,
      XCARE_STAGING: this.stagingFor(job.patchId),
      XCARE_SOFTWARE_DIR: this.deps.softwareDir,
      XCARE_VERSION_FILE: this.deps.softwareVersionFile,
      XCARE_PATCH_VERSION: job.version,
      XCARE_PATCH_ID: job.patchId,
      XCARE_PREVIOUS_VERSION: job.fromVersion ?? '',
    };
  }

  private artifactFile(job: JobRecord): string {
    const manifest = parseManifest(Buffer.from(job.offer.manifest, 'base64'));
    return join(this.stagingFor(job.patchId), manifest.artifact.name);
  }

  private async install(job: JobRecord, manifest: Manifest, partial: string): Promise<void> {
    const artifact = this.artifactFile(job);
    if (existsSync(partial)) renameSync(partial, artifact);
    const { install } = this.deps.settings;
    if (!install) {
      await this.rollback(job, 'failed', 'no install command configured');
      return;
    }
    const result = await this.runTracked(install, job, artifact);
    if (this.stopped) throw new Stopped();
    if (this.cancelRequested()) {
      // The install was stopped before it finished (its group killed): restore the old version.
      await this.rollback(this.deps.store.job()!, 'cancelled', 'cancelled by the daemon during install');
      return;
    }
    if (result.code === EXIT_REBOOT) {
      job = this.move('rebooting', `installed ${manifest.version}; rebooting to take effect`, { bootId: this.bootId() });
      await this.requestReboot(job);
      return;
    }
    if (!result.ok) {
      this.deps.log.warn('install failed', { patchId: job.patchId, output: result.output });
      await this.rollback(job, 'failed', describeResult('install', result), result.code === EXIT_RETRYABLE);
      return;
    }
    job = this.move('health-check', `installed ${manifest.version}; checking`);
    await this.healthCheck(job);
  }

  /** Run the reboot command, if configured; the job resumes when the agent starts on the new boot. */
  private async requestReboot(job: JobRecord): Promise<void> {
    const { reboot } = this.deps.settings;
    if (!reboot) {
      this.deps.log.warn('install asked for a reboot; no patches.reboot command configured: waiting for an external reboot', { patchId: job.patchId });
      return;
    }
    this.deps.log.info('rebooting to finish the install', { patchId: job.patchId });
    const result = await runCommand(reboot, this.commandOpts(job, this.artifactFile(job)));
    if (!result.ok) this.deps.log.warn('reboot command failed; waiting for a reboot', { patchId: job.patchId, output: result.output });
  }

  /**
   * Run a configured command in its own process group, with the group persisted in the job record before
   * anything is awaited (so a restarted agent can end it, issue 9 fault 7) and killed by a cancel or stop().
   */
  private async runTracked(command: string, job: JobRecord, artifact: string): Promise<CommandResult> {
    const result = await runCommand(command, {
      ...this.commandOpts(job, artifact),
      signal: this.jobAbort.signal,
      onSpawn: (group) => this.deps.store.update({ command: group }, this.now()),
    });
    this.deps.store.update({ command: null }, this.now());
    return result;
  }

  private commandOpts(job: JobRecord, artifact: string) {
    const cwd = this.stagingFor(job.patchId);
    mkdirSync(cwd, { recursive: true });
    return { cwd, env: this.env(job, artifact), timeoutMs: this.deps.settings.commandTimeoutS * 1000 };
  }

  private async healthCheck(job: JobRecord): Promise<void> {
    const artifact = this.artifactFile(job);
    const { check } = this.deps.settings;
    if (check) {
      const result = await this.runTracked(check, job, artifact);
      if (this.stopped) throw new Stopped();
      if (!result.ok) {
        await this.rollback(job, 'rolled_back', describeResult('check', result));
        return;
      }
    }
    // The version file is what the heartbeat reports: it must now name the patch's version.
    const running = this.deps.currentVersion();
    if (running !== job.version) {
      await this.rollback(job, 'rolled_back', `check: software version is '${running}', expected ${job.version}`);
      return;
    }
    this.move('installed', `installed ${job.version}`);
    try {
      this.deps.onInstalled();
    } catch (err) {
      this.deps.log.warn('onInstalled failed', { err });
    }
  }

  /**
   * Mark, run rollback, then end in `final` (or `failed` when the rollback itself failed). The rollback is
   * not cancellable (it restores the old version) and runs under its own abort controller.
   */
  private async rollback(job: JobRecord, final: 'failed' | 'rolled_back' | 'cancelled', why: string, retryable = false): Promise<void> {
    if (!job.rollingBack) job = this.deps.store.update({ rollingBack: true }, this.now());
    const { rollback } = this.deps.settings;
    if (!rollback) {
      this.move('failed', `${why}; no rollback command configured`);
      return;
    }
    this.jobAbort = new AbortController();
    const result = await this.runTracked(rollback, job, this.artifactFile(job));
    if (this.stopped) throw new Stopped();
    if (!result.ok) {
      this.move('failed', `${why}; ${describeResult('rollback', result)}`);
      return;
    }
    this.move(final, why, final === 'failed' && retryable ? { retryable: true } : {});
  }
}
