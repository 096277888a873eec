/**
 * The agent's logger: one JSON object per line on stdout
 * (`{"level":"info","time":"…","msg":"…","deviceId":"gw-1",…fields}`).
 *
 * The agent may not use pino (PROTOCOL.md "Command line": the agent needs only Node.js and `mqtt`
 * at run time), so this is a deliberately tiny logger with the same conventions as src/log.ts:
 * errors under `err`, untrusted payloads under `payload`, credentials redacted.
 */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface AgentLogger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{ module: 'patch' }`). */
  child(fields: LogFields): AgentLogger;
}

export interface AgentLoggerOptions {
  level: LogLevel;
  /** Added to every line. */
  base?: LogFields;
  /** Where lines go; default stdout. Gets one complete line including the trailing newline. */
  write?: (line: string) => void;
  now?: () => number;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const REDACTED_KEYS = new Set(['token', 'password', 'authorization', 'secret']);

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

export function createAgentLogger(options: AgentLoggerOptions): AgentLogger {
  const write = options.write ?? ((line: string) => void process.stdout.write(line));
  const now = options.now ?? Date.now;
  const threshold = RANK[options.level];

  const make = (base: LogFields): AgentLogger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
      if (RANK[level] < threshold) return;
      const record: LogFields = { level, time: new Date(now()).toISOString(), msg, ...base, ...fields };
      write(`${safeStringify(record)}\n`);
    };
    return {
      debug: (msg, fields) => emit('debug', msg, fields),
      info: (msg, fields) => emit('info', msg, fields),
      warn: (msg, fields) => emit('warn', msg, fields),
      error: (msg, fields) => emit('error', msg, fields),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.base ?? {});
}

/** A logger that writes nothing, for tests. */
export function silentAgentLogger(): AgentLogger {
  const log: AgentLogger = { debug() {}, info() {}, warn() {}, error() {}, child: () => log };
  return log;
}

/** JSON.stringify that never throws: errors become `{message, code, stack}`, secrets are redacted, cycles cut. */
function safeStringify(record: LogFields): string {
  const seen = new WeakSet<object>();
  try {
    return JSON.stringify(record, (key, value: unknown) => {
      if (REDACTED_KEYS.has(key.toLowerCase())) return '[redacted]';
      if (typeof value === 'bigint') return value.toString();
      if (value instanceof Error) {
        const code = (value as NodeJS.ErrnoException).code;
        return { type: value.name, message: value.message, ...(code !== undefined ? { code } : {}), stack: value.stack };
      }
      if (Buffer.isBuffer(value)) return value.toString('utf8', 0, Math.min(value.length, 1024));
      if (value !== null && typeof value === 'object') {
        if (seen.has(value)) return '[circular]';
        seen.add(value);
      }
      return value;
    });
  } catch {
    return JSON.stringify({ level: record.level, time: record.time, msg: record.msg, logError: 'unserializable fields' });
  }
}
