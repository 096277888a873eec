import { describe, it, expect } from 'vitest';
import { eligibility, isApprovedInstaller } from '../../src/subscriptions/eligibility.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const OTHER = `sha256:${'b'.repeat(64)}`;
const now = new Date('2026-11-26T12:00:00Z').getTime();
const settings = {
  approvedInstallers: ['Acme Installs'],
  expectedIntegrity: (v: string) => (v === '2.3.1' ? DIGEST : undefined),
};
const good = { tier: 'xcare' as const, subscriptionEnd: '2027-06-30', installer: 'minnovation' };
const live = { softwareVersion: '2.3.1', integrity: DIGEST };

describe('eligibility (RULES.md "Eligibility"): every failing rule is a recorded reason', () => {
  it.each([
    { name: 'eligible: paid, Minnovation-installed, integrity matches', device: good, live, reasons: [] },
    { name: 'eligible: xcare_pro by an approved contractor', device: { ...good, tier: 'xcare_pro' as const, installer: 'acme installs' }, live, reasons: [] },
    { name: 'rule 1: tier none', device: { ...good, tier: 'none' as const, subscriptionEnd: null }, live, reasons: ['no subscription (tier none)'] },
    { name: 'rule 1: subscription expired', device: { ...good, subscriptionEnd: '2026-06-30' }, live, reasons: ['subscription expired on 2026-06-30'] },
    { name: 'rule 2: installer not approved', device: { ...good, installer: 'Cheap Wiring Ltd' }, live, reasons: ['installer "Cheap Wiring Ltd" is not on the approved list'] },
    { name: 'rule 3: integrity mismatch', device: good, live: { ...live, integrity: OTHER }, reasons: ['integrity digest does not match the one registered for version 2.3.1'] },
    { name: 'rule 3: no digest registered for the version', device: good, live: { ...live, softwareVersion: '9.9.9' }, reasons: ['no integrity digest registered for version 9.9.9'] },
    { name: 'rule 3: heartbeat carries no integrity', device: good, live: { ...live, integrity: null }, reasons: ['heartbeat reports no integrity digest for version 2.3.1'] },
    { name: 'rule 3: never reported its software', device: good, live: undefined, reasons: ['software version not reported yet'] },
    {
      name: 'all three fail: every reason, in rule order',
      device: { tier: 'none' as const, subscriptionEnd: null, installer: 'nobody' },
      live: { ...live, integrity: OTHER },
      reasons: ['no subscription (tier none)', 'installer "nobody" is not on the approved list', 'integrity digest does not match the one registered for version 2.3.1'],
    },
  ])('$name', ({ device, live: l, reasons }) => {
    const result = eligibility(device, l, now, settings);
    expect(result.reasons).toEqual(reasons);
    expect(result.eligible).toBe(reasons.length === 0);
  });

  it('an expired subscription is tier none for support', () => {
    expect(eligibility({ ...good, subscriptionEnd: '2026-06-30' }, live, now, settings).tier).toBe('none');
  });

  it('digest comparison ignores hex case', () => {
    expect(eligibility(good, { ...live, integrity: DIGEST.toUpperCase().replace('SHA256', 'sha256') }, now, settings).eligible).toBe(true);
  });
});

describe('approved installers', () => {
  it.each([
    ['minnovation', [], true],
    ['Minnovation', [], true],
    ['  MINNOVATION ', [], true],
    ['Acme', ['acme'], true],
    ['acme', ['ACME'], true],
    ['acme-2', ['acme'], false],
    ['', ['acme'], false],
  ])('%j with list %j -> %s', (installer, list, expected) => {
    expect(isApprovedInstaller(installer, list)).toBe(expected);
  });
});
