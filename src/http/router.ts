import type { IncomingMessage, ServerResponse } from 'node:http';

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
}

export type Handler = (ctx: RequestContext) => unknown | Promise<unknown>;

/** `admin` routes need the admin bearer token; `public` ones need nothing; `device` routes do their own auth. */
export type RouteAuth = 'admin' | 'public' | 'device';

export interface Route {
  method: string;
  path: string;
  auth: RouteAuth;
  handler: Handler;
}

export class Router {
  private readonly routes: { route: Route; parts: string[] }[] = [];

  add(method: string, path: string, auth: RouteAuth, handler: Handler): this {
    this.routes.push({ route: { method, path, auth, handler }, parts: path.split('/').filter(Boolean) });
    return this;
  }

  get(path: string, auth: RouteAuth, handler: Handler): this {
    return this.add('GET', path, auth, handler);
  }

  post(path: string, auth: RouteAuth, handler: Handler): this {
    return this.add('POST', path, auth, handler);
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
