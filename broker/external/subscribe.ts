import type { IClientSubscribeOptions, MqttClient } from 'mqtt';

/**
 * Subscribe and resolve with the filters the broker refused (SUBACK reason code with the high bit set: 0x80,
 * or MQTT 5's 0x87 "not authorized"), however mqtt.js reports them: mqtt.js 5 rejects the whole subscribe
 * with an ErrorWithSubackPacket carrying the codes in `packet.granted`, older versions resolved with the
 * code as the granted QoS. Other errors (connection lost) reject.
 */
export async function subscribeChecked(client: MqttClient, filters: string[], options: IClientSubscribeOptions): Promise<string[]> {
  const refusal = (code: unknown) => typeof code === 'number' && (code & 0x80) !== 0;
  try {
    const grants = await client.subscribeAsync(filters, options);
    return grants.filter((g) => refusal(g.qos)).map((g) => g.topic);
  } catch (err) {
    const granted = (err as { packet?: { granted?: unknown } }).packet?.granted;
    if (!Array.isArray(granted) || !granted.some(refusal)) throw err;
    return filters.filter((_, i) => refusal(granted[i]));
  }
}
