import { describe, it, expect } from 'vitest';
import { createHmac } from 'node:crypto';
import { signBody, verifySignature } from '../../src/helpdesk/signature.js';
import { backoffDelay } from '../../src/protocol/backoff.js';

describe('X-Xcare-Signature: sha256=<hex HMAC-SHA256 of the raw body>', () => {
  const body = '{"event":{"id":1,"type":"opened"}}';
  it('matches an independent HMAC computation', () => {
    expect(signBody('s3cret', body)).toBe(`sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`);
  });
  it('verifies the untouched body', () => {
    expect(verifySignature('s3cret', body, signBody('s3cret', body))).toBe(true);
  });
  it('refuses a body changed by one byte', () => {
    expect(verifySignature('s3cret', body.replace('1', '2'), signBody('s3cret', body))).toBe(false);
  });
  it('refuses another secret', () => {
    expect(verifySignature('other', body, signBody('s3cret', body))).toBe(false);
  });
  it('refuses a missing header', () => {
    expect(verifySignature('s3cret', body, undefined)).toBe(false);
  });
  it('refuses a truncated header', () => {
    expect(verifySignature('s3cret', body, signBody('s3cret', body).slice(0, 20))).toBe(false);
  });
});

describe('backoffDelay: exponential from base, capped, with equal jitter', () => {
  const settings = { baseMs: 1000, maxMs: 60_000, jitter: 'equal' as const };
  it.each([
    [1, 1, 1000],
    [2, 1, 2000],
    [3, 1, 4000],
    [6, 1, 32_000],
    [7, 1, 60_000],
    [20, 1, 60_000],
    [1, 0, 500],
    [7, 0, 30_000],
    [3, 0.5, 3000],
  ])('after %i failed attempt(s), random %d -> %i ms', (attempts, r, ms) => {
    expect(backoffDelay(attempts - 1, settings, () => r)).toBe(ms);
  });
  it('never shrinks as attempts grow (same jitter draw)', () => {
    let previous = 0;
    for (let a = 1; a <= 40; a++) {
      const d = backoffDelay(a - 1, settings, () => 0.7);
      expect(d).toBeGreaterThanOrEqual(previous);
      previous = d;
    }
  });
});
