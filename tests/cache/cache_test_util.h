// cache_test_util.h: a temporary directory and deterministic keys and values for the cache
// tests.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace cascadefs::cache::testing {

// A fresh directory under TMPDIR (or /tmp), removed with its contents at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base ? base : "/tmp") + "/cfs_cache_test_XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A 17-byte key, as the filesystem's chunk names are.
inline std::string Key(std::uint64_t id) {
  std::string key(17, '\0');
  key[0] = 'k';
  for (int i = 0; i < 8; ++i) key[1 + i] = static_cast<char>(id >> (8 * i));
  for (int i = 0; i < 8; ++i)
    key[9 + i] = static_cast<char>((id * 0x9e3779b97f4a7c15ull) >> (8 * i));
  return key;
}

// `size` bytes that depend on id and position, so a value served for the wrong key or from
// the wrong offset is noticed.
inline std::string Value(std::uint64_t id, std::size_t size) {
  std::string value(size, '\0');
  std::uint64_t state = id * 0x2545f4914f6cdd1dull + 1;
  for (std::size_t i = 0; i < size; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    value[i] = static_cast<char>(state);
  }
  return value;
}

}  // namespace cascadefs::cache::testing
