import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal, Role } from '../access/roles.js';

/**
 * A small method+path router on node:http (no framework). Paths use `:name` segments.
 * Handlers return a value to send as JSON (status 200), or write the response themselves
 * and return undefined. Thrown XcareErrors become `{"error": message}` with their status.
 */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body (bounded size); throws ValidationError on bad JSON. */
  body(): Promise<unknown>;
  /** Raw body as a Buffer, bounded by `limit` bytes. */
  rawBody(limit?: number): Promise<Buffer>;
  /** Who made the request (`admin` and `session` routes); undefined on public routes or a signed-out console. */
  principal?: Principal;
  /** The route's own summary of what it changed, added to the audit entry of this request (src/audit/). */
  auditDetail?: Record<string, unknown>;
}

export type Handler = (ctx: RequestContext) => unknown | Promise<unknown>;

/**
 * `admin` routes need an API principal (the admin token, an API token or a console session) holding the route's
 * role; `public` ones need nothing; `device` routes do their own auth; `session` routes (console pages) get the
 * principal when there is one and decide themselves what a signed-out visitor sees.
 */
export type RouteAuth = 'admin' | 'public' | 'device' | 'session';

/** Per-route settings given at registration. */
export interface RouteOptions {
  /**
   * The least role that may call the route (PROTOCOL.md "HTTP"). Default: `viewer` for GET/HEAD, `admin` for
   * everything else, so a new mutating route is admin-only until someone decides otherwise.
   */
  role?: Role;
}

export interface Route {
  method: string;
  path: string;
  auth: RouteAuth;
  handler: Handler;
  role: Role;
}

/** The role a route needs when its registration names none. */
export function defaultRole(method: string): Role {
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'admin';
}

export class Router {
  private readonly routes: { route: Route; parts: string[] }[] = [];

  add(method: string, path: string, auth: RouteAuth, handler: Handler, options: RouteOptions = {}): this {
    const role = options.role ?? defaultRole(method);
    this.routes.push({ route: { method, path, auth, handler, role }, parts: path.split('/').filter(Boolean) });
    return this;
  }

  get(path: string, auth: RouteAuth, handler: Handler, options?: RouteOptions): this {
    return this.add('GET', path, auth, handler, options);
  }

  post(path: string, auth: RouteAuth, handler: Handler, options?: RouteOptions): this {
    return this.add('POST', path, auth, handler, options);
  }

  /** Every registered route (the role tests walk them). */
  list(): readonly Route[] {
    return this.routes.map((r) => r.route);
  }

  /** Find the route for a request; `methodMismatch` when the path exists with another method. */
  match(method: string, pathname: string): { route: Route; params: Record<string, string> } | { methodMismatch: boolean } {
    const segments = pathname.split('/').filter(Boolean);
    let methodMismatch = false;
    for (const { route, parts } of this.routes) {
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        const seg = segments[i]!;
        if (part.startsWith(':')) {
          try {
            params[part.slice(1)] = decodeURIComponent(seg);
          } catch {
            ok = false;
            break;
          }
        } else if (part !== seg) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (route.method !== method && !(route.method === 'GET' && method === 'HEAD')) {
        methodMismatch = true;
        continue;
      }
      return { route, params };
    }
    return { methodMismatch };
  }
}
