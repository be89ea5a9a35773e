// random_text.h: generated text for the fusefs tests.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace cascadefs::fusefs::test_data {

// `bytes` bytes of lines, each 0..max_line_chars-1 characters drawn from
// [first_char, first_char + alphabet) and a newline; deterministic in `seed`.
inline std::string RandomLines(std::size_t bytes, std::uint64_t seed, std::size_t max_line_chars,
                               char first_char, int alphabet) {
  std::mt19937_64 rng(seed);
  std::string text;
  text.reserve(bytes + max_line_chars + 1);
  while (text.size() < bytes) {
    const std::size_t length = rng() % max_line_chars;
    for (std::size_t i = 0; i < length; ++i) {
      text.push_back(static_cast<char>(first_char + static_cast<int>(rng() % alphabet)));
    }
    text.push_back('\n');
  }
  text.resize(bytes);
  return text;
}

}  // namespace cascadefs::fusefs::test_data
