/**
 * Every size, timeout and connection cap of the HTTP listener (README "Limits"; config keys `http.*`).
 * Issue 11: an idle or slow peer must not hold a file descriptor for ever, on any listener.
 */
export interface HttpLimits {
  /** `http.maxJsonBytes`: largest JSON body (bytes); larger is 413, Content-Length or chunked alike. */
  maxJsonBytes: number;
  /** `http.maxHeaderBytes`: request line + headers (bytes); larger is 431 (node:http). */
  maxHeaderBytes: number;
  /** `http.headersTimeoutMs`: a connection must deliver complete headers this soon after opening or its previous request. */
  headersTimeoutMs: number;
  /** `http.requestTimeoutMs`: a whole request (headers and body, e.g. an artifact upload) must arrive this soon. */
  requestTimeoutMs: number;
  /** `http.idleTimeoutMs`: a socket with no traffic either way (a reader that stopped reading) is closed. */
  idleTimeoutMs: number;
  /** `http.keepAliveTimeoutMs`: an idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** `http.maxRequestsPerSocket`: requests on one keep-alive connection before it is closed. */
  maxRequestsPerSocket: number;
  /** `http.maxConnections`: concurrent connections; more are closed on accept. */
  maxConnections: number;
  /** `http.maxDiscardBytes`: body bytes read and thrown away after an early error answer, so the client reads it; beyond, the socket is cut. */
  maxDiscardBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxJsonBytes: 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5000,
  maxRequestsPerSocket: 1000,
  maxConnections: 1024,
  maxDiscardBytes: 8 * 1024 * 1024,
};
