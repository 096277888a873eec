import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { ownerStores, type OwnerStores, type StoreEngine } from '../../src/db/store-engine.js';
import { hashSecret } from '../../src/access/secret-hash.js';
import type { Principal } from '../../src/access/roles.js';
import { ConflictError, NotFoundError, ValidationError } from '../../src/errors.js';
import { engines } from '../helpers/store-engines.js';

const T0 = Date.parse('2026-11-30T05:00:00Z');
const TTL_S = 3600;

/** One engine's owners, its clock, and raw reads to prove what is (not) stored. */
interface Fixture {
  owners: OwnerStores;
  clock: ManualClock;
  engine: StoreEngine;
  /** Rows of `table` (for "nothing stored changes"). */
  rows(table: string): Promise<Record<string, unknown>[]>;
}

function fixture(engine: StoreEngine): Fixture {
  const clock = new ManualClock(T0);
  return {
    owners: ownerStores(engine, { clock, sessionTtlS: TTL_S }),
    clock,
    engine,
    async rows(table) {
      const sql = `SELECT * FROM ${table} ORDER BY 1`;
      return engine.kind === 'sqlite' ? (engine.db.prepare(sql).all() as Record<string, unknown>[]) : (await engine.pool.query(sql)).rows;
    },
  };
}

const handles = engines<Fixture>({ sqlite: (db) => fixture({ kind: 'sqlite', db }), postgres: (pool) => fixture({ kind: 'postgres', pool }) });

/**
 * Issue 13, item 2: the four ported owners (customers, API tokens, console sessions, audit log) behave the
 * same on SQLite and PostgreSQL, bad input included: a clear error and nothing stored changes.
 */
describe.each(handles)('table owners on $name', (handle) => {
  let f: Fixture;
  let close: () => Promise<void>;
  beforeEach(async () => {
    ({ store: f, close } = await handle.open());
    await f.owners.customers.start();
  });
  afterEach(async () => close());

  describe('customers', () => {
    const ada = { name: 'acme', engineerName: 'Ada Lovelace', engineerEmail: 'ada@minnovation.example', engineerPhone: '+44 20 7946 0000', notes: 'gold' };

    it('set creates; a second set changes only the fields given and keeps createdAt', async () => {
      const created = await f.owners.customers.set(ada);
      expect(created).toEqual({ name: 'acme', successEngineer: { name: 'Ada Lovelace', email: 'ada@minnovation.example', phone: '+44 20 7946 0000' }, notes: 'gold', createdAt: new Date(T0).toISOString(), updatedAt: new Date(T0).toISOString() });
      f.clock.advance(5000);
      const updated = await f.owners.customers.set({ name: 'acme', notes: 'platinum' });
      expect(updated).toEqual({ ...created, notes: 'platinum', updatedAt: new Date(T0 + 5000).toISOString() });
      expect(await f.owners.customers.get('acme')).toEqual(updated);
      expect(await f.owners.customers.list()).toEqual([updated]);
    });

    it('null or an empty string clears a field; list is by name', async () => {
      await f.owners.customers.set(ada);
      await f.owners.customers.set({ name: 'beta' });
      const cleared = await f.owners.customers.set({ name: 'acme', engineerEmail: null, engineerPhone: '' });
      expect(cleared.successEngineer).toEqual({ name: 'Ada Lovelace', email: null, phone: null });
      expect((await f.owners.customers.list()).map((c) => c.name)).toEqual(['acme', 'beta']);
    });

    it('two concurrent edits of different fields both stick (one atomic statement each)', async () => {
      await f.owners.customers.set({ name: 'acme' });
      await Promise.all([f.owners.customers.set({ name: 'acme', engineerName: 'Ada' }), f.owners.customers.set({ name: 'acme', notes: 'n' })]);
      const c = await f.owners.customers.require('acme');
      expect([c.successEngineer.name, c.notes]).toEqual(['Ada', 'n']);
    });

    it('successEngineerOf answers synchronously from the view: kept in step by set, loaded by start', async () => {
      expect(f.owners.customers.successEngineerOf('acme')).toBeUndefined();
      await f.owners.customers.set(ada);
      expect(f.owners.customers.successEngineerOf('acme')).toEqual({ name: 'Ada Lovelace', email: 'ada@minnovation.example', phone: '+44 20 7946 0000' });
      // Another instance on the same store (a restart) sees it after start().
      const again = ownerStores(f.engine, { clock: f.clock, sessionTtlS: TTL_S }).customers;
      expect(again.successEngineerOf('acme')).toBeUndefined();
      await again.start();
      expect(again.successEngineerOf('acme')?.name).toBe('Ada Lovelace');
      await f.owners.customers.set({ name: 'acme', engineerName: null, engineerEmail: null, engineerPhone: null });
      expect(f.owners.customers.successEngineerOf('acme')).toBeUndefined();
    });

    it('with followMs, another instance\'s edit reaches the view within followMs; without, only at start', async () => {
      const following = ownerStores(f.engine, { clock: f.clock, sessionTtlS: TTL_S, customersFollowMs: 2000 }).customers;
      await following.start();
      try {
        await f.owners.customers.set(ada);
        expect(following.successEngineerOf('acme')).toBeUndefined();
        f.clock.advance(2000);
        await vi.waitFor(() => expect(following.successEngineerOf('acme')?.name).toBe('Ada Lovelace'), { timeout: 10_000 });
        await f.owners.customers.set({ name: 'acme', engineerName: null, engineerEmail: null, engineerPhone: null });
        f.clock.advance(2000);
        await vi.waitFor(() => expect(following.successEngineerOf('acme')).toBeUndefined(), { timeout: 10_000 });
      } finally {
        following.stop();
      }
    });

    it('require of an unknown customer is a NotFoundError', async () => {
      await expect(f.owners.customers.require('nobody')).rejects.toBeInstanceOf(NotFoundError);
      expect(await f.owners.customers.get('nobody')).toBeUndefined();
    });

    const BAD: [string, Record<string, unknown>, RegExp][] = [
      ['a name with a slash', { name: '../etc' }, /^name:/],
      ['no name', { notes: 'x' }, /^name:/],
      ['a name of 129 characters', { name: 'a'.repeat(129) }, /^name:/],
      ['an email without a domain', { name: 'acme', engineerEmail: 'ada@' }, /^engineerEmail:/],
      ['a phone with letters', { name: 'acme', engineerPhone: 'call me' }, /^engineerPhone:/],
      ['an engineer name with a control character', { name: 'acme', engineerName: 'Ada\u0007' }, /^engineerName:/],
      ['notes that are a number', { name: 'acme', notes: 5 }, /^notes:/],
      ['notes over 4000 characters', { name: 'acme', notes: 'x'.repeat(4001) }, /^notes:/],
    ];
    it.each(BAD)('refuses %s with a ValidationError naming the field; nothing stored changes', async (_what, input, message) => {
      await f.owners.customers.set({ name: 'acme', engineerName: 'Ada', notes: 'kept' });
      const before = await f.rows('customers');
      const err = await f.owners.customers.set(input).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
      expect(await f.rows('customers')).toEqual(before);
      expect(f.owners.customers.successEngineerOf('acme')?.name).toBe('Ada');
    });

    it('refuses a body that is not an object; nothing stored', async () => {
      await expect(f.owners.customers.set([1, 2] as never)).rejects.toBeInstanceOf(ValidationError);
      expect(await f.rows('customers')).toEqual([]);
    });
  });

  describe('API tokens', () => {
    it('create shows the secret once and stores only its hash; it authenticates as its name and role', async () => {
      const { token, apiToken } = await f.owners.tokens.create({ name: 'ops', role: 'operator' }, 'admin');
      expect(token).toMatch(/^xct_/);
      expect(apiToken).toMatchObject({ name: 'ops', role: 'operator', createdBy: 'admin', createdAt: new Date(T0).toISOString(), lastUsedAt: null, revokedAt: null });
      const rows = await f.rows('api_tokens');
      expect(rows).toHaveLength(1);
      expect(JSON.stringify(rows)).not.toContain(token);
      expect(rows[0]!.token_hash).toBe(hashSecret(token));
      expect(await f.owners.tokens.authenticate(token)).toEqual({ name: 'ops', role: 'operator', tokenId: apiToken.id, via: 'bearer' });
      expect(await f.owners.tokens.get(apiToken.id)).toMatchObject({ name: 'ops', lastUsedAt: new Date(T0).toISOString() });
      expect((await f.owners.tokens.list()).map((t) => t.name)).toEqual(['ops']);
    });

    it('last use is written at most once a minute per token', async () => {
      const { token, apiToken } = await f.owners.tokens.create({ name: 'ops', role: 'viewer' }, 'admin');
      await f.owners.tokens.authenticate(token);
      f.clock.advance(30_000);
      await f.owners.tokens.authenticate(token);
      expect((await f.owners.tokens.get(apiToken.id))!.lastUsedAt).toBe(new Date(T0).toISOString());
      f.clock.advance(30_000);
      await f.owners.tokens.authenticate(token);
      expect((await f.owners.tokens.get(apiToken.id))!.lastUsedAt).toBe(new Date(T0 + 60_000).toISOString());
    });

    it('unknown, malformed and oversized secrets authenticate as nobody', async () => {
      await f.owners.tokens.create({ name: 'ops', role: 'viewer' }, 'admin');
      for (const secret of ['', 'xct_nope', 'not-a-token', `xct_${'a'.repeat(300)}`]) expect(await f.owners.tokens.authenticate(secret)).toBeUndefined();
    });

    it('a second live token of one name is a ConflictError; nothing stored changes', async () => {
      await f.owners.tokens.create({ name: 'ops', role: 'viewer' }, 'admin');
      const before = await f.rows('api_tokens');
      await expect(f.owners.tokens.create({ name: 'ops', role: 'admin' }, 'admin')).rejects.toBeInstanceOf(ConflictError);
      expect(await f.rows('api_tokens')).toEqual(before);
    });

    it('racing creates of one name: exactly one wins, the others are ConflictErrors', async () => {
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => f.owners.tokens.create({ name: 'race', role: 'viewer' }, 'admin')));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
      expect(await f.rows('api_tokens')).toHaveLength(1);
    });

    const BAD: [string, { name: unknown; role: unknown }, RegExp][] = [
      ['a name with a space', { name: 'o ps', role: 'viewer' }, /^name:/],
      ['a name of 65 characters', { name: 'a'.repeat(65), role: 'viewer' }, /^name:/],
      ['a name that is a number', { name: 7, role: 'viewer' }, /^name:/],
      ['the reserved name admin', { name: 'admin', role: 'admin' }, /^name: "admin"/],
      ['an unknown role', { name: 'ops', role: 'root' }, /^role:/],
    ];
    it.each(BAD)('refuses %s with a ValidationError; nothing stored', async (_what, input, message) => {
      const err = await f.owners.tokens.create(input, 'admin').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
      expect(await f.rows('api_tokens')).toEqual([]);
    });

    it('revoke by name or id: the secret stops working, onRevoked runs, the name is free again', async () => {
      const a = await f.owners.tokens.create({ name: 'a', role: 'viewer' }, 'admin');
      const b = await f.owners.tokens.create({ name: 'b', role: 'viewer' }, 'admin');
      const ended: number[] = [];
      f.clock.advance(1000);
      const revoked = await f.owners.tokens.revoke('a', 'root', async (id) => void ended.push(id));
      expect(revoked).toMatchObject({ id: a.apiToken.id, revokedAt: new Date(T0 + 1000).toISOString(), revokedBy: 'root' });
      await f.owners.tokens.revoke(String(b.apiToken.id), 'root');
      expect(ended).toEqual([a.apiToken.id]);
      expect(await f.owners.tokens.authenticate(a.token)).toBeUndefined();
      expect(await f.owners.tokens.authenticate(b.token)).toBeUndefined();
      expect(await f.owners.tokens.list()).toEqual([]);
      expect((await f.owners.tokens.list(true)).map((t) => t.name)).toEqual(['a', 'b']);
      await f.owners.tokens.create({ name: 'a', role: 'admin' }, 'admin');
    });

    it('revoking an unknown or already revoked token is a NotFoundError; nothing stored changes', async () => {
      await f.owners.tokens.create({ name: 'a', role: 'viewer' }, 'admin');
      await f.owners.tokens.revoke('a', 'root');
      const before = await f.rows('api_tokens');
      await expect(f.owners.tokens.revoke('a', 'root')).rejects.toBeInstanceOf(NotFoundError);
      await expect(f.owners.tokens.revoke('nobody', 'root')).rejects.toBeInstanceOf(NotFoundError);
      await expect(f.owners.tokens.revoke('9999999999999999', 'root')).rejects.toBeInstanceOf(NotFoundError);
      expect(await f.rows('api_tokens')).toEqual(before);
    });
  });

  describe('console sessions', () => {
    const admin: Principal = { name: 'admin', role: 'admin', tokenId: null, via: 'session' };

    it('a session resolves to its principal with its CSRF token until it expires', async () => {
      const s = await f.owners.sessions.create(admin, 'the-admin-token');
      expect(s.expiresAt).toBe(T0 + TTL_S * 1000);
      expect(await f.owners.sessions.resolve(s.sessionId)).toEqual({ ...admin, csrf: s.csrf, sessionId: s.sessionId, credentialHash: hashSecret('the-admin-token') });
      expect(JSON.stringify(await f.rows('console_sessions'))).not.toContain(s.sessionId);
      f.clock.advance(TTL_S * 1000 - 1);
      expect(await f.owners.sessions.resolve(s.sessionId)).toBeDefined();
      f.clock.advance(1);
      expect(await f.owners.sessions.resolve(s.sessionId)).toBeUndefined();
      // The next sign-in sweeps the expired row.
      await f.owners.sessions.create(admin, 'the-admin-token');
      expect(await f.rows('console_sessions')).toHaveLength(1);
    });

    it('sign-out ends the session', async () => {
      const s = await f.owners.sessions.create(admin, 't');
      await f.owners.sessions.delete(s.sessionId);
      expect(await f.owners.sessions.resolve(s.sessionId)).toBeUndefined();
    });

    it('revoking a token ends its sessions, and a session of a revoked token never resolves even if left behind', async () => {
      const { token, apiToken } = await f.owners.tokens.create({ name: 'ops', role: 'operator' }, 'admin');
      const principal = (await f.owners.tokens.authenticate(token, 'session'))!;
      const ended = await f.owners.sessions.create(principal, token);
      const leftBehind = await f.owners.sessions.create(principal, token);
      const other = await f.owners.sessions.create(admin, 't');
      await f.owners.sessions.deleteForToken(apiToken.id);
      expect(await f.owners.sessions.resolve(ended.sessionId)).toBeUndefined();
      expect(await f.owners.sessions.resolve(other.sessionId)).toBeDefined();
      // A session the deletion missed (created after it, or the deletion failed): the revoke still holds.
      const late = await f.owners.sessions.create(principal, token);
      await f.owners.tokens.revoke('ops', 'admin');
      expect(await f.owners.sessions.resolve(late.sessionId)).toBeUndefined();
      expect(await f.owners.sessions.resolve(leftBehind.sessionId)).toBeUndefined();
    });

    it('empty, oversized and unknown session ids resolve to nobody', async () => {
      await f.owners.sessions.create(admin, 't');
      for (const id of ['', 'x'.repeat(101), 'unknown-session']) expect(await f.owners.sessions.resolve(id)).toBeUndefined();
    });
  });

  describe('audit log', () => {
    const who = { name: 'ops', role: 'operator' as const, via: 'bearer' as const };
    const entry = (action: string, target: string | null, status = 200) => ({ principal: who, action, target, method: 'POST', path: `/api/v1/${action}`, status, remote: '127.0.0.1', detail: { n: 1 } });

    it('record returns the stored entry', async () => {
      const e = await f.owners.audit.record(entry('ticket.ack', 'ticket:12'));
      expect(e).toEqual({ id: e.id, ts: new Date(T0).toISOString(), actor: 'ops', role: 'operator', via: 'bearer', action: 'ticket.ack', target: 'ticket:12', method: 'POST', path: '/api/v1/ticket.ack', status: 200, remote: '127.0.0.1', detail: { n: 1 } });
      expect(typeof e.id).toBe('number');
    });

    it('lists newest first, filtered exactly, paged by cursor to exactly the whole list', async () => {
      for (let i = 0; i < 7; i++) {
        f.clock.advance(1000);
        await f.owners.audit.record(entry(i % 2 ? 'ticket.ack' : 'rollout.abort', `ticket:${i % 3}`));
      }
      const all = (await f.owners.audit.list({}, { limit: undefined, after: undefined })).items;
      expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((a, b) => b - a));
      expect(all).toHaveLength(7);
      expect((await f.owners.audit.list({ action: 'ticket.ack' }, { limit: undefined, after: undefined })).items).toHaveLength(3);
      expect((await f.owners.audit.list({ action: 'ticket.ack', target: 'ticket:1' }, { limit: undefined, after: undefined })).items).toHaveLength(1);
      expect((await f.owners.audit.list({ actor: 'someone-else' }, { limit: undefined, after: undefined })).items).toEqual([]);
      const walked: number[] = [];
      let after: unknown;
      for (;;) {
        const page = await f.owners.audit.list({}, { limit: 3, after });
        walked.push(...page.items.map((e) => e.id));
        if (!page.nextCursor) break;
        after = JSON.parse(Buffer.from(page.nextCursor, 'base64url').toString('utf8'));
      }
      expect(walked).toEqual(all.map((e) => e.id));
    });

    it('a detail over 4000 characters is stored as a truncated summary', async () => {
      const e = await f.owners.audit.record({ ...entry('device.import', null), detail: { csv: 'x'.repeat(5000) } });
      expect(e.detail).toMatchObject({ truncated: true });
      expect(String(e.detail.summary).length).toBe(4000);
    });

    it('a cursor that is not an id is a ValidationError', async () => {
      await expect(f.owners.audit.list({}, { limit: 1, after: 'x' })).rejects.toBeInstanceOf(ValidationError);
      await expect(f.owners.audit.list({}, { limit: 1, after: 1.5 })).rejects.toBeInstanceOf(ValidationError);
    });
  });
});
