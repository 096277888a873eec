/**
 * Rewrites the code of `sql` outside string literals, quoted identifiers and `--` comments, which are kept as
 * they are: `code` is called on each run of code between them, in order, and returns its replacement. The one
 * scanner for the two rewrites of PgSyncDatabase: `?`/`@name` to `$N` (pg-sync.ts translate) and `$N` to
 * inlined literals for queued writes (pg-sync-worker.ts).
 */
export function mapSqlCode(sql: string, code: (part: string) => string): string {
  let out = '';
  let from = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    let end = -1;
    if (c === "'" || c === '"') end = closing(sql, i, c);
    else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      end = nl < 0 ? sql.length : nl;
    }
    if (end < 0) {
      i++;
      continue;
    }
    out += code(sql.slice(from, i)) + sql.slice(i, end);
    from = i = end;
  }
  return out + code(sql.slice(from));
}

/** The index after the quote closing the one at `start` (a doubled quote is part of the text). */
function closing(sql: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return sql.length;
}
