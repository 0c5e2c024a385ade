// A shared dataset for a bench: ../shared/datasets/<category> and mobilenet_v1, or exit 1 saying
// that ../shared is absent. train: train/good; test: every test image, folders in order.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

export function benchDataset(root, category) {
  const shared = path.resolve(root, '../shared');
  const mobilenet = path.join(shared, 'backbones/mobilenet_v1_imagenet.pt');
  if (!existsSync(path.join(shared, 'datasets', category)) || !existsSync(mobilenet)) {
    console.error(`../shared is absent (${shared}): nothing to measure`);
    process.exit(1);
  }
  const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
  const train = ls(path.join(shared, 'datasets', category, 'train/good'));
  const testRoot = path.join(shared, 'datasets', category, 'test');
  const test = readdirSync(testRoot).sort().flatMap((d) => ls(path.join(testRoot, d)));
  return { shared, mobilenet, train, test };
}
