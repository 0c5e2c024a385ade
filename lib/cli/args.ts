/** The engine options the commands share: flags, help text, and flags -> EngineOptions. */
import type { EngineOptions, HeadOptions } from '../options.js';

export const ENGINE_FLAGS = {
  backbone: { type: 'string', multiple: true },
  weights: { type: 'string' },
  layers: { type: 'string' },
  resize: { type: 'string' },
  crop: { type: 'string' },
  'resize-mode': { type: 'string' },
  coreset: { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  device: { type: 'string' },
  head: { type: 'boolean' },
  'head-iterations': { type: 'string' },
  'head-lr': { type: 'string' },
  'head-batch': { type: 'string' },
  'head-sigma': { type: 'string' },
  'head-normalize': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const ENGINE_HELP = `Engine options:
  --backbone <name|file.pt>   random_cnn, a torchvision architecture (resnet18, resnet50, wide_resnet50_2,
                              wide_resnet101_2, resnext101_32x8d, densenet201; weights from
                              'reconpatch weights pull <name>') or a TorchScript backbone file; several
                              (a.pt,b.pt or repeated --backbone) make an ensemble: one engine per
                              backbone with these options, scores fused by per-member min-max
  --weights <file.pth>        torchvision architectures: this state dict instead of the cached weights
  --layers <a,b>              torchvision taps (default layer2,layer3; denseblock2,denseblock3)
  --resize <px|none>          resize target (default 256)
  --crop <px|none>            center crop (default 224)
  --resize-mode shorter|squash
  --coreset <ratio>           coreset ratio (default 0.1)
  --head                      train the ReConPatch head (default off: PatchCore)
  --head-iterations <n>  --head-lr <x>  --head-batch <n>  --head-sigma <x>  --head-normalize
  --seed <n>  --threads <n>  --device cpu|cuda|auto
  --json                      one JSON line on stdout`;

export function engineOptions(v: Record<string, unknown>, defaults: Partial<EngineOptions> = {}): EngineOptions {
  const num = (x: unknown) => (x === undefined ? undefined : Number(x));
  const size = (x: unknown) => (x === undefined ? undefined : x === 'none' ? null : Number(x));
  const o: EngineOptions = { ...defaults, backbone: backbonesOf(v)[0] ?? defaults.backbone ?? 'random_cnn' };
  if (v.weights !== undefined) o.weights = v.weights as string;
  if (v.layers !== undefined) o.layers = (v.layers as string).split(',');
  if (v.resize !== undefined) o.resize = size(v.resize);
  if (v.crop !== undefined) o.crop = size(v.crop);
  if (v['resize-mode'] !== undefined) o.resizeMode = v['resize-mode'] as EngineOptions['resizeMode'];
  if (v.coreset !== undefined) o.coreset = { ratio: num(v.coreset) };
  if (v.seed !== undefined) o.seed = num(v.seed);
  if (v.threads !== undefined) o.threads = num(v.threads);
  if (v.device !== undefined) o.device = v.device as EngineOptions['device'];
  const head: HeadOptions = {};
  if (v['head-iterations'] !== undefined) head.iterations = num(v['head-iterations']);
  if (v['head-lr'] !== undefined) head.lr = num(v['head-lr']);
  if (v['head-batch'] !== undefined) head.batch = num(v['head-batch']);
  if (v['head-sigma'] !== undefined) head.sigma = num(v['head-sigma']);
  if (v['head-normalize']) head.normalize = true;
  if (v.head || Object.keys(head).length > 0) o.head = head;
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

/** Progress on stderr: a bar per stage on a terminal, a plain line a second otherwise (CI logs). */
