import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SelfSignedCert {
  certPath: string;
  keyPath: string;
  /** The certificate PEM, to give a client as its `ca`. */
  cert: Buffer;
}

/**
 * A self-signed certificate for `localhost` / `127.0.0.1`, made with the `openssl` CLI in `dir`
 * at test time (no key material checked into the repo). EC P-256: fast to generate.
 */
export async function selfSignedCert(dir: string): Promise<SelfSignedCert> {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  return { certPath, keyPath, cert: readFileSync(certPath) };
}
