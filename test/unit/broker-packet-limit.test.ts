import { describe, it, expect, afterEach } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { PacketLengthScanner, limitInbound, type Violation } from '../../broker/packet-limit.js';
import { remainingLength } from '../helpers/mqtt-packets.js';

/** A whole PUBLISH-typed packet with `remaining` body bytes. */
function packet(remaining: number, type = 0x30): Buffer {
  return Buffer.concat([Buffer.concat([Buffer.from([type]), remainingLength(remaining)]), Buffer.alloc(remaining, 0x61)]);
}

function header(remaining: number): Buffer {
  return Buffer.from([0x30, ...remainingLength(remaining)]);
}

describe('PacketLengthScanner: remaining-length varint', () => {
  const rows: Array<[string, number, number[]]> = [
    ['0 (PINGREQ-like)', 0, [0x00]],
    ['127, the largest 1-byte length', 127, [0x7f]],
    ['128, the smallest 2-byte length', 128, [0x80, 0x01]],
    ['16383, the largest 2-byte length', 16_383, [0xff, 0x7f]],
    ['16384, the smallest 3-byte length', 16_384, [0x80, 0x80, 0x01]],
    ['2097151, the largest 3-byte length', 2_097_151, [0xff, 0xff, 0x7f]],
    ['2097152, the smallest 4-byte length', 2_097_152, [0x80, 0x80, 0x80, 0x01]],
    ['268435455, the largest length MQTT allows', 268_435_455, [0xff, 0xff, 0xff, 0x7f]],
  ];
  it.each(rows)('decodes %s', (_name, remaining, bytes) => {
    expect([...remainingLength(remaining)]).toEqual(bytes);
    // A limit one byte below the declared total proves the decoded value exactly.
    const total = 1 + bytes.length + remaining;
    expect(new PacketLengthScanner(total).feed(Buffer.from([0x30, ...bytes]))).toEqual({ ok: true });
    expect(new PacketLengthScanner(total - 1).feed(Buffer.from([0x30, ...bytes]))).toEqual({ ok: false, reason: 'oversize', declaredBytes: total });
  });

  it('refuses a varint with a fifth byte as malformed', () => {
    expect(new PacketLengthScanner(1024).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toEqual({ ok: false, reason: 'malformed' });
  });
});

describe('PacketLengthScanner: limit on the whole packet', () => {
  const limit = 1024;
  it('passes a packet of exactly the limit (1 + 2 length bytes + 1021 body)', () => {
    const scanner = new PacketLengthScanner(limit);
    expect(scanner.feed(packet(1021))).toEqual({ ok: true });
  });

  it('refuses a packet one byte above the limit, from its header alone', () => {
    const scanner = new PacketLengthScanner(limit);
    expect(scanner.feed(header(1022))).toEqual({ ok: false, reason: 'oversize', declaredBytes: 1025 });
  });

  it('refuses a declared 256 MB packet from its 5 header bytes', () => {
    const scanner = new PacketLengthScanner(65_536);
    expect(scanner.feed(header(256 * 1024 * 1024 - 1))).toEqual({ ok: false, reason: 'oversize', declaredBytes: 256 * 1024 * 1024 + 4 });
  });

  it('stays failed once a violation was seen', () => {
    const scanner = new PacketLengthScanner(limit);
    scanner.feed(header(5000));
    expect(scanner.feed(packet(1))).toEqual({ ok: false, reason: 'oversize', declaredBytes: 5003 });
  });

  it('skips bodies: an oversize-looking byte inside a body is not read as a header', () => {
    // The body of the first packet is full of 0xff bytes, which would be a huge varint if misread.
    const body = Buffer.concat([Buffer.from([0x30, ...remainingLength(100)]), Buffer.alloc(100, 0xff)]);
    const scanner = new PacketLengthScanner(limit);
    expect(scanner.feed(Buffer.concat([body, packet(10), packet(0, 0xc0)]))).toEqual({ ok: true });
  });

  it('finds the oversize header of the third packet in one chunk', () => {
    const scanner = new PacketLengthScanner(limit);
    expect(scanner.feed(Buffer.concat([packet(10), packet(20), header(2000)]))).toEqual({ ok: false, reason: 'oversize', declaredBytes: 2003 });
  });
});

describe('PacketLengthScanner: split chunks', () => {
  it('decodes a length split across chunks one byte at a time', () => {
    const scanner = new PacketLengthScanner(20_000);
    const bytes = header(30_000); // 0x30 + 3-byte varint
    for (const b of bytes.subarray(0, -1)) expect(scanner.feed(Buffer.from([b]))).toEqual({ ok: true });
    expect(scanner.feed(bytes.subarray(-1))).toEqual({ ok: false, reason: 'oversize', declaredBytes: 30_004 });
  });

  it('tracks bodies split over chunks and the next header after them', () => {
    const scanner = new PacketLengthScanner(1024);
    const stream = Buffer.concat([packet(500), packet(700), header(1500)]);
    const results = [];
    for (let i = 0; i < stream.length; i += 97) results.push(scanner.feed(stream.subarray(i, i + 97)));
    expect(results.slice(0, -1).every((r) => r.ok)).toBe(true);
    expect(results.at(-1)).toEqual({ ok: false, reason: 'oversize', declaredBytes: 1503 });
  });

  it('accepts many small packets split at every possible point', () => {
    const stream = Buffer.concat(Array.from({ length: 20 }, (_, i) => packet(i * 13)));
    for (let cut = 1; cut < stream.length; cut++) {
      const scanner = new PacketLengthScanner(1024);
      expect(scanner.feed(stream.subarray(0, cut))).toEqual({ ok: true });
      expect(scanner.feed(stream.subarray(cut))).toEqual({ ok: true });
    }
  });
});

/** Polls `check` until it holds; a bounded wait that does not assume the machine's speed. */
async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('limitInbound on a real loopback socket (no second stream, issue 12)', () => {
  let server: Server | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
  });

  /** A loopback pair; the accepted socket is limited the way FleetBroker.accept does it. */
  async function pair(limit: number): Promise<{ peer: Socket; socket: Socket; violations: Violation[] }> {
    const violations: Violation[] = [];
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer((socket) => {
        sockets.push(socket);
        limitInbound(socket, { maxPacketBytes: limit, rules: false, onViolation: (_s, v) => violations.push(v) });
        resolve(socket);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const peer = connect((server!.address() as { port: number }).port, '127.0.0.1');
    peer.on('error', () => {}); // ECONNRESET once the server cuts us off is expected
    sockets.push(peer);
    await once(peer, 'connect');
    return { peer, socket: await accepted, violations };
  }

  /** Reads `bytes` the way aedes 1.x does: `read()` on 'readable'. */
  async function readAll(socket: Socket, bytes: number): Promise<Buffer> {
    const received: Buffer[] = [];
    let total = 0;
    const take = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null)) {
        received.push(chunk);
        total += chunk.length;
      }
    };
    socket.on('readable', take);
    await until(() => total >= bytes, `${bytes} bytes`);
    socket.off('readable', take);
    return Buffer.concat(received);
  }

  it('passes bytes through unchanged to a read() reader, and writes go straight out', async () => {
    const { peer, socket, violations } = await pair(1024);
    const sent = Buffer.concat([packet(10), packet(300), packet(1021)]);
    peer.write(sent);
    expect(await readAll(socket, sent.length)).toEqual(sent);
    socket.write(Buffer.from([0x40, 0x02, 0x00, 0x01]));
    const [reply] = (await once(peer, 'data')) as [Buffer];
    expect(reply).toEqual(Buffer.from([0x40, 0x02, 0x00, 0x01]));
    expect(violations).toEqual([]);
  });

  it('destroys the socket on an oversize header, reports it once, and never reads the body', async () => {
    const { peer, socket, violations } = await pair(1024);
    let readable = 0;
    socket.on('readable', () => readable++);
    const closed = once(socket, 'close');
    peer.write(header(10 * 1024 * 1024));
    // The same buffer again and again: the peer's queue costs no memory, the broker side would.
    const body = Buffer.alloc(256 * 1024);
    for (let i = 0; i < 40; i++) peer.write(body);
    await closed;
    expect(socket.destroyed).toBe(true);
    expect(violations).toEqual([{ ok: false, reason: 'oversize', declaredBytes: 10 * 1024 * 1024 + 5 }]);
    // Nothing reached the reader, and at most the read that held the header (<= 64 KiB) left the kernel.
    expect(readable).toBe(0);
    expect(socket.readableLength).toBe(0);
    expect(socket.bytesRead).toBeLessThanOrEqual(64 * 1024);
  });

  it('a reader that stops reading pauses the socket: its buffer stays at the high-water mark, the peer is pushed back', async () => {
    const { peer, socket, violations } = await pair(64 * 1024);
    // 24 MB of valid 60 KB packets, more than loopback's kernel buffers hold while nobody reads.
    const burst = Buffer.concat(Array.from({ length: 16 }, () => packet(60_000)));
    const rounds = Math.ceil((24 * 1024 * 1024) / burst.length);
    for (let i = 0; i < rounds; i++) peer.write(burst);
    const sent = burst.length * rounds;
    const bound = socket.readableHighWaterMark + 64 * 1024; // one read past the mark at most
    await until(() => socket.readableLength >= socket.readableHighWaterMark, 'the socket buffer to fill');
    // Pushed back: the peer's own queue stops shrinking while the socket's buffer stays bounded.
    let last = -1;
    let stable = 0;
    await until(() => {
      expect(socket.readableLength).toBeLessThanOrEqual(bound);
      stable = peer.writableLength === last ? stable + 1 : 0;
      last = peer.writableLength;
      return stable >= 10;
    }, 'the peer to be pushed back');
    expect(peer.writableLength).toBeGreaterThan(0);
    expect(socket.readableLength).toBeLessThanOrEqual(bound);
    expect(socket.bytesRead).toBeLessThan(sent);
    // The reader resumes: everything arrives, unchanged and in order.
    const got = await readAll(socket, sent);
    expect(got.length).toBe(sent);
    expect(got.subarray(0, burst.length)).toEqual(burst);
    expect(violations).toEqual([]);
  });

  it('scans bytes buffered before it was installed, so the scanner never starts mid-stream', async () => {
    const violations: Violation[] = [];
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer((socket) => {
        sockets.push(socket);
        resolve(socket);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const peer = connect((server!.address() as { port: number }).port, '127.0.0.1');
    peer.on('error', () => {});
    sockets.push(peer);
    const socket = await accepted;
    peer.write(header(5000));
    await until(() => socket.readableLength > 0, 'bytes buffered unread');
    const closed = once(socket, 'close');
    limitInbound(socket, { maxPacketBytes: 1024, rules: false, onViolation: (_s, v) => violations.push(v) });
    await closed;
    expect(violations).toEqual([{ ok: false, reason: 'oversize', declaredBytes: 5003 }]);
  });
});
