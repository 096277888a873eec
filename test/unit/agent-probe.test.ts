import { describe, expect, it } from 'vitest';
import { MAX_DETAIL, runProbe, runProbes } from '../../agent/probe.js';

describe('runProbe', () => {
  it('exit 0 is ok and the first stdout line (trimmed) is the detail', async () => {
    expect(await runProbe({ command: 'printf "  link up  \\nsecond line\\n"', timeoutMs: 2000 })).toEqual({ ok: true, detail: 'link up' });
  });

  it('exit 0 with no output is ok with an empty detail', async () => {
    expect(await runProbe({ command: 'true', timeoutMs: 2000 })).toEqual({ ok: true, detail: '' });
  });

  it('a non-zero exit is not ok; stdout still gives the detail', async () => {
    expect(await runProbe({ command: 'echo "no reading for 120 s"; exit 3', timeoutMs: 2000 })).toEqual({
      ok: false,
      detail: 'no reading for 120 s',
    });
  });

  it('a non-zero exit without stdout names the exit code and stderr', async () => {
    expect(await runProbe({ command: 'echo broken >&2; exit 4', timeoutMs: 2000 })).toEqual({ ok: false, detail: 'exit 4: broken' });
  });

  it('a missing command is not ok and says so', async () => {
    const result = await runProbe({ command: '/nonexistent/xcare-probe-binary', timeoutMs: 2000 });
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(/^command not found \(exit 127\)/);
  });

  it('a hung command is killed at its timeout, with the whole process group', async () => {
    const started = Date.now();
    const result = await runProbe({ command: 'sleep 30; echo late', timeoutMs: 200 });
    const elapsed = Date.now() - started;
    expect(result).toEqual({ ok: false, detail: 'timed out after 200 ms' });
    expect(elapsed).toBeLessThan(1000);
  });

  it('a command that keeps the pipe open in a background child still times out on time', async () => {
    const started = Date.now();
    const result = await runProbe({ command: '(setsid sleep 2 &) ; sleep 30', timeoutMs: 200 });
    expect(result.ok).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('clips the detail to MAX_DETAIL characters', async () => {
    const result = await runProbe({ command: `printf '%0${MAX_DETAIL + 100}d\\n' 0`, timeoutMs: 2000 });
    expect(result.ok).toBe(true);
    expect(result.detail).toHaveLength(MAX_DETAIL);
  });

  it('never rejects: a command killed by a signal is reported', async () => {
    expect(await runProbe({ command: 'kill -9 $$', timeoutMs: 2000 })).toEqual({ ok: false, detail: 'killed by SIGKILL' });
  });

  it('is cancelled by an abort signal', async () => {
    const abort = new AbortController();
    const pending = runProbe({ command: 'sleep 30', timeoutMs: 10_000 }, abort.signal);
    setTimeout(() => abort.abort(), 50);
    expect(await pending).toEqual({ ok: false, detail: 'probe cancelled: agent stopping' });
  });

  it('runs probes in parallel and keeps their order', async () => {
    const started = Date.now();
    const results = await runProbes([
      { command: 'sleep 0.3; echo a', timeoutMs: 2000 },
      { command: 'sleep 0.3; echo b; exit 1', timeoutMs: 2000 },
      { command: 'sleep 0.3; echo c', timeoutMs: 2000 },
    ]);
    expect(results).toEqual([
      { ok: true, detail: 'a' },
      { ok: false, detail: 'b' },
      { ok: true, detail: 'c' },
    ]);
    expect(Date.now() - started).toBeLessThan(800);
  });
});
