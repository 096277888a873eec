import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import { Gauge, type Registry } from 'prom-client';
import { certificateValidity, loadTlsOptions, tlsConfigured } from '../../broker/tls-options.js';
import type { Config } from '../config/schema.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';

const DAY_MS = 86_400_000;
/** A certificate this close to its end is logged as a warning at start. */
export const TLS_EXPIRY_WARNING_DAYS = 30;

/**
 * The HTTPS options of the daemon's one HTTP listener (issue 10 fault 5): `http.tls` checked exactly
 * like `mqtt.tls` (readable, a matching pair, valid now; else exit 2 naming the key). Undefined when
 * `http.tls` is not set: plain HTTP, as before.
 */
export function httpTlsLoader(tls: Config['http']['tls'], clock: Clock): (() => Promise<TlsOptions>) | undefined {
  if (!tlsConfigured(tls)) return undefined;
  return () => loadTlsOptions(tls, 'http.tls', clock.now());
}

/**
 * `fleet_tls_cert_expiry_days{listener}`: days until each configured certificate (mqtts, https) expires,
 * computed at scrape time from the certificate read at start, so an alert can fire weeks before the
 * handshakes start failing (an expired certificate is refused at start, but a running daemon keeps the
 * one it loaded). Logs a warning at start for one that ends within TLS_EXPIRY_WARNING_DAYS.
 */
export function registerTlsExpiryMetric(deps: { registry: Registry; clock: Clock; log: Logger; config: Readonly<Config> }): void {
  const certs: { listener: string; key: string; path: string; notAfter: number }[] = [];
  for (const [listener, key, tls] of [
    ['mqtts', 'mqtt.tls.cert', deps.config.mqtt.tls],
    ['https', 'http.tls.cert', deps.config.http.tls],
  ] as const) {
    if (!tlsConfigured(tls) || tls.cert === null) continue;
    try {
      certs.push({ listener, key, path: tls.cert, notAfter: certificateValidity(readFileSync(tls.cert)).notAfter });
    } catch {
      // An unreadable certificate is named by loadTlsOptions when its listener starts.
    }
  }
  const now = deps.clock.now();
  for (const c of certs) {
    const days = (c.notAfter - now) / DAY_MS;
    if (days < TLS_EXPIRY_WARNING_DAYS) {
      deps.log.warn({ listener: c.listener, key: c.key, path: c.path, expiresAt: new Date(c.notAfter).toISOString(), days: Math.floor(days) }, 'TLS certificate expires soon; renew it');
    }
  }
  if (certs.length === 0) return;
  new Gauge({
    name: 'fleet_tls_cert_expiry_days',
    help: 'Days until the TLS certificate a listener loaded at start expires (negative: expired)',
    labelNames: ['listener'] as const,
    registers: [deps.registry],
    collect() {
      const t = deps.clock.now();
      for (const c of certs) this.set({ listener: c.listener }, (c.notAfter - t) / DAY_MS);
    },
  });
}
