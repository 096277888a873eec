import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { checkFixedHeader, checkPacket, checkSequence, wantsBody, type Rule } from './packet-rules.js';

/**
 * Maximum packet size, enforced on the length a packet DECLARES in its fixed header, before its
 * body is buffered (PROTOCOL.md: "refused before it is buffered (aedes itself sets no limit)").
 * aedes' parser (mqtt-packet) accumulates a whole packet before parsing it, so a client declaring
 * 256 MB would otherwise make the broker hold 256 MB per connection.
 *
 * The size compared is the whole control packet (1 type byte + the remaining-length varint +
 * the remaining length), the same measure as MQTT 5's "Maximum Packet Size" [MQTT-3.1.2-24].
 */
export type ScanResult =
  | { ok: true }
  | { ok: false; reason: 'oversize'; declaredBytes: number }
  | { ok: false; reason: 'malformed' }
  /** A "MUST close" rule of MQTT 3.1.1 (packet-rules.ts), named by its clause. */
  | { ok: false; reason: 'protocol'; rule: Rule };

const OK: ScanResult = { ok: true };
/** [MQTT 3.1.1 §2.2.3] the remaining length is at most 4 bytes long. */
const MAX_VARINT_BYTES = 4;

/**
 * Walks MQTT fixed headers across arbitrary chunk boundaries: reads the type byte and the
 * remaining-length varint, then skips the body without looking at it. Constant work per packet
 * plus per chunk; it never copies or holds the bytes.
 */
export class PacketLengthScanner {
  /** Body bytes of the current packet still to pass through. */
  private bodyLeft = 0;
  private inLength = false;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private failed: ScanResult | undefined;
  private type = 0;
  private flags = 0;
  private packets = 0;
  /** Body of a packet packet-rules.ts checks (CONNECT, SUBSCRIBE, UNSUBSCRIBE), while it arrives. */
  private captured: Buffer | undefined;
  private capturedBytes = 0;

  /** `rules`: also enforce packet-rules.ts (the broker does; size-only users such as benchmarks need not). */
  constructor(
    readonly maxPacketBytes: number,
    private readonly rules = false,
  ) {}

  feed(chunk: Uint8Array): ScanResult {
    if (this.failed) return this.failed;
    const size = chunk.length;
    let pos = 0;
    while (pos < size) {
      if (this.bodyLeft > 0) {
        const step = Math.min(this.bodyLeft, size - pos);
        if (this.captured) {
          this.captured.set(chunk.subarray(pos, pos + step), this.capturedBytes);
          this.capturedBytes += step;
        }
        this.bodyLeft -= step;
        pos += step;
        if (this.bodyLeft === 0 && this.captured) {
          const failed = this.packetDone();
          if (failed) return failed;
        }
        continue;
      }
      if (!this.inLength) {
        // The type/flags byte; the varint follows.
        this.type = chunk[pos]! >> 4;
        this.flags = chunk[pos]! & 0x0f;
        this.inLength = true;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        pos++;
        continue;
      }
      const byte = chunk[pos++]!;
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes === MAX_VARINT_BYTES) return (this.failed = { ok: false, reason: 'malformed' });
        continue;
      }
      this.inLength = false;
      const declaredBytes = 1 + this.lengthBytes + this.length;
      if (declaredBytes > this.maxPacketBytes) return (this.failed = { ok: false, reason: 'oversize', declaredBytes });
      this.bodyLeft = this.length;
      if (this.rules) {
        const rule = checkSequence(this.type, this.packets++) ?? checkFixedHeader(this.type, this.flags);
        if (rule) return (this.failed = { ok: false, reason: 'protocol', rule });
        if (wantsBody(this.type)) {
          // Bounded by maxPacketBytes, checked just above.
          this.captured = Buffer.allocUnsafe(this.length);
          this.capturedBytes = 0;
          if (this.length === 0) {
            const failed = this.packetDone();
            if (failed) return failed;
            continue;
          }
        }
      }
    }
    return OK;
  }

  /** A captured packet is complete: check it before its last byte is passed on. */
  private packetDone(): ScanResult | undefined {
    const body = this.captured!;
    this.captured = undefined;
    const rule = checkPacket(this.type, body);
    return rule ? (this.failed = { ok: false, reason: 'protocol', rule }) : undefined;
  }
}

export type Violation = Exclude<ScanResult, { ok: true }>;

/**
 * The stream aedes gets instead of the socket: bytes from the socket are scanned, then passed on
 * unchanged; writes go straight to the socket. On a violation the socket is destroyed at once,
 * so the oversize body is never read into memory (the kernel buffer fills and TCP pushes back).
 */
export class LimitedConnection extends Duplex {
  private readonly scanner: PacketLengthScanner;
  private waitingDrain: (() => void) | undefined;

  constructor(
    readonly socket: Socket,
    maxPacketBytes: number,
    private readonly onViolation: (violation: Violation) => void,
    rules = false,
  ) {
    // Both sides pass bytes through untouched; object mode off, small buffers (the socket has its own).
    super({ allowHalfOpen: false, decodeStrings: false });
    this.scanner = new PacketLengthScanner(maxPacketBytes, rules);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.push(null));
    socket.on('drain', () => this.flushed());
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  private onData(chunk: Buffer): void {
    const result = this.scanner.feed(chunk);
    if (!result.ok) {
      this.socket.pause();
      this.onViolation(result);
      this.socket.destroy();
      this.destroy();
      return;
    }
    if (!this.push(chunk)) this.socket.pause();
  }

  private flushed(): void {
    const resume = this.waitingDrain;
    this.waitingDrain = undefined;
    resume?.();
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.write(chunk)) callback();
    else this.waitingDrain = callback;
  }

  /** mqtt-packet corks the stream per packet, so a packet's pieces arrive here together. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const socket = this.socket;
    socket.cork();
    let accepted = true;
    for (const { chunk } of chunks) accepted = socket.write(chunk);
    socket.uncork();
    if (accepted) callback();
    else this.waitingDrain = callback;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A write waiting for 'drain' is abandoned with the stream; aedes learns of the close from 'close'.
    this.waitingDrain = undefined;
    this.socket.destroy();
    callback(error);
  }
}
