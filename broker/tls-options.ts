import { readFile } from 'node:fs/promises';
import { createSecureContext, type TlsOptions } from 'node:tls';
import { ConfigError } from '../src/errors.js';
import type { Config } from '../src/config/schema.js';

type TlsConfig = Config['mqtt']['tls'];

/** True when the mqtts listener is configured (PROTOCOL.md: "when a cert/key is configured"). */
export function tlsConfigured(tls: TlsConfig): boolean {
  return tls.cert !== null || tls.key !== null;
}

async function readPem(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Reads the certificate, key (and optional CA) at start and checks they form a usable pair, so a
 * bad file stops the daemon with the config key named instead of failing on the first handshake.
 */
export async function loadTlsOptions(tls: TlsConfig): Promise<TlsOptions> {
  if (tls.cert === null) throw new ConfigError('mqtt.tls.cert: required when mqtt.tls.key is set');
  if (tls.key === null) throw new ConfigError('mqtt.tls.key: required when mqtt.tls.cert is set');
  const cert = await readPem(tls.cert, 'mqtt.tls.cert');
  const key = await readPem(tls.key, 'mqtt.tls.key');
  const ca = tls.ca === null ? undefined : await readPem(tls.ca, 'mqtt.tls.ca');
  const options: TlsOptions = { cert, key, ...(ca ? { ca } : {}) };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new ConfigError(`mqtt.tls.cert/mqtt.tls.key: not a usable certificate and private key (${(err as Error).message})`);
  }
  return options;
}
