/** Strings only the test and benchmark probes put into an addon binary. */
export declare const PROBE_MARKERS: string[];
/** The probe markers found in an addon binary. */
export declare function probeMarkersIn(file: string): string[];
