import { createServer } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Aedes } from 'aedes';

/**
 * The reference of the ingest benchmark (issue 12): aedes with nothing of ours (every CONNECT accepted,
 * no ACL, no storage) plus an in-process subscriber that parses each heartbeat's JSON, the least a
 * daemon must do with a message. Prints its port on stdout; answers `{stats: true}` over IPC with its
 * young-generation size and the longest event-loop block since the last ask; stops on SIGTERM.
 */
const broker = await Aedes.createBroker();
let parsed = 0;
broker.subscribe(
  'fleet/v1/+/heartbeat',
  (packet, cb) => {
    const hb = JSON.parse((packet.payload as Buffer).toString('utf8')) as { seq?: number };
    if (typeof hb.seq === 'number') parsed++;
    cb();
  },
  () => {},
);
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  broker.handle(socket);
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('message', (msg: { stats?: boolean }) => {
  if (!msg.stats) return;
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  process.send!({ youngBytes: young?.space_size ?? 0, loopMaxMs: loop.max / 1e6, parsed });
  loop.reset();
});
process.once('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
