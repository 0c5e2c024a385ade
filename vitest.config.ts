import { defineConfig } from 'vitest/config';

// Native work uses every core through libtorch's own threads, so test files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    // Under CI a JSON summary too, so .ci/run can print a plain 'N passed, N failed' line.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: process.env.CI ? { json: 'build/test-results.json' } : undefined,
  },
});
