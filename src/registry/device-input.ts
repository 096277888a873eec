import { z } from 'zod';
import { DEVICE_ID_PATTERN, DEVICE_TYPES, TIERS } from '../protocol/names.js';
import { ValidationError } from '../errors.js';
import { isCalendarDate } from '../protocol/rfc3339.js';

/** What provisioning accepts (API body, CSV row). Validated before anything is stored. */
export const deviceInputSchema = z
  .strictObject({
    id: z.string().regex(DEVICE_ID_PATTERN, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    type: z.enum(DEVICE_TYPES),
    parent: z.string().regex(DEVICE_ID_PATTERN).nullable().optional(),
    customer: z.string().min(1).max(128),
    installer: z.string().min(1).max(128),
    tier: z.enum(TIERS).default('none'),
    since: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date YYYY-MM-DD')
      .refine(isCalendarDate, 'not a real date')
      .optional(),
    tags: z.array(z.string().min(1).max(64)).max(32).default([]),
  })
  .refine((d) => d.type === 'sensor' || !d.parent, { message: 'only a sensor may have a parent gateway', path: ['parent'] });

export type DeviceInput = z.output<typeof deviceInputSchema>;

export function parseDeviceInput(raw: unknown, where = ''): DeviceInput {
  const parsed = deviceInputSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ValidationError(`${where}${issue.path.join('.') || '(body)'}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Parse a device CSV: header `id,type,parent,customer,installer,tier,since,tags` (any order, parent/since/tags
 * optional), tags separated by `;`. Quoted fields with "" escapes are supported. Throws naming line and column.
 */
export function parseDeviceCsv(text: string): DeviceInput[] {
  const rows = parseCsv(text);
  if (rows.length === 0) throw new ValidationError('CSV is empty');
  const header = rows[0]!.map((h) => h.trim().toLowerCase());
  for (const required of ['id', 'type', 'customer', 'installer']) {
    if (!header.includes(required)) throw new ValidationError(`CSV header lacks column "${required}"`);
  }
  const out: DeviceInput[] = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i]!;
    if (row.length === 1 && row[0]!.trim() === '') continue;
    const rec: Record<string, unknown> = {};
    header.forEach((h, j) => {
      const v = (row[j] ?? '').trim();
      if (v === '') return;
      rec[h] = h === 'tags' ? v.split(';').map((t) => t.trim()).filter(Boolean) : v;
    });
    out.push(parseDeviceInput(rec, `line ${i + 1}: `));
  }
  return out;
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
