import type { Heartbeat, PatchStatus } from '../protocol/types.js';

/** Who hears about validated device messages (health evaluator, patch records, scheduler). */
export interface IngestListener {
  onHeartbeat?(deviceId: string, heartbeat: Heartbeat, receivedAt: number): void;
  onState?(deviceId: string, online: boolean, receivedAt: number): void;
  onPatchStatus?(deviceId: string, status: PatchStatus, receivedAt: number): void;
}
