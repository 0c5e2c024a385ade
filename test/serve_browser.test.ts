// The review page in a real browser (Debian's chromium, driven headless by playwright-core): the
// service on a real model store (mobilenet_v1 on metal_plate), real images scored over HTTP, the
// verdict rows, "good part" on a false alarm, "update model", and the new version on the next
// verdict. Screenshots of the page (quantised PNGs): docs/screenshots/ with RECONPATCH_SCREENSHOTS=1.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { FastifyInstance } from 'fastify';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildServer } from '../lib/serve/server.js';
import { SHARED_ABSENT, hasShared, repoRoot, sharedBackbones, tempDir } from './support/data.js';
import { TOKEN, auth, plate, plateModel, storeWith } from './support/serve.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const NO_CHROMIUM = `${CHROMIUM} is absent: the review page's browser tests need Debian's chromium (bash scripts/setup.sh --test installs it)`;
if (!hasChromium) {
  if (process.env.CI) throw new Error(`${NO_CHROMIUM}; CI must have it`);
  console.warn(`[serve_browser] ${NO_CHROMIUM}: skipped`);
}
if (!hasShared) console.warn(`[serve_browser] ${SHARED_ABSENT}`);
const backbone = path.join(sharedBackbones, 'mobilenet_v1_imagenet.pt');
// The README's screenshots are rewritten only when asked (RECONPATCH_SCREENSHOTS=1), so that a test
// run leaves the checkout as it was; otherwise they go to a temporary folder.
const shots = process.env.RECONPATCH_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs/screenshots') : tempDir('serve-browser-shots');

interface VerdictBody { id: string; score: number; normalizedScore: number; isAnomaly: boolean; borderline: boolean; version: string }

describe.skipIf(!hasChromium || !hasShared)('review page (chromium)', () => {
  let app: FastifyInstance;
  let base = '';
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    const { store } = await storeWith('serve-browser', { plate: await plateModel(16, { backbone }) });
    app = await buildServer({ store, token: TOKEN, logger: false, defaultMetrics: false });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    context = await chromium.launchPersistentContext(tempDir('serve-browser-profile'), {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1180, height: 760 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
  });
  afterAll(async () => {
    await context?.close();
    await app?.close();
  });

  const score = async (rel: string, tag: string): Promise<VerdictBody> => {
    const r = await fetch(`${base}/score?model=plate&tag=${tag}`, { method: 'POST', body: readFileSync(path.join(plate, rel)), headers: { 'content-type': 'image/png', ...auth } });
    expect(r.status).toBe(200);
    return (await r.json()) as VerdictBody;
  };

  /** A screenshot, quantised to a palette PNG (a few tens of KB) for docs/. */
  async function shot(name: string): Promise<void> {
    mkdirSync(shots, { recursive: true });
    const png = await page.screenshot({ type: 'png' });
    writeFileSync(path.join(shots, `${name}.png`), await sharp(png).resize({ width: 944 }).png({ palette: true, colours: 96, compressionLevel: 9, effort: 10 }).toBuffer());
  }

  it('shows scored verdicts, takes "good part" on a false alarm, updates the model, and the next verdict has the new version', async () => {
    // Real parts: two good ones, one near the threshold, a defect, and a good part the model flags (a false alarm).
    const verdicts = [
      await score('test/good/test_00009.png', 'line1'),
      await score('test/good/train_00008.png', 'line1'),
      await score('test/defect/train_00048.png', 'line2'),
      await score('test/good/test_00004.png', 'line2'),
      await score('test/good/train_00023.png', 'line1'),
    ];
    const [ok, near, defect, , falseAlarm] = verdicts;
    expect([ok.isAnomaly, defect.isAnomaly, falseAlarm.isAnomaly]).toEqual([false, true, true]);
    expect(near.borderline).toBe(true);

    await page.goto(`${base}/review/#token=${TOKEN}`);
    const rows = page.locator('[data-verdict-id]');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(5);
    // Newest first.
    expect(await rows.first().getAttribute('data-verdict-id')).toBe(falseAlarm.id);
    expect(await page.locator(`[data-verdict-id="${defect.id}"] .badge`).textContent()).toBe('ANOMALY');
    expect(await page.locator(`[data-verdict-id="${near.id}"] .badge`).textContent()).toBe('BORDERLINE');
    expect(await page.locator(`[data-verdict-id="${ok.id}"] .badge`).textContent()).toBe('OK');
    // The thumbnails are the heatmaps, fetched with the token.
    await expect.poll(() => page.locator(`[data-verdict-id="${defect.id}"] img`).evaluate((img: HTMLImageElement) => img.naturalWidth), { timeout: 10_000 }).toBeGreaterThan(0);

    // Filters.
    await page.click('button[data-filter="anomalies"]');
    await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(2);
    await page.click('button[data-filter="borderline"]');
    await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(1);
    await page.click('button[data-filter="all"]');
    await page.fill('#tag', 'line2');
    await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(2);
    await page.fill('#tag', '');
    await expect.poll(() => rows.count(), { timeout: 5_000 }).toBe(5);

    const open = async (id: string) => {
      await page.click(`[data-verdict-id="${id}"]`);
      await expect.poll(() => page.locator('#detail').getAttribute('data-verdict-id')).toBe(id);
      await expect.poll(() => page.locator('#d-heatmap').evaluate((img: HTMLImageElement) => img.naturalWidth), { timeout: 10_000 }).toBeGreaterThan(0);
      await expect.poll(() => page.locator('#th-plot rect').count(), { timeout: 10_000 }).toBeGreaterThan(0);
    };
    await open(ok.id);
    expect(await page.textContent('#d-verdict')).toBe('OK');
    await shot('review-good');
    await open(defect.id);
    expect(await page.textContent('#d-verdict')).toBe('Anomaly');
    expect(await page.textContent('[data-fact="version"]')).toBe(defect.version);
    await shot('review-anomaly');
    await open(near.id);
    expect(await page.textContent('#d-verdict')).toMatch(/^Borderline/);
    await shot('review-borderline');

    // The false alarm: "good part", then "update model".
    await open(falseAlarm.id);
    await page.click('#label-good');
    await expect.poll(() => page.textContent('[data-fact="label"]')).toBe('good');
    await page.click(`[data-verdict-id="${defect.id}"]`);
    await page.click('#label-defect');
    await expect.poll(() => page.locator('#th-plot .labelled').count(), { timeout: 5_000 }).toBe(2);
    await expect.poll(() => page.isEnabled('#update-model')).toBe(true);
    expect(await page.textContent('#batch-text')).toContain("1 part of 'plate' labelled good, not yet learned");
    await page.locator('#side').evaluate((side) => side.scrollTo(0, side.scrollHeight));
    await shot('review-threshold');
    await page.click('#update-model');
    await expect.poll(() => page.locator('#update-status').getAttribute('data-state'), { timeout: 60_000 }).toBe('done');
    const newVersion = await page.locator('#update-status').getAttribute('data-version');
    expect(newVersion).toBeTruthy();
    expect(newVersion).not.toBe(falseAlarm.version);
    // The batch is empty again; the false alarm's card says it was learned.
    await expect.poll(() => page.textContent('#batch-text')).toContain("0 parts of 'plate'");
    expect(await page.isEnabled('#update-model')).toBe(false);
    expect(await page.textContent(`[data-verdict-id="${falseAlarm.id}"] .label`)).toBe('good · learned');

    // The next verdict comes from the new version, and the page shows it.
    const next = await score('test/good/train_00023.png', 'line1');
    expect(next.version).toBe(newVersion);
    expect(next.score).toBeLessThan(falseAlarm.score); // the false alarm's own image was learned as good
    await expect.poll(() => rows.first().getAttribute('data-verdict-id'), { timeout: 10_000 }).toBe(next.id);
    expect(await rows.first().locator('.version').textContent()).toBe(`plate · ${newVersion!.slice(0, 8)}`);
  }, 90_000);
});
