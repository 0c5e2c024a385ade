import { existsSync } from 'node:fs';

import { defineConfig } from 'vitest/config';

// RECONPATCH_TESTS=native runs only the files whose outcome can depend on which libtorch the addon
// was built against: they check what the addon computes or how it behaves (features, coreset,
// k-NN, head, scores, model bytes, devices, threads, crashes, worker threads). The rest (the CLI,
// the HTTP example, the TypeScript-only layers, the package test) run once, on Debian's libtorch;
// .ci/run runs the full suite there and this subset on the two PyTorch builds (issue 26: CI time).
export const NATIVE_TESTS = [
  'batching', 'coreset', 'crash', 'device', 'dispose', 'engine', 'errors', 'gpu_paths', 'head', 'knn', 'knn_int8',
  'model_file', 'model_info', 'model_limits', 'options', 'parity', 'scorer', 'terminate', 'torchvision', 'transaction',
  'update', 'workers', 'engine_threads', 'staged_shards', 'resolution', 'backbone_passes',
].map((name) => `test/${name}.test.ts`);
const missing = NATIVE_TESTS.filter((f) => !existsSync(f));
if (missing.length) throw new Error(`vitest.config.ts: NATIVE_TESTS lists files that do not exist: ${missing.join(', ')}`);

// Native work uses every core through libtorch's own threads, so test files run one at a time.
export default defineConfig({
  test: {
    include: process.env.RECONPATCH_TESTS === 'native' ? NATIVE_TESTS : ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 300_000,
    // Under CI a JSON summary too, so .ci/run can print a plain 'N passed, N failed' line.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: process.env.CI ? { json: 'build/test-results.json' } : undefined,
  },
});
