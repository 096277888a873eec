import { spawn, type ChildProcess } from 'node:child_process';
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { LoadClient } from './mqtt-load.js';
import { BENCH_PG_URL, PgBackendCpu, benchStore, loopMaxMs, metricValue, procStat, seedDevices, type StoreKind } from './bench-store.js';
import { loadAvg, logSummary, sideBySide, storeLabel, type Step } from './scale-report.js';
import { tempDir } from '../helpers/temp-dir.js';
import { DYNSEC_PLUGIN, MOSQUITTO } from '../helpers/mosquitto.js';
import { deviceAcls, deviceRoleName } from '../../broker/external/dynsec.js';
import { MANAGED_TEXTNAME } from '../../broker/external/dynsec-device-sync.js';
import { freePort } from '../../src/demo/daemon.js';

/**
 * `BENCH=scale` (issue 13): the same devices and offered rates, side by side in one run, against
 *   1. embedded: xcared with aedes + SQLite,
 *   2. external: Mosquitto 2 (dynsec) + 1 xcared,
 *   3. external: Mosquitto 2 (dynsec) + 2 xcared in a cluster (shared store),
 * printing per step: achieved QoS 1 heartbeats/s, PUBACK p50/p99 (from whichever broker acks), CPU µs per
 * heartbeat summed over every process of the setup (PostgreSQL's backends serving the daemons included, and
 * shown apart), each daemon's longest event-loop block during the step, and RSS per connected device. Then
 * the reconnect herd after a restart, and the failover of the cluster (kill -9 of the leader: time to the
 * new leader and to its evaluator's first tick, tickets opened by the failover). Devices:
 * BENCH_SCALE_DEVICES (5000), rates BENCH_SCALE_RATES (1000,2500,5000), step BENCH_SCALE_STEP_S (5).
 *
 * Stores: the embedded setup runs on SQLite; the external ones on PostgreSQL when BENCH_DATABASE_URL (or
 * XCARE_TEST_DATABASE_URL) is set, each in a fresh schema dropped at the end, plus `external1-sqlite` (the
 * same single external daemon on SQLite) for a like-for-like comparison of the two stores. Without a URL
 * every setup runs on SQLite and the output says loudly that PostgreSQL was not measured.
 * BENCH_SCALE_ONLY=embedded,external1,external1-sqlite,external2 runs a subset. The daemons' logs go to
 * BENCH_SCALE_LOG_DIR (default a fresh dir under /tmp); their warnings and errors are summed up at the end.
 */
const root = join(import.meta.dirname, '..', '..', '..');
const TICK_US = 1e6 / 100;
const ADMIN = 'bench-admin-token-0123456789';
/** Heartbeats/s sent by the devices already back during a reconnect herd. */
const HERD_RATE = 1000;


const sum = (pids: number[]) => pids.map(procStat).reduce((a, b) => ({ rssKb: a.rssKb + b.rssKb, cpuTicks: a.cpuTicks + b.cpuTicks }), { rssKb: 0, cpuTicks: 0 });
const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function heartbeat(seq: number, intervalS = 30): Buffer {
  return Buffer.from(JSON.stringify({ seq, ts: new Date().toISOString(), intervalS, agentVersion: '1.0.0', softwareVersion: '2.3.1', health: { cpu: 0.1, memUsed: 0.5, diskUsed: 0.4, load1: 0.3 } }));
}

async function waitHttp(url: string, timeoutMs = 60_000, ok: (body: unknown) => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok && ok(await res.json())) return;
    } catch {
      /* not up yet */
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready`);
}

/** What a step measures besides the brokers' acks: the processes, the daemons' HTTP ports, PostgreSQL's backends. */
interface Probe {
  pids: () => number[];
  httpPorts: () => number[];
  pg?: PgBackendCpu;
}

async function steps(clients: LoadClient[], probe: Probe, rates: number[], stepS: number, log: (s: string) => void): Promise<Step[]> {
  const out: Step[] = [];
  let seq = 0;
  for (const rate of rates) {
    const lat: number[] = [];
    for (const c of clients) c.onAck = (ms) => void lat.push(ms);
    await Promise.all(probe.httpPorts().map(loopMaxMs)); // reading resets the daemon's maximum
    await probe.pg?.start();
    const s0 = sum(probe.pids());
    const t0 = performance.now();
    let sent = 0;
    let cursor = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const el = (performance.now() - t0) / 1000;
        if (el >= stepS) return void (clearInterval(timer), resolve());
        const due = Math.floor(el * rate) - sent;
        for (let i = 0; i < due; i++) {
          const c = clients[cursor]!;
          cursor = (cursor + 1) % clients.length;
          c.publish(`fleet/v1/${c.id}/heartbeat`, heartbeat(++seq));
          sent++;
        }
      }, 5);
    });
    const el = (performance.now() - t0) / 1000;
    const acks = lat.length;
    await sleep(1500); // the daemons drain what the broker already acked: their CPU counts too
    const s1 = sum(probe.pids());
    const pgTicks = probe.pg ? (await probe.pg.stop()).ticks : 0;
    const loop = await Promise.all(probe.httpPorts().map(loopMaxMs));
    lat.sort((a, b) => a - b);
    const perHb = (ticks: number) => +((ticks * TICK_US) / Math.max(1, acks)).toFixed(1);
    const step: Step = {
      offered: rate,
      achieved: Math.round(acks / el),
      p50: +pct(lat, 50).toFixed(1),
      p99: +pct(lat, 99).toFixed(1),
      cpuUsPerHb: perHb(s1.cpuTicks - s0.cpuTicks + pgTicks),
      ...(probe.pg ? { pgCpuUsPerHb: perHb(pgTicks) } : {}),
      loopMaxMs: loop,
    };
    const pgPart = probe.pg ? ` (of which PostgreSQL backends ${step.pgCpuUsPerHb})` : '';
    log(`    ${rate}/s offered -> ${step.achieved}/s, PUBACK p50 ${step.p50} ms p99 ${step.p99} ms, ${step.cpuUsPerHb} CPU µs/hb all processes${pgPart}; longest event-loop block per daemon ${loop.map((l) => `${l} ms`).join(', ')}  [load ${loadAvg()}]`);
    out.push(step);
    if (acks / el < rate * 0.8) break;
  }
  return out;
}

async function connectAll(clients: LoadClient[], concurrency = 200): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < clients.length) await clients[next++]!.connect(120_000);
  }));
  return (performance.now() - t0) / 1000;
}

/**
 * All `clients` reconnect at once (after a restart) while those already back heartbeat at `rate`/s in
 * total: time until every one is connected, and the PUBACK p99 of the heartbeats sent meanwhile.
 */
async function herd(clients: LoadClient[], rate: number): Promise<{ allConnectedS: number; p99DuringMs: number; retries: number }> {
  let retries = 0;
  const back: LoadClient[] = [];
  const lat: number[] = [];
  for (const c of clients) c.onAck = (ms) => void lat.push(ms);
  let seq = 0;
  let cursor = 0;
  const t0 = performance.now();
  const timer = setInterval(() => {
    if (back.length === 0) return;
    for (let i = 0; i < rate / 100; i++) {
      const c = back[cursor++ % back.length]!;
      c.publish(`fleet/v1/${c.id}/heartbeat`, heartbeat(++seq));
    }
  }, 10);
  let next = 0;
  await Promise.all(
    Array.from({ length: 1000 }, async () => {
      while (next < clients.length) {
        const c = clients[next++]!;
        // A refused or reset connection under the herd retries, as a device's backoff would.
        for (let attempt = 0; ; attempt++) {
          try {
            await c.connect(120_000);
            break;
          } catch (err) {
            retries++;
            if (attempt >= 20) throw err;
            await sleep(200 + Math.random() * 800);
          }
        }
        back.push(c);
      }
    }),
  );
  const allConnectedS = (performance.now() - t0) / 1000;
  clearInterval(timer);
  await sleep(1000);
  lat.sort((a, b) => a - b);
  return { allConnectedS: +allConnectedS.toFixed(1), p99DuringMs: +pct(lat, 99).toFixed(1), retries };
}

/** Mosquitto with a dynsec file holding xcared's admin user and every device (one PBKDF2 hash: one token). */
function writeMosquitto(dir: string, port: number, ids: string[], token: string): string {
  mkdirSync(dir, { recursive: true });
  const hash = (pw: string) => {
    const salt = randomBytes(12);
    return { password: pbkdf2Sync(pw, salt, 101, 64, 'sha512').toString('base64'), salt: salt.toString('base64'), iterations: 101 };
  };
  const dev = hash(token);
  const json = {
    clients: [
      { username: 'xcared', ...hash('xcared-pw'), roles: [{ rolename: 'xcared' }] },
      ...ids.map((id) => ({ username: id, clientid: id, textname: MANAGED_TEXTNAME, ...dev, roles: [{ rolename: deviceRoleName(id) }] })),
    ],
    roles: [
      {
        rolename: 'xcared',
        acls: [
          ...['publishClientSend', 'publishClientReceive', 'subscribePattern'].map((acltype) => ({ acltype, topic: '$CONTROL/dynamic-security/#', allow: true })),
          { acltype: 'publishClientReceive', topic: '#', allow: true },
          { acltype: 'subscribePattern', topic: '#', allow: true },
          { acltype: 'publishClientSend', topic: 'fleet/v1/+/cmd/#', allow: true },
        ],
      },
      ...ids.map((id) => ({ rolename: deviceRoleName(id), acls: deviceAcls(id) })),
    ],
    defaultACLAccess: { publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true },
  };
  writeFileSync(join(dir, 'dynsec.json'), JSON.stringify(json));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [`listener ${port} 127.0.0.1`, `user ${userInfo().username}`, 'allow_anonymous false', 'max_queued_messages 100000', `max_inflight_messages ${process.env.BENCH_SCALE_INFLIGHT ?? 0}`, `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${join(dir, 'dynsec.json')}`, 'log_type error'].join('\n'));
  return conf;
}

/** A daemon whose stdout (its pino log, level warn) is appended to `logFile`, on `storeUrl` when given. */
function spawnDaemon(configFile: string, logFile: string, storeUrl?: string): ChildProcess {
  const env = { ...process.env };
  delete env.XCARE_DATABASE_URL;
  if (storeUrl) env.XCARE_DATABASE_URL = storeUrl;
  // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), as for the ingest bench's targets.
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const p = spawn(process.execPath, ['--max-semi-space-size=64', ...extra, join(root, 'dist/src/main.js'), '--config', configFile], { stdio: ['ignore', 'pipe', 'inherit'], env });
  p.stdout!.pipe(createWriteStream(logFile, { flags: 'a' }));
  return p;
}

const exited = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));

async function tickets(httpPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/tickets?status=all`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return ((await res.json()) as { tickets: unknown[] }).tickets.length;
}

/** One external setup: Mosquitto and `n` daemons on `store`. */
interface ExternalSetup {
  key: string;
  n: number;
  store: StoreKind;
}

export async function runScaleBench(opts: { log?: (s: string) => void } = {}) {
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const devices = Number(process.env.BENCH_SCALE_DEVICES ?? 5000);
  const rates = (process.env.BENCH_SCALE_RATES ?? '1000,2500,5000').split(',').map(Number);
  const stepS = Number(process.env.BENCH_SCALE_STEP_S ?? 5);
  const token = 'bench-token-0123456789abcdef';
  const ids = Array.from({ length: devices }, (_, i) => `sc-${String(i).padStart(6, '0')}`);
  const dir = tempDir('xcare-scale-');
  const logDir = process.env.BENCH_SCALE_LOG_DIR ?? join(tmpdir(), `xcare-scale-logs-${Date.now()}`);
  mkdirSync(logDir, { recursive: true });
  const external: StoreKind = BENCH_PG_URL ? 'postgres' : 'sqlite';
  const results: Record<string, unknown> = { devices, externalStore: external, loadAtStart: loadAvg() };
  const procs: ChildProcess[] = [];
  const drops: (() => Promise<void>)[] = [];
  const logs: string[] = [];
  if (!BENCH_PG_URL) {
    log('\n*** PostgreSQL NOT MEASURED: the external setups run on SQLite. Set BENCH_DATABASE_URL (or XCARE_TEST_DATABASE_URL) = postgres://... to run them on PostgreSQL. ***\n');
  } else {
    log(`external setups on PostgreSQL (${new URL(BENCH_PG_URL).host}${new URL(BENCH_PG_URL).pathname}), each in a schema of its own; daemon logs in ${logDir}; load ${loadAvg()}`);
  }
  try {
    const health = 'health: { missedHeartbeats: 3 }';
    // BENCH_SCALE_ONLY=embedded,external1,external1-sqlite,external2 runs a subset.
    const only = new Set((process.env.BENCH_SCALE_ONLY ?? `embedded,external1,${BENCH_PG_URL ? 'external1-sqlite,' : ''}external2`).split(','));
    // ---- 1. embedded (always SQLite: the default)
    if (only.has('embedded')) {
      log(`embedded (aedes + SQLite), ${devices} devices:`);
      const dataDir = join(dir.path, 'embedded');
      const store = await benchStore('sqlite', dataDir, 'embedded');
      seedDevices(store, dataDir, ids, token);
      const mqtt = await freePort();
      const http = await freePort();
      const cfg = join(dir.path, 'embedded.yaml');
      const logFile = join(logDir, 'embedded.log');
      logs.push(logFile);
      writeFileSync(cfg, `dataDir: ${dataDir}\nadminToken: ${ADMIN}\nlog: { level: warn }\nmqtt: { host: 127.0.0.1, port: ${mqtt} }\nhttp: { port: ${http} }\n${health}\n`);
      let d = spawnDaemon(cfg, logFile);
      procs.push(d);
      await waitHttp(`http://127.0.0.1:${http}/readyz`);
      const idle = procStat(d.pid!).rssKb;
      let clients = ids.map((id) => new LoadClient(id, token, mqtt));
      const connectS = await connectAll(clients);
      await sleep(1000);
      const rssPerDeviceKb = +((procStat(d.pid!).rssKb - idle) / devices).toFixed(1);
      log(`    connected in ${connectS.toFixed(1)} s; RSS ${(procStat(d.pid!).rssKb / 1024).toFixed(0)} MB, ${rssPerDeviceKb} KB per device`);
      const st = await steps(clients, { pids: () => [d.pid!], httpPorts: () => [http] }, rates, stepS, log);
      // Reconnect herd: the daemon restarts; every device reconnects at once.
      for (const c of clients) c.close();
      d.kill('SIGTERM');
      await exited(d);
      d = spawnDaemon(cfg, logFile);
      procs.push(d);
      await waitHttp(`http://127.0.0.1:${http}/readyz`);
      clients = ids.map((id) => new LoadClient(id, token, mqtt));
      const h = await herd(clients, HERD_RATE);
      log(`    reconnect herd after a daemon restart: all ${devices} connected in ${h.allConnectedS} s; heartbeat PUBACK p99 meanwhile ${h.p99DuringMs} ms (${HERD_RATE}/s from those back); ${h.retries} CONNECTs retried  [load ${loadAvg()}]`);
      for (const c of clients) c.close();
      d.kill('SIGTERM');
      await exited(d);
      results.embedded = { store: 'sqlite', connectS: +connectS.toFixed(1), rssPerDeviceKb, steps: st, herdAfterDaemonRestart: h };
    }

    // ---- 2 + 3. external Mosquitto with 1 and 2 daemons, on PostgreSQL when measured (and 1 on SQLite beside it)
    const brokerPort = await freePort();
    const conf = writeMosquitto(join(dir.path, 'mosquitto'), brokerPort, ids, token);
    const setups: ExternalSetup[] = [
      { key: 'external1', n: 1, store: external },
      ...(external === 'postgres' ? [{ key: 'external1-sqlite', n: 1, store: 'sqlite' as const }] : []),
      { key: 'external2', n: 2, store: external },
    ];
    for (const setup of setups) {
      if (!only.has(setup.key)) continue;
      const { n } = setup;
      log(`external (Mosquitto dynsec + ${n} xcared${n > 1 ? ', cluster' : ''}, ${storeLabel(setup.store)}), ${devices} devices:`);
      const dataDir = join(dir.path, setup.key);
      const store = await benchStore(setup.store, dataDir, setup.key);
      drops.push(() => store.drop());
      const seeded = performance.now();
      seedDevices(store, dataDir, ids, token);
      if (store.url) log(`    schema ${store.schema}: migrated and ${devices} devices seeded in ${((performance.now() - seeded) / 1000).toFixed(1)} s`);
      const broker = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
      procs.push(broker);
      let brokerProc = broker;
      await sleep(500);
      const brokerIdle = procStat(broker.pid!).rssKb;
      const https: number[] = [];
      const daemons: ChildProcess[] = [];
      const cfgs: string[] = [];
      const logFiles: string[] = [];
      for (let i = 0; i < n; i++) {
        const http = await freePort();
        https.push(http);
        const cfg = join(dir.path, `${setup.key}-${i}.yaml`);
        cfgs.push(cfg);
        const logFile = join(logDir, `${setup.key}-${i}.log`);
        logFiles.push(logFile);
        logs.push(logFile);
        const cluster = n > 1 ? `cluster: { enabled: true, instanceId: x${i}, leaseS: 5, renewS: 1 }\n` : '';
        writeFileSync(cfg, `dataDir: ${dataDir}\nadminToken: ${ADMIN}\nlog: { level: warn }\nmqtt: { broker: { url: "mqtt://xcared:xcared-pw@127.0.0.1:${brokerPort}" } }\nhttp: { port: ${http} }\n${health}\n${cluster}`);
        const d = spawnDaemon(cfg, logFile, store.url);
        procs.push(d);
        daemons.push(d);
        await waitHttp(`http://127.0.0.1:${http}/readyz`);
      }
      const pgCpu = store.url ? new PgBackendCpu(() => daemons.map((d) => d.pid!), 1000) : undefined;
      const daemonIdle = daemons.reduce((a, d) => a + procStat(d.pid!).rssKb, 0);
      const clients = ids.map((id) => new LoadClient(id, token, brokerPort));
      const connectS = await connectAll(clients);
      await sleep(1000);
      const brokerNow = procStat(broker.pid!).rssKb;
      const daemonsNow = daemons.reduce((a, d) => a + procStat(d.pid!).rssKb, 0);
      // Growth while the devices connected, over the broker and the daemons (the daemons hold no device connections).
      const rssPerDeviceKb = +((brokerNow + daemonsNow - brokerIdle - daemonIdle) / devices).toFixed(1);
      log(
        `    connected in ${connectS.toFixed(1)} s; RSS broker ${(brokerNow / 1024).toFixed(0)} MB (${(brokerIdle / 1024).toFixed(0)} MB before the devices, dynsec config loaded) + daemons ${(daemonsNow / 1024).toFixed(0)} MB; ${rssPerDeviceKb} KB per connected device (PostgreSQL not counted)`,
      );
      const st = await steps(clients, { pids: () => [brokerProc.pid!, ...daemons.map((d) => d.pid!)], httpPorts: () => https, ...(pgCpu ? { pg: pgCpu } : {}) }, rates, stepS, log);
      const entry: Record<string, unknown> = { store: setup.store, connectS: +connectS.toFixed(1), rssPerDeviceKb, brokerRssMb: Math.round(brokerNow / 1024), daemonsRssMb: Math.round(daemonsNow / 1024), steps: st };
      if (n === 1) {
        // A daemon restart in external mode: the devices stay connected to the broker; nothing reconnects.
        const d = daemons[0]!;
        d.kill('SIGTERM');
        await exited(d);
        const t0 = performance.now();
        const again = spawnDaemon(cfgs[0]!, logFiles[0]!, store.url);
        procs.push(again);
        daemons[0] = again;
        await waitHttp(`http://127.0.0.1:${https[0]}/readyz`);
        entry.daemonRestartReadyS = +((performance.now() - t0) / 1000).toFixed(1);
        log(`    daemon restart: ready again in ${entry.daemonRestartReadyS} s with 0 device reconnects (the broker kept them)`);
        // The broker restarts instead: every device reconnects to it at once.
        for (const c of clients) c.close();
        broker.kill('SIGTERM');
        await exited(broker);
        const again2 = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
        procs.push(again2);
        brokerProc = again2;
        await sleep(500);
        await waitHttp(`http://127.0.0.1:${https[0]}/readyz`, 60_000);
        await loopMaxMs(https[0]!);
        const fresh = ids.map((id) => new LoadClient(id, token, brokerPort));
        const h = await herd(fresh, HERD_RATE);
        const herdLoop = await loopMaxMs(https[0]!);
        entry.herdAfterBrokerRestart = { ...h, daemonLoopMaxMs: herdLoop };
        log(`    reconnect herd after a broker restart: all ${devices} connected in ${h.allConnectedS} s; heartbeat PUBACK p99 meanwhile ${h.p99DuringMs} ms; ${h.retries} CONNECTs retried; daemon's longest event-loop block ${herdLoop} ms  [load ${loadAvg()}]`);
        clients.splice(0, clients.length, ...fresh);
      } else if (process.env.BENCH_SCALE_FAILOVER !== '0') {
        // BENCH_SCALE_FAILOVER=0 skips it (e.g. to --cpu-prof the leader, which a kill -9 would lose).
        entry.failover = await failover(clients, daemons, https, devices, log);
      }
      await pgCpu?.close();
      for (const c of clients) c.close();
      for (const d of daemons) {
        d.kill('SIGTERM');
        await exited(d);
      }
      brokerProc.kill('SIGTERM');
      await exited(brokerProc);
      results[setup.key] = entry;
    }
    for (const line of sideBySide(results)) log(line);
    log(`daemon logs (${logDir}), warnings and errors:`);
    const logResults: Record<string, unknown> = {};
    for (const f of logs) {
      const sm = logSummary(f);
      logResults[f] = sm;
      log(`    ${f.slice(logDir.length + 1)}: ${sm.errors} errors, ${sm.warnings} warnings${sm.top.length ? `\n      ${sm.top.join('\n      ')}` : ''}`);
    }
    results.logs = logResults;
    if (!BENCH_PG_URL) log('\n*** PostgreSQL NOT MEASURED (no BENCH_DATABASE_URL / XCARE_TEST_DATABASE_URL): every figure above is SQLite. ***');
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const drop of drops) await drop().catch((err: Error) => log(`    could not drop a bench schema: ${err.message}`));
    dir.cleanup();
  }
  return results;
}

/**
 * Failover under load: every device heartbeats every 10 s (announced), the leader (daemon 0) is killed -9,
 * and the new leader watches them for more than three intervals: any ticket opened now is a false one.
 * Measures the time from the kill to daemon 1 saying it leads (/readyz) and to its evaluator's first tick
 * (fleet_health_tick_seconds_count rises: only the leader's evaluator ticks).
 */
async function failover(clients: LoadClient[], daemons: ChildProcess[], https: number[], devices: number, log: (s: string) => void): Promise<Record<string, number>> {
  const intervalS = 10;
  let seq = 0;
  let cursor = 0;
  const beat = setInterval(() => {
    for (let i = 0; i < Math.ceil(devices / (intervalS * 10)); i++) {
      const c = clients[cursor]!;
      cursor = (cursor + 1) % clients.length;
      c.publish(`fleet/v1/${c.id}/heartbeat`, heartbeat(++seq, intervalS));
    }
  }, 100);
  try {
    await sleep(intervalS * 1000 + 2000);
    const before = await tickets(https[0]!);
    const ticksBefore = await metricValue(https[1]!, 'fleet_health_tick_seconds_count');
    await loopMaxMs(https[1]!);
    const t0 = performance.now();
    daemons[0]!.kill('SIGKILL');
    let leaderS = NaN;
    let firstTickS = NaN;
    const deadline = t0 + 60_000;
    while ((Number.isNaN(leaderS) || Number.isNaN(firstTickS)) && performance.now() < deadline) {
      const [ready, ticks] = await Promise.all([
        fetch(`http://127.0.0.1:${https[1]}/readyz`).then((r) => r.json() as Promise<{ cluster?: { leader?: boolean } }>).catch(() => ({}) as { cluster?: { leader?: boolean } }),
        metricValue(https[1]!, 'fleet_health_tick_seconds_count').catch(() => ticksBefore),
      ]);
      const el = (performance.now() - t0) / 1000;
      if (Number.isNaN(leaderS) && ready.cluster?.leader === true) leaderS = el;
      if (Number.isNaN(firstTickS) && ticks > ticksBefore) firstTickS = el;
      await sleep(50);
    }
    await sleep((3 * intervalS + 5) * 1000);
    const after = await tickets(https[1]!);
    const loop = await loopMaxMs(https[1]!);
    const out = { leaderS: +leaderS.toFixed(2), firstTickS: +firstTickS.toFixed(2), ticketsOpenedByFailover: after - before, ticketsBefore: before, newLeaderLoopMaxMs: loop };
    log(
      `    leader kill -9 -> the other instance leads in ${out.leaderS} s, its evaluator's first tick at ${out.firstTickS} s (lease 5 s, renew 1 s); tickets opened by the failover: ${out.ticketsOpenedByFailover} (${before} before); new leader's longest event-loop block over the takeover and ${3 * intervalS + 5} s after: ${loop} ms  [load ${loadAvg()}]`,
    );
    return out;
  } finally {
    clearInterval(beat);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runScaleBench();
}
