// Engine options as a plain struct. JS validates them (lib/options.ts) and copies them in
// before any worker runs; the core trusts them. Serialised as `key=value` lines in model files.
#pragma once
#include <cstdint>
#include <string>

namespace rp {

// Area (the default): aspect ratio kept, scaled to about resize x resize pixels in all (the
// feature grid follows the image); Shorter: the shorter side becomes resize; Squash: resize x resize.
enum class ResizeMode { Area, Shorter, Squash };
enum class Distance { Euclidean, SquaredEuclidean };
// Bandwidth of the head's pairwise kernel: Fixed, sigma itself; Knn, sigma times the batch's mean
// squared distance from each point to its k-th nearest other point (head.h, kthNeighbourBandwidth).
enum class SigmaRule { Fixed, Knn };

// ReConPatch head training (RECONPATCH.md §2).
// Defaults: the head study's choice (docs/results.md, issue 19): the knn bandwidth and the
// adaptive budget, at most 1000 iterations.
struct HeadOptions {
  int64_t iterations = 1000;   // with plateau > 0 a maximum
  int64_t batch = 1024;        // N patches sampled per iteration
  int64_t projectionDim = 0;   // D' of g (0: D)
  double lr = 1e-3;            // AdamW, cosine decay to 0
  double weightDecay = 1e-2;
  double ema = 0.9;            // partner update: theta_bar <- ema * theta_bar + (1 - ema) * theta
  int64_t k = 5;               // contextual k-NN
  double sigma = 1.0;          // pairwise bandwidth (Fixed) or its scale (Knn)
  SigmaRule sigmaRule = SigmaRule::Knn;
  double alpha = 0.5;          // w = alpha * wP + (1 - alpha) * wC
  double margin = 1.0;
  bool normalize = false;      // L2-normalise z_bar before both similarities (pairwise and contextual)
  bool initIdentity = true;    // f starts as the identity: 0 iterations == PatchCore
  // Adaptive budget: 0 trains `iterations` steps; > 0 makes `iterations` a maximum and stops after
  // a window of kPlateauWindow steps whose mean loss is not below the previous window's by this
  // fraction (head.cc).
  double plateau = 0.01;
  uint64_t seed = 0;           // set from EngineOptions::seed
  // Not an engine option (never serialised): train with the dense contextual products and the
  // autograd loss, the formulation before issue 21 (tests and the bench compare the two).
  bool denseReference = false;
  // Not an engine option either: losses are read back from the device every this many iterations
  // (head.cc; tests compare intervals).
  int64_t lossReadEvery = 16;
};

struct EngineOptions {
  // Backbone: a built-in name ("random_cnn"), a torchvision architecture ("wide_resnet50_2", see
  // torchvision_backbones.h) or a TorchScript file path.
  std::string backbone = "random_cnn";
  std::string weights;  // torchvision architectures: the .pth state-dict file
  std::string layers;   // torchvision architectures: comma-separated taps ("layer2,layer3"); empty = default

  // Preprocessing (RECONPATCH.md §1.1). resize 0 = keep size; crop 0 = no crop (the default:
  // every pixel is inspected).
  int64_t resize = 256;
  int64_t crop = 0;
  ResizeMode resizeMode = ResizeMode::Area;
  // false: never scale an image up (a smaller image is inspected at its own size); resize: 'auto'.
  bool upscale = true;
  // Tiling (image.h, planTiles): the resized image is embedded in overlapping tiles of tileSize
  // pixels (0: whole) and their features stitched into one grid; the bank is shared.
  int64_t tileSize = 0;
  int64_t tileOverlap = 128;

  // Patch features (§1.4-5).
  int64_t patchSize = 3;
  int64_t pretrainDim = 1024;
  int64_t targetDim = 1024;

  // Coreset (§3).
  double coresetRatio = 0.1;
  // Precision of the patch features held during fit: "float32" or "float16" (half the memory;
  // the coreset projection, head and bank still compute in float32).
  std::string fitPrecision = "float32";
  int64_t coresetProjection = 128;
  int64_t coresetStarts = 10;

  // Scoring (§3).
  Distance distance = Distance::Euclidean;
  bool reweight = false;          // Eq. 7 image-score reweighting
  int64_t reweightNeighbors = 9;  // b in Eq. 7
  double blurSigma = 4.0;

  // ReConPatch head (§2). Off: PatchCore features as they are.
  bool head = false;
  HeadOptions headOptions;

  // Runtime.
  std::string device = "auto";  // "cpu" | "cuda" | "auto"
  int threads = 0;             // 0 = all cores
  uint64_t seed = 0;
  int64_t batchSize = 4;
};

// Calls visit(name, field) for every serialised option, in one fixed order: the single list that
// the model file's text form and the N-API conversion both use. Works on const and non-const.
template <class Options, class Visitor>
void visitOptions(Options& o, Visitor&& visit) {
  visit("backbone", o.backbone);
  visit("weights", o.weights);
  visit("layers", o.layers);
  visit("resize", o.resize);
  visit("crop", o.crop);
  visit("resizeMode", o.resizeMode);
  visit("upscale", o.upscale);
  visit("tileSize", o.tileSize);
  visit("tileOverlap", o.tileOverlap);
  visit("patchSize", o.patchSize);
  visit("pretrainDim", o.pretrainDim);
  visit("targetDim", o.targetDim);
  visit("coresetRatio", o.coresetRatio);
  visit("coresetProjection", o.coresetProjection);
  visit("coresetStarts", o.coresetStarts);
  visit("fitPrecision", o.fitPrecision);
  visit("distance", o.distance);
  visit("reweight", o.reweight);
  visit("reweightNeighbors", o.reweightNeighbors);
  visit("blurSigma", o.blurSigma);
  visit("head", o.head);
  visit("headIterations", o.headOptions.iterations);
  visit("headBatch", o.headOptions.batch);
  visit("headProjectionDim", o.headOptions.projectionDim);
  visit("headLr", o.headOptions.lr);
  visit("headWeightDecay", o.headOptions.weightDecay);
  visit("headEma", o.headOptions.ema);
  visit("headK", o.headOptions.k);
  visit("headSigma", o.headOptions.sigma);
  visit("headSigmaRule", o.headOptions.sigmaRule);
  visit("headAlpha", o.headOptions.alpha);
  visit("headMargin", o.headOptions.margin);
  visit("headNormalize", o.headOptions.normalize);
  visit("headInitIdentity", o.headOptions.initIdentity);
  visit("headPlateau", o.headOptions.plateau);
  visit("device", o.device);
  visit("threads", o.threads);
  visit("seed", o.seed);
  visit("batchSize", o.batchSize);
}

// Enum options as their JS / text names.
const char* enumName(ResizeMode m);
const char* enumName(Distance d);
const char* enumName(SigmaRule r);
bool parseEnum(const std::string& name, ResizeMode* out);
bool parseEnum(const std::string& name, Distance* out);
bool parseEnum(const std::string& name, SigmaRule* out);

std::string toText(const EngineOptions& o);
EngineOptions optionsFromText(const std::string& text);  // throws ErrorCode::ModelFile

}  // namespace rp
