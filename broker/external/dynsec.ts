import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { Logger } from '../../src/log.js';
import { topics } from '../../src/protocol/topics.js';
import { subscribeChecked } from './subscribe.js';

/** Mosquitto 2.x dynamic-security control topics (https://mosquitto.org/documentation/dynamic-security/). */
export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;

/** One dynsec command: `{command, ...fields}`; the answer carries `error` on failure and `data` for reads. */
export type DynsecCommand = { command: string } & Record<string, unknown>;
export interface DynsecResponse {
  command: string;
  error?: string;
  data?: Record<string, unknown>;
  correlationData?: string;
}

/** A dynsec command the broker refused (`error` in its response), e.g. "Client already exists". */
export class DynsecError extends Error {
  constructor(
    readonly command: string,
    readonly reason: string,
  ) {
    super(`dynsec ${command}: ${reason}`);
    this.name = 'DynsecError';
  }
}

/** Name of the dynsec role that holds one device's topics. */
export function deviceRoleName(deviceId: string): string {
  return `xcare-device-${deviceId}`;
}

/**
 * The ACLs of PROTOCOL.md "MQTT 3.1.1" for one device, as dynsec role ACLs: publish only its own
 * heartbeat, state (also the Last Will) and patch/status; subscribe only below its own cmd/.
 * Literal topics, one role per device: Mosquitto 2.0.11's dynsec does not substitute `%c` in ACL topics
 * (checked against the Debian build: a `fleet/v1/%c/heartbeat` ACL lets nothing through).
 */
export function deviceAcls(deviceId: string): { acltype: string; topic: string; allow: boolean; priority: number }[] {
  return [
    { acltype: 'publishClientSend', topic: topics.heartbeat(deviceId), allow: true, priority: 0 },
    { acltype: 'publishClientSend', topic: topics.state(deviceId), allow: true, priority: 0 },
    { acltype: 'publishClientSend', topic: topics.patchStatus(deviceId), allow: true, priority: 0 },
    { acltype: 'subscribePattern', topic: topics.cmdFilter(deviceId), allow: true, priority: 0 },
  ];
}

interface Pending {
  resolve(r: DynsecResponse): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Request/response over `$CONTROL/dynamic-security/v1` on an MQTT connection xcared already holds
 * (its own broker client, whose dynsec role grants the control topics). Answers are matched on
 * `correlationData`; a command without an answer within `timeoutMs` rejects.
 */
export class DynsecClient {
  private readonly pending = new Map<string, Pending>();
  private subscribed?: Promise<void>;

  constructor(
    private readonly deps: { client: MqttClient; log: Logger; timeoutMs: number },
  ) {}

  /** Subscribe to the response topic (once per connection; mqtt.js resubscribes after reconnects). */
  start(): Promise<void> {
    this.subscribed ??= (async () => {
      this.deps.client.on('message', (topic, payload) => {
        if (topic === DYNSEC_RESPONSE_TOPIC) this.answered(payload);
      });
      const refused = await subscribeChecked(this.deps.client, [DYNSEC_RESPONSE_TOPIC], { qos: 1 });
      if (refused.length > 0) throw new Error(`the broker refused xcared's subscription to ${DYNSEC_RESPONSE_TOPIC}: its role needs the dynsec control topics`);
    })();
    return this.subscribed;
  }

  stop(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('dynsec client stopped'));
    }
    this.pending.clear();
  }

  /** Send commands in one message; resolves with each answer in order, rejects on the first `error`. */
  async run(commands: DynsecCommand[], options: { tolerate?: string[] } = {}): Promise<DynsecResponse[]> {
    await this.start();
    const tagged = commands.map((c) => ({ ...c, correlationData: randomUUID() }));
    const answers = tagged.map(
      (c) =>
        new Promise<DynsecResponse>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.pending.delete(c.correlationData);
            reject(new Error(`dynsec ${c.command}: no answer within ${this.deps.timeoutMs} ms`));
          }, this.deps.timeoutMs);
          this.pending.set(c.correlationData, { resolve, reject, timer });
        }),
    );
    try {
      await this.deps.client.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands: tagged }), { qos: 1 });
    } catch (err) {
      for (const c of tagged) this.settle(c.correlationData)?.reject(err as Error);
    }
    const results = await Promise.allSettled(answers);
    const out: DynsecResponse[] = [];
    for (const r of results) {
      if (r.status === 'rejected') throw r.reason;
      const tolerated = r.value.error && options.tolerate?.some((t) => r.value.error!.includes(t));
      if (r.value.error && !tolerated) throw new DynsecError(r.value.command, r.value.error);
      out.push(r.value);
    }
    return out;
  }

  private answered(payload: Buffer): void {
    let body: { responses?: DynsecResponse[] };
    try {
      body = JSON.parse(payload.toString('utf8')) as { responses?: DynsecResponse[] };
    } catch {
      this.deps.log.warn('dynsec response is not JSON');
      return;
    }
    for (const r of body.responses ?? []) {
      // Answers to other xcared instances (same response topic) have correlation ids we never issued.
      if (typeof r.correlationData === 'string') this.settle(r.correlationData)?.resolve(r);
    }
  }

  private settle(id: string): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    clearTimeout(p.timer);
    this.pending.delete(id);
    return p;
  }
}
