#include "core/options.h"

#include <map>
#include <sstream>

#include "core/error.h"

namespace rp {

namespace {
const char* resizeModeName(ResizeMode m) { return m == ResizeMode::Squash ? "squash" : "shorter"; }
const char* distanceName(Distance d) { return d == Distance::Euclidean ? "euclidean" : "squared"; }
}  // namespace

std::string toText(const EngineOptions& o) {
  std::ostringstream s;
  s.precision(17);
  s << "backbone=" << o.backbone << "\n"
    << "weights=" << o.weights << "\n"
    << "resize=" << o.resize << "\n"
    << "crop=" << o.crop << "\n"
    << "resizeMode=" << resizeModeName(o.resizeMode) << "\n"
    << "patchSize=" << o.patchSize << "\n"
    << "pretrainDim=" << o.pretrainDim << "\n"
    << "targetDim=" << o.targetDim << "\n"
    << "coresetRatio=" << o.coresetRatio << "\n"
    << "coresetProjection=" << o.coresetProjection << "\n"
    << "coresetStarts=" << o.coresetStarts << "\n"
    << "distance=" << distanceName(o.distance) << "\n"
    << "reweight=" << (o.reweight ? 1 : 0) << "\n"
    << "reweightNeighbors=" << o.reweightNeighbors << "\n"
    << "blurSigma=" << o.blurSigma << "\n"
    << "head=" << (o.head ? 1 : 0) << "\n"
    << "headIterations=" << o.headIterations << "\n"
    << "headBatch=" << o.headBatch << "\n"
    << "headProjectionDim=" << o.headProjectionDim << "\n"
    << "headLr=" << o.headLr << "\n"
    << "headWeightDecay=" << o.headWeightDecay << "\n"
    << "headEma=" << o.headEma << "\n"
    << "headK=" << o.headK << "\n"
    << "headSigma=" << o.headSigma << "\n"
    << "headAlpha=" << o.headAlpha << "\n"
    << "headMargin=" << o.headMargin << "\n"
    << "headNormalize=" << (o.headNormalize ? 1 : 0) << "\n"
    << "headInitIdentity=" << (o.headInitIdentity ? 1 : 0) << "\n"
    << "device=" << o.device << "\n"
    << "threads=" << o.threads << "\n"
    << "seed=" << o.seed << "\n"
    << "batchSize=" << o.batchSize << "\n";
  return s.str();
}

EngineOptions optionsFromText(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto eq = line.find('=');
    RP_CHECK(eq != std::string::npos, ModelFile, "model file options are malformed (line '" << line << "')");
    kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto get = [&](const char* key) -> const std::string& {
    auto it = kv.find(key);
    RP_CHECK(it != kv.end(), ModelFile, "model file options lack '" << key << "'");
    return it->second;
  };
  auto toInt = [&](const char* key) -> int64_t {
    try { return std::stoll(get(key)); } catch (const std::logic_error&) {
      RP_FAIL(ModelFile, "model file option '" << key << "' is not an integer");
    }
  };
  auto toDouble = [&](const char* key) -> double {
    try { return std::stod(get(key)); } catch (const std::logic_error&) {
      RP_FAIL(ModelFile, "model file option '" << key << "' is not a number");
    }
  };
  EngineOptions o;
  o.backbone = get("backbone");
  o.weights = get("weights");
  o.resize = toInt("resize");
  o.crop = toInt("crop");
  o.resizeMode = get("resizeMode") == "squash" ? ResizeMode::Squash : ResizeMode::Shorter;
  o.patchSize = toInt("patchSize");
  o.pretrainDim = toInt("pretrainDim");
  o.targetDim = toInt("targetDim");
  o.coresetRatio = toDouble("coresetRatio");
  o.coresetProjection = toInt("coresetProjection");
  o.coresetStarts = toInt("coresetStarts");
  o.distance = get("distance") == "squared" ? Distance::SquaredEuclidean : Distance::Euclidean;
  o.reweight = toInt("reweight") != 0;
  o.reweightNeighbors = toInt("reweightNeighbors");
  o.blurSigma = toDouble("blurSigma");
  o.head = toInt("head") != 0;
  o.headIterations = toInt("headIterations");
  o.headBatch = toInt("headBatch");
  o.headProjectionDim = toInt("headProjectionDim");
  o.headLr = toDouble("headLr");
  o.headWeightDecay = toDouble("headWeightDecay");
  o.headEma = toDouble("headEma");
  o.headK = toInt("headK");
  o.headSigma = toDouble("headSigma");
  o.headAlpha = toDouble("headAlpha");
  o.headMargin = toDouble("headMargin");
  o.headNormalize = toInt("headNormalize") != 0;
  o.headInitIdentity = toInt("headInitIdentity") != 0;
  o.device = get("device");
  o.threads = static_cast<int>(toInt("threads"));
  o.seed = static_cast<uint64_t>(toInt("seed"));
  o.batchSize = toInt("batchSize");
  return o;
}

}  // namespace rp
