import { z } from 'zod';
import { DEFAULT_HTTP_LIMITS as HTTP } from '../http/limits.js';

/**
 * The one schema of the daemon's configuration. Every key has a default here and is documented
 * in config.example.yaml; RULES.md defaults live here, never as literals in code.
 * Objects are strict so a misspelt key is named instead of silently ignored.
 */
const port = z.number().int().min(0).max(65535);
/** Node runs a timer longer than 2^31-1 ms after 1 ms (TimeoutOverflowWarning): a tick of 3e9 ms ticked every ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** A duration in ms that ends up in a timer (or is compared with one): an integer, at most {@link MAX_TIMER_MS}. */
const timerMs = (min = 1) => z.number().int().min(min).max(MAX_TIMER_MS, `at most ${MAX_TIMER_MS} ms (24.8 days)`);
/** Seconds, bounded like timers (1e308 made deadlines Infinity). */
const seconds = z.number().positive().max(MAX_TIMER_MS / 1000, 'at most 2147483 s (24.8 days)');
const share = z.number().min(0).max(1);
const nullableString = z.string().min(1).nullable();

/** `mqtt.broker.*`: an external MQTT broker xcared joins as a client (issue 13). */
const brokerSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^mqtts?:\/\/[^/]+/, 'expected mqtt://host:port or mqtts://host:port')
      .nullable()
      .default(null),
    username: nullableString.default(null),
    password: nullableString.default(null),
    /** Client certificate, key and CA (PEM file paths) for mqtts. */
    cert: nullableString.default(null),
    key: nullableString.default(null),
    ca: nullableString.default(null),
    /** Shared-subscription group: every xcared of one fleet uses the same, so the broker splits the load. */
    sharedGroup: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only').default('xcare'),
    /** Who keeps device credentials in the broker: Mosquitto dynsec (xcared manages it) or HTTP hooks (EMQX). */
    credentials: z.enum(['dynsec', 'http']).default('dynsec'),
    /** Time to wait for the broker's answer to a command (CONNACK, dynsec response). */
    timeoutMs: timerMs().default(10_000),
  })
  .prefault({});

const tierWeights = z.strictObject({ none: z.number().default(1), xcare: z.number().default(1), xcare_pro: z.number().default(1.25) });

export const configSchema = z.strictObject({
  dataDir: z.string().min(1).default('./data'),
  adminToken: z.string().min(16, 'must be at least 16 characters').nullable().default(null),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      // auto: human-readable lines on a terminal, JSON otherwise (src/log.ts).
      format: z.enum(['auto', 'json', 'pretty']).default('auto'),
    })
    .prefault({}),

  mqtt: z
    .strictObject({
      host: z.string().default('0.0.0.0'),
      port: port.default(1883),
      /** Plain listener on when TLS is on too. Without TLS the plain listener is always on. */
      plainWithTls: z.boolean().default(false),
      tls: z
        .strictObject({
          port: port.default(8883),
          cert: nullableString.default(null),
          key: nullableString.default(null),
          ca: nullableString.default(null),
        })
        .prefault({}),
      maxPacketBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(65536),
      /** aedes: how long a slow subscriber may hold up delivery before its connection is dropped. */
      drainTimeoutMs: timerMs().default(10_000),
      /** Time a client has, from TCP accept, to finish TLS (mqtts) and have its CONNECT accepted; every listener. */
      connectTimeoutMs: timerMs().default(30_000),
      /** Connections reading their CONNECT at once (issue 11: fd exhaustion); more wait for a turn (ConnectionGuard). */
      maxUnauthenticated: z.number().int().min(1).default(1000),
      /** The same, per source address. */
      maxUnauthenticatedPerAddress: z.number().int().min(1).default(100),
      /** Connections waiting for a turn (unread, each within connectTimeoutMs); more are closed on accept (issue 12). */
      maxWaiting: z.number().int().min(0).default(10_000),
      /** No effect since device tokens are HMAC-checked (issue 12); still accepted so old configs load. */
      authCacheSize: z.number().int().min(0).default(100_000),
      /** Failed device authentications per source address: `burst` at once, `perSecond` regained; then throttled. */
      /** A rotated or revoked token is the device's own retry (refused, no security signal) for this long, or until it is back. */
      retiredTokenGraceS: z.number().int().min(0).max(2_147_483).default(900),
      authFailures: z
        .strictObject({ burst: z.number().int().min(0).default(20), perSecond: z.number().positive().default(5) })
        .prefault({}),
      /** External broker mode (README "At scale"): with `broker.url` no embedded broker is started. */
      broker: brokerSchema,
    })
    .prefault({}),

  http: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: port.default(8080),
      // Limits (issue 11, README "Limits"); the defaults live once, in src/http/limits.ts.
      maxJsonBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(HTTP.maxJsonBytes),
      maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(HTTP.maxHeaderBytes),
      headersTimeoutMs: timerMs(100).default(HTTP.headersTimeoutMs),
      requestTimeoutMs: timerMs(100).default(HTTP.requestTimeoutMs),
      idleTimeoutMs: timerMs(100).default(HTTP.idleTimeoutMs),
      keepAliveTimeoutMs: timerMs(100).default(HTTP.keepAliveTimeoutMs),
      maxRequestsPerSocket: z.number().int().min(1).default(HTTP.maxRequestsPerSocket),
      maxConnections: z.number().int().min(1).default(HTTP.maxConnections),
      maxDiscardBytes: z.number().int().min(0).default(HTTP.maxDiscardBytes),
      /** HTTPS on the same listener when both are set (README "Exposing the daemon safely"). */
      tls: z.strictObject({ cert: nullableString.default(null), key: nullableString.default(null) }).prefault({}),
    })
    .prefault({}),

  ingest: z
    .strictObject({
      /** Latest heartbeats are coalesced per device and written in one transaction at this period. */
      flushIntervalMs: timerMs().default(500),
      maxBatch: z.number().int().positive().default(10_000),
      /** A device's row is rewritten at most this often while its heartbeats only say "still alive". */
      refreshMs: timerMs(0).default(5000),
      /** A heartbeat payload larger than this is dropped and counted (reason `size`). */
      maxHeartbeatBytes: z.number().int().positive().default(16_384),
    })
    .prefault({}),

  health: z
    .strictObject({
      missedHeartbeats: z.number().int().positive().default(3),
      lastWillGraceS: seconds.default(30),
      tickMs: timerMs().default(1000),
      correlationWindowS: seconds.default(120),
      minCorrelated: z.number().int().positive().default(3),
      fleetGatewayShare: share.default(0.3),
      customerGatewayShare: share.default(0.5),
      sensorLostShare: share.default(0.5),
      minSensorsLost: z.number().int().positive().default(2),
      flapping: z.strictObject({ changes: z.number().int().positive().default(4), windowS: seconds.default(600) }).prefault({}),
      security: z
        .strictObject({
          authFailures: z.number().int().positive().default(20),
          aclViolations: z.number().int().positive().default(5),
          patchFailures: z.number().int().positive().default(1),
          integrityMismatchDevices: z.number().int().positive().default(3),
          windowS: seconds.default(60),
        })
        .prefault({}),
      /** After an install, silence this long is an expected restart and opens no loss ticket. */
      expectedRestartGraceS: seconds.default(300),
      /** Longest an install in progress may hide a device's silence before it is judged again. */
      maxInstallS: seconds.default(3600),
      /**
       * A tick that runs this much later than planned (the daemon stalled: SIGSTOP, swap, a blocked loop) first
       * lets ingest catch up, then gives every device a fresh interval: the gap was our outage, not theirs.
       */
      stallMarginMs: timerMs().default(2000),
      /** After the daemon starts, devices not heard from yet are not judged lost before the herd had its chance. */
      startup: z
        .strictObject({
          /** The agents' longest reconnect backoff (agent `reconnect.maxMs`): every device retries within it. */
          reconnectS: seconds.default(60),
          /** The grace lasts while devices keep coming back: until this long after the latest return... */
          herdQuietS: seconds.default(10),
          /** ... but never longer than this after the start. */
          maxS: seconds.default(300),
        })
        .prefault({}),
    })
    .prefault({}),

  tickets: z
    .strictObject({
      resolveAfterS: seconds.default(300),
      reopenWindowS: seconds.default(3600),
      maxTicketsPerDay: z.number().int().positive().default(6),
      severityWeight: z
        .strictObject({ urgent: z.number().default(1000), high: z.number().default(400), medium: z.number().default(150), low: z.number().default(50) })
        .prefault({}),
      tierWeight: tierWeights.prefault({}),
      classWeight: z.strictObject({ problem: z.number().default(25), consultative: z.number().default(0) }).prefault({}),
      agingPerHour: z.number().min(0).default(5),
      agingCap: z.number().min(0).default(200),
    })
    .prefault({}),

  subscriptions: z
    .strictObject({
      currency: z.string().default('EUR'),
      annualPrice: z.strictObject({ xcare: z.number().min(0).default(120), xcare_pro: z.number().min(0).default(300) }).prefault({}),
      /** Installers whose devices are eligible; Minnovation itself is always approved. */
      approvedInstallers: z.array(z.string().min(1)).default(['minnovation']),
      expiringWithinDays: z.number().int().positive().default(30),
    })
    .prefault({}),

  webhook: z
    .strictObject({
      url: z.string().url().regex(/^https?:\/\//i, 'expected an http:// or https:// URL').nullable().default(null),
      secret: nullableString.default(null),
      timeoutMs: timerMs().default(5000),
      maxAttempts: z.number().int().positive().default(12),
      backoffBaseMs: timerMs().default(1000),
      backoffMaxMs: timerMs().default(300_000),
    })
    .prefault({}),

  patches: z
    .strictObject({
      /** PEM public keys (file paths) that release signatures must verify with. */
      releaseKeys: z.array(z.string().min(1)).default([]),
      threshold: z.number().int().positive().default(1),
      maxArtifactBytes: z.number().int().positive().default(512 * 1024 * 1024),
    })
    .prefault({}),

  rollouts: z
    .strictObject({
      tickMs: timerMs().default(1000),
      abortThreshold: share.default(0.1),
      maxConcurrent: z.number().int().positive().default(500),
      maxPerGateway: z.number().int().positive().default(1),
    })
    .prefault({}),

  /** The operators' console at `/` (issue 14). */
  console: z
    .strictObject({
      /** How long a sign-in lasts (seconds); the session then expires server-side and the cookie with it. */
      sessionTtlS: z.number().int().min(60).max(30 * 86_400).default(8 * 3600),
    })
    .prefault({}),

  /** `store.url`: all state in PostgreSQL instead of SQLite under the data dir (README "At scale", PostgreSQL). */
  store: z
    .strictObject({
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'expected postgres://user:password@host:port/database')
        .nullable()
        .default(null),
    })
    .prefault({}),

  /** Several xcared on one fleet: one leader runs the evaluator, the scheduler and the webhook dispatcher. */
  cluster: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** This instance's name in the lease, logs and `xcare_leader{instance}`; default `<hostname>-<pid>`. */
      instanceId: nullableString.default(null),
      /** A leader that has not renewed for this long is replaced (issue 13: default <= 10 s). */
      leaseS: z.number().positive().max(300).default(10),
      /** How often the leader renews and followers try to take over; must be well under leaseS. */
      renewS: z.number().positive().default(2),
    })
    .prefault({}),
})
  // Keys that only make sense together: refused at start, before the database is opened.
  .superRefine((c, ctx) => {
    if (c.webhook.url && !c.webhook.secret) {
      ctx.addIssue({ code: 'custom', path: ['webhook', 'secret'], message: 'required when webhook.url is set (deliveries are signed)' });
    }
    if (c.cluster.enabled && !c.mqtt.broker.url) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'enabled'], message: 'needs mqtt.broker.url (several daemons share one external broker)' });
    }
    if (c.cluster.renewS * 2 > c.cluster.leaseS) {
      ctx.addIssue({ code: 'custom', path: ['cluster', 'renewS'], message: 'must be at most half of cluster.leaseS' });
    }
    if (Boolean(c.mqtt.broker.cert) !== Boolean(c.mqtt.broker.key)) {
      ctx.addIssue({ code: 'custom', path: ['mqtt', 'broker', c.mqtt.broker.cert ? 'key' : 'cert'], message: 'mqtt.broker.cert and mqtt.broker.key go together' });
    }
    if (Boolean(c.mqtt.tls.cert) !== Boolean(c.mqtt.tls.key)) {
      ctx.addIssue({ code: 'custom', path: ['mqtt', 'tls', c.mqtt.tls.cert ? 'key' : 'cert'], message: 'mqtt.tls.cert and mqtt.tls.key go together' });
    }
    if (Boolean(c.http.tls.cert) !== Boolean(c.http.tls.key)) {
      ctx.addIssue({ code: 'custom', path: ['http', 'tls', c.http.tls.cert ? 'key' : 'cert'], message: 'http.tls.cert and http.tls.key go together' });
    }
  });

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
