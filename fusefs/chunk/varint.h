// varint.h: LEB128 unsigned varints for recipe encodings (docs/formats/recipe.md), private to
// fusefs. The same encoding as the engine's formats; kept here so fusefs uses only the engine's
// public headers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cascadefs::fusefs {

inline void AppendVarint64(std::string* dst, std::uint64_t value) {
  while (value >= 0x80) {
    dst->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  dst->push_back(static_cast<char>(value));
}

// Consumes a varint from the front of `input`. False (input unchanged) when it is truncated or
// longer than 10 bytes or overflows 64 bits.
inline bool ConsumeVarint64(std::string_view* input, std::uint64_t* value) {
  std::uint64_t result = 0;
  for (std::size_t i = 0; i < input->size() && i < 10; ++i) {
    const auto byte = static_cast<std::uint8_t>((*input)[i]);
    if (i == 9 && byte > 1) return false;
    result |= static_cast<std::uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      *value = result;
      input->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

}  // namespace cascadefs::fusefs
