// Imported first by the test files that use the test addon's `internals` or `probes`: the loader
// (lib/native.ts) then loads reconpatch_probes.node, the addon plus native/probes/, instead of the
// addon users get, which carries none of that code. It must run before the process's first
// native() call; vitest runs each test file in a process of its own, so the choice stays per file.
process.env.RECONPATCH_TEST_PROBES = '1';
export {};
