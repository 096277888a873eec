import { createPublicKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, openAsBlob, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isValidRange, parseVersion } from '../../../patches/version-match.js';
import { CliError, onePositional, type CliContext, type Command } from '../command.js';
import { table } from '../cli-context.js';
import { DEVICE_TYPES, type DeviceType } from '../../protocol/names.js';
import { manifestBytes, parseManifest, PATCH_ID_PATTERN, INTEGRITY_PATTERN, type Manifest } from '../../../patches/manifest.js';
import { generateKeyPair, keyIdOf, loadPrivateKey, signBytes } from '../../../patches/signing.js';
import { hashFile } from '../../../patches/artifact-hash.js';
import { computeTreeDigest } from '../../../patches/tree-digest.js';

/** `90d`, `12h`, `30m`, `45s`, `2w` -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  if (!m) throw new CliError(`--expires: expected a duration like 90d, 12h or 30m, got '${text}'`, 2);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const ms = Number(m[1]) * unit * 1000;
  if (ms <= 0) throw new CliError('--expires: must be positive', 2);
  return ms;
}

function resolvePath(ctx: CliContext, p: string): string {
  return resolve(ctx.cwd, p);
}

function need<T>(value: T | undefined, name: string): T {
  if (value === undefined || value === '') throw new CliError(`--${name} is required`, 2);
  return value;
}

const keygen: Command = {
  name: ['keygen'],
  summary: 'make an Ed25519 release key pair (private.pem 0600, public.pem) and print its keyId',
  usage: 'xcarectl keygen --out DIR [--force]',
  async run(argv, ctx) {
    const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, force: { type: 'boolean' } } });
    const dir = resolvePath(ctx, need(values.out, 'out'));
    const privPath = join(dir, 'private.pem');
    const pubPath = join(dir, 'public.pem');
    if (!values.force && existsSync(privPath)) throw new CliError(`${privPath} exists; refusing to overwrite a key (use --force)`);
    mkdirSync(dir, { recursive: true });
    const pair = generateKeyPair();
    writeFileSync(privPath, pair.privatePem, { mode: 0o600 });
    chmodSync(privPath, 0o600); // mode applies only on create; --force over an older file must still be 0600
    writeFileSync(pubPath, pair.publicPem, { mode: 0o644 });
    if (ctx.json) ctx.printJson({ keyId: pair.keyId, privateKey: privPath, publicKey: pubPath });
    else {
      ctx.print(`keyId ${pair.keyId}`);
      ctx.print(`private key: ${privPath} (keep it offline; mode 0600)`);
      ctx.print(`public key:  ${pubPath} (pin it on agents: patches.keys; on the daemon: patches.releaseKeys)`);
    }
  },
};

const sign: Command = {
  name: ['patch', 'sign'],
  summary: 'write <id>.manifest.json and its Ed25519 signature <id>.sig (repeat --key for threshold signing)',
  usage:
    'xcarectl patch sign --key PRIVATE.pem [--key ...] --artifact FILE --id ID --version V --types gateway,sensor --applies RANGE --expires 90d [--integrity sha256:HEX] [--out DIR]',
  async run(argv, ctx) {
    const { values } = parseArgs({
      args: argv,
      options: {
        key: { type: 'string', multiple: true },
        artifact: { type: 'string' },
        id: { type: 'string' },
        version: { type: 'string' },
        types: { type: 'string' },
        applies: { type: 'string' },
        expires: { type: 'string' },
        integrity: { type: 'string' },
        out: { type: 'string' },
      },
    });
    const keyPaths = values.key ?? [];
    if (keyPaths.length === 0) throw new CliError('--key is required', 2);
    const id = need(values.id, 'id');
    if (!PATCH_ID_PATTERN.test(id)) throw new CliError(`--id: '${id}' is not a valid patch id`, 2);
    const version = need(values.version, 'version');
    if (parseVersion(version) === null || version.startsWith('v')) throw new CliError(`--version: '${version}' is not a semver version`, 2);
    const types = need(values.types, 'types').split(',').map((t) => t.trim()).filter(Boolean);
    for (const t of types) if (!DEVICE_TYPES.includes(t as DeviceType)) throw new CliError(`--types: unknown device type '${t}'`, 2);
    const applies = need(values.applies, 'applies');
    if (!isValidRange(applies)) throw new CliError(`--applies: '${applies}' is not a semver range`, 2);
    if (values.integrity !== undefined && !INTEGRITY_PATTERN.test(values.integrity)) throw new CliError('--integrity: expected sha256:<64 hex>', 2);
    const expiresMs = parseDuration(need(values.expires, 'expires'));
    const artifactPath = resolvePath(ctx, need(values.artifact, 'artifact'));
    const keys = keyPaths.map((p) => {
      try {
        return loadPrivateKey(resolvePath(ctx, p));
      } catch (err) {
        throw new CliError(`--key ${p}: ${(err as Error).message}`);
      }
    });
    const keyIds = keys.map((k) => keyIdOf(createPublicKey(k)));
    if (new Set(keyIds).size !== keyIds.length) throw new CliError('--key: the same key was given twice; it would count once');
    let digest;
    try {
      digest = await hashFile(artifactPath);
    } catch (err) {
      throw new CliError(`--artifact: ${(err as Error).message}`);
    }
    const now = Date.now();
    const created = new Date(Math.floor(now / 1000) * 1000);
    const manifest: Manifest = {
      id,
      version,
      appliesTo: { types: types as DeviceType[], software: applies },
      artifact: { name: basename(artifactPath), sha256: digest.sha256, size: digest.size },
      createdAt: created.toISOString().replace('.000Z', 'Z'),
      expiresAt: new Date(created.getTime() + expiresMs).toISOString().replace('.000Z', 'Z'),
      keyId: keyIds[0]!,
    };
    if (values.integrity) manifest.integrity = values.integrity;
    let bytes: Buffer;
    try {
      bytes = manifestBytes(manifest);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const signatures = keys.map((k, i) => ({ keyId: keyIds[i]!, signature: signBytes(bytes, k).toString('base64') }));
    const outDir = resolvePath(ctx, values.out ?? '.');
    mkdirSync(outDir, { recursive: true });
    const files = { manifest: join(outDir, `${id}.manifest.json`), sig: join(outDir, `${id}.sig`), sigs: undefined as string | undefined };
    // The manifest file IS the signed bytes: publish and verify it byte for byte, never re-format it.
    writeFileSync(files.manifest, bytes);
    writeFileSync(files.sig, `${signatures[0]!.signature}\n`);
    if (signatures.length > 1) {
      files.sigs = join(outDir, `${id}.sigs.json`);
      writeFileSync(files.sigs, `${JSON.stringify(signatures, null, 2)}\n`);
    }
    if (ctx.json) ctx.printJson({ manifest, files, signatures });
    else {
      ctx.print(`signed ${id} ${version} (${digest.size} bytes, sha256 ${digest.sha256}) with ${keyIds.join(', ')}`);
      ctx.print(`manifest:  ${files.manifest}`);
      ctx.print(`signature: ${files.sig}${files.sigs ? `\nsignatures: ${files.sigs}` : ''}`);
      ctx.print(`expires:   ${manifest.expiresAt}`);
    }
  },
};

const digestCmd: Command = {
  name: ['patch', 'digest'],
  summary: 'print the integrity digest of a software tree (for patch sign --integrity)',
  usage: 'xcarectl patch digest DIR',
  async run(argv, ctx) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    const dir = onePositional(positionals, digestCmd.usage);
    let digest: string;
    try {
      digest = await computeTreeDigest(resolvePath(ctx, dir));
    } catch (err) {
      throw new CliError(`${dir}: ${(err as Error).message}`);
    }
    if (ctx.json) ctx.printJson({ integrity: digest });
    else ctx.print(digest);
  },
};

interface PatchJson {
  id: string;
  version: string;
  appliesTo: { types: string[]; software: string };
  artifact: { size: number; sha256: string };
  expiresAt: string;
  signers: string[];
  devices?: Record<string, number>;
}

const publish: Command = {
  name: ['patch', 'publish'],
  summary: 'upload a signed manifest, its signature(s) and the artifact to the daemon',
  usage: 'xcarectl patch publish --manifest M.manifest.json (--sig M.sig | --sigs M.sigs.json) --artifact FILE',
  async run(argv, ctx) {
    const { values } = parseArgs({
      args: argv,
      options: { manifest: { type: 'string' }, sig: { type: 'string' }, sigs: { type: 'string' }, artifact: { type: 'string' } },
    });
    const manifestPath = resolvePath(ctx, need(values.manifest, 'manifest'));
    const artifactPath = resolvePath(ctx, need(values.artifact, 'artifact'));
    let bytes: Buffer;
    let manifest: Manifest;
    try {
      bytes = readFileSync(manifestPath);
      manifest = parseManifest(bytes);
    } catch (err) {
      throw new CliError(`--manifest: ${(err as Error).message}`);
    }
    let signatures: { keyId: string; signature: string }[];
    if (values.sigs) {
      try {
        signatures = JSON.parse(readFileSync(resolvePath(ctx, values.sigs), 'utf8')) as typeof signatures;
      } catch (err) {
        throw new CliError(`--sigs: ${(err as Error).message}`);
      }
    } else if (values.sig) {
      signatures = [{ keyId: manifest.keyId, signature: readFileSync(resolvePath(ctx, values.sig), 'utf8').trim() }];
    } else throw new CliError('--sig or --sigs is required', 2);
    let body: Blob;
    try {
      body = await openAsBlob(artifactPath);
    } catch (err) {
      throw new CliError(`--artifact: ${(err as Error).message}`);
    }
    const res = await ctx.fetch('/api/v1/patches', {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'x-xcare-manifest': bytes.toString('base64'),
        'x-xcare-signatures': Buffer.from(JSON.stringify(signatures)).toString('base64'),
      },
      body,
    });
    const text = await res.text();
    let data: { patch?: PatchJson; created?: boolean; error?: string } = {};
    try {
      data = JSON.parse(text) as typeof data;
    } catch {
      // non-JSON error body
    }
    if (!res.ok) throw new CliError(`${data.error ?? text.slice(0, 200)} (HTTP ${res.status})`);
    if (ctx.json) ctx.printJson(data);
    else ctx.print(`${data.created ? 'published' : 'already published'}: ${manifest.id} ${manifest.version} (${manifest.artifact.size} bytes)`);
  },
};

const list: Command = {
  name: ['patch', 'list'],
  summary: 'list published patches with per-state device counts',
  usage: 'xcarectl patch list [--json]',
  async run(argv, ctx) {
    parseArgs({ args: argv, options: {} });
    const { patches } = await ctx.api<{ patches: PatchJson[] }>('GET', '/api/v1/patches');
    if (ctx.json) {
      ctx.printJson({ patches });
      return;
    }
    if (patches.length === 0) {
      ctx.print('no patches');
      return;
    }
    ctx.print(
      table(
        ['ID', 'VERSION', 'TYPES', 'APPLIES', 'SIZE', 'EXPIRES', 'SIGNERS', 'DEVICES'],
        patches.map((p) => [
          p.id,
          p.version,
          p.appliesTo.types.join(','),
          p.appliesTo.software,
          p.artifact.size,
          p.expiresAt,
          p.signers.join(','),
          Object.entries(p.devices ?? {})
            .map(([s, n]) => `${s}=${n}`)
            .join(' ') || '-',
        ]),
      ),
    );
  },
};

const offer: Command = {
  name: ['patch', 'offer'],
  summary: 'offer a published patch to one device (outside a rollout)',
  usage: 'xcarectl patch offer DEVICE --patch ID [--rollout R]',
  async run(argv, ctx) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { patch: { type: 'string' }, rollout: { type: 'string' } },
    });
    const device = onePositional(positionals, offer.usage);
    const res = await ctx.api<{ offered: unknown }>('POST', `/api/v1/devices/${encodeURIComponent(device)}/offer`, {
      patchId: need(values.patch, 'patch'),
      ...(values.rollout ? { rolloutId: values.rollout } : {}),
    });
    if (ctx.json) ctx.printJson(res);
    else ctx.print(`offered ${values.patch} to ${device}`);
  },
};

export const commands: Command[] = [keygen, sign, digestCmd, publish, list, offer];
