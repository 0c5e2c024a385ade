#include "core/io/staged_file.h"

#include <sstream>

#include "core/error.h"
#include "core/io/model_file.h"

namespace rp {

namespace {

constexpr char kStagedMagic[8] = {'R', 'C', 'P', 'S', 'T', 'A', 'G', 'E'};

// The options as `key=value` lines, the paths and runtime ones left out.
std::vector<std::string> comparableLines(EngineOptions o) {
  o.backbone.clear();
  o.weights.clear();
  o.device.clear();
  o.threads = 0;
  o.batchSize = 0;
  std::vector<std::string> lines;
  std::istringstream text(toText(o));
  for (std::string line; std::getline(text, line);) lines.push_back(line);
  return lines;
}

}  // namespace

std::string encodeStaged(const StagedFeatures& f, const std::vector<torch::Tensor>& chunks) {
  const int64_t D = f.options.targetDim;
  const std::string opts = toText(f.options);
  const std::string stat = "images=" + std::to_string(f.images) + "\npatches=" + std::to_string(f.patches) + "\n";
  const std::string rows = encodeTensor(chunks.empty() ? torch::empty({0, D}) : torch::cat(chunks, 0));
  return encodeSections(kStagedMagic, kStagedFormatVersion, {{"OPTS", opts}, {"BKSH", f.backboneSha256}, {"STAT", stat}, {"META", f.metadata}, {"ROWS", rows}});
}

StagedFeatures decodeStaged(std::string_view bytes, const std::string& what) {
  auto s = decodeSections(bytes, kStagedMagic, kStagedFormatVersion, what, "reconpatch staged features", "stage the shard again").sections;
  for (const char* need : {"OPTS", "BKSH", "STAT", "ROWS"}) RP_CHECK(s.count(need), ModelFile, what << " lacks its " << need << " section");
  StagedFeatures f;
  f.options = optionsFromText(s["OPTS"]);
  f.backboneSha256 = s["BKSH"];
  f.metadata = s["META"];
  std::istringstream stat(s["STAT"]);
  for (std::string line; std::getline(stat, line);) {
    if (line.rfind("images=", 0) == 0) f.images = std::atoll(line.c_str() + 7);
    if (line.rfind("patches=", 0) == 0) f.patches = std::atoll(line.c_str() + 8);
  }
  f.rows = decodeTensor(s["ROWS"], what);
  RP_CHECK(f.rows.dim() == 2 && f.rows.size(1) == f.options.targetDim, ModelFile,
           what << " holds rows of shape " << f.rows.sizes() << " that do not match its options");
  RP_CHECK(f.images >= 1 && f.patches >= f.rows.size(0), ModelFile,
           what << " says it holds " << f.images << " images and " << f.patches << " patches for " << f.rows.size(0) << " rows");
  return f;
}

std::string stagedOptionsDiffer(const EngineOptions& a, const EngineOptions& b) {
  auto la = comparableLines(a), lb = comparableLines(b);
  for (size_t i = 0; i < la.size() && i < lb.size(); ++i)
    if (la[i] != lb[i]) return la[i] + " vs " + lb[i].substr(lb[i].find('=') + 1);
  return la.size() == lb.size() ? "" : "the option lists differ";
}

}  // namespace rp
