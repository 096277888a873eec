import { fork, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Aedes } from 'aedes';
import { BENCH_PG_URL, benchStore, type StoreKind } from './bench-store.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { RolloutScheduler } from '../../src/rollouts/rollout-scheduler.js';
import type { PublishedPatch, RolloutPorts } from '../../src/rollouts/ports.js';
import { topics } from '../../src/protocol/topics.js';
import { tempDir } from '../helpers/temp-dir.js';
import { MemoryDirectory, RecordingSink, device } from '../integration/rollout-fixtures.js';
import { connectPacket, subscribePacket } from '../helpers/mqtt-packets.js';

/**
 * Rollout fan-out (issue 5 "Performance"): 10 000 simulated eligible devices, a 100 % wave, from the moment
 * the window opens to every PatchOffer handed to a real aedes broker and received and PUBACKed by real MQTT
 * connections (one per device, raw MQTT 3.1.1 sockets in a child process so the two ends of 10 000 sockets do
 * not share one file-descriptor limit). Everything runs through the scheduler: gating, caps, the offer-time
 * eligibility guard, the SQLite commit of every `offered` row before the publish.
 *
 * `ROLLOUT_BENCH_DEVICES` (default 10000) sets the fleet size; `ROLLOUT_BENCH_CONNECTIONS` (default = devices)
 * how many of them hold a real connection (0: offers go to the broker with no subscriber).
 *
 * `ROLLOUT_BENCH_STORE`: `sqlite` (default), `postgres` (the scheduler's store on PostgreSQL through
 * PgSyncDatabase, as the daemon runs with `store.url`, in a fresh schema of BENCH_DATABASE_URL or
 * XCARE_TEST_DATABASE_URL) or `both` (one after the other). Each run reports the longest event-loop block
 * of this process (where the scheduler runs) from the window opening to the last PUBACK, and how long
 * planning the rollout (`create`, synchronous) blocked it.
 */
const PATCH: PublishedPatch = { id: 'gw-2.3.2', version: '2.3.2', types: ['gateway'], appliesTo: '>=2.0.0 <2.3.2', expiresAt: '2099-01-01T00:00:00Z' };
const WINDOW_OPEN = '2026-11-26T01:00:00.000Z';

// ----------------------------------------------------------------------------- subscriber side (child process)

/** One device: CONNECT, SUBSCRIBE to its cmd topics, PUBACK every QoS 1 PUBLISH. */
function subscriber(id: string, port: number, onReady: () => void, onOffer: () => void): Socket {
  const socket = connect({ port, host: '127.0.0.1', noDelay: true });
  let buffer: Buffer = Buffer.alloc(0);
  socket.on('connect', () => {
    socket.write(connectPacket(id, undefined, undefined, 240));
    socket.write(subscribePacket(1, `fleet/v1/${id}/cmd/#`, 1));
  });
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
    for (;;) {
      if (buffer.length < 2) return;
      let len = 0;
      let mul = 1;
      let i = 1;
      for (; i < 5 && i < buffer.length; i++) {
        len += (buffer[i]! & 0x7f) * mul;
        mul *= 128;
        if ((buffer[i]! & 0x80) === 0) break;
      }
      if (i >= buffer.length) return;
      const start = i + 1;
      if (buffer.length < start + len) return;
      const type = buffer[0]! >> 4;
      const qos = (buffer[0]! >> 1) & 3;
      const body = buffer.subarray(start, start + len);
      buffer = buffer.subarray(start + len);
      if (type === 9) onReady(); // SUBACK
      else if (type === 3) {
        const topicLen = body.readUInt16BE(0);
        if (qos > 0) {
          const pid = body.subarray(2 + topicLen, 4 + topicLen);
          socket.write(Buffer.concat([Buffer.from([0x40, 2]), pid]));
        }
        onOffer();
      }
    }
  });
  return socket;
}

async function runSubscribers(port: number, ids: string[]): Promise<void> {
  let ready = 0;
  let offers = 0;
  const sockets: Socket[] = [];
  const send = (m: unknown) => process.send?.(m);
  const onOffer = () => {
    if (++offers === ids.length) send({ type: 'offers', offers, at: Date.now() });
  };
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'exit') {
      for (const s of sockets) s.destroy();
      process.exit(0);
    }
  });
  // Connect in batches, each subscribed before the next starts, so the broker's accept queue never overflows;
  // a connection refused under load is retried.
  const one = (id: string): Promise<void> =>
    new Promise<void>((resolve) => {
      const attempt = () => {
        const socket = subscriber(id, port, () => resolve(), onOffer);
        socket.once('close', () => {
          if (!subscribed.has(id)) setTimeout(attempt, 50);
        });
        sockets.push(socket);
      };
      attempt();
    }).then(() => {
      subscribed.add(id);
      ready++;
    });
  const subscribed = new Set<string>();
  for (let i = 0; i < ids.length; i += 250) await Promise.all(ids.slice(i, i + 250).map(one));
  send({ type: 'ready', ready });
}

// ----------------------------------------------------------------------------- daemon side

function waitFor(child: ChildProcess, type: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`timed out waiting for ${type}`));
    }, timeoutMs);
    const onMessage = (m: Record<string, unknown>) => {
      if (m?.type === type) {
        clearTimeout(timer);
        child.off('message', onMessage);
        resolve(m);
      }
    };
    child.on('message', onMessage);
  });
}

export async function runRolloutBench(): Promise<Record<string, Record<string, number | string>>> {
  const wanted = process.env.ROLLOUT_BENCH_STORE ?? 'sqlite';
  const kinds: StoreKind[] = wanted === 'both' ? ['sqlite', 'postgres'] : [wanted === 'postgres' ? 'postgres' : 'sqlite'];
  if (kinds.includes('postgres') && !BENCH_PG_URL) throw new Error('ROLLOUT_BENCH_STORE=postgres needs BENCH_DATABASE_URL or XCARE_TEST_DATABASE_URL');
  if (!kinds.includes('postgres')) process.stdout.write('(rollout bench on SQLite; ROLLOUT_BENCH_STORE=postgres|both measures PostgreSQL)\n');
  const out: Record<string, Record<string, number | string>> = {};
  for (const kind of kinds) {
    process.stdout.write(`--- store: ${kind === 'postgres' ? 'PostgreSQL' : 'SQLite'}\n`);
    out[kind] = await runOnce(kind);
  }
  return out;
}

async function runOnce(kind: StoreKind): Promise<Record<string, number | string>> {
  const deviceCount = Number(process.env.ROLLOUT_BENCH_DEVICES ?? 10_000);
  const connections = Math.min(deviceCount, Number(process.env.ROLLOUT_BENCH_CONNECTIONS ?? deviceCount));
  const dir = tempDir('xcare-rollout-bench-');
  const store = await benchStore(kind, dir.path, 'rollout');
  const db = store.open();
  const clock = new ManualClock('2026-11-26T00:00:00.000Z');
  const directory = new MemoryDirectory();
  const ids = Array.from({ length: deviceCount }, (_, i) => `gw-${String(i).padStart(5, '0')}`);
  for (const id of ids) directory.add(device(id));

  const broker = await Aedes.createBroker();
  const server: Server = createServer((socket) => broker.handle(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;

  // A realistic PatchOffer (PROTOCOL.md): the manifest bytes and signature are built once per patch.
  const manifest = Buffer.from(JSON.stringify({ id: PATCH.id, version: PATCH.version, appliesTo: { types: ['gateway'], software: PATCH.appliesTo }, artifact: { name: 'gw-2.3.2.tar.gz', sha256: 'a'.repeat(64), size: 123456 }, createdAt: '2026-11-26T00:00:00Z', expiresAt: PATCH.expiresAt, keyId: '0123456789abcdef' }));
  const signature = Buffer.alloc(64, 7).toString('base64');
  const ports: RolloutPorts = {
    patch: (id) => (id === PATCH.id ? PATCH : undefined),
    isConnected: () => true,
    eligibility: () => ({ eligible: true, reasons: [] }),
    softwareVersion: () => '2.3.1',
    sink: new RecordingSink(),
    recordOffers: () => new Map(),
    offeredDevices: () => new Map(),
    offer: (deviceId, patchId, rolloutId) => {
      const payload = Buffer.from(JSON.stringify({ rolloutId, manifest: manifest.toString('base64'), signature, url: `/patches/${patchId}/artifact` }));
      return new Promise((resolve, reject) =>
        broker.publish({ cmd: 'publish', topic: topics.cmdPatch(deviceId), payload, qos: 1, retain: false, dup: false }, (err) => (err ? reject(err) : resolve())),
      );
    },
  };
  const scheduler = new RolloutScheduler({
    db, clock, log: silentLogger(), directory, ports,
    config: { tickMs: 1000, abortThreshold: 0.1, maxConcurrent: deviceCount, maxPerGateway: 1, expectedRestartGraceS: 300 },
  });
  scheduler.start();

  let child: ChildProcess | undefined;
  try {
    if (connections > 0) {
      const self = fileURLToPath(import.meta.url);
      child = fork(self, ['--subscribers', String(port), String(connections)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      await waitFor(child, 'ready', 120_000);
    }
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const t0 = performance.now();
    const view = scheduler.create({ patchId: PATCH.id, waves: ['100%'], window: { cron: '0 2 * * *', duration: '4h', timezone: 'Europe/Berlin' }, maxConcurrent: deviceCount, maxPerGateway: 1 });
    const planMs = performance.now() - t0;

    const received = child ? waitFor(child, 'offers', 300_000) : undefined;
    await new Promise((r) => setTimeout(r, 50));
    loop.reset(); // from here: the window opening to the last PUBACK
    const opened = performance.now();
    clock.set(WINDOW_OPEN); // the window opens: the timer tick fires here
    await scheduler.idle();
    await scheduler.tick();
    const sentMs = performance.now() - opened;
    const offered = (db.prepare(`SELECT COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? AND state = 'offered'`).get(view.id) as { n: number }).n;
    let ackedMs = Number.NaN;
    if (received) {
      await received;
      ackedMs = performance.now() - opened;
    }
    loop.disable();
    const result: Record<string, number | string> = {
      store: kind,
      load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      devices: deviceCount,
      connections,
      plan_ms: Math.round(planMs), // create() is synchronous: the event loop is blocked this long
      offered,
      window_open_to_all_offers_sent_ms: Math.round(sentMs),
      offers_sent_per_s: Math.round(offered / (sentMs / 1000)),
      window_open_to_all_offers_acked_ms: Number.isNaN(ackedMs) ? 'n/a' : Math.round(ackedMs),
      offers_acked_per_s: Number.isNaN(ackedMs) ? 'n/a' : Math.round(connections / (ackedMs / 1000)),
      longest_event_loop_block_ms: +(loop.max / 1e6).toFixed(1),
      event_loop_delay_p99_ms: +(loop.percentile(99) / 1e6).toFixed(1),
    };
    for (const [k, v] of Object.entries(result)) process.stdout.write(`${k.padEnd(38)} ${v}\n`);
    return result;
  } finally {
    child?.send({ type: 'exit' });
    const stopping = scheduler.stop(1000);
    clock.advance(1000);
    await stopping;
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    db.close();
    await store.drop();
    dir.cleanup();
  }
}

const direct = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (direct && process.argv[2] === '--subscribers') {
  const count = Number(process.argv[4]);
  await runSubscribers(Number(process.argv[3]), Array.from({ length: count }, (_, i) => `gw-${String(i).padStart(5, '0')}`));
} else if (direct) {
  await runRolloutBench();
  process.exit(0);
}
