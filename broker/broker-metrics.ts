import { Counter, Gauge, type Registry } from 'prom-client';

/** The broker's metric families (PROTOCOL.md "HTTP" names the first three). */
export interface BrokerMetrics {
  authFailures: Counter;
  aclDenied: Counter;
  oversizePackets: Counter;
  /** Connections and CONNECTs refused unchecked because their source spent its failure allowance. */
  authThrottled: Counter;
  /** CONNECTs refused with a token retired by a recent rotation or revocation (no security signal). */
  retiredTokens: Counter;
}

/**
 * Registers the broker's families on the daemon's registry. `connectedCount` is read in the
 * gauge's collect(), at scrape time, so the hot path never touches the gauge.
 */
export function createBrokerMetrics(registry: Registry, connectedCount: () => number): BrokerMetrics {
  new Gauge({
    name: 'fleet_mqtt_clients_connected',
    help: 'MQTT clients connected to the embedded broker (authenticated sessions)',
    registers: [registry],
    collect() {
      this.set(connectedCount());
    },
  });
  return {
    authFailures: new Counter({
      name: 'fleet_mqtt_auth_failures_total',
      help: 'CONNECTs refused: bad device id, clientId != username, unknown, revoked or wrong token, bad Last Will',
      registers: [registry],
    }),
    aclDenied: new Counter({
      name: 'fleet_mqtt_acl_denied_total',
      help: 'Publishes, subscriptions and Last Wills outside the device\'s own topics, refused',
      registers: [registry],
    }),
    oversizePackets: new Counter({
      name: 'fleet_mqtt_oversize_packets_total',
      help: 'Connections cut because a packet declared a length above mqtt.maxPacketBytes',
      registers: [registry],
    }),
    retiredTokens: new Counter({
      name: 'fleet_mqtt_retired_token_connects_total',
      help: 'CONNECTs refused because they carry a token rotated away or revoked within mqtt.retiredTokenGraceS (the agent retrying; not a failed CONNECT, no security signal)',
      registers: [registry],
    }),
    authThrottled: new Counter({
      name: 'fleet_mqtt_auth_throttled_total',
      help: 'Connections closed at accept, or CONNECTs refused unchecked (those also in fleet_mqtt_auth_failures_total), because their source address made too many failed authentications',
      registers: [registry],
    }),
  };
}
