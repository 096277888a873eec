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
