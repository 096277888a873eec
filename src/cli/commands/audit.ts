import { parseArgs } from 'node:util';
import { CliError, type Command } from '../command.js';
import { table } from '../cli-context.js';
import type { AuditEntry } from '../../audit/audit-log.js';

const audit: Command = {
  name: ['audit'],
  summary: 'the audit trail: who changed what, when and from where (newest first)',
  usage: 'xcarectl audit [--actor NAME] [--action A] [--target KIND:ID] [--limit N] [--cursor C] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { actor: { type: 'string' }, action: { type: 'string' }, target: { type: 'string' }, limit: { type: 'string', default: '50' }, cursor: { type: 'string' } },
    });
    if (positionals.length > 0) throw new CliError(`usage: ${audit.usage}`, 2);
    if (!/^[1-9]\d{0,3}$/.test(values.limit!)) throw new CliError('--limit must be an integer 1..1000', 2);
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v !== undefined) query.set(k, String(v));
    const res = await ctx.api<{ entries: AuditEntry[]; nextCursor: string | null }>('GET', `/api/v1/audit?${query}`);
    if (ctx.json) return ctx.printJson(res);
    if (res.entries.length === 0) return ctx.print('no audit entries');
    ctx.print(
      table(
        ['TIME', 'WHO', 'ROLE', 'ACTION', 'TARGET', 'STATUS', 'FROM'],
        res.entries.map((e) => [e.ts, e.actor, e.role, e.action, e.target, e.status, `${e.remote ?? '-'} (${e.via})`]),
      ),
    );
    if (res.nextCursor) ctx.print(`more: xcarectl audit --cursor ${res.nextCursor}`);
  },
};

export const commands: Command[] = [audit];
