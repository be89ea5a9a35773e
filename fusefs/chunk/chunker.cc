#include "fusefs/chunker.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "engine/assert.h"

namespace cascadefs::fusefs {
namespace {

// The gear table: 256 values of splitmix64 from seed 0x63617363616465 ("cascade"). Part of the
// chunking definition (docs/formats/chunks.md): changing it moves every binary cut, which breaks
// nothing on disk but loses deduplication against chunks cut before.
constexpr std::array<std::uint64_t, 256> MakeGearTable() {
  std::array<std::uint64_t, 256> table{};
  std::uint64_t state = 0x63617363616465ULL;
  for (auto& value : table) {
    state += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    value = z ^ (z >> 31);
  }
  return table;
}
constexpr std::array<std::uint64_t, 256> kGear = MakeGearTable();

std::uint64_t Load64(const std::uint8_t* p) {
  std::uint64_t value;
  std::memcpy(&value, p, sizeof(value));
  return value;
}

// The text cut hash of the (up to) 16 bytes that end at data[end], clipped at the chunk start.
// A fixed mixer (docs/formats/chunks.md): two little-endian words, multiply-xorshift rounds.
std::uint64_t LineTailHash(const std::uint8_t* chunk, std::size_t end) {
  std::uint64_t low;
  std::uint64_t high;
  if (end >= 16) {
    low = Load64(chunk + end - 16);
    high = Load64(chunk + end - 8);
  } else {
    std::uint8_t window[16] = {};
    std::memcpy(window + 16 - end, chunk, end);
    low = Load64(window);
    high = Load64(window + 8);
  }
  std::uint64_t h = (low ^ 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
  h ^= high + (h >> 29);
  h *= 0x94D049BB133111EBULL;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ULL;
  h ^= h >> 32;
  return h;
}

// Bit j set when p[j] == '\n', for j < 64.
std::uint64_t NewlineMask64(const std::uint8_t* p) {
#if defined(__SSE2__)
  const __m128i newline = _mm_set1_epi8('\n');
  std::uint64_t mask = 0;
  for (std::size_t lane = 0; lane < 4; ++lane) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * lane));
    const auto bits = static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline)));
    mask |= static_cast<std::uint64_t>(bits) << (16 * lane);
  }
  return mask;
#else
  std::uint64_t mask = 0;
  for (int j = 0; j < 64; ++j) mask |= static_cast<std::uint64_t>(p[j] == '\n') << j;
  return mask;
#endif
}

bool IsPowerOfTwo(std::size_t value) { return value != 0 && (value & (value - 1)) == 0; }

int Log2(std::size_t value) {
  int log = 0;
  while ((std::size_t{1} << (log + 1)) <= value) ++log;
  return log;
}

}  // namespace

Status ChunkerOptions::Validate() const {
  auto bad = [](const char* name, std::size_t value, const std::string& rule) {
    return Status::InvalidArgument(std::string(name) + " = " + std::to_string(value) + ": " + rule);
  };
  if (text_target_bytes < 1 || text_target_bytes > std::size_t{8} * 1024) {
    return bad("text_target_bytes", text_target_bytes, "must be in [1, 8192]");
  }
  if (text_min_bytes > text_target_bytes) {
    return bad("text_min_bytes", text_min_bytes, "must not exceed text_target_bytes");
  }
  if (text_max_bytes < text_target_bytes || text_max_bytes > kChunkSizeMax) {
    return bad("text_max_bytes", text_max_bytes,
               "must be in [text_target_bytes, " + std::to_string(kChunkSizeMax) + "]");
  }
  if (binary_min_bytes < 64) return bad("binary_min_bytes", binary_min_bytes, "must be >= 64");
  if (!IsPowerOfTwo(binary_avg_bytes) || binary_avg_bytes <= binary_min_bytes) {
    return bad("binary_avg_bytes", binary_avg_bytes,
               "must be a power of two above binary_min_bytes");
  }
  if (binary_max_bytes <= binary_avg_bytes || binary_max_bytes > kChunkSizeMax) {
    return bad("binary_max_bytes", binary_max_bytes,
               "must be in (binary_avg_bytes, " + std::to_string(kChunkSizeMax) + "]");
  }
  return Status::OK();
}

ChunkerKind DetectChunkerKind(std::string_view prefix) {
  const std::size_t size = std::min(prefix.size(), kDetectPrefixBytes);
  const auto* p = reinterpret_cast<const std::uint8_t*>(prefix.data());
  std::size_t i = 0;
  while (i < size) {
    const std::uint8_t lead = p[i];
    if (lead == 0) return ChunkerKind::kBinary;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t continuation;
    std::uint8_t second_low = 0x80;
    std::uint8_t second_high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      continuation = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      continuation = 2;
      if (lead == 0xE0) second_low = 0xA0;   // no overlong forms
      if (lead == 0xED) second_high = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      continuation = 3;
      if (lead == 0xF0) second_low = 0x90;
      if (lead == 0xF4) second_high = 0x8F;  // <= U+10FFFF
    } else {
      return ChunkerKind::kBinary;
    }
    for (std::size_t k = 1; k <= continuation; ++k) {
      if (i + k >= size) return ChunkerKind::kText;  // cut off by the prefix's end
      const std::uint8_t byte = p[i + k];
      const std::uint8_t low = k == 1 ? second_low : 0x80;
      const std::uint8_t high = k == 1 ? second_high : 0xBF;
      if (byte < low || byte > high) return ChunkerKind::kBinary;
    }
    i += continuation + 1;
  }
  return ChunkerKind::kText;
}

Chunker::Chunker(ChunkerKind kind, const ChunkerOptions& options) : kind_(kind) {
  CFS_ASSERT(options.Validate().ok());
  if (kind == ChunkerKind::kText) {
    min_ = options.text_min_bytes;
    max_ = options.text_max_bytes;
    text_span_ = std::max<std::size_t>(options.text_target_bytes - options.text_min_bytes, 1);
    text_scale_ = UINT64_MAX / text_span_;
  } else {
    CFS_ASSERT(kind == ChunkerKind::kBinary);
    min_ = options.binary_min_bytes;
    max_ = options.binary_max_bytes;
    binary_avg_ = options.binary_avg_bytes;
    // Normalized chunking, level 2: two more mask bits before the average, two fewer after.
    const int bits = Log2(binary_avg_);
    mask_strict_ = ~std::uint64_t{0} << (64 - (bits + 2));
    mask_loose_ = ~std::uint64_t{0} << (64 - (bits - 2));
  }
}

std::optional<std::size_t> Chunker::FindCut(std::string_view data) const {
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  return kind_ == ChunkerKind::kText ? FindTextCut(p, data.size()) : FindBinaryCut(p, data.size());
}

std::optional<std::size_t> Chunker::FindTextCut(const std::uint8_t* p, std::size_t size) const {
  const std::size_t limit = std::min(size, max_);
  // A cut at c (chunk length c) needs p[c - 1] == '\n' and c >= max(min_, 1).
  const std::size_t first = std::max<std::size_t>(min_, 1) - 1;
  std::size_t line_start = 0;
  if (first > 0 && first <= limit) {
    const void* last = memrchr(p, '\n', first);
    if (last != nullptr) line_start = static_cast<const std::uint8_t*>(last) - p + 1;
  }
  std::size_t last_line_end = 0;
  for (std::size_t block = first; block < limit; block += 64) {
    std::uint64_t mask;
    if (limit - block >= 64) {
      mask = NewlineMask64(p + block);
    } else {
      mask = 0;
      for (std::size_t j = 0; block + j < limit; ++j) {
        mask |= static_cast<std::uint64_t>(p[block + j] == '\n') << j;
      }
    }
    while (mask != 0) {
      const std::size_t cut = block + static_cast<std::size_t>(__builtin_ctzll(mask)) + 1;
      mask &= mask - 1;
      const std::size_t line_length = cut - line_start;
      if (line_length >= text_span_ || LineTailHash(p, cut) < line_length * text_scale_) {
        return cut;
      }
      line_start = cut;
      last_line_end = cut;
    }
  }
  if (size >= max_) return last_line_end != 0 ? last_line_end : max_;
  return std::nullopt;
}

std::optional<std::size_t> Chunker::FindBinaryCut(const std::uint8_t* p, std::size_t size) const {
  if (size <= min_) return std::nullopt;  // min_ < max_, so more bytes may still come
  std::uint64_t hash = 0;
  std::size_t i = min_;
  const std::size_t normal_end = std::min(size, binary_avg_);
  for (; i < normal_end; ++i) {
    hash = (hash << 1) + kGear[p[i]];
    if ((hash & mask_strict_) == 0) return i + 1;
  }
  const std::size_t end = std::min(size, max_);
  for (; i < end; ++i) {
    hash = (hash << 1) + kGear[p[i]];
    if ((hash & mask_loose_) == 0) return i + 1;
  }
  if (size >= max_) return max_;
  return std::nullopt;
}

}  // namespace cascadefs::fusefs
