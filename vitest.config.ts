import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real servers, real clients, a real Docker engine: generous defaults; tests that wait on an
    // image build set their own.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
