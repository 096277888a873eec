import { describe, it, expect } from 'vitest';
import { parseCalendarDate, parseRfc3339 } from '../../src/protocol/rfc3339.js';
import { parseDate } from '../../src/subscriptions/fiscal-year.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';

/** Issue 11 fault 7: one strict parser; days that do not exist are refused, never rolled over. */
describe('parseRfc3339', () => {
  it.each([
    ['2026-11-26T17:00:00Z', Date.UTC(2026, 10, 26, 17)],
    ['2026-11-26T17:00:00.123Z', Date.UTC(2026, 10, 26, 17, 0, 0, 123)],
    ['2026-11-26T17:00:00.123456789Z', Date.UTC(2026, 10, 26, 17, 0, 0, 123)],
    ['2026-11-26T18:30:00+01:30', Date.UTC(2026, 10, 26, 17)],
    ['2026-11-26T12:00:00-05:00', Date.UTC(2026, 10, 26, 17)],
    ['2028-02-29T00:00:00Z', Date.UTC(2028, 1, 29)],
    ['2000-02-29T23:59:59Z', Date.UTC(2000, 1, 29, 23, 59, 59)],
    ['0001-01-01T00:00:00Z', -62135596800000],
  ])('%s is %d', (text, ms) => {
    expect(parseRfc3339(text)).toBe(ms);
  });

  it.each([
    '2027-02-30T10:00:00Z', // the date: Date.parse makes it March 2
    '2027-02-29T10:00:00Z',
    '1900-02-29T10:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-01-00T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T23:60:00Z',
    '2026-01-01T23:59:60Z',
    '2026-01-01T00:00:00+24:00',
    '2026-01-01T00:00:00+01:60',
    '2026-01-01t00:00:00Z',
    '2026-01-01 00:00:00Z',
    '2026-01-01T00:00Z',
    '2026-01-01T00:00:00',
    '2026-01-01T00:00:00.Z',
    '2026-1-01T00:00:00Z',
    '+02026-01-01T00:00:00Z',
    'Thu, 01 Jan 2026 00:00:00 GMT',
    '',
  ])('refuses %j', (text) => {
    expect(parseRfc3339(text)).toBeUndefined();
  });

  it('refuses non-strings', () => {
    for (const v of [null, undefined, 0, {}, []]) expect(parseRfc3339(v)).toBeUndefined();
  });
});

describe('calendar dates', () => {
  it.each([['2028-02-29', Date.UTC(2028, 1, 29)], ['2026-12-31', Date.UTC(2026, 11, 31)]])('%s parses', (text, ms) => {
    expect(parseCalendarDate(text)).toBe(ms);
  });
  it.each(['2027-02-29', '2027-02-30', '2026-06-31', '2026-6-30', '2026-06-30T00:00:00Z'])('%s is refused everywhere it is read', (text) => {
    expect(parseCalendarDate(text)).toBeUndefined();
    expect(() => parseDate(text, 'start')).toThrow(/start:/);
    expect(() => parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'c', installer: 'i', tier: 'xcare', since: text })).toThrow(/since:/);
  });
});

describe('xcarectl date flags', () => {
  it.each([
    [['device', 'add', 'gw-9', '--type', 'gateway', '--customer', 'c', '--installer', 'i', '--tier', 'xcare', '--since', '2027-02-30'], /--since: '2027-02-30' is not a calendar date/],
    [['subscription', 'quote', '--tier', 'xcare', '--start', '2027-02-29'], /--start: '2027-02-29' is not a calendar date/],
  ])('%j exits 2 before asking the daemon', async (words, message) => {
    const { createServer } = await import('node:http');
    const { createCliContext } = await import('../../src/cli/cli-context.js');
    const device = await import('../../src/cli/commands/device.js');
    const subscription = await import('../../src/cli/commands/subscription.js');
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const all = [...device.commands, ...subscription.commands];
      const command = all.find((c) => c.name.every((w, i) => words[i] === w))!;
      const ctx = createCliContext({ url, token: 't'.repeat(20), json: false, env: {}, cwd: '/', out: () => {} });
      await expect(command.run(words.slice(command.name.length), ctx)).rejects.toMatchObject({ message: expect.stringMatching(message), exitCode: 2 });
      expect(requests).toBe(0);
    } finally {
      server.close();
    }
  });
});
