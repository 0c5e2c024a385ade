#include "core/io/model_file.h"

#include <cstring>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/io/sha256.h"

namespace rp {

namespace {

constexpr char kMagic[8] = {'R', 'C', 'P', 'M', 'O', 'D', 'E', 'L'};

void putU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void putU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }

void putSection(std::string& out, const char tag[5], std::string_view payload) {
  out.append(tag, 4);
  putU64(out, payload.size());
  out.append(payload);
}

// A tensor's encoding (encodeTensor) fed to a hash without copying its data.
void hashTensor(Sha256& h, const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kFloat32).contiguous();
  std::string head;
  head.push_back(0);
  head.push_back(static_cast<char>(c.dim()));
  for (int64_t d : c.sizes()) putU64(head, static_cast<uint64_t>(d));
  uint64_t length = head.size() + c.nbytes();
  h.update(&length, 8);
  h.update(head.data(), head.size());
  h.update(c.data_ptr(), c.nbytes());
}

// Bounds-checked reader over a byte range; every failure is ErrorCode::ModelFile.
class Reader {
 public:
  Reader(const char* p, size_t n, const std::string& what) : p_(p), n_(n), what_(what) {}
  const char* take(size_t k) {
    RP_CHECK(k <= n_ - pos_, ModelFile, what_ << " is truncated or corrupted");
    const char* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint64_t u64() { uint64_t v; std::memcpy(&v, take(8), 8); return v; }
  uint32_t u32() { uint32_t v; std::memcpy(&v, take(4), 4); return v; }
  uint8_t u8() { return static_cast<uint8_t>(*take(1)); }
  size_t remaining() const { return n_ - pos_; }

 private:
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string what_;
};

std::string statText(const ModelContents& m) {
  std::ostringstream stats;
  stats.precision(17);
  stats << "trainImages=" << m.trainImages << "\ntrainPatches=" << m.trainPatches << "\ncoresetRadius=" << m.coresetRadius
        << "\nupdates=" << m.updates << "\nupdateRows=" << m.updateRows << "\n";
  return stats.str();
}

}  // namespace

std::string encodeTensor(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kFloat32).contiguous();
  std::string s;
  s.push_back(0);  // float32
  s.push_back(static_cast<char>(c.dim()));
  for (int64_t d : c.sizes()) putU64(s, static_cast<uint64_t>(d));
  s.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  return s;
}

torch::Tensor decodeTensor(const std::string& payload, const std::string& what) {
  Reader r(payload.data(), payload.size(), what);
  RP_CHECK(r.u8() == 0, ModelFile, what << " has an unsupported tensor type");
  const int ndim = r.u8();
  RP_CHECK(ndim >= 1 && ndim <= 4, ModelFile, what << " has a tensor of unsupported rank " << ndim);
  std::vector<int64_t> dims;
  uint64_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    uint64_t d = r.u64();
    RP_CHECK(d < (1ull << 40) && (d == 0 || count <= (1ull << 40) / d), ModelFile, what << " has an implausible tensor shape");
    count *= d;
    dims.push_back(static_cast<int64_t>(d));
  }
  RP_CHECK(r.remaining() == count * 4, ModelFile, what << " is truncated or corrupted (tensor size mismatch)");
  const char* data = r.take(count * 4);
  // NaN or infinity in a bank or head is never written by a fit: refuse it here rather than
  // score with it.
  // (All exponent bits set = NaN or infinity; one branch-free pass the compiler vectorises.)
  uint32_t nonFinite = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + 4 * i, 4);
    nonFinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  RP_CHECK(nonFinite == 0, ModelFile, what << " holds a non-finite number in a tensor");
  return torch::from_blob(const_cast<char*>(data), dims, torch::kFloat32).clone();
}

std::string contentHash(const ModelContents& m) {
  Sha256 h;
  auto section = [&](const char* tag, std::string_view payload) {
    uint64_t length = payload.size();
    h.update(tag, 4);
    h.update(&length, 8);
    h.update(payload.data(), payload.size());
  };
  section("OPTS", toText(m.options));
  section("BKNM", m.backboneName);
  section("BKSH", m.backboneSha256);
  h.update("BANK", 4);
  hashTensor(h, m.bank);
  section("STAT", statText(m));
  if (m.headWeight.defined()) {
    h.update("HDFW", 4);
    hashTensor(h, m.headWeight);
    h.update("HDFB", 4);
    hashTensor(h, m.headBias);
  }
  auto digest = h.digest();
  return toHex(digest.data(), digest.size());
}

std::string encodeSections(const char magic[8], uint32_t version, const Sections& sections) {
  std::string out;
  out.append(magic, 8);
  putU32(out, version);
  putU32(out, static_cast<uint32_t>(sections.size()));
  for (const auto& [tag, payload] : sections) putSection(out, tag, payload);
  Sha256 h;
  h.update(out.data(), out.size());
  auto digest = h.digest();
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

DecodedSections decodeSections(std::string_view bytes, const char magic[8], uint32_t maxVersion, const std::string& what,
                               const char* kind, const char* fix) {
  RP_CHECK(bytes.size() >= 16 + 32 && std::memcmp(bytes.data(), magic, 8) == 0, ModelFile,
           what << " is not " << kind << " (bad header)");
  const size_t body = bytes.size() - 32;
  RP_CHECK(sha256Hex(bytes.data(), body) == toHex(reinterpret_cast<const uint8_t*>(bytes.data() + body), 32), ModelFile,
           what << " is corrupted or truncated (checksum mismatch); " << fix);
  Reader r(bytes.data() + 8, body - 8, what);
  DecodedSections d;
  d.version = r.u32();
  RP_CHECK(d.version <= maxVersion && d.version >= 1, ModelFile,
           what << " has format version " << d.version << "; this reconpatch reads up to " << maxVersion
                << ", upgrade reconpatch to load it");
  const uint32_t count = r.u32();
  for (uint32_t i = 0; i < count; ++i) {
    std::string tag(r.take(4), 4);
    uint64_t len = r.u64();
    RP_CHECK(len <= r.remaining(), ModelFile, what << " is truncated or corrupted");
    d.sections[tag] = std::string(r.take(len), len);
  }
  return d;
}

std::string encodeModel(const ModelContents& m) {
  const bool torchvision = m.backboneKind == BackboneKind::Torchvision;
  const std::string opts = toText(m.options), bank = encodeTensor(m.bank), stat = statText(m);
  Sections sections = {{"OPTS", opts}, {"BKNM", m.backboneName}, {"BKSH", m.backboneSha256}, {"BANK", bank}, {"STAT", stat}, {"META", m.metadata}};
  if (m.backboneKind == BackboneKind::TorchScript) sections.push_back({"BKTS", m.backboneBlob});
  if (torchvision) sections.push_back({"BKSD", m.backboneBlob});
  std::string headW, headB;
  if (m.headWeight.defined()) {
    headW = encodeTensor(m.headWeight);
    headB = encodeTensor(m.headBias);
    sections.push_back({"HDFW", headW});
    sections.push_back({"HDFB", headB});
  }
  return encodeSections(kMagic, kModelFormatVersion, sections);
}

ModelContents decodeModel(std::string_view bytes, const std::string& what) {
  auto sections = decodeSections(bytes, kMagic, kModelFormatVersion, what, "a reconpatch model", "re-save it from a fitted engine").sections;
  for (const char* need : {"OPTS", "BKNM", "BKSH", "BANK", "STAT"})
    RP_CHECK(sections.count(need), ModelFile, what << " lacks its " << need << " section");
  ModelContents m;
  m.options = optionsFromText(sections["OPTS"]);
  m.backboneName = sections["BKNM"];
  m.backboneSha256 = sections["BKSH"];
  if (sections.count("BKTS")) {
    m.backboneKind = BackboneKind::TorchScript;
    m.backboneBlob = std::move(sections["BKTS"]);
  } else if (sections.count("BKSD")) {
    m.backboneKind = BackboneKind::Torchvision;
    m.backboneBlob = std::move(sections["BKSD"]);
  }
  m.bank = decodeTensor(sections["BANK"], what);
  RP_CHECK(m.bank.dim() == 2 && m.bank.size(0) > 0 && m.bank.size(1) == m.options.targetDim, ModelFile,
           what << " has a memory bank of shape " << m.bank.sizes() << " that does not match its options");
  if (sections.count("META")) m.metadata = sections["META"];
  if (m.options.head) {
    RP_CHECK(sections.count("HDFW") && sections.count("HDFB"), ModelFile, what << " lacks its ReConPatch head weights");
    m.headWeight = decodeTensor(sections["HDFW"], what);
    m.headBias = decodeTensor(sections["HDFB"], what);
    const int64_t D = m.options.targetDim;
    RP_CHECK(m.headWeight.dim() == 2 && m.headWeight.size(0) == D && m.headWeight.size(1) == D && m.headBias.dim() == 1 &&
                 m.headBias.size(0) == D,
             ModelFile, what << " has head weights that do not match its options");
  }
  std::istringstream stats(sections["STAT"]);
  std::string line;
  while (std::getline(stats, line)) {
    if (line.rfind("trainImages=", 0) == 0) m.trainImages = std::atoll(line.c_str() + 12);
    if (line.rfind("trainPatches=", 0) == 0) m.trainPatches = std::atoll(line.c_str() + 13);
    if (line.rfind("coresetRadius=", 0) == 0) m.coresetRadius = std::atof(line.c_str() + 14);
    if (line.rfind("updates=", 0) == 0) m.updates = std::atoll(line.c_str() + 8);
    if (line.rfind("updateRows=", 0) == 0) m.updateRows = std::atoll(line.c_str() + 11);
  }
  return m;
}

}  // namespace rp
