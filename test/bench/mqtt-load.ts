import { connect, type Socket } from 'node:net';
import { connectPacket, publishQos1 } from '../helpers/mqtt-packets.js';

/**
 * A deliberately thin MQTT 3.1.1 load generator on raw sockets: thousands of connections in one
 * process cost little, so the figures measure the broker, not the client library.
 */
export class LoadClient {
  private socket?: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly inflight = new Map<number, number>();
  private connected = false;
  onAck?: (latencyMs: number) => void;

  constructor(
    readonly id: string,
    private readonly token: string,
    private readonly port: number,
  ) {}

  /** Opens the socket and sends CONNECT; resolves with the ms until CONNACK 0, rejects on a refusal. */
  connect(timeoutMs = 60_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const socket = connect({ port: this.port, host: '127.0.0.1', noDelay: true });
      this.socket = socket;
      const timer = setTimeout(() => reject(new Error(`${this.id}: CONNACK timeout`)), timeoutMs);
      let connected = false;
      socket.on('close', () => (this.connected = false));
      socket.on('error', (err) => {
        if (!connected) {
          clearTimeout(timer);
          reject(err);
        }
      });
      socket.on('data', (chunk: Buffer) => {
        this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
        while (this.buffer.length >= 2) {
          const type = this.buffer[0]! >> 4;
          const len = this.buffer[1]!; // CONNACK and PUBACK are 2-byte bodies
          if (this.buffer.length < 2 + len) break;
          if (type === 2) {
            clearTimeout(timer);
            const rc = this.buffer[3];
            if (rc === 0) {
              connected = true;
              this.connected = true;
              resolve(performance.now() - started);
            } else reject(new Error(`${this.id}: CONNACK ${rc}`));
          } else if (type === 4) {
            const pid = this.buffer.readUInt16BE(2);
            const sent = this.inflight.get(pid);
            if (sent !== undefined) {
              this.inflight.delete(pid);
              this.onAck?.(performance.now() - sent);
            }
          }
          this.buffer = this.buffer.subarray(2 + len);
        }
      });
      socket.write(connectPacket(this.id, this.id, this.token, 120));
    });
  }

  publish(topic: string, payload: Buffer): void {
    const pid = this.nextId;
    this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1;
    this.inflight.set(pid, performance.now());
    this.socket!.write(publishQos1(topic, pid, payload));
  }

  /** Forget unanswered publishes (between benchmark steps, so late acks are not counted twice). */
  resetInflight(): void {
    this.inflight.clear();
  }

  /** CONNACK 0 received and the socket still open. */
  isConnected(): boolean {
    return this.connected && !!this.socket && !this.socket.destroyed;
  }

  inflightCount(): number {
    return this.inflight.size;
  }

  close(): void {
    this.socket?.end(Buffer.from([0xe0, 0x00]));
    this.socket?.destroy();
  }
}
