/**
 * A binary min-heap of (time, id), in two parallel arrays so 100,000 entries cost no object per entry.
 * The evaluator keeps one live entry per device and skips stale ones lazily when they pop (issue 3:
 * the cost of a tick follows the devices whose deadline passed, not the fleet size).
 */
export class DeadlineHeap {
  private times: number[] = [];
  private ids: string[] = [];

  get size(): number {
    return this.times.length;
  }

  push(time: number, id: string): void {
    const times = this.times;
    const ids = this.ids;
    let i = times.length;
    times.push(time);
    ids.push(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent]! <= time) break;
      times[i] = times[parent]!;
      ids[i] = ids[parent]!;
      i = parent;
    }
    times[i] = time;
    ids[i] = id;
  }

  peekTime(): number | undefined {
    return this.times[0];
  }

  /** Remove and return the earliest entry, or undefined when empty. */
  pop(): { time: number; id: string } | undefined {
    const times = this.times;
    const ids = this.ids;
    if (times.length === 0) return undefined;
    const top = { time: times[0]!, id: ids[0]! };
    const lastTime = times.pop()!;
    const lastId = ids.pop()!;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && times[r]! < times[l]! ? r : l;
        if (times[c]! >= lastTime) break;
        times[i] = times[c]!;
        ids[i] = ids[c]!;
        i = c;
      }
      times[i] = lastTime;
      ids[i] = lastId;
    }
    return top;
  }

  clear(): void {
    this.times = [];
    this.ids = [];
  }
}
