/**
 * A small YAML subset parser for agent.yaml. The agent may not depend on the `yaml` package at run
 * time (PROTOCOL.md "Command line": only Node.js and `mqtt`), and an agent config needs little YAML.
 *
 * Supported (results equal to `yaml`'s `parse()` with its default YAML 1.2 core schema, which the
 * unit tests check):
 * - block mappings, nested by indentation (spaces only), and sequences (`- item`), also a sequence
 *   at the same indentation as its parent key, sequences of scalars and of mappings (`- key: v`)
 * - plain, 'single-quoted' and "double-quoted" scalars (the usual escapes), `#` comments
 * - core-schema scalars: null (`~`, `null`, empty), booleans (`true`/`false` in 3 cases),
 *   integers (decimal, `0x`, `0o`), floats (incl. exponents, `.inf`, `.nan`)
 * - flow collections on one line of scalars only: `[]`, `{}`, `[a, "b", 3]`
 * - a leading `---` document marker and a trailing `...`
 *
 * Anything else (anchors, aliases, tags, block scalars `|`/`>`, multi-line scalars, nested flow
 * collections, tabs in indentation, duplicate keys) is an error naming the line, never a silent guess.
 */

export class YamlLiteError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'YamlLiteError';
  }
}

interface Line {
  /** 1-based line number in the source, for errors. */
  no: number;
  indent: number;
  /** The content after the indentation, comment stripped, trailing spaces trimmed. */
  text: string;
}

export function parseYamlLite(source: string): unknown {
  const lines = tokenize(source);
  if (lines.length === 0) return null;
  const parser = new Parser(lines);
  const first = lines[0]!;
  if (first.indent !== 0) throw new YamlLiteError('the document must start at column 1', first.no);
  const value = parser.parseBlock(0);
  parser.expectEnd();
  return value;
}

function tokenize(source: string): Line[] {
  const out: Line[] = [];
  const raw = source.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const no = i + 1;
    const line = raw[i]!;
    const indentMatch = /^[ \t]*/.exec(line)![0];
    const text = stripComment(line.slice(indentMatch.length)).trimEnd();
    if (text === '') continue;
    if (indentMatch.includes('\t')) throw new YamlLiteError('tabs are not allowed in indentation', no);
    if (indentMatch.length === 0 && (text === '---' || text.startsWith('--- '))) {
      if (out.length > 0) throw new YamlLiteError('only one document is supported', no);
      const rest = text.slice(3).trim();
      if (rest !== '') throw new YamlLiteError('content after "---" is not supported', no);
      continue;
    }
    if (indentMatch.length === 0 && text === '...') {
      const after = raw.slice(i + 1).some((l) => stripComment(l).trim() !== '');
      if (after) throw new YamlLiteError('only one document is supported', no + 1);
      break;
    }
    if (text.startsWith('%')) throw new YamlLiteError('directives are not supported', no);
    out.push({ no, indent: indentMatch.length, text });
  }
  return out;
}

/** Remove a `#` comment: one at the start or after whitespace, outside quotes. */
function stripComment(text: string): string {
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === '"') {
      if (c === '\\') i++;
      else if (c === '"') quote = undefined;
    } else if (quote === "'") {
      if (c === "'") {
        if (text[i + 1] === "'") i++;
        else quote = undefined;
      }
    } else if (c === '#' && (i === 0 || text[i - 1] === ' ' || text[i - 1] === '\t')) {
      return text.slice(0, i);
    } else if ((c === '"' || c === "'") && startsScalar(text, i)) {
      quote = c;
    }
  }
  return text;
}

/** A quote opens a quoted scalar only where a scalar starts (after `: `, `- `, `[`, `,` or at the start). */
function startsScalar(text: string, i: number): boolean {
  const before = text.slice(0, i).trimEnd();
  return before === '' || before.endsWith(':') || before.endsWith('-') || before.endsWith('[') || before.endsWith(',') || before.endsWith('?');
}

function isSeqItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

class Parser {
  private pos = 0;

  constructor(private readonly lines: Line[]) {}

  expectEnd(): void {
    const line = this.lines[this.pos];
    if (line) throw new YamlLiteError('unexpected indentation', line.no);
  }

  parseBlock(indent: number): unknown {
    const line = this.lines[this.pos]!;
    if (isSeqItem(line.text)) return this.parseSeq(indent);
    if (splitKey(line.text, line.no) === undefined) {
      // A lone scalar as a whole block (e.g. the document is just `42`).
      this.pos++;
      return parseInlineValue(line.text, line.no);
    }
    return this.parseMap(indent);
  }

  private parseMap(indent: number): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos]!;
      if (line.indent < indent) break;
      if (line.indent > indent) throw new YamlLiteError('unexpected indentation', line.no);
      if (isSeqItem(line.text)) throw new YamlLiteError('a sequence item where a mapping key was expected', line.no);
      const entry = splitKey(line.text, line.no);
      if (!entry) throw new YamlLiteError(`expected "key: value", got "${line.text}"`, line.no);
      if (Object.prototype.hasOwnProperty.call(obj, entry.key)) {
        throw new YamlLiteError(`duplicate key "${entry.key}"`, line.no);
      }
      this.pos++;
      let value: unknown;
      if (entry.rest === '') {
        const next = this.lines[this.pos];
        if (next && next.indent > indent) value = this.parseBlock(next.indent);
        else if (next && next.indent === indent && isSeqItem(next.text)) value = this.parseSeq(indent);
        else value = null;
      } else {
        value = parseInlineValue(entry.rest, line.no);
      }
      // defineProperty so a key named __proto__ is data, not a prototype change.
      Object.defineProperty(obj, entry.key, { value, enumerable: true, writable: true, configurable: true });
    }
    return obj;
  }

  private parseSeq(indent: number): unknown[] {
    const arr: unknown[] = [];
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos]!;
      if (line.indent < indent) break;
      if (line.indent > indent) throw new YamlLiteError('unexpected indentation', line.no);
      if (!isSeqItem(line.text)) break; // a sibling key of a compact sequence under a mapping key
      const afterDash = line.text.slice(1);
      const rest = afterDash.trimStart();
      if (rest === '') {
        this.pos++;
        const next = this.lines[this.pos];
        arr.push(next && next.indent > indent ? this.parseBlock(next.indent) : null);
        continue;
      }
      const offset = indent + 1 + (afterDash.length - rest.length);
      if (isSeqItem(rest) || splitKey(rest, line.no) !== undefined) {
        // `- key: v` / `- - x`: the item is a block that starts at the column after the dash;
        // rewrite this line as if it stood alone at that column and parse the block from it.
        this.lines[this.pos] = { no: line.no, indent: offset, text: rest };
        arr.push(this.parseBlock(offset));
      } else {
        this.pos++;
        arr.push(parseInlineValue(rest, line.no));
      }
    }
    return arr;
  }
}

/** Split `key: rest` (plain or quoted key). Undefined when the text is not a mapping entry. */
function splitKey(text: string, no: number): { key: string; rest: string } | undefined {
  if (text.startsWith('"') || text.startsWith("'")) {
    const { value, end } = readQuoted(text, 0, no);
    const after = text.slice(end);
    if (after === ':' || after.startsWith(': ')) return { key: value, rest: after.slice(1).trim() };
    return undefined;
  }
  if (text.startsWith('[') || text.startsWith('{')) return undefined;
  if (text.startsWith('? ') || text === '?') throw new YamlLiteError('complex keys ("? ") are not supported', no);
  const m = /^(.*?):(?: |$)/.exec(text);
  if (!m) return undefined;
  const key = m[1]!.trim();
  if (key === '') throw new YamlLiteError('empty key', no);
  checkPlainStart(key, no);
  return { key, rest: text.slice(m[0].length).trim() };
}

function parseInlineValue(text: string, no: number): unknown {
  const c = text[0]!;
  if (c === '"' || c === "'") {
    const { value, end } = readQuoted(text, 0, no);
    if (text.slice(end).trim() !== '') throw new YamlLiteError(`unexpected text after a quoted string: "${text.slice(end).trim()}"`, no);
    return value;
  }
  if (c === '[') return parseFlowSeq(text, no);
  if (c === '{') {
    if (/^\{\s*\}$/.test(text)) return {};
    throw new YamlLiteError('flow mappings ("{ a: 1 }") are not supported; use a block mapping', no);
  }
  if (c === '|' || c === '>') throw new YamlLiteError('block scalars ("|" and ">") are not supported', no);
  checkPlainStart(text, no);
  if (/: |:$/.test(text)) throw new YamlLiteError(`a plain value may not contain ": " (quote it): "${text}"`, no);
  return plainScalar(text);
}

function checkPlainStart(text: string, no: number): void {
  const c = text[0]!;
  if (c === '&' || c === '*') throw new YamlLiteError('anchors and aliases are not supported', no);
  if (c === '!') throw new YamlLiteError('tags are not supported', no);
  if (c === '@' || c === '`') throw new YamlLiteError(`a plain value may not start with "${c}" (quote it)`, no);
  if (c === '%') throw new YamlLiteError('a plain value may not start with "%" (quote it)', no);
}

function parseFlowSeq(text: string, no: number): unknown[] {
  if (!text.endsWith(']')) throw new YamlLiteError('a flow sequence must end on the same line', no);
  const inner = text.slice(1, -1);
  const items: unknown[] = [];
  let i = 0;
  const skipSpaces = () => {
    while (inner[i] === ' ') i++;
  };
  skipSpaces();
  if (i === inner.length) return items;
  for (;;) {
    skipSpaces();
    const c = inner[i];
    if (c === undefined || c === ',') throw new YamlLiteError('empty item in a flow sequence', no);
    if (c === '[' || c === '{') throw new YamlLiteError('nested flow collections are not supported', no);
    if (c === '"' || c === "'") {
      const { value, end } = readQuoted(inner, i, no);
      items.push(value);
      i = end;
    } else {
      let j = i;
      while (j < inner.length && inner[j] !== ',') j++;
      const token = inner.slice(i, j).trim();
      if (/[[\]{}]/.test(token) || /: |:$/.test(token)) throw new YamlLiteError(`unsupported flow item "${token}"`, no);
      checkPlainStart(token, no);
      items.push(plainScalar(token));
      i = j;
    }
    skipSpaces();
    if (i === inner.length) return items;
    if (inner[i] !== ',') throw new YamlLiteError('expected "," in a flow sequence', no);
    i++;
    skipSpaces();
    if (i === inner.length) return items; // a trailing comma is allowed by YAML
  }
}

const ESCAPES: Record<string, string> = {
  '0': '\0', a: '\x07', b: '\b', t: '\t', '\t': '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b',
  ' ': ' ', '"': '"', '/': '/', '\\': '\\', N: '\x85', _: '\xa0', L: '\u2028', P: '\u2029',
};

function readQuoted(text: string, start: number, no: number): { value: string; end: number } {
  const q = text[start]!;
  let out = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i]!;
    if (q === "'") {
      if (c === "'") {
        if (text[i + 1] === "'") {
          out += "'";
          i++;
          continue;
        }
        return { value: out, end: i + 1 };
      }
      out += c;
      continue;
    }
    if (c === '"') return { value: out, end: i + 1 };
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = text[++i];
    if (e === undefined) break;
    const hexLen = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hexLen > 0) {
      const hex = text.slice(i + 1, i + 1 + hexLen);
      if (!new RegExp(`^[0-9a-fA-F]{${hexLen}}$`).test(hex)) throw new YamlLiteError(`bad escape "\\${e}${hex}"`, no);
      out += String.fromCodePoint(parseInt(hex, 16));
      i += hexLen;
    } else if (ESCAPES[e] !== undefined) {
      out += ESCAPES[e];
    } else {
      throw new YamlLiteError(`unknown escape "\\${e}"`, no);
    }
  }
  throw new YamlLiteError('unterminated quoted string (multi-line strings are not supported)', no);
}

/** The YAML 1.2 core schema's resolution of a plain scalar. */
function plainScalar(text: string): unknown {
  if (/^(?:~|null|Null|NULL)$/.test(text)) return null;
  if (/^(?:true|True|TRUE)$/.test(text)) return true;
  if (/^(?:false|False|FALSE)$/.test(text)) return false;
  if (/^[-+]?[0-9]+$/.test(text)) return Number(text);
  if (/^0o[0-7]+$/.test(text)) return parseInt(text.slice(2), 8);
  if (/^0x[0-9a-fA-F]+$/.test(text)) return parseInt(text.slice(2), 16);
  if (/^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  if (/^[-+]?\.(?:inf|Inf|INF)$/.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^\.(?:nan|NaN|NAN)$/.test(text)) return NaN;
  return text;
}
