import semver from 'semver';

/**
 * One definition of version matching for the daemon and the agent (issue 9 fault 4): both import this file,
 * so a device the daemon targets is one the agent accepts. The `semver` package (PROTOCOL.md allows it on the
 * agent) with strict parsing and no prereleases in ranges: `1.0` does not parse (so the device is left out
 * with that reason, never offered), and `1.0.5-beta.1` does not satisfy `>=1.0.0 <1.1.0`.
 */
export const VERSION_OPTIONS = Object.freeze({ loose: false, includePrerelease: false });

/** The normalized version, or null when `text` is not a strict semver version. */
export function parseVersion(text: string): string | null {
  return semver.valid(text, VERSION_OPTIONS);
}

/** Is `range` a semver range both sides can evaluate? */
export function isValidRange(range: string): boolean {
  return semver.validRange(range, VERSION_OPTIONS) !== null;
}

/** Does `version` (strict semver) satisfy `range`? False for a version that does not parse. */
export function versionSatisfies(version: string, range: string): boolean {
  return parseVersion(version) !== null && semver.satisfies(version, range, VERSION_OPTIONS);
}

/** -1, 0 or 1; throws TypeError for a version that does not parse (callers check parseVersion first). */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  return semver.compare(a, b, VERSION_OPTIONS);
}

/** Could some version satisfy both ranges? */
export function rangesIntersect(a: string, b: string): boolean {
  return semver.intersects(a, b, VERSION_OPTIONS);
}
