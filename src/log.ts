import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The one root logger of a process. Components get `log.child({ module })`; device ids go in
 * `deviceId`, errors under `err`, untrusted payloads under `payload`; credentials are redacted.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: ['password', 'token', '*.password', '*.token', 'headers.authorization', 'adminToken', 'secret'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
