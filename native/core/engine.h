// Fit/score orchestration over the pipeline steps. This header is free of torch includes so the
// N-API glue compiles quickly; the state lives behind a pimpl.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/float_array.h"
#include "core/options.h"
#include "core/raw_image.h"

namespace rp {

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
  int64_t trainImages = 0;   // images the bank was built from (fit and updates)
  int64_t trainPatches = 0;  // patch features they gave, before the coreset
  int64_t updates = 0;       // update() calls committed since the fit
  int64_t updateRows = 0;    // bank rows those updates added
  std::string device;
};

// One nominal fit image scored against the pending bank without the rows it contributed
// (leave-one-image-out): evidence for the calibration, as if the image had been held out.
struct LeaveOutResult {
  int64_t input = 0;  // the image's position in the fit's input (fitAdd order)
  float score = 0.f;  // image score, as scoring computes it
  float mapMin = 0.f, mapMax = 0.f, mapMean = 0.f;  // its anomaly map (over the inspected window)
};

// What fitAddStaged took in: the shard's images and patches (also those its budget reduced away),
// the rows it carried and the caller's metadata.
struct StagedShardInfo {
  int64_t images = 0, patches = 0, rows = 0;
  std::string metadata;
};

// What a staged fit builds: a new model from the staged images alone, or the live model grown by
// the staged images' patches that lie outside its coverage (update).
enum class FitMode { Fit, Update };

// (stage, done, total, value): stage "head" (value = loss), "coreset" or "calibrate" (value = NaN).
using StageProgressFn = std::function<void(const char* stage, int64_t done, int64_t total, double value)>;

struct ModelContents;

// A model file decoded but not yet built into an engine, so the caller can check its options
// before anything is constructed from them.
class DecodedModel {
 public:
  // Throws ErrorCode::ModelFile for anything truncated, corrupted, foreign or too new. `label`
  // names the source in messages ("model file 'part.rcp'"). Keeps no reference to `bytes`.
  DecodedModel(std::string_view bytes, std::string label);
  ~DecodedModel();
  const EngineOptions& options() const;

 private:
  friend class Engine;
  std::unique_ptr<ModelContents> contents_;
  std::string label_;
};

// One engine = one backbone + one fitted model (memory bank, optional head, caller metadata).
// A fit is a transaction: fitBegin / fitAdd stage the features, fitEnd builds the new model into
// a pending slot (the live model keeps serving), scorePending lets the caller calibrate against
// it, and fitCommit makes it live together with its metadata. fitAbort, or a failure anywhere
// before the commit, leaves the live model and its metadata as they were.
class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Builds the engine a decoded model file describes (its options checked by the caller);
  // consumes the model's contents.
  static std::unique_ptr<Engine> fromModel(DecodedModel& model);

  const EngineOptions& options() const;
  // A snapshot: never waits for a running fit or score (it has its own lock).
  EngineInfo info() const;

  // maxStagedPatches > 0 bounds the features held during the fit: when the staged patches exceed
  // it they are reduced to a coreset of half that size and staging goes on (merge and reduce).
  void fitBegin(FitMode mode = FitMode::Fit, int64_t maxStagedPatches = 0);
  void fitAdd(const std::vector<RawImageView>& images);  // embed a batch of nominal images
  // Head training, coreset -> the pending model. leaveOut > 0: then up to that many staged images
  // (spread evenly over the input) are scored against the pending bank without their own rows,
  // before the staged features are released (leaveOutResults()).
  void fitEnd(const StageProgressFn& progress, int64_t leaveOut = 0);
  // The last fitEnd's leave-one-image-out results, in input order (empty when none were asked, or
  // when the bank holds rows of one image only).
  std::vector<LeaveOutResult> leaveOutResults() const;
  // A distributed fit (lib/fleet/fit.ts). fitTakeStaged ends the fit in progress (fitBegin /
  // fitAdd) by handing its staged features over as bytes (io/staged_file.h) instead of building a
  // model: the live model is untouched. fitAddStaged adds such bytes, staged by an engine with the
  // same backbone and feature options (else ErrorCode::InvalidOption), to this fit, as fitAdd adds
  // images (reduced the same way under a budget; never scored leave-one-out). Both say what the
  // bytes hold in `StagedShardInfo`.
  std::string fitTakeStaged(const std::string& metadata, StagedShardInfo* info);
  StagedShardInfo fitAddStaged(std::string_view bytes, const std::string& label);
  std::vector<ScoreResult> scorePending(const std::vector<RawImageView>& images);
  void fitCommit(const std::string& metadata);           // the pending model (and metadata) goes live
  void fitAbort();                                       // drops the staged features and the pending model
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

  // The fitted model as model-file bytes (io/model_file.h).
  std::string encode() const;
  // Hex SHA-256 of the fitted model's scoring sections (io/model_file.h contentHash): the same
  // after every re-save and load of one model. Throws NotFitted.
  std::string contentHash() const;

  // Patch features of one image, [rows, dim] row-major (tests and tools).
  std::vector<float> embed(const RawImageView& image, int64_t* rows, int64_t* dim);

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp
