import type { LostGateway } from './correlation.js';

/**
 * The gateways judged lost now, fleet-wide and per customer: the input of the correlation rules (RULES.md
 * `cloud_loss_*`, `major_outage`). Each change reports which customer (and the fleet) must be re-evaluated.
 */
export class LostGatewayIndex {
  private readonly all = new Map<string, LostGateway>();
  private readonly byCustomer = new Map<string, Map<string, LostGateway>>();

  get size(): number {
    return this.all.size;
  }

  has(id: string): boolean {
    return this.all.has(id);
  }

  list(): LostGateway[] {
    return [...this.all.values()];
  }

  ofCustomer(customer: string): LostGateway[] {
    return [...(this.byCustomer.get(customer)?.values() ?? [])];
  }

  /** Record a loss; returns the customer whose share changed. */
  add(entry: LostGateway): string {
    this.all.set(entry.id, entry);
    let byCustomer = this.byCustomer.get(entry.customer);
    if (!byCustomer) this.byCustomer.set(entry.customer, (byCustomer = new Map()));
    byCustomer.set(entry.id, entry);
    return entry.customer;
  }

  /** Forget a loss; returns the customer whose share changed, or undefined when it was not lost. */
  remove(id: string): string | undefined {
    const entry = this.all.get(id);
    if (!entry) return undefined;
    this.all.delete(id);
    const byCustomer = this.byCustomer.get(entry.customer);
    byCustomer?.delete(id);
    if (byCustomer?.size === 0) this.byCustomer.delete(entry.customer);
    return entry.customer;
  }
}
