import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { startDaemon, eventually, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { SimDevice } from '../helpers/sim-device.js';
import { allTickets, api, provision, startHelpdesk } from '../helpers/detection-fixtures.js';

/**
 * Detection soak (issue 8, "Done when"): a real xcared with its embedded broker and SQLite, 200 simulated devices on
 * real MQTT connections (agent-like reconnect backoff with jitter), and a script of what real machines do:
 * SIGSTOP/SIGCONT stalls of the daemon, wall-clock steps (forward and back), kill -9 and restart of the daemon,
 * reconnect herds (many sockets cut at once), installs with a restart, and real device kills (socket torn down:
 * Last Will) and hangs (connection open, heartbeats stop). The ground truth is the set of devices we killed or hung.
 *
 * Prints: false tickets (any ticket not for a device we broke, or opened before we broke it; must be 0), missed
 * losses (a broken device without its ticket; must be 0), and the detection delay p50/p99 per kind of loss against
 * its bound: `lastWillGraceS` (+ a tick) for a kill, `missedHeartbeats x intervalS` (+ a tick) for a hang.
 * Environment: BENCH_DEVICES (200), BENCH_INTERVAL_S (2), BENCH_DETECTION_SCALE (1.0 stretches the script).
 */
const DEVICES = Number(process.env.BENCH_DEVICES ?? 200);
const INTERVAL_S = Number(process.env.BENCH_INTERVAL_S ?? 2);
const SCALE = Number(process.env.BENCH_DETECTION_SCALE ?? 1);
const MISSED = 3;
const WILL_GRACE_S = 5;
const TICK_MS = 500;
const PER_CUSTOMER = 4;

interface Breakage {
  id: string;
  how: 'kill' | 'hang';
  at: number;
  /** What else the script was doing around it. */
  phase: string;
  /** Expected detection bound (ms). */
  bound: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms * SCALE));
const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runDetectionBench(): Promise<Record<string, unknown>> {
  const dir = tempDir('xcare-bench-detect-');
  const offsetFile = join(dir.path, 'wall-offset');
  writeFileSync(offsetFile, '0');
  const helpdesk = await startHelpdesk();
  const yaml =
    `health: { missedHeartbeats: ${MISSED}, lastWillGraceS: ${WILL_GRACE_S}, tickMs: ${TICK_MS}, startup: { reconnectS: 20, herdQuietS: 5, maxS: 120 } }\n` +
    `tickets: { resolveAfterS: 5 }\n` +
    `webhook: { url: "${helpdesk.url}", secret: bench-secret-0123456, backoffBaseMs: 100, backoffMaxMs: 1000 }\n`;
  const env = { XCARE_WALL_OFFSET_FILE: offsetFile };
  let daemon: Daemon = await startDaemon(join(dir.path, 'daemon'), yaml, undefined, env);
  const ids = Array.from({ length: DEVICES }, (_, i) => `gw-${String(i).padStart(3, '0')}`);
  const customerOf = (i: number) => `cust-${Math.floor(i / PER_CUSTOMER)}`;
  const tokens = await provision(daemon, ids.map((id, i) => ({ id, type: 'gateway' as const, customer: customerOf(i) })));
  const url = `mqtt://127.0.0.1:${daemon.mqttPort}`;
  const make = (id: string) => new SimDevice({ id, token: tokens.get(id)!, url, intervalS: INTERVAL_S, reconnect: { minMs: 250, maxMs: 8000 } });
  const devices = new Map(ids.map((id) => [id, make(id)]));
  for (const d of devices.values()) d.start();
  const online = async () => (await api<{ devices: { state: string }[] }>(daemon, '/api/v1/devices')).devices.filter((d) => d.state === 'online').length;
  await eventually(async () => (await online()) === DEVICES, 120_000, 'all devices online');
  log(`${DEVICES} devices online at ${INTERVAL_S} s; missed x interval = ${MISSED * INTERVAL_S} s, Last Will grace = ${WILL_GRACE_S} s`);

  const broken: Breakage[] = [];
  let phase = 'quiet';
  // One broken device per customer at most (a correlated customer loss would be a true ticket of another kind).
  let nextVictim = 0;
  const victim = () => ids[(nextVictim++ * PER_CUSTOMER + 1) % DEVICES]!;
  const kill = (id: string) => {
    devices.get(id)!.kill();
    broken.push({ id, how: 'kill', at: Date.now(), phase, bound: WILL_GRACE_S * 1000 + TICK_MS });
  };
  const hang = (id: string) => {
    devices.get(id)!.freeze();
    broken.push({ id, how: 'hang', at: Date.now(), phase, bound: MISSED * INTERVAL_S * 1000 + TICK_MS });
  };
  const revive = (id: string) => {
    const old = devices.get(id)!;
    old.kill();
    const fresh = make(id);
    devices.set(id, fresh);
    fresh.start();
  };
  const counts = { stalls: 0, wallSteps: 0, daemonRestarts: 0, herds: 0, installs: 0 };

  // --- the script -------------------------------------------------------------------------------------------
  await sleep(5000);
  log('stall: SIGSTOP the daemon 8 s');
  process.kill(daemon.proc.pid!, 'SIGSTOP');
  await sleep(8000);
  process.kill(daemon.proc.pid!, 'SIGCONT');
  counts.stalls++;
  await sleep(5000);

  log('kill 3 devices, hang 3');
  for (let i = 0; i < 3; i++) kill(victim());
  for (let i = 0; i < 3; i++) hang(victim());
  await sleep(12_000);

  phase = 'wall clock +1 h';
  log('wall clock steps forward 1 h');
  writeFileSync(offsetFile, String(3_600_000));
  counts.wallSteps++;
  await sleep(6000);
  kill(victim());
  await sleep(6000);
  phase = 'wall clock stepped back';
  log('wall clock steps back');
  writeFileSync(offsetFile, '0');
  counts.wallSteps++;
  hang(victim());
  await sleep(10_000);

  log('installs: 10 devices report installing, then restart for 15 s');
  const installers = ids.slice(2, DEVICES).filter((_, i) => i % 17 === 0).slice(0, 10);
  for (const id of installers) devices.get(id)!.patchStatus('bench-patch-1', 'installing');
  await sleep(500);
  for (const id of installers) void devices.get(id)!.stop();
  counts.installs += installers.length;
  await sleep(15_000);
  for (const id of installers) {
    const fresh = make(id);
    devices.set(id, fresh);
    fresh.start();
    setTimeout(() => fresh.patchStatus('bench-patch-1', 'installed'), 1000);
  }
  await sleep(5000);

  log('reconnect herd: 100 sockets cut at once');
  const herd = ids.filter((id) => !broken.some((b) => b.id === id)).slice(0, 100);
  for (const id of herd) revive(id);
  counts.herds++;
  await sleep(10_000);

  log('daemon kill -9, down 5 s, restart');
  const ports = { mqtt: daemon.mqttPort, http: daemon.httpPort };
  await daemon.kill9();
  await sleep(5000);
  daemon = await startDaemon(daemon.dataDir, yaml, ports, env);
  counts.daemonRestarts++;
  const restartedAt = Date.now();
  // Back means reconnected to the new process (the API shows the pre-restart state until a device is heard from).
  await eventually(
    () => [...devices.entries()].every(([id, d]) => broken.some((b) => b.id === id) || (d.connected && (d.connects.at(-1) ?? 0) >= restartedAt)),
    120_000,
    'herd back after the restart',
  );
  log(`herd reconnected ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after the restart`);
  phase = 'just after a daemon restart';
  log('herd back; kill 2 more, hang 2 more, then a stall with a kill just before it');
  for (let i = 0; i < 2; i++) kill(victim());
  for (let i = 0; i < 2; i++) hang(victim());
  await sleep(12_000);
  phase = '1 s before an 8 s daemon stall';
  kill(victim());
  await sleep(1000);
  process.kill(daemon.proc.pid!, 'SIGSTOP');
  await sleep(8000);
  process.kill(daemon.proc.pid!, 'SIGCONT');
  counts.stalls++;
  await sleep(20_000);

  // --- the verdict ------------------------------------------------------------------------------------------
  const tickets = await allTickets(daemon);
  const openedDelivery = new Map<number, number>();
  for (const d of helpdesk.deliveries) if (d.event === 'opened' && d.ticket && !openedDelivery.has(d.ticket.id)) openedDelivery.set(d.ticket.id, d.at);
  const bySubject = new Map(broken.map((b) => [b.id, b]));
  const falseTickets = tickets.filter((t) => {
    const b = bySubject.get(t.subject);
    return !b || t.kind !== 'gateway_loss' || Date.parse(t.openedAt) < b.at - 1000;
  });
  const delays: Record<'kill' | 'hang', number[]> = { kill: [], hang: [] };
  const missed: string[] = [];
  const each: string[] = [];
  for (const b of broken) {
    const t = tickets.find((x) => x.subject === b.id && x.kind === 'gateway_loss');
    if (!t) {
      missed.push(`${b.id} (${b.how})`);
      continue;
    }
    const delay = Math.max(0, (openedDelivery.get(t.id) ?? Date.parse(t.openedAt)) - b.at);
    delays[b.how].push(delay);
    each.push(`${b.id} ${b.how} (${b.phase}): paged after ${(delay / 1000).toFixed(1)} s, bound ${(b.bound / 1000).toFixed(1)} s`);
  }
  const summary = (how: 'kill' | 'hang', bound: number) => ({
    n: delays[how].length,
    p50Ms: percentile(delays[how], 50),
    p99Ms: percentile(delays[how], 99),
    boundMs: bound,
  });
  const result = {
    devices: DEVICES,
    intervalS: INTERVAL_S,
    script: counts,
    broken: broken.length,
    falseTickets: falseTickets.length,
    falseTicketList: falseTickets.map((t) => `${t.kind}:${t.subject}@${t.openedAt}`),
    missedLosses: missed.length,
    missedList: missed,
    deliveries: helpdesk.deliveries.length,
    delayKill: summary('kill', WILL_GRACE_S * 1000 + TICK_MS),
    delayHang: summary('hang', MISSED * INTERVAL_S * 1000 + TICK_MS),
    each,
  };
  log(`false tickets: ${result.falseTickets}${falseTickets.length ? ` (${result.falseTicketList.join(', ')})` : ''}`);
  log(`missed losses: ${result.missedLosses}${missed.length ? ` (${missed.join(', ')})` : ''}`);
  log(
    `detection delay, device killed (Last Will): p50 ${result.delayKill.p50Ms} ms, p99 ${result.delayKill.p99Ms} ms ` +
      `(grace ${WILL_GRACE_S} s + tick = ${result.delayKill.boundMs} ms; n=${result.delayKill.n})`,
  );
  log(
    `detection delay, device hung (silence): p50 ${result.delayHang.p50Ms} ms, p99 ${result.delayHang.p99Ms} ms ` +
      `(missed ${MISSED} x interval ${INTERVAL_S} s + tick = ${result.delayHang.boundMs} ms; n=${result.delayHang.n})`,
  );
  for (const line of each) log(`  ${line}`);
  log('(delay = kill/hang to the helpdesk receiving `opened`; a loss overlapping our own stall is found a fresh interval after it)');

  await Promise.all([...devices.values()].map((d) => d.stop()));
  await daemon.stop();
  helpdesk.close();
  dir.cleanup();
  return result;
}
