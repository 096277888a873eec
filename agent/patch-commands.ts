import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface CommandResult {
  ok: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last few KiB of stdout+stderr, for the status detail and the log. */
  output: string;
}

const TAIL_BYTES = 4096;

/** A running command's process group, as persisted so a restarted agent can end what it left behind. */
export interface CommandGroup {
  /** Process group id (= the pid of the `sh` we spawned, detached). */
  pgid: number;
  /** Start time of that process in clock ticks since boot (/proc/<pid>/stat field 22), to tell pid reuse; null off Linux. */
  startTicks: number | null;
}

/**
 * Run one configured install/check/rollback command (Mender update-module style) with `sh -c`,
 * in its own process group so a timeout, a cancel or a restarted agent can end the whole tree
 * (issue 9 fault 7), never the agent. `onSpawn` gets the group BEFORE anything is awaited, so the
 * caller can persist it; `signal` kills the group (cancel, agent stop).
 */
export function runCommand(
  command: string,
  opts: { cwd: string; env: Record<string, string>; timeoutMs: number; onSpawn?: (group: CommandGroup) => void; signal?: AbortSignal },
): Promise<CommandResult> {
  return new Promise((resolvePromise) => {
    let output = '';
    let timedOut = false;
    const child = spawn('sh', ['-c', command], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    if (child.pid) {
      try {
        opts.onSpawn?.({ pgid: child.pid, startTicks: processStartTicks(child.pid) });
      } catch {
        // persisting is best effort here; the caller logs
      }
    }
    const onAbort = () => killGroup();
    if (opts.signal?.aborted) killGroup();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      opts.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      resolvePromise({ ok: false, code: null, signal: null, timedOut, output: `${output}${err.message}` });
    });
    child.on('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      resolvePromise({ ok: code === 0 && !timedOut, code, signal, timedOut, output: output.trim() });
    });
  });
}

export function describeResult(name: string, r: CommandResult): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exited ${r.code}`;
  const tail = r.output ? `: ${r.output.split('\n').slice(-3).join(' | ').slice(0, 300)}` : '';
  return `${name} ${how}${tail}`;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), or null when unavailable. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/**
 * Is any process of this group alive (zombies do not count: an orphan's parent may never reap it, e.g. a
 * container's pid 1)? Scans /proc on Linux; elsewhere asks the kernel with signal 0.
 */
function groupAlive(pgid: number): boolean {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/**
 * End a command group a previous agent process left running (kill -9 of the agent alone: the detached
 * install kept going). SIGKILL to the group, then wait until it is gone (bounded), so nothing writes into the
 * tree while the rollback restores it. Skipped when the group leader is a different process now (pid reuse).
 * Returns true when nothing of the group is left.
 */
export async function endLeftoverGroup(group: CommandGroup, waitMs = 10_000): Promise<boolean> {
  const leaderTicks = processStartTicks(group.pgid);
  // The leader may be gone while its children still run: kill the group unless the pid is a different process.
  if (leaderTicks !== null && group.startTicks !== null && leaderTicks !== group.startTicks) return true;
  try {
    process.kill(-group.pgid, 'SIGKILL');
  } catch {
    return true; // no such group
  }
  const deadline = Date.now() + waitMs;
  while (groupAlive(group.pgid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
