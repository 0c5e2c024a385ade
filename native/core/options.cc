#include "core/options.h"

#include <cctype>
#include <limits>
#include <map>
#include <sstream>
#include <type_traits>

#include "core/error.h"

namespace rp {

const char* enumName(ResizeMode m) {
  return m == ResizeMode::Squash ? "squash" : m == ResizeMode::Shorter ? "shorter" : "area";
}
const char* enumName(Distance d) { return d == Distance::Euclidean ? "euclidean" : "squared"; }

bool parseEnum(const std::string& name, ResizeMode* out) {
  if (name != "squash" && name != "shorter" && name != "area") return false;
  *out = name == "squash" ? ResizeMode::Squash : name == "shorter" ? ResizeMode::Shorter : ResizeMode::Area;
  return true;
}

bool parseEnum(const std::string& name, Distance* out) {
  if (name != "euclidean" && name != "squared") return false;
  *out = name == "euclidean" ? Distance::Euclidean : Distance::SquaredEuclidean;
  return true;
}

const char* enumName(SigmaRule r) { return r == SigmaRule::Knn ? "knn" : "fixed"; }

bool parseEnum(const std::string& name, SigmaRule* out) {
  if (name != "fixed" && name != "knn") return false;
  *out = name == "knn" ? SigmaRule::Knn : SigmaRule::Fixed;
  return true;
}

std::string toText(const EngineOptions& o) {
  std::ostringstream s;
  s.precision(17);
  visitOptions(o, [&](const char* name, const auto& value) {
    using T = std::decay_t<decltype(value)>;
    s << name << "=";
    if constexpr (std::is_enum_v<T>) s << enumName(value);
    else if constexpr (std::is_same_v<T, bool>) s << (value ? 1 : 0);
    else s << value;
    s << "\n";
  });
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
  // Files written before these options existed trained with a fixed sigma and a fixed budget,
  // whatever today's defaults.
  kv.emplace("headSigmaRule", "fixed");
  kv.emplace("headPlateau", "0");
  EngineOptions o;  // an option the file does not name keeps its default
  visitOptions(o, [&](const char* name, auto& value) {
    using T = std::decay_t<decltype(value)>;
    auto it = kv.find(name);
    if (it == kv.end()) return;
    const std::string& v = it->second;
    try {
      if constexpr (std::is_enum_v<T>) {
        RP_CHECK(parseEnum(v, &value), ModelFile, "model file option '" << name << "' has an unknown value '" << v << "'");
      } else if constexpr (std::is_same_v<T, std::string>) {
        value = v;
      } else {
        // The whole text must be the number, and an integer must fit its field (a crafted file
        // could otherwise pass "0x10" as 0 or 4294967297 as 1).
        size_t used = 0;
        const auto invalid = [&] { RP_FAIL(ModelFile, "model file option '" << name << "' is not a valid value ('" << v << "')"); };
        if (v.empty() || std::isspace(static_cast<unsigned char>(v[0]))) invalid();
        if constexpr (std::is_same_v<T, bool>) {
          if (v != "0" && v != "1") invalid();
          value = v == "1";
        } else if constexpr (std::is_floating_point_v<T>) {
          value = std::stod(v, &used);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          if (v[0] == '-') invalid();
          value = std::stoull(v, &used);
        } else {
          const long long n = std::stoll(v, &used);
          if (n < std::numeric_limits<T>::min() || n > std::numeric_limits<T>::max()) invalid();
          value = static_cast<T>(n);
        }
        if constexpr (!std::is_same_v<T, bool>) {
          if (used != v.size()) invalid();
        }
      }
    } catch (const std::logic_error&) {
      RP_FAIL(ModelFile, "model file option '" << name << "' is not a valid value ('" << v << "')");
    }
  });
  return o;
}

}  // namespace rp
