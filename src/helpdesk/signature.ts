import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header value of `X-Xcare-Signature`: `sha256=` + hex HMAC-SHA256 of the raw request body with the shared secret. */
export function signBody(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** What a helpdesk does on receipt: recompute over the raw bytes and compare in constant time. */
export function verifySignature(secret: string, body: string | Buffer, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header.trim());
  return expected.length === given.length && timingSafeEqual(expected, given);
}
