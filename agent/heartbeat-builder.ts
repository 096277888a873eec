/**
 * Builds one Heartbeat (PROTOCOL.md "Heartbeat") per beat: counters, versions, the integrity digest
 * of the software tree, `node:os` health, probe results and the patch state.
 *
 * Every input that can fail (version file, digest, statfs, probes) degrades to a missing or
 * `ok:false` field with a log line; `build()` itself never rejects, so a broken device still
 * heartbeats and the daemon sees what is broken.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { computeTreeDigest, computeTreeFingerprint } from '../patches/tree-digest.js';
import type { Heartbeat, HeartbeatPatch, SensorReport, SubsystemReport } from '../src/protocol/types.js';
import { MIN_INTERVAL_S } from '../src/protocol/names.js';
import type { SensorConfig, SubsystemConfig } from './config.js';
import type { AgentLogger } from './log.js';
import { runProbes, type ProbeResult } from './probe.js';

export interface HeartbeatBuilderDeps {
  intervalS: number;
  agentVersion: string;
  softwareVersionFile: string;
  softwareDir: string;
  subsystems: readonly SubsystemConfig[];
  sensors: readonly SensorConfig[];
  /** Latest patch state, from the patch port. */
  patchField?: () => HeartbeatPatch | undefined;
  log: AgentLogger;
  now?: () => number;
  /** Cancels running probes when the agent stops. */
  signal?: AbortSignal;
}

/** What the daemon stores for softwareVersion (heartbeatSchema: 1..64 chars). */
const MAX_VERSION = 64;
export const UNKNOWN_VERSION = 'unknown';

interface CpuSample {
  idle: number;
  total: number;
}

export class HeartbeatBuilder {
  /** Random per process start, so the daemon can tell a restart from a gap. */
  readonly bootId = randomUUID();
  private seq = 0;
  private lastCpu: CpuSample | undefined;
  private digestCache: { fingerprint: string; digest: string } | undefined;
  private digestFailureLogged = false;

  constructor(private readonly deps: HeartbeatBuilderDeps) {}

  /** Forget the cached integrity digest; the next beat rehashes the tree (after a patch install). */
  invalidate(): void {
    this.digestCache = undefined;
  }

  async build(): Promise<Heartbeat> {
    const now = this.deps.now ?? Date.now;
    const seq = ++this.seq;
    const [integrity, subsystems, sensors] = await Promise.all([
      this.integrity(),
      runProbes(this.deps.subsystems, this.deps.signal),
      runProbes(this.deps.sensors, this.deps.signal),
    ]);
    const hb: Heartbeat = {
      seq,
      ts: new Date(now()).toISOString(),
      bootId: this.bootId,
      // The daemon refuses an interval under MIN_INTERVAL_S (issue 11); beating faster than announced is safe.
      intervalS: Math.max(MIN_INTERVAL_S, this.deps.intervalS),
      uptimeS: Math.floor(os.uptime()),
      agentVersion: this.deps.agentVersion,
      softwareVersion: this.softwareVersion(),
      ...(integrity !== undefined ? { integrity } : {}),
      health: this.health(),
    };
    if (this.deps.subsystems.length > 0) {
      hb.subsystems = this.deps.subsystems.map((s, i): SubsystemReport => report({ name: s.name }, subsystems[i]!));
    }
    if (this.deps.sensors.length > 0) {
      hb.sensors = this.deps.sensors.map((s, i): SensorReport => report({ id: s.id }, sensors[i]!));
    }
    const patch = this.patchField();
    if (patch) hb.patch = patch;
    return hb;
  }

  /** Read on every beat so an install shows at once. */
  softwareVersion(): string {
    return readSoftwareVersion(this.deps.softwareVersionFile, this.deps.log);
  }

  private patchField(): HeartbeatPatch | undefined {
    try {
      return this.deps.patchField?.();
    } catch (err) {
      this.deps.log.warn('patch port failed to report its state', { err });
      return undefined;
    }
  }

  private async integrity(): Promise<string | undefined> {
    const dir = this.deps.softwareDir;
    try {
      // Hashing a large tree every beat would cost real CPU on small devices; the fingerprint
      // (lstat of every entry) is cheap and changes whenever a file is rewritten.
      const fingerprint = await computeTreeFingerprint(dir);
      if (this.digestCache?.fingerprint === fingerprint) return this.digestCache.digest;
      const digest = await computeTreeDigest(dir);
      // Only cache when the tree did not change while it was being hashed.
      if ((await computeTreeFingerprint(dir)) === fingerprint) this.digestCache = { fingerprint, digest };
      this.digestFailureLogged = false;
      return digest;
    } catch (err) {
      if (!this.digestFailureLogged) this.deps.log.warn('cannot compute the software integrity digest', { dir, err });
      this.digestFailureLogged = true;
      this.digestCache = undefined;
      return undefined;
    }
  }

  private health(): NonNullable<Heartbeat['health']> {
    const health: NonNullable<Heartbeat['health']> = {};
    const cpu = this.cpuUsage();
    if (cpu !== undefined) health.cpu = round(cpu);
    const total = os.totalmem();
    if (total > 0) health.memUsed = round(clamp01(1 - os.freemem() / total));
    const disk = diskUsed(this.deps.softwareDir);
    if (disk !== undefined) health.diskUsed = round(disk);
    const load1 = os.loadavg()[0];
    if (load1 !== undefined && Number.isFinite(load1)) health.load1 = round(Math.max(0, load1));
    return health;
  }

  /** Busy share of all CPUs since the previous beat (the first beat: since boot). */
  private cpuUsage(): number | undefined {
    const sample = cpuSample();
    const prev = this.lastCpu ?? { idle: 0, total: 0 };
    this.lastCpu = sample;
    const total = sample.total - prev.total;
    if (total <= 0) return undefined;
    return clamp01(1 - (sample.idle - prev.idle) / total);
  }
}

export function readSoftwareVersion(file: string, log?: AgentLogger): string {
  try {
    const version = readFileSync(file, 'utf8').trim().split(/\r?\n/, 1)[0]!.trim();
    if (version !== '') return version.slice(0, MAX_VERSION);
    log?.warn('software version file is empty', { file });
  } catch (err) {
    log?.warn('cannot read the software version file', { file, err });
  }
  return UNKNOWN_VERSION;
}

function report<T extends object>(base: T, result: ProbeResult): T & { ok: boolean; detail: string } {
  return { ...base, ok: result.ok, detail: result.detail };
}

function cpuSample(): CpuSample {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

/** Used share of the file system holding `dir`, as `df` computes it (blocks reserved for root excluded). */
function diskUsed(dir: string): number | undefined {
  try {
    const st = statfsSync(dir);
    const used = st.blocks - st.bfree;
    const denominator = used + st.bavail;
    if (denominator <= 0) return undefined;
    return clamp01(used / denominator);
  } catch {
    return undefined;
  }
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
