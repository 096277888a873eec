import { closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Another live xcared holds the data dir (its pid is given). */
export class DataDirBusyError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(
      `data dir ${dataDir} is in use by another xcared (pid ${pid}); one embedded daemon per data dir ` +
        '(several daemons on one fleet: README "At scale")',
    );
  }
}

function signalable(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else; ESRCH: it is gone.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who a process is, on Linux: its state letter and start time (clock ticks after boot), with the boot's id. */
interface ProcIdentity {
  state: string;
  start: string;
  boot: string;
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '-';
  }
}

/**
 * `/proc/<pid>/stat` read as an identity; `null` when the process is gone, `undefined` when there is no /proc
 * (not Linux: only kill(pid, 0) can tell).
 */
function procIdentity(pid: number): ProcIdentity | null | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return existsSync('/proc/self/stat') ? null : undefined;
  }
  // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, starttime 22.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '?', start: fields[19] ?? '?', boot: readBootId() };
}

/**
 * Whether the pid file's writer still runs. kill(pid, 0) alone is not enough: a daemon killed with kill -9 stays
 * a zombie until its parent reaps it (seconds under some PID 1s), and a pid named by an old file may have been
 * reused by another program since (a reboot, a container restart). So a holder counts only when it is not a
 * zombie and, where the file records it, has the start time and boot of the process that wrote the file.
 */
function holderRuns(pid: number, recorded: string | undefined): boolean {
  if (!signalable(pid)) return false;
  const id = procIdentity(pid);
  if (id === undefined) return true;
  if (id === null || id.state === 'Z' || id.state === 'X' || id.state === 'x') return false;
  return recorded === undefined || recorded === `${id.boot} ${id.start}`;
}

/**
 * Whether process `pid` runs on this host (not gone, not a zombie waiting to be reaped): the check the pid file
 * uses, for other holders named by pid (a store lease held under a default `<hostname>-<pid>` instance id).
 */
export function processRuns(pid: number): boolean {
  return holderRuns(pid, undefined);
}

/**
 * Takes `<dataDir>/xcared.pid` for this process, as Mosquitto's `pid_file` does, so that two embedded
 * daemons never run one store: two evaluators, schedulers and helpdesk senders on one SQLite file would
 * open tickets and send offers twice (found by a new user: both answered /readyz 200). A file left by a
 * daemon that died (kill -9, power loss) names a pid that no longer runs, or a zombie, or a process started after
 * it (the file's second line, `<boot id> <start time>`, says which process wrote it), and is taken over.
 * Cluster mode (an external broker, README "At scale") shares a store on purpose and elects a leader instead.
 *
 * Returns the release function (removes the file if it is still ours). Throws {@link DataDirBusyError}
 * when a live process holds it, or the file system's error when the dir cannot be written.
 */
export function lockDataDir(dataDir: string, pid = process.pid): () => void {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, 'xcared.pid');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      const id = procIdentity(pid);
      writeSync(fd, id ? `${pid}\n${id.boot} ${id.start}\n` : `${pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (Number(readFileSync(file, 'utf8').split('\n')[0]) === pid) unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      let holder = NaN;
      let recorded: string | undefined;
      try {
        const [first, second] = readFileSync(file, 'utf8').split('\n');
        holder = Number(first);
        recorded = second?.trim() || undefined;
      } catch {
        /* vanished between open and read: try again */
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== pid && holderRuns(holder, recorded)) throw new DataDirBusyError(dataDir, holder);
      try {
        unlinkSync(file);
      } catch {
        /* another starter removed it first */
      }
    }
  }
}
