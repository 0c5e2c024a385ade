/** The engine options the commands share: flags, help text, and flags -> EngineOptions; parsing with usage errors coded. */
import { type ParseArgsConfig, parseArgs } from 'node:util';

import { ReconpatchError } from '../errors.js';
import type { LoadOptions } from '../engine/engine.js';
import type { FailOn, InputOptions } from '../io/images.js';
import type { EngineOptions, HeadOptions } from '../options.js';

/**
 * node:util parseArgs, with its usage errors (an unknown flag, a missing value, a stray argument:
 * TypeErrors coded ERR_PARSE_ARGS_*) as ERR_INVALID_OPTION, which the CLI exits 2 on.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))
      throw new ReconpatchError('ERR_INVALID_OPTION', (err as Error).message, { cause: err });
    throw err;
  }
}

/** What inputs a command accepts (Engine `input` options); fit, eval, score and update take them. */
export const INPUT_FLAGS = {
  'max-pixels': { type: 'string' },
  'max-resized-pixels': { type: 'string' },
  'fail-on': { type: 'string' },
} as const;

export const INPUT_HELP = `Input options (not saved with a model):
  --max-pixels <n>            largest image accepted, width x height (default 67108864 = 8192 x 8192)
  --max-resized-pixels <n>    largest image after the model's resize (default 4194304 = 2048 x 2048)
  --fail-on warning|error|truncated|none   refuse damaged images from this level on (default warning)`;

/** The input options given as flags, or undefined when none was (checked where engines take them). */
export function inputOptions(v: Record<string, unknown>): InputOptions | undefined {
  const o: InputOptions = {};
  const maxPixels = numberFlag('max-pixels', v['max-pixels']);
  if (maxPixels !== undefined) o.maxPixels = maxPixels;
  const maxResizedPixels = numberFlag('max-resized-pixels', v['max-resized-pixels']);
  if (maxResizedPixels !== undefined) o.maxResizedPixels = maxResizedPixels;
  if (v['fail-on'] !== undefined) o.failOn = v['fail-on'] as FailOn;
  return Object.keys(o).length ? o : undefined;
}

/** What a command that loads a saved model takes for it (not saved with the model): threads, device, input limits. */
export const LOAD_FLAGS = {
  threads: { type: 'string' },
  device: { type: 'string' },
  ...INPUT_FLAGS,
} as const;

export const LOAD_HELP = `Engine options for a loaded model (this run only):
  --threads <n>               libtorch intra-op threads (default: the model's; at most the machine's cores)
  --device cpu|cuda|auto      checked against the device the model loads on (a model runs where it was saved for)

${INPUT_HELP}`;

/** Engine.load / Ensemble.load options from the LOAD_FLAGS given. */
export function loadOptions(v: Record<string, unknown>): Pick<LoadOptions, 'threads' | 'input'> {
  const o: Pick<LoadOptions, 'threads' | 'input'> = {};
  const threads = numberFlag('threads', v.threads);
  if (threads !== undefined) o.threads = threads;
  const input = inputOptions(v);
  if (input) o.input = input;
  return o;
}

export const ENGINE_FLAGS = {
  backbone: { type: 'string', multiple: true },
  weights: { type: 'string' },
  layers: { type: 'string' },
  resize: { type: 'string' },
  crop: { type: 'string' },
  'resize-mode': { type: 'string' },
  tiles: { type: 'string' },
  coreset: { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  device: { type: 'string' },
  head: { type: 'boolean' },
  'no-head': { type: 'boolean' },
  'head-auto': { type: 'boolean' },
  'head-iterations': { type: 'string' },
  'head-lr': { type: 'string' },
  'head-batch': { type: 'string' },
  'head-sigma': { type: 'string' },
  'head-sigma-rule': { type: 'string' },
  'head-k': { type: 'string' },
  'head-alpha': { type: 'string' },
  'head-ema': { type: 'string' },
  'head-plateau': { type: 'string' },
  'head-normalize': { type: 'boolean' },
  ...INPUT_FLAGS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const ENGINE_HELP = `Engine options:
  --backbone <name|file.pt>   required: a TorchScript backbone file, a torchvision architecture (resnet18,
                              resnet50, wide_resnet50_2, wide_resnet101_2, resnext101_32x8d, densenet201;
                              weights from 'reconpatch weights pull <name>'), or random_cnn (an untrained
                              network for tests: it finds nothing real); several (a.pt,b.pt or repeated
                              --backbone) make an ensemble: one engine per backbone with these options,
                              scores fused by per-member min-max
  --weights <file.pth>        torchvision architectures: this state dict instead of the cached weights
  --layers <a,b>              torchvision taps (default layer2,layer3; denseblock2,denseblock3)
  --resize <px|none|auto>     resize target (default 256: with resize mode area, about 256 x 256 pixels);
                              auto: about 384 x 384, never above the image's own size (small defects)
  --crop <px|none>            center crop (default none: every pixel inspected; outside a crop is not)
  --resize-mode area|shorter|squash   area (default): aspect ratio kept, about resize^2 pixels
  --tiles <px[,overlap]>      embed the resized image in overlapping tiles (a multiple of 32; overlap
                              default 128) stitched into one map: bounds memory on very large images
  --coreset <ratio>           coreset ratio (default 0.1)
  --no-head                   no ReConPatch head: PatchCore features as they are (the head is trained by default)
  --head-auto                 train the head, check on held-out good images with synthetic defects, keep it only if it helps
  --head-iterations <n>  --head-lr <x>  --head-batch <n>  --head-k <n>  --head-alpha <x>  --head-ema <x>
  --head-sigma <x>  --head-sigma-rule fixed|knn  --head-normalize  --head-plateau <x>
  --seed <n>  --threads <n>  --device cpu|cuda|auto
  --json                      one JSON line on stdout

${INPUT_HELP}`;

/**
 * The number typed for `--flag`, or ERR_INVALID_OPTION quoting the text as typed (so `--coreset
 * abc` says 'abc', not a parsed null). undefined when the flag was not given.
 */
export function numberFlag(flag: string, text: unknown): number | undefined {
  if (text === undefined) return undefined;
  const t = String(text).trim();
  const n = Number(t);
  if (t === '' || !Number.isFinite(n)) throw new ReconpatchError('ERR_INVALID_OPTION', `--${flag} must be a number, got '${String(text)}'`);
  return n;
}

const NO_BACKBONE =
  'no --backbone given: pass a TorchScript backbone file (e.g. mobilenet_v1_imagenet.pt), a torchvision architecture ' +
  "(resnet18, wide_resnet50_2, ...; 'reconpatch weights pull <name>' fetches its weights), or random_cnn to ask for the " +
  'untrained test network by name (it finds nothing real)';

export function engineOptions(v: Record<string, unknown>, defaults: Partial<EngineOptions> = {}): EngineOptions {
  const num = (flag: string) => numberFlag(flag, v[flag]);
  const size = (flag: string) => (v[flag] === undefined ? undefined : v[flag] === 'none' ? null : numberFlag(flag, v[flag]));
  const backbone = backbonesOf(v)[0] ?? defaults.backbone;
  if (backbone === undefined) throw new ReconpatchError('ERR_INVALID_OPTION', NO_BACKBONE);
  const o: EngineOptions = { ...defaults, backbone };
  if (v.weights !== undefined) o.weights = v.weights as string;
  if (v.layers !== undefined) o.layers = (v.layers as string).split(',');
  if (v.resize !== undefined) o.resize = v.resize === 'auto' ? 'auto' : size('resize');
  if (v.tiles !== undefined) {
    const [tileSize, overlap] = String(v.tiles).split(',');
    o.tiles = v.tiles === 'none' ? null : { size: numberFlag('tiles', tileSize) as number, ...(overlap === undefined ? {} : { overlap: numberFlag('tiles', overlap) }) };
  }
  if (v.crop !== undefined) o.crop = size('crop');
  if (v['resize-mode'] !== undefined) o.resizeMode = v['resize-mode'] as EngineOptions['resizeMode'];
  if (v.coreset !== undefined) o.coreset = { ratio: num('coreset') };
  if (v.seed !== undefined) o.seed = num('seed');
  if (v.threads !== undefined) o.threads = num('threads');
  if (v.device !== undefined) o.device = v.device as EngineOptions['device'];
  const head: HeadOptions = {};
  if (v['head-iterations'] !== undefined) head.iterations = num('head-iterations');
  if (v['head-lr'] !== undefined) head.lr = num('head-lr');
  if (v['head-batch'] !== undefined) head.batch = num('head-batch');
  if (v['head-sigma'] !== undefined) head.sigma = num('head-sigma');
  if (v['head-sigma-rule'] !== undefined) head.sigmaRule = v['head-sigma-rule'] as HeadOptions['sigmaRule'];
  if (v['head-k'] !== undefined) head.k = num('head-k');
  if (v['head-alpha'] !== undefined) head.alpha = num('head-alpha');
  if (v['head-ema'] !== undefined) head.ema = num('head-ema');
  if (v['head-plateau'] !== undefined) head.plateau = num('head-plateau');
  if (v['head-normalize']) head.normalize = true;
  if (v['head-auto']) head.auto = true;
  if (v['no-head']) {
    if (v.head || Object.keys(head).length > 0) throw new ReconpatchError('ERR_INVALID_OPTION', '--no-head turns the head off: it takes no --head or --head-* flag');
    o.head = false;
  } else if (v.head || Object.keys(head).length > 0) o.head = head;
  const input = inputOptions(v);
  if (input) o.input = input;
  return o;
}

/** The --backbone values: repeated flags and comma-separated lists, in order. */
export function backbonesOf(v: Record<string, unknown>): string[] {
  return ((v.backbone as string[] | undefined) ?? []).flatMap((b) => b.split(',')).filter((b) => b !== '');
}

/** One engine's options per backbone when several are given (an ensemble), else null. */
export function ensembleMembers(v: Record<string, unknown>, defaults: Partial<EngineOptions> = {}): EngineOptions[] | null {
  const backbones = backbonesOf(v);
  if (backbones.length < 2) return null;
  const shared = engineOptions(v, defaults);
  return backbones.map((backbone) => ({ ...shared, backbone }));
}

