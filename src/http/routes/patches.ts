import { createReadStream } from 'node:fs';
import { z } from 'zod';
import type { Router } from '../router.js';
import { sendJson } from '../server.js';
import { ConflictError, NotFoundError, ValidationError, wireCode } from '../../errors.js';
import type { PatchService, SignatureInput } from '../../patches/patch-service.js';
import { isKeyId } from '../../patches/patch-service.js';
import { DEVICE_ID_PATTERN } from '../../protocol/names.js';
import { pageOf, parsePage } from '../paging.js';

export interface PatchRouteDeps {
  patches: PatchService;
  /**
   * Device Basic auth for the artifact route (the registry's token check). `source` is the peer address: its
   * failures spend the same per-source allowance as failed CONNECTs (README "Limits", mqtt.authFailures).
   */
  authenticateDevice(id: string, token: string, source?: string): Promise<boolean>;
  /** Optional: 404 an offer to a device that does not exist. */
  deviceExists?(id: string): boolean;
  /**
   * RULES.md "Remote patching": only eligible devices with a paid subscription receive patches. When
   * given, an offer to an ineligible device is refused (409) with the reasons.
   */
  eligibility?(id: string): { eligible: boolean; reasons: string[] } | undefined;
}

/** Headers of the one-request publish (see registerPatchRoutes). */
export const MANIFEST_HEADER = 'x-xcare-manifest';
export const SIGNATURES_HEADER = 'x-xcare-signatures';

const offerBody = z.strictObject({
  patchId: z.string().regex(DEVICE_ID_PATTERN, 'invalid patch id'),
  rolloutId: z.string().regex(DEVICE_ID_PATTERN, 'invalid rollout id').optional(),
});

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function decodeSignatures(raw: string | undefined): SignatureInput[] {
  if (!raw) throw new ValidationError(`${SIGNATURES_HEADER}: missing; the patch is unsigned`);
  let list: unknown;
  try {
    list = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
  } catch {
    throw new ValidationError(`${SIGNATURES_HEADER}: expected base64 of a JSON array`);
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > 16) throw new ValidationError(`${SIGNATURES_HEADER}: expected 1 to 16 signatures`);
  return list.map((s: unknown, i) => {
    const e = s as Record<string, unknown>;
    if (typeof e !== 'object' || e === null || !isKeyId(e.keyId) || typeof e.signature !== 'string' || e.signature.length > 200) {
      throw new ValidationError(`${SIGNATURES_HEADER}.${i}: expected {keyId: 16 hex, signature: base64}`);
    }
    return { keyId: e.keyId, signature: e.signature };
  });
}

type ByteRange = { start: number; end: number } | 'unsatisfiable' | undefined;

/** `Range: bytes=N-` or `bytes=N-M` (RFC 9110 14.1.2); anything else is ignored (full body). */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (!header) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

function basicAuth(value: string | undefined): { id: string; token: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(value ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { id: decoded.slice(0, colon), token: decoded.slice(colon + 1) };
}

/**
 * Patch routes (issue 4 item 3).
 *
 * Publish is ONE request, so nothing is stored unless everything checks out:
 *   POST /api/v1/patches
 *     x-xcare-manifest:   base64 of the exact signed manifest bytes
 *     x-xcare-signatures: base64 of JSON [{"keyId": "...", "signature": "<base64>"}]
 *     body:               the raw artifact bytes (application/octet-stream)
 * Signatures are verified before the body is read; the body is then checked for exact size and sha256.
 */
export function registerPatchRoutes(router: Router, deps: PatchRouteDeps): void {
  router.post('/api/v1/patches', 'admin', async (ctx) => {
    const { req } = ctx;
    try {
      const manifestB64 = header(req.headers[MANIFEST_HEADER]);
      if (!manifestB64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(manifestB64)) throw new ValidationError(`${MANIFEST_HEADER}: missing or not base64`);
      const signatures = decodeSignatures(header(req.headers[SIGNATURES_HEADER]));
      const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
      const result = await deps.patches.publish({
        manifestBytes: Buffer.from(manifestB64, 'base64'),
        signatures,
        artifact: req,
        ...(declared !== undefined && Number.isFinite(declared) ? { declaredLength: declared } : {}),
      });
      ctx.res.statusCode = result.created ? 201 : 200;
      return { patch: result.patch, created: result.created };
    } catch (err) {
      // Let the client finish sending so it reads our error instead of a reset connection.
      if (!req.readableEnded) req.resume();
      throw err;
    }
  });

  router.get('/api/v1/patches', 'admin', ({ query }) => {
    // Newest first, as before paging: (created time, id) with the time negated so the key ascends.
    const page = pageOf(deps.patches.list(), parsePage(query), (p) => [-Date.parse(p.createdAt), p.id]);
    return { patches: page.items, nextCursor: page.nextCursor };
  });

  router.get('/api/v1/patches/:id', 'admin', ({ params }) => ({ patch: deps.patches.get(params.id!) }));

  router.post('/api/v1/devices/:id/offer', 'admin', async (ctx) => {
    const body = await ctx.json(offerBody);
    const deviceId = ctx.params.id!;
    if (deps.deviceExists && !deps.deviceExists(deviceId)) throw new NotFoundError(`device ${deviceId} not found`);
    const eligibility = deps.eligibility?.(deviceId);
    if (eligibility && !eligibility.eligible) {
      throw new ConflictError(`device ${deviceId} is not eligible for remote patching: ${eligibility.reasons.join('; ')}`);
    }
    const offer = await deps.patches.offer(deviceId, body.patchId, body.rolloutId);
    return { offered: { deviceId, patchId: body.patchId, rolloutId: body.rolloutId ?? null, url: offer.url } };
  });

  // PROTOCOL.md "HTTP": device Basic auth, only with an offer for this patch, Range for resumes.
  router.get('/patches/:id/artifact', 'device', async ({ req, res, params }) => {
    const creds = basicAuth(req.headers.authorization);
    // The peer address, as the broker names it (IPv4 on a dual-stack socket is one source either way).
    const remote = req.socket.remoteAddress?.replace(/^::ffff:/, '');
    if (!creds || !(await deps.authenticateDevice(creds.id, creds.token, remote))) {
      res.setHeader('www-authenticate', 'Basic realm="xcare-artifacts"');
      sendJson(res, 401, { error: 'device authentication required', code: wireCode('UNAUTHORIZED') });
      return;
    }
    const artifact = await deps.patches.artifactFor(creds.id, params.id!);
    if (!artifact) {
      sendJson(res, 403, { error: 'no offer of this patch to this device', code: wireCode('FORBIDDEN') });
      return;
    }
    const { size, path } = artifact;
    const range = parseRange(header(req.headers.range), size);
    const common = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', 'cache-control': 'no-store' };
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...common, 'content-range': `bytes */${size}`, 'content-length': 0 });
      res.end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    res.writeHead(range ? 206 : 200, {
      ...common,
      'content-length': length,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    await new Promise<void>((resolve) => {
      const stream = createReadStream(path, { start, end });
      stream.on('error', () => {
        res.destroy();
        resolve();
      });
      res.on('close', () => {
        stream.destroy();
        resolve();
      });
      stream.pipe(res);
    });
  });
}
