#include "sst/bloom.h"

#include <algorithm>

#include <xxhash.h>

namespace cascadefs::engine {

namespace {
constexpr std::uint32_t kProbesMax = 30;
}  // namespace

std::uint64_t BloomHash(std::string_view user_key) {
  return XXH3_64bits(user_key.data(), user_key.size());
}

void AppendBloomFilter(const std::vector<std::uint64_t>& hashes, std::uint32_t bits_per_key,
                       std::string* dst) {
  const std::uint32_t probes =
      std::clamp<std::uint32_t>(static_cast<std::uint32_t>(bits_per_key * 69 / 100), 1, kProbesMax);
  const std::size_t bits = std::max<std::size_t>(64, hashes.size() * bits_per_key);
  const std::size_t bytes = (bits + 7) / 8;
  const std::size_t total_bits = bytes * 8;
  const std::size_t start = dst->size();
  dst->resize(start + bytes, '\0');
  char* array = dst->data() + start;
  for (std::uint64_t hash : hashes) {
    std::uint32_t h = static_cast<std::uint32_t>(hash);
    const std::uint32_t delta = static_cast<std::uint32_t>(hash >> 32) | 1;
    for (std::uint32_t i = 0; i < probes; ++i) {
      const std::size_t bit = h % total_bits;
      array[bit / 8] = static_cast<char>(array[bit / 8] | (1 << (bit % 8)));
      h += delta;
    }
  }
  dst->push_back(static_cast<char>(probes));
}

bool BloomMayContain(std::string_view filter, std::uint64_t hash) {
  if (filter.size() < 2) return true;
  const std::uint32_t probes = static_cast<std::uint8_t>(filter.back());
  if (probes == 0 || probes > kProbesMax) return true;
  const std::size_t total_bits = (filter.size() - 1) * 8;
  std::uint32_t h = static_cast<std::uint32_t>(hash);
  const std::uint32_t delta = static_cast<std::uint32_t>(hash >> 32) | 1;
  for (std::uint32_t i = 0; i < probes; ++i) {
    const std::size_t bit = h % total_bits;
    if ((filter[bit / 8] & (1 << (bit % 8))) == 0) return false;
    h += delta;
  }
  return true;
}

}  // namespace cascadefs::engine
