/**
 * Preloaded into the Node targets of the ingest benchmark (`--expose-gc --import`): SIGUSR2 runs a full
 * garbage collection, so the bench can read the memory the connected devices hold apart from the garbage
 * the load left (issue 12: memory per device). Benchmarks only; the daemon never loads it.
 */
process.on('SIGUSR2', () => {
  (globalThis as { gc?: (options?: { type: 'major'; execution: 'sync' }) => void }).gc?.();
});
