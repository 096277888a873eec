/**
 * The edge agent (issue 2 item 6): wires the MQTT connection, the heartbeat loop and the patch port.
 * The constructor only stores its deps; `start()` connects, `stop()` leaves cleanly (retained
 * `{"online":false}`, DISCONNECT). agent/main.ts owns the process: config, signals, exit codes.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { topics } from '../src/protocol/topics.js';
import type { Heartbeat, PatchStatus } from '../src/protocol/types.js';
import type { AgentConfig } from './config.js';
import { AgentConnection } from './connection.js';
import { HeartbeatBuilder, readSoftwareVersion } from './heartbeat-builder.js';
import type { AgentLogger } from './log.js';
import type { PatchPort, PatchPortFactory } from './patch-port.js';
import { AGENT_VERSION } from './version.js';
import { parseCancel } from '../patches/offer.js';

export interface EdgeAgentDeps {
  config: AgentConfig;
  log: AgentLogger;
  /** The patch job implementation; without it offers are answered `rejected`. */
  patchPortFactory?: PatchPortFactory;
  /** For tests: jitter source of the reconnect backoff. */
  random?: () => number;
  /** For tests: MQTT keepalive (default 30 s). */
  keepaliveS?: number;
}

export const NO_PATCH_SUPPORT = 'agent has no patch support configured';

/**
 * Keep every heartbeat under the daemon's default packet limit (PROTOCOL.md: 64 KiB, and a bigger
 * packet closes the connection, which would loop forever on a gateway with many sensors).
 */
export const MAX_HEARTBEAT_BYTES = 60 * 1024;

export class EdgeAgent {
  private connection: AgentConnection | undefined;
  private builder: HeartbeatBuilder | undefined;
  private patchPort: PatchPort | undefined;
  private abort: AbortController | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private beating = false;
  private beatAgain = false;
  private running = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: EdgeAgentDeps) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    const { config } = this.deps;
    const log = this.deps.log;
    this.abort = new AbortController();
    // Every running probe listens on this signal; a gateway may run hundreds at once.
    setMaxListeners(Infinity, this.abort.signal);

    if (this.deps.patchPortFactory) this.patchPort = this.createPatchPort(this.deps.patchPortFactory);
    const patchPort = this.patchPort;
    this.builder = new HeartbeatBuilder({
      intervalS: config.intervalS,
      agentVersion: AGENT_VERSION,
      softwareVersionFile: config.softwareVersionFile,
      softwareDir: config.softwareDir,
      subsystems: config.subsystems,
      sensors: config.sensors,
      patchField: patchPort ? () => patchPort.heartbeatField() : undefined,
      log: log.child({ module: 'heartbeat' }),
      signal: this.abort.signal,
    });
    this.connection = new AgentConnection({
      deviceId: config.deviceId,
      token: () => this.currentToken(),
      brokerUrl: config.brokerUrl,
      ca: config.ca?.pem,
      reconnect: config.reconnect,
      log: log.child({ module: 'mqtt' }),
      random: this.deps.random,
      keepaliveS: this.deps.keepaliveS,
      onConnect: () => this.onConnected(),
      onDisconnect: () => this.clearBeatTimer(),
      onMessage: (topic, payload) => this.onMessage(topic, payload),
    });
    log.info('agent starting', {
      agentVersion: AGENT_VERSION,
      brokerUrl: config.brokerUrl,
      intervalS: config.intervalS,
      patchSupport: patchPort !== undefined,
    });
    this.connection.start();
  }

  /** With a tokenFile, re-read it on every connect attempt: re-provisioning needs no restart. */
  private currentToken(): string {
    const { config, log } = this.deps;
    if (!config.tokenFile) return config.token;
    try {
      const token = readFileSync(config.tokenFile, 'utf8').trim();
      if (token !== '') return token;
      log.warn('token file is empty; using the token read at start', { file: config.tokenFile });
    } catch (err) {
      log.warn('cannot read the token file; using the token read at start', { file: config.tokenFile, err });
    }
    return config.token;
  }

  /** A patch port that fails to construct must not keep the device from heartbeating. */
  private createPatchPort(factory: PatchPortFactory): PatchPort | undefined {
    const { config, log } = this.deps;
    const currentToken = () => this.currentToken();
    try {
      return factory({
        deviceId: config.deviceId,
        deviceType: config.deviceType,
        // Read at each download: a token rotated into the tokenFile is used without a restart.
        get token() {
          return currentToken();
        },
        daemonUrl: config.daemonUrl,
        stateDir: config.stateDir,
        settings: config.patches,
        currentVersion: () => readSoftwareVersion(config.softwareVersionFile, log),
        softwareDir: config.softwareDir,
        softwareVersionFile: config.softwareVersionFile,
        publishStatus: (status) => this.publishPatchStatus(status),
        onInstalled: () => {
          this.builder?.invalidate();
          this.beatNow();
        },
        log: log.child({ module: 'patch' }),
      });
    } catch (err) {
      log.error('patch support failed to start; offers will be rejected', { err });
      return undefined;
    }
  }

  /** Idempotent; resolves once offline state is published and the link closed. */
  stop(): Promise<void> {
    if (!this.running) return Promise.resolve();
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.clearBeatTimer();
    this.abort?.abort();
    try {
      await this.patchPort?.stop();
    } catch (err) {
      this.deps.log.warn('patch port stop failed', { err });
    }
    await this.connection?.stop();
    this.running = false;
    this.deps.log.info('agent stopped');
  }

  private onConnected(): void {
    try {
      this.patchPort?.onConnected();
    } catch (err) {
      this.deps.log.error('patch port failed on connect', { err });
    }
    // PROTOCOL.md: the first heartbeat goes right after connect, so the daemon sees the device at once.
    this.beatNow();
  }

  /** Send a heartbeat now (after connect, after an install) and restart the interval from here. */
  private beatNow(): void {
    if (this.stopping || !this.connection?.connected) return;
    this.clearBeatTimer();
    if (this.beating) {
      this.beatAgain = true;
      return;
    }
    void this.beat();
  }

  private async beat(): Promise<void> {
    const builder = this.builder!;
    this.beating = true;
    const started = Date.now();
    try {
      const heartbeat = await builder.build();
      const payload = fitHeartbeat(heartbeat);
      if (this.stopping) {
        // Probes were cancelled by stop(); their results would be noise.
      } else if (payload === undefined) {
        this.deps.log.error('heartbeat too large even without probe details; not sent', { seq: heartbeat.seq });
      } else if (this.connection?.publish(topics.heartbeat(this.deps.config.deviceId), payload, { qos: 1 })) {
        this.deps.log.debug('heartbeat sent', { seq: heartbeat.seq });
      }
    } catch (err) {
      // build() is designed never to reject; this is the last guard that keeps the loop alive.
      this.deps.log.error('heartbeat failed', { err });
    } finally {
      this.beating = false;
    }
    if (this.stopping || !this.connection?.connected) {
      this.beatAgain = false; // the next connect beats at once anyway
      return;
    }
    if (this.beatAgain) {
      this.beatAgain = false;
      this.beatNow();
      return;
    }
    // Fixed rate from the start of this beat; a slow probe shortens the wait, never stacks beats.
    // Real timers: the agent may not import src/clock.ts, and its tests run at intervalS 0.2.
    const waitMs = Math.max(0, started + this.deps.config.intervalS * 1000 - Date.now());
    this.beatTimer = setTimeout(() => {
      this.beatTimer = undefined;
      this.beatNow();
    }, waitMs);
  }

  private clearBeatTimer(): void {
    if (this.beatTimer) clearTimeout(this.beatTimer);
    this.beatTimer = undefined;
  }

  private onMessage(topic: string, payload: Buffer): void {
    const { config, log } = this.deps;
    if (topic !== topics.cmdPatch(config.deviceId)) {
      log.debug('ignoring command on unknown topic', { topic });
      return;
    }
    if (this.patchPort) {
      try {
        this.patchPort.handleOffer(payload);
      } catch (err) {
        log.error('patch port failed to handle an offer', { err });
      }
      return;
    }
    // A PatchCancel for an agent without patch support: there is no job to cancel.
    if (parseCancel(payload)) return;
    const { rolloutId, patchId } = describeOffer(payload);
    log.warn('patch offer received but patch support is not configured; rejecting', { rolloutId, patchId });
    this.publishPatchStatus({ ...(rolloutId ? { rolloutId } : {}), patchId, state: 'rejected', detail: NO_PATCH_SUPPORT });
  }

  private publishPatchStatus(status: PatchStatus): void {
    const sent = this.connection?.publish(topics.patchStatus(this.deps.config.deviceId), JSON.stringify(status), { qos: 1 });
    if (!sent) this.deps.log.info('patch status not sent while offline', { patchId: status.patchId, state: status.state });
  }
}

/**
 * Best-effort ids of an offer we cannot act on, so the daemon can match the rejection to its
 * rollout. Never throws; unknown parts become `unknown`.
 */
export function describeOffer(payload: Buffer): { rolloutId?: string; patchId: string } {
  let rolloutId: string | undefined;
  let patchId = 'unknown';
  try {
    const offer = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    if (typeof offer.rolloutId === 'string' && offer.rolloutId.length <= 128) rolloutId = offer.rolloutId;
    if (typeof offer.manifest === 'string') {
      const manifest = JSON.parse(Buffer.from(offer.manifest, 'base64').toString('utf8')) as Record<string, unknown>;
      if (typeof manifest.id === 'string' && manifest.id.length > 0 && manifest.id.length <= 128) patchId = manifest.id;
    }
  } catch {
    /* keep what we have */
  }
  return { ...(rolloutId !== undefined ? { rolloutId } : {}), patchId };
}

/**
 * Serialize a heartbeat within MAX_HEARTBEAT_BYTES: first drop the details of healthy probes, then
 * shorten the rest. Undefined when it cannot fit.
 */
export function fitHeartbeat(hb: Heartbeat, maxBytes = MAX_HEARTBEAT_BYTES): string | undefined {
  let json = JSON.stringify(hb);
  if (Buffer.byteLength(json) <= maxBytes) return json;
  const shrink = (keep: (r: { ok: boolean; detail?: string }) => string) => ({
    ...hb,
    ...(hb.subsystems ? { subsystems: hb.subsystems.map((r) => ({ ...r, detail: keep(r) })) } : {}),
    ...(hb.sensors ? { sensors: hb.sensors.map((r) => ({ ...r, detail: keep(r) })) } : {}),
  });
  for (const keep of [
    (r: { ok: boolean; detail?: string }) => (r.ok ? '' : (r.detail ?? '')),
    (r: { ok: boolean; detail?: string }) => (r.ok ? '' : (r.detail ?? '').slice(0, 32)),
    () => '',
  ]) {
    json = JSON.stringify(shrink(keep));
    if (Buffer.byteLength(json) <= maxBytes) return json;
  }
  return undefined;
}
