import { describe, it, expect } from 'vitest';
import { DeadlineHeap } from '../../src/health/deadline-heap.js';
import { SlidingWindowCounter } from '../../src/health/sliding-window.js';

describe('DeadlineHeap', () => {
  it('pops entries in time order', () => {
    const heap = new DeadlineHeap();
    const times = [50, 10, 40, 10, 30, 20, 60, 0, 5];
    times.forEach((t, i) => heap.push(t, `d${i}`));
    const out: number[] = [];
    for (let e = heap.pop(); e; e = heap.pop()) out.push(e.time);
    expect(out).toEqual([...times].sort((a, b) => a - b));
    expect(heap.size).toBe(0);
    expect(heap.peekTime()).toBeUndefined();
  });

  it('keeps order over many random pushes and pops', () => {
    const heap = new DeadlineHeap();
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 1e6;
    for (let i = 0; i < 5000; i++) heap.push(Math.floor(rnd()), `d${i}`);
    let last = -Infinity;
    for (let i = 0; i < 2500; i++) {
      const e = heap.pop()!;
      expect(e.time).toBeGreaterThanOrEqual(last);
      last = e.time;
    }
    expect(heap.size).toBe(2500);
  });
});

describe('SlidingWindowCounter', () => {
  it('counts per key and drops events at or before the cutoff', () => {
    const w = new SlidingWindowCounter();
    w.add(1000, 'a');
    w.add(2000, 'a');
    w.add(3000, 'b');
    expect(w.total).toBe(3);
    w.prune(1000);
    expect(w.total).toBe(2);
    expect(w.counts.get('a')).toBe(1);
    w.prune(3000);
    expect(w.total).toBe(0);
    expect(w.counts.size).toBe(0);
  });

  it('bounds memory under a flood by dropping the oldest', () => {
    const w = new SlidingWindowCounter(100);
    for (let i = 0; i < 1000; i++) w.add(i, 'x');
    expect(w.total).toBe(100);
    expect(w.counts.get('x')).toBe(100);
  });
});
