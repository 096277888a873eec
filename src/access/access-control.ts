import type { IncomingMessage } from 'node:http';
import type { TokenStore } from './token-store.js';
import type { SessionStore } from './session-store.js';
import { hashSecret, secretEquals } from './secret-hash.js';
import type { Principal } from './roles.js';

/** The console's session cookie (HttpOnly, SameSite=Strict, Path=/). */
export const SESSION_COOKIE = 'xcare_session';
/** Header a console request made with the cookie carries its session's CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';

/** Where principals come from. */
export interface AccessControlDeps {
  /** The admin token from config or `<dataDir>/admin.token`: role admin, name `admin`. */
  adminToken: string;
  tokens?: TokenStore;
  sessions?: SessionStore;
}

/** Cookie header -> name/value pairs (RFC 6265 5.4); malformed pairs are skipped. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/**
 * Resolves who made a request, in one place (issue 14): `Authorization: Bearer` with the admin token or an API
 * token; otherwise the console session cookie. A bearer header, when present, is the only credential looked at,
 * so a wrong token never falls back to a cookie.
 */
export class AccessControl {
  constructor(private readonly deps: AccessControlDeps) {}

  async authenticate(req: IncomingMessage): Promise<Principal | undefined> {
    const header = req.headers.authorization;
    if (header !== undefined) return this.bearer(header);
    const sessionId = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    const session = sessionId ? await this.deps.sessions?.resolve(sessionId) : undefined;
    // A session signed in with the admin token lasts only while that is still the admin token (API-token sessions
    // end when their token is revoked: the revoke deletes them, and SessionStore.resolve refuses them anyway).
    if (session && session.tokenId === null && !secretEquals(session.credentialHash ?? '', hashSecret(this.deps.adminToken))) return undefined;
    return session;
  }

  /** A bearer header's principal, or undefined (one store read for an API token). */
  async bearer(header: string): Promise<Principal | undefined> {
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return undefined;
    return this.secret(match[1]!.trim(), 'bearer');
  }

  /** The principal a token secret stands for (sign-in takes the same tokens as the API). */
  async secret(token: string, via: Principal['via']): Promise<Principal | undefined> {
    if (secretEquals(token, this.deps.adminToken)) return { name: 'admin', role: 'admin', tokenId: null, via };
    return this.deps.tokens?.authenticate(token, via);
  }

  /** True when a cookie-authenticated request carries its session's CSRF token. */
  csrfMatches(principal: Principal, given: string | undefined): boolean {
    return principal.csrf !== undefined && given !== undefined && given.length > 0 && secretEquals(principal.csrf, given);
  }
}
