import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ctl, eventually, ROOT, startDaemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { agentNodeBinaries, buildAgentBundle, rssKiB, spawnAgentProgram, writeAgentDir } from '../helpers/agent-bundle.js';

/**
 * Idle RSS of the edge agent (issue 10: at most 50 MB at a 10 s interval; bare Node is ~39-43 MB).
 * The real daemon, one provisioned gateway, the agent connected and heartbeating every
 * BENCH_AGENT_INTERVAL_S (10) seconds; RSS is sampled from /proc every 5 s over BENCH_AGENT_SECONDS (60),
 * after the first heartbeat, and the highest sample is reported. Measured for the release bundle
 * (dist-agent/xcare-agent.cjs) on every Node in agentNodeBinaries(), for the unbundled dist/ agent,
 * and for a bare `node` that does nothing, so the agent's own share is visible.
 */
export async function runAgentRssBench(opts: { seconds?: number; intervalS?: number; log?: (s: string) => void } = {}) {
  const seconds = opts.seconds ?? Number(process.env.BENCH_AGENT_SECONDS ?? 60);
  const intervalS = opts.intervalS ?? Number(process.env.BENCH_AGENT_INTERVAL_S ?? 10);
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const dir = tempDir('xcare-bench-agent-');
  const results: Record<string, { maxRssMiB: number; anonMiB: number; fileMiB: number }> = {};
  try {
    const bundle = await buildAgentBundle(join(dir.path, 'dist-agent'));
    const daemon = await startDaemon(join(dir.path, 'daemon'));
    try {
      const variants = [
        ...agentNodeBinaries().map((n) => ({ name: `bundle on ${n.name}`, node: n.path, program: bundle })),
        { name: `dist/ agent on node ${process.version}`, node: process.execPath, program: join(ROOT, 'bin/xcare-agent.js') },
      ];
      let n = 0;
      for (const v of variants) {
        const deviceId = `rss-${++n}`;
        const added = await ctl(daemon, ['device', 'add', deviceId, '--type', 'gateway', '--customer', 'bench', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
        const token = (JSON.parse(added.stdout) as { token: string }).token;
        const agentDir = writeAgentDir(join(dir.path, deviceId), { deviceId, token, brokerUrl: `mqtt://127.0.0.1:${daemon.mqttPort}`, daemonUrl: daemon.url, intervalS });
        const agent = spawnAgentProgram(v.node, v.program, agentDir.configFile, agentDir.dir);
        try {
          await eventually(() => agent.output().includes('"connected"'), 30_000, `${v.name} to connect`).catch((err: Error) => {
            throw new Error(`${err.message}: ${agent.output()}`);
          });
          results[v.name] = await sample(agent.proc.pid!, seconds);
        } finally {
          await agent.stop();
        }
        log(`${v.name.padEnd(40)} max RSS ${results[v.name]!.maxRssMiB.toFixed(1)} MiB (anon ${results[v.name]!.anonMiB.toFixed(1)}, file ${results[v.name]!.fileMiB.toFixed(1)})`);
      }
    } finally {
      await daemon.stop();
    }
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      results[`bare node ${process.version}`] = await sample(bare.pid!, Math.min(seconds, 15));
    } finally {
      bare.kill('SIGKILL');
    }
    log(`${`bare node ${process.version}`.padEnd(40)} max RSS ${results[`bare node ${process.version}`]!.maxRssMiB.toFixed(1)} MiB`);
    return { intervalS, seconds, limitMiB: 50, results };
  } finally {
    dir.cleanup();
  }
}

async function sample(pid: number, seconds: number): Promise<{ maxRssMiB: number; anonMiB: number; fileMiB: number }> {
  let max = { rss: 0, anon: 0, file: 0 };
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 5000));
    const now = rssKiB(pid);
    if (now.rss > max.rss) max = now;
  }
  return { maxRssMiB: max.rss / 1024, anonMiB: max.anon / 1024, fileMiB: max.file / 1024 };
}
