/** How commands answer: a result as JSON or aligned `key value` lines on stdout; help text. */

/** Prints `result`: one JSON line with `json`, else one `key value` line per field. */
export function report(result: Record<string, unknown>, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  for (const [k, v] of Object.entries(result)) {
    const text = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
    process.stdout.write(`${k.padEnd(20)} ${text}\n`);
  }
}

/** Prints help (to stderr as an error: exit code 2) and returns the exit code. */
export function help(text: string, asError = false): number {
  (asError ? process.stderr : process.stdout).write(`${text}\n`);
  return asError ? 2 : 0;
}
