import { connect } from 'mqtt';

/**
 * The subscriber beside Mosquitto in the ingest benchmark (issue 12): an mqtt.js client on
 * `fleet/v1/+/heartbeat` (QoS 0) that parses each payload's JSON, as a daemon in front of an external
 * broker would at least have to. Prints "ready" once subscribed; stops on SIGTERM.
 * Usage: node mqtt-subscriber.js <port>
 */
const client = connect(`mqtt://127.0.0.1:${process.argv[2]}`, { clientId: 'bench-subscriber', protocolVersion: 4, reconnectPeriod: 1000 });
let parsed = 0;
client.on('message', (_topic, payload) => {
  const hb = JSON.parse(payload.toString('utf8')) as { seq?: number };
  if (typeof hb.seq === 'number') parsed++;
});
client.on('connect', () => {
  client.subscribe('fleet/v1/+/heartbeat', { qos: 0 }, (err) => {
    if (err) {
      process.stderr.write(`subscribe failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write('ready\n');
  });
});
process.once('SIGTERM', () => {
  client.end(true, () => process.exit(0));
});
