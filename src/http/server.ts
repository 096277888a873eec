import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import { XcareError, ValidationError, UnauthorizedError } from '../errors.js';
import type { Router, RequestContext } from './router.js';

export interface HttpServerDeps {
  router: Router;
  log: Logger;
  host: string;
  port: number;
  /** The admin bearer token `admin` routes require. */
  adminToken: string;
  /** Largest JSON body accepted (bytes). */
  maxJsonBytes?: number;
}

/** Constant-time comparison of two secrets of any length. */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
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
  constructor(private readonly deps: HttpServerDeps) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.deps.port, this.deps.host, () => {
        server.off('error', reject);
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
    try {
      const found = this.deps.router.match(req.method ?? 'GET', url.pathname);
      if (!('route' in found)) {
        if (found.methodMismatch) sendJson(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}` });
        else sendJson(res, 404, { error: `no route ${url.pathname}` });
        req.resume();
        return;
      }
      const { route, params } = found;
      if (route.auth === 'admin') this.checkAdmin(req);
      const limit = this.deps.maxJsonBytes ?? 1024 * 1024;
      const ctx: RequestContext = {
        req,
        res,
        params,
        query: url.searchParams,
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
      const result = await route.handler(ctx);
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

  private checkAdmin(req: IncomingMessage): void {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !secretEquals(match[1]!.trim(), this.deps.adminToken)) throw new UnauthorizedError('missing or wrong admin token');
  }
}
