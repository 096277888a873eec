import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../src/log.js';
import { PROTOCOL_RULES } from './packet-rules.js';

/** The guard's settings: `mqtt.connectTimeoutMs`, `mqtt.maxUnauthenticated`, `mqtt.maxUnauthenticatedPerAddress`. */
export interface ConnectionGuardLimits {
  connectTimeoutMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
}

/** Why a connection was cut before or instead of a session: the `reason` label of `fleet_mqtt_connections_dropped_total`. */
export const DROP_REASONS = ['connect_timeout', 'unauthenticated_cap', 'address_cap', 'protocol_violation', 'tls_error'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

interface Pending {
  address: string;
  timer: NodeJS.Timeout;
}

/** IPv4 peers on a dual-stack socket appear as `::ffff:a.b.c.d`; one address, one budget. */
function addressOf(socket: Socket): string {
  const raw = socket.remoteAddress ?? 'unknown';
  return raw.startsWith('::ffff:') ? raw.slice(7) : raw;
}

/**
 * Bounds what an unauthenticated peer can hold (issue 11 fault 1, the fd-exhaustion class). Every
 * listener, plain and TLS, hands it each raw TCP socket the moment it is accepted, before any TLS
 * handshake: from then the peer has `connectTimeoutMs` to finish TLS and have its CONNECT accepted,
 * or the socket is destroyed. At most `maxUnauthenticated` such sockets exist at once, and at most
 * `maxUnauthenticatedPerAddress` per source address; more are closed on accept. Every drop is counted
 * in `fleet_mqtt_connections_dropped_total{reason}`, every MQTT rule violation in
 * `fleet_mqtt_protocol_violations_total{rule}`.
 *
 * aedes' own `connectTimeout` sees only sockets that reach it; a TLS socket mid-handshake never does,
 * and Node's TLS handshake timeout leaves the socket open when a `tlsClientError` listener exists.
 */
export class ConnectionGuard {
  private readonly pending = new Map<Socket, Pending>();
  private readonly perAddress = new Map<string, number>();
  private readonly dropped: Counter<'reason'>;
  private readonly violations: Counter<'rule'>;
  private stopped = false;

  constructor(
    private readonly deps: { limits: ConnectionGuardLimits; metrics: Registry; log: Logger },
  ) {
    const registry = deps.metrics;
    this.dropped = new Counter({
      name: 'fleet_mqtt_connections_dropped_total',
      help: 'MQTT connections cut before a session: connect_timeout (no TLS + CONNECT in mqtt.connectTimeoutMs), unauthenticated_cap, address_cap, protocol_violation, tls_error',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.violations = new Counter({
      name: 'fleet_mqtt_protocol_violations_total',
      help: 'MQTT 3.1.1 "MUST close" rules broken by a client, by spec clause (MQTT-3.1.2-14 ...); the connection is closed',
      labelNames: ['rule'],
      registers: [registry],
    });
    // Every known label at 0 from start, so rate()/increase() see the first drop (issue 10 fault 3).
    for (const reason of DROP_REASONS) this.dropped.inc({ reason }, 0);
    for (const rule of PROTOCOL_RULES) this.violations.inc({ rule }, 0);
    const pending = this.pending;
    new Gauge({
      name: 'fleet_mqtt_unauthenticated_connections',
      help: 'TCP connections accepted that have not completed TLS and CONNECT yet',
      registers: [registry],
      collect() {
        this.set(pending.size);
      },
    });
  }

  /**
   * A listener accepted `socket` (the raw TCP socket, also under TLS). Returns false when it was
   * closed at once because a cap is reached.
   */
  admit(socket: Socket): boolean {
    const { limits, log } = this.deps;
    const address = addressOf(socket);
    if (this.stopped) {
      socket.destroy();
      return false;
    }
    if (this.pending.size >= limits.maxUnauthenticated) {
      this.drop(socket, 'unauthenticated_cap');
      log.warn({ remote: address, limit: limits.maxUnauthenticated }, 'mqtt.maxUnauthenticated reached, connection closed');
      return false;
    }
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= limits.maxUnauthenticatedPerAddress) {
      this.drop(socket, 'address_cap');
      log.warn({ remote: address, limit: limits.maxUnauthenticatedPerAddress }, 'mqtt.maxUnauthenticatedPerAddress reached, connection closed');
      return false;
    }
    this.perAddress.set(address, fromAddress + 1);
    const timer = setTimeout(() => {
      if (!this.pending.has(socket)) return;
      log.debug({ remote: address, connectTimeoutMs: limits.connectTimeoutMs }, 'no TLS + CONNECT within mqtt.connectTimeoutMs, connection closed');
      this.drop(socket, 'connect_timeout');
    }, limits.connectTimeoutMs);
    timer.unref();
    this.pending.set(socket, { address, timer });
    socket.once('close', () => this.release(socket));
    return true;
  }

  /**
   * The CONNECT on this connection was accepted: it leaves the unauthenticated budget. `socket` is the
   * one aedes reads (a TLSSocket under TLS, whose raw TCP socket Node keeps as `_parent`).
   */
  authenticated(socket: Socket): void {
    this.release(rawSocketOf(socket));
  }

  /** A connection closed for breaking an MQTT rule (packet-rules.ts). */
  protocolViolation(rule: string): void {
    this.violations.inc({ rule });
    this.dropped.inc({ reason: 'protocol_violation' });
  }

  /** A TLS handshake failed or timed out: the socket is closed (Node leaves it open once tlsClientError has a listener). */
  tlsError(socket: Socket): void {
    const raw = rawSocketOf(socket);
    // A socket the guard already cut (timeout, cap) fails its handshake too: it is counted once, as that.
    if (!this.pending.has(raw)) {
      socket.destroy();
      return;
    }
    this.drop(raw, 'tls_error');
  }

  /** Unauthenticated connections now (for tests and the gauge). */
  unauthenticatedCount(): number {
    return this.pending.size;
  }

  /** Closes every unauthenticated connection and refuses new ones. */
  stop(): void {
    this.stopped = true;
    for (const socket of [...this.pending.keys()]) {
      this.release(socket);
      socket.destroy();
    }
  }

  private drop(socket: Socket, reason: DropReason): void {
    this.dropped.inc({ reason });
    this.release(socket);
    socket.destroy();
  }

  private release(socket: Socket): void {
    const entry = this.pending.get(socket);
    if (!entry) return;
    this.pending.delete(socket);
    clearTimeout(entry.timer);
    const left = (this.perAddress.get(entry.address) ?? 1) - 1;
    if (left <= 0) this.perAddress.delete(entry.address);
    else this.perAddress.set(entry.address, left);
  }
}

/** The raw TCP socket under a TLS socket (Node's `TLSSocket._parent` for server sockets), or the socket itself. */
export function rawSocketOf(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket })._parent ?? socket;
}
