import type { Registry } from 'prom-client';

/** A labelled counter's value from a real registry (0 when that label set was never incremented). */
export async function labelled(metrics: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const family = await metrics.getSingleMetric(name)?.get();
  const row = family?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return row?.value ?? 0;
}

/** A metric family's total over all its label sets. */
export async function totalOf(metrics: Registry, name: string): Promise<number> {
  const family = await metrics.getSingleMetric(name)?.get();
  return (family?.values ?? []).reduce((n, v) => n + v.value, 0);
}
