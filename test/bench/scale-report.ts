import { readFileSync } from 'node:fs';
import type { StoreKind } from './bench-store.js';

/** How BENCH=scale (scale-bench.ts) prints and sums up: the side-by-side table, load average, daemon logs. */

export interface Step {
  offered: number;
  achieved: number;
  p50: number;
  p99: number;
  /** Every process of the setup, PostgreSQL's backends included. */
  cpuUsPerHb: number;
  /** Of which PostgreSQL's backends serving the daemons (PostgreSQL setups only). */
  pgCpuUsPerHb?: number;
  /** Longest event-loop block of each daemon during the step (ms; prom-client's nodejs_eventloop_lag_max_seconds). */
  loopMaxMs: number[];
}

/** The load averages (the box is shared: every figure is printed with it). */
export function loadAvg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Warnings and errors (pino level >= 40) in a daemon log: count and the most frequent messages. */
export function logSummary(file: string): { warnings: number; errors: number; top: string[] } {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { warnings: 0, errors: 0, top: [] };
  }
  let warnings = 0;
  let errors = 0;
  const msgs = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((rec.level ?? 0) < 40) continue;
      if (rec.level! >= 50) errors++;
      else warnings++;
      const key = `${rec.level! >= 50 ? 'error' : 'warn'}: ${rec.msg ?? ''}${rec.err?.message ? ` (${rec.err.message.slice(0, 120)})` : ''}`;
      msgs.set(key, (msgs.get(key) ?? 0) + 1);
    } catch {
      /* not a log record */
    }
  }
  const top = [...msgs.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([m, n]) => `${n}x ${m}`);
  return { warnings, errors, top };
}

export const storeLabel = (k: StoreKind) => (k === 'postgres' ? 'PostgreSQL' : 'SQLite');

const SETUP_TITLES: Record<string, string> = {
  embedded: 'embedded aedes',
  external1: 'Mosquitto+1 xcared',
  'external1-sqlite': 'Mosquitto+1 xcared',
  external2: 'Mosquitto+2 xcared (cluster)',
};

/**
 * The figures of every setup side by side (issue 13 "printed side by side in one run"), one row per offered
 * rate: achieved/s, PUBACK p99, CPU µs per heartbeat (PostgreSQL's share in brackets), longest event-loop
 * block of each daemon; then connect, memory, herd and failover rows.
 */
export function sideBySide(results: Record<string, unknown>): string[] {
  type Entry = { store: StoreKind; connectS: number; rssPerDeviceKb: number; steps: Step[]; herdAfterDaemonRestart?: Herd; herdAfterBrokerRestart?: Herd & { daemonLoopMaxMs: number }; daemonRestartReadyS?: number; failover?: Record<string, number> };
  type Herd = { allConnectedS: number; p99DuringMs: number; retries: number };
  const keys = ['embedded', 'external1', 'external1-sqlite', 'external2'].filter((k) => results[k]);
  if (keys.length === 0) return [];
  const e = (k: string) => results[k] as Entry;
  const head = keys.map((k) => `${SETUP_TITLES[k]}, ${storeLabel(e(k).store)}`);
  const rates = [...new Set(keys.flatMap((k) => e(k).steps.map((s) => s.offered)))];
  const cell = (k: string, rate: number) => {
    const s = e(k).steps.find((x) => x.offered === rate);
    if (!s) return '(not reached)';
    const pgPart = s.pgCpuUsPerHb !== undefined ? ` (PG ${s.pgCpuUsPerHb})` : '';
    return `${s.achieved}/s p99 ${s.p99} ms, ${s.cpuUsPerHb}${pgPart} µs/hb, loop max ${s.loopMaxMs.join('/')} ms`;
  };
  const rows: [string, string[]][] = [
    ...rates.map((r): [string, string[]] => [`${r} hb/s offered`, keys.map((k) => cell(k, r))]),
    ['best rate at p99 < 100 ms', keys.map((k) => `${Math.max(0, ...e(k).steps.filter((s) => s.p99 < 100 && s.achieved >= s.offered * 0.98).map((s) => s.achieved))}/s`)],
    ['connect all devices', keys.map((k) => `${e(k).connectS} s`)],
    ['RSS per connected device', keys.map((k) => `${e(k).rssPerDeviceKb} KB${e(k).store === 'postgres' ? ' (PG not counted)' : ''}`)],
    [
      'reconnect herd',
      keys.map((k) => {
        const h = e(k).herdAfterDaemonRestart ?? e(k).herdAfterBrokerRestart;
        if (!h) return '—';
        const after = e(k).herdAfterDaemonRestart ? 'daemon restart' : 'broker restart';
        return `after a ${after}: all in ${h.allConnectedS} s, p99 ${h.p99DuringMs} ms${'daemonLoopMaxMs' in h ? `, loop max ${h.daemonLoopMaxMs} ms` : ''}`;
      }),
    ],
    [
      'failover (lease 5 s, renew 1 s)',
      keys.map((k) => {
        const f = e(k).failover;
        return f ? `kill -9 -> leads ${f.leaderS} s, first tick ${f.firstTickS} s; tickets opened ${f.ticketsOpenedByFailover}` : '—';
      }),
    ],
  ];
  const out = ['', `side by side (${results.devices} devices; load at start ${String(results.loadAtStart)}):`, `| | ${head.join(' | ')} |`, `|---|${head.map(() => '---').join('|')}|`];
  for (const [label, cells] of rows) out.push(`| ${label} | ${cells.join(' | ')} |`);
  out.push('');
  return out;
}

