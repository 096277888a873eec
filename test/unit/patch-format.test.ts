import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { parseManifest, manifestBytes, type Manifest } from '../../patches/manifest.js';
import { PatchError } from '../../patches/patch-error.js';
import {
  generateKeyPair, keyIdOf, loadPinnedKeys, loadPrivateKey, loadPublicKey, privateKeyFromPem, publicKeyFromPem, signBytes, verifyBytes, verifySignatures,
} from '../../patches/signing.js';
import { hashFile, HashingStream } from '../../patches/artifact-hash.js';
import { parseOffer } from '../../patches/offer.js';
import { commands } from '../../src/cli/commands/patch.js';
import type { CliContext } from '../../src/cli/command.js';
import { toolsMissing } from '../helpers/system-tools.js';

const OPENSSL = 'openssl';
const noOpenssl = toolsMissing([OPENSSL], 'openssl').length > 0;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xcare-patch-format-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const VALID: Manifest = {
  id: 'gw-2.3.2',
  version: '2.3.2',
  appliesTo: { types: ['gateway'], software: '>=2.0.0 <2.3.2' },
  artifact: { name: 'gw-2.3.2.tar.gz', sha256: 'a'.repeat(64), size: 123456 },
  createdAt: '2026-11-26T10:00:00Z',
  expiresAt: '2027-02-24T10:00:00Z',
  keyId: '0123456789abcdef',
};

const bytesOf = (o: unknown) => Buffer.from(JSON.stringify(o));

function fakeCtx(cwd: string): { ctx: CliContext; lines: string[] } {
  const lines: string[] = [];
  const ctx: CliContext = {
    url: 'http://127.0.0.1:1',
    token: () => 't',
    api: () => Promise.reject(new Error('no daemon in unit tests')),
    fetch: () => Promise.reject(new Error('no daemon in unit tests')),
    json: false,
    print: (l) => lines.push(l),
    printJson: (v) => lines.push(JSON.stringify(v)),
    env: {},
    cwd,
  };
  return { ctx, lines };
}

const cmd = (...name: string[]) => commands.find((c) => c.name.join(' ') === name.join(' '))!;

describe('manifest validator', () => {
  it('accepts the PROTOCOL.md example and round-trips the signer bytes', () => {
    expect(parseManifest(bytesOf(VALID))).toEqual(VALID);
    expect(parseManifest(manifestBytes({ ...VALID, integrity: `sha256:${'b'.repeat(64)}` })).integrity).toBe(`sha256:${'b'.repeat(64)}`);
  });

  const BAD: [string, unknown, RegExp][] = [
    ['not JSON', '{', /not valid UTF-8 JSON/],
    ['an array', [], /expected a JSON object/],
    ['an unknown field', { ...VALID, extra: 1 }, /extra: unknown field/],
    ['a bad id', { ...VALID, id: '../etc' }, /id: invalid value/],
    ['a non-semver version', { ...VALID, version: '2.3' }, /version: '2.3' is not a semver version/],
    ['a v-prefixed version', { ...VALID, version: 'v2.3.2' }, /version/],
    ['no types', { ...VALID, appliesTo: { ...VALID.appliesTo, types: [] } }, /appliesTo.types: expected a non-empty array/],
    ['an unknown type', { ...VALID, appliesTo: { ...VALID.appliesTo, types: ['router'] } }, /unknown device type 'router'/],
    ['a duplicate type', { ...VALID, appliesTo: { ...VALID.appliesTo, types: ['gateway', 'gateway'] } }, /duplicate type/],
    ['a bad range', { ...VALID, appliesTo: { ...VALID.appliesTo, software: '>=x.y' } }, /appliesTo.software: '>=x.y' is not a semver range/],
    ['an empty range', { ...VALID, appliesTo: { ...VALID.appliesTo, software: ' ' } }, /appliesTo.software/],
    ['an unknown appliesTo field', { ...VALID, appliesTo: { ...VALID.appliesTo, tags: [] } }, /appliesTo.tags: unknown field/],
    ['an uppercase sha256', { ...VALID, artifact: { ...VALID.artifact, sha256: 'A'.repeat(64) } }, /artifact.sha256: invalid value/],
    ['a short sha256', { ...VALID, artifact: { ...VALID.artifact, sha256: 'a'.repeat(63) } }, /artifact.sha256/],
    ['a negative size', { ...VALID, artifact: { ...VALID.artifact, size: -1 } }, /artifact.size: expected a non-negative integer/],
    ['a fractional size', { ...VALID, artifact: { ...VALID.artifact, size: 1.5 } }, /artifact.size/],
    ['a size as string', { ...VALID, artifact: { ...VALID.artifact, size: '10' } }, /artifact.size/],
    ['a path in the artifact name', { ...VALID, artifact: { ...VALID.artifact, name: '../x.tgz' } }, /artifact.name/],
    ['a non-UTC time', { ...VALID, createdAt: '2026-11-26T10:00:00+01:00' }, /createdAt: invalid value/],
    ['an impossible date', { ...VALID, createdAt: '2026-13-45T10:00:00Z' }, /createdAt: .* is not a valid time/],
    // Issue 11 fault 7: Date.parse rolled Feb 30 over to March 2.
    ['an expiry on a day February does not have', { ...VALID, expiresAt: '2027-02-30T10:00:00Z' }, /expiresAt: '2027-02-30T10:00:00Z' is not a valid time/],
    ['Feb 29 outside a leap year', { ...VALID, expiresAt: '2027-02-29T10:00:00Z' }, /expiresAt: .* is not a valid time/],
    ['hour 24', { ...VALID, expiresAt: '2027-01-10T24:00:00Z' }, /expiresAt: .* is not a valid time/],
    ['expiry before creation', { ...VALID, expiresAt: '2026-11-26T09:00:00Z' }, /expiresAt: must be after createdAt/],
    ['a bad keyId', { ...VALID, keyId: 'XYZ' }, /keyId: invalid value/],
    ['a bad integrity', { ...VALID, integrity: 'md5:abc' }, /integrity: invalid value/],
    ['a missing field', { ...VALID, keyId: undefined }, /keyId: expected a string/],
  ];
  for (const [name, value, reason] of BAD) {
    it(`rejects ${name} as a fatal PatchError`, () => {
      const bytes = typeof value === 'string' ? Buffer.from(value) : bytesOf(value);
      let caught: unknown;
      try {
        parseManifest(bytes);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(PatchError);
      expect((caught as PatchError).kind).toBe('fatal');
      expect((caught as PatchError).message).toMatch(reason);
    });
  }

  it('rejects an oversized manifest', () => {
    expect(() => parseManifest(Buffer.alloc(9000, 0x20))).toThrow(/larger than/);
  });
});

describe('Ed25519 signatures and key ids', () => {
  it.skipIf(noOpenssl)('keyId is the first 16 hex of sha256 over the SPKI DER (same as openssl computes)', () => {
    const pair = generateKeyPair();
    const pub = join(dir, 'kid.pem');
    writeFileSync(pub, pair.publicPem);
    const der = execFileSync(OPENSSL, ['pkey', '-pubin', '-in', pub, '-outform', 'DER']);
    expect(pair.keyId).toBe(createHash('sha256').update(der).digest('hex').slice(0, 16));
    expect(keyIdOf(publicKeyFromPem(pair.publicPem))).toBe(pair.keyId);
  });

  it('refuses a non-Ed25519 PEM key', () => {
    const rsa = join(dir, 'rsa.pem');
    // Made by node:crypto, not the openssl CLI, so this runs on a machine without openssl too.
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(() => loadPrivateKey(rsa)).toThrow(/not an Ed25519 key/);
    expect(() => publicKeyFromPem('garbage')).toThrow(/not a PEM public key/);
  });

  it('counts distinct pinned keys toward the threshold', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const u = generateKeyPair();
    const pinned = [a, b].map((k) => ({ keyId: k.keyId, key: publicKeyFromPem(k.publicPem) }));
    const msg = Buffer.from('manifest bytes');
    const sig = (k: typeof a) => ({ keyId: k.keyId, signature: signBytes(msg, privateKeyFromPem(k.privatePem)).toString('base64') });
    expect(verifySignatures(msg, [sig(a)], pinned, 1)).toMatchObject({ ok: true, validKeyIds: [a.keyId] });
    expect(verifySignatures(msg, [sig(a), sig(b)], pinned, 2).ok).toBe(true);
    expect(verifySignatures(msg, [sig(a), sig(a)], pinned, 2)).toMatchObject({ ok: false, validKeyIds: [a.keyId] });
    expect(verifySignatures(msg, [sig(a), sig(u)], pinned, 2).ok).toBe(false);
    expect(verifySignatures(msg, [{ signature: sig(b).signature }], pinned, 1)).toMatchObject({ ok: true, validKeyIds: [b.keyId] });
    // A signature claiming another key's id is only tried against that key.
    expect(verifySignatures(msg, [{ keyId: b.keyId, signature: sig(a).signature }], pinned, 1).ok).toBe(false);
    expect(verifySignatures(Buffer.from('other bytes'), [sig(a)], pinned, 1).ok).toBe(false);
    expect(verifySignatures(msg, [{ signature: '!!notbase64' }], pinned, 1).ok).toBe(false);
    expect(verifySignatures(msg, [sig(a)], pinned, 0).ok).toBe(false);
  });

  it('the same public key pinned twice (two paths) counts once', () => {
    const a = generateKeyPair();
    const p1 = join(dir, 'dup1.pem');
    const p2 = join(dir, 'dup2.pem');
    writeFileSync(p1, a.publicPem);
    writeFileSync(p2, a.publicPem);
    expect(loadPinnedKeys([p1, p2])).toHaveLength(1);
  });
});

describe('openssl interop', () => {
  it.skipIf(noOpenssl)('a manifest signed by `xcarectl keygen` + `patch sign` verifies with openssl pkeyutl -verify -rawin', async () => {
    const work = mkdtempSync(join(dir, 'cli-'));
    const { ctx, lines } = fakeCtx(work);
    await cmd('keygen').run(['--out', 'keys'], ctx);
    expect(statSync(join(work, 'keys/private.pem')).mode & 0o777).toBe(0o600);
    const keyId = /^keyId ([0-9a-f]{16})$/.exec(lines[0]!)![1]!;
    expect(loadPublicKey(join(work, 'keys/public.pem')).keyId).toBe(keyId);
    writeFileSync(join(work, 'app.tar.gz'), 'artifact bytes');
    await cmd('patch', 'sign').run(
      ['--key', 'keys/private.pem', '--artifact', 'app.tar.gz', '--id', 'app-1.1.0', '--version', '1.1.0', '--types', 'gateway,sensor', '--applies', '>=1.0.0 <1.1.0', '--expires', '90d', '--out', 'out'],
      ctx,
    );
    const manifestFile = join(work, 'out/app-1.1.0.manifest.json');
    const manifest = parseManifest(readFileSync(manifestFile));
    expect(manifest).toMatchObject({ id: 'app-1.1.0', keyId, appliesTo: { types: ['gateway', 'sensor'] }, artifact: { size: 14, sha256: createHash('sha256').update('artifact bytes').digest('hex') } });
    expect(Date.parse(manifest.expiresAt) - Date.parse(manifest.createdAt)).toBe(90 * 86400_000);
    const sigBin = join(work, 'sig.bin');
    writeFileSync(sigBin, Buffer.from(readFileSync(join(work, 'out/app-1.1.0.sig'), 'utf8').trim(), 'base64'));
    const out = execFileSync(OPENSSL, ['pkeyutl', '-verify', '-pubin', '-inkey', join(work, 'keys/public.pem'), '-rawin', '-in', manifestFile, '-sigfile', sigBin], { encoding: 'utf8' });
    expect(out).toMatch(/Signature Verified Successfully/);
  });

  it.skipIf(noOpenssl)('a signature made by openssl pkeyutl -sign -rawin with an openssl-made PEM key verifies in patches/', () => {
    const priv = join(dir, 'ossl-private.pem');
    const pub = join(dir, 'ossl-public.pem');
    execFileSync(OPENSSL, ['genpkey', '-algorithm', 'ed25519', '-out', priv]);
    execFileSync(OPENSSL, ['pkey', '-in', priv, '-pubout', '-out', pub]);
    const pinned = loadPublicKey(pub);
    const bytes = manifestBytes({ ...VALID, keyId: pinned.keyId });
    const manifestFile = join(dir, 'ossl.manifest.json');
    writeFileSync(manifestFile, bytes);
    const sig = execFileSync(OPENSSL, ['pkeyutl', '-sign', '-inkey', priv, '-rawin', '-in', manifestFile]);
    expect(sig.length).toBe(64);
    expect(verifyBytes(bytes, sig, pinned.key)).toBe(true);
    expect(verifySignatures(bytes, [{ keyId: pinned.keyId, signature: sig.toString('base64') }], [pinned], 1).ok).toBe(true);
    const changed = Buffer.from(bytes);
    changed[10] = changed[10]! ^ 1;
    expect(verifyBytes(changed, sig, pinned.key)).toBe(false);
  });

  it('threshold signing with two --key writes <id>.sigs.json; the same key twice is refused', async () => {
    const work = mkdtempSync(join(dir, 'cli2-'));
    const { ctx } = fakeCtx(work);
    await cmd('keygen').run(['--out', 'k1'], ctx);
    await cmd('keygen').run(['--out', 'k2'], ctx);
    writeFileSync(join(work, 'a.bin'), 'x');
    const base = ['--artifact', 'a.bin', '--id', 'p1', '--version', '1.0.1', '--types', 'sensor', '--applies', '1.0.0', '--expires', '1d'];
    await cmd('patch', 'sign').run(['--key', 'k1/private.pem', '--key', 'k2/private.pem', ...base], ctx);
    const sigs = JSON.parse(readFileSync(join(work, 'p1.sigs.json'), 'utf8')) as { keyId: string; signature: string }[];
    const keys = loadPinnedKeys([join(work, 'k1/public.pem'), join(work, 'k2/public.pem')]);
    expect(verifySignatures(readFileSync(join(work, 'p1.manifest.json')), sigs, keys, 2).ok).toBe(true);
    await expect(cmd('patch', 'sign').run(['--key', 'k1/private.pem', '--key', 'k1/private.pem', ...base], ctx)).rejects.toThrow(/same key was given twice/);
    await expect(cmd('keygen').run(['--out', 'k1'], ctx)).rejects.toThrow(/refusing to overwrite/);
    await expect(cmd('patch', 'sign').run(['--key', 'k1/private.pem', ...base.slice(0, -1), '90x'], ctx)).rejects.toThrow(/--expires/);
  });

  it('patch digest prints the tree digest', async () => {
    const work = mkdtempSync(join(dir, 'tree-'));
    writeFileSync(join(work, 'VERSION'), '1.0.0\n');
    const { ctx, lines } = fakeCtx(dir);
    await cmd('patch', 'digest').run([work], ctx);
    expect(lines[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('artifact hashing and offers', () => {
  it('hashFile streams a file to its sha256 and size', async () => {
    const f = join(dir, 'big.bin');
    const data = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
    writeFileSync(f, data);
    expect(await hashFile(f)).toEqual({ sha256: createHash('sha256').update(data).digest('hex'), size: data.length });
  });

  it('HashingStream fails as soon as more than maxBytes flow through', async () => {
    const h = new HashingStream(4);
    await expect(pipeline(Readable.from([Buffer.from('abc'), Buffer.from('de')]), h, async (s: AsyncIterable<Buffer>) => { for await (const _ of s) void _; })).rejects.toThrow(/more than 4 bytes/);
  });

  it('parseOffer rejects envelopes it does not understand', () => {
    const good = { manifest: 'e30=', signature: 'AA==', url: '/patches/x/artifact' };
    expect(parseOffer(JSON.stringify(good)).signatures).toEqual([{ signature: 'AA==' }]);
    expect(() => parseOffer('nope')).toThrow(/not JSON/);
    expect(() => parseOffer(JSON.stringify({ ...good, extra: 1 }))).toThrow(/extra: unknown field/);
    expect(() => parseOffer(JSON.stringify({ ...good, manifest: '***' }))).toThrow(/manifest: not base64/);
    expect(() => parseOffer(JSON.stringify({ ...good, signatures: [{ keyId: 1 }] }))).toThrow(/signatures.0/);
  });
});
