import { spawn } from 'node:child_process';

export interface CommandResult {
  ok: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last few KiB of stdout+stderr, for the status detail and the log. */
  output: string;
}

const TAIL_BYTES = 4096;

/**
 * Run one configured install/check/rollback command (Mender update-module style) with `sh -c`,
 * in its own process group so a timeout kills the whole tree, never the agent.
 */
export function runCommand(command: string, opts: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<CommandResult> {
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
    child.on('error', (err) => {
      clearTimeout(timer);
      resolvePromise({ ok: false, code: null, signal: null, timedOut, output: `${output}${err.message}` });
    });
    child.on('close', (code, signal) => {
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
