import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else; ESRCH: it is gone.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dataDir>/xcared.pid` for this process, as Mosquitto's `pid_file` does, so that two embedded
 * daemons never run one store: two evaluators, schedulers and helpdesk senders on one SQLite file would
 * open tickets and send offers twice (found by a new user: both answered /readyz 200). A file left by a
 * daemon that died (kill -9, power loss) names a pid that no longer runs and is taken over.
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
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (Number(readFileSync(file, 'utf8').trim()) === pid) unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      let holder = NaN;
      try {
        holder = Number(readFileSync(file, 'utf8').trim());
      } catch {
        /* vanished between open and read: try again */
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== pid && alive(holder)) throw new DataDirBusyError(dataDir, holder);
      try {
        unlinkSync(file);
      } catch {
        /* another starter removed it first */
      }
    }
  }
}
