// The real `reconpatch` binary (built dist/cli/main.js) on a generated dataset: exit codes, JSON,
// a saved model scored from the command line, folders and globs, per-image errors, output formats.
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { SHARED_ABSENT, hasShared, repoRoot, sharedBackbones, sharedDatasets, syntheticDataset, tempDir } from './support/data.js';
import { rowWriter } from '../lib/cli/output.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

async function reconpatch(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return reconpatchWithin(0, ...args);
}

/** As `reconpatch`, killed after `timeout` ms (0: never); a killed run has code null. */
async function reconpatchWithin(timeout: number, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { maxBuffer: 1 << 24, timeout });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('reconpatch CLI', () => {
  const dir = tempDir('cli');
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  beforeAll(async () => {
    if (!existsSync(cli)) await run('npm', ['run', 'build:ts'], { cwd: repoRoot });
    data = await syntheticDataset();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evaluates a dataset and prints one JSON line', async () => {
    const grids = path.join(dir, 'grids');
    const r = await reconpatch('eval', '--data', data.root, '--category', data.category, '--backbone', 'random_cnn', '--no-head', '--resize', 'none',
      '--coreset', '0.25', '--save-images', grids, '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out).toMatchObject({ category: 'synthetic', backbone: 'random_cnn', head: false, coreset: 0.25, n_train: 24, n_test: 20 });
    expect(out.image_auroc).toBeGreaterThanOrEqual(0.9);
    expect(out.pixel_auroc).toBeGreaterThanOrEqual(0.85);
    for (const k of ['fit_seconds', 'score_ms_per_image', 'peak_rss_mb']) expect(out[k]).toBeGreaterThan(0);
    // The decision at the deployed (leave-one-out calibrated) threshold, next to AUROC.
    expect(out.decision).toMatchObject({ method: 'leave-one-out', calibration_images: 24, false_alarm_target: 0.01, defects: 12, good: 8 });
    expect(out.decision.recall).toBeGreaterThanOrEqual(0.75);
    expect(out.decision.false_alarm_rate).toBeLessThanOrEqual(0.25);
    expect(r.stderr).toMatch(/score/); // progress while scoring
    // image | heatmap | ground truth, one picture per test image, by defect type.
    expect(readdirSync(grids).sort()).toEqual(['blob', 'good', 'missing', 'scratch']);
    const grid = await sharp(path.join(grids, 'blob', readdirSync(path.join(grids, 'blob'))[0])).metadata();
    expect(grid.width).toBeGreaterThan(3 * 96);
  });

  it('runs the README demo: generate, fit, evaluate', async () => {
    const r = await reconpatch('demo', '--dir', path.join(dir, 'demo'), '--backbone', 'random_cnn', '--no-head', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out).toMatchObject({ category: 'synthetic', n_train: 24, n_test: 20 });
    expect(out.image_auroc).toBeGreaterThanOrEqual(0.9);
  });

  it('fits to a model file and scores images with it', async () => {
    const model = path.join(dir, 'm.rcp');
    const fit = await reconpatch('fit', path.join(data.root, data.category, 'train/good'), '-o', model, '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--json');
    expect(fit.code).toBe(0);
    expect(existsSync(model)).toBe(true);
    expect(JSON.parse(fit.stdout)).toMatchObject({ images: 24, calibrationImages: 24, thresholdMethod: 'leave-one-out', falseAlarmRate: 0.01 });
    expect(fit.stderr).toMatch(/warning: the threshold rests on 24 nominal images/);
    const good = data.test.filter((t) => t.label === 0).map((t) => t.path);
    const bad = data.test.filter((t) => t.label === 1).map((t) => t.path);
    const score = await reconpatch('score', model, ...good, ...bad, '--json');
    expect(score.code).toBe(0);
    const lines = score.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.path)).toEqual([...good, ...bad]);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const scores = lines.map((l) => l.score as number);
    expect(mean(scores.slice(good.length))).toBeGreaterThan(mean(scores.slice(0, good.length))); // defects score higher
    // The engine options of a loaded model: threads and device for this run, the same scores.
    const threaded = await reconpatch('score', model, ...good, '--threads', '1', '--device', 'auto', '--json');
    expect(threaded.code).toBe(0);
    expect(threaded.stdout.trim().split('\n').map((l) => JSON.parse(l).score)).toEqual(scores.slice(0, good.length));
  });

  it('answers a usage error (unknown flag, bad value) with ERR_INVALID_OPTION and exit 2 on every command, in --json mode too', async () => {
    const model = path.join(dir, 'm.rcp'); // fitted above
    const image = data.test[0].path;
    const train = path.join(data.root, data.category, 'train/good');
    const commands: Record<string, string[][]> = {
      fit: [[train, '-o', path.join(dir, 'usage.rcp'), '--backbone', 'random_cnn', '--no-head', '--bogus'], [train, '-o', path.join(dir, 'usage.rcp'), '--backbone', 'random_cnn', '--no-head', '--coreset', 'abc']],
      score: [[model, image, '--bogus'], [model, image, '--threads', 'abc']],
      update: [[model, image, '-o', path.join(dir, 'usage.rcp'), '--bogus'], [model, image, '-o', path.join(dir, 'usage.rcp'), '--max-pixels', 'lots']],
      info: [[model, '--bogus'], [model, '--threads', 'two']],
      eval: [['--data', data.root, '--category', data.category, '--backbone', 'random_cnn', '--no-head', '--bogus'], ['--data', data.root, '--category', data.category, '--backbone', 'random_cnn', '--no-head', '--seed', 'x']],
    };
    for (const [command, cases] of Object.entries(commands)) {
      for (const args of cases) {
        const text = await reconpatch(command, ...args);
        expect(text.code, `${command} ${args.join(' ')}`).toBe(2);
        expect(text.stderr).toMatch(/ERR_INVALID_OPTION/);
        const json = await reconpatch(command, ...args, '--json');
        expect(json.code, `${command} ${args.join(' ')} --json`).toBe(2);
        expect(JSON.parse(json.stdout).error.code).toBe('ERR_INVALID_OPTION');
      }
    }
    expect(existsSync(path.join(dir, 'usage.rcp'))).toBe(false);
  });

  it('update writes -o, refuses without -o unless --in-place, which overwrites the model', async () => {
    const model = path.join(dir, 'upd.rcp');
    copyFileSync(path.join(dir, 'm.rcp'), model); // fitted above
    const before = readFileSync(model);
    const images = data.test.filter((t) => t.label === 0).slice(0, 3).map((t) => t.path);
    const refused = await reconpatch('update', model, ...images, '--json');
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stdout).error).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/-o .*--in-place/) });
    expect(readFileSync(model).equals(before)).toBe(true);
    const out = path.join(dir, 'upd2.rcp');
    const written = await reconpatch('update', model, ...images, '-o', out, '--threads', '1', '--json');
    expect(written.code).toBe(0);
    expect(JSON.parse(written.stdout).model).toBe(out);
    expect(readFileSync(model).equals(before)).toBe(true); // the input left as it was
    expect(JSON.parse((await reconpatch('info', out, '--json')).stdout).updates).toBe(1);
    const inPlace = await reconpatch('update', model, ...images, '--in-place', '--json');
    expect(inPlace.code).toBe(0);
    expect(readFileSync(model).equals(before)).toBe(false);
    expect(JSON.parse((await reconpatch('info', model, '--json')).stdout).updates).toBe(1);
  });

  it('takes the input options as flags: --max-pixels refuses larger images, --fail-on is checked', async () => {
    const model = path.join(dir, 'limits.rcp');
    const train = path.join(data.root, data.category, 'train/good');
    const fit = await reconpatch('fit', train, '-o', model, '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--max-pixels', '100000', '--json');
    expect(fit.code).toBe(0);
    const small = await reconpatch('fit', train, '-o', path.join(dir, 'none.rcp'), '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--max-pixels', '1000');
    expect(small.code).toBe(1);
    expect(small.stderr).toMatch(/ERR_INVALID_IMAGE.*over the input limit of 1000 pixels/s);
    const image = data.test[0].path;
    const refused = await reconpatch('score', model, image, '--max-pixels', '1000', '--continue-on-error', '--json');
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout.trim())).toMatchObject({ path: image, error: { code: 'ERR_INVALID_IMAGE' } });
    const accepted = await reconpatch('score', model, image, '--max-pixels', '100000', '--fail-on', 'error', '--json');
    expect(accepted.code).toBe(0);
    expect(JSON.parse(accepted.stdout.trim())).toMatchObject({ path: image });
    const bad = await reconpatch('score', model, image, '--fail-on', 'sometimes');
    expect(bad.code).toBe(2); // a usage error
    expect(bad.stderr).toMatch(/ERR_INVALID_OPTION.*failOn must be one of/s);
    const update = await reconpatch('update', model, image, '-o', path.join(dir, 'limits2.rcp'), '--max-pixels', '1000');
    expect(update.code).toBe(1);
    expect(update.stderr).toMatch(/ERR_INVALID_IMAGE/);
  });

  it('writes heatmaps, a scores CSV, and shows model info', async () => {
    const model = path.join(dir, 'cal.rcp');
    const glob = path.join(data.root, data.category, 'train/good', '0*.png');
    const fit = await reconpatch('fit', glob, '-o', model, '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--json');
    expect(fit.code).toBe(0);
    expect(JSON.parse(fit.stdout)).toMatchObject({ images: 24, calibrationImages: 24 }); // the glob matched all 24
    const heatmaps = path.join(dir, 'heatmaps');
    const defect = data.test.find((t) => t.label === 1) as { path: string };
    const r = await reconpatch('score', model, defect.path, '--heatmaps', heatmaps, '--json');
    expect(r.code).toBe(0);
    const row = JSON.parse(r.stdout);
    expect(row.normalizedScore).toBeGreaterThanOrEqual(0);
    expect(typeof row.isAnomaly).toBe('boolean');
    const meta = await sharp(row.heatmap).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(96); // the image, framed, with the verdict banner above it
    expect(meta.height).toBeGreaterThan(96);
    const stats = await sharp(row.heatmap).stats();
    expect(stats.channels[0].stdev).toBeGreaterThan(5); // not blank

    const info = JSON.parse((await reconpatch('info', model, '--json')).stdout);
    expect(info.calibration.images).toBe(24);
    expect(info.options.backbone).toBe('random_cnn');

    const csv = path.join(dir, 'scores.csv');
    const e = await reconpatch('eval', '--data', data.root, '--category', data.category, '--backbone', 'random_cnn', '--no-head', '--protocol', 'patchcore', '--scores-out', csv, '--json');
    expect(e.code).toBe(0);
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('path,label,score');
    expect(lines).toHaveLength(1 + data.test.length);
    const [p, label, score] = lines[1].split(',');
    expect(JSON.parse(p)).toBe(data.test[0].path);
    expect(Number(label)).toBe(data.test[0].label);
    expect(Number(score)).toBeGreaterThan(0);
  });

  it.skipIf(!hasShared)(`evaluates real data with a pretrained backbone (${hasShared ? 'metal_plate' : SHARED_ABSENT})`, async () => {
    const r = await reconpatch('eval', '--data', sharedDatasets, '--category', 'metal_plate', '--protocol', 'patchcore',
      '--backbone', path.join(sharedBackbones, 'mobilenet_v1_imagenet.pt'), '--no-head', '--train-limit', '16', '--coreset', '0.02', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ category: 'metal_plate', backbone: 'mobilenet_v1_imagenet', n_train: 16, n_test: 97, missing_masks: 0 });
    expect(out.image_auroc).toBeGreaterThan(0.85);
    expect(out.pixel_auroc).toBeGreaterThan(0.95);
    expect(out.pro).toBeGreaterThan(0.8);
  });

  it('dist/cli/main.js (the package bin) runs as a program (npx reconpatch in a checkout): every script that rebuilds dist/ keeps it executable', async () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    expect(path.join(repoRoot, pkg.bin.reconpatch)).toBe(cli);
    const scripts = pkg.scripts;
    const rebuilding = Object.entries(scripts).filter(([, cmd]) => cmd.includes('tsconfig.build.json'));
    expect(rebuilding.map(([name]) => name).sort()).toEqual(['build:ts', 'prepare']);
    for (const [name, cmd] of rebuilding) expect(cmd, name).toMatch(/tsc -p tsconfig\.build\.json && chmod \+x dist\/cli\/main\.js$/);
    const { stdout } = await run(cli, ['--help']); // the file itself: its mode and its #! line
    expect(stdout).toMatch(/^reconpatch <command>/);
  });

  it('fails with a non-zero exit and a coded message on bad input; JSON errors in --json mode', async () => {
    const r = await reconpatch('score', path.join(dir, 'missing.rcp'), data.test[0].path);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_MODEL_FILE/);
    const j = await reconpatch('score', path.join(dir, 'missing.rcp'), data.test[0].path, '--json');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: 'ERR_MODEL_FILE' });
    expect((await reconpatch('frobnicate')).code).toBe(2);
    const help = await reconpatch('eval', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--category/);
    const version = await reconpatch('--version');
    expect(version.stdout.trim()).toBe(`reconpatch ${JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version}`);
  });

  it('fits with --head-auto and reports the head check in fit and info', async () => {
    const model = path.join(dir, 'auto.rcp');
    const train = path.join(data.root, data.category, 'train/good');
    const fit = await reconpatch('fit', train, '-o', model, '--backbone', 'random_cnn', '--resize', 'none', '--head-auto', '--head-iterations', '10', '--json');
    expect(fit.code).toBe(0);
    // 24 images: 2 held out for the check, 18 synthetic defects on each.
    expect(JSON.parse(fit.stdout)).toMatchObject({ images: 22, headCheck: expect.stringMatching(/^kept (head|patchcore): synthetic-defect AUROC/) });
    const info = await reconpatch('info', model, '--json');
    expect(JSON.parse(info.stdout).headCheck).toMatchObject({ heldOutImages: 2, defectImages: 36 });
    expect((await reconpatch('info', model)).stdout).toMatch(/^head check {4}kept (head|patchcore): /m);
  });

  it('fits only with a backbone named, and echoes numbers as typed', async () => {
    const train = path.join(data.root, data.category, 'train/good');
    const none = await reconpatch('fit', train, '-o', path.join(dir, 'x.rcp'));
    expect(none.code).toBe(2); // a usage error
    expect(none.stderr).toMatch(/no --backbone given.*random_cnn/);
    expect(existsSync(path.join(dir, 'x.rcp'))).toBe(false);
    const abc = await reconpatch('fit', train, '-o', path.join(dir, 'x.rcp'), '--backbone', 'random_cnn', '--no-head', '--coreset', 'abc', '--json');
    expect(JSON.parse(abc.stdout).error.message).toMatch(/--coreset must be a number, got 'abc'/);
  });

  it('scores folders and globs, mirrors the input tree in heatmaps, reports per-image errors, writes CSV', async () => {
    const model = path.join(dir, 'folders.rcp');
    expect((await reconpatch('fit', path.join(data.root, data.category, 'train/good'), '-o', model, '--backbone', 'random_cnn', '--no-head', '--resize', 'none')).code).toBe(0);
    // Two folders holding a file of the same name, and a file that is not an image.
    const tree = path.join(dir, 'tree');
    for (const [sub, i] of [['a', 0], ['b', 19], ['b/deeper', 10]] as const) {
      mkdirSync(path.join(tree, sub), { recursive: true });
      copyFileSync(data.test[i].path, path.join(tree, sub, 'part.png'));
    }
    writeFileSync(path.join(tree, 'a', 'broken.png'), 'not an image');
    const heatmaps = path.join(dir, 'tree-heatmaps');
    const stop = await reconpatch('score', model, tree, '--json');
    expect(stop.code).toBe(1); // the first bad image ends the run
    expect(JSON.parse(stop.stdout.trim().split('\n').at(-1) as string).error.message).toMatch(/broken\.png/);
    const r = await reconpatch('score', model, tree, '--heatmaps', heatmaps, '--continue-on-error', '--json');
    expect(r.code).toBe(1); // went on, but one image failed
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((x) => path.relative(tree, x.path))).toEqual(['a/broken.png', 'a/part.png', 'b/deeper/part.png', 'b/part.png']);
    expect(rows[0].error.code).toBe('ERR_INVALID_IMAGE');
    expect(rows.slice(1).map((x) => typeof x.isAnomaly)).toEqual(['boolean', 'boolean', 'boolean']);
    expect(rows.slice(1).map((x) => path.relative(heatmaps, x.heatmap))).toEqual(['a/part.png', 'b/deeper/part.png', 'b/part.png']);
    // A full glob (character class, recursion), and CSV.
    const csv = await reconpatch('score', model, path.join(data.root, data.category, 'test', '{blob,good}', '00[0-4].png'), '--format', 'csv');
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trim().split('\n');
    expect(lines[0]).toBe('path,score,normalizedScore,isAnomaly,width,height,heatmap,error');
    expect(lines).toHaveLength(1 + 7); // blob 001, 004; good 000-004
    expect(lines.slice(1).every((l) => /,(true|false),96,96,,$/.test(l))).toBe(true);
    // --threshold decides with the given raw score for this run.
    const all = await reconpatch('score', model, path.join(tree, 'b'), '--threshold', '0', '--json');
    expect(all.stdout.trim().split('\n').map((l) => JSON.parse(l).isAnomaly)).toEqual([true, true]);
  });

  it('info: a short summary, one JSON line with --json (evidence only with --evidence), a summary per ensemble member', async () => {
    const model = path.join(dir, 'm.rcp'); // fitted above
    const text = await reconpatch('info', model);
    expect(text.code).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(30);
    expect(text.stdout).toMatch(/^backbone +random_cnn/m);
    expect(text.stdout).toMatch(/^bank +\d+ rows x \d+ features/m);
    expect(text.stdout).toMatch(/^threshold +[\d.]+ \(leave-one-out on 24 good images, false-alarm rate 0.01\)/m);
    expect(text.stdout).not.toMatch(/"weights"|crop 0/);
    const json = await reconpatch('info', model, '--json');
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    const info = JSON.parse(json.stdout);
    expect(info).toMatchObject({ bankRows: expect.any(Number), calibration: { images: 24 }, options: { backbone: 'random_cnn' } });
    expect(info.calibration.evidence).toBeUndefined();
    const full = await reconpatch('info', model, '--json', '--evidence');
    expect(full.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(full.stdout).calibration.evidence).toHaveLength(24);
    const ensemble = path.join(dir, 'e.rcpe');
    const fit = await reconpatch('fit', path.join(data.root, data.category, 'train/good'), '-o', ensemble, '--backbone', 'random_cnn,random_cnn', '--no-head', '--resize', 'none', '--json');
    expect(fit.code).toBe(0);
    const members = await reconpatch('info', ensemble, '--threads', '1');
    expect(members.code).toBe(0);
    expect(members.stdout.trim().split('\n').length).toBeLessThanOrEqual(30);
    expect(members.stdout.match(/^member \d/gm)).toEqual(['member 0', 'member 1']);
    const ensembleJson = await reconpatch('info', ensemble, '--json');
    expect(ensembleJson.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(ensembleJson.stdout).members).toHaveLength(2);
  });

  it('shows the images of a folder and of the equivalent glob by the same path', async () => {
    const model = path.join(dir, 'm.rcp'); // fitted above
    const good = path.join(data.root, data.category, 'test/good');
    const paths = async (...args: string[]) => (await reconpatch('score', model, ...args, '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l).path as string);
    const folder = await paths(good);
    expect(await paths(path.join(good, '*.png'))).toEqual(folder);
    expect(folder.every((p) => path.isAbsolute(p) && p.startsWith(good))).toBe(true); // typed absolute, shown absolute
    // Typed relative: both relative to the current directory.
    const rel = path.relative(process.cwd(), good);
    const relFolder = await paths(rel);
    expect(await paths(`${rel}/*.png`)).toEqual(relFolder);
    expect(relFolder).toEqual(folder.map((p) => path.relative(process.cwd(), p)));
  });

  it('ends quietly when its reader stops early (score … | head -n 1): exit 0, no EPIPE error', async () => {
    const model = path.join(dir, 'm.rcp'); // fitted above
    const good = path.join(data.root, data.category, 'test/good');
    const script = `node ${JSON.stringify(cli)} score ${JSON.stringify(model)} ${JSON.stringify(good)} --json | head -n 1; echo "status $\{PIPESTATUS[0]}"`;
    const { stdout, stderr } = await run('bash', ['-c', script], { maxBuffer: 1 << 20 });
    const [first, status] = stdout.trim().split('\n');
    expect(JSON.parse(first).path).toContain('good');
    expect(status).toBe('status 0');
    expect(stderr).not.toMatch(/EPIPE|Error/); // progress lines only
  });

  it('refuses a model path that is a FIFO at once (info, score, update), instead of waiting for a writer', async () => {
    const fifo = path.join(dir, 'model.fifo');
    execFileSync('mkfifo', [fifo]);
    for (const args of [['info', fifo], ['score', fifo, data.test[0].path], ['update', fifo, data.test[0].path, '--in-place']]) {
      const started = Date.now();
      const r = await reconpatchWithin(20_000, ...args);
      expect(r.code, `${args[0]} was killed after ${Date.now() - started} ms`).toBe(1);
      expect(r.stderr).toMatch(/ERR_MODEL_FILE.*not a regular file/s);
    }
  });
});

describe('CLI rows', () => {
  it('writes a CSV header per writer: two runs in one process each get one', () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    try {
      const row = { path: 'a.png', score: 1, normalizedScore: 0.5, isAnomaly: false, width: 2, height: 2 };
      for (let run = 0; run < 2; run++) {
        const write = rowWriter('csv');
        write(row);
        write(row);
      }
    } finally {
      spy.mockRestore();
    }
    const header = 'path,score,normalizedScore,isAnomaly,width,height,heatmap,error\n';
    expect(written.filter((l) => l === header)).toHaveLength(2);
    expect(written).toHaveLength(6);
  });
});
