import { isAbsolute, resolve } from 'node:path';

/**
 * The config keys that hold file or directory paths. Relative values written in a config file resolve
 * against that file's directory (issue 10 fault 4: under systemd the working directory is `/`), as the
 * agent's config already does. A key added to the schema that names a file belongs here, and in
 * `checkConfigFiles` (src/config/check.ts) which opens it.
 */
export const PATH_KEYS: readonly (readonly string[])[] = [
  ['dataDir'],
  ['mqtt', 'tls', 'cert'],
  ['mqtt', 'tls', 'key'],
  ['mqtt', 'tls', 'ca'],
  ['http', 'tls', 'cert'],
  ['http', 'tls', 'key'],
  ['patches', 'releaseKeys'],
];

/**
 * A copy of the parsed file with every relative path under PATH_KEYS made absolute against `baseDir`.
 * Values of the wrong type are left alone for the schema to name. Environment overrides are applied
 * after this, so `XCARE_DATA_DIR=./x` stays relative to the working directory of the shell that set it.
 */
export function resolveConfigPaths(raw: Record<string, unknown>, baseDir: string): Record<string, unknown> {
  const out = structuredClone(raw);
  const abs = (v: unknown): unknown => (typeof v === 'string' && v !== '' && !isAbsolute(v) ? resolve(baseDir, v) : v);
  for (const path of PATH_KEYS) {
    let node: unknown = out;
    for (const key of path.slice(0, -1)) {
      node = node !== null && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>)[key] : undefined;
    }
    if (node === null || typeof node !== 'object' || Array.isArray(node)) continue;
    const parent = node as Record<string, unknown>;
    const last = path[path.length - 1]!;
    if (!(last in parent)) continue;
    parent[last] = Array.isArray(parent[last]) ? (parent[last] as unknown[]).map(abs) : abs(parent[last]);
  }
  return out;
}
