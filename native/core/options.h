// Engine options as a plain struct. JS validates them (lib/options.ts) and copies them in
// before any worker runs; the core trusts them. Serialised as `key=value` lines in model files.
#pragma once
#include <cstdint>
#include <string>

namespace rp {

enum class ResizeMode { Shorter, Squash };
enum class Distance { Euclidean, SquaredEuclidean };

struct EngineOptions {
  // Backbone: a built-in name ("random_cnn") or a TorchScript file path.
  std::string backbone = "random_cnn";
  std::string weights;  // optional weights file (built-in architectures)

  // Preprocessing (RECONPATCH.md §1.1). resize 0 = keep size; crop 0 = no crop.
  int64_t resize = 256;
  int64_t crop = 224;
  ResizeMode resizeMode = ResizeMode::Shorter;

  // Patch features (§1.4-5).
  int64_t patchSize = 3;
  int64_t pretrainDim = 1024;
  int64_t targetDim = 1024;

  // Coreset (§3).
  double coresetRatio = 0.1;
  int64_t coresetProjection = 128;
  int64_t coresetStarts = 10;

  // Scoring (§3).
  Distance distance = Distance::Euclidean;
  bool reweight = false;          // Eq. 7 image-score reweighting
  int64_t reweightNeighbors = 9;  // b in Eq. 7
  double blurSigma = 4.0;

  // ReConPatch head (§2). Off: PatchCore features as they are.
  bool head = false;
  int64_t headIterations = 300;
  int64_t headBatch = 1024;
  int64_t headProjectionDim = 0;
  double headLr = 1e-3;
  double headWeightDecay = 1e-2;
  double headEma = 0.9;
  int64_t headK = 5;
  double headSigma = 1.0;
  double headAlpha = 0.5;
  double headMargin = 1.0;
  bool headNormalize = false;
  bool headInitIdentity = true;

  // Runtime.
  std::string device = "cpu";  // "cpu" | "cuda" | "auto"
  int threads = 0;             // 0 = all cores
  uint64_t seed = 0;
  int64_t batchSize = 4;
};

std::string toText(const EngineOptions& o);
EngineOptions optionsFromText(const std::string& text);  // throws ErrorCode::ModelFile

}  // namespace rp
