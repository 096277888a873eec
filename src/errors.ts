/**
 * Errors with a stable `code`, so callers, logs and the HTTP layer can tell them apart
 * without matching on messages. `status` is the HTTP status the API answers with.
 *
 * The catalogue below is the one list of codes the HTTP API puts on the wire
 * (`{"error": "<message>", "code": "<code>"}`, STYLE.md "Errors carry codes on the wire"); a code
 * never changes meaning once shipped. Clients branch on `code`, never on the message text.
 */
export const ERROR_CATALOGUE = {
  VALIDATION: { status: 400, wire: 'validation_failed', meaning: 'the request (body, query, path) does not match its schema' },
  BAD_REQUEST: { status: 400, wire: 'bad_request', meaning: 'the request line or URL cannot be parsed' },
  UNAUTHORIZED: { status: 401, wire: 'unauthorized', meaning: 'missing or wrong credentials' },
  FORBIDDEN: { status: 403, wire: 'forbidden', meaning: 'credentials lack the role or the offer' },
  NOT_FOUND: { status: 404, wire: 'not_found', meaning: 'no such route or resource' },
  METHOD_NOT_ALLOWED: { status: 405, wire: 'method_not_allowed', meaning: 'the path exists with another method' },
  REQUEST_TIMEOUT: { status: 408, wire: 'request_timeout', meaning: 'the body did not arrive within http.requestTimeoutMs' },
  HEADERS_TOO_LARGE: { status: 431, wire: 'headers_too_large', meaning: 'request line and headers exceed http.maxHeaderBytes' },
  CONFLICT: { status: 409, wire: 'conflict', meaning: 'the state or a stored constraint does not allow it (duplicate id, wrong rollout state)' },
  PAYLOAD_TOO_LARGE: { status: 413, wire: 'payload_too_large', meaning: 'the body exceeds its limit, Content-Length or chunked alike' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, wire: 'unsupported_media_type', meaning: 'a content type the route does not read' },
  CONFIG_INVALID: { status: 500, wire: 'config_invalid', meaning: 'the configuration is unusable (never sent for a request)' },
  INTERNAL: { status: 500, wire: 'internal', meaning: 'a bug: logged with the request path' },
  BROKER_UNAVAILABLE: { status: 503, wire: 'broker_unavailable', meaning: 'the external MQTT broker is not connected or did not take the device credentials' },
  AUTH_UNAVAILABLE: { status: 503, wire: 'auth_unavailable', meaning: 'the device credential check failed with an error (the broker hook then denies)' },
  NOT_LEADER: { status: 503, wire: 'not_leader', meaning: 'a cluster follower refuses changes to leader-owned state; send them to the leader' },
  STORE_UNAVAILABLE: { status: 503, wire: 'store_unavailable', meaning: 'the store is unreachable or busy (a lock or statement timeout): nothing was changed by this request; retry' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class XcareError extends Error {
  readonly code: string;
  readonly status: number;
  /** Extra fields for the wire body (e.g. the conflicting `id`); never secrets. */
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, message: string, status = 500, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = options?.details;
  }
}

export class ConfigError extends XcareError {
  constructor(message: string) {
    super('CONFIG_INVALID', message, 500);
  }
}

export class ValidationError extends XcareError {
  constructor(message: string) {
    super('VALIDATION', message, 400);
  }
}

export class NotFoundError extends XcareError {
  constructor(message: string) {
    super('NOT_FOUND', message, 404);
  }
}

/** 409. `details.id` names the conflicting resource when it is known (issue 11: "409 with the conflicting id"). */
export class ConflictError extends XcareError {
  constructor(message: string, details?: Record<string, unknown>, cause?: unknown) {
    super('CONFLICT', message, 409, { ...(details ? { details } : {}), ...(cause ? { cause } : {}) });
  }
}

export class UnauthorizedError extends XcareError {
  constructor(message = 'unauthorized') {
    super('UNAUTHORIZED', message, 401);
  }
}

export class ForbiddenError extends XcareError {
  constructor(message = 'forbidden') {
    super('FORBIDDEN', message, 403);
  }
}

export class PayloadTooLargeError extends XcareError {
  constructor(limitBytes: number) {
    super('PAYLOAD_TOO_LARGE', `body exceeds ${limitBytes} bytes`, 413, { details: { limitBytes } });
  }
}

/** The wire code of an error code (catalogue entry), or the code lower-cased for codes outside it. */
export function wireCode(code: string): string {
  const entry = (ERROR_CATALOGUE as Record<string, { wire: string } | undefined>)[code];
  return entry ? entry.wire : code.toLowerCase();
}

/** SQLite (better-sqlite3 `SqliteError.code`) and PostgreSQL (SQLSTATE class 23) constraint codes. */
const UNIQUE_CODES = new Set(['SQLITE_CONSTRAINT_PRIMARYKEY', 'SQLITE_CONSTRAINT_UNIQUE', '23505']);
const REFERENCE_CODES = new Set(['SQLITE_CONSTRAINT_FOREIGNKEY', '23503']);
const SHAPE_CODES = new Set(['SQLITE_CONSTRAINT_CHECK', 'SQLITE_CONSTRAINT_NOTNULL', '23514', '23502']);

/**
 * Maps a storage constraint error to the catalogue (issue 11 fault 2: a race between two identical
 * creates surfaced `UNIQUE constraint failed` as a 500). Unique and foreign-key violations become 409
 * CONFLICT, naming the constraint (`devices.id`) and, when the engine says it (PostgreSQL's
 * `Key (id)=(gw-1) already exists`), the conflicting value as `id`; CHECK/NOT NULL become 400. Anything
 * that is not a constraint error is returned unchanged. Callers that know the conflicting id throw a
 * ConflictError themselves; this is the net under every route.
 */
export function fromStorageError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof XcareError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return err;
  if (UNIQUE_CODES.has(code)) {
    const constraint = /constraint failed: ([^\s,]+)/.exec(err.message)?.[1] ?? (err as { constraint?: string }).constraint;
    const id = /\)=\(([^)]*)\)/.exec(String((err as { detail?: unknown }).detail ?? ''))?.[1];
    return new ConflictError(`already exists${constraint ? ` (${constraint})` : ''}${id ? `: ${id}` : ''}`, { ...(constraint ? { constraint } : {}), ...(id ? { id } : {}) }, err);
  }
  if (REFERENCE_CODES.has(code)) return new ConflictError('refers to something that does not exist or is still referred to', undefined, err);
  if (SHAPE_CODES.has(code)) return new ValidationError(`a value is out of its allowed range (${err.message})`);
  return err;
}

/** True for a storage error the engine raised because a uniqueness constraint was violated. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Error && UNIQUE_CODES.has(String((err as { code?: unknown }).code));
}

// Patch failures (`fatal` or `transient`) are PatchError in patches/patch-error.ts: the agent shares
// them and may not import this file.

const LISTEN_CAUSES: Record<string, string> = {
  EADDRINUSE: 'address already in use (another program, or another xcared, holds it)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no such address on this host',
};

/**
 * A listener that could not bind, as an error naming the config key and the environment variable that set the port
 * (issue 10: a port clash named neither). `key` e.g. `http.port`, `envVar` e.g. `XCARE_HTTP_PORT`.
 */
export function listenError(err: NodeJS.ErrnoException, key: string, envVar: string, host: string, port: number): XcareError {
  const cause = (err.code && LISTEN_CAUSES[err.code]) ?? err.message;
  return new XcareError(
    'LISTEN_FAILED',
    `${key}: cannot listen on ${host}:${port}: ${cause}${err.code ? ` [${err.code}]` : ''}; choose another with ${key} in the config or ${envVar}`,
    500,
    { cause: err },
  );
}
