import { connect, type MqttClient } from 'mqtt';

/**
 * A simulated device over a real MQTT.js connection, behaving as the agent does on the wire (PROTOCOL.md):
 * retained `{"online":true}` on connect with `{"online":false}` as Last Will, QoS 1 heartbeats every `intervalS`,
 * and its own reconnects with exponential backoff and full jitter (`random(0, min(maxMs, minMs*2^attempt))`).
 * For the detection tests and bench, where hundreds of agent processes would not fit on a small machine.
 */
export interface SimDeviceOptions {
  id: string;
  token: string;
  url: string;
  intervalS: number;
  softwareVersion?: string;
  integrity?: string;
  /** Extra heartbeat fields (subsystems, sensors...). */
  extra?: () => Record<string, unknown>;
  reconnect?: { minMs: number; maxMs: number };
  keepaliveS?: number;
}

export class SimDevice {
  private client?: MqttClient;
  private beatTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private attempt = 0;
  private seq = 0;
  private running = false;
  private frozen = false;
  /** Times (Date.now()) this device connected; the first is its start. */
  readonly connects: number[] = [];

  constructor(readonly opts: SimDeviceOptions) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  start(): void {
    this.running = true;
    this.connectOnce();
  }

  /** Stop heartbeating but keep the connection open (a hung device): its silence is a loss. */
  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
  }

  /** The device dies: its socket is torn down without DISCONNECT, so the broker publishes its Last Will. */
  kill(): void {
    this.running = false;
    this.clearTimers();
    const c = this.client;
    this.client = undefined;
    c?.stream?.destroy();
    c?.end(true);
  }

  /** A clean stop (as SIGTERM on the agent): `{"online":false}` then DISCONNECT. */
  async stop(): Promise<void> {
    this.running = false;
    this.clearTimers();
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    if (c.connected) {
      await new Promise<void>((resolve) => c.publish(`fleet/v1/${this.opts.id}/state`, '{"online":false}', { qos: 1, retain: true }, () => resolve()));
    }
    await new Promise<void>((resolve) => c.end(false, {}, () => resolve()));
  }

  /** Report a patch job state (PROTOCOL.md `patch/status`), as an agent installing a patch does. */
  patchStatus(patchId: string, state: string): void {
    this.client?.publish(`fleet/v1/${this.opts.id}/patch/status`, JSON.stringify({ patchId, state }), { qos: 1 }, ignorePublishError);
  }

  private clearTimers(): void {
    clearInterval(this.beatTimer);
    clearTimeout(this.retryTimer);
    this.beatTimer = undefined;
    this.retryTimer = undefined;
  }

  private connectOnce(): void {
    if (!this.running) return;
    const { id, token, url } = this.opts;
    const client = connect(url, {
      clientId: id,
      username: id,
      password: token,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: this.opts.keepaliveS ?? 30,
      will: { topic: `fleet/v1/${id}/state`, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    this.client = client;
    let settled = false;
    const retry = () => {
      if (settled) return;
      settled = true;
      clearInterval(this.beatTimer);
      this.beatTimer = undefined;
      client.end(true);
      if (this.client === client) this.client = undefined;
      if (!this.running) return;
      const { minMs, maxMs } = this.opts.reconnect ?? { minMs: 1000, maxMs: 60_000 };
      const delay = Math.random() * Math.min(maxMs, minMs * 2 ** this.attempt);
      this.attempt++;
      this.retryTimer = setTimeout(() => this.connectOnce(), delay);
    };
    client.on('connect', () => {
      this.attempt = 0;
      this.connects.push(Date.now());
      client.publish(`fleet/v1/${id}/state`, '{"online":true}', { qos: 1, retain: true }, ignorePublishError);
      this.beat();
      this.beatTimer = setInterval(() => this.beat(), this.opts.intervalS * 1000);
    });
    client.on('close', retry);
    client.on('error', retry);
  }

  private beat(): void {
    const c = this.client;
    if (!c?.connected || this.frozen) return;
    const hb = {
      seq: this.seq++,
      ts: new Date().toISOString(),
      intervalS: this.opts.intervalS,
      agentVersion: 'sim-1.0.0',
      softwareVersion: this.opts.softwareVersion ?? '1.0.0',
      ...(this.opts.integrity ? { integrity: this.opts.integrity } : {}),
      ...(this.opts.extra?.() ?? {}),
    };
    c.publish(`fleet/v1/${this.opts.id}/heartbeat`, JSON.stringify(hb), { qos: 1 }, ignorePublishError);
  }
}

/**
 * mqtt.js throws "client disconnecting" from a publish without a callback once `end()` has begun; a simulated
 * device dying or reconnecting mid-beat is expected, so the publish's outcome is ignored rather than left to
 * surface as an unhandled exception in the test run.
 */
function ignorePublishError(): void {}

