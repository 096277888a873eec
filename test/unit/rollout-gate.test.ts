import { describe, it, expect } from 'vitest';
import { abortSeverity } from '../../src/rollouts/gate.js';

describe('abortSeverity (blast radius)', () => {
  const rows: [number, number, string][] = [
    [1, 5, 'low'], [2, 1000, 'low'], [3, 1000, 'medium'], [5, 50, 'high'], [20, 10000, 'high'], [10, 40, 'urgent'], [100, 100000, 'urgent'], [0, 0, 'low'],
  ];
  for (const [failed, targeted, severity] of rows) {
    it(`${failed} failed of ${targeted} -> ${severity}`, () => expect(abortSeverity(failed, targeted)).toBe(severity));
  }
});
