import { describe, it, expect } from 'vitest';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PG_URL } from '../helpers/store-engines.js';
import { ConflictError, ERROR_CATALOGUE, ValidationError, XcareError, fromStorageError, isUniqueViolation, wireCode } from '../../src/errors.js';

/** Issue 11 fault 2: storage constraint errors map to the catalogue, never to a 500. Real engines raise them. */
function sqliteError(sql: string): unknown {
  const db = new Database(':memory:');
  db.pragma('foreign_keys = ON');
  db.exec("CREATE TABLE devices (id TEXT PRIMARY KEY, token TEXT UNIQUE, n INTEGER CHECK (n > 0), parent TEXT REFERENCES devices(id), name TEXT NOT NULL DEFAULT 'x')");
  db.exec("INSERT INTO devices (id, token, n) VALUES ('gw-1', 't1', 1)");
  try {
    db.exec(sql);
  } catch (err) {
    return err;
  } finally {
    db.close();
  }
  throw new Error(`no error from ${sql}`);
}

describe('fromStorageError with SQLite', () => {
  it('a duplicate primary key is a 409 naming the constraint', () => {
    const err = fromStorageError(sqliteError("INSERT INTO devices (id, token, n) VALUES ('gw-1', 't2', 1)"));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ status: 409, code: 'CONFLICT', details: { constraint: 'devices.id' } });
  });
  it('a duplicate unique column is a 409', () => {
    const raw = sqliteError("INSERT INTO devices (id, token, n) VALUES ('gw-2', 't1', 1)");
    expect(isUniqueViolation(raw)).toBe(true);
    expect(fromStorageError(raw)).toMatchObject({ status: 409, details: { constraint: 'devices.token' } });
  });
  it('a dangling reference is a 409', () => {
    expect(fromStorageError(sqliteError("INSERT INTO devices (id, token, n, parent) VALUES ('gw-3', 't3', 1, 'ghost')"))).toMatchObject({ status: 409 });
  });
  it('a CHECK or NOT NULL failure is a 400', () => {
    expect(fromStorageError(sqliteError("INSERT INTO devices (id, token, n) VALUES ('gw-4', 't4', 0)"))).toBeInstanceOf(ValidationError);
    expect(fromStorageError(sqliteError("INSERT INTO devices (id, token, n, name) VALUES ('gw-5', 't5', 1, NULL)"))).toBeInstanceOf(ValidationError);
  });
  it('anything else passes through unchanged', () => {
    const other = new Error('disk I/O error');
    expect(fromStorageError(other)).toBe(other);
    const known = new XcareError('NOT_FOUND', 'x', 404);
    expect(fromStorageError(known)).toBe(known);
  });
});

// The same database every store suite uses: XCARE_TEST_DATABASE_URL, which `.ci/run` sets to a cluster of its own.
if (!PG_URL) process.stderr.write('\n*** SKIPPED fromStorageError with PostgreSQL: set XCARE_TEST_DATABASE_URL=postgres://... ***\n\n');

describe.skipIf(!PG_URL && process.env.CI !== 'true')('fromStorageError with PostgreSQL', () => {
  it('a unique violation is a 409 naming the conflicting id from the server detail', async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query('CREATE TEMP TABLE devices (id TEXT PRIMARY KEY)');
      await client.query("INSERT INTO devices VALUES ('gw-1')");
      const raw = await client.query("INSERT INTO devices VALUES ('gw-1')").then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isUniqueViolation(raw)).toBe(true);
      expect(fromStorageError(raw)).toMatchObject({ status: 409, details: { id: 'gw-1' } });
    } finally {
      await client.end();
    }
  });
});

describe('the catalogue', () => {
  it('every code has a distinct wire name and a 4xx/5xx status', () => {
    const wires = Object.values(ERROR_CATALOGUE).map((e) => e.wire);
    expect(new Set(wires).size).toBe(wires.length);
    for (const e of Object.values(ERROR_CATALOGUE)) expect(e.status >= 400 && e.status < 600).toBe(true);
    expect(wireCode('VALIDATION')).toBe('validation_failed');
    expect(wireCode('ILLEGAL_TRANSITION')).toBe('illegal_transition');
  });
});
