// SHA-256 (FIPS 180-4), for model-file checksums and backbone identities.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace rp {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  std::array<uint8_t, 32> digest();  // finalises; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t bufLen_ = 0;
  uint64_t total_ = 0;
};

std::string toHex(const uint8_t* data, size_t size);
std::string sha256Hex(const void* data, size_t size);

}  // namespace rp
