// The device check's driver (bench/gpu/check.sh): the engine's core on the CPU and, when one is
// visible, the GPU, in one process, without Node.js; writes one JSON file.
//   reconpatch_gpu_check <data dir> <out.json>
// <data dir>/frames.txt (bench/gpu/prepare.mjs): "backbone <file>", then "<train|test> <file> <w> <h> <c>"
// per raw HWC uint8 frame. Measures per device: fit (seconds per stage), score per image at batch
// 1 / 8 / 32, coreset selections per second (the loop that device runs), head iterations per
// second, the GPU's memory peak; and the parity of the two devices: test-image scores, and the
// coreset picks for the same projected points and starts.
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef RECONPATCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/error.h"
#include "core/pipeline/coreset.h"
#include "core/pipeline/head.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Frame {
  std::vector<uint8_t> bytes;
  rp::RawImageView view;
};

struct Data {
  std::string backbone;
  std::vector<Frame> train, test;
};

Data readData(const std::string& dir) {
  Data d;
  std::ifstream list(dir + "/frames.txt");
  if (!list) throw std::runtime_error("no " + dir + "/frames.txt: run node bench/gpu/prepare.mjs first");
  std::string line;
  while (std::getline(list, line)) {
    std::istringstream in(line);
    std::string kind, file;
    in >> kind >> file;
    if (kind == "backbone") {
      d.backbone = dir + "/" + file;
      continue;
    }
    Frame f;
    in >> f.view.width >> f.view.height >> f.view.channels;
    std::ifstream raw(dir + "/" + file, std::ios::binary);
    f.bytes.assign(std::istreambuf_iterator<char>(raw), {});
    if (static_cast<int64_t>(f.bytes.size()) != f.view.width * f.view.height * f.view.channels)
      throw std::runtime_error(file + " has the wrong size");
    (kind == "train" ? d.train : d.test).push_back(std::move(f));
  }
  for (auto* v : {&d.train, &d.test})
    for (auto& f : *v) f.view.data = f.bytes.data();
  return d;
}

std::vector<rp::RawImageView> views(const std::vector<Frame>& frames, size_t from, size_t count) {
  std::vector<rp::RawImageView> out;
  for (size_t i = 0; i < count; ++i) out.push_back(frames[(from + i) % frames.size()].view);
  return out;
}

std::string list(const std::vector<double>& v) {
  std::ostringstream s;
  s.precision(9);
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str() + "]";
}

void syncDevice(const std::string& device) {
#ifdef RECONPATCH_CUDA
  if (device == "cuda") torch::cuda::synchronize();
#endif
}

int64_t gpuPeakBytes() {
#ifdef RECONPATCH_CUDA
  if (torch::cuda::is_available()) return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak;
#endif
  return -1;
}

// One device: fit, scores, throughput at three batch sizes. Returns a JSON object.
std::string runEngine(const Data& d, const std::string& device, std::vector<double>* scores) {
  rp::EngineOptions o;
  o.backbone = d.backbone;
  o.resize = 256;
  o.crop = 224;
  o.resizeMode = rp::ResizeMode::Squash;
  o.coresetRatio = 0.1;
  o.device = device;
  o.head = false;
  std::ostringstream json;
  json.precision(9);
  auto t = Clock::now();
  rp::Engine engine(o);
  json << "{\"create_seconds\":" << since(t);
  t = Clock::now();
  engine.fitBegin();
  for (size_t i = 0; i < d.train.size(); i += 8) engine.fitAdd(views(d.train, i, std::min<size_t>(8, d.train.size() - i)));
  syncDevice(device);
  const double embed = since(t);
  t = Clock::now();
  engine.fitEnd(nullptr);
  engine.fitCommit("");
  syncDevice(device);
  json << ",\"fit_embed_seconds\":" << embed << ",\"fit_coreset_seconds\":" << since(t)
       << ",\"bank_rows\":" << engine.info().bankRows;
  for (size_t i = 0; i < d.test.size(); ++i) scores->push_back(engine.score(views(d.test, i, 1))[0].score);
  for (int batch : {1, 8, 32}) {
    engine.score(views(d.test, 0, batch));  // warm-up
    const int reps = std::max(2, 64 / batch);
    t = Clock::now();
    for (int r = 0; r < reps; ++r) engine.score(views(d.test, r * batch, batch));
    json << ",\"score_ms_per_image_batch" << batch << "\":" << 1000 * since(t) / (reps * batch);
  }
  return json.str() + "}";
}

// The coreset loop each device runs on the same projected points and starts: picks and rate.
std::string runCoreset(const std::string& device, std::vector<double>* picks) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto x = at::randn({100000, 128}, gen).to(torch::kBFloat16);  // what fit selects on
  auto starts = torch::tensor(std::vector<int64_t>{5, 77, 901, 4242, 60000});
  const int64_t count = 1000;
  auto t = Clock::now();
  torch::Tensor sel = device == "cpu" ? rp::greedyCoresetIndices(x, starts, count)
                                      : rp::greedyCoresetIndicesDevice(x.to(torch::Device(device)), starts, count);
  syncDevice(device);
  const double seconds = since(t);
  for (int64_t i = 0; i < sel.numel(); ++i) picks->push_back(static_cast<double>(sel[i].item<int64_t>()));
  std::ostringstream json;
  json << "{\"points\":100000,\"dim\":128,\"selections\":" << count << ",\"selections_per_second\":" << count / seconds << "}";
  return json.str();
}

std::string runHead(const std::string& device) {
  rp::HeadOptions h;
  h.iterations = 20;
  h.batch = 1024;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::vector<torch::Tensor> chunks = {at::randn({20000, 1024}, gen)};
  rp::ReConPatchHead head(1024, h, torch::Device(device));
  auto t = Clock::now();
  head.train(chunks, nullptr, nullptr);
  syncDevice(device);
  std::ostringstream json;
  json << "{\"batch\":1024,\"iterations\":20,\"iterations_per_second\":" << h.iterations / since(t) << "}";
  return json.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: reconpatch_gpu_check <data dir> <out.json>\n";
    return 2;
  }
  try {
    const Data d = readData(argv[1]);
    const bool cuda = torch::cuda::is_available();
    std::ostringstream json;
    json.precision(9);
    json << "{\"libtorch\":\"" << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "." << TORCH_VERSION_PATCH
         << "\",\"cuda_available\":" << (cuda ? "true" : "false") << ",\"cuda_devices\":" << static_cast<int>(torch::cuda::device_count())
         << ",\"train_frames\":" << d.train.size() << ",\"test_frames\":" << d.test.size();
    std::vector<std::string> devices = {"cpu"};
    if (cuda) devices.push_back("cuda");
    std::vector<std::vector<double>> scores(2), picks(2);
    for (size_t i = 0; i < devices.size(); ++i) {
      const auto& dev = devices[i];
      std::cerr << "device check: " << dev << "\n";
      json << ",\"" << dev << "\":{\"engine\":" << runEngine(d, dev, &scores[i]) << ",\"coreset\":" << runCoreset(dev, &picks[i])
           << ",\"head\":" << runHead(dev) << ",\"test_scores\":" << list(scores[i]) << "}";
    }
    if (cuda) {
      double worst = 0;
      for (size_t j = 0; j < scores[0].size(); ++j) worst = std::max(worst, std::abs(scores[1][j] - scores[0][j]) / std::abs(scores[0][j]));
      size_t same = 0;
      while (same < picks[0].size() && picks[0][same] == picks[1][same]) ++same;
      json << ",\"parity\":{\"max_relative_score_difference\":" << worst << ",\"scores_within_1e-3\":" << (worst <= 1e-3 ? "true" : "false")
           << ",\"coreset_same_prefix\":" << same << ",\"coreset_same_picks\":" << (same == picks[0].size() ? "true" : "false")
           << "},\"gpu_peak_allocated_bytes\":" << gpuPeakBytes();
    }
    json << "}\n";
    std::ofstream(argv[2]) << json.str();
    std::cout << json.str();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "device check failed: " << e.what() << "\n";
    return 1;
  }
}
