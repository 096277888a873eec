import { pino, type Logger, type DestinationStream } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/** How log lines are written: `json` (one pino JSON object a line) or `pretty` (human-readable, for a terminal). */
export type LogFormat = 'json' | 'pretty';

/**
 * The format to write in: `json` or `pretty` as configured (`log.format`, `XCARE_LOG_FORMAT`); `auto` is `pretty`
 * when stdout is a terminal and `json` otherwise (issue 10: a person at a terminal reads lines; journald and log
 * shippers get JSON).
 */
export function logFormat(configured: LogFormat | 'auto' = 'auto', isTTY = process.stdout.isTTY === true): LogFormat {
  if (configured !== 'auto') return configured;
  return isTTY ? 'pretty' : 'json';
}

/**
 * A pino-pretty stream on stdout: local time, level, `[module]` and the message, then the other fields (deviceId,
 * err...) indented below; pid and hostname left out. Synchronous, so nothing is lost at exit.
 */
export function prettyDestination(colorize = process.stdout.isTTY === true): DestinationStream {
  return PinoPretty({
    destination: 1,
    sync: true,
    colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,module',
    messageFormat: '{if module}[{module}] {end}{msg}',
  });
}

/**
 * The one root logger of a process. Components get `log.child({ module })`; device ids go in
 * `deviceId`, errors under `err`, untrusted payloads under `payload`; credentials are redacted.
 * Without `destination`, writes to stdout as `format` says (JSON asynchronously, pretty synchronously).
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: ['password', 'token', '*.password', '*.token', 'headers.authorization', 'adminToken', 'secret'],
        censor: '[redacted]',
      },
    },
    destination ?? (format === 'pretty' ? prettyDestination() : pino.destination({ fd: 1, sync: false })),
  );
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
