import { describe, it, expect } from 'vitest';
import { MAX_LOG_LINE_BYTES, parseMosquittoLogLine } from '../../broker/external/mosquitto-log.js';

/**
 * Issue 13: Mosquitto's refused CONNECTs reach the evaluator through its notice log. The lines are the ones
 * Mosquitto 2.0.11 (Debian) publishes on $SYS/broker/log/N; anything else is ignored, and a client id in a
 * line names a device only when it is a device id.
 */
describe('parseMosquittoLogLine', () => {
  it('reads a refused CONNECT as it appears on $SYS/broker/log/N (default timestamp)', () => {
    expect(parseMosquittoLogLine(Buffer.from('1796013075: Client <unknown> disconnected, not authorised.'))).toEqual({ kind: 'auth_failure' });
  });

  it('accepts a line without timestamp and one with a log_timestamp_format date', () => {
    expect(parseMosquittoLogLine('Client <unknown> disconnected, not authorised.')).toEqual({ kind: 'auth_failure' });
    expect(parseMosquittoLogLine('2026-11-30T04:31:15: Client <unknown> disconnected, not authorised.')).toEqual({ kind: 'auth_failure' });
  });

  it('names the device only when the client id is a device id', () => {
    expect(parseMosquittoLogLine('1: Client gw-1 disconnected, not authorised.')).toEqual({ kind: 'auth_failure', deviceId: 'gw-1' });
    expect(parseMosquittoLogLine('1: Client -bad/id disconnected, not authorised.')).toEqual({ kind: 'auth_failure' });
    expect(parseMosquittoLogLine(`1: Client ${'a'.repeat(65)} disconnected, not authorised.`)).toEqual({ kind: 'auth_failure' });
  });

  it('ignores the other notice lines: connects, normal disconnects, kicks', () => {
    for (const line of [
      '1796013075: New connection from 127.0.0.1:47282 on port 18831.',
      "1796013075: New client connected from 127.0.0.1:47282 as dev-1 (p2, c1, k60, u'dev-1').",
      '1796013075: Client dev-1 disconnected.',
      '1796013075: Client dev-1 closed its connection.',
      '1796013075: Client <unknown> disconnected due to protocol error.',
      "1796013083: Denied PUBLISH from dev-1 (d0, q1, r0, m1, 'fleet/v1/dev-2/heartbeat', ... (1 bytes))",
    ]) {
      expect(parseMosquittoLogLine(line), line).toBeUndefined();
    }
  });

  it('a client id crafted to look like a refusal does not match (whitespace, newlines, trailing text)', () => {
    // What Mosquitto would log for a client whose id embeds the refusal wording.
    expect(parseMosquittoLogLine('1: Client x disconnected, not authorised. disconnected.')).toBeUndefined();
    expect(parseMosquittoLogLine('1: Client a\n1: Client <unknown> disconnected, not authorised.\n disconnected.')).toBeUndefined();
    expect(parseMosquittoLogLine('1: Client <unknown> disconnected, not authorised.\n')).toBeUndefined();
    expect(parseMosquittoLogLine('junk: Client <unknown> disconnected, not authorised.')).toBeUndefined();
  });

  it('ignores empty, oversized and non-UTF-8 payloads', () => {
    expect(parseMosquittoLogLine(Buffer.alloc(0))).toBeUndefined();
    expect(parseMosquittoLogLine(`1: Client ${'a'.repeat(MAX_LOG_LINE_BYTES)} disconnected, not authorised.`)).toBeUndefined();
    const bad = Buffer.concat([Buffer.from('1: Client '), Buffer.from([0xff, 0xfe]), Buffer.from(' disconnected, not authorised.')]);
    expect(parseMosquittoLogLine(bad)).toBeUndefined();
  });
});
