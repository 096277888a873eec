import { accessSync, constants, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadPublicKey } from '../../patches/signing.js';
import { loadTlsOptions, tlsConfigured } from '../../broker/tls-options.js';
import { ConfigError } from '../errors.js';
import type { Config } from './schema.js';

/**
 * Opens every file the configuration names and checks the data dir can be written, without writing
 * anything (issue 10 fault 4: `--check` said "configuration ok" for a release key that did not exist, and
 * the real start then failed with a stack trace after creating the database). `xcared` runs this before
 * the App is built, for `--check` and for a real start alike, so every fault exits 2 naming its key.
 * Throws one ConfigError listing every problem as `key: message`; `now` (ms) judges certificate validity.
 */
export async function checkConfigFiles(config: Readonly<Config>, now: number): Promise<void> {
  const issues: string[] = [];
  const dataDirIssue = checkDataDir(resolve(config.dataDir));
  if (dataDirIssue) issues.push(`dataDir: ${dataDirIssue}`);

  const keyIds = new Set<string>();
  let unreadableKeys = 0;
  config.patches.releaseKeys.forEach((path, i) => {
    try {
      keyIds.add(loadPublicKey(path).keyId);
    } catch (err) {
      unreadableKeys++;
      issues.push(`patches.releaseKeys[${i}]: ${describe(err, path)}`);
    }
  });
  // Only with every key readable: otherwise the missing file is the fault to fix, not the threshold.
  if (keyIds.size > 0 && unreadableKeys === 0 && keyIds.size < config.patches.threshold) {
    issues.push(`patches.threshold: ${config.patches.threshold} exceeds the ${keyIds.size} distinct release keys; no patch could ever be published`);
  }

  for (const [prefix, tls] of [['mqtt.tls', config.mqtt.tls], ['http.tls', config.http.tls]] as const) {
    if (!tlsConfigured(tls)) continue;
    try {
      await loadTlsOptions(tls, prefix, now);
    } catch (err) {
      issues.push((err as Error).message);
    }
  }
  if (issues.length > 0) throw new ConfigError(issues.join('\n'));
}

/**
 * Why `dir` cannot hold the database, or undefined. A missing dir is fine when its nearest existing
 * ancestor is a writable directory (it is created at start). Root passes every permission check, so
 * only a missing or non-directory ancestor or a read-only file system shows up when running as root.
 */
export function checkDataDir(dir: string): string | undefined {
  let probe = dir;
  for (;;) {
    try {
      const st = statSync(probe);
      if (!st.isDirectory()) return `${dir}: ${probe} is not a directory`;
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOTDIR: a component on the way is a file; walking up finds it and names it.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return `${dir}: cannot use ${probe}: ${describe(err)}`;
      if (dirname(probe) === probe) return `${dir}: no existing parent directory`;
      probe = dirname(probe);
    }
  }
  try {
    accessSync(probe, constants.W_OK | constants.X_OK);
  } catch (err) {
    return probe === dir ? `${dir} is not writable: ${describe(err)}` : `${dir} cannot be created: ${probe} is not writable: ${describe(err)}`;
  }
  if (probe === dir) {
    for (const file of ['xcare.db', 'xcare.db-wal', 'admin.token']) {
      try {
        accessSync(join(dir, file), constants.R_OK | constants.W_OK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return `${join(dir, file)} is not writable: ${describe(err)}`;
      }
    }
  }
  return undefined;
}

/** `EACCES (permission denied)`-style text: the errno code and the system's reason, without the stack. */
function describe(err: unknown, path?: string): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code && e.syscall) {
    const reason = /^[A-Z]+: ([^,]+)/.exec(e.message)?.[1] ?? e.message;
    return `${path ? `${path}: ` : ''}${e.code} (${reason})`;
  }
  return e.message ?? String(err);
}
