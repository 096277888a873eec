import { parseArgs } from 'node:util';
import { CliError, onePositional, type Command } from '../command.js';
import { table } from '../cli-context.js';
import type { Customer } from '../../customers/customer-store.js';

const set: Command = {
  name: ['customer', 'set'],
  summary: "create or update a customer (success engineer, notes)",
  usage:
    'xcarectl customer set NAME [--engineer NAME] [--email ADDR] [--phone NUMBER] [--notes TEXT] [--json]\n' +
    '  options left out keep their stored value; an empty value clears it',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { engineer: { type: 'string' }, email: { type: 'string' }, phone: { type: 'string' }, notes: { type: 'string' } },
    });
    const name = onePositional(positionals, set.usage);
    const body: Record<string, unknown> = {};
    if (values.engineer !== undefined) body.engineerName = values.engineer;
    if (values.email !== undefined) body.engineerEmail = values.email;
    if (values.phone !== undefined) body.engineerPhone = values.phone;
    if (values.notes !== undefined) body.notes = values.notes;
    const { customer } = await ctx.api<{ customer: Customer }>('PUT', `/api/v1/customers/${encodeURIComponent(name)}`, body);
    if (ctx.json) return ctx.printJson(customer);
    ctx.print(`customer ${customer.name} saved${engineerLine(customer) ? `: ${engineerLine(customer)}` : ''}`);
  },
};

const show: Command = {
  name: ['customer', 'show'],
  summary: 'show one customer',
  usage: 'xcarectl customer show NAME [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const name = onePositional(positionals, show.usage);
    const { customer } = await ctx.api<{ customer: Customer }>('GET', `/api/v1/customers/${encodeURIComponent(name)}`);
    if (ctx.json) return ctx.printJson(customer);
    ctx.print(`customer:          ${customer.name}`);
    ctx.print(`success engineer:  ${engineerLine(customer) || '(none named)'}`);
    ctx.print(`notes:             ${customer.notes || '-'}`);
    ctx.print(`updated:           ${customer.updatedAt}`);
  },
};

const list: Command = {
  name: ['customer', 'list'],
  summary: 'list customers',
  usage: 'xcarectl customer list [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    if (positionals.length > 0) throw new CliError(`usage: ${list.usage}`, 2);
    const { customers } = await ctx.api<{ customers: Customer[] }>('GET', '/api/v1/customers');
    if (ctx.json) return ctx.printJson(customers);
    ctx.print(table(['NAME', 'SUCCESS ENGINEER', 'NOTES'], customers.map((c) => [c.name, engineerLine(c) || '-', c.notes.split('\n')[0] ?? ''])));
  },
};

function engineerLine(c: Customer): string {
  const e = c.successEngineer;
  return [e.name, e.email, e.phone].filter(Boolean).join(', ');
}

export const commands: Command[] = [set, show, list];
