/**
 * PROTOCOL.md "Command line": the agent "needs only Node.js and the mqtt package at run time", and
 * STYLE.md: `agent/` may import only `src/protocol/` (the dependency-free names/topics/types) and
 * `patches/`. This walks the import graph from every agent/*.ts file and fails on anything else,
 * so a stray `import { z } from 'zod'` (or pino, yaml, semver...) deep in patches/ is caught here.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

// PROTOCOL.md "Command line": small pure-JS packages `mqtt` and `semver` (one version matching on both sides).
// mqtt/lib/client: the client class alone, without the transports agent/mqtt-client.ts does not use.
const ALLOWED_PACKAGES = new Set(['mqtt', 'mqtt/lib/client', 'semver']);
// rfc3339.ts: the one strict date parser (issue 11); backoff.ts: the one backoff (STYLE.md); dependency-free like the rest.
const ALLOWED_PROTOCOL = new Set(['src/protocol/names.ts', 'src/protocol/topics.ts', 'src/protocol/types.ts', 'src/protocol/rfc3339.ts', 'src/protocol/backoff.ts']);
/** Loaded by agent/main.ts only if present (the patch job is built separately). */
const OPTIONAL = new Set(['agent/patch-port-impl.ts']);

/** Every module specifier in a file: static imports/exports, `import('x')`, and relative `.js` string literals
 *  (which covers `const specifier = './patch-port-impl.js'; await import(specifier)`). */
export function specifiersOf(source: string): string[] {
  const found = new Set<string>();
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?(?:[\w$*{}\s,]+?\s+from\s+)?['"]([^'"\n]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"\n]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"\n]+)['"]\s*\)/g,
    /['"](\.{1,2}\/[^'"\n]+\.js)['"]/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.add(m[1]!);
  return [...found];
}

/** Walk from `roots` (absolute .ts paths); return the violations as `from -> specifier: why`. */
export function checkImportGraph(root: string, roots: string[]): { visited: string[]; violations: string[] } {
  const violations: string[] = [];
  const visited = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (visited.has(file)) continue;
    visited.add(file);
    const rel = relative(root, file).split(sep).join('/');
    for (const spec of specifiersOf(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) {
        if (!ALLOWED_PACKAGES.has(spec)) violations.push(`${rel} -> ${spec}: package not allowed in the agent`);
        continue;
      }
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      const targetRel = relative(root, target).split(sep).join('/');
      const allowed = targetRel.startsWith('agent/') || targetRel.startsWith('patches/') || ALLOWED_PROTOCOL.has(targetRel);
      if (!allowed) {
        violations.push(`${rel} -> ${spec}: ${targetRel} is outside agent/, patches/ and src/protocol/{names,topics,types}.ts`);
        continue;
      }
      if (!existsSync(target)) {
        if (!OPTIONAL.has(targetRel)) violations.push(`${rel} -> ${spec}: ${targetRel} does not exist`);
        continue;
      }
      queue.push(target);
    }
  }
  return { visited: [...visited].map((f) => relative(root, f).split(sep).join('/')).sort(), violations };
}

function agentRoots(root: string): string[] {
  return readdirSync(join(root, 'agent'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(root, 'agent', f));
}

describe('agent import graph', () => {
  it('reaches only mqtt, node: built-ins, src/protocol/{names,topics,types}.ts and patches/', () => {
    const { visited, violations } = checkImportGraph(repo, agentRoots(repo));
    expect(violations).toEqual([]);
    expect(visited).toContain('agent/main.ts');
    expect(visited).toContain('patches/tree-digest.ts');
    expect(visited).toContain('src/protocol/topics.ts');
  });

  describe('the checker itself', () => {
    const fixture = mkdtempSync(join(tmpdir(), 'import-graph-'));
    afterAll(() => rmSync(fixture, { recursive: true, force: true }));
    const write = (rel: string, text: string) => {
      mkdirSync(dirname(join(fixture, rel)), { recursive: true });
      writeFileSync(join(fixture, rel), text);
    };

    it('finds a forbidden package two hops away, through patches/', () => {
      write('agent/main.ts', "import { x } from './a.js';\nimport mqtt from 'mqtt';\nimport { readFileSync } from 'node:fs';\n");
      write('agent/a.ts', "export { y } from '../patches/verify.js';\nimport type { T } from '../src/protocol/types.js';\n");
      write('patches/verify.ts', "import semver from 'semver';\nimport pino from 'pino';\nimport {\n  z,\n} from 'zod';\n");
      write('src/protocol/types.ts', 'export type T = 1;\n');
      const { violations } = checkImportGraph(fixture, [join(fixture, 'agent/main.ts')]);
      expect(violations).toEqual([
        'patches/verify.ts -> pino: package not allowed in the agent',
        'patches/verify.ts -> zod: package not allowed in the agent',
      ]);
    });

    it('refuses src/ outside the three protocol files, bare built-ins and dynamic imports', () => {
      write('agent/main.ts', "import { s } from '../src/protocol/schemas.js';\nimport fs from 'fs';\nconst p = await import('pino');\nconst q = './b.js';\n");
      write('agent/b.ts', "import { log } from '../src/log.js';\n");
      write('src/protocol/schemas.ts', '');
      write('src/log.ts', '');
      const { violations } = checkImportGraph(fixture, [join(fixture, 'agent/main.ts')]);
      expect(violations).toEqual([
        'agent/main.ts -> ../src/protocol/schemas.js: src/protocol/schemas.ts is outside agent/, patches/ and src/protocol/{names,topics,types}.ts',
        'agent/main.ts -> fs: package not allowed in the agent',
        'agent/main.ts -> pino: package not allowed in the agent',
        'agent/b.ts -> ../src/log.js: src/log.ts is outside agent/, patches/ and src/protocol/{names,topics,types}.ts',
      ]);
    });
  });
});
