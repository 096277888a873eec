/**
 * The agent's MQTT client over TCP or TLS only (issue 10 fault 8: idle RSS at most 50 MB).
 *
 * `connect()` from the `mqtt` package loads every transport it knows at first use (WebSocket, SOCKS
 * proxies, WeChat/Alipay mini-programs: `ws`, `socks`, `ip-address`...), about a third of the agent
 * bundle, none of which a device speaking `mqtt://` or `mqtts://` needs. mqtt.js documents the
 * client class for exactly this (`new MqttClient(streamBuilder, options)`), so we build the stream
 * ourselves, the way its own `lib/connect/tcp.js` and `tls.js` do, and load only `mqtt/lib/client`.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { IClientOptions, MqttClient } from 'mqtt';
import clientModule from 'mqtt/lib/client';

type MqttClientClass = new (streamBuilder: (client: MqttClient) => Socket, options: IClientOptions) => MqttClient;

/**
 * The class behind `mqtt/lib/client` (CommonJS, `exports.default = MqttClient`): Node's ESM loader
 * hands us `module.exports`, a CommonJS bundle (esbuild) may hand us the class itself.
 */
const MqttClientImpl: MqttClientClass = ((clientModule as unknown as { default?: MqttClientClass }).default ??
  (clientModule as unknown as MqttClientClass));

export interface MqttConnectOptions extends IClientOptions {
  /** PEM CA bundle for mqtts:// (else the system roots). */
  ca?: Buffer;
}

/**
 * Open a client to `brokerUrl` (`mqtt://host[:1883]` or `mqtts://host[:8883]`). Throws on any other
 * scheme (the agent's config already refuses them). Every (re)connect of the client opens a fresh
 * socket through the stream builder; certificate errors surface as the client's `error` event.
 */
export function connectMqtt(brokerUrl: string, options: MqttConnectOptions): MqttClient {
  const url = new URL(brokerUrl);
  const secure = url.protocol === 'mqtts:';
  if (!secure && url.protocol !== 'mqtt:') throw new Error(`unsupported broker URL scheme ${url.protocol} (mqtt: or mqtts:)`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? Number(url.port) : secure ? 8883 : 1883;
  const { ca, ...clientOptions } = options;
  const streamBuilder = (): Socket =>
    secure
      ? tlsConnect({
          host,
          port,
          // SNI only for names (RFC 6066 section 3 forbids IP literals), as mqtt.js's tls.js does.
          ...(isIP(host) === 0 ? { servername: host } : {}),
          ...(ca ? { ca } : {}),
          rejectUnauthorized: true,
        })
      : netConnect({ host, port });
  return new MqttClientImpl(streamBuilder, clientOptions);
}
