// dirty_buffer_test.cc: DirtyBuffer against a reference model (a byte array with a
// "buffered" mark per byte) under random inserts and truncates, plus the piece shapes a
// sequential writer must produce.
#include "fs/dirty_buffer.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::fusefs {
namespace {

constexpr std::size_t kPiece = DirtyBuffer::kPieceBytes;

// Pieces never overlap, none is empty or larger than piece_bytes(), and bytes() is their sum.
void ExpectWellFormed(const DirtyBuffer& buffer) {
  std::uint64_t sum = 0;
  std::uint64_t previous_end = 0;
  for (const auto& [offset, data] : buffer.pieces()) {
    EXPECT_FALSE(data.empty()) << "empty piece at " << offset;
    EXPECT_LE(data.size(), buffer.piece_bytes()) << "piece at " << offset;
    EXPECT_GE(offset, previous_end) << "piece at " << offset << " overlaps the one before";
    previous_end = offset + data.size();
    sum += data.size();
  }
  EXPECT_EQ(sum, buffer.bytes());
  EXPECT_EQ(previous_end, buffer.end());
}

TEST(DirtyBufferTest, SequentialWritesFillWholePieces) {
  DirtyBuffer buffer;
  const std::string block(4096, 'x');
  const std::size_t total = 3 * kPiece + 12345;
  for (std::size_t offset = 0; offset < total; offset += block.size()) {
    buffer.Insert(offset,
                  std::string_view(block).substr(0, std::min(block.size(), total - offset)));
  }
  ExpectWellFormed(buffer);
  ASSERT_EQ(buffer.pieces().size(), 4u);
  std::uint64_t expected_offset = 0;
  for (const auto& [offset, data] : buffer.pieces()) {
    EXPECT_EQ(offset, expected_offset);
    expected_offset += data.size();
  }
  EXPECT_EQ(buffer.bytes(), total);
}

TEST(DirtyBufferTest, OneLargeWriteIsCutIntoPieces) {
  DirtyBuffer buffer;
  std::string data(2 * kPiece + 7, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
  buffer.Insert(100, data);
  ExpectWellFormed(buffer);
  EXPECT_EQ(buffer.pieces().size(), 3u);
  std::string out(data.size(), '?');
  buffer.Overlay(100, out.size(), out.data());
  EXPECT_TRUE(out == data);
}

TEST(DirtyBufferTest, MatchesAModelUnderRandomInsertsAndTruncates) {
  // CFS_TEST_SEED=N replays a failing run (the seed is printed on failure).
  const char* seed_text = std::getenv("CFS_TEST_SEED");
  const std::uint64_t seed =
      seed_text != nullptr ? std::strtoull(seed_text, nullptr, 10) : std::random_device{}();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Small pieces, so that writes cross many of them and the model stays small.
  constexpr std::size_t kSmallPiece = 512;
  constexpr std::size_t kSpan = 8 * kSmallPiece;
  for (int round = 0; round < 200; ++round) {
    DirtyBuffer buffer(kSmallPiece);
    std::string model(kSpan, '\0');
    std::vector<bool> buffered(kSpan, false);
    for (int op = 0; op < 60; ++op) {
      if (rng() % 8 == 0) {
        const std::size_t length = rng() % kSpan;
        buffer.Truncate(length);
        for (std::size_t i = length; i < kSpan; ++i) buffered[i] = false;
      } else {
        // Sizes from one byte to beyond a piece, often abutting or overlapping earlier writes.
        const std::size_t size =
            rng() % 3 == 0 ? 1 + rng() % (3 * kSmallPiece) : 1 + rng() % (kSmallPiece / 4);
        const std::size_t offset = rng() % (kSpan - size);
        std::string data(size, '\0');
        const char fill = static_cast<char>('a' + rng() % 26);
        for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>(fill + i % 7);
        buffer.Insert(offset, data);
        model.replace(offset, size, data);
        for (std::size_t i = offset; i < offset + size; ++i) buffered[i] = true;
      }
      ExpectWellFormed(buffer);
      std::uint64_t count = 0;
      std::uint64_t last = 0;
      for (std::size_t i = 0; i < kSpan; ++i) {
        if (buffered[i]) {
          ++count;
          last = i + 1;
        }
      }
      ASSERT_EQ(buffer.bytes(), count) << "op " << op;
      ASSERT_EQ(buffer.end(), last) << "op " << op;
      // Overlay onto a canvas: buffered bytes come from the model, others stay '#'.
      std::string canvas(kSpan, '#');
      buffer.Overlay(0, kSpan, canvas.data());
      for (std::size_t i = 0; i < kSpan; ++i) {
        const char expected = buffered[i] ? model[i] : '#';
        ASSERT_EQ(canvas[i], expected) << "byte " << i << " after op " << op;
      }
    }
  }
}

}  // namespace
}  // namespace cascadefs::fusefs
