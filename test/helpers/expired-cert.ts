import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A self-signed certificate for localhost whose validity ended on 2021-01-01, made with `openssl ca`
 * (OpenSSL 3.0's `req -x509` cannot set dates in the past). For the "expired certificate is refused"
 * tests of issue 10 fault 4.
 */
export async function expiredCert(dir: string): Promise<{ certPath: string; keyPath: string }> {
  mkdirSync(dir, { recursive: true });
  const cnf = join(dir, 'ca.cnf');
  writeFileSync(cnf, '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n');
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '01\n');
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', join(dir, 'req.csr'), '-subj', '/CN=localhost'], { cwd: dir });
  await run('openssl', ['ca', '-batch', '-config', cnf, '-selfsign', '-keyfile', keyPath, '-in', join(dir, 'req.csr'), '-out', certPath, '-startdate', '20200101000000Z', '-enddate', '20210101000000Z'], { cwd: dir });
  return { certPath, keyPath };
}
