import { describe, it, expect, afterEach } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { PacketLengthScanner, LimitedConnection, type Violation } from '../../broker/packet-limit.js';
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

describe('LimitedConnection over a real loopback socket', () => {
  let server: Server | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
  });

  async function pair(limit: number): Promise<{ peer: Socket; conn: LimitedConnection; violations: Violation[] }> {
    const violations: Violation[] = [];
    const accepted = new Promise<LimitedConnection>((resolve) => {
      server = createServer((socket) => {
        sockets.push(socket);
        resolve(new LimitedConnection(socket, limit, (v) => violations.push(v)));
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const peer = connect((server!.address() as { port: number }).port, '127.0.0.1');
    sockets.push(peer);
    await once(peer, 'connect');
    return { peer, conn: await accepted, violations };
  }

  it('passes bytes through unchanged in both directions', async () => {
    const { peer, conn } = await pair(1024);
    const sent = Buffer.concat([packet(10), packet(300)]);
    peer.write(sent);
    const received: Buffer[] = [];
    let total = 0;
    while (total < sent.length) {
      await once(conn, 'readable');
      let chunk: Buffer | null;
      while ((chunk = conn.read() as Buffer | null)) {
        received.push(chunk);
        total += chunk.length;
      }
    }
    expect(Buffer.concat(received)).toEqual(sent);
    conn.write(Buffer.from([0x40, 0x02, 0x00, 0x01]));
    const [reply] = (await once(peer, 'data')) as [Buffer];
    expect(reply).toEqual(Buffer.from([0x40, 0x02, 0x00, 0x01]));
  });

  it('destroys the socket on an oversize header and reports it once', async () => {
    const { peer, conn, violations } = await pair(1024);
    const closed = once(conn, 'close');
    peer.write(header(10 * 1024 * 1024));
    peer.write(Buffer.alloc(64 * 1024));
    await closed;
    expect(conn.socket.destroyed).toBe(true);
    expect(violations).toEqual([{ ok: false, reason: 'oversize', declaredBytes: 10 * 1024 * 1024 + 5 }]);
  });
});
