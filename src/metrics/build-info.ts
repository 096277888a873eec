import { readFileSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';

/**
 * The version in the package.json next to the running code (`dist/src/metrics/` and `src/metrics/` are both three or
 * two levels below it; the first package.json named xcare-fleet wins). `0.0.0-unknown` when none is found, so a
 * scrape never fails over a missing file.
 */
export function packageVersion(): string {
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'xcare-fleet' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return '0.0.0-unknown';
}

/**
 * `xcare_build_info{version,node}` = 1 (issue 10): the Prometheus "info" idiom, so dashboards and alerts can join on the
 * running version (`* on(instance) group_left(version) xcare_build_info`) and an upgrade shows as a label change.
 */
export function registerBuildInfo(registry: Registry, version = packageVersion()): void {
  new Gauge({
    name: 'xcare_build_info',
    help: 'Always 1; labels name the running xcared version and Node.js version',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  }).set({ version, node: process.versions.node }, 1);
}
