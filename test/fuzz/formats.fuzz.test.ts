import { describe, it, expect, afterAll } from 'vitest';
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { parseManifest, type Manifest } from '../../patches/manifest.js';
import { parseOffer } from '../../patches/offer.js';
import { PatchError } from '../../patches/patch-error.js';
import { parseRfc3339 } from '../../src/protocol/rfc3339.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { AgentConfigError, loadAgentConfig } from '../../agent/config.js';
import { tempDir } from '../helpers/temp-dir.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from './fuzz-runner.js';

/**
 * Issue 11 fuzzing, file formats: signed-patch manifests and offers (what an agent parses from the
 * wire), RFC 3339 dates, and the daemon's and the agent's config files. What must hold: a bad input is
 * refused with the format's own error naming the field (PatchError MANIFEST_INVALID, ConfigError
 * `path: message`, AgentConfigError), never a TypeError; and an accepted date is the date written
 * (no rollover: `2027-02-30` is never March 2).
 */

const VALID: Manifest = {
  id: 'gw-2.3.2',
  version: '2.3.2',
  appliesTo: { types: ['gateway'], software: '>=2.0.0 <2.3.2' },
  artifact: { name: 'gw-2.3.2.tar.gz', sha256: 'a'.repeat(64), size: 123456 },
  createdAt: '2026-11-26T10:00:00Z',
  expiresAt: '2027-02-24T10:00:00Z',
  keyId: '0123456789abcdef',
};

/** A date-time from components, some out of range: the oracle below decides independently whether it exists. */
const dateParts = fc.record({
  year: fc.integer({ min: 0, max: 9999 }),
  month: fc.integer({ min: 0, max: 13 }),
  day: fc.integer({ min: 0, max: 32 }),
  hour: fc.integer({ min: 0, max: 25 }),
  minute: fc.integer({ min: 0, max: 61 }),
  second: fc.integer({ min: 0, max: 61 }),
  offset: fc.oneof(fc.constant('Z'), fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 })).map(([s, h, m]) => `${s}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`)),
});
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const format = (p: { year: number; month: number; day: number; hour: number; minute: number; second: number; offset: string }) =>
  `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}${p.offset}`;

describe('format fuzzing', { timeout: FUZZ_TEST_TIMEOUT_MS }, () => {
  const dir = tempDir('xcare-fuzz-formats-');
  afterAll(() => dir.cleanup());

  it('RFC 3339: a date-time parses exactly when every component exists, to the instant it names', async () => {
    await fuzz(
      'formats.rfc3339',
      [dateParts],
      (p) => {
        // Oracle: days in a month from the calendar itself (day 0 of the next month), not from our parser.
        const monthOk = p.month >= 1 && p.month <= 12;
        const probe = new Date(0);
        probe.setUTCFullYear(p.year, p.month, 0);
        const days = probe.getUTCDate();
        const offsetOk = p.offset === 'Z' || (Number(p.offset.slice(1, 3)) <= 23 && Number(p.offset.slice(4, 6)) <= 59);
        const exists = monthOk && p.day >= 1 && p.day <= days && p.hour <= 23 && p.minute <= 59 && p.second <= 59 && offsetOk;
        const parsed = parseRfc3339(format(p));
        if (!exists) {
          expect(parsed).toBeUndefined();
          return;
        }
        const instant = new Date(0);
        instant.setUTCFullYear(p.year, p.month - 1, p.day);
        instant.setUTCHours(p.hour, p.minute, p.second, 0);
        const offsetMin = p.offset === 'Z' ? 0 : (p.offset[0] === '-' ? -1 : 1) * (Number(p.offset.slice(1, 3)) * 60 + Number(p.offset.slice(4, 6)));
        expect(parsed).toBe(instant.getTime() - offsetMin * 60_000);
      },
      { numRuns: 2000, timeLimitMs: 2000 },
    );
  });

  it('manifests: a mutated manifest is either accepted as written (real dates, expiry after creation) or refused with MANIFEST_INVALID', async () => {
    const keys = Object.keys(VALID) as (keyof Manifest)[];
    const mutation = fc.oneof(
      fc.record({ key: fc.constantFrom(...keys, 'integrity', 'extra'), value: fc.jsonValue({ maxDepth: 2 }) }),
      fc.record({ key: fc.constantFrom('createdAt', 'expiresAt'), value: dateParts.map((p) => format({ ...p, offset: 'Z' })) }),
      fc.record({ key: fc.constant('artifact'), value: fc.record({ name: fc.string({ maxLength: 10 }), sha256: fc.constant('b'.repeat(64)), size: fc.oneof(fc.double(), fc.integer(), fc.constant(2 ** 60)) }) }),
    );
    await fuzz(
      'formats.manifest',
      [fc.array(mutation, { minLength: 1, maxLength: 3 })],
      (mutations) => {
        const raw: Record<string, unknown> = structuredClone(VALID) as unknown as Record<string, unknown>;
        for (const m of mutations) raw[m.key] = m.value;
        let manifest: Manifest;
        try {
          manifest = parseManifest(Buffer.from(JSON.stringify(raw)));
        } catch (err) {
          expect(err).toBeInstanceOf(PatchError);
          expect((err as PatchError).code).toBe('MANIFEST_INVALID');
          return;
        }
        for (const key of ['createdAt', 'expiresAt'] as const) {
          const ms = parseRfc3339(manifest[key]);
          expect(ms).toBeDefined();
          // No rollover: the calendar day written is the calendar day meant.
          expect(new Date(ms!).toISOString().slice(0, 10)).toBe(manifest[key].slice(0, 10));
        }
        expect(parseRfc3339(manifest.expiresAt)!).toBeGreaterThan(parseRfc3339(manifest.createdAt)!);
        expect(Number.isSafeInteger(manifest.artifact.size) && manifest.artifact.size >= 0).toBe(true);
      },
      { numRuns: 500, timeLimitMs: 2000 },
    );
  });

  it('manifest and offer bytes: anything is refused with a PatchError, never another error', async () => {
    await fuzz(
      'formats.patch-bytes',
      [fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue({ maxDepth: 3 }).map((v) => new TextEncoder().encode(JSON.stringify(v))))],
      (bytes) => {
        for (const parse of [() => parseManifest(bytes), () => parseOffer(Buffer.from(bytes))]) {
          try {
            parse();
          } catch (err) {
            expect(err).toBeInstanceOf(PatchError);
          }
        }
      },
      { numRuns: 500, timeLimitMs: 2000 },
    );
  });

  // Real keys with values of any type, plus unknown keys: the daemon's config file.
  const configValue = fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.integer({ min: -10, max: 100_000 }), fc.constantFrom('', 'x', '127.0.0.1', null, true));
  const configDoc = fc.record(
    {
      dataDir: configValue,
      mqtt: fc.dictionary(fc.constantFrom('host', 'port', 'connectTimeoutMs', 'maxUnauthenticated', 'maxUnauthenticatedPerAddress', 'maxPacketBytes', 'tls', 'prot'), configValue, { maxKeys: 3 }),
      http: fc.dictionary(fc.constantFrom('host', 'port', 'maxJsonBytes', 'headersTimeoutMs', 'requestTimeoutMs', 'maxConnections', 'maxDiscardBytes', 'bogus'), configValue, { maxKeys: 3 }),
      health: fc.dictionary(fc.constantFrom('missedHeartbeats', 'lastWillGraceS', 'security', 'flapping'), configValue, { maxKeys: 2 }),
      unknownTop: configValue,
    },
    { requiredKeys: [] },
  );

  it('config files: the daemon either starts on a file or refuses it with ConfigError lines naming the key', async () => {
    const file = join(dir.path, 'config.yaml');
    await fuzz(
      'formats.daemon-config',
      [fc.oneof(configDoc.map((d) => toYaml(d)), fc.string({ maxLength: 80 }))],
      (text) => {
        writeFileSync(file, text);
        try {
          const config = loadConfig(file, {});
          expect(Object.isFrozen(config)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          for (const line of (err as Error).message.split('\n')) expect(line).toMatch(/^\S+: \S.*: .+/);
        }
      },
      { numRuns: 300, timeLimitMs: 3000 },
    );
  });

  it('agent config files: accepted, or refused with AgentConfigError, never another error', async () => {
    const file = join(dir.path, 'agent.yaml');
    const agentDoc = fc.dictionary(
      fc.constantFrom('deviceId', 'deviceType', 'token', 'brokerUrl', 'intervalS', 'softwareVersionFile', 'softwareDir', 'subsystems', 'sensors', 'reconnect', 'patches', 'logLevel', 'nope'),
      fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('gw-1', 'gateway', 'mqtt://127.0.0.1:1883', 30, 0.2, 1e-300, 86_401)),
      { maxKeys: 10 },
    );
    await fuzz(
      'formats.agent-config',
      [fc.oneof(agentDoc.map((d) => toYaml(d)), fc.string({ maxLength: 80 }))],
      (text) => {
        writeFileSync(file, text);
        try {
          loadAgentConfig(file);
        } catch (err) {
          expect(err).toBeInstanceOf(AgentConfigError);
        }
      },
      { numRuns: 300, timeLimitMs: 3000 },
    );
  });
});
