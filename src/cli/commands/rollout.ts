import { parseArgs } from 'node:util';
import { CliError, onePositional, type CliContext, type Command } from '../command.js';
import { table } from '../cli-context.js';

/** The parts of the daemon's rollout view (src/rollouts/rollout-scheduler.ts RolloutView) the CLI prints. */
type StateCounts = Record<'pending' | 'offered' | 'downloading' | 'installing' | 'installed' | 'done' | 'failed' | 'excluded', number>;

export interface RolloutViewJson {
  id: string;
  patchId: string;
  state: string;
  currentWave: number;
  reason: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  spec: {
    target: { types: string[]; customers: string[]; tags: string[]; software: string | null };
    waves: { size: { count: number } | { percent: number }; soakMs: number }[];
    window: { cron: string; durationMs: number; timezone: string };
    abortThreshold: number;
    maxConcurrent: number;
    maxPerGateway: number;
    jitterMs: number;
    progressTimeoutMs?: number;
    reportTimeoutMs?: number;
    retries?: number;
    retryBackoffMs?: number;
  };
  window: { open: boolean; openedAt: string | null; closesAt: string | null; opensAt: string | null; error?: string } | null;
  /** Earliest the rollout can complete (a lower bound), or null when it has ended. */
  eta?: string | null;
  counts: StateCounts;
  /** Devices planned into waves and not left out since (absent from daemons before issue 9's follow-up). */
  devices?: number;
  waves: { index: number; size: number; soakMs: number; counts: StateCounts; status?: string; soakEndsAt?: string | null }[];
  excludedAtPlanning: number;
  excluded: { deviceId: string; wave: number | null; reason: string }[];
  failed?: { deviceId: string; wave: number | null; reason: string; attempts: number }[];
}

/**
 * Exit codes of `rollout watch` (documented in README "Rollouts"): 0 only when the rollout completed, so
 * `xcarectl rollout watch ID && echo deployed` says deployed only when it is.
 */
export const WATCH_EXIT = { completed: 0, aborted: 3, failed: 4, stillRunning: 5 } as const;

interface RolloutSummaryJson {
  id: string;
  patchId: string;
  state: string;
  currentWave: number;
  waves: number;
  createdAt: string;
  counts: StateCounts;
}

const ENDED = new Set(['completed', 'aborted', 'failed']);

function list(value: string[] | undefined): string[] | undefined {
  if (!value) return undefined;
  const items = value.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  return items.length ? items : undefined;
}

/** `--wave 5`, `--wave 10%`, `--wave 100%:1h` (size, optional per-wave soak). */
export function parseWaveFlag(flag: string): { size: number | string; soak?: string } {
  const [size, soak] = flag.split(':');
  if (!size) throw new CliError(`--wave ${flag}: expected SIZE[:SOAK], e.g. 5, 10% or 100%:1h`, 2);
  const parsedSize = /^\d+$/.test(size.trim()) ? Number(size.trim()) : size.trim();
  return soak ? { size: parsedSize, soak: soak.trim() } : { size: parsedSize };
}

/** Map the CLI flags to the API body of POST /api/v1/rollouts. */
export function createBody(values: Record<string, string | string[] | boolean | undefined>): Record<string, unknown> {
  const str = (k: string) => values[k] as string | undefined;
  if (!str('patch')) throw new CliError('--patch is required', 2);
  const waves = values.wave as string[] | undefined;
  if (!waves?.length) throw new CliError('--wave is required (e.g. --wave 5 --wave 10% --wave 100%)', 2);
  for (const k of ['window', 'duration', 'tz']) if (!str(k)) throw new CliError(`--${k} is required`, 2);
  const body: Record<string, unknown> = {
    patchId: str('patch'),
    target: {
      types: list(values.types as string[] | undefined),
      customers: list(values.customers as string[] | undefined),
      tags: list(values.tags as string[] | undefined),
      software: str('software'),
    },
    waves: waves.map(parseWaveFlag),
    window: { cron: str('window'), duration: str('duration'), timezone: str('tz') },
  };
  if (str('soak')) body.soak = str('soak');
  if (str('jitter')) body.jitter = str('jitter');
  if (str('progress-timeout')) body.progressTimeout = str('progress-timeout');
  if (str('report-timeout')) body.reportTimeout = str('report-timeout');
  if (str('retry-backoff')) body.retryBackoff = str('retry-backoff');
  const num = (flag: string, key: string, integer: boolean) => {
    const v = str(flag);
    if (v === undefined) return;
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new CliError(`--${flag}: expected ${integer ? 'an integer' : 'a number'}`, 2);
    body[key] = n;
  };
  num('abort-threshold', 'abortThreshold', false);
  num('max-concurrent', 'maxConcurrent', true);
  num('max-per-gateway', 'maxPerGateway', true);
  num('retries', 'retries', true);
  return body;
}

const BAR = 30;

/** One progress bar per wave: `#` done, `x` failed, `=` updating, `.` pending; excluded devices are not in the bar. */
export function renderProgress(view: RolloutViewJson): string[] {
  const lines: string[] = [];
  const waveCount = view.waves.length;
  let windowText = '';
  if (view.window) {
    windowText = view.window.open ? `window open until ${view.window.closesAt}` : `window closed, opens ${view.window.opensAt ?? 'never'}`;
  }
  lines.push(
    `${view.id}  ${view.patchId}  ${view.state}  wave ${Math.min(view.currentWave + 1, waveCount)}/${waveCount}${windowText ? `  ${windowText}` : ''}${view.reason ? `  (${view.reason})` : ''}`,
  );
  for (const w of view.waves) {
    const c = w.counts;
    const updating = c.offered + c.downloading + c.installing + c.installed;
    const counted = w.size - c.excluded;
    const cells = (n: number) => (counted === 0 ? 0 : Math.round((n / counted) * BAR));
    const done = cells(c.done);
    const failed = Math.min(BAR - done, cells(c.failed));
    const busy = Math.min(BAR - done - failed, cells(updating));
    const bar = '#'.repeat(done) + 'x'.repeat(failed) + '='.repeat(busy) + '.'.repeat(BAR - done - failed - busy);
    const pct = counted === 0 ? 100 : Math.floor(((c.done + c.failed) / counted) * 100);
    const marker = w.index === view.currentWave && !ENDED.has(view.state) ? '>' : ' ';
    lines.push(
      `${marker} wave ${w.index + 1}  [${bar}] ${String(pct).padStart(3)}%  pending ${c.pending}  offered ${c.offered}  installing ${c.downloading + c.installing + c.installed}  done ${c.done}  failed ${c.failed}  excluded ${c.excluded}`,
    );
  }
  if (view.excludedAtPlanning > 0) lines.push(`  left out at planning: ${view.excludedAtPlanning}`);
  return lines;
}

/** Seconds (or minutes) until an ISO time, for countdowns; `now` injectable for tests. */
export function countdown(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((Date.parse(iso) - now) / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** `rollout watch` lines: the progress bars, then soak countdown, window and rollout ETAs, failed devices by name. */
export function renderWatch(view: RolloutViewJson, now = Date.now()): string[] {
  const lines = renderProgress(view);
  const current = view.waves[view.currentWave];
  if (!ENDED.has(view.state)) {
    const parts: string[] = [];
    if (current?.soakEndsAt) parts.push(`wave ${current.index + 1} soaking, passes in ${countdown(current.soakEndsAt, now)} if all stay healthy`);
    if (view.window?.open && view.window.closesAt) parts.push(`window closes in ${countdown(view.window.closesAt, now)}`);
    else if (view.window?.opensAt) parts.push(`window opens in ${countdown(view.window.opensAt, now)}`);
    if (view.eta) parts.push(`rollout done at the earliest ${view.eta}`);
    if (parts.length) lines.push(`  ${parts.join('; ')}`);
  }
  const failed = view.failed ?? [];
  if (failed.length > 0) lines.push(`  failed: ${failed.slice(0, 20).map((f) => f.deviceId).join(', ')}${failed.length > 20 ? ` and ${failed.length - 20} more` : ''}`);
  return lines;
}

function describeSize(size: { count: number } | { percent: number }): string {
  return 'count' in size ? String(size.count) : `${size.percent}%`;
}

function minutes(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

const create: Command = {
  name: ['rollout', 'create'],
  summary: 'create a rollout of a published patch (waves, window, gate, caps)',
  usage: `xcarectl rollout create --patch ID [--types gateway,sensor] [--customers C,..] [--tags T,..] [--software RANGE]
    --wave 5 --wave 10% --wave 100%[:SOAK] [--soak 30m] --window "0 2 * * *" --duration 4h --tz Europe/Berlin
    [--abort-threshold 0.1] [--max-concurrent N] [--max-per-gateway N] [--jitter 10m] [--progress-timeout 1h]
    [--report-timeout 15m] [--retries N] [--retry-backoff 1m] [--json]
  A count wave takes that many devices; a percentage wave takes that share of the devices not in an earlier wave;
  the last wave takes all the rest. --soak is bake time: a wave passes once that long has passed since its last
  device was done, every device still healthy. --report-timeout is the time a device has, after its final
  \`installed\`, to heartbeat the new version. --retries offers a device again after a transient failure.`,
  async run(argv, ctx) {
    const { values } = parseArgs({
      args: argv,
      options: {
        patch: { type: 'string' },
        types: { type: 'string', multiple: true },
        customers: { type: 'string', multiple: true },
        tags: { type: 'string', multiple: true },
        software: { type: 'string' },
        wave: { type: 'string', multiple: true },
        soak: { type: 'string' },
        window: { type: 'string' },
        duration: { type: 'string' },
        tz: { type: 'string' },
        'abort-threshold': { type: 'string' },
        'max-concurrent': { type: 'string' },
        'max-per-gateway': { type: 'string' },
        jitter: { type: 'string' },
        'progress-timeout': { type: 'string' },
        'report-timeout': { type: 'string' },
        retries: { type: 'string' },
        'retry-backoff': { type: 'string' },
      },
    });
    const view = await ctx.api<RolloutViewJson>('POST', '/api/v1/rollouts', createBody(values));
    if (ctx.json) return ctx.printJson(view);
    // Each wave's own size as the progress lines count it (size minus excluded), and their sum: not
    // `counts.pending`, which already lacks the canary offers sent at creation when the window is open.
    const sizes = view.waves.map((w) => w.size - w.counts.excluded);
    const total = view.devices ?? sizes.reduce((n, s) => n + s, 0);
    ctx.print(`rollout ${view.id} created (${view.state}): ${total} devices in ${view.waves.length} waves (${sizes.join(' / ')}), ${view.excludedAtPlanning} left out`);
    if (view.window && !view.window.open && view.window.opensAt) ctx.print(`first window opens ${view.window.opensAt}`);
  },
};

const listCmd: Command = {
  name: ['rollout', 'list'],
  summary: 'list rollouts, newest first',
  usage: 'xcarectl rollout list [--state scheduled|running|paused|completed|aborted|failed] [--json]',
  async run(argv, ctx) {
    const { values } = parseArgs({ args: argv, options: { state: { type: 'string' } } });
    const res = await ctx.api<{ rollouts: RolloutSummaryJson[] }>('GET', `/api/v1/rollouts${values.state ? `?state=${encodeURIComponent(values.state)}` : ''}`);
    if (ctx.json) return ctx.printJson(res.rollouts);
    ctx.print(
      table(
        ['ID', 'PATCH', 'STATE', 'WAVE', 'DONE', 'FAILED', 'PENDING', 'EXCLUDED', 'CREATED'],
        res.rollouts.map((r) => [r.id, r.patchId, r.state, `${Math.min(r.currentWave + 1, r.waves)}/${r.waves}`, r.counts.done, r.counts.failed, r.counts.pending, r.counts.excluded, r.createdAt]),
      ),
    );
  },
};

const show: Command = {
  name: ['rollout', 'show'],
  summary: 'show a rollout: plan, window, per-wave counts, failed devices with reasons and output, devices left out and why',
  usage: 'xcarectl rollout show ID [--json]',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const id = onePositional(positionals, show.usage);
    const view = await ctx.api<RolloutViewJson>('GET', `/api/v1/rollouts/${encodeURIComponent(id)}`);
    if (ctx.json) return ctx.printJson(view);
    const s = view.spec;
    for (const line of renderProgress(view)) ctx.print(line);
    ctx.print('');
    const t = s.target;
    ctx.print(`target     types ${t.types.join(',') || 'any'}; customers ${t.customers.join(',') || 'any'}; tags ${t.tags.join(',') || 'any'}; software ${t.software ?? 'any'}`);
    ctx.print(`waves      ${s.waves.map((w) => `${describeSize(w.size)} (soak ${minutes(w.soakMs)})`).join(', ')}`);
    ctx.print(`window     "${s.window.cron}" for ${minutes(s.window.durationMs)} in ${s.window.timezone}; jitter ${minutes(s.jitterMs)}`);
    ctx.print(`gate       abort above ${s.abortThreshold * 100} % failed; max ${s.maxConcurrent} at once, ${s.maxPerGateway} per gateway`);
    if (s.reportTimeoutMs !== undefined) {
      ctx.print(`devices    ${minutes(s.reportTimeoutMs)} to report the new version; ${s.retries ?? 0} retries (backoff ${minutes(s.retryBackoffMs ?? 60_000)})`);
    }
    if (view.eta) ctx.print(`eta        ${view.eta} at the earliest`);
    ctx.print(`created    ${view.createdAt}${view.startedAt ? `; started ${view.startedAt}` : ''}${view.endedAt ? `; ended ${view.endedAt}` : ''}`);
    const failed = view.failed ?? [];
    if (failed.length > 0) {
      ctx.print('');
      // The reason holds the failing step and the tail of its command's output (agent: last lines of stdout+stderr).
      ctx.print(table(['FAILED', 'WAVE', 'TRIES', 'REASON'], failed.map((f) => [f.deviceId, f.wave === null ? '-' : f.wave + 1, f.attempts, f.reason])));
    }
    if (view.excluded.length > 0) {
      ctx.print('');
      ctx.print(table(['LEFT OUT', 'WAVE', 'REASON'], view.excluded.map((e) => [e.deviceId, e.wave === null ? 'plan' : e.wave + 1, e.reason])));
    }
  },
};

function action(verb: 'pause' | 'resume' | 'abort', summary: string): Command {
  const usage = `xcarectl rollout ${verb} ID${verb === 'abort' ? ' [--reason TEXT] [--force]' : ''} [--json]`;
  return {
    name: ['rollout', verb],
    summary,
    usage,
    async run(argv, ctx) {
      const { values, positionals } = parseArgs({
        args: argv,
        allowPositionals: true,
        options: verb === 'abort' ? { reason: { type: 'string' }, force: { type: 'boolean' } } : {},
      });
      const id = onePositional(positionals, usage);
      const { reason, force } = values as { reason?: string; force?: boolean };
      const body = reason || force ? { ...(reason ? { reason } : {}), ...(force ? { force: true } : {}) } : undefined;
      const view = await ctx.api<RolloutViewJson>('POST', `/api/v1/rollouts/${encodeURIComponent(id)}/${verb}`, body);
      if (ctx.json) return ctx.printJson(view);
      ctx.print(`rollout ${view.id} ${view.state}`);
    },
  };
}

/** Sleep for the watch loop (the CLI runs on wall time; the daemon's clock is not involved). */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const watch: Command = {
  name: ['rollout', 'watch'],
  summary: 'live progress per wave, soak countdown, ETAs, failed devices; exit 0 only when completed',
  usage: `xcarectl rollout watch ID [--once] [--interval SECONDS] [--json]
  Exit codes: 0 completed; ${WATCH_EXIT.aborted} aborted; ${WATCH_EXIT.failed} failed at run time; ${WATCH_EXIT.stillRunning} still scheduled, running or paused (--once).`,
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { once: { type: 'boolean' }, interval: { type: 'string' } } });
    const id = onePositional(positionals, watch.usage);
    const intervalMs = values.interval === undefined ? 1000 : Number(values.interval) * 1000;
    if (!(intervalMs >= 100)) throw new CliError('--interval: expected seconds >= 0.1', 2);
    const view = await watchLoop(ctx, id, { once: values.once === true, intervalMs, tty: process.stdout.isTTY === true && !ctx.json });
    const code = watchExitCode(view.state);
    if (code !== 0) throw new CliError(`rollout ${view.id} ${ENDED.has(view.state) ? view.state : `is still ${view.state}`}${view.reason ? `: ${view.reason}` : ''}`, code);
  },
};

/** The exit code of `rollout watch` for a rollout state (issue 9 fault 5). */
export function watchExitCode(state: string): number {
  if (state === 'completed') return WATCH_EXIT.completed;
  if (state === 'aborted') return WATCH_EXIT.aborted;
  if (state === 'failed') return WATCH_EXIT.failed;
  return WATCH_EXIT.stillRunning;
}

export async function watchLoop(ctx: CliContext, id: string, opts: { once: boolean; intervalMs: number; tty: boolean }): Promise<RolloutViewJson> {
  let drawn = 0;
  for (;;) {
    const view = await ctx.api<RolloutViewJson>('GET', `/api/v1/rollouts/${encodeURIComponent(id)}?excludedLimit=0`);
    if (ctx.json) ctx.print(JSON.stringify(view));
    else {
      const lines = renderWatch(view);
      // On a terminal, move up over the previous drawing and clear it; otherwise append (logs, pipes).
      if (opts.tty && drawn > 0) ctx.print(`\x1b[${drawn}A\x1b[J${lines[0]}`);
      else ctx.print(lines[0]!);
      for (const line of lines.slice(1)) ctx.print(line);
      drawn = lines.length;
    }
    if (opts.once || ENDED.has(view.state)) return view;
    await sleep(opts.intervalMs);
  }
}

export const commands: Command[] = [
  create,
  listCmd,
  show,
  action('pause', 'pause a rollout: no new offers, no wave advance'),
  action('resume', 'resume a paused rollout'),
  action('abort', 'abort a rollout: no further offers; --force also cancels downloads and installs not past their point of no return'),
  watch,
];
