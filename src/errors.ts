/**
 * Errors with a stable `code`, so callers, logs and the HTTP layer can tell them apart
 * without matching on messages. `status` is the HTTP status the API answers with.
 */
export class XcareError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 500, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
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

export class ConflictError extends XcareError {
  constructor(message: string) {
    super('CONFLICT', message, 409);
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
