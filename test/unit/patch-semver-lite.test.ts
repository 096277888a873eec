import { describe, it, expect } from 'vitest';
import semver from 'semver';
import { compare, parse, satisfies, validRange } from '../../patches/semver-lite.js';

const VERSIONS = [
  '0.0.0', '0.0.1', '0.0.2', '0.1.0', '0.1.5', '0.2.0', '0.2.3', '0.3.0', '1.0.0-0', '1.0.0-alpha', '1.0.0-alpha.1',
  '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.1.0',
  '1.2.0', '1.2.3-beta.2', '1.2.3', '1.2.4-beta', '1.2.4', '1.3.0-0', '1.3.0-beta', '1.3.0', '1.9.9', '2.0.0-0',
  '2.0.0-alpha', '2.0.0', '2.3.1', '2.3.2-rc.1', '2.3.2', '2.3.2+build.5', '3.0.0', '10.0.0', '1.0.0-1', '1.0.0-10',
  '1.0.0-2', 'v1.2.3',
];

const RANGES = [
  '*', '', 'x', '1', '1.x', '1.2', '1.2.x', '1.2.3', '=1.2.3', 'v1.2.3', '>1.2.3', '>=1.2.3', '<1.2.3', '<=1.2.3',
  '>1.2', '>1', '>=1.2', '<1.2', '<=1.2', '<=1', '>*', '<*', '>=*', '~1.2.3', '~1.2', '~1', '~0.2.3', '~>1.2.3',
  '~1.2.3-beta.2', '^1.2.3', '^0.2.3', '^0.0.3', '^1.2.x', '^0.0.x', '^0.0', '^1.x', '^0.x', '^1.2.3-beta.2',
  '^0.0.3-beta', '1.2.3 - 2.3.4', '1.2 - 2.3.4', '1.2.3 - 2.3', '1.2.3 - 2', '1 - 2', '* - 2', '1.2.3 - *',
  '>=2.0.0 <2.3.2', '>=1.0.0 <2.0.0 || >=3.0.0', '1.x || >=2.3.1 <3', '>= 1.2.3 < 2', '^1.0.0 ^1.2.0',
  '>=1.0.0-alpha <1.0.0', '>1.0.0-alpha.1', '<2.0.0-alpha', '=2.3.2-rc.1', '~2.3.2-rc.0', '>=0.0.0', '1.0.0-beta - 1.0.0',
  '0.x || 1.2.x', '<0.0.1', '^2.3.2-rc.1 || 1.0.0',
];

describe('semver-lite', () => {
  it('parses what semver parses and rejects what it rejects', () => {
    for (const v of [...VERSIONS, '1', '1.2', '01.2.3', '1.2.3-01', '1.2.3-', 'a.b.c', '1.2.3.4', ' 1.2.3 ', '1.2.3+b.', '99999999999999999999.0.0']) {
      expect(parse(v) !== undefined, v).toBe(semver.valid(v) !== null);
    }
  });

  it('orders versions exactly like semver.compare (prereleases included)', () => {
    for (const a of VERSIONS) {
      for (const b of VERSIONS) expect(compare(a, b), `${a} vs ${b}`).toBe(semver.compare(a, b));
    }
  });

  it('agrees with semver.satisfies on every version x range pair', () => {
    let checked = 0;
    for (const r of RANGES) {
      expect(validRange(r), r).toBe(semver.validRange(r) !== null);
      for (const v of VERSIONS) {
        expect(satisfies(v, r), `${v} in '${r}'`).toBe(semver.satisfies(v, r));
        checked++;
      }
    }
    expect(checked).toBe(RANGES.length * VERSIONS.length);
  });

  it('treats an invalid range or version as not satisfied', () => {
    for (const r of ['>=a.b', '1.2.3 -- 2', '~~1', '>=1.2.3 <', 'foo']) {
      expect(validRange(r), r).toBe(false);
      expect(satisfies('1.2.3', r)).toBe(false);
    }
    expect(satisfies('not-a-version', '*')).toBe(false);
  });
});
