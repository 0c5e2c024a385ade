// Strings that only the test and benchmark probes (native/probes/, and the `internals` and `probes`
// exports native/addon/addon.cc registers with RECONPATCH_PROBES) put into an addon binary. They
// survive `strip` (string literals and export names are data, not symbols), so they find probe
// code in a prebuild too. Used by `npm run release` and the tests (test/crash.test.ts, test/package.test.ts).
import { readFileSync } from 'node:fs';

export const PROBE_MARKERS = [
  'crashAtStage', // export names registered only with RECONPATCH_PROBES
  'headTraining',
  'gemmGflops',
  'reconpatch-probe', // the memfd name of the SIGBUS probe (native/probes/crash_probe.cc)
];

/** The probe markers found in an addon binary. */
export function probeMarkersIn(file) {
  const bytes = readFileSync(file);
  return PROBE_MARKERS.filter((m) => bytes.includes(m));
}
