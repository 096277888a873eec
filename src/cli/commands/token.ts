import { parseArgs } from 'node:util';
import { CliError, onePositional, type Command } from '../command.js';
import { table } from '../cli-context.js';
import { ROLES } from '../../access/roles.js';

interface ApiTokenJson {
  id: number;
  name: string;
  role: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

const create: Command = {
  name: ['token', 'create'],
  summary: 'create an API token with a role (viewer, operator, admin); prints the token once',
  usage: 'xcarectl token create --role viewer|operator|admin --name NAME [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { role: { type: 'string' }, name: { type: 'string' } } });
    if (positionals.length > 0) throw new CliError(`usage: ${create.usage}`, 2);
    if (!values.name) throw new CliError('--name is required', 2);
    if (!values.role || !(ROLES as readonly string[]).includes(values.role)) throw new CliError('--role must be viewer, operator or admin', 2);
    const res = await ctx.api<{ token: string; apiToken: ApiTokenJson }>('POST', '/api/v1/tokens', { name: values.name, role: values.role });
    if (ctx.json) return ctx.printJson(res);
    ctx.print(`token ${res.apiToken.name} created (${res.apiToken.role})`);
    ctx.print(`token: ${res.token}   (shown once; stored only as a hash)`);
  },
};

const list: Command = {
  name: ['token', 'list'],
  summary: 'API tokens with their roles (never the secrets)',
  usage: 'xcarectl token list [--all] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { all: { type: 'boolean', default: false } } });
    if (positionals.length > 0) throw new CliError(`usage: ${list.usage}`, 2);
    const res = await ctx.api<{ tokens: ApiTokenJson[] }>('GET', `/api/v1/tokens${values.all ? '?revoked=true' : ''}`);
    if (ctx.json) return ctx.printJson(res.tokens);
    if (res.tokens.length === 0) return ctx.print('no API tokens (the admin token is always there)');
    ctx.print(
      table(
        ['ID', 'NAME', 'ROLE', 'CREATED', 'BY', 'LAST USED', 'REVOKED'],
        res.tokens.map((t) => [t.id, t.name, t.role, t.createdAt, t.createdBy, t.lastUsedAt, t.revokedAt]),
      ),
    );
  },
};

const revoke: Command = {
  name: ['token', 'revoke'],
  summary: 'revoke an API token (by id or name); its console sessions end',
  usage: 'xcarectl token revoke ID|NAME [--json]   (or --name NAME)',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { name: { type: 'string' } } });
    const which = values.name && positionals.length === 0 ? values.name : onePositional(positionals, revoke.usage);
    const res = await ctx.api<{ apiToken: ApiTokenJson }>('POST', `/api/v1/tokens/${encodeURIComponent(which)}/revoke`, {});
    if (ctx.json) return ctx.printJson(res.apiToken);
    ctx.print(`token ${res.apiToken.name} revoked`);
  },
};

export const commands: Command[] = [create, list, revoke];
