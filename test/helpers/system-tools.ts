import { spawnSync } from 'node:child_process';

/**
 * System tools some tests need (Debian packages): `mosquitto`, `mosquitto_pub`, `promtool`, `chromium`,
 * `pg_ctlcluster`... On a developer's machine without them, `npm ci && npm test` still passes: the
 * tests that need a missing tool skip, and say so loudly on stderr once per tool. Under CI (`CI=true`),
 * where `.ci/run` installs every tool, nothing may skip: `toolsMissing` then returns `[]` so the tests run
 * and fail with the tool's own error, which names what is missing.
 */

const warned = new Set<string>();

/** True when `command` can be run (`command --version`/`--help` starts; the exit code does not matter). */
export function hasCommand(command: string): boolean {
  const r = spawnSync(command, ['--help'], { stdio: 'ignore', timeout: 10_000 });
  return !r.error;
}

/**
 * The tools of `commands` that are absent, for `describe.skipIf(toolsMissing([...]).length > 0)`.
 * Prints one loud line per missing tool (with the Debian package to install) the first time it is asked.
 * Under `CI=true` it returns `[]`: CI installs everything and lets nothing skip.
 */
export function toolsMissing(commands: readonly string[], debianPackage?: string): string[] {
  if (process.env.CI === 'true') return [];
  const missing = commands.filter((c) => !hasCommand(c));
  for (const c of missing) {
    if (warned.has(c)) continue;
    warned.add(c);
    process.stderr.write(
      `\n*** SKIPPED: tests that need \`${c}\` (not installed${debianPackage ? `; apt-get install ${debianPackage}` : ''}). CI installs it and runs them. ***\n\n`,
    );
  }
  return missing;
}
