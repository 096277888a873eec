import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { XcareError, ValidationError, UnauthorizedError, ForbiddenError, listenError } from '../errors.js';
import type { Router, RequestContext, Route } from './router.js';
import { roleAllows, type Principal } from '../access/roles.js';
import { AccessControl, CSRF_HEADER } from '../access/access-control.js';
import { secretEquals } from '../access/secret-hash.js';
import type { ActorContext } from '../audit/actor-context.js';
import { describeChange, describeDenied } from '../audit/actions.js';
import type { AuditInput } from '../audit/audit-log.js';

export interface HttpServerDeps {
  router: Router;
  log: Logger;
  host: string;
  port: number;
  /** The admin bearer token `admin` routes require. */
  adminToken: string;
  /** Largest JSON body accepted (bytes). */
  maxJsonBytes?: number;
  /** Resolves API tokens and console sessions; without it only the admin token is accepted (as role admin). */
  access?: AccessControl;
  /** Records who changed what (src/audit/): called after every successful mutating request and every 403. */
  audit?: (entry: AuditInput) => void;
  /** Handlers run inside it, so history written below the HTTP layer knows the actor. */
  actors?: ActorContext;
}

export { secretEquals };

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Headers on every answer (issue 14): nothing is framed, sniffed or leaks a referrer; API answers are never
 * cached. Console pages set their own Content-Security-Policy (src/console/).
 */
function securityHeaders(res: ServerResponse, pathname: string): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  // same-origin, not no-referrer: with no-referrer Chrome sends `Origin: null` on form posts, which the console's
  // origin check (login, logout) must refuse.
  res.setHeader('referrer-policy', 'same-origin');
  if (pathname.startsWith('/api/')) res.setHeader('cache-control', 'no-store');
}

/**
 * False when a request names an origin (RFC 6454 `Origin`) other than the host it was sent to. No Origin (curl,
 * xcarectl) passes; `null` (opaque origins: sandboxed frames, some redirects) does not.
 */
export function sameOriginOrNone(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new XcareError('PAYLOAD_TOO_LARGE', `body exceeds ${limit} bytes`, 413));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new XcareError('PAYLOAD_TOO_LARGE', `body exceeds ${limit} bytes`, 413));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * The daemon's one HTTP listener (PROTOCOL.md "HTTP"): routes from the Router, admin bearer auth,
 * JSON errors `{"error": message}`. `stop()` stops accepting and waits for in-flight requests.
 */
export class HttpServer {
  private server?: Server;
  private readonly access: AccessControl;
  constructor(private readonly deps: HttpServerDeps) {
    this.access = deps.access ?? new AccessControl({ adminToken: deps.adminToken });
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(listenError(err, 'http.port', 'XCARE_HTTP_PORT', this.deps.host, this.deps.port));
      server.once('error', failed);
      server.listen(this.deps.port, this.deps.host, () => {
        server.off('error', failed);
        resolve();
      });
    });
  }

  port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // In-flight requests get a bounded time to finish (long artifact downloads included).
      setTimeout(() => server.closeAllConnections(), 5000).unref();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const log = this.deps.log;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      sendJson(res, 400, { error: 'bad request URL' });
      return;
    }
    securityHeaders(res, url.pathname);
    try {
      const found = this.deps.router.match(req.method ?? 'GET', url.pathname);
      if (!('route' in found)) {
        if (found.methodMismatch) sendJson(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}` });
        else sendJson(res, 404, { error: `no route ${url.pathname}` });
        req.resume();
        return;
      }
      const { route, params } = found;
      const principal = this.authorize(req, route, params, url.pathname);
      const limit = this.deps.maxJsonBytes ?? 1024 * 1024;
      const ctx: RequestContext = {
        req,
        res,
        params,
        query: url.searchParams,
        ...(principal ? { principal } : {}),
        rawBody: (max = limit) => readBody(req, max),
        body: async () => {
          const raw = await readBody(req, limit);
          if (raw.length === 0) return {};
          try {
            return JSON.parse(raw.toString('utf8'));
          } catch {
            throw new ValidationError('request body is not valid JSON');
          }
        },
      };
      const actors = this.deps.actors;
      const result = actors ? await actors.run(principal, () => route.handler(ctx)) : await route.handler(ctx);
      if (principal && !SAFE_METHODS.has(route.method) && res.statusCode < 400) {
        this.recordChange(principal, route, params, url.pathname, req, res, result, ctx.auditDetail);
      }
      if (!res.headersSent && !res.writableEnded) {
        // A handler may set res.statusCode (201 Created) before returning its body.
        if (result === undefined) {
          res.writeHead(204);
          res.end();
        } else sendJson(res, res.statusCode >= 200 && res.statusCode < 300 ? res.statusCode : 200, result);
      }
    } catch (err) {
      const status = err instanceof XcareError ? err.status : 500;
      const message = err instanceof XcareError ? err.message : 'internal error';
      if (status >= 500) log.error({ err, path: url.pathname }, 'request failed');
      if (!res.headersSent) {
        if (status === 401) res.setHeader('www-authenticate', 'Bearer');
        sendJson(res, status, { error: message });
      } else res.destroy();
    }
  }

  /**
   * Resolves the principal of `admin` and `session` routes in one place (issue 14): 401 without a valid token or
   * session, 403 (audited) when its role is below the route's, 403 when a cookie-authenticated change lacks the
   * session's CSRF token or comes from another origin. `session` routes accept a missing principal.
   */
  private authorize(req: IncomingMessage, route: Route, params: Record<string, string>, pathname: string): Principal | undefined {
    if (route.auth !== 'admin' && route.auth !== 'session') return undefined;
    const principal = this.access.authenticate(req);
    if (!principal) {
      if (route.auth === 'session') return undefined;
      throw new UnauthorizedError('missing or wrong token');
    }
    if (!roleAllows(principal.role, route.role)) {
      const denied = describeDenied(route.method, route.path, params);
      try {
        this.deps.audit?.({ principal, ...denied, detail: { ...denied.detail, needed: route.role }, method: route.method, path: pathname, status: 403, remote: req.socket.remoteAddress ?? null });
      } catch (err) {
        this.deps.log.error({ err, actor: principal.name }, 'audit entry of a refusal not recorded');
      }
      throw new ForbiddenError(`token ${principal.name} (role ${principal.role}) may not ${route.method} ${route.path}: needs role ${route.role}`);
    }
    if (principal.via === 'session' && !SAFE_METHODS.has(route.method)) {
      // Double protection for cookie-borne changes: SameSite=Strict keeps the cookie off cross-site requests, and
      // the per-session CSRF token proves the request came from a page we rendered.
      if (!sameOriginOrNone(req)) throw new ForbiddenError('cross-origin request refused');
      const given = req.headers[CSRF_HEADER];
      if (!this.access.csrfMatches(principal, Array.isArray(given) ? given[0] : given)) throw new ForbiddenError('missing or wrong CSRF token');
    }
    return principal;
  }

  private recordChange(
    principal: Principal,
    route: Route,
    params: Record<string, string>,
    pathname: string,
    req: IncomingMessage,
    res: ServerResponse,
    result: unknown,
    extra: Record<string, unknown> | undefined,
  ): void {
    if (!this.deps.audit) return;
    const change = describeChange(route.method, route.path, params, result);
    try {
      this.deps.audit({
        principal,
        action: change.action,
        target: change.target,
        detail: { ...change.detail, ...extra },
        method: route.method,
        path: pathname,
        status: result === undefined && !res.headersSent ? 204 : res.statusCode,
        remote: req.socket.remoteAddress ?? null,
      });
    } catch (err) {
      // The change itself is committed; a failed audit write must not turn it into an error answer.
      this.deps.log.error({ err, action: change.action, actor: principal.name }, 'audit entry not recorded');
    }
  }
}
