import { foundation } from './001-foundation.js';

export interface Migration {
  version: number;
  name: string;
  up: string;
}

/** Versioned migrations, applied in order at start. Never edit one that has shipped: add the next. */
export const migrations: readonly Migration[] = [foundation];
