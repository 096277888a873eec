/**
 * Fixtures for the signed-patch tests (issue 4): release keys on disk, the sample artifact built by
 * patches/examples/build-patch.sh, signed manifests and offers, an agent software dir, and a real
 * artifact HTTP server on port 0 whose misbehaviours (extra byte, trickle, cut-off) are switchable.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, type KeyObject } from 'node:crypto';
import { generateKeyPair, privateKeyFromPem, signBytes } from '../../patches/signing.js';
import { manifestBytes, type Manifest } from '../../patches/manifest.js';
import type { PatchOffer, PatchStatus } from '../../src/protocol/types.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const EXAMPLES = join(REPO, 'patches/examples');

export interface TestKey {
  keyId: string;
  privatePem: string;
  publicPem: string;
  privateKey: KeyObject;
  privPath: string;
  pubPath: string;
}

export function makeKey(dir: string, name: string): TestKey {
  const pair = generateKeyPair();
  const kdir = join(dir, 'keys', name);
  mkdirSync(kdir, { recursive: true });
  const privPath = join(kdir, 'private.pem');
  const pubPath = join(kdir, 'public.pem');
  writeFileSync(privPath, pair.privatePem, { mode: 0o600 });
  writeFileSync(pubPath, pair.publicPem);
  return { ...pair, privateKey: privateKeyFromPem(pair.privatePem), privPath, pubPath };
}

export interface BuiltArtifact {
  path: string;
  bytes: Buffer;
  sha256: string;
  size: number;
  tree: string;
}

export function buildArtifact(dir: string, version = '1.1.0'): BuiltArtifact {
  const out = join(dir, 'build');
  mkdirSync(out, { recursive: true });
  const path = execFileSync('sh', [join(EXAMPLES, 'build-patch.sh'), out, version], { encoding: 'utf8' }).trim();
  const bytes = readFileSync(path);
  return { path, bytes, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, tree: join(out, `tree-${version}`) };
}

export function manifestFor(artifact: { sha256: string; size: number }, signer: TestKey, over: Partial<Manifest> = {}): Manifest {
  return {
    id: 'app-1.1.0',
    version: '1.1.0',
    appliesTo: { types: ['gateway'], software: '>=1.0.0 <1.1.0' },
    artifact: { name: 'sample-app-1.1.0.tar.gz', sha256: artifact.sha256, size: artifact.size },
    createdAt: '2026-11-26T10:00:00Z',
    expiresAt: '2027-02-24T10:00:00Z',
    keyId: signer.keyId,
    ...over,
  };
}

/** A PatchOffer signed by `signers[0]` (the `signature`) and all of `signers` (in `signatures` when > 1). */
export function makeOffer(
  manifest: Manifest,
  signers: TestKey[],
  opts: { url?: string; rolloutId?: string; bytes?: Buffer; signatures?: { keyId: string; signature: string }[] } = {},
): PatchOffer {
  const bytes = opts.bytes ?? manifestBytes(manifest);
  const sigs = signers.map((k) => ({ keyId: k.keyId, signature: signBytes(bytes, k.privateKey).toString('base64') }));
  const offer: PatchOffer = {
    manifest: bytes.toString('base64'),
    signature: sigs[0]!.signature,
    url: opts.url ?? `/patches/${manifest.id}/artifact`,
  };
  if (opts.rolloutId) offer.rolloutId = opts.rolloutId;
  if (opts.signatures) offer.signatures = opts.signatures;
  else if (sigs.length > 1) offer.signatures = sigs;
  return offer;
}

/** A device's software dir holding the sample app at 1.0.0, and its state dir. */
export function makeDevice(dir: string): { softwareDir: string; versionFile: string; stateDir: string; version(): string } {
  const softwareDir = join(dir, 'device', 'sample-app');
  cpSync(join(EXAMPLES, 'sample-app'), softwareDir, { recursive: true });
  const versionFile = join(softwareDir, 'VERSION');
  const stateDir = join(dir, 'device', 'state');
  mkdirSync(stateDir, { recursive: true });
  return { softwareDir, versionFile, stateDir, version: () => readFileSync(versionFile, 'utf8').trim() };
}

export const exampleCommands = {
  install: `sh ${join(EXAMPLES, 'install.sh')}`,
  check: `sh ${join(EXAMPLES, 'check.sh')}`,
  rollback: `sh ${join(EXAMPLES, 'rollback.sh')}`,
};

export type ServeMode = 'normal' | 'extra-byte' | 'trickle' | 'cut-once';

/** A stand-in artifact server with the daemon's Range semantics and switchable misbehaviour. */
export class ArtifactServer {
  private server?: Server;
  readonly requests: { url: string; range?: string; auth?: string }[] = [];
  mode: ServeMode = 'normal';
  private cut = false;

  constructor(private readonly files: Map<string, Buffer>) {}

  async start(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const entry: { url: string; range?: string; auth?: string } = { url: req.url ?? '' };
    if (req.headers.range) entry.range = req.headers.range;
    if (req.headers.authorization) entry.auth = req.headers.authorization;
    this.requests.push(entry);
    const body = this.files.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    if (this.mode === 'extra-byte') {
      const extra = Buffer.concat([body, Buffer.from('X')]);
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked: no Content-Length to give it away
      res.end(extra);
      return;
    }
    if (this.mode === 'trickle') {
      res.writeHead(200, { 'content-length': body.length });
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed || i >= body.length) {
          clearInterval(t);
          res.end();
          return;
        }
        res.write(body.subarray(i, i + 1));
        i++;
      }, 1000);
      res.on('close', () => clearInterval(t));
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start >= body.length && m) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    const slice = body.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': slice.length,
      ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (this.mode === 'cut-once' && !this.cut) {
      // Send half, then drop the connection: the agent must resume with Range.
      this.cut = true;
      res.write(slice.subarray(0, Math.floor(slice.length / 2)), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(slice);
  }
}

export function statusesOf(list: PatchStatus[], patchId?: string): string[] {
  return list.filter((s) => !patchId || s.patchId === patchId).map((s) => s.state);
}

export const TERMINAL = ['installed', 'failed', 'rolled_back', 'rejected'];
