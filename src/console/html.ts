/**
 * Server-side HTML with escaping by construction (issue 14: device ids, ticket summaries and subsystem details come
 * from devices and are hostile). Every value interpolated into the `html` template is escaped unless it is itself
 * `Html` made by this module; there is no other way to produce `Html`, so a page cannot forget to escape.
 */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(value: Part): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** Tagged template: literal parts are trusted markup, every `${value}` is escaped (arrays joined). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** A path segment or query value inside an href: percent-encoded, then escaped by `html`. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

/** The wait a support engineer reads at a glance ("1m35s"): the CLI's formatter, so both show the same. */
export { formatAge as age } from '../cli/commands/tickets.js';

/** ISO time as "2026-11-30 14:05:09Z", or "-". */
export function when(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '-' : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}
