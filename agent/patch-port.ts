/**
 * The seam between the edge agent and its patch job (issue 4 item 4). The agent owns the MQTT
 * connection and the heartbeat; the patch port owns everything about offers: verification,
 * download, install, persisted job state. The implementation lives in agent/patch-*.ts and is
 * exported as `createPatchPort` from agent/patch-port-impl.ts; agent/main.ts loads it if present.
 */
import type { HeartbeatPatch, PatchStatus } from '../src/protocol/types.js';
import type { AgentLogger } from './log.js';

export interface PatchPortDeps {
  deviceId: string; deviceType: 'gateway' | 'sensor'; token: string; daemonUrl: string; stateDir: string;
  ca?: Buffer;                       // agent.yaml `ca`, for an https daemonUrl (issue 10 fault 5)
  /** the raw `patches:` mapping from agent.yaml (may be undefined) */
  settings: Record<string, unknown> | undefined;
  currentVersion(): string;          // reads softwareVersionFile
  softwareDir: string; softwareVersionFile: string;
  publishStatus(status: PatchStatus): void;
  onInstalled(): void;               // agent recomputes integrity and sends a heartbeat at once
  log: AgentLogger;                  // from agent/log.ts
}
export interface PatchPort {
  handleOffer(payload: Buffer): void;           // every message on fleet/v1/<id>/cmd/patch (offers and PatchCancel)
  heartbeatField(): HeartbeatPatch | undefined; // latest patch state for the heartbeat
  onConnected(): void;                          // resume an interrupted job, re-publish latest status
  stop(): Promise<void>;
}
export type PatchPortFactory = (deps: PatchPortDeps) => PatchPort;
