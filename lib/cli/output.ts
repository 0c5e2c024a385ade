/** How commands answer: a result as JSON or aligned `key value` lines on stdout; per-image rows; errors; help text. */
import { ReconpatchError } from '../errors.js';

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

/** An error as a JSON-ready record: `{ code, message }`. */
export function errorRecord(err: unknown): { code: string; message: string } {
  return err instanceof ReconpatchError ? { code: err.code, message: err.message } : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

export type RowFormat = 'text' | 'jsonl' | 'csv';

/** The --format value (--json means jsonl). Throws ERR_INVALID_OPTION for anything else. */
export function rowFormat(format: string | undefined, json: boolean | undefined): RowFormat {
  const f = format ?? (json ? 'jsonl' : 'text');
  if (f !== 'text' && f !== 'jsonl' && f !== 'csv') throw new ReconpatchError('ERR_INVALID_OPTION', `--format must be text, jsonl or csv, got '${f}'`);
  return f;
}

const CSV_COLUMNS = ['path', 'score', 'normalizedScore', 'isAnomaly', 'width', 'height', 'heatmap', 'error'];

/**
 * A writer of one run's image rows on stdout: tab-separated lines, JSON lines, or CSV records
 * (the header before this writer's first record: each run, each writer, gets its own).
 */
export function rowWriter(format: RowFormat): (row: Record<string, unknown>) => void {
  let csvHeaderWritten = false;
  return (row) => {
    const error = row.error as { code: string; message: string } | undefined;
    if (format === 'jsonl') {
      process.stdout.write(`${JSON.stringify(row)}\n`);
    } else if (format === 'csv') {
      if (!csvHeaderWritten) process.stdout.write(`${CSV_COLUMNS.join(',')}\n`);
      csvHeaderWritten = true;
      const cell = (k: string) => {
        const v = k === 'error' ? (error ? `${error.code}: ${error.message}` : '') : row[k];
        const s = v === undefined || v === null ? '' : String(v);
        return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      };
      process.stdout.write(`${CSV_COLUMNS.map(cell).join(',')}\n`);
    } else if (error) {
      process.stdout.write(`${row.path}\tERROR\t${error.code}\t${error.message}\n`);
    } else {
      const n = row.normalizedScore as number | null;
      const verdict = row.isAnomaly === null ? '-' : row.isAnomaly ? 'ANOMALY' : 'ok';
      process.stdout.write(`${row.path}\t${(row.score as number).toFixed(6)}\t${n === null ? '-' : n.toFixed(3)}\t${verdict}\n`);
    }
  };
}
