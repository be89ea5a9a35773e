// chunk_name.h: ChunkName, the content address of a chunk (docs/formats/chunks.md).
//
// A name is 17 bytes: an algorithm tag, then the digest of the chunk's uncompressed bytes.
// Tag 1 is XXH3-128 (16 bytes, stored big-endian high64 then low64, so names sort the way their
// hex reads). A collision-resistant hash can be added later as a new tag without a format break:
// the tag travels with every stored name, and a reader refuses a tag it does not know.
//
// Thread safety: a value type.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/result.h"

namespace cascadefs::fusefs {

enum class HashAlgorithm : std::uint8_t {
  kXxh3Bits128 = 1,
};

class ChunkName {
 public:
  static constexpr std::size_t kEncodedSize = 17;  // tag + 16-byte digest
  static constexpr std::size_t kHexSize = 2 * kEncodedSize;

  // The all-zero name (tag 0): names no chunk. is_null() tells it apart.
  ChunkName() = default;

  // The name of `data` under the current algorithm (XXH3-128).
  static ChunkName Of(std::string_view data);

  // Parses the 17-byte encoding. Corruption for a wrong size or an unknown algorithm tag.
  static Result<ChunkName> Decode(std::string_view encoded);
  // Parses 34 lowercase or uppercase hex digits. InvalidArgument on anything else.
  static Result<ChunkName> FromHex(std::string_view hex);

  bool is_null() const { return bytes_[0] == 0; }
  HashAlgorithm algorithm() const { return static_cast<HashAlgorithm>(bytes_[0]); }

  // The 17 bytes, tag first.
  std::string_view encoded() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  std::string ToHex() const;

  // True when `data` hashes to this name under this name's algorithm.
  bool Matches(std::string_view data) const;

  // 64 bits of the digest, uniformly distributed: recipe nodes cut their entry lists on it.
  std::uint64_t digest_prefix64() const;

  friend auto operator<=>(const ChunkName&, const ChunkName&) = default;
  friend bool operator==(const ChunkName&, const ChunkName&) = default;

 private:
  std::array<std::uint8_t, kEncodedSize> bytes_{};
};

struct ChunkNameHash {
  std::size_t operator()(const ChunkName& name) const {
    return static_cast<std::size_t>(name.digest_prefix64());
  }
};

}  // namespace cascadefs::fusefs
