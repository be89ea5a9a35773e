#include "fusefs/chunk_name.h"

#include <cstring>

#include <xxhash.h>

namespace cascadefs::fusefs {
namespace {

void StoreBigEndian64(std::uint8_t* dst, std::uint64_t value) {
  for (int i = 7; i >= 0; --i) {
    dst[i] = static_cast<std::uint8_t>(value);
    value >>= 8;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

ChunkName ChunkName::Of(std::string_view data) {
  const XXH128_hash_t digest = XXH3_128bits(data.data(), data.size());
  ChunkName name;
  name.bytes_[0] = static_cast<std::uint8_t>(HashAlgorithm::kXxh3Bits128);
  StoreBigEndian64(&name.bytes_[1], digest.high64);
  StoreBigEndian64(&name.bytes_[9], digest.low64);
  return name;
}

Result<ChunkName> ChunkName::Decode(std::string_view encoded) {
  if (encoded.size() != kEncodedSize) {
    return Status::Corruption("chunk name of " + std::to_string(encoded.size()) +
                              " bytes, expected " + std::to_string(kEncodedSize));
  }
  const auto tag = static_cast<std::uint8_t>(encoded[0]);
  if (tag != static_cast<std::uint8_t>(HashAlgorithm::kXxh3Bits128)) {
    return Status::Corruption("chunk name with unknown hash algorithm tag " + std::to_string(tag));
  }
  ChunkName name;
  std::memcpy(name.bytes_.data(), encoded.data(), kEncodedSize);
  return name;
}

Result<ChunkName> ChunkName::FromHex(std::string_view hex) {
  if (hex.size() != kHexSize) {
    return Status::InvalidArgument("chunk name '" + std::string(hex) + "': expected " +
                                   std::to_string(kHexSize) + " hex digits");
  }
  std::string raw(kEncodedSize, '\0');
  for (std::size_t i = 0; i < kEncodedSize; ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      return Status::InvalidArgument("chunk name '" + std::string(hex) + "': not hex");
    }
    raw[i] = static_cast<char>(high * 16 + low);
  }
  Result<ChunkName> name = Decode(raw);
  if (!name.ok()) {
    return Status::InvalidArgument("chunk name '" + std::string(hex) +
                                   "': " + std::string(name.status().message()));
  }
  return name;
}

std::string ChunkName::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(kHexSize, '0');
  for (std::size_t i = 0; i < kEncodedSize; ++i) {
    hex[2 * i] = kDigits[bytes_[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes_[i] & 15];
  }
  return hex;
}

bool ChunkName::Matches(std::string_view data) const {
  return algorithm() == HashAlgorithm::kXxh3Bits128 && Of(data) == *this;
}

std::uint64_t ChunkName::digest_prefix64() const {
  std::uint64_t value = 0;
  for (int i = 1; i <= 8; ++i) value = (value << 8) | bytes_[i];
  return value;
}

}  // namespace cascadefs::fusefs
