/**
 * Roles of API tokens and console sessions (PROTOCOL.md "HTTP": viewer, operator, admin).
 * - `viewer`: every read.
 * - `operator`: a viewer who may also ack, resolve and open tickets and pause and resume rollouts.
 * - `admin`: everything (the admin token from config or `<dataDir>/admin.token` is an admin).
 * The role a route needs is declared where it is registered (src/http/router.ts `RouteOptions.role`);
 * without a declaration reads need `viewer` and changes need `admin`.
 */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
/** A role, least to most: viewer < operator < admin. */
export type Role = (typeof ROLES)[number];

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

/** True when a principal holding `held` may use a route that needs `needed` (roles are ordered). */
export function roleAllows(held: Role, needed: Role): boolean {
  return RANK[held] >= RANK[needed];
}

/** True for `viewer`, `operator` and `admin`. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Who made a request: the token's name and role; `via` tells a bearer token from a console session. */
export interface Principal {
  /** Token name (`admin` for the configured admin token); recorded in the audit log as "who". */
  name: string;
  role: Role;
  /** Id of the API token, or null for the configured admin token. */
  tokenId: number | null;
  via: 'bearer' | 'session';
  /** The session's CSRF token when `via` is `session`. */
  csrf?: string;
  /** The session id when `via` is `session` (for logout). */
  sessionId?: string;
  /** SHA-256 of the token a session was signed in with (`via` session). */
  credentialHash?: string;
}
