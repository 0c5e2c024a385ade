// The model file: one versioned, checksummed file holding everything needed to score.
//
//   "RCPMODEL" | u32 format version | u32 section count
//   sections:  char[4] tag | u64 length | payload          (unknown tags are skipped)
//   trailer:   SHA-256 of every byte before it (32 bytes)
//
// Tags: OPTS (options, key=value text), BKNM (backbone name), BKSH (sha256 of its weights),
// BKTS (the TorchScript file itself, when the backbone is one), BKSD (a torchvision backbone's
// weights up to its deepest tap, as a zip .pth state dict), BANK (tensor), STAT (text),
// HDFW / HDFB (the ReConPatch head's f: weight and bias tensors, when the head is on),
// META (caller metadata, e.g. calibration as JSON).
// Tensors: u8 dtype (0 = float32) | u8 ndim | i64 dims[ndim] | raw little-endian data.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/backbones/backbone.h"
#include "core/options.h"

namespace rp {

// Version 2 added BKSD (torchvision weights), version 3 the coreset's stopping radius (STAT
// coresetRadius, what update() continues from). Every version from 1 is read.
constexpr uint32_t kModelFormatVersion = 3;

struct ModelContents {
  EngineOptions options;
  std::string backboneName;
  std::string backboneSha256;
  BackboneKind backboneKind = BackboneKind::RandomCnn;
  std::string backboneBlob;   // Backbone::blob(): the TorchScript file, or the truncated state dict
  torch::Tensor bank;         // [M, D] float32 (CPU)
  torch::Tensor headWeight;   // ReConPatch f: [D, D] (undefined without a head)
  torch::Tensor headBias;     // [D]
  int64_t trainImages = 0;
  int64_t trainPatches = 0;
  double coresetRadius = -1;  // the coreset's stopping radius (projected space); -1: unknown (format < 3)
  int64_t updates = 0, updateRows = 0;
  std::string metadata;       // opaque text owned by the caller (JS keeps calibration there)
};

// The model as bytes, checksum included. Writing them to a file (atomically) is the caller's job.
std::string encodeModel(const ModelContents& model);

// Throws ErrorCode::ModelFile for anything truncated, corrupted, foreign or too new; `what` names
// the source in messages ("model file 'part.rcp'").
ModelContents decodeModel(std::string_view bytes, const std::string& what);

// The model's identity as hex SHA-256 over the sections that decide its scores, as encodeModel
// writes them (OPTS, BKNM, BKSH, BANK, STAT, HDFW, HDFB): not META (the caller's, rewritten on
// every save) and not the backbone blob (BKSH is its SHA-256). So it is the same for every
// re-save of one model and for the model a file loads into. `backboneBlob` is not read.
std::string contentHash(const ModelContents& model);

// The container both reconpatch files use (this one, and staged features: staged_file.h):
//   magic[8] | u32 version | u32 section count | sections | SHA-256 trailer.
using Sections = std::vector<std::pair<const char*, std::string_view>>;
std::string encodeSections(const char magic[8], uint32_t version, const Sections& sections);

struct DecodedSections {
  uint32_t version = 0;
  std::map<std::string, std::string> sections;  // tag -> payload
};
// Checks the magic, the checksum and 1 <= version <= maxVersion. Throws ErrorCode::ModelFile;
// `kind` says what the bytes should be ("a reconpatch model"), `fix` what to do about damage.
DecodedSections decodeSections(std::string_view bytes, const char magic[8], uint32_t maxVersion, const std::string& what,
                               const char* kind, const char* fix);

// Tensors as the files store them (float32; see the layout above). decodeTensor refuses a
// shape that does not match the payload and any non-finite value.
std::string encodeTensor(const torch::Tensor& t);
torch::Tensor decodeTensor(const std::string& payload, const std::string& what);

}  // namespace rp
