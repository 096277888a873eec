/**
 * Events within a trailing time window, counted per key: O(1) to add, amortized O(1) to prune.
 * Used for the security bursts of RULES.md (failed CONNECTs, ACL violations, signature failures, integrity mismatches).
 */
export class SlidingWindowCounter {
  private at: number[] = [];
  private keys: string[] = [];
  private head = 0;
  readonly counts = new Map<string, number>();

  constructor(private readonly maxEntries = 1_000_000) {}

  get total(): number {
    return this.at.length - this.head;
  }

  add(at: number, key: string): void {
    // A flood beyond maxEntries is still a burst: dropping the oldest keeps memory bounded and the verdict.
    if (this.total >= this.maxEntries) this.shift();
    this.at.push(at);
    this.keys.push(key);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Drop events at or before `cutoff` (they left the window). */
  prune(cutoff: number): void {
    while (this.head < this.at.length && this.at[this.head]! <= cutoff) this.shift();
    if (this.head > 1024 && this.head * 2 > this.at.length) {
      this.at = this.at.slice(this.head);
      this.keys = this.keys.slice(this.head);
      this.head = 0;
    }
  }

  private shift(): void {
    const key = this.keys[this.head]!;
    this.head++;
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}
