import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../src/log.js';
import { PROTOCOL_RULES } from './packet-rules.js';

/**
 * The guard's settings: `mqtt.connectTimeoutMs`, `mqtt.maxUnauthenticated`, `mqtt.maxUnauthenticatedPerAddress`,
 * `mqtt.maxWaiting`.
 */
export interface ConnectionGuardLimits {
  connectTimeoutMs: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  /** Connections accepted beyond the two caps above, waiting (unread) for their turn; more are closed on accept. */
  maxWaiting: number;
}

/** Why a connection was cut before or instead of a session: the `reason` label of `fleet_mqtt_connections_dropped_total`. */
export const DROP_REASONS = ['connect_timeout', 'unauthenticated_cap', 'address_cap', 'protocol_violation', 'tls_error'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Where an accepted connection is: before `gate` (TLS handshake), waiting for a turn, or reading its CONNECT. */
type Phase = 'accepted' | 'waiting' | 'active';

interface Pending {
  address: string;
  /** performance.now() by which TLS and CONNECT must be done. */
  deadline: number;
  phase: Phase;
  /** Hands the connection to the broker (set while waiting). */
  start?: () => void;
  /** performance.now() when it got its turn (phase 'active'). */
  activatedAt?: number;
}

/**
 * How long a turn must have been held, unauthenticated, before an address above its fair share can lose it to
 * an address holding none (ConnectionGuard.preempt). A device's CONNECT is already buffered when its turn
 * comes; this only leaves room for the token check under load.
 */
const PREEMPT_AFTER_MS = 2000;

/** IPv4 peers on a dual-stack socket appear as `::ffff:a.b.c.d`; one address, one budget. */
function addressOf(socket: Socket): string {
  const raw = socket.remoteAddress ?? 'unknown';
  return raw.startsWith('::ffff:') ? raw.slice(7) : raw;
}

/**
 * Bounds what unauthenticated peers can hold (issue 11 fault 1, the fd-exhaustion class) without refusing a
 * reconnect herd (issue 12). Every listener, plain and TLS, hands it each raw TCP socket the moment it is
 * accepted (`admit`), before any TLS handshake: from then the peer has `connectTimeoutMs` to finish TLS and have
 * its CONNECT accepted, or the socket is destroyed. When the connection is ready for the broker (`gate`: at once
 * for plain TCP, after the handshake for TLS) it is handed over only while fewer than `maxUnauthenticated`
 * connections, and fewer than `maxUnauthenticatedPerAddress` from its address, are reading their CONNECT;
 * otherwise it waits, unread, for a turn. Turns go round the waiting addresses in order, so one address
 * flooding the queue delays only itself.
 *
 * Why wait rather than close: a fleet behind one NAT address reconnecting at once (the herd after a restart),
 * on a daemon slowed by load, had more than 100 CONNECTs in flight from one address; closing the rest made
 * every client retry, and the herd never finished (issue 12: 5,000 devices from one address, 600 refused).
 * A waiting plain socket is not read (pauseOnConnect): it costs a descriptor, no memory and no CPU. At most
 * `maxWaiting` wait; when full, the address holding the most connections not yet reading (waiting, or still
 * in their TLS handshake) loses its oldest (`address_cap`), so a flood from one address cannot crowd out the
 * others, and a newcomer from that very address is closed instead (`unauthenticated_cap` when the queue is full
 * of fair shares). When every turn is taken, an address under its fair share takes an idle one (preempt()). Every drop is counted in `fleet_mqtt_connections_dropped_total{reason}`, every MQTT rule
 * violation in `fleet_mqtt_protocol_violations_total{rule}`.
 *
 * aedes' own `connectTimeout` sees only sockets that reach it; a TLS socket mid-handshake never does,
 * and Node's TLS handshake timeout leaves the socket open when a `tlsClientError` listener exists.
 */
export class ConnectionGuard {
  /**
   * Unauthenticated sockets in the order they were accepted. Every one has the same timeout from accept, so
   * this order is also deadline order: one timer, armed for the oldest, serves them all (issue 12: a
   * setTimeout and a closure per socket cost memory and CPU through every reconnect herd).
   */
  private readonly pending = new Map<Socket, Pending>();
  /** Every admitted socket until it closes, authenticated or not: what stop() must not leave open. */
  private readonly live = new Set<Socket>();
  private sweepTimer: NodeJS.Timeout | undefined;
  /** The one 'close' listener every admitted socket shares (`this` is the socket): no closure per socket. */
  private readonly onSocketClose: (this: Socket) => void;
  /** Connections reading their CONNECT, per address, in the order they got their turn. */
  private readonly activePerAddress = new Map<string, Set<Socket>>();
  private active = 0;
  /** Waiting connections per address, oldest first; the map's order is the round-robin order of turns. */
  private readonly waiting = new Map<string, Set<Socket>>();
  private waitingCount = 0;
  /**
   * Every connection not reading its CONNECT yet (TLS handshake in progress or waiting), per address, oldest
   * first: what `mqtt.maxWaiting` bounds and whose oldest makeRoom() evicts. Sockets stuck before their TLS
   * handshake are held here too, so a flood of them is evicted like a flood of waiting ones (issue 12: they
   * filled the queue and, being in no address's waiting set, shut every other address out).
   */
  private readonly held = new Map<string, Set<Socket>>();
  private readonly dropped: Counter<'reason'>;
  private readonly violations: Counter<'rule'>;
  private stopped = false;

  constructor(
    private readonly deps: { limits: ConnectionGuardLimits; metrics: Registry; log: Logger },
  ) {
    const registry = deps.metrics;
    const self = this;
    this.onSocketClose = function (this: Socket) {
      self.live.delete(this);
      self.release(this);
    };
    this.dropped = new Counter({
      name: 'fleet_mqtt_connections_dropped_total',
      help: 'MQTT connections cut before a session: connect_timeout (no TLS + CONNECT in mqtt.connectTimeoutMs), unauthenticated_cap, address_cap (mqtt.maxWaiting full), protocol_violation, tls_error',
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
      help: 'TCP connections accepted that have not completed TLS and CONNECT yet (waiting ones included)',
      registers: [registry],
      collect() {
        this.set(pending.size);
      },
    });
    const guard = this;
    new Gauge({
      name: 'fleet_mqtt_waiting_connections',
      help: 'Connections waiting for a turn to send their CONNECT (mqtt.maxUnauthenticated or the per-address cap reached)',
      registers: [registry],
      collect() {
        this.set(guard.waitingCount);
      },
    });
  }

  /**
   * A listener accepted `socket` (the raw TCP socket, also under TLS): its connect timeout starts. Returns false
   * when it was closed at once because the waiting queue is full (see the class comment).
   */
  admit(socket: Socket): boolean {
    const { limits, log } = this.deps;
    const address = addressOf(socket);
    if (this.stopped) {
      socket.destroy();
      return false;
    }
    if (this.pending.size - this.active >= limits.maxWaiting && !this.makeRoom(address)) {
      this.drop(socket, 'unauthenticated_cap');
      log.warn({ remote: address, limit: limits.maxWaiting }, 'mqtt.maxWaiting reached, connection closed');
      return false;
    }
    this.pending.set(socket, { address, deadline: performance.now() + limits.connectTimeoutMs, phase: 'accepted' });
    const held = this.held.get(address);
    if (held) held.add(socket);
    else this.held.set(address, new Set([socket]));
    this.live.add(socket);
    // 'close' comes once; on() spares the wrapper once() would allocate per socket.
    socket.on('close', this.onSocketClose);
    if (!this.sweepTimer) this.armSweep(limits.connectTimeoutMs);
    return true;
  }

  /**
   * The connection (`raw`: its TCP socket) is ready to send its CONNECT: `start` hands it to the broker, now
   * when a turn is free, or later in round-robin order across addresses. A connection the guard has already
   * closed (timeout, drop) is never started.
   */
  gate(raw: Socket, start: () => void): void {
    const entry = this.pending.get(raw);
    if (!entry || entry.phase !== 'accepted') {
      if (!entry) raw.destroy();
      return;
    }
    const { limits } = this.deps;
    const fromAddress = this.activePerAddress.get(entry.address)?.size ?? 0;
    const ownTurnFree = fromAddress < limits.maxUnauthenticatedPerAddress && !this.waiting.has(entry.address);
    if (ownTurnFree && (this.active < limits.maxUnauthenticated || this.preempt(entry.address, fromAddress))) {
      this.activate(raw, entry);
      start();
      return;
    }
    entry.phase = 'waiting';
    entry.start = start;
    const queue = this.waiting.get(entry.address);
    if (queue) queue.add(raw);
    else this.waiting.set(entry.address, new Set([raw]));
    this.waitingCount++;
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

  /** Unauthenticated connections now, waiting ones included (for tests and the gauge). */
  unauthenticatedCount(): number {
    return this.pending.size;
  }

  /** Connections waiting for a turn now. */
  waitingNow(): number {
    return this.waitingCount;
  }

  /** Closes every unauthenticated connection and refuses new ones. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const socket of [...this.pending.keys()]) {
      this.release(socket);
      socket.destroy();
    }
  }

  /** Destroys every admitted socket still open (after aedes closed its clients, at shutdown). */
  destroyAll(): void {
    for (const socket of [...this.live]) socket.destroy();
  }

  private armSweep(delayMs: number): void {
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(0, Math.ceil(delayMs)));
    this.sweepTimer.unref();
  }

  /** Drops every socket past its deadline (the oldest ones, in order), then waits for the next oldest. */
  private sweep(): void {
    this.sweepTimer = undefined;
    const now = performance.now();
    const { limits, log } = this.deps;
    for (const [socket, entry] of this.pending) {
      if (entry.deadline > now) {
        this.armSweep(entry.deadline - now);
        return;
      }
      log.debug({ remote: entry.address, connectTimeoutMs: limits.connectTimeoutMs }, 'no TLS + CONNECT within mqtt.connectTimeoutMs, connection closed');
      // Deleting the entry being visited is safe in a Map iteration.
      this.drop(socket, 'connect_timeout');
    }
  }

  private activate(raw: Socket, entry: Pending): void {
    entry.phase = 'active';
    entry.start = undefined;
    this.unhold(raw, entry.address);
    this.active++;
    entry.activatedAt = performance.now();
    const turns = this.activePerAddress.get(entry.address);
    if (turns) turns.add(raw);
    else this.activePerAddress.set(entry.address, new Set([raw]));
  }

  /** The queue is full: the address holding the most loses its oldest, unless that is `address` itself. */
  private makeRoom(address: string): boolean {
    let largest: string | undefined;
    let most = 0;
    for (const [from, queue] of this.held) {
      if (queue.size > most) {
        most = queue.size;
        largest = from;
      }
    }
    const mine = this.held.get(address)?.size ?? 0;
    if (largest === undefined || largest === address || most <= mine + 1) return false;
    const oldest = this.held.get(largest)!.values().next().value!;
    this.deps.log.warn({ remote: largest, waiting: most, limit: this.deps.limits.maxWaiting }, 'mqtt.maxWaiting reached, the address waiting most lost its oldest connection');
    this.drop(oldest, 'address_cap');
    return true;
  }

  /** Hand free turns to waiting connections, one per address in round-robin order. */
  private pump(): void {
    const { limits } = this.deps;
    let progressed = true;
    while (this.active < limits.maxUnauthenticated && this.waitingCount > 0 && progressed) {
      progressed = false;
      for (const [address, queue] of this.waiting) {
        if (this.active >= limits.maxUnauthenticated) break;
        if ((this.activePerAddress.get(address)?.size ?? 0) >= limits.maxUnauthenticatedPerAddress) continue;
        const raw = queue.values().next().value!;
        queue.delete(raw);
        this.waitingCount--;
        // Re-inserted at the end: the next turn goes to the next address.
        this.waiting.delete(address);
        if (queue.size > 0) this.waiting.set(address, queue);
        const entry = this.pending.get(raw)!;
        const start = entry.start!;
        this.activate(raw, entry);
        progressed = true;
        start();
      }
    }
  }

  private drop(socket: Socket, reason: DropReason, pump = true): void {
    this.dropped.inc({ reason });
    this.release(socket, pump);
    socket.destroy();
  }

  /**
   * Every turn is taken and a connection from an address holding less than its fair share of
   * mqtt.maxUnauthenticated (split evenly over the addresses holding turns and this one) is ready: the address
   * holding the most turns, when above that share, loses its oldest turn if that one has read
   * for PREEMPT_AFTER_MS without being authenticated (`address_cap`); the caller takes the turn. Without
   * this, ten addresses opening 100 idle sockets each held all 1,000 turns, and every other device waited
   * out connectTimeoutMs (issue 12: 25 s for a herd from an eleventh address, again each timeout). A
   * device's CONNECT is in the kernel when its turn comes, so a turn held that long is not a device's.
   */
  private preempt(address: string, held: number): boolean {
    const holders = this.activePerAddress.size + (held === 0 ? 1 : 0);
    const fairShare = Math.max(1, Math.floor(this.deps.limits.maxUnauthenticated / holders));
    if (held >= fairShare) return false;
    let largest: Set<Socket> | undefined;
    for (const [from, turns] of this.activePerAddress) {
      if (from !== address && (!largest || turns.size > largest.size)) largest = turns;
    }
    if (!largest || largest.size <= fairShare) return false;
    const oldest = largest.values().next().value!;
    const entry = this.pending.get(oldest);
    if (!entry || performance.now() - (entry.activatedAt ?? 0) < PREEMPT_AFTER_MS) return false;
    this.deps.log.warn({ remote: entry.address, turns: largest.size, fairShare }, 'every CONNECT turn taken: the address holding most lost its oldest idle one');
    this.drop(oldest, 'address_cap', false);
    return true;
  }

  private unhold(socket: Socket, address: string): void {
    const held = this.held.get(address);
    if (held?.delete(socket) && held.size === 0) this.held.delete(address);
  }

  /** `pump`: hand a freed turn to the waiting connections (not when the caller takes it itself, see preempt). */
  private release(socket: Socket, pump = true): void {
    const entry = this.pending.get(socket);
    if (!entry) return;
    // The sweep timer stays armed: when it fires for a socket gone since, it finds the next oldest.
    this.pending.delete(socket);
    if (entry.phase !== 'active') this.unhold(socket, entry.address);
    if (entry.phase === 'waiting') {
      const queue = this.waiting.get(entry.address);
      if (queue?.delete(socket)) {
        this.waitingCount--;
        if (queue.size === 0) this.waiting.delete(entry.address);
      }
      return;
    }
    if (entry.phase === 'active') {
      this.active--;
      const turns = this.activePerAddress.get(entry.address);
      if (turns?.delete(socket) && turns.size === 0) this.activePerAddress.delete(entry.address);
      if (!this.stopped && pump) this.pump();
    }
  }
}

/** The raw TCP socket under a TLS socket (Node's `TLSSocket._parent` for server sockets), or the socket itself. */
export function rawSocketOf(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket })._parent ?? socket;
}
