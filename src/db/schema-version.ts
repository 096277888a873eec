/**
 * A store migrated by a newer xcared (a version this build does not know) is refused at start, on both
 * engines: an older daemon would write rows the newer schema does not expect. Throws STORE_SCHEMA_NEWER
 * naming both versions (README "Upgrade and backup": roll back by restoring the backup taken before).
 */
export function refuseNewerSchema(applied: ReadonlySet<number>, list: readonly { version: number }[]): void {
  const known = Math.max(0, ...list.map((m) => m.version));
  const newest = Math.max(0, ...applied);
  if (newest > known) {
    throw Object.assign(
      new Error(`the store is at schema version ${newest}, newer than this xcared knows (${known}): run the newer xcared, or restore the backup taken before the upgrade`),
      { code: 'STORE_SCHEMA_NEWER' },
    );
  }
}
