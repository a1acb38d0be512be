// Measurements that use the test helpers (real git server, real proxy) but are not tests:
//   npm run build && npx vitest run -c bench/vitest.measure.config.ts
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['bench/**/*.measure.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
