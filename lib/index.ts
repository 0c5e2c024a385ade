/**
 * reconpatch: industrial anomaly detection (PatchCore / ReConPatch) for Node.js on libtorch.
 * @example
 * import { Engine } from 'reconpatch';
 * const engine = await Engine.create({ backbone: 'random_cnn' });
 */
export { Engine } from './engine/engine.js';
export type { CalibrateOptions, EngineInfo, FitOptions, LoadOptions, FitSummary, Progress, ScoreOptions, ScoreResult, ScoreStreamItem, ScoreStreamOptions, StageOptions, StagedShard, UpdateOptions, UpdateSummary } from './engine/engine.js';
export { Ensemble, fuseTestMinMax, minMax } from './ensemble/ensemble.js';
export type { EnsembleFitOptions, EnsembleFitSummary, EnsembleInfo, EnsembleLoadOptions, EnsembleOptions, EnsembleProgress, EnsembleScoreResult, EnsembleStreamItem, MemberOutputs, MemberRange } from './ensemble/ensemble.js';
export type { Calibration, LabelObjective } from './calibration.js';
export type { BatchingOptions, EngineOptions, HeadOptions } from './options.js';
export { AUTO_RESIZE, BUILTIN_BACKBONES, HEAD_DEFAULTS } from './options.js';
export type { FailOn, ImageInput, InputOptions, RawImage } from './io/images.js';
export { INPUT_DEFAULTS, toRawFrame } from './io/images.js';
export { ReconpatchError } from './errors.js';
export { TORCHVISION_WEIGHTS, cachedWeights, defaultCacheDir, pullWeights } from './io/weights.js';
export type { DownloadProgress, PullOptions, TorchvisionArchitecture } from './io/weights.js';
export type { ErrorCode } from './errors.js';
export { runtimeInfo } from './native.js';
export type { RuntimeInfo } from './native.js';
export type { LibtorchSource } from './libtorch/find.js';
