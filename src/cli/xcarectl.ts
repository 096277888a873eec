import { CliError, type Command } from './command.js';
import { createCliContext } from './cli-context.js';
import { commands as deviceCommands } from './commands/device.js';
import { commands as ticketCommands } from './commands/tickets.js';
import { commands as subscriptionCommands } from './commands/subscription.js';
import { commands as patchCommands } from './commands/patch.js';
import { commands as rolloutCommands } from './commands/rollout.js';
import { commands as tokenCommands } from './commands/token.js';
import { commands as auditCommands } from './commands/audit.js';
import { commands as customerCommands } from './commands/customer.js';

const ALL: Command[] = [...deviceCommands, ...ticketCommands, ...subscriptionCommands, ...patchCommands, ...rolloutCommands];
ALL.push(...tokenCommands, ...auditCommands, ...customerCommands);

const GLOBAL_HELP = `Usage: xcarectl [--url URL] [--token TOKEN] [--json] <command> [options]

The xcare-fleet admin tool; talks to the daemon's HTTP API.
  --url URL      daemon URL (default: $XCARE_URL, else http://$XCARE_HTTP_HOST:$XCARE_HTTP_PORT
                 like the daemon, else http://127.0.0.1:8080)
  --token TOKEN  admin or API token (default: $XCARE_TOKEN, else $XCARE_DATA_DIR/admin.token or ./data/admin.token)
  --json         machine-readable output
  -h, --help     this help; 'xcarectl <command> --help' for a command

Commands:`;

function findCommand(words: string[]): { command: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const c of ALL) {
    if (c.name.length <= words.length && c.name.every((w, i) => words[i] === w)) {
      if (!best || c.name.length > best.name.length) best = c;
    }
  }
  return best ? { command: best, rest: words.slice(best.name.length) } : undefined;
}

/** The commands whose name begins with `prefix` (a group such as `device` or `rollout`); all for `[]`. */
function commandsUnder(prefix: string[]): Command[] {
  return ALL.filter((c) => prefix.length < c.name.length && prefix.every((w, i) => c.name[i] === w));
}

/** The global help, or with a group prefix (`xcarectl rollout --help`) that group's subcommands only. */
function help(prefix: string[] = []): string {
  const listed = commandsUnder(prefix);
  const width = Math.max(...listed.map((c) => c.name.join(' ').length));
  const head = prefix.length === 0 ? GLOBAL_HELP : `Usage: xcarectl [--url URL] [--token TOKEN] [--json] ${prefix.join(' ')} <command> [options]\n\nCommands:`;
  return `${head}\n${listed.map((c) => `  ${c.name.join(' ').padEnd(width)}  ${c.summary}`).join('\n')}`;
}

export async function runCli(argv: string[], env: NodeJS.ProcessEnv, out?: (s: string) => void): Promise<number> {
  const write = out ?? ((s: string) => process.stdout.write(s));
  // Global options may stand anywhere; everything else goes to the command.
  const globals: { url?: string; token?: string; json: boolean; help: boolean } = { json: false, help: false };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') globals.json = true;
    else if (a === '--help' || a === '-h') globals.help = true;
    else if (a === '--url' || a === '--token') {
      const v = argv[++i];
      if (v === undefined) throw new CliError(`${a} needs a value`, 2);
      globals[a.slice(2) as 'url' | 'token'] = v;
    } else if (a.startsWith('--url=')) globals.url = a.slice(6);
    else if (a.startsWith('--token=')) globals.token = a.slice(8);
    else rest.push(a);
  }
  const found = findCommand(rest);
  if (!found) {
    // A group alone (`xcarectl device`, `xcarectl rollout --help`): list its subcommands.
    if (commandsUnder(rest).length > 0) {
      write(`${help(rest)}\n`);
      return globals.help ? 0 : 2;
    }
    if (rest.length === 0 || globals.help) {
      write(`${help()}\n`);
      return rest.length === 0 && !globals.help ? 2 : 0;
    }
    throw new CliError(`unknown command '${rest.join(' ')}'; see xcarectl --help`, 2);
  }
  if (globals.help) {
    write(`${found.command.summary}\n\nUsage: ${found.command.usage}\n`);
    return 0;
  }
  const ctx = createCliContext({ url: globals.url, token: globals.token, json: globals.json, env, cwd: process.cwd(), out: write });
  await found.command.run(found.rest, ctx);
  return 0;
}

// Run when executed as a program (bin/xcarectl.js imports this module).
if (process.argv[1] && /xcarectl(\.js)?$/.test(process.argv[1])) {
  // `xcarectl device list | head`: a reader that goes away is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  runCli(process.argv.slice(2), process.env).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      const isCli = err instanceof CliError;
      const message = isCli ? err.message : ((err as Error).message ?? String(err));
      process.stderr.write(`xcarectl: ${message.split('\n')[0]}\n`);
      process.exitCode = isCli ? err.exitCode : (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1;
    },
  );
}
