import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { ManualClock } from '../../src/clock.js';
import { tempDir } from '../helpers/temp-dir.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;

describe('IntegrityRegistry.expected (real SQLite; asked for each device\'s first heartbeat, issue 12)', () => {
  const dir = tempDir('xcare-integrity-');

  it('answers from memory for a while; a registration here is seen at once, one by another instance within 5 s', () => {
    const file = join(dir.path, 'x.db');
    const clock = new ManualClock('2026-11-30T10:00:00Z');
    const db = openDatabase(file);
    const other = openDatabase(file);
    const here = new IntegrityRegistry({ db, clock });
    const there = new IntegrityRegistry({ db: other, clock });
    expect(here.expected('2.3.1')).toBeUndefined();
    here.register('2.3.1', A, 'api');
    expect(here.expected('2.3.1')).toBe(A); // its own registration drops the cached "none"
    there.register('2.3.1', B, 'api', { replace: true });
    expect(here.expected('2.3.1')).toBe(A); // another instance's change: within the TTL, the cached answer
    let reads = 0;
    const get = here.get.bind(here);
    here.get = (version: string) => {
      reads++;
      return get(version);
    };
    for (let i = 0; i < 1000; i++) here.expected('2.3.1');
    expect(reads).toBe(0);
    clock.advance(5000);
    expect(here.expected('2.3.1')).toBe(B);
    expect(reads).toBe(1);
    db.close();
    other.close();
    dir.cleanup();
  });
});
