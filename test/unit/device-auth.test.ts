import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { statSync, writeFileSync, chmodSync } from 'node:fs';
import { openDatabase, type Database } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { hashTokenScrypt, loadTokenKey, type TokenKey } from '../../src/registry/device-token.js';
import { AuthFailureLimiter } from '../../src/registry/auth-failure-limiter.js';
import { ManualClock } from '../../src/clock.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Issue 12 "Cheap, safe device auth": HMAC with a key in the data dir, scrypt rows migrated, failures limited. */
describe('device token key file', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => (dir = tempDir()));
  afterEach(() => dir.cleanup());

  it('is generated once with mode 0600 and read back unchanged on the next start', () => {
    const a = loadTokenKey(dir.path, silentLogger());
    expect(a.length).toBe(32);
    expect(statSync(join(dir.path, 'device-token.key')).mode & 0o777).toBe(0o600);
    expect(loadTokenKey(dir.path, silentLogger()).equals(a)).toBe(true);
  });

  it('is narrowed to 0600 when found readable by others', () => {
    const a = loadTokenKey(dir.path, silentLogger());
    chmodSync(join(dir.path, 'device-token.key'), 0o644);
    expect(loadTokenKey(dir.path, silentLogger()).equals(a)).toBe(true);
    expect(statSync(join(dir.path, 'device-token.key')).mode & 0o777).toBe(0o600);
  });

  it('refuses a damaged key file instead of silently making a new key (which would lock out the fleet)', () => {
    writeFileSync(join(dir.path, 'device-token.key'), 'not a key\n', { mode: 0o600 });
    expect(() => loadTokenKey(dir.path, silentLogger())).toThrow(/device-token\.key: expected a 32-byte hex key/);
  });
});

describe('DeviceRegistry.verifyDeviceToken', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Database;
  let clock: ManualClock;
  let key: TokenKey;
  const make = (limits = { burst: 3, perSecond: 1 }) =>
    new DeviceRegistry({ db, clock, log: silentLogger(), fiscalYearEnd, tokenKey: key, authFailures: limits });
  const storedHash = (id: string) => (db.prepare('SELECT token_hash h FROM devices WHERE id = ?').get(id) as { h: string }).h;

  beforeEach(() => {
    dir = tempDir();
    db = openDatabase(join(dir.path, 'x.db'));
    clock = new ManualClock('2026-11-26T12:00:00Z');
    key = loadTokenKey(dir.path, silentLogger());
  });
  afterEach(() => {
    db.close();
    dir.cleanup();
  });

  it('stores new tokens as HMAC-SHA-256 under the key, and a restart with the same key still verifies them', async () => {
    const registry = make();
    registry.start();
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    expect(storedHash('gw-1')).toMatch(/^hmac-sha256\$[A-Za-z0-9+/]{43}=$/);
    expect(storedHash('gw-1')).not.toContain(gw!.token);
    const again = make();
    again.start();
    expect(await again.verifyDeviceToken('gw-1', gw!.token)).toBe('ok');
    expect(await again.verifyDeviceToken('gw-1', `${gw!.token}x`)).toBe('refused');
    expect(await again.verifyDeviceToken('gw-404', gw!.token)).toBe('refused');
  });

  it('a stored scrypt hash authenticates once and is then migrated to HMAC in the stored row', async () => {
    const token = 'legacy-token-0123456789abcdefghij';
    const scrypt = await hashTokenScrypt(token);
    db.prepare(
      `INSERT INTO devices (id, type, customer, installer, tier, tags, token_hash, created_at) VALUES ('gw-old', 'gateway', 'a', 'i', 'none', '[]', ?, 0)`,
    ).run(scrypt);
    const registry = make();
    registry.start();
    // A wrong token against the legacy row changes nothing.
    expect(await registry.verifyDeviceToken('gw-old', 'wrong-token-0123456789abcdefghij')).toBe('refused');
    expect(storedHash('gw-old')).toBe(scrypt);
    expect(await registry.verifyDeviceToken('gw-old', token)).toBe('ok');
    const migrated = storedHash('gw-old');
    expect(migrated).toMatch(/^hmac-sha256\$/);
    // From now on HMAC: a fresh registry (restart) verifies the migrated row, and the wrong token stays wrong.
    const again = make();
    again.start();
    expect(await again.verifyDeviceToken('gw-old', token)).toBe('ok');
    expect(await again.verifyDeviceToken('gw-old', 'wrong-token-0123456789abcdefghij')).toBe('refused');
    expect(storedHash('gw-old')).toBe(migrated);
  });

  it('refuses a revoked device with its right token', async () => {
    const registry = make();
    registry.start();
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    registry.revoke('gw-1');
    // Refused either way; within the grace it is the agent's own retry (no security signal), then a failure.
    expect(await registry.verifyDeviceToken('gw-1', gw!.token)).toBe('retired');
    clock.advance(15 * 60_000);
    expect(await registry.verifyDeviceToken('gw-1', gw!.token)).toBe('refused');
  });

  it('a token rotated away is "retired" until the device is back with its new one or the grace passes; then a failure', async () => {
    const registry = make();
    registry.start();
    const [a, b] = await registry.add([
      parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' }),
      parseDeviceInput({ id: 'gw-2', type: 'gateway', customer: 'a', installer: 'i' }),
    ]);
    const rotatedA = registry.rotateToken('gw-1');
    registry.rotateToken('gw-2');
    // The agent retrying with the old token: refused, but not a failed CONNECT, and not held against its source.
    for (let i = 0; i < 10; i++) expect(await registry.verifyDeviceToken('gw-1', a!.token, '10.0.0.9')).toBe('retired');
    expect(registry.throttledSources()).toBe(0);
    // Another device's old token, or a wrong one, is still a failure.
    expect(await registry.verifyDeviceToken('gw-1', b!.token)).toBe('refused');
    expect(await registry.verifyDeviceToken('gw-1', 'wrong-token-0123456789abcdefghij')).toBe('refused');
    // Back with the new token: from now on the old one is somebody else's.
    expect(await registry.verifyDeviceToken('gw-1', rotatedA.token)).toBe('ok');
    expect(await registry.verifyDeviceToken('gw-1', a!.token)).toBe('refused');
    // gw-2 never came back: its old token is a failure once the grace has passed.
    expect(await registry.verifyDeviceToken('gw-2', b!.token)).toBe('retired');
    clock.advance(15 * 60_000);
    expect(await registry.verifyDeviceToken('gw-2', b!.token)).toBe('refused');
  });

  it('throttles a source after its burst of failures, without affecting other sources, and lets it back as it refills', async () => {
    const registry = make({ burst: 3, perSecond: 1 });
    registry.start();
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    for (let i = 0; i < 3; i++) expect(await registry.verifyDeviceToken('gw-1', 'bad', '10.0.0.9')).toBe('refused');
    expect(await registry.verifyDeviceToken('gw-1', 'bad', '10.0.0.9')).toBe('throttled');
    // Throttled means unchecked: even the right token from that source waits for the allowance to refill.
    expect(await registry.verifyDeviceToken('gw-1', gw!.token, '10.0.0.9')).toBe('throttled');
    expect(registry.throttledSources()).toBe(1);
    expect(await registry.verifyDeviceToken('gw-1', gw!.token, '10.0.0.10')).toBe('ok');
    clock.advance(1000);
    expect(await registry.verifyDeviceToken('gw-1', gw!.token, '10.0.0.9')).toBe('ok');
    expect(registry.throttledSources()).toBe(0);
  });

  it('rotates a token: the old one is refused at once, the new one works, a revoked device is enabled again', async () => {
    const registry = make();
    registry.start();
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    registry.revoke('gw-1');
    const seen: string[] = [];
    registry.onChange((d) => seen.push(`${d.id}:${d.revokedAt === null ? 'enabled' : 'revoked'}`));
    const rotated = registry.rotateToken('gw-1');
    expect(rotated.reenabled).toBe(true);
    expect(rotated.token).not.toBe(gw!.token);
    expect(seen).toEqual(['gw-1:enabled']);
    expect(registry.gatewayCount()).toBe(1);
    expect(await registry.verifyDeviceToken('gw-1', gw!.token)).toBe('retired');
    expect(await registry.verifyDeviceToken('gw-1', rotated.token)).toBe('ok');
    expect(await registry.verifyDeviceToken('gw-1', gw!.token)).toBe('refused');
    const row = db.prepare('SELECT revoked_at FROM devices WHERE id = ?').get('gw-1') as { revoked_at: number | null };
    expect(row.revoked_at).toBeNull();
    const events = db.prepare(`SELECT kind, data FROM events WHERE device_id = 'gw-1' ORDER BY id`).all() as { kind: string; data: string }[];
    expect(events.map((e) => e.kind)).toEqual(['provisioned', 'revoked', 'token_rotated']);
    expect(JSON.parse(events[2]!.data)).toEqual({ reenabled: true });
    expect(() => registry.rotateToken('gw-404')).toThrow(/not found/);
  });

  it('refuses a wrong token in constant time: right token, wrong token of the right length, short, long and unknown id take alike', async () => {
    const registry = make({ burst: 0, perSecond: 1 });
    registry.start();
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    const right = gw!.token;
    const cases: Array<[string, string, string]> = [
      ['right', 'gw-1', right],
      ['wrong, same length, first char differs', 'gw-1', `${right[0] === 'A' ? 'B' : 'A'}${right.slice(1)}`],
      ['wrong, same length, last char differs', 'gw-1', `${right.slice(0, -1)}${right.endsWith('A') ? 'B' : 'A'}`],
      ['wrong, 1 char', 'gw-1', 'x'],
      ['wrong, 48 chars', 'gw-1', 'y'.repeat(48)],
      ['unknown device', 'gw-404', right],
    ];
    // The synchronous part of verifyDeviceToken is the whole check for HMAC rows (no await inside):
    // timing the call without awaiting measures the check, not promise scheduling.
    const samples = cases.map(() => [] as number[]);
    const rounds = 4000;
    for (let r = 0; r < rounds; r++) {
      // Interleaved, rotating order: machine load hits every case alike.
      for (let k = 0; k < cases.length; k++) {
        const i = (k + r) % cases.length;
        const [, id, token] = cases[i]!;
        const t0 = process.hrtime.bigint();
        const p = registry.verifyDeviceToken(id, token);
        samples[i]!.push(Number(process.hrtime.bigint() - t0));
        void p;
      }
    }
    expect(await registry.verifyDeviceToken('gw-1', right)).toBe('ok');
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const medians = samples.map(median);
    const base = medians[0]!;
    for (let i = 1; i < cases.length; i++) {
      // Loose on purpose (a busy CI box): a short-circuit (no HMAC, e.g. an early return on a length
      // mismatch or an unknown id) costs a small fraction of the right token's time and fails this.
      expect(medians[i]! / base, cases[i]![0]).toBeGreaterThan(0.6);
      expect(medians[i]! / base, cases[i]![0]).toBeLessThan(1.67);
    }
  });
});

describe('AuthFailureLimiter', () => {
  it.each([
    ['burst spent at once', { burst: 2, perSecond: 1 }, [0, 0, 0], [true, true, false]],
    ['refills at perSecond', { burst: 2, perSecond: 1 }, [0, 0, 1000], [true, true, true]],
    ['refill is capped at burst', { burst: 1, perSecond: 10 }, [0, 60_000, 60_000], [true, true, false]],
    ['burst 0 turns it off', { burst: 0, perSecond: 1 }, [0, 0, 0, 0], [true, true, true, true]],
  ] as const)('%s', (_name, limits, failAt, allowedBefore) => {
    const limiter = new AuthFailureLimiter(limits);
    const got = failAt.map((at) => {
      const allowed = limiter.allows('198.51.100.7', at);
      if (allowed) limiter.failed('198.51.100.7', at);
      return allowed;
    });
    expect(got).toEqual(allowedBefore);
  });

  it('credits refill time once even when a slow check reports its failure with an older time', () => {
    const limiter = new AuthFailureLimiter({ burst: 1, perSecond: 1 });
    limiter.failed('a', 0);
    expect(limiter.allows('a', 500)).toBe(false);
    limiter.failed('a', 100); // a check that started at 100 ms, failed after the call at 500 ms
    // 0.5 s was credited at 500 ms and spent; since then 0.6 s: not yet a whole failure (crediting again
    // from 100 ms would make it one).
    expect(limiter.allows('a', 1100)).toBe(false);
    expect(limiter.allows('a', 1500)).toBe(true);
  });

  it('reports the failure that spends the allowance once, and never limits an unknown source', () => {
    const limiter = new AuthFailureLimiter({ burst: 2, perSecond: 1 });
    expect([limiter.failed('a', 0), limiter.failed('a', 0), limiter.failed('a', 0)]).toEqual([false, true, false]);
    expect(limiter.allows(undefined, 0)).toBe(true);
    expect(limiter.failed(undefined, 0)).toBe(false);
  });

  it('tracks at most maxSources addresses, dropping the least recently failing', () => {
    const limiter = new AuthFailureLimiter({ burst: 1, perSecond: 0.001, maxSources: 2 });
    limiter.failed('a', 0);
    limiter.failed('b', 0);
    limiter.failed('c', 0);
    expect(limiter.allows('a', 0)).toBe(true); // forgotten
    expect(limiter.allows('b', 0)).toBe(false);
    expect(limiter.allows('c', 0)).toBe(false);
  });
});
