import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { TlsOptions } from 'node:tls';
import type { Logger } from '../log.js';
import { XcareError, ValidationError, UnauthorizedError, ForbiddenError, PayloadTooLargeError, fromStorageError, wireCode, listenError } from '../errors.js';
import { describeIssue, type Router, type RequestContext, type Route } from './router.js';
import { roleAllows, type Principal } from '../access/roles.js';
import { AccessControl, CSRF_HEADER } from '../access/access-control.js';
import { secretEquals } from '../access/secret-hash.js';
import { describeChange, describeDenied } from '../audit/actions.js';
import type { AuditInput } from '../audit/audit-log.js';
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from './limits.js';
import { refuseNul } from './query.js';
import { storeFaultReason } from '../db/database.js';

export { DEFAULT_HTTP_LIMITS, type HttpLimits } from './limits.js';

export interface HttpServerDeps {
  router: Router;
  log: Logger;
  host: string;
  port: number;
  /** The admin bearer token `admin` routes require. */
  adminToken: string;
  /** Largest JSON body accepted (bytes); overrides `limits.maxJsonBytes`. */
  maxJsonBytes?: number;
  /** Sizes, timeouts and caps; defaults DEFAULT_HTTP_LIMITS. */
  limits?: Partial<HttpLimits>;
  /** Where `fleet_http_rejected_total{status}` is registered (every 4xx/5xx answer, node:http's own included). */
  metrics?: Registry;
  /** Resolves API tokens and console sessions; without it only the admin token is accepted (as role admin). */
  access?: AccessControl;
  /** Records who changed what (src/audit/): called after every successful mutating request and every 403. */
  audit?: (entry: AuditInput) => Promise<void>;
  /** HTTPS: reads and checks `http.tls` at start (src/http/tls.ts); absent: plain HTTP. */
  tls?: () => Promise<TlsOptions>;
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

/** The wire form of an error: `{"error": message, "code": <catalogue code>, ...details}`. */
export function errorBody(err: XcareError): Record<string, unknown> {
  return { ...(err.details ?? {}), error: err.message, code: wireCode(err.code) };
}

/**
 * Reads a body up to `limit` bytes. Over the limit (declared by Content-Length, or counted as a
 * chunked body arrives) it stops buffering and rejects with 413; the caller answers and then
 * discards the rest (see drainBody), so chunked and Content-Length bodies get the same JSON
 * answer instead of a reset (issue 11 fault 4).
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new PayloadTooLargeError(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        chunks.length = 0;
        req.pause();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * node:http's answer to a request it cannot parse (a bad request line, headers over
 * http.maxHeaderBytes, a request that outlived http.requestTimeoutMs) is a bare status line; ours is
 * the same JSON error every other answer is, then the connection closes.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket, count: (status: number) => void): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const [status, code] =
    err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'HEADERS_TOO_LARGE'] : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'REQUEST_TIMEOUT'] : [400, 'BAD_REQUEST'];
  count(status);
  const body = JSON.stringify({ error: STATUS_CODES[status]?.toLowerCase() ?? 'bad request', code: wireCode(code) });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Before answering a request whose body was not (fully) read (an early 401/404/405/400, a 413): read and
 * drop the rest, at most `maxBytes`. Node's server cannot reuse a keep-alive connection whose request
 * body is still arriving when the answer is sent (the client's next request on it gets "socket hang
 * up"), and a reset would lose the answer. Resolves true when the body ended; false when the peer sent
 * more than `maxBytes` (a hostile amount): the answer then says `Connection: close`.
 */
function drainBody(req: IncomingMessage, maxBytes: number): Promise<boolean> {
  if (req.complete || req.readableEnded || req.destroyed) return Promise.resolve(!req.destroyed);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let discarded = 0;
    const done = (complete: boolean): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      if (!complete) req.pause();
      resolve(complete);
    };
    const onData = (chunk: Buffer): void => {
      discarded += chunk.length;
      if (discarded > maxBytes) done(false);
    };
    const onEnd = (): void => done(true);
    const onClose = (): void => done(req.complete);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.resume();
  });
}

/** Sends an answer after draining the request body; an undrainable one closes the connection after the answer. */
async function answer(req: IncomingMessage, res: ServerResponse, maxDiscardBytes: number, send: () => void): Promise<void> {
  const complete = await drainBody(req, maxDiscardBytes);
  if (res.headersSent || res.writableEnded) return;
  if (!complete) res.setHeader('connection', 'close');
  send();
}

/**
 * The daemon's one HTTP listener (PROTOCOL.md "HTTP"): routes from the Router, admin bearer auth,
 * JSON errors `{"error": message}`. `stop()` stops accepting and waits for in-flight requests.
 */
/** The 4xx/5xx statuses the daemon's own handlers and node:http's client-error path answer with. */
const HTTP_REJECT_STATUSES = [400, 401, 403, 404, 405, 408, 409, 413, 415, 431, 500, 503] as const;

export class HttpServer {
  private server?: Server | HttpsServer;
  private rejected: Counter<'status'> | undefined;
  private readonly limits: HttpLimits;
  private readonly access: AccessControl;
  constructor(private readonly deps: HttpServerDeps) {
    this.access = deps.access ?? new AccessControl({ adminToken: deps.adminToken });
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...deps.limits, ...(deps.maxJsonBytes !== undefined ? { maxJsonBytes: deps.maxJsonBytes } : {}) };
  }

  async start(): Promise<void> {
    const limits = this.limits;
    if (this.deps.metrics) {
      this.rejected ??= new Counter({
        name: 'fleet_http_rejected_total',
        help: 'HTTP answers with a 4xx or 5xx status, by status (bad bodies, auth, limits, timeouts)',
        labelNames: ['status'],
        registers: [this.deps.metrics],
      });
      // The statuses this server answers with, at 0 from start (issue 10 fault 3: rate() misses a first increment).
      for (const status of HTTP_REJECT_STATUSES) this.rejected.inc({ status: String(status) }, 0);
    }
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    const tls = this.deps.tls ? await this.deps.tls() : undefined;
    const options = {
      maxHeaderSize: limits.maxHeaderBytes,
      // node:http refuses to start with headersTimeout > requestTimeout; the headers are part of the request.
      headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
      requestTimeout: limits.requestTimeoutMs,
      // node:http checks the two timeouts above on this period (default 30 s); a check at a quarter of
      // the shorter one keeps an idle peer's fd from outliving it by more than that.
      connectionsCheckingInterval: Math.max(100, Math.min(5000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4))),
    };
    // http.tls (issue 10 fault 5): the same listener and limits, over TLS.
    const server = tls ? createHttpsServer({ ...tls, ...options }, handler) : createServer(options, handler);
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket, (status) => this.countRejected(status)));
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
    server.maxConnections = limits.maxConnections;
    // Without a 'timeout' listener node:http destroys a socket idle this long (no bytes either way).
    server.setTimeout(limits.idleTimeoutMs);
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

  /** The routes served (method, path template, auth). */
  routes(): ReadonlyArray<{ method: string; path: string; auth: string }> {
    return this.deps.router.list();
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

  private countRejected(status: number): void {
    if (status >= 400) this.rejected?.inc({ status: String(status) });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const log = this.deps.log;
    res.once('finish', () => this.countRejected(res.statusCode));
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      sendJson(res, 400, { error: 'bad request URL', code: wireCode('BAD_REQUEST') });
      return;
    }
    securityHeaders(res, url.pathname);
    try {
      const found = this.deps.router.match(req.method ?? 'GET', url.pathname);
      if (!('route' in found)) {
        const method = req.method;
        await answer(req, res, this.limits.maxDiscardBytes, () => {
          if (found.methodMismatch) sendJson(res, 405, { error: `method ${method} not allowed on ${url.pathname}`, code: wireCode('METHOD_NOT_ALLOWED') });
          else sendJson(res, 404, { error: `no route ${url.pathname}`, code: wireCode('NOT_FOUND') });
        });
        return;
      }
      const { route, params } = found;
      for (const [key, value] of Object.entries(params)) refuseNul(key, value);
      for (const [key, value] of url.searchParams) {
        refuseNul(key, key);
        refuseNul(key, value);
      }
      const principal = await this.authorize(req, route, params, url.pathname);
      const limit = this.limits.maxJsonBytes;
      const readJson = async (): Promise<unknown> => {
        const raw = await readBody(req, limit);
        if (raw.length === 0) return undefined;
        try {
          return JSON.parse(raw.toString('utf8'), (key: string, value: unknown) => {
            refuseNul(key, key);
            if (typeof value === 'string') refuseNul(key, value);
            return value;
          });
        } catch (err) {
          if (err instanceof ValidationError) throw err;
          throw new ValidationError('request body is not valid JSON');
        }
      };
      const ctx: RequestContext = {
        req,
        res,
        params,
        query: url.searchParams,
        ...(principal ? { principal } : {}),
        rawBody: (max = limit) => readBody(req, max),
        body: async () => (await readJson()) ?? {},
        json: async (schema, options) => {
          let value = await readJson();
          if (value === undefined) {
            if (options?.absent !== 'empty') throw new ValidationError('(body): required, a JSON body');
            value = {};
          }
          const parsed = schema.safeParse(value);
          if (!parsed.success) throw new ValidationError(describeIssue(parsed.error));
          return parsed.data;
        },
      };
      // The actor reaches history below the HTTP layer as an argument (ctx.principal), not through
      // AsyncLocalStorage: on Node 20 that enables a promise hook for the whole process, a cost every
      // promise of the MQTT hot path then pays (issue 12).
      const result = await route.handler(ctx);
      if (principal && !SAFE_METHODS.has(route.method) && res.statusCode < 400) {
        await this.recordChange(principal, route, params, url.pathname, req, res, result, ctx.auditDetail);
      }
      if (!res.headersSent && !res.writableEnded) {
        // A handler may set res.statusCode (201 Created) before returning its body.
        await answer(req, res, this.limits.maxDiscardBytes, () => {
          if (result === undefined) {
            res.writeHead(204);
            res.end();
          } else sendJson(res, res.statusCode >= 200 && res.statusCode < 300 ? res.statusCode : 200, result);
        });
      }
    } catch (caught) {
      // A storage constraint (a race past a service's own check) is a 409/400, never a 500 (issue 11 fault 2).
      let err = fromStorageError(caught);
      // A store that is away or busy (PostgreSQL unreachable, a lock or statement timeout, SQLite busy) is our
      // own outage, not a bug: 503 with a code to retry on, as /readyz says (issue 13), never 500 `internal`.
      const fault = err instanceof XcareError ? undefined : storeFaultReason(err);
      if (fault === 'unreachable' || fault === 'locked') {
        err = new XcareError('STORE_UNAVAILABLE', `the store is ${fault === 'locked' ? 'busy (a lock or statement timeout)' : 'unreachable'}; retry`, 503, { cause: caught });
        log.warn({ err: caught, path: url.pathname, reason: fault }, 'request failed: store unavailable');
      }
      // 503 is a known, retryable answer (external broker away, cluster follower), not a bug: sent as is.
      const known = err instanceof XcareError && (err.status < 500 || err.status === 503) ? err : undefined;
      if (!known) log.error({ err, path: url.pathname }, 'request failed');
      if (!res.headersSent) {
        await answer(req, res, this.limits.maxDiscardBytes, () => {
          if (known?.status === 401) res.setHeader('www-authenticate', 'Bearer');
          sendJson(res, known?.status ?? 500, known ? errorBody(known) : { error: 'internal error', code: wireCode('INTERNAL') });
        });
      } else res.destroy();
    }
  }

  /**
   * Resolves the principal of `admin` and `session` routes in one place (issue 14): 401 without a valid token or
   * session, 403 (audited) when its role is below the route's, 403 when a cookie-authenticated change lacks the
   * session's CSRF token or comes from another origin. `session` routes accept a missing principal.
   */
  private async authorize(req: IncomingMessage, route: Route, params: Record<string, string>, pathname: string): Promise<Principal | undefined> {
    if (route.auth !== 'admin' && route.auth !== 'session') return undefined;
    const principal = await this.access.authenticate(req);
    if (!principal) {
      if (route.auth === 'session') return undefined;
      throw new UnauthorizedError('missing or wrong token');
    }
    if (!roleAllows(principal.role, route.role)) {
      const denied = describeDenied(route.method, route.path, params);
      try {
        await this.deps.audit?.({ principal, ...denied, detail: { ...denied.detail, needed: route.role }, method: route.method, path: pathname, status: 403, remote: req.socket.remoteAddress ?? null });
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

  private async recordChange(
    principal: Principal,
    route: Route,
    params: Record<string, string>,
    pathname: string,
    req: IncomingMessage,
    res: ServerResponse,
    result: unknown,
    extra: Record<string, unknown> | undefined,
  ): Promise<void> {
    if (!this.deps.audit) return;
    const change = describeChange(route.method, route.path, params, result);
    try {
      // Awaited before the answer: a client that saw its change acknowledged finds it in the audit log.
      await this.deps.audit({
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
