import { writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startDaemon, ROOT } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);

/**
 * Artifact download throughput (issue 5): the real daemon serves one signed artifact to N devices
 * downloading at once over HTTP with device Basic auth, as agents do during a 100 % wave.
 */
export async function runArtifactBench(opts: { downloads?: number; sizeMiB?: number; log?: (s: string) => void } = {}) {
  const downloads = opts.downloads ?? Number(process.env.BENCH_DOWNLOADS ?? 100);
  const sizeMiB = opts.sizeMiB ?? Number(process.env.BENCH_ARTIFACT_MIB ?? 8);
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const dir = tempDir('xcare-bench-artifact-');
  const ctl = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [join(ROOT, 'bin/xcarectl.js'), ...args], { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  try {
    const keys = join(dir.path, 'keys');
    await ctl(['keygen', '--out', keys]);
    const daemon = await startDaemon(join(dir.path, 'daemon'), `patches: { releaseKeys: [${join(keys, 'public.pem')}] }\n`);
    const env = { XCARE_URL: daemon.url, XCARE_TOKEN: daemon.adminToken };
    try {
      const out = join(dir.path, 'patch');
      mkdirSync(out);
      const artifact = join(out, 'bench.bin');
      writeFileSync(artifact, randomBytes(sizeMiB * 1024 * 1024));
      await ctl(['patch', 'sign', '--key', join(keys, 'private.pem'), '--artifact', artifact, '--id', 'bench-1.0.1', '--version', '1.0.1', '--types', 'gateway', '--applies', '>=1.0.0 <1.0.1', '--expires', '1d', '--out', out]);
      await ctl(['patch', 'publish', '--manifest', join(out, 'bench-1.0.1.manifest.json'), '--sig', join(out, 'bench-1.0.1.sig'), '--artifact', artifact], env);
      const devices = Array.from({ length: downloads }, (_, i) => ({ id: `dl-${i}`, type: 'gateway', customer: 'bench', installer: 'minnovation', tier: 'xcare' }));
      const auth = { authorization: `Bearer ${daemon.adminToken}`, 'content-type': 'application/json' };
      const imported = (await (await fetch(`${daemon.url}/api/v1/devices/import`, { method: 'POST', headers: auth, body: JSON.stringify({ devices }) })).json()) as {
        devices: { id: string; token: string }[];
      };
      for (const d of imported.devices) {
        const res = await fetch(`${daemon.url}/api/v1/devices/${d.id}/offer`, { method: 'POST', headers: auth, body: JSON.stringify({ patchId: 'bench-1.0.1' }) });
        if (!res.ok) throw new Error(`offer ${d.id}: HTTP ${res.status} ${await res.text()}`);
      }
      const started = performance.now();
      const times = await Promise.all(
        imported.devices.map(async (d) => {
          const t0 = performance.now();
          const res = await fetch(`${daemon.url}/patches/bench-1.0.1/artifact`, {
            headers: { authorization: `Basic ${Buffer.from(`${d.id}:${d.token}`).toString('base64')}` },
          });
          if (!res.ok) throw new Error(`download ${d.id}: HTTP ${res.status}`);
          let bytes = 0;
          for await (const chunk of res.body!) bytes += (chunk as Uint8Array).length;
          if (bytes !== sizeMiB * 1024 * 1024) throw new Error(`download ${d.id}: ${bytes} bytes`);
          return performance.now() - t0;
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      times.sort((a, b) => a - b);
      const summary = {
        downloads,
        artifactMiB: sizeMiB,
        totalSeconds: Number(seconds.toFixed(2)),
        throughputMiBPerS: Number(((downloads * sizeMiB) / seconds).toFixed(1)),
        perDownloadP50Ms: Math.round(times[Math.floor(times.length / 2)]!),
        perDownloadMaxMs: Math.round(times[times.length - 1]!),
      };
      log('artifact download summary:');
      for (const [k, v] of Object.entries(summary)) log(`  ${k.padEnd(20)} ${v}`);
      return summary;
    } finally {
      await daemon.stop();
    }
  } finally {
    dir.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runArtifactBench();
}
