/**
 * `npm run bench`: every benchmark in turn, printing its figures. Benchmarks measure; they never
 * fail the build. Choose a subset with BENCH=ingest,evaluator,rollout,artifact,console,detection,rollout-soak,scale,agent-rss,store.
 */
const all: Record<string, () => Promise<unknown>> = {
  ingest: async () => (await import('./ingest-bench.js')).runIngestBench(),
  evaluator: async () => (await import('./evaluator-bench.js')).runEvaluatorBench(),
  rollout: async () => (await import('./rollout-bench.js')).runRolloutBench(),
  artifact: async () => (await import('./artifact-bench.js')).runArtifactBench(),
  console: async () => (await import('./console-bench.js')).runConsoleBench(),
  detection: async () => (await import('./detection-bench.js')).runDetectionBench(),
  'rollout-soak': async () => (await import('./rollout-soak.js')).runRolloutSoak(),
  scale: async () => (await import('./scale-bench.js')).runScaleBench(),
  'agent-rss': async () => (await import('./agent-rss-bench.js')).runAgentRssBench(),
  store: async () => (await import('./store-bench.js')).runStoreBench(),
};

const wanted = (process.env.BENCH ?? Object.keys(all).join(',')).split(',').map((s) => s.trim());
const summary: Record<string, unknown> = {};
for (const name of wanted) {
  const bench = all[name];
  if (!bench) {
    process.stderr.write(`unknown benchmark ${name}; known: ${Object.keys(all).join(', ')}\n`);
    process.exitCode = 2;
    continue;
  }
  process.stdout.write(`\n=== ${name} ===\n`);
  const started = performance.now();
  summary[name] = await bench();
  process.stdout.write(`(${name}: ${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
}
process.stdout.write(`\n=== summary (JSON) ===\n${JSON.stringify(summary, null, 2)}\n`);
process.exit(process.exitCode ?? 0);
