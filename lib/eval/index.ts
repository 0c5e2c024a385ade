/**
 * `reconpatch/eval`: the evaluation protocol and its parts, for measuring models on labelled data
 * in MVTec AD layout (`<root>/<category>/{train/good, test/<kind>, ground_truth/<kind>}`).
 * @example
 * import { evaluate } from 'reconpatch/eval';
 * const row = await evaluate('datasets', 'metal_plate', { backbone: 'model.pt' });
 */
export { PIXEL_EVAL_SIDE, evaluate, evaluateEnsemble, measureEngine } from './evaluate.js';
export type { EvaluateOptions } from './evaluate.js';
export { GOOD_ONLY_HOLDOUT, GOOD_ONLY_MIN_IMAGES, evaluateGoodOnly } from './good_only.js';
export type { GoodOnlyOptions } from './good_only.js';
export { auroc, f1Max, pixelAuroc, pro } from './metrics.js';
export { IMAGE_EXTENSIONS, listImages, readMask, readMvtecDataset } from './dataset.js';
export type { Dataset, DatasetItem } from './dataset.js';
export { makeSyntheticDataset } from './synthetic.js';
export type { SyntheticOptions } from './synthetic.js';
