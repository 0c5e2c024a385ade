/** Progress on stderr: bars on a terminal, plain lines otherwise (CI logs, pipes). */
import cliProgress from 'cli-progress';

import type { DownloadProgress } from '../io/weights.js';

/** A stage's progress: a fit's stages (`member` for ensembles), or 'score'. */
export interface StageProgress {
  stage: string;
  done: number;
  total?: number;
  loss?: number;
  member?: number;
}

/** Progress on stderr: a bar per stage on a terminal, a plain line a second otherwise (CI logs). */
export function progressLogger(): (p: StageProgress) => void {
  if (process.stderr.isTTY && !process.env.CI) {
    let bar: cliProgress.SingleBar | undefined;
    let stage = '';
    return (p) => {
      if (`${p.member}${p.stage}` !== stage) {
        bar?.stop();
        stage = `${p.member}${p.stage}`;
        bar = new cliProgress.SingleBar(
          { format: `  ${p.member !== undefined ? `m${p.member} ` : ''}${p.stage.padEnd(9)} [{bar}] {value}/{total} {eta_formatted}{extra}`, stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(p.total ?? p.done, p.done, { extra: '' });
      }
      bar?.setTotal(p.total ?? p.done);
      bar?.update(p.done, { extra: p.loss !== undefined ? ` loss ${p.loss.toFixed(3)}` : '' });
      if (p.total !== undefined && p.done >= p.total) bar?.stop();
    };
  }
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 1000 && p.done !== p.total) return;
    last = now;
    process.stderr.write(`  ${p.member !== undefined ? `member ${p.member} ` : ''}${p.stage}: ${p.done}${p.total ? `/${p.total}` : ''}${p.loss !== undefined ? ` loss ${p.loss.toFixed(4)}` : ''}\n`);
  };
}

/** Download progress on stderr: a bar on a terminal, a line every 2 s otherwise. */
export function downloadProgress(name: string): (p: DownloadProgress) => void {
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  if (process.stderr.isTTY && !process.env.CI) {
    const bar = new cliProgress.SingleBar(
      { format: `  ${name} [{bar}] {percentage}% {got}/{size} MB {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return (p) => {
      const total = p.total ?? p.received;
      if (!started) bar.start(total, p.received, { got: mb(p.received), size: mb(total) });
      started = true;
      bar.setTotal(total);
      bar.update(p.received, { got: mb(p.received), size: mb(total) });
      if (p.total !== undefined && p.received >= p.total) bar.stop();
    };
  }
  let last = 0;
  return (p) => {
    const now = Date.now();
    const done = p.total !== undefined && p.received >= p.total;
    if (now - last < 2000 && !done) return;
    last = now;
    process.stderr.write(`  ${name}: ${mb(p.received)}${p.total ? `/${mb(p.total)}` : ''} MB\n`);
  };
}
