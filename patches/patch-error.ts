/**
 * The patch format's error, dependency-free: `agent/` and `patches/` may not import src/errors.ts
 * (test/unit/agent-import-graph.test.ts). Same shape as src/errors.ts PatchError: a stable `code`,
 * `fatal` (bad signature, wrong hash, downgrade: reported, never retried) or `transient`
 * (network, timeouts: retried with backoff), and the HTTP status 400.
 */
export class PatchError extends Error {
  readonly code: string;
  readonly kind: 'fatal' | 'transient';
  readonly status = 400;
  constructor(code: string, message: string, kind: 'fatal' | 'transient', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PatchError';
    this.code = code;
    this.kind = kind;
  }
}
