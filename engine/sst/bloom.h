// bloom.h: the bloom filter of one data block.
//
// Layout: bit array (ceil(bits/8) bytes, at least 8) | probes u8. Probes derive from one
// XXH3-64 of the user key: h1 = low 32 bits, h2 = high 32 bits, probe i tests bit
// (h1 + i * h2) mod bits (Kirsch-Mitzenmacher double hashing). With bits_per_key = 10 and
// probes = 7 (= 10 * ln 2), about 1% of absent keys pass.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cascadefs::engine {

std::uint64_t BloomHash(std::string_view user_key);
// Appends the filter for keys with these hashes to `dst`.
void AppendBloomFilter(const std::vector<std::uint64_t>& hashes, std::uint32_t bits_per_key,
                       std::string* dst);
// False only when the key with `hash` was certainly not added. A malformed filter (too
// short, zero or absurd probe count) answers true: it never hides a key.
bool BloomMayContain(std::string_view filter, std::uint64_t hash);

}  // namespace cascadefs::engine
