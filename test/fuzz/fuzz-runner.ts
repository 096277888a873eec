import fc from 'fast-check';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The fuzzing harness of issue 11: every property first replays its kept regression cases
 * (`regressions.json`: concrete counterexamples and the seeds/paths that found them), then runs fresh
 * random cases, bounded by a run count and a time budget so the whole suite stays within seconds.
 *
 * On a failure it prints the seed, the path and the shrunk counterexample, and appends the
 * counterexample to `regressions.json` (commit it: from then on it is replayed on every run).
 * `FUZZ_SEED=<n>` reproduces a run; `FUZZ_RUNS=<n>` scales the random part (e.g. 5000 for a long hunt).
 */

export const REGRESSIONS_FILE = join(dirname(fileURLToPath(import.meta.url)), 'regressions.json');

/** A kept case: a concrete counterexample (`case`), or a seed + path that reproduces one. */
export interface Regression {
  case?: unknown;
  seed?: number;
  path?: string;
  note?: string;
}

type RegressionFile = Record<string, Regression[]>;

/** JSON with bytes: Uint8Array/Buffer become `{"$bytes": "<hex>"}`. */
export function encodeCase(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) => {
      if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
      if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
        return { $bytes: Buffer.from((v as { data: number[] }).data).toString('hex') };
      }
      if (typeof v === 'number' && !Number.isFinite(v)) return { $number: String(v) };
      if (v === undefined) return { $undefined: true };
      return v;
    }),
  );
}

export function decodeCase(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decodeCase);
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.$bytes === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$bytes, 'hex');
    if (typeof o.$number === 'string' && Object.keys(o).length === 1) return Number(o.$number);
    if (o.$undefined === true && Object.keys(o).length === 1) return undefined;
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, decodeCase(v)]));
  }
  return value;
}

function readRegressions(): RegressionFile {
  try {
    return JSON.parse(readFileSync(REGRESSIONS_FILE, 'utf8')) as RegressionFile;
  } catch {
    return {};
  }
}

/** The kept cases of one property (tests may also read them to build fixtures). */
export function regressionsOf(name: string): Regression[] {
  return readRegressions()[name] ?? [];
}

function keep(name: string, entry: Regression): void {
  const all = readRegressions();
  const list = (all[name] ??= []);
  const encoded = JSON.stringify(entry);
  if (!list.some((e) => JSON.stringify(e) === encoded)) list.push(entry);
  writeFileSync(REGRESSIONS_FILE, `${JSON.stringify(all, null, 2)}\n`);
}

const RUN_SCALE = process.env.FUZZ_RUNS ? Math.max(0.01, Number(process.env.FUZZ_RUNS) / 100) : 1;

/** vitest timeout for a test that runs fuzz properties: room for the scaled time budgets of a long hunt. */
export const FUZZ_TEST_TIMEOUT_MS = 60_000 * Math.max(1, RUN_SCALE);

export interface FuzzOptions {
  /** Random cases after the replay (scaled by FUZZ_RUNS). */
  numRuns: number;
  /** Wall-clock budget for the random part; reaching it ends the run without failing it. */
  timeLimitMs: number;
}

/**
 * Replays the kept cases of `name`, then runs `numRuns` fresh ones. `property` is built from the
 * arbitraries; kept cases are given to it as fast-check `examples` (a tuple per case).
 */
export async function fuzz<Ts extends [unknown, ...unknown[]]>(
  name: string,
  arbitraries: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  predicate: (...args: Ts) => Promise<boolean | void> | boolean | void,
  options: FuzzOptions,
): Promise<void> {
  const kept = regressionsOf(name);
  const examples = kept.filter((k) => k.case !== undefined).map((k) => decodeCase(k.case) as Ts);
  const property = fc.asyncProperty(...(arbitraries as unknown as [fc.Arbitrary<unknown>]), async (...args: unknown[]) =>
    predicate(...(args as Ts)),
  ) as unknown as fc.IAsyncProperty<Ts>;

  // 1. Kept counterexamples, all of them, always.
  if (examples.length > 0) {
    const replay = await fc.check(property, { examples, numRuns: examples.length });
    if (replay.failed) throw new Error(`fuzz ${name}: a kept regression case fails again: ${fc.stringify(replay.counterexample)}\n${String(replay.errorInstance ?? '')}`);
  }
  // 2. Kept seeds (a path pins the exact shrunk case while the generators are unchanged).
  for (const k of kept.filter((e) => e.seed !== undefined)) {
    const replay = await fc.check(property, { seed: k.seed!, ...(k.path ? { path: k.path } : {}), numRuns: k.path ? 1 : 10 });
    if (replay.failed) throw new Error(`fuzz ${name}: kept seed ${k.seed} fails again: ${fc.stringify(replay.counterexample)}\n${String(replay.errorInstance ?? '')}`);
  }
  // 3. Fresh random cases.
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (Math.random() * 0x100000000)) | 0;
  const scale = RUN_SCALE;
  const details = await fc.check(property, {
    seed,
    numRuns: Math.max(1, Math.round(options.numRuns * scale)),
    interruptAfterTimeLimit: options.timeLimitMs * Math.max(1, scale),
    markInterruptAsFailure: false,
  });
  if (details.failed) {
    const entry: Regression = {
      case: encodeCase(details.counterexample),
      seed: details.seed,
      path: details.counterexamplePath ?? undefined,
      note: `found ${new Date().toISOString()}`,
    };
    keep(name, entry);
    const message =
      `fuzz ${name} FAILED with seed=${details.seed} path=${details.counterexamplePath}\n` +
      `counterexample: ${fc.stringify(details.counterexample)}\n` +
      `kept in ${REGRESSIONS_FILE} (commit it); reproduce with FUZZ_SEED=${details.seed}\n${String(details.errorInstance ?? '')}`;
    console.error(message);
    throw new Error(message);
  }
}
