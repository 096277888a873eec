#!/usr/bin/env node
/**
 * `npm run build:agent`: the agent's release artifact (issue 10 "an installable agent"), in dist-agent/:
 *
 *   xcare-agent.cjs       one executable file: agent/, patches/, src/protocol/ and the `mqtt` package,
 *                         bundled by esbuild for Node 18 (Raspberry Pi OS bookworm) and later
 *   xcare-agent.service   the systemd unit (deploy/systemd/xcare-agent.service)
 *   agent.example.yaml    the example configuration (agent/agent.example.yaml)
 *   SHA256SUMS            sha256 of the three files above, for the install instructions
 *
 * The bundle is CommonJS on purpose, and named .cjs so that Node reads it as CommonJS wherever it lies
 * (even under a package.json with "type": "module", like this repository's), with no package.json beside
 * it; mqtt.js is CommonJS itself. It is minified because every byte of source stays
 * in the V8 heap for the life of the process, and the agent must idle under 50 MB RSS.
 *
 * Usage: node scripts/build-agent.mjs [--out DIR]
 */
import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = resolve(values.out ?? join(root, 'dist-agent'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const bundle = join(out, 'xcare-agent.cjs');
const result = await build({
  entryPoints: [join(root, 'agent/main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  banner: { js: `#!/usr/bin/env node\n// xcare-agent ${pkg.version} (bundled with mqtt; see https://github.com/mqttjs/MQTT.js for its MIT licence)` },
  metafile: true,
  logLevel: 'warning',
});

// The agent may use nothing but Node built-ins at run time once bundled: an external import would
// fail on a device with no node_modules. esbuild marks node: built-ins external; anything else is a bug,
// except `debug`'s optional `require('supports-color')`, which sits in a try/catch (colours only).
const OPTIONAL = new Set(['supports-color']);
const externals = Object.values(result.metafile.outputs)
  .flatMap((o) => o.imports ?? [])
  .filter((i) => i.external && !i.path.startsWith('node:') && !isBuiltin(i.path) && !OPTIONAL.has(i.path));
if (externals.length > 0) {
  process.stderr.write(`build-agent: the bundle imports packages it does not contain: ${externals.map((i) => i.path).join(', ')}\n`);
  process.exit(1);
}
chmodSync(bundle, 0o755);
copyFileSync(join(root, 'deploy/systemd/xcare-agent.service'), join(out, 'xcare-agent.service'));
copyFileSync(join(root, 'agent/agent.example.yaml'), join(out, 'agent.example.yaml'));
const sums = ['xcare-agent.cjs', 'xcare-agent.service', 'agent.example.yaml']
  .map((f) => `${createHash('sha256').update(readFileSync(join(out, f))).digest('hex')}  ${f}\n`)
  .join('');
writeFileSync(join(out, 'SHA256SUMS'), sums);
const size = readFileSync(bundle).length;
process.stdout.write(`dist-agent: ${bundle} (${(size / 1024).toFixed(0)} KiB), xcare-agent.service, agent.example.yaml, SHA256SUMS\n`);

function isBuiltin(name) {
  return /^(assert|buffer|child_process|crypto|dns|events|fs|http|https|net|os|path|process|stream|string_decoder|timers|tls|tty|url|util|worker_threads|zlib)(\/|$)/.test(name);
}
