import { describe, it, expect } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { configSchema } from '../../src/config/schema.js';
import { livenessStep, type LivenessStepInput } from '../../src/health/liveness-step.js';
import { detectGap, startupGraceUntil, type HerdProgress } from '../../src/health/own-outage.js';
import { decideRaise, type RaiseState, type TicketFacts } from '../../src/tickets/decide-raise.js';
import { nextEligibility } from '../../src/tickets/ticket-eligibility.js';
import { SEVERITY_RANK, severityOf } from '../../src/tickets/severity.js';
import { AUTOMATIC_TICKETS, type ConditionReport } from '../../src/tickets/types.js';

/** Issue 8: the pure decisions behind detection, one row a case, literal times. */
const settings = configSchema.parse({}).health;
const T = Date.parse('2026-11-26T17:00:00.000Z');
const S = 1000;

describe('livenessStep (PROTOCOL.md "Heartbeat", RULES.md "Our own outages are not the fleet\'s")', () => {
  const base: LivenessStepInput = {
    liveness: { lastSeen: T, intervalS: 30, willAt: null, watchFrom: T - 60 * S },
    state: 'online',
    installGraceUntil: null,
    heardSinceStart: true,
    startupGraceUntil: null,
  };
  const rows: [string, Partial<LivenessStepInput> & { liveness?: LivenessStepInput['liveness'] }, number, ReturnType<typeof livenessStep>][] = [
    ['never heard from: nothing', { liveness: { lastSeen: null, intervalS: null, willAt: null, watchFrom: T } }, T + 1000 * S, { action: 'none' }],
    ['1 ms before 3 x 30 s: wait for the deadline', {}, T + 90 * S - 1, { action: 'wait', at: T + 90 * S }],
    ['exactly at 3 x 30 s: lost by silence', {}, T + 90 * S, { action: 'lost', reason: 'silence' }],
    ['already lost: nothing new', { state: 'lost' }, T + 200 * S, { action: 'stay' }],
    ['Last Will + 30 s grace: lost by will', { liveness: { lastSeen: T, intervalS: 30, willAt: T + S, watchFrom: T } }, T + 31 * S, { action: 'lost', reason: 'will' }],
    ['within its Last Will grace: wait', { liveness: { lastSeen: T, intervalS: 30, willAt: T + S, watchFrom: T } }, T + 30 * S, { action: 'wait', at: T + 31 * S }],
    ['install grace running (the one record): restarting until it ends', { installGraceUntil: T + 300 * S }, T + 90 * S, { action: 'restarting', at: T + 300 * S }],
    ['install grace 1 ms from its end: still restarting', { installGraceUntil: T + 90 * S + 1 }, T + 90 * S, { action: 'restarting', at: T + 90 * S + 1 }],
    ['install grace ending exactly now: judged as any other device', { installGraceUntil: T + 90 * S }, T + 90 * S, { action: 'lost', reason: 'silence' }],
    ['install grace over: a Last Will is judged as any other device\'s', { installGraceUntil: T, liveness: { lastSeen: T, intervalS: 30, willAt: T + S, watchFrom: T } }, T + 31 * S, { action: 'lost', reason: 'will' }],
    ['install grace running: not due yet still waits for the deadline', { installGraceUntil: T + 300 * S }, T + 60 * S, { action: 'wait', at: T + 90 * S }],
    ['silent since our start, start-up grace running: hold', { heardSinceStart: false, startupGraceUntil: T + 120 * S }, T + 90 * S, { action: 'hold', at: T + 120 * S }],
    ['silent since our start, start-up grace over: lost', { heardSinceStart: false, startupGraceUntil: null }, T + 90 * S, { action: 'lost', reason: 'silence' }],
    ['heard since our start: the start-up grace does not apply', { heardSinceStart: true, startupGraceUntil: T + 120 * S }, T + 90 * S, { action: 'lost', reason: 'silence' }],
    [
      'a Last Will is the device\'s own word: not held by the start-up grace',
      { heardSinceStart: false, startupGraceUntil: T + 120 * S, liveness: { lastSeen: T, intervalS: 30, willAt: T + S, watchFrom: T } },
      T + 31 * S,
      { action: 'lost', reason: 'will' },
    ],
  ];
  it.each(rows)('%s', (_name, change, now, expected) => {
    expect(livenessStep({ ...base, ...change }, now, settings)).toEqual(expected);
  });
});

describe('detectGap: a stall or a wall-clock step', () => {
  const rows: [string, Parameters<typeof detectGap>[0], ReturnType<typeof detectGap>][] = [
    ['on time', { plannedAt: 1000, monotonicNow: 1010, previousOffset: 0, offset: 0 }, { stalledMs: 0, wallStepMs: 0 }],
    ['late by the margin exactly: no stall', { plannedAt: 1000, monotonicNow: 3000, previousOffset: 0, offset: 0 }, { stalledMs: 0, wallStepMs: 0 }],
    ['SIGSTOP 8 s: stalled', { plannedAt: 1000, monotonicNow: 9000, previousOffset: 0, offset: 0 }, { stalledMs: 8000, wallStepMs: 0 }],
    ['NTP steps the wall clock forward an hour', { plannedAt: 1000, monotonicNow: 1000, previousOffset: 5, offset: 3_600_005 }, { stalledMs: 0, wallStepMs: 3_600_000 }],
    ['backward step', { plannedAt: 1000, monotonicNow: 1000, previousOffset: 0, offset: -10_000 }, { stalledMs: 0, wallStepMs: -10_000 }],
    ['slew of a few ms: nothing', { plannedAt: 1000, monotonicNow: 1000, previousOffset: 0, offset: 3 }, { stalledMs: 0, wallStepMs: 0 }],
  ];
  it.each(rows)('%s', (_name, timing, expected) => {
    expect(detectGap(timing, { stallMarginMs: 2000 })).toEqual(expected);
  });
});

describe('startupGraceUntil: the herd after our own start', () => {
  const start = T;
  const s = { startup: { reconnectS: 60, herdQuietS: 10, maxS: 300 } };
  const rows: [string, HerdProgress, number, number | null][] = [
    ['nothing was online before: no grace', { startedAt: start, expected: 0, returned: 0, lastReturnAt: null }, start, null],
    ['herd waiting: at least the longest reconnect backoff', { startedAt: start, expected: 200, returned: 0, lastReturnAt: null }, start + 5 * S, start + 60 * S],
    ['herd still coming back at 58 s: 10 s after the latest', { startedAt: start, expected: 200, returned: 150, lastReturnAt: start + 58 * S }, start + 59 * S, start + 68 * S],
    ['herd quiet after the backoff window: over', { startedAt: start, expected: 200, returned: 150, lastReturnAt: start + 20 * S }, start + 61 * S, null],
    ['herd never settles: capped at maxS', { startedAt: start, expected: 200, returned: 199, lastReturnAt: start + 299 * S }, start + 299 * S, start + 300 * S],
    ['every device back: over at once', { startedAt: start, expected: 200, returned: 200, lastReturnAt: start + 3 * S }, start + 4 * S, null],
  ];
  it.each(rows)('%s', (_name, herd, now, expected) => {
    expect(startupGraceUntil(herd, now, s)).toBe(expected);
  });
});

describe('decideRaise (RULES.md "Automatic tickets")', () => {
  const report: ConditionReport = { kind: 'gateway_loss', subject: 'gw-1', severity: 'medium', classification: 'problem', summary: 'gateway gw-1 lost (no heartbeat)' };
  const ticket = (over: Partial<TicketFacts> = {}): TicketFacts => ({
    id: 7,
    kind: 'gateway_loss',
    family: 'gateway',
    subject: 'gw-1',
    origin: 'auto',
    severity: 'medium',
    summary: report.summary,
    details: {},
    covers: [],
    conditions: ['gateway_loss|gw-1'],
    clearedAt: null,
    ...over,
  });
  const none: RaiseState = { existing: null, coveringGateway: null, lastResolved: null, openedToday: 0, newestAutomatic: null };
  const tickets = { reopenWindowS: 3600, maxTicketsPerDay: 6 };
  const rows: [string, RaiseState, ConditionReport, ReturnType<typeof decideRaise>][] = [
    ['nothing open: open', none, report, { action: 'open' }],
    ['same condition, unchanged: nothing', { ...none, existing: ticket() }, report, { action: 'none' }],
    ['partial -> loss on the partial ticket: update (upgrade)', { ...none, existing: ticket({ kind: 'gateway_partial', severity: 'low', conditions: ['gateway_partial|gw-1'] }) }, report, { action: 'update', ticketId: 7, folded: false }],
    ['recurs 59 min after an automatic resolve: reopen', { ...none, lastResolved: { ...ticket({ conditions: [] }), resolvedAt: T - 3599 * S, resolvedBy: 'auto' } }, report, { action: 'reopen', ticketId: 7, cause: 'recurrence' }],
    ['recurs after the reopen window: open a new one', { ...none, lastResolved: { ...ticket({ conditions: [] }), resolvedAt: T - 3601 * S, resolvedBy: 'auto' } }, report, { action: 'open' }],
    [
      'a person resolved it while the condition held, long ago: reopen, saying so',
      { ...none, lastResolved: { ...ticket(), resolvedAt: T - 7200 * S, resolvedBy: 'person' } },
      report,
      { action: 'reopen', ticketId: 7, cause: 'resolved_while_holding' },
    ],
    ['fair-use cap reached: fold into the newest automatic ticket', { ...none, openedToday: 6, newestAutomatic: 9 }, report, { action: 'fold', ticketId: 9 }],
    ['below the cap: open', { ...none, openedToday: 5, newestAutomatic: 9 }, report, { action: 'open' }],
    ['a person\'s ticket is never the one found: open our own', { ...none, existing: ticket({ origin: 'person', conditions: [] }) }, report, { action: 'open' }],
    ['a person\'s resolved ticket is never reopened by a machine', { ...none, lastResolved: { ...ticket({ origin: 'person', conditions: [] }), resolvedAt: T - 10 * S, resolvedBy: 'person' } }, report, { action: 'open' }],
    [
      'a sensor behind a gateway ticket: listed there',
      { ...none, coveringGateway: 3 },
      { kind: 'sensor_issue', subject: 's-1', severity: 'low', classification: 'problem', summary: 'sensor s-1 lost' },
      { action: 'inhibit', gatewayTicketId: 3 },
    ],
  ];
  it.each(rows)('%s', (_name, state, r, expected) => {
    expect(decideRaise(state, r, T, tickets)).toEqual(expected);
  });
});

describe('nextEligibility: band and tier only rise on an open ticket (RULES.md "Support queue order")', () => {
  const paidPro = { eligible: true, ineligibleReasons: [], tier: 'xcare_pro' as const, band: 'paid' as const };
  const expired = { eligible: false, reasons: ['subscription expired on 2027-06-30'], tier: 'none' as const };
  it.each([
    ['opening: judged afresh', null, expired, { eligible: false, ineligibleReasons: expired.reasons, tier: 'none', band: 'discretionary' }],
    ['update after expiry: paid and xcare_pro kept, expiry recorded in the reasons', paidPro, expired, { eligible: true, ineligibleReasons: expired.reasons, tier: 'xcare_pro', band: 'paid' }],
    [
      'update after a renewal to pro: rises',
      { eligible: false, ineligibleReasons: ['x'], tier: 'none' as const, band: 'discretionary' as const },
      { eligible: true, reasons: [], tier: 'xcare_pro' as const },
      { eligible: true, ineligibleReasons: [], tier: 'xcare_pro', band: 'paid' },
    ],
  ] as const)('%s', (_name, stored, fresh, expected) => {
    expect(nextEligibility(stored as never, { ...fresh, reasons: [...fresh.reasons] })).toEqual(expected);
  });
});

describe('severity: one order, kind -> severity from the RULES.md table', () => {
  it('orders low < medium < high < urgent and maps every automatic kind as RULES.md', () => {
    expect(SEVERITY_RANK.low < SEVERITY_RANK.medium && SEVERITY_RANK.medium < SEVERITY_RANK.high && SEVERITY_RANK.high < SEVERITY_RANK.urgent).toBe(true);
    for (const [kind, rule] of Object.entries(AUTOMATIC_TICKETS)) expect(severityOf(kind as keyof typeof AUTOMATIC_TICKETS)).toBe(rule.severity);
  });
});

describe('ManualClock: the wall clock steps alone', () => {
  it('stepWall moves now() but neither monotonicNow() nor timers', () => {
    const clock = new ManualClock(T);
    let fired = 0;
    clock.setTimeout(() => fired++, 1000);
    clock.stepWall(3_600_000);
    expect(clock.now()).toBe(T + 3_600_000);
    expect(clock.monotonicNow()).toBe(T);
    expect(fired).toBe(0);
    clock.advance(1000);
    expect(fired).toBe(1);
    expect(clock.now() - clock.monotonicNow()).toBe(3_600_000);
  });
});
