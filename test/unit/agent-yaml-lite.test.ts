import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseYamlLite, YamlLiteError } from '../../agent/yaml-lite.js';

/** The reference: the `yaml` package (dev/test only; the agent may not load it at run time). */
function expectSameAsYaml(source: string): void {
  expect(parseYamlLite(source)).toEqual(parseYaml(source));
}

describe('yaml-lite agrees with the yaml package', () => {
  it('on agent/agent.example.yaml', () => {
    const source = readFileSync(new URL('../../agent/agent.example.yaml', import.meta.url), 'utf8');
    const parsed = parseYamlLite(source);
    expect(parsed).toEqual(parseYaml(source));
    expect(parsed).toMatchObject({ deviceId: 'gw-0001', reconnect: { minMs: 1000, maxMs: 60000 } });
  });

  const cases: Array<[string, string]> = [
    ['nested mappings', 'a:\n  b:\n    c: 1\n  d: two\ne: 3\n'],
    ['sequence of scalars', 'list:\n  - one\n  - 2\n  - true\n  - ~\n'],
    ['sequence at the same indentation as its key', 'list:\n- a\n- b\nnext: 1\n'],
    ['sequence of mappings', 'items:\n  - name: a\n    command: "echo hi"\n    timeoutMs: 100\n  - name: b\n    command: x\n'],
    ['sequence of mappings with a nested mapping', 'items:\n  - name: a\n    opts:\n      deep: yes\n      n: 1\n  - name: b\n'],
    ['nested sequences', 'm:\n  - - a\n    - b\n  - - c\n'],
    ['dash on its own line', 'l:\n  -\n    k: v\n  -\n'],
    ['empty values are null', 'a:\nb: ~\nc: null\nd: Null\n'],
    ['booleans of the core schema', 'a: true\nb: False\nc: TRUE\nd: yes\ne: no\nf: on\n'],
    ['integers', 'a: 0\nb: -17\nc: +5\nd: 0x1F\ne: 0o17\nf: 007\n'],
    ['floats', 'a: 0.2\nb: -1.5e3\nc: .5\nd: 1.\ne: .inf\nf: -.Inf\ng: 1e3\n'],
    ['strings that look almost like numbers', 'a: 1.2.3\nb: 0x\nc: 12abc\nd: "42"\ne: v2.3.1\n'],
    ['double-quoted escapes', 'a: "tab\\there \\"q\\" \\\\ \\u00e9 \\x41 # not a comment"\n'],
    ['single-quoted strings', "a: 'it''s # not a comment'\nb: ''\n"],
    ['comments everywhere', '# top\na: 1 # trailing\n  # indented comment\nb:   # after key\n  c: 2\n# end\n'],
    ['urls and colons without a space', 'u: mqtt://host:1883/x\nt: 12:30\nw: a:b\n'],
    ['quoted keys', '"a b": 1\n\'c\': 2\n'],
    ['hash inside a plain scalar', 'a: x#y\nb: echo a#b\n'],
    ['empty flow collections', 'a: []\nb: {}\n'],
    ['flow sequence of scalars', 'a: [1, two, "three", \'four\', true, ~]\nb: [ x ,y, ]\n'],
    ['document markers', '---\na: 1\n...\n'],
    ['CRLF line endings', 'a: 1\r\nb:\r\n  - x\r\n'],
    ['trailing spaces and blank lines', 'a: 1   \n\n\nb: two  \n'],
    ['a plain string with spaces and dashes', 'cmd: test -w /var/lib/x && echo ok - fine\n'],
    ['values after a deeper block return to the parent', 'a:\n  b:\n    - 1\n  c: 2\nd: 3\n'],
    ['empty document', '# only a comment\n'],
    ['a deeply indented mapping', 'a:\n      b: 1\n      c: 2\n'],
  ];
  it.each(cases)('%s', (_name, source) => expectSameAsYaml(source));
});

describe('yaml-lite refuses what it does not support, naming the line', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['tabs in indentation', 'a:\n\tb: 1\n', /line 2: tabs/],
    ['anchors', 'a: &x 1\n', /line 1: anchors/],
    ['aliases', 'a: 1\nb: *x\n', /line 2: anchors and aliases/],
    ['tags', 'a: !!str 1\n', /tags/],
    ['block scalars', 'a: |\n  text\n', /block scalars/],
    ['duplicate keys', 'a: 1\na: 2\n', /line 2: duplicate key "a"/],
    ['unterminated quotes', 'a: "abc\n', /unterminated/],
    ['bad indentation', 'a: 1\n  b: 2\n', /line 2: unexpected indentation/],
    ['a sequence item inside a mapping', 'a: 1\n- b\n', /sequence item where a mapping key/],
    ['flow mappings with content', 'a: { b: 1 }\n', /flow mappings/],
    ['nested flow collections', 'a: [[1]]\n', /nested flow/],
    ['": " in a plain value', 'cmd: echo a: b\n', /quote it/],
    ['text after a quoted value', 'a: "x" y\n', /after a quoted string/],
    ['unknown escapes', 'a: "\\q"\n', /unknown escape/],
    ['multiple documents', 'a: 1\n---\nb: 2\n', /one document/],
    ['complex keys', '? a\n: b\n', /complex keys/],
  ];
  it.each(bad)('%s', (_name, source, message) => {
    expect(() => parseYamlLite(source)).toThrow(YamlLiteError);
    expect(() => parseYamlLite(source)).toThrow(message);
  });

  it('treats a __proto__ key as data', () => {
    const parsed = parseYamlLite('__proto__:\n  polluted: 1\n') as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(parsed, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
