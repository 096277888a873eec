import { ValidationError } from '../errors.js';

/**
 * A query parameter drawn from a closed set (a state, a type, a tier): `undefined` when absent or empty (the
 * console's "any" choice), the value when it is one of `values`, else a {@link ValidationError} (400) naming the
 * key and the values it takes. A value that cannot occur must not answer an empty list, which reads as "none".
 */
export function choiceParam<T extends string>(query: URLSearchParams, key: string, values: readonly T[]): T | undefined {
  const v = query.get(key);
  if (!v) return undefined;
  if (!values.includes(v as T)) throw new ValidationError(`${key}: expected one of ${values.join(', ')}, got ${JSON.stringify(v.slice(0, 64))}`);
  return v as T;
}

/**
 * Refuses U+0000 in request text (a path parameter, a query key or value, a JSON string or key, a CSV or form
 * body) with a {@link ValidationError} (400) naming `where`. PostgreSQL's text cannot hold U+0000 (22021) and
 * SQLite can, so a NUL that reached the store answered 500 on PostgreSQL (a write, and a lookup as well) and
 * was stored on SQLite (issue 13); refused at the door, both stores agree and nothing is stored.
 */
export function refuseNul(where: string, text: string): void {
  if (text.includes('\u0000')) throw new ValidationError(`${where || '(body)'}: text may not contain U+0000`);
}
