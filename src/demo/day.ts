/**
 * The demo's scripted day: each scene makes a fault happen to the simulated fleet, waits (with a deadline, never a
 * fixed sleep) for the ticket the rules promise, and puts things right again. The ticket watcher prints every ticket
 * as it opens, is attached to a parent, or resolves.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { DemoDaemon } from './daemon.js';
import type { DemoFleet } from './fleet.js';

/** A ticket as the queue API lists it (GET /api/v1/tickets?status=all), children nested. */
export interface DemoTicket {
  id: number;
  kind: string;
  subject: string;
  severity: string;
  status: string;
  band: string;
  tier: string;
  ineligibleReasons?: string[];
  covers?: string[];
  parentId?: number | null;
  children?: DemoTicket[];
}

/** The tickets the day promises, in the order its scenes open them (kind and subject). */
export const PROMISED_TICKETS: readonly { kind: string; subject: string; scene: string }[] = [
  { kind: 'gateway_loss', subject: 'gw-acme-1', scene: 'a gateway dies' },
  { kind: 'sensor_issue', subject: 'sn-acme-3b', scene: 'a sensor fails' },
  { kind: 'cloud_loss_complete', subject: 'customer:globex', scene: 'a customer loses its uplink' },
  { kind: 'flapping', subject: 'gw-initech-1', scene: 'a device flaps' },
];

export type Print = (line: string) => void;

/** Polls the ticket list and prints what changed; `find` answers from the last poll. */
export class TicketWatcher {
  private readonly seen = new Map<number, { status: string; parentId: number | null; kind: string; severity: string }>();
  private tickets: DemoTicket[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly daemon: DemoDaemon,
    private readonly print: Print,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), 500);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One poll: fetch every ticket (open ones with their children, then resolved) and print the changes. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const res = await this.daemon.api<{ tickets: DemoTicket[] }>('GET', '/api/v1/tickets?status=all');
      const flat: DemoTicket[] = [];
      for (const t of res.tickets) {
        flat.push(t);
        for (const c of t.children ?? []) flat.push({ ...c, parentId: c.parentId ?? t.id });
      }
      this.tickets = flat;
      for (const t of flat.sort((a, b) => a.id - b.id)) this.report(t);
    } catch {
      // the daemon is stopping, or busy: the next poll catches up
    } finally {
      this.polling = false;
    }
  }

  private report(t: DemoTicket): void {
    const before = this.seen.get(t.id);
    const parentId = t.parentId ?? null;
    const line = (what: string, extra = '') =>
      this.print(`  ticket #${String(t.id).padEnd(3)} ${what.padEnd(9)} ${t.severity.padEnd(7)} ${t.kind.padEnd(20)} ${t.subject.padEnd(16)} ${`${t.band}/${t.tier}`.padEnd(20)}${extra}`);
    if (!before) {
      const covers = t.covers?.length ? `covers ${t.covers.join(', ')}` : '';
      const why = t.band === 'discretionary' && t.ineligibleReasons?.length ? `(${t.ineligibleReasons.join('; ')})` : '';
      line(t.status === 'resolved' ? 'RESOLVED' : 'OPENED', [covers, why].filter(Boolean).join(' '));
    } else if (before.status !== t.status) line(t.status.toUpperCase());
    else if (before.kind !== t.kind || before.severity !== t.severity) line('ESCALATED');
    if (parentId !== null && before?.parentId !== parentId) line('ATTACHED', `under #${parentId}`);
    this.seen.set(t.id, { status: t.status, parentId, kind: t.kind, severity: t.severity });
  }

  /** The newest ticket of `kind` on `subject` seen so far. */
  find(kind: string, subject: string): DemoTicket | undefined {
    return this.tickets.filter((t) => t.kind === kind && t.subject === subject).sort((a, b) => b.id - a.id)[0];
  }
}

/** Polls `probe` until it is truthy or `timeoutMs` passed; resolves the value or undefined. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface DayDeps {
  daemon: DemoDaemon;
  fleet: DemoFleet;
  watcher: TicketWatcher;
  print: Print;
  /** Work dir for the patch build; the examples folder; the release private key. */
  dir: string;
  examples: string;
  releasePrivateKey: string;
  /** Deadline for each awaited outcome (generous: the machine may be busy). */
  sceneTimeoutMs: number;
  /** Set by Ctrl-C: scenes stop between steps. */
  cancelled: () => boolean;
  /** Between scenes, so a person can watch the tickets resolve and look around (0 in tests). */
  paceMs: number;
}

/** Plays the day; resolves the promised tickets that did not open (empty when all did). */
export async function playDay(deps: DayDeps): Promise<string[]> {
  const { daemon, fleet, watcher, print } = deps;
  const missing: string[] = [];
  const expectTicket = async (kind: string, subject: string): Promise<void> => {
    await watcher.poll();
    const t = await waitFor(async () => {
      await watcher.poll();
      const found = watcher.find(kind, subject);
      return found && found.status !== 'resolved' ? found : undefined;
    }, deps.sceneTimeoutMs);
    if (!t) {
      missing.push(`${kind} ${subject}`);
      print(`  !! no ${kind} ticket on ${subject} within ${deps.sceneTimeoutMs / 1000} s`);
    }
  };
  const healthOf = async (id: string) => (await daemon.api<{ state?: string; health?: { state: string } }>('GET', `/api/v1/devices/${id}`)).health?.state;
  let first = true;
  const scene = async (clock: string, title: string) => {
    if (!first && deps.paceMs > 0) await waitFor(() => deps.cancelled(), deps.paceMs);
    first = false;
    print(`\n${clock}  ${title}`);
  };

  await scene('08:00', 'A gateway dies: gw-acme-1 (acme, Xcare Pro) powers off with its two sensors');
  await fleet.stop('gw-acme-1');
  await expectTicket('gateway_loss', 'gw-acme-1');
  if (deps.cancelled()) return missing;
  print('        ... a technician brings it back; the ticket resolves 10 s after it heartbeats again');
  fleet.start('gw-acme-1');
  await waitFor(async () => (await healthOf('gw-acme-1')) === 'online', deps.sceneTimeoutMs);

  await scene('10:00', 'A sensor fails: sn-acme-3b stops giving readings (its gateway reports ok:false)');
  fleet.setSensor('gw-acme-3', 'sn-acme-3b', false);
  await expectTicket('sensor_issue', 'sn-acme-3b');
  if (deps.cancelled()) return missing;
  print('        ... the sensor is replaced');
  fleet.setSensor('gw-acme-3', 'sn-acme-3b', true);

  await scene('12:00', 'A customer loses its uplink: both globex gateways go silent at once');
  await Promise.all([fleet.stop('gw-globex-1'), fleet.stop('gw-globex-2')]);
  await expectTicket('cloud_loss_complete', 'customer:globex');
  if (deps.cancelled()) return missing;
  print('        ... the ISP fixes the line; the customer ticket and its gateway tickets resolve');
  fleet.start('gw-globex-1');
  fleet.start('gw-globex-2');
  await waitFor(async () => (await healthOf('gw-globex-1')) === 'online' && (await healthOf('gw-globex-2')) === 'online', deps.sceneTimeoutMs);

  await scene('14:00', 'A device flaps: gw-initech-1 (no subscription) keeps dropping its connection');
  for (let i = 0; i < 3 && !deps.cancelled(); i++) {
    await fleet.stop('gw-initech-1');
    await waitFor(async () => (await healthOf('gw-initech-1')) === 'offline', deps.sceneTimeoutMs);
    fleet.start('gw-initech-1');
    await waitFor(async () => (await healthOf('gw-initech-1')) === 'online', deps.sceneTimeoutMs);
  }
  await expectTicket('flapping', 'gw-initech-1');
  if (deps.cancelled()) return missing;
  print('        (a discretionary ticket: initech has no subscription, so it queues after every paid one)');

  await scene('16:00', 'A signed patch rolls out in waves: sample-app 1.1.0 to every eligible gateway; gw-globex-2 fails its check');
  await rollOut(deps);
  return missing;
}

/** Build, sign and publish the sample patch, then roll it out in two waves and print the progress. */
async function rollOut(deps: DayDeps): Promise<void> {
  const { daemon, print } = deps;
  const out = join(deps.dir, 'patch');
  mkdirSync(out, { recursive: true });
  await new Promise<void>((resolve, reject) =>
    execFile('sh', [join(deps.examples, 'build-patch.sh'), out, '1.1.0'], (err) => (err ? reject(err) : resolve())),
  );
  const integrity = (await daemon.ctl(['patch', 'digest', join(out, 'tree-1.1.0')])).trim();
  const step = async (args: string[]) => {
    print(`  $ xcarectl ${args.map((a) => (/[\s*<>%]/.test(a) ? `'${a}'` : a)).join(' ').replaceAll(deps.dir + '/', '')}`);
    const text = (await daemon.ctl(args)).trim();
    for (const line of text.split('\n').slice(0, 2)) print(`    ${line}`);
    return text;
  };
  await step([
    'patch', 'sign', '--key', deps.releasePrivateKey, '--artifact', join(out, 'sample-app-1.1.0.tar.gz'), '--id', 'sample-app-1.1.0',
    '--version', '1.1.0', '--types', 'gateway', '--applies', '>=1.0.0 <1.1.0', '--expires', '30d', '--integrity', integrity, '--out', out,
  ]);
  await step(['patch', 'publish', '--manifest', join(out, 'sample-app-1.1.0.manifest.json'), '--sig', join(out, 'sample-app-1.1.0.sig'), '--artifact', join(out, 'sample-app-1.1.0.tar.gz')]);
  const created = await step([
    'rollout', 'create', '--patch', 'sample-app-1.1.0', '--types', 'gateway', '--software', '>=1.0.0 <1.1.0',
    '--wave', '2', '--wave', '100%', '--soak', '10s', '--window', '* * * * *', '--duration', '1h', '--tz', 'UTC',
    '--abort-threshold', '0.5', '--jitter', '0s',
  ]);
  const id = /rollout (\S+) created/.exec(created)?.[1];
  if (!id) return;
  let last = '';
  const done = await waitFor(async () => {
    const v = await daemon.api<{ state: string; currentWave?: number; counts: Record<string, number> }>('GET', `/api/v1/rollouts/${id}`);
    const counts = Object.entries(v.counts)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s}=${n}`)
      .join(' ');
    const line = `  rollout ${id}: ${v.state}, wave ${(v.currentWave ?? 0) + 1}: ${counts}`;
    if (line !== last) print((last = line));
    return v.state === 'completed' || v.state === 'aborted' ? v : undefined;
  }, deps.sceneTimeoutMs * 3);
  if (!done) print(`  !! rollout ${id} still running after ${(deps.sceneTimeoutMs * 3) / 1000} s`);
  const show = await daemon.ctl(['device', 'show', 'gw-globex-2', '--json']);
  const patches = (JSON.parse(show) as { patches: { patchId: string; state: string; detail?: string }[] }).patches;
  for (const p of patches) print(`  gw-globex-2: ${p.patchId} ${p.state}${p.detail ? ` (${p.detail})` : ''}`);
}
