// Chunker: cut rules, sizes, kind detection and the stability of cuts under edits.
#include "fusefs/chunker.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fusefs/chunk_name.h"
#include "random_text.h"

namespace cascadefs::fusefs {
namespace {

std::vector<std::string> ChunkAll(const Chunker& chunker, std::string_view data) {
  std::vector<std::string> chunks;
  while (!data.empty()) {
    const std::optional<std::size_t> cut = chunker.FindCut(data);
    const std::size_t size = cut.has_value() ? *cut : data.size();
    EXPECT_GT(size, 0u);
    chunks.emplace_back(data.substr(0, size));
    data.remove_prefix(size);
  }
  return chunks;
}

// Lines of random printable words, lengths 1..120 bytes: a stand-in for source text.
std::string RandomText(std::size_t bytes, std::uint64_t seed) {
  return test_data::RandomLines(bytes, seed, 120, ' ', 95);
}

std::string RandomBytes(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(bytes, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  return data;
}

// How many chunks of `after` are not chunks of `before` (by content).
std::size_t NewChunks(const std::vector<std::string>& before,
                      const std::vector<std::string>& after) {
  std::multiset<std::string> old(before.begin(), before.end());
  std::size_t fresh = 0;
  for (const auto& chunk : after) {
    auto it = old.find(chunk);
    if (it == old.end()) {
      ++fresh;
    } else {
      old.erase(it);
    }
  }
  return fresh;
}

TEST(ChunkerOptionsTest, DefaultsAreValidAndBadValuesAreNamed) {
  EXPECT_TRUE(ChunkerOptions().Validate().ok());
  ChunkerOptions options;
  options.text_target_bytes = 16 * 1024;
  Status status = options.Validate();
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.ToString().find("text_target_bytes"), std::string::npos) << status.ToString();
  options = ChunkerOptions();
  options.binary_avg_bytes = 10000;
  EXPECT_NE(options.Validate().ToString().find("binary_avg_bytes"), std::string::npos);
  options = ChunkerOptions();
  options.binary_max_bytes = kChunkSizeMax + 1;
  EXPECT_NE(options.Validate().ToString().find("binary_max_bytes"), std::string::npos);
  options = ChunkerOptions();
  options.text_min_bytes = 5000;
  EXPECT_NE(options.Validate().ToString().find("text_min_bytes"), std::string::npos);
}

TEST(DetectChunkerKindTest, TextUnlessNulOrInvalidUtf8) {
  EXPECT_EQ(DetectChunkerKind(""), ChunkerKind::kText);
  EXPECT_EQ(DetectChunkerKind("int main() {}\n"), ChunkerKind::kText);
  EXPECT_EQ(DetectChunkerKind("na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\n"),
            ChunkerKind::kText);
  EXPECT_EQ(DetectChunkerKind(std::string("a\0b", 3)), ChunkerKind::kBinary);
  EXPECT_EQ(DetectChunkerKind("\xFF\xFE"), ChunkerKind::kBinary);
  EXPECT_EQ(DetectChunkerKind("\xC0\xAF"), ChunkerKind::kBinary);      // overlong
  EXPECT_EQ(DetectChunkerKind("\xED\xA0\x80"), ChunkerKind::kBinary);  // surrogate
  EXPECT_EQ(DetectChunkerKind("ab\xC3 "), ChunkerKind::kBinary);       // bad continuation
  // A NUL after the first 8 KiB does not count; a sequence cut off by the prefix's end neither.
  std::string late(kDetectPrefixBytes, 'x');
  late.push_back('\0');
  EXPECT_EQ(DetectChunkerKind(late), ChunkerKind::kText);
  std::string cut(kDetectPrefixBytes - 1, 'x');
  cut += "\xE2\x82\xAC";
  EXPECT_EQ(DetectChunkerKind(cut), ChunkerKind::kText);
}

TEST(TextChunkerTest, CutsOnlyAfterNewlinesWithinBounds) {
  const ChunkerOptions options;
  const Chunker chunker(ChunkerKind::kText, options);
  const std::string text = RandomText(4 << 20, 1);
  const auto chunks = ChunkAll(chunker, text);
  std::size_t total = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    total += chunks[i].size();
    ASSERT_LE(chunks[i].size(), options.text_max_bytes);
    if (i + 1 == chunks.size()) continue;
    ASSERT_GE(chunks[i].size(), options.text_min_bytes);
    ASSERT_EQ(chunks[i].back(), '\n') << "chunk " << i;
  }
  EXPECT_EQ(total, text.size());
  const double average = static_cast<double>(total) / chunks.size();
  EXPECT_GT(average, 0.6 * options.text_target_bytes) << average;
  EXPECT_LT(average, 1.6 * options.text_target_bytes) << average;
}

TEST(TextChunkerTest, OneLinePerChunkAtTheSmallestTarget) {
  ChunkerOptions options;
  options.text_min_bytes = 0;
  options.text_target_bytes = 1;
  const Chunker chunker(ChunkerKind::kText, options);
  const std::string text = "first\nsecond line\n\nthird\nno newline at the end";
  const auto chunks = ChunkAll(chunker, text);
  EXPECT_EQ(chunks, (std::vector<std::string>{"first\n", "second line\n", "\n", "third\n",
                                              "no newline at the end"}));
}

TEST(TextChunkerTest, ALineLongerThanTheMaximumIsCutInsideIt) {
  const ChunkerOptions options;
  const Chunker chunker(ChunkerKind::kText, options);
  const std::string text = "short\n" + std::string(3 * options.text_max_bytes, 'x') + "\nend\n";
  const auto chunks = ChunkAll(chunker, text);
  ASSERT_GE(chunks.size(), 3u);
  for (const auto& chunk : chunks) EXPECT_LE(chunk.size(), options.text_max_bytes);
  EXPECT_EQ(chunks[0].size(), options.text_max_bytes);  // no newline after min: cut at max
}

TEST(TextChunkerTest, AnEditInsideALineChangesOnlyNearbyChunks) {
  const Chunker chunker(ChunkerKind::kText, ChunkerOptions());
  const std::string text = RandomText(2 << 20, 2);
  const auto before = ChunkAll(chunker, text);
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::string edited = text;
    std::size_t at = rng() % edited.size();
    while (edited[at] == '\n') at = (at + 1) % edited.size();
    edited[at] = edited[at] == 'a' ? 'b' : 'a';
    EXPECT_LE(NewChunks(before, ChunkAll(chunker, edited)), 2u) << "edit at " << at;
  }
}

TEST(TextChunkerTest, InsertingOrDeletingLinesMovesNoOtherCut) {
  const Chunker chunker(ChunkerKind::kText, ChunkerOptions());
  const std::string text = RandomText(2 << 20, 4);
  const auto before = ChunkAll(chunker, text);
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::string edited = text;
    std::size_t line = edited.find('\n', rng() % edited.size());
    if (line == std::string::npos) continue;
    if (trial % 2 == 0) {
      edited.insert(line + 1, "an inserted line of text\nand another one\n");
    } else {
      const std::size_t next = edited.find('\n', line + 1);
      if (next == std::string::npos) continue;
      edited.erase(line + 1, next - line);
    }
    EXPECT_LE(NewChunks(before, ChunkAll(chunker, edited)), 2u) << "trial " << trial;
  }
}

TEST(BinaryChunkerTest, SizesWithinBoundsAndAverageNearTarget) {
  const ChunkerOptions options;
  const Chunker chunker(ChunkerKind::kBinary, options);
  const std::string data = RandomBytes(16 << 20, 6);
  const auto chunks = ChunkAll(chunker, data);
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) {
    ASSERT_GE(chunks[i].size(), options.binary_min_bytes);
    ASSERT_LE(chunks[i].size(), options.binary_max_bytes);
  }
  const double average = static_cast<double>(data.size()) / chunks.size();
  EXPECT_GT(average, 0.6 * options.binary_avg_bytes) << average;
  EXPECT_LT(average, 1.6 * options.binary_avg_bytes) << average;
}

TEST(BinaryChunkerTest, ShiftedBytesKeepTheirChunks) {
  const Chunker chunker(ChunkerKind::kBinary, ChunkerOptions());
  const std::string data = RandomBytes(8 << 20, 7);
  const auto before = ChunkAll(chunker, data);
  const auto after = ChunkAll(chunker, "x" + data.substr(0, 4 << 20) + "yz" + data.substr(4 << 20));
  EXPECT_LE(NewChunks(before, after), 4u) << "of " << after.size();
}

TEST(ChunkerTest, UndecidedUntilMaxBytes) {
  const ChunkerOptions options;
  const Chunker binary(ChunkerKind::kBinary, options);
  const std::string zeros(options.binary_max_bytes, '\0');
  EXPECT_FALSE(binary.FindCut(std::string_view(zeros).substr(0, options.binary_max_bytes - 1)));
  EXPECT_EQ(binary.FindCut(zeros), options.binary_max_bytes);
  const Chunker text(ChunkerKind::kText, options);
  EXPECT_FALSE(text.FindCut("no newline"));
}

TEST(ChunkNameTest, HexRoundTripAndAlgorithmTag) {
  const ChunkName name = ChunkName::Of("hello");
  EXPECT_FALSE(name.is_null());
  EXPECT_EQ(name.algorithm(), HashAlgorithm::kXxh3Bits128);
  EXPECT_EQ(name.encoded().size(), ChunkName::kEncodedSize);
  EXPECT_EQ(name.ToHex().substr(0, 2), "01");
  auto parsed = ChunkName::FromHex(name.ToHex());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.value(), name);
  EXPECT_TRUE(name.Matches("hello"));
  EXPECT_FALSE(name.Matches("hellO"));
  EXPECT_TRUE(ChunkName::FromHex("zz").status().IsInvalidArgument());
  std::string unknown(name.encoded());
  unknown[0] = 9;
  EXPECT_TRUE(ChunkName::Decode(unknown).status().IsCorruption());
  EXPECT_TRUE(ChunkName().is_null());
}

}  // namespace
}  // namespace cascadefs::fusefs
