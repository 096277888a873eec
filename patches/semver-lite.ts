/**
 * A small, dependency-free subset of node-semver for the agent (which ships with only `mqtt`):
 * parse, compare (with prerelease ordering, SemVer 2.0.0 section 11) and range satisfaction with
 * node-semver's default semantics: comparators (> >= < <= =), x-ranges, ^, ~, hyphen ranges,
 * whitespace = AND, `||` = OR, and the rule that a prerelease version only matches a comparator
 * set that names a prerelease of the same major.minor.patch. test/unit/patch-semver-lite.test.ts
 * cross-checks it against the `semver` package.
 */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  prerelease: (string | number)[];
  build: string[];
}

const NUM = '0|[1-9]\\d*';
const PRE_ID = `(?:${NUM}|\\d*[A-Za-z-][0-9A-Za-z-]*)`;
const PRE = `(?:-(${PRE_ID}(?:\\.${PRE_ID})*))`;
const BUILD = `(?:\\+([0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*))`;
const FULL = new RegExp(`^v?(${NUM})\\.(${NUM})\\.(${NUM})${PRE}?${BUILD}?$`);
const X = `${NUM}|x|X|\\*`;
const PARTIAL = new RegExp(`^v?(${X})(?:\\.(${X})(?:\\.(${X})${PRE}?${BUILD}?)?)?$`);

function toNum(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`number too large: ${s}`);
  return n;
}

function parsePre(s: string | undefined): (string | number)[] {
  if (!s) return [];
  return s.split('.').map((id) => (/^\d+$/.test(id) ? toNum(id) : id));
}

/** Parse a full version (`1.2.3`, `1.2.3-rc.1+build`, leading `v` allowed); undefined when invalid. */
export function parse(version: string): SemVer | undefined {
  if (typeof version !== 'string' || version.length > 256) return undefined;
  const m = FULL.exec(version.trim());
  if (!m) return undefined;
  try {
    return { major: toNum(m[1]!), minor: toNum(m[2]!), patch: toNum(m[3]!), prerelease: parsePre(m[4]), build: m[5] ? m[5].split('.') : [] };
  } catch {
    return undefined;
  }
}

export function valid(version: string): boolean {
  return parse(version) !== undefined;
}

function mustParse(v: string | SemVer): SemVer {
  if (typeof v !== 'string') return v;
  const p = parse(v);
  if (!p) throw new TypeError(`invalid version: ${v}`);
  return p;
}

function cmpNum(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function comparePre(a: (string | number)[], b: (string | number)[]): number {
  // A version without prerelease has higher precedence than one with.
  if (a.length === 0 && b.length === 0) return 0;
  if (a.length === 0) return 1;
  if (b.length === 0) return -1;
  for (let i = 0; ; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined && y === undefined) return 0;
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const xn = typeof x === 'number';
    const yn = typeof y === 'number';
    if (xn && yn) return cmpNum(x, y);
    if (xn) return -1; // numeric identifiers have lower precedence than alphanumeric ones
    if (yn) return 1;
    return x < y ? -1 : 1;
  }
}

/** -1, 0 or 1; build metadata is ignored (SemVer 2.0.0 section 10). Throws on an invalid version. */
export function compare(a: string | SemVer, b: string | SemVer): number {
  const x = mustParse(a);
  const y = mustParse(b);
  return cmpNum(x.major, y.major) || cmpNum(x.minor, y.minor) || cmpNum(x.patch, y.patch) || comparePre(x.prerelease, y.prerelease);
}

export const gt = (a: string, b: string): boolean => compare(a, b) > 0;
export const lt = (a: string, b: string): boolean => compare(a, b) < 0;
export const eq = (a: string, b: string): boolean => compare(a, b) === 0;

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  op: Op;
  v: SemVer;
}
/** `any` matches every release version (node-semver's ANY). */
type Primitive = Comparator | 'any';
export type Range = Primitive[][];

const isX = (s: string | undefined): boolean => s === undefined || s === 'x' || s === 'X' || s === '*';

function ver(major: number, minor: number, patch: number, pre: (string | number)[] = []): SemVer {
  return { major, minor, patch, prerelease: pre, build: [] };
}

const ZERO_PRE = [0];

interface Partial {
  M?: string;
  m?: string;
  p?: string;
  pre: (string | number)[];
}

function parsePartial(s: string): Partial {
  const m = PARTIAL.exec(s);
  if (!m) throw new Error(`invalid version in range: '${s}'`);
  return { M: m[1], m: m[2], p: m[3], pre: parsePre(m[4]) };
}

function desugar(op: string, s: string): Primitive[] {
  const { M, m, p, pre } = parsePartial(s);
  const xM = isX(M);
  const xm = xM || isX(m);
  const xp = xm || isX(p);
  const nM = xM ? 0 : toNum(M!);
  const nm = xm ? 0 : toNum(m!);
  const np = xp ? 0 : toNum(p!);
  const range = (lo: SemVer, hi: SemVer): Primitive[] => [
    { op: '>=', v: lo },
    { op: '<', v: hi },
  ];
  if (op === '^') {
    if (xM) return ['any'];
    if (xm) return range(ver(nM, 0, 0), ver(nM + 1, 0, 0, ZERO_PRE));
    if (xp) return nM === 0 ? range(ver(0, nm, 0), ver(0, nm + 1, 0, ZERO_PRE)) : range(ver(nM, nm, 0), ver(nM + 1, 0, 0, ZERO_PRE));
    const lo = ver(nM, nm, np, pre);
    if (nM === 0) return nm === 0 ? range(lo, ver(0, 0, np + 1, ZERO_PRE)) : range(lo, ver(0, nm + 1, 0, ZERO_PRE));
    return range(lo, ver(nM + 1, 0, 0, ZERO_PRE));
  }
  if (op === '~' || op === '~>') {
    if (xM) return ['any'];
    if (xm) return range(ver(nM, 0, 0), ver(nM + 1, 0, 0, ZERO_PRE));
    if (xp) return range(ver(nM, nm, 0), ver(nM, nm + 1, 0, ZERO_PRE));
    return range(ver(nM, nm, np, pre), ver(nM, nm + 1, 0, ZERO_PRE));
  }
  if (op === '' || op === '=') {
    if (xM) return ['any'];
    if (xm) return range(ver(nM, 0, 0), ver(nM + 1, 0, 0, ZERO_PRE));
    if (xp) return range(ver(nM, nm, 0), ver(nM, nm + 1, 0, ZERO_PRE));
    return [{ op: '=', v: ver(nM, nm, np, pre) }];
  }
  const cmpOp = op as Op;
  if (!xp) return [{ op: cmpOp, v: ver(nM, nm, np, pre) }];
  if (xM) return cmpOp === '>' || cmpOp === '<' ? [{ op: '<', v: ver(0, 0, 0, ZERO_PRE) }] : ['any'];
  switch (cmpOp) {
    case '>':
      return [{ op: '>=', v: xm ? ver(nM + 1, 0, 0) : ver(nM, nm + 1, 0) }];
    case '<=':
      return [{ op: '<', v: xm ? ver(nM + 1, 0, 0, ZERO_PRE) : ver(nM, nm + 1, 0, ZERO_PRE) }];
    case '>=':
      return [{ op: '>=', v: ver(nM, nm, 0) }];
    default:
      return [{ op: '<', v: ver(nM, nm, 0, ZERO_PRE) }];
  }
}

function hyphen(from: string, to: string): Primitive[] {
  const f = parsePartial(from);
  const t = parsePartial(to);
  const out: Primitive[] = [];
  if (!isX(f.M)) {
    const M = toNum(f.M!);
    if (isX(f.m)) out.push({ op: '>=', v: ver(M, 0, 0) });
    else if (isX(f.p)) out.push({ op: '>=', v: ver(M, toNum(f.m!), 0) });
    else out.push({ op: '>=', v: ver(M, toNum(f.m!), toNum(f.p!), f.pre) });
  }
  if (!isX(t.M)) {
    const M = toNum(t.M!);
    if (isX(t.m)) out.push({ op: '<', v: ver(M + 1, 0, 0, ZERO_PRE) });
    else if (isX(t.p)) out.push({ op: '<', v: ver(M, toNum(t.m!) + 1, 0, ZERO_PRE) });
    else out.push({ op: '<=', v: ver(M, toNum(t.m!), toNum(t.p!), t.pre) });
  }
  return out.length ? out : ['any'];
}

const COMPARATOR = /^(<=|>=|<|>|=|\^|~>|~)?(.*)$/;

/** Parse a range string; throws Error on anything it does not understand. */
export function parseRange(range: string): Range {
  if (typeof range !== 'string' || range.length > 1024) throw new Error('invalid range');
  return range.split('||').map((part) => {
    // node-semver allows whitespace between an operator and its version (`>= 1.2.3`).
    const text = part.trim().replace(/(<=|>=|<|>|=|\^|~>|~)\s+/g, '$1');
    if (text === '') return ['any'];
    const hy = /^(\S+)\s+-\s+(\S+)$/.exec(text);
    if (hy) return hyphen(hy[1]!, hy[2]!);
    const set: Primitive[] = [];
    for (const token of text.split(/\s+/)) {
      const m = COMPARATOR.exec(token)!;
      set.push(...desugar(m[1] ?? '', m[2]!));
    }
    return set;
  });
}

export function validRange(range: string): boolean {
  try {
    parseRange(range);
    return true;
  } catch {
    return false;
  }
}

function test(c: Primitive, v: SemVer): boolean {
  if (c === 'any') return true;
  const r = compare(v, c.v);
  switch (c.op) {
    case '<':
      return r < 0;
    case '<=':
      return r <= 0;
    case '>':
      return r > 0;
    case '>=':
      return r >= 0;
    default:
      return r === 0;
  }
}

function testSet(set: Primitive[], v: SemVer): boolean {
  if (!set.every((c) => test(c, v))) return false;
  if (v.prerelease.length === 0) return true;
  // A prerelease only matches when a comparator of this set names a prerelease of the same
  // [major, minor, patch] (node-semver's default: `1.3.0-beta` does not satisfy `^1.2.0`).
  return set.some(
    (c) => c !== 'any' && c.v.prerelease.length > 0 && c.v.major === v.major && c.v.minor === v.minor && c.v.patch === v.patch,
  );
}

/** Does `version` satisfy `range`? False for an invalid version or range (like node-semver). */
export function satisfies(version: string, range: string | Range): boolean {
  const v = parse(version);
  if (!v) return false;
  let r: Range;
  try {
    r = typeof range === 'string' ? parseRange(range) : range;
  } catch {
    return false;
  }
  return r.some((set) => testSet(set, v));
}
