import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts', 'test/fuzz/**/*.test.ts'],
    // Generous: CI has 2 busy cores and real processes start slowly there (issue 10: no test may depend on an idle
    // machine). Tests wait for conditions with their own deadlines; these only catch a hang.
    testTimeout: 90_000,
    hookTimeout: 120_000,
    // e2e tests spawn real processes; two workers fit the 2-core CI machine.
    pool: 'forks',
    maxWorkers: 2,
  },
});
