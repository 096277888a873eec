import { existsSync, readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from './log.js';

/**
 * The admin bearer token: from config/env when set; otherwise `<dataDir>/admin.token`, generated
 * (mode 0600) on first start. The path is logged, never the token (PROTOCOL.md "Command line").
 */
export function resolveAdminToken(configured: string | null, dataDir: string, log: Logger): string {
  if (configured) return configured;
  const file = join(dataDir, 'admin.token');
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 16) return token;
  }
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  log.info({ path: file }, 'generated admin token');
  return token;
}
