import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeTreeDigest, computeTreeFingerprint } from '../../patches/tree-digest.js';

const root = mkdtempSync(join(tmpdir(), 'tree-digest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

type Spec = Array<[string, string | { link: string } | 'dir']>;
function makeTree(spec: Spec): string {
  const dir = join(root, `t${n++}`);
  mkdirSync(dir);
  for (const [rel, content] of spec) {
    const abs = join(dir, rel);
    mkdirSync(join(abs, '..'), { recursive: true });
    if (content === 'dir') mkdirSync(abs, { recursive: true });
    else if (typeof content === 'string') writeFileSync(abs, content);
    else symlinkSync(content.link, abs);
  }
  return dir;
}

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const base: Spec = [
  ['VERSION', '2.3.1\n'],
  ['bin/run', '#!/bin/sh\necho hi\n'],
  ['lib/a.js', 'export const a = 1;\n'],
  ['lib/b.js', 'export const b = 2;\n'],
];

describe('computeTreeDigest', () => {
  it('matches the documented definition', async () => {
    const dir = makeTree([['b', 'B'], ['a/x', 'X'], ['l', { link: 'b' }]]);
    const lines = `a/x\0${sha('X')}\nb\0${sha('B')}\nl\0link:b\n`;
    expect(await computeTreeDigest(dir)).toBe(`sha256:${sha(lines)}`);
  });

  it('is stable: the same tree twice gives the same digest', async () => {
    const dir = makeTree(base);
    const first = await computeTreeDigest(dir);
    expect(first).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await computeTreeDigest(dir)).toBe(first);
  });

  it('does not depend on creation order', async () => {
    const a = makeTree(base);
    const b = makeTree([...base].reverse());
    expect(await computeTreeDigest(b)).toBe(await computeTreeDigest(a));
  });

  it('changes when one byte of one file changes', async () => {
    const a = makeTree(base);
    const b = makeTree(base.map(([p, c]) => (p === 'lib/b.js' ? [p, 'export const b = 3;\n'] : [p, c])));
    expect(await computeTreeDigest(b)).not.toBe(await computeTreeDigest(a));
  });

  it('changes when a file is renamed', async () => {
    const a = makeTree(base);
    const b = makeTree(base.map(([p, c]) => (p === 'lib/a.js' ? ['lib/c.js', c] : [p, c])));
    expect(await computeTreeDigest(b)).not.toBe(await computeTreeDigest(a));
  });

  it('hashes a symlink by its target, without following it', async () => {
    const a = makeTree([...base, ['current', { link: 'lib' }]]);
    const b = makeTree([...base, ['current', { link: 'bin' }]]);
    const c = makeTree([...base, ['current', { link: 'lib' }]]);
    expect(await computeTreeDigest(a)).not.toBe(await computeTreeDigest(b));
    expect(await computeTreeDigest(a)).toBe(await computeTreeDigest(c));
    // a dangling link is fine too
    const d = makeTree([...base, ['current', { link: 'missing' }]]);
    expect(await computeTreeDigest(d)).toMatch(/^sha256:/);
  });

  it('ignores empty directories and sorts by bytes, not locale', async () => {
    const a = makeTree([['B', '1'], ['a', '2'], ['é', '3']]);
    const b = makeTree([['é', '3'], ['a', '2'], ['B', '1'], ['empty', 'dir']]);
    expect(await computeTreeDigest(b)).toBe(await computeTreeDigest(a));
    const lines = `B\0${sha('1')}\na\0${sha('2')}\né\0${sha('3')}\n`;
    expect(await computeTreeDigest(a)).toBe(`sha256:${sha(lines)}`);
  });

  it('hashes the empty string for an empty tree and rejects a missing one', async () => {
    expect(await computeTreeDigest(makeTree([]))).toBe(`sha256:${sha('')}`);
    await expect(computeTreeDigest(join(root, 'does-not-exist'))).rejects.toThrow(/ENOENT/);
  });

  it('fingerprint changes when a file is rewritten, even with the same size', async () => {
    const dir = makeTree(base);
    const before = await computeTreeFingerprint(dir);
    expect(await computeTreeFingerprint(dir)).toBe(before);
    await new Promise((r) => setTimeout(r, 15));
    writeFileSync(join(dir, 'lib/a.js'), 'export const a = 9;\n');
    expect(await computeTreeFingerprint(dir)).not.toBe(before);
  });
});
