import { parseArgs } from 'node:util';
import { CliError, onePositional, type Command } from '../command.js';
import { table } from '../cli-context.js';
import { isCalendarDate } from '../../protocol/rfc3339.js';
import type { Quote } from '../../subscriptions/fiscal-year.js';

/** The API answers with the Quote of src/subscriptions/fiscal-year.ts, as JSON. */
type QuoteJson = Quote;

const quote: Command = {
  name: ['subscription', 'quote'],
  summary: 'pro-rata price from a start date to June 30',
  usage: 'xcarectl subscription quote --tier xcare|xcare_pro --start YYYY-MM-DD [--devices N] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { tier: { type: 'string' }, start: { type: 'string' }, devices: { type: 'string' } },
    });
    if (positionals.length > 0) throw new CliError(`usage: ${quote.usage}`, 2);
    if (!values.tier) throw new CliError('--tier is required', 2);
    if (!values.start) throw new CliError('--start is required', 2);
    if (!isCalendarDate(values.start)) throw new CliError(`--start: '${values.start}' is not a calendar date YYYY-MM-DD`, 2);
    const query = new URLSearchParams({ tier: values.tier, start: values.start });
    if (values.devices !== undefined) query.set('devices', values.devices);
    const { quote: q } = await ctx.api<{ quote: QuoteJson }>('GET', `/api/v1/subscriptions/quote?${query}`);
    if (ctx.json) return ctx.printJson(q);
    const currency = q.currency ? ` ${q.currency}` : '';
    ctx.print(`${q.tier} x ${q.devices} device(s), ${q.start} .. ${q.end}`);
    ctx.print(`${q.daysCovered} of ${q.daysInFiscalYear} days at ${q.annualPrice.toFixed(2)}${currency} a year per device`);
    ctx.print(`total: ${q.amount.toFixed(2)}${currency}`);
  },
};

const renew: Command = {
  name: ['subscription', 'renew'],
  summary: "renew a device's subscription to the June 30 named by --to (repeating it changes and charges nothing)",
  usage: 'xcarectl subscription renew DEVICE --to YYYY-06-30 [--tier xcare|xcare_pro] [--json]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { tier: { type: 'string' }, to: { type: 'string' } } });
    const id = onePositional(positionals, renew.usage);
    // --to is what makes a retry safe (issue 10 fault 7): the daemon names the right date if it is missing.
    const res = await ctx.api<{ device: { id: string; tier: string; subscriptionEnd: string }; renewed: boolean; to: string; charged: number; quote?: QuoteJson }>(
      'POST',
      `/api/v1/devices/${encodeURIComponent(id)}/renew`,
      { ...(values.tier ? { tier: values.tier } : {}), ...(values.to ? { to: values.to } : {}) },
    );
    if (ctx.json) return ctx.printJson(res);
    const currency = res.quote?.currency ? ` ${res.quote.currency}` : '';
    if (!res.renewed) ctx.print(`${res.device.id}: already ${res.device.tier} until ${res.device.subscriptionEnd}; nothing changed, nothing charged`);
    else ctx.print(`${res.device.id}: ${res.device.tier} until ${res.device.subscriptionEnd} (${res.charged.toFixed(2)}${currency})`);
  },
};

const integrityRegister: Command = {
  name: ['integrity', 'register'],
  summary: 'register the software digest devices on a version must report (eligibility)',
  usage: 'xcarectl integrity register --version V --digest sha256:<64 hex> [--replace] [--json]',
  async run(argv, ctx) {
    const { values } = parseArgs({ args: argv, options: { version: { type: 'string' }, digest: { type: 'string' }, replace: { type: 'boolean' } } });
    if (!values.version || !values.digest) throw new CliError('--version and --digest are required', 2);
    const res = await ctx.api<{ integrity: { version: string; digest: string } }>('POST', '/api/v1/integrity', {
      version: values.version,
      digest: values.digest,
      ...(values.replace ? { replace: true } : {}),
    });
    if (ctx.json) return ctx.printJson(res.integrity);
    ctx.print(`version ${res.integrity.version}: ${res.integrity.digest}`);
  },
};

const integrityList: Command = {
  name: ['integrity', 'list'],
  summary: 'list registered software digests',
  usage: 'xcarectl integrity list [--json]',
  async run(argv, ctx) {
    parseArgs({ args: argv, options: {} });
    const res = await ctx.api<{ integrity: { version: string; digest: string; source: string; registeredAt: string }[] }>('GET', '/api/v1/integrity');
    if (ctx.json) return ctx.printJson(res.integrity);
    ctx.print(table(['VERSION', 'DIGEST', 'SOURCE', 'REGISTERED'], res.integrity.map((e) => [e.version, e.digest, e.source, e.registeredAt])));
  },
};

export const commands: Command[] = [quote, renew, integrityRegister, integrityList];
