import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal, Role } from '../access/roles.js';
import { z } from 'zod';

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
  /** Parsed JSON body (bounded size); throws ValidationError on bad JSON. An empty body reads as `{}`. */
  body(): Promise<unknown>;
  /**
   * The body, parsed as JSON and validated with the route's zod schema (issue 11: every route validates
   * its body; `null`, `[]`, `"x"`, `42` where an object is expected are 400 and change nothing).
   * An absent (empty) body is refused with 400 unless the route documents it as optional with
   * `{ absent: 'empty' }`, in which case it is validated as `{}`. Throws ValidationError naming the field.
   */
  json<S extends z.ZodType>(schema: S, options?: { absent?: 'refuse' | 'empty' }): Promise<z.output<S>>;
  /** Raw body as a Buffer, bounded by `limit` bytes. */
  rawBody(limit?: number): Promise<Buffer>;
  /** Who made the request (`admin` and `session` routes); undefined on public routes or a signed-out console. */
  principal?: Principal;
  /** The route's own summary of what it changed, added to the audit entry of this request (src/audit/). */
  auditDetail?: Record<string, unknown>;
}

/** The first zod issue as `path: message` (`devices.3.id: ...`, `(body): ...` for the root). */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return '(body): invalid';
  return `${issue.path.map(String).join('.') || '(body)'}: ${issue.message}`;
}

/** The body of routes that take none (pause, revoke, ack...): absent or `{}`; anything else is 400. */
export const noBody = z.strictObject({});

/** Any JSON object (not null, not an array): the outer shape of bodies a service validates field by field. */
export const jsonObject = z.custom<Record<string, unknown>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'expected a JSON object',
);

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

  /** Every registered route, in registration order (the role tests and the fuzzing suite walk them). */
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
