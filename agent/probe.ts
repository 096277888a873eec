/**
 * Subsystem and sensor probes (issue 2 item 6): a configured shell command; exit 0 = ok, the first
 * line of stdout = detail. A probe never throws and never outlives its timeout: a failing, hanging
 * or missing command is reported as `ok: false` with a detail that says why, so a bad probe can
 * never stop heartbeats.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

export interface ProbeSpec {
  command: string;
  timeoutMs: number;
}

/** PROTOCOL.md leaves detail free text; the daemon caps it at 1024, we keep heartbeats small. */
export const MAX_DETAIL = 256;
/** Enough for a first line; more output is drained and discarded so the child never blocks on a pipe. */
const MAX_CAPTURE = 16 * 1024;

export function runProbe(spec: ProbeSpec, signal?: AbortSignal): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    let child: ChildProcess;
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;

    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ ok: result.ok, detail: clip(result.detail) });
    };
    const killGroup = (): void => {
      // detached: the shell leads its own process group, so `-pid` also reaches what it started
      // (a `sleep` under `sh -c` would otherwise survive and keep the pipes open).
      if (child?.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        try {
          child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
    };
    const onAbort = (): void => {
      killGroup();
      finish({ ok: false, detail: 'probe cancelled: agent stopping' });
    };

    if (signal?.aborted) {
      resolve({ ok: false, detail: 'probe cancelled: agent stopping' });
      return;
    }
    try {
      child = spawn('/bin/sh', ['-c', spec.command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ ok: false, detail: clip(`probe could not start: ${(err as Error).message}`) });
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });

    timer = setTimeout(() => {
      killGroup();
      // Resolve now, not on 'close': a grandchild that left the process group could keep the
      // pipes open forever, and the heartbeat must not wait for it.
      finish({ ok: false, detail: `timed out after ${spec.timeoutMs} ms` });
    }, spec.timeoutMs);
    timer.unref();

    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      if (stdout.length < MAX_CAPTURE) stdout += chunk;
    });
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < MAX_CAPTURE) stderr += chunk;
    });
    child.on('error', (err) => {
      killGroup();
      finish({ ok: false, detail: `probe could not start: ${err.message}` });
    });
    child.on('close', (code, sig) => {
      const out = firstLine(stdout);
      if (code === 0) return finish({ ok: true, detail: out });
      if (out !== '') return finish({ ok: false, detail: out });
      const err = firstLine(stderr);
      const how = code === null ? `killed by ${sig ?? 'a signal'}` : code === 127 ? 'command not found (exit 127)' : `exit ${code}`;
      finish({ ok: false, detail: err === '' ? how : `${how}: ${err}` });
    });
  });
}

/** Run a beat's probes in parallel; the result order follows the input order. */
export function runProbes(specs: readonly ProbeSpec[], signal?: AbortSignal): Promise<ProbeResult[]> {
  return Promise.all(specs.map((spec) => runProbe(spec, signal)));
}

function firstLine(text: string): string {
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  return line.trim();
}

function clip(text: string): string {
  return text.length <= MAX_DETAIL ? text : text.slice(0, MAX_DETAIL);
}
