import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CliError, type CliContext } from './command.js';

export interface ContextOptions {
  url?: string;
  token?: string;
  json: boolean;
  env: NodeJS.ProcessEnv;
  cwd: string;
  out?: (text: string) => void;
}

/**
 * The daemon URL when neither --url nor XCARE_URL is given: the daemon's own XCARE_HTTP_HOST/XCARE_HTTP_PORT
 * overrides when set (issue 10: one port setting moves the daemon and xcarectl together), else
 * http://127.0.0.1:8080. A wildcard listen host is reached on loopback.
 */
export function defaultDaemonUrl(env: NodeJS.ProcessEnv): string {
  const host = env.XCARE_HTTP_HOST && !['0.0.0.0', '::', '[::]'].includes(env.XCARE_HTTP_HOST) ? env.XCARE_HTTP_HOST : '127.0.0.1';
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${env.XCARE_HTTP_PORT || '8080'}`;
}

/**
 * Builds what commands need to talk to the daemon: --url/--token, else XCARE_URL/XCARE_TOKEN,
 * else {@link defaultDaemonUrl} and $XCARE_DATA_DIR/admin.token or ./data/admin.token (PROTOCOL.md "Command line").
 */
export function createCliContext(opts: ContextOptions): CliContext {
  const url = (opts.url ?? opts.env.XCARE_URL ?? defaultDaemonUrl(opts.env)).replace(/\/+$/, '');
  const out = opts.out ?? ((text: string) => process.stdout.write(text));
  let cachedToken: string | undefined;
  const token = (): string => {
    if (cachedToken) return cachedToken;
    const fromArgs = opts.token ?? opts.env.XCARE_TOKEN;
    if (fromArgs) return (cachedToken = fromArgs);
    // The daemon writes it under its data dir: XCARE_DATA_DIR when set (as for the daemon), else ./data.
    const file = opts.env.XCARE_DATA_DIR ? resolve(opts.cwd, opts.env.XCARE_DATA_DIR, 'admin.token') : join(opts.cwd, 'data', 'admin.token');
    try {
      return (cachedToken = readFileSync(file, 'utf8').trim());
    } catch {
      throw new CliError(`no admin token: pass --token, set XCARE_TOKEN, or run from the daemon's directory (${file})`);
    }
  };
  const doFetch = async (path: string, init: RequestInit): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${token()}`);
    try {
      return await fetch(`${url}${path}`, { ...init, headers });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      throw new CliError(`cannot reach the daemon at ${url}: ${cause?.code ?? (err as Error).message}`);
    }
  };
  return {
    url,
    token,
    json: opts.json,
    env: opts.env,
    cwd: opts.cwd,
    fetch: doFetch,
    async api<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await doFetch(path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let data: unknown = undefined;
      try {
        data = text ? JSON.parse(text) : undefined;
      } catch {
        data = text;
      }
      if (!res.ok) {
        const message = (data as { error?: string } | undefined)?.error ?? `HTTP ${res.status}`;
        throw new CliError(`${message} (HTTP ${res.status})`);
      }
      return data as T;
    },
    print: (line) => out(`${line}\n`),
    printJson: (value) => out(`${JSON.stringify(value, null, 2)}\n`),
  };
}

/** Render rows as an aligned text table. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i]!))).join('  ')).join('\n');
}
