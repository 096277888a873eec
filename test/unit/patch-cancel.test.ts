import { describe, it, expect } from 'vitest';
import { parseCancel } from '../../patches/offer.js';
import { parsePayload, patchStatusSchema } from '../../src/protocol/schemas.js';

/** PROTOCOL.md "PatchCancel" on the agent side, and the PatchStatus fields issue 9 added. */
describe('parseCancel', () => {
  const rows: [string, string, ReturnType<typeof parseCancel>][] = [
    ['a cancel', '{"action":"cancel","rolloutId":"r-20261126-1","patchId":"gw-2.3.2"}', { patchId: 'gw-2.3.2', rolloutId: 'r-20261126-1' }],
    ['without rolloutId', '{"action":"cancel","patchId":"gw-2.3.2"}', { patchId: 'gw-2.3.2' }],
    ['an offer is not a cancel', '{"manifest":"e30=","signature":"x","url":"/patches/p/artifact"}', undefined],
    ['another action', '{"action":"reboot","patchId":"gw-2.3.2"}', undefined],
    ['a bad patch id', '{"action":"cancel","patchId":"../etc"}', undefined],
    ['a bad rollout id', '{"action":"cancel","patchId":"p","rolloutId":7}', undefined],
    ['not JSON', '{"action": cancel', undefined],
    ['too large', `{"action":"cancel","patchId":"p","x":"${'a'.repeat(5000)}"}`, undefined],
  ];
  for (const [name, text, expected] of rows) it(name, () => expect(parseCancel(text)).toEqual(expected));
});

describe('PatchStatus schema (issue 9)', () => {
  it('accepts cancelled and retryable', () => {
    expect(parsePayload(patchStatusSchema, '{"patchId":"p","state":"cancelled"}')).toMatchObject({ ok: true });
    expect(parsePayload(patchStatusSchema, '{"patchId":"p","state":"failed","retryable":true}')).toEqual({ ok: true, value: { patchId: 'p', state: 'failed', retryable: true } });
  });
  it('refuses a non-boolean retryable', () => expect(parsePayload(patchStatusSchema, '{"patchId":"p","state":"failed","retryable":"yes"}')).toMatchObject({ ok: false, reason: 'schema' }));
});

describe('old agents and PatchCancel', () => {
  it('an agent that predates the message drops it as an invalid offer (it never runs or reports anything)', async () => {
    const { parseOffer } = await import('../../patches/offer.js');
    expect(() => parseOffer('{"action":"cancel","patchId":"gw-2.3.2"}')).toThrow(/action: unknown field/);
  });
});
