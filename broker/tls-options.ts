import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type TlsOptions } from 'node:tls';
import { ConfigError } from '../src/errors.js';

/** A listener's TLS files as the config names them (`mqtt.tls`, `http.tls`); `ca` only where the schema has one. */
export interface TlsFiles {
  cert: string | null;
  key: string | null;
  ca?: string | null;
}

/** True when the mqtts listener is configured (PROTOCOL.md: "when a cert/key is configured"). */
export function tlsConfigured(tls: TlsFiles): boolean {
  return tls.cert !== null || tls.key !== null;
}

async function readPem(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The first certificate of a PEM file: its validity window in ms since the epoch. */
export function certificateValidity(pem: Buffer): { notBefore: number; notAfter: number } {
  const cert = new X509Certificate(pem);
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/**
 * Reads the certificate, key (and optional CA) at start and checks they form a usable pair that is
 * valid now, so a bad file stops the daemon with the config key named (exit 2) instead of failing
 * every client on its first handshake (issue 10 fault 4: an expired certificate was accepted silently).
 * `prefix` is the config key of the listener (`mqtt.tls`, `http.tls`); `now` is ms since the epoch.
 */
export async function loadTlsOptions(tls: TlsFiles, prefix = 'mqtt.tls', now: number = Date.now()): Promise<TlsOptions> {
  if (tls.cert === null) throw new ConfigError(`${prefix}.cert: required when ${prefix}.key is set`);
  if (tls.key === null) throw new ConfigError(`${prefix}.key: required when ${prefix}.cert is set`);
  const cert = await readPem(tls.cert, `${prefix}.cert`);
  const key = await readPem(tls.key, `${prefix}.key`);
  const ca = tls.ca == null ? undefined : await readPem(tls.ca, `${prefix}.ca`);
  const options: TlsOptions = { cert, key, ...(ca ? { ca } : {}) };
  let validity;
  try {
    validity = certificateValidity(cert);
  } catch (err) {
    throw new ConfigError(`${prefix}.cert: ${tls.cert} is not a PEM certificate (${(err as Error).message})`);
  }
  // Refused rather than warned about: with an expired certificate every client's handshake fails, so a
  // daemon that starts anyway only looks healthy. fleet_tls_cert_expiry_days warns before it comes to this.
  if (now >= validity.notAfter) {
    throw new ConfigError(`${prefix}.cert: ${tls.cert} expired on ${new Date(validity.notAfter).toISOString()}; renew it`);
  }
  if (now < validity.notBefore) {
    throw new ConfigError(`${prefix}.cert: ${tls.cert} is not valid before ${new Date(validity.notBefore).toISOString()} (check the clock)`);
  }
  try {
    createSecureContext(options);
  } catch (err) {
    throw new ConfigError(`${prefix}.cert/${prefix}.key: not a usable certificate and private key (${(err as Error).message})`);
  }
  return options;
}
