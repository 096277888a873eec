/**
 * Failed device authentications per source address, as a token bucket (issue 12: "keep failed CONNECTs
 * cheap and rate-limited per source so a flood of bad passwords cannot starve good devices").
 *
 * Each source starts with `burst` allowed failures and regains `perSecond` of them every second. A
 * source whose bucket is empty is throttled: its CONNECTs are refused before any token is hashed or
 * anything is logged, until the bucket refills. Successes cost nothing here, so a site behind one NAT
 * address with a few misconfigured devices retrying slowly never trips it.
 *
 * Memory is bounded: at most `maxSources` addresses are tracked, the least recently failing dropped first.
 */
export interface AuthFailureLimits {
  /** Failures a source may make at once before it is throttled. 0 turns the limiter off. */
  burst: number;
  /** Failures regained per second. */
  perSecond: number;
  /** Addresses tracked at most (default 65,536). */
  maxSources?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class AuthFailureLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxSources: number;

  constructor(private readonly limits: AuthFailureLimits) {
    this.maxSources = limits.maxSources ?? 65_536;
  }

  /**
   * False while `source` has fewer than `need` failures left (default 1): refuse without checking
   * anything. `need` > 1 reserves room for checks still running (see DeviceRegistry's legacy path).
   */
  allows(source: string | undefined, now: number, need = 1): boolean {
    if (!source || this.limits.burst <= 0) return true;
    const bucket = this.buckets.get(source);
    return (bucket ? this.refill(bucket, now) : this.limits.burst) >= need;
  }

  /**
   * Records a failure from `source`. Returns true when this failure spent the source's last allowance
   * (the caller logs that once, instead of a line per refused CONNECT).
   */
  failed(source: string | undefined, now: number): boolean {
    if (!source || this.limits.burst <= 0) return false;
    let bucket = this.buckets.get(source);
    if (bucket) {
      this.refill(bucket, now);
      this.buckets.delete(source); // re-inserted below: Map order is least recently failing first
    } else {
      bucket = { tokens: this.limits.burst, at: now };
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(source, bucket);
    const before = bucket.tokens;
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    return before >= 1 && bucket.tokens < 1;
  }

  /** Sources currently throttled (for the metrics scrape). */
  throttledCount(now: number): number {
    let n = 0;
    for (const bucket of this.buckets.values()) if (this.refill(bucket, now) < 1) n++;
    return n;
  }

  private refill(bucket: Bucket, now: number): number {
    // Never move `at` back: a caller with an older `now` would have the same interval credited twice.
    if (now > bucket.at) {
      bucket.tokens = Math.min(this.limits.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limits.perSecond);
      bucket.at = now;
    }
    return bucket.tokens;
  }
}
