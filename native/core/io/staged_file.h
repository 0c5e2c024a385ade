// Staged features: the patch features a fit staged on one engine, carried to another engine that
// builds the model from them (a distributed fit's shard, lib/fleet/fit). The model file's
// container (model_file.h) under its own magic:
//
//   "RCPSTAGE" | u32 version | sections | SHA-256 trailer
//   OPTS (the staging engine's options), BKSH (SHA-256 of its backbone), STAT (images=, patches=:
//   what the shard embedded, also what a budget reduced away), META (caller text), ROWS ([rows, D]).
#pragma once
#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/options.h"

namespace rp {

constexpr uint32_t kStagedFormatVersion = 1;

struct StagedFeatures {
  EngineOptions options;
  std::string backboneSha256;
  int64_t images = 0;
  int64_t patches = 0;
  std::string metadata;
  torch::Tensor rows;  // [rows, targetDim] float32 (CPU)
};

// `chunks` are the staged rows in order ([m_i, D] each); `features.rows` is not read.
std::string encodeStaged(const StagedFeatures& features, const std::vector<torch::Tensor>& chunks);

// Throws ErrorCode::ModelFile for anything truncated, corrupted, foreign or too new.
StagedFeatures decodeStaged(std::string_view bytes, const std::string& what);

// Whether features staged with options `a` can join a fit with options `b`: every option the
// same but the runtime ones (device, threads, batchSize) and the backbone's paths (backbone,
// weights: the caller compares the backbones' SHA-256). Empty when they can; else the first
// differing option as "name: a vs b".
std::string stagedOptionsDiffer(const EngineOptions& a, const EngineOptions& b);

}  // namespace rp
