import { createServer } from 'node:net';
import { Aedes } from 'aedes';

/**
 * The baseline of the ingest benchmark: aedes with nothing of ours (every CONNECT accepted, no ACL,
 * no validation, no storage). Prints its port on stdout, stops on SIGTERM.
 */
const broker = await Aedes.createBroker();
const server = createServer((socket) => broker.handle(socket));
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
