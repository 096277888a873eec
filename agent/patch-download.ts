import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { closeSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { PatchError } from '../patches/patch-error.js';

export interface DownloadOptions {
  /** Daemon base URL, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  /** PEM CA the daemon's HTTPS certificate must chain to (agent.yaml `ca`); else the system roots. */
  ca?: Buffer;
  /** Path from the offer; the caller has already checked it is `/patches/<id>/artifact`. */
  path: string;
  deviceId: string;
  token: string;
  /** The partial file; an existing one is resumed with `Range`. */
  file: string;
  /** Exact artifact size from the signed manifest: the download stops past it. */
  size: number;
  /** Overall deadline for this download (slow-retrieval defence, TUF). */
  deadlineMs: number;
  signal?: AbortSignal;
  now?: () => number;
  /** First retry delay after a transient error; doubles up to 5 s. */
  retryDelayMs?: number;
  onProgress?(bytes: number): void;
}

const fatal = (code: string, msg: string) => new PatchError(code, msg, 'fatal');
const transient = (code: string, msg: string) => new PatchError(code, msg, 'transient');

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * Download the artifact to `file`, resuming from its current length with `Range: bytes=N-`
 * (RULES.md "Remote patching": resume after a reconnect or a reboot). Transient errors retry with
 * backoff until the deadline; more bytes than `size` is fatal (`ARTIFACT_TOO_LARGE`), the deadline
 * is `SLOW_RETRIEVAL`. The caller verifies sha256 afterwards.
 */
export async function downloadArtifact(opts: DownloadOptions): Promise<void> {
  const now = opts.now ?? Date.now;
  const deadline = now() + opts.deadlineMs;
  mkdirSync(dirname(opts.file), { recursive: true });
  let delay = opts.retryDelayMs ?? 200;
  for (;;) {
    if (opts.signal?.aborted) throw transient('DOWNLOAD_ABORTED', 'download stopped');
    let have = fileSize(opts.file);
    if (have > opts.size) {
      // Our own file can only be longer than `size` if it was tampered with: start over.
      closeSync(openSync(opts.file, 'w'));
      have = 0;
    }
    if (have === opts.size && opts.size > 0) return;
    const remaining = deadline - now();
    if (remaining <= 0) throw transient('SLOW_RETRIEVAL', `slow retrieval: deadline of ${opts.deadlineMs} ms exceeded at ${have}/${opts.size} bytes`);
    try {
      await attempt(opts, have, remaining);
      if (fileSize(opts.file) === opts.size) return;
    } catch (err) {
      if (err instanceof PatchError && err.kind === 'fatal') throw err;
      if (err instanceof PatchError && err.code === 'SLOW_RETRIEVAL') throw err;
      if (opts.signal?.aborted) throw transient('DOWNLOAD_ABORTED', 'download stopped');
      const wait = Math.min(delay, Math.max(0, deadline - now()));
      await new Promise((r) => setTimeout(r, wait));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

function attempt(opts: DownloadOptions, have: number, remainingMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const url = new URL(opts.path, opts.baseUrl);
    const headers: Record<string, string> = {
      authorization: `Basic ${Buffer.from(`${opts.deviceId}:${opts.token}`).toString('base64')}`,
      'accept-encoding': 'identity',
    };
    if (have > 0) headers.range = `bytes=${have}-`;
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    let settled = false;
    let fd: number | undefined;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (fd !== undefined) {
        try {
          fsyncSync(fd);
        } catch {
          // best effort; the sha256 check catches anything lost
        }
        closeSync(fd);
      }
      if (err) {
        req.destroy();
        reject(err);
      } else resolvePromise();
    };
    const req = request(url, { method: 'GET', headers, agent: false, ...(opts.ca ? { ca: opts.ca } : {}) });
    const timer = setTimeout(
      () => finish(transient('SLOW_RETRIEVAL', `slow retrieval: deadline of ${opts.deadlineMs} ms exceeded`)),
      remainingMs,
    );
    const onAbort = () => finish(transient('DOWNLOAD_ABORTED', 'download stopped'));
    opts.signal?.addEventListener('abort', onAbort);
    req.on('error', (err) => finish(transient('DOWNLOAD_NETWORK', `download failed: ${err.message}`)));
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status === 416) {
        res.resume();
        // Our partial file does not fit the server's artifact: start over from byte 0.
        closeSync(openSync(opts.file, 'w'));
        finish(transient('DOWNLOAD_RANGE', 'range not satisfiable; restarting'));
        return;
      }
      if (status !== 200 && status !== 206) {
        res.resume();
        const err =
          status >= 500 || status === 429
            ? transient('DOWNLOAD_HTTP', `artifact download: HTTP ${status}`)
            : fatal('DOWNLOAD_REFUSED', `artifact download refused: HTTP ${status}`);
        finish(err);
        return;
      }
      let offset = 0;
      if (status === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== have) {
          res.resume();
          closeSync(openSync(opts.file, 'w'));
          finish(transient('DOWNLOAD_RANGE', 'unexpected Content-Range; restarting'));
          return;
        }
        offset = have;
      }
      const declared = res.headers['content-length'];
      if (declared !== undefined && offset + Number(declared) > opts.size) {
        res.resume();
        finish(fatal('ARTIFACT_TOO_LARGE', `server announces ${offset + Number(declared)} bytes, manifest says ${opts.size}`));
        return;
      }
      // 200 means the server sent the whole file: truncate whatever we had.
      fd = openSync(opts.file, status === 206 ? 'a' : 'w');
      if (status === 200) ftruncateSync(fd, 0);
      let written = fstatSync(fd).size;
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        if (written + chunk.length > opts.size) {
          // Never store a byte past `size` (PROTOCOL.md: "download stops past size").
          finish(fatal('ARTIFACT_TOO_LARGE', `server sent more than the ${opts.size} bytes the manifest allows`));
          return;
        }
        writeSync(fd!, chunk);
        written += chunk.length;
        opts.onProgress?.(written);
      });
      res.on('end', () => {
        if (written < opts.size) finish(transient('DOWNLOAD_SHORT', `connection ended at ${written}/${opts.size} bytes`));
        else finish();
      });
      res.on('error', (err) => finish(transient('DOWNLOAD_NETWORK', `download failed: ${err.message}`)));
      res.on('aborted', () => finish(transient('DOWNLOAD_NETWORK', 'connection aborted')));
    });
    req.end();
  });
}
