// Fit/score orchestration over the pipeline steps. This header is free of torch includes so the
// N-API glue compiles quickly; the state lives behind a pimpl.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/options.h"

namespace rp {

struct RawImageView;

struct ScoreResult {
  float score = 0.f;        // image score (max patch distance, or Eq. 7)
  std::vector<float> map;   // [height, width] anomaly map at the original image size
  int64_t width = 0;
  int64_t height = 0;
};

struct EngineInfo {
  std::string backboneName;
  std::string backboneSha256;
  bool fitted = false;
  int64_t bankRows = 0;
  int64_t featureDim = 0;
  int64_t trainImages = 0;
  int64_t trainPatches = 0;
  std::string device;
};

// (stage, done, total, value): stage "head" (value = loss) or "coreset" (value = NaN).
using StageProgressFn = std::function<void(const char* stage, int64_t done, int64_t total, double value)>;

// One engine = one backbone + one fitted memory bank. Methods lock the engine; fit happens in a
// staging area, so a failed or aborted fit leaves the previously fitted state untouched.
class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const EngineOptions& options() const;
  EngineInfo info() const;

  void fitBegin();
  void fitAdd(const std::vector<RawImageView>& images);  // embed a batch of nominal images
  void fitEnd(const StageProgressFn& progress);          // head training, coreset; then the new state replaces the old
  void fitAbort();
  void requestCancel();  // thread-safe; makes a running fitAdd/fitEnd throw ErrorCode::Aborted

  std::vector<ScoreResult> score(const std::vector<RawImageView>& images);

  // Throws ErrorCode::InvalidImage for an image this engine could not embed (cheap: geometry only).
  void validate(const std::vector<RawImageView>& images) const;

  // libtorch intra-op threads for this engine's calls from now on (0: the options' value). Not
  // saved: a loaded model runs on the machine it is loaded on. Thread-safe, never blocks.
  void setThreads(int threads);

  // Caller metadata saved with the model (JS keeps calibration there).
  void setMetadata(const std::string& metadata);
  std::string metadata() const;

  void save(const std::string& path);
  static std::unique_ptr<Engine> load(const std::string& path);

  // Patch features of one image, [rows, dim] row-major (tests and tools).
  std::vector<float> embed(const RawImageView& image, int64_t* rows, int64_t* dim);

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp
