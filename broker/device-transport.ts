import type { DeviceTopicKind } from '../src/protocol/topics.js';

/** A device message that passed the broker's ACL: (device id, topic kind, raw payload). */
export type DeviceMessageHandler = (deviceId: string, kind: DeviceTopicKind, payload: Buffer) => void;
/** A device connecting or going away (CONNECT accepted; socket closed or Last Will published). */
export type DeviceHandler = (deviceId: string) => void;

/**
 * What the daemon needs from "the MQTT side", whoever runs it: the embedded aedes broker
 * (`FleetBroker`, the default) or an external cluster xcared joins as a client (`ExternalBroker`,
 * README "At scale"). app.ts wires ingest, the scheduler and the API to this and nothing else.
 */
export interface DeviceTransport {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Device messages this instance ingests (in external mode: its share of the shared subscription). */
  onDeviceMessage(handler: DeviceMessageHandler): void;
  onClientConnected(handler: DeviceHandler): void;
  onClientDisconnected(handler: DeviceHandler): void;
  /**
   * The device can receive commands now (PROTOCOL.md "Delivery of daemon -> device commands"): the embedded
   * broker sees its SUBSCRIBE to its own cmd/; an external one, a live `{"online":true}` state, which agents
   * publish only after their SUBACK. Fires on every (re)connect.
   */
  onDeviceReady(handler: DeviceHandler): void;
  /** Connected and subscribed to its commands, so that a command published now reaches it. */
  isReady(deviceId: string): boolean;
  /** QoS 1 to `fleet/v1/<id>/cmd/patch`; rejects when the broker cannot take it. */
  publishToDevice(deviceId: string, payload: Buffer | string): Promise<void>;
  /** Close a device's live connection (revocation). */
  disconnectDevice(deviceId: string): void;
  isConnected(deviceId: string): boolean;
  connectedCount(): number;
  /** Listening ports of an embedded broker; `{}` for an external one. */
  ports(): { mqtt?: number; mqtts?: number };
  /** False while an external broker is unreachable (for /readyz); the embedded broker is ready once started. */
  healthy?(): boolean;
}
