import type { Migration } from './index.js';

/**
 * Issue 8: customers as records of their own (RULES.md "Subscriptions": the success engineer of an xcare_pro
 * device's customer), and the one-row table the store-health probe rewrites to prove the store takes writes.
 * `customers.name` is the same string as `devices.customer`; no foreign key, since devices name customers freely.
 */
export const customers: Migration = {
  version: 5,
  name: 'customers',
  up: `
CREATE TABLE customers (
  name TEXT PRIMARY KEY,
  engineer_name TEXT,
  engineer_email TEXT,
  engineer_phone TEXT,
  notes TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE store_probe (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL
);
`,
};
