import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/protocol/backoff.js';

describe('backoffDelay: exponential backoff with full jitter', () => {
  // attempt, minMs, maxMs, random -> expected delay
  const table: Array<[number, number, number, number, number]> = [
    [0, 1000, 60000, 0, 0],
    [0, 1000, 60000, 0.5, 500],
    [0, 1000, 60000, 0.999999, 999],
    [1, 1000, 60000, 0.5, 1000],
    [2, 1000, 60000, 0.5, 2000],
    [3, 1000, 60000, 1, 8000],
    [5, 1000, 60000, 1, 32000],
    [6, 1000, 60000, 1, 60000], // 64 s capped at maxMs
    [6, 1000, 60000, 0.25, 15000],
    [50, 1000, 60000, 1, 60000],
    [5000, 1000, 60000, 1, 60000], // 2^5000 would be Infinity; still capped
    [3, 100, 500, 0.5, 250],
    [-1, 1000, 60000, 1, 1000], // a negative attempt counts as the first
    [0, 1000, 60000, 1.5, 1000], // a broken random source is clamped
    [0, 1000, 60000, -1, 0],
  ];
  it.each(table)('attempt %i, min %i, max %i, random %d -> %i ms', (attempt, minMs, maxMs, r, expected) => {
    expect(backoffDelay(attempt, { baseMs: minMs, maxMs, jitter: 'full' }, () => r)).toBe(expected);
  });

  it('stays within [0, min(maxMs, minMs * 2^attempt)] with Math.random', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(60000, 1000 * 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(attempt, { baseMs: 1000, maxMs: 60000, jitter: 'full' });
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(ceiling);
      }
    }
  });
});
