/**
 * One log line per key per window: a device that sends nothing but garbage must not be able to flood the
 * daemon's log (issue 11, found by a new user: 2,000 malformed heartbeats wrote 2,000 warn lines carrying
 * the device's own text). Every event is still counted by the caller's Prometheus counter; the log says
 * how many lines it held back since the last one it wrote (`suppressed`).
 *
 * Time comes from the caller (a monotonic clock, milliseconds). At most `maxKeys` keys are tracked; past
 * that the table starts over, which can only let a few extra lines through, never hide a first one.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /**
   * Whether to log for `key` at `now` (ms, monotonic). Returns `undefined` to hold the line back, or the
   * number of lines held back for this key since the last one written (0 for a first line).
   */
  admit(key: string, now: number): number | undefined {
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.windowMs) {
      entry.suppressed++;
      return undefined;
    }
    if (!entry && this.last.size >= this.maxKeys) this.last.clear();
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: now, suppressed: 0 });
    return suppressed;
  }
}
