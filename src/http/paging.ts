import { ValidationError } from '../errors.js';

/**
 * `limit`/`cursor` paging for every list route (issue 14). Lists are keyset-paged: the cursor names the
 * sort key of the last item of a page and the next page starts strictly after it, so items inserted or
 * removed meanwhile never make a page repeat or skip an item that was already there. The cursor is opaque
 * to clients (base64url JSON). Without `limit` a list answers whole, as it always did.
 */
export interface PageRequest {
  limit: number | undefined;
  /** Decoded cursor key, or undefined for the first page. */
  after: unknown;
}

/** One page of a list and the cursor of the next one. */
export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** The opaque cursor for a sort key: base64url of its JSON. */
export function encodeCursor(key: unknown): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** Reads `limit` (1..max) and `cursor` from a query string; a bad value is a 400 naming the parameter. */
export function parsePage(query: URLSearchParams, max = 1000): PageRequest {
  const rawLimit = query.get('limit');
  let limit: number | undefined;
  if (rawLimit !== null) {
    if (!/^[1-9]\d{0,6}$/.test(rawLimit) || Number(rawLimit) > max) throw new ValidationError(`limit: expected an integer 1..${max}`);
    limit = Number(rawLimit);
  }
  const rawCursor = query.get('cursor');
  let after: unknown;
  if (rawCursor !== null && rawCursor !== '') {
    if (rawCursor.length > 2048 || !/^[A-Za-z0-9_-]+$/.test(rawCursor)) throw new ValidationError('cursor: invalid');
    try {
      after = JSON.parse(Buffer.from(rawCursor, 'base64url').toString('utf8'));
    } catch {
      throw new ValidationError('cursor: invalid');
    }
    if (after === null || after === undefined) throw new ValidationError('cursor: invalid');
  }
  return { limit, after };
}

/** Total order on cursor keys: numbers and strings, or arrays of them compared element by element. */
export function compareKeys(a: unknown, b: unknown): number {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compareKeys(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/**
 * One page of `items` in ascending order of `keyOf` (use a negated number for "newest first"); a list that is not
 * in that order already is sorted here. Keys must be unique. A cursor whose shape does
 * not match the list's keys is a 400.
 */
export function pageOf<T>(list: readonly T[], req: PageRequest, keyOf: (item: T) => number | string | (number | string)[]): Page<T> {
  // Keys computed once; most lists arrive sorted already, which one linear pass confirms.
  let entries = list.map((item) => ({ item, key: keyOf(item) }));
  let sorted = true;
  for (let i = 1; i < entries.length && sorted; i++) sorted = compareKeys(entries[i - 1]!.key, entries[i]!.key) <= 0;
  if (!sorted) entries = [...entries].sort((a, b) => compareKeys(a.key, b.key));
  const items = entries.map((e) => e.item);
  let start = 0;
  if (req.after !== undefined) {
    const sample = entries.length > 0 ? entries[0]!.key : undefined;
    if (sample !== undefined && Array.isArray(sample) !== Array.isArray(req.after)) throw new ValidationError('cursor: invalid');
    // Binary search for the first key strictly after the cursor.
    let lo = 0;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(entries[mid]!.key, req.after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  if (req.limit === undefined) return { items: items.slice(start), nextCursor: null };
  const slice = items.slice(start, start + req.limit);
  const more = start + req.limit < items.length;
  return { items: slice, nextCursor: more && slice.length > 0 ? encodeCursor(entries[start + slice.length - 1]!.key) : null };
}
