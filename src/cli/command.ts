/**
 * One xcarectl command (e.g. `device add`, `patch sign`). Each command file exports its commands;
 * `src/cli/xcarectl.ts` dispatches on the longest matching name. Commands parse their own options
 * with node:util parseArgs, print with `ctx.print` (text) or `ctx.printJson` (with --json), and
 * throw CliError for a one-line message on stderr and a non-zero exit.
 */
export interface CliContext {
  /** Daemon base URL (--url, XCARE_URL, default http://127.0.0.1:8080). */
  url: string;
  /** Resolves the admin token lazily (--token, XCARE_TOKEN, ./data/admin.token). */
  token(): string;
  /** Call the daemon's HTTP API; throws CliError with the server's `error` message on 4xx/5xx. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  /** Raw request for non-JSON bodies (artifact upload). */
  fetch(path: string, init: RequestInit): Promise<Response>;
  json: boolean;
  print(line: string): void;
  printJson(value: unknown): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface Command {
  /** Words that select it: ['device', 'add']. */
  name: string[];
  /** One line for --help. */
  summary: string;
  /** Usage line(s) and options, printed by `xcarectl <name> --help`. */
  usage: string;
  run(argv: string[], ctx: CliContext): Promise<void>;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The one positional argument a command takes (an id, a file), or a usage error (exit 2). */
export function onePositional(positionals: string[], usage: string, pattern?: RegExp): string {
  if (positionals.length !== 1 || (pattern && !pattern.test(positionals[0]!))) throw new CliError(`usage: ${usage}`, 2);
  return positionals[0]!;
}
