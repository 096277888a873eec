import { isDeviceId } from '../../src/protocol/names.js';

/**
 * The topic Mosquitto publishes its `notice` log lines on, with `log_dest topic` and `log_type notice`.
 * Other levels go to `$SYS/broker/log/E|W|I|M/...`; `debug` never goes to the topic.
 */
export const MOSQUITTO_NOTICE_LOG_TOPIC = '$SYS/broker/log/N';

/** Longest log line we parse; a refused CONNECT's line is about 60 bytes. Longer payloads are ignored. */
export const MAX_LOG_LINE_BYTES = 1024;

/** A security signal read from one Mosquitto log line. */
export interface BrokerLogSignal {
  kind: 'auth_failure';
  /** Only when the line names a client id that is a valid device id (untrusted: the CONNECT failed). */
  deviceId?: string;
}

/**
 * `[<timestamp>: ]Client <id> disconnected, not authorised.`: Mosquitto 2.0.11 (Debian), notice level,
 * once per refused CONNECT (wrong or unknown credentials, clientid bound to another dynsec client, anonymous
 * when not allowed). The id is `<unknown>` in every case we saw; a real id is taken only when it is a
 * device id. The timestamp prefix is Mosquitto's default (`log_timestamp true`: seconds since the epoch) or
 * a `log_timestamp_format` made of digits, `-:T.+Z` and spaces. The whole payload must be this one line:
 * an id cannot contain whitespace here, so a client id crafted to look like a log line does not match.
 */
const REFUSED_CONNECT = /^(?:[0-9][0-9T:.+Z -]{0,39}: )?Client (\S{1,256}) disconnected, not authorised\.$/;

/**
 * Parse one payload of {@link MOSQUITTO_NOTICE_LOG_TOPIC} strictly: a signal for the lines we understand,
 * undefined for everything else (connects, disconnects, unknown wording, oversized or non-UTF-8 payloads).
 *
 * ACL denials are not here: Mosquitto 2.0.11 logs `Denied PUBLISH from ...` at debug level only, which it never
 * publishes on `$SYS/broker/log/...`, and a denied SUBSCRIBE is not logged at all (checked against the Debian
 * build); README "At scale" says so.
 */
export function parseMosquittoLogLine(payload: Buffer | string): BrokerLogSignal | undefined {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes === 0 || bytes > MAX_LOG_LINE_BYTES) return undefined;
  let line: string;
  try {
    line = typeof payload === 'string' ? payload : new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    return undefined;
  }
  const m = REFUSED_CONNECT.exec(line);
  if (!m) return undefined;
  const id = m[1]!;
  return isDeviceId(id) ? { kind: 'auth_failure', deviceId: id } : { kind: 'auth_failure' };
}
