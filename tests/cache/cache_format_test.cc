// cache_format_test: the segment header and entry codecs and the segment walker, from both
// sides (encode, then decode the bytes), and every kind of damage the decoders must report
// instead of serving: flipped bits, a torn tail, stale entries of an earlier lap, bad lengths.
#include "cache_format.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <xxhash.h>

namespace cascadefs::cache {
namespace {

constexpr std::uint32_t kSegment = 64 << 10;

SegmentHeader SampleHeader() { return SegmentHeader{0x1234, 7, kSegment, 3, 8ull * kSegment}; }

TEST(CacheFormatTest, SegmentHeaderRoundTrip) {
  char raw[kSegmentHeaderBytes];
  EncodeSegmentHeader(SampleHeader(), raw);
  Result<SegmentHeader> header = DecodeSegmentHeader(raw, sizeof(raw));
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_EQ(header->file_identity, 0x1234u);
  EXPECT_EQ(header->sequence, 7u);
  EXPECT_EQ(header->segment_size_bytes, kSegment);
  EXPECT_EQ(header->segment_index, 3u);
  EXPECT_EQ(header->capacity_bytes, 8ull * kSegment);
}

TEST(CacheFormatTest, SegmentHeaderDamageIsReported) {
  char raw[kSegmentHeaderBytes] = {};
  EXPECT_TRUE(DecodeSegmentHeader(raw, sizeof(raw)).status().IsNotFound());  // zeros
  EXPECT_TRUE(DecodeSegmentHeader(raw, 10).status().IsCorruption());         // truncated
  for (std::size_t byte = 8; byte < kSegmentHeaderBytes; ++byte) {
    EncodeSegmentHeader(SampleHeader(), raw);
    raw[byte] ^= 0x10;
    EXPECT_TRUE(DecodeSegmentHeader(raw, sizeof(raw)).status().IsCorruption()) << byte;
  }
  // Another version with a valid checksum is NotSupported (Open reformats), not Corruption.
  EncodeSegmentHeader(SampleHeader(), raw);
  EncodeFixed32(raw + 8, kFormatVersion + 1);
  EncodeFixed64(raw + 56, XXH3_64bits(raw, 56));
  EXPECT_TRUE(DecodeSegmentHeader(raw, sizeof(raw)).status().IsNotSupported());
  // Fields out of bounds with a valid checksum: segment index beyond the capacity.
  SegmentHeader bad = SampleHeader();
  bad.segment_index = 8;
  EncodeSegmentHeader(bad, raw);
  EXPECT_TRUE(DecodeSegmentHeader(raw, sizeof(raw)).status().IsCorruption());
}

TEST(CacheFormatTest, EntryRoundTripAndDamage) {
  std::string bytes;
  EncodeEntry("key-17-bytes-long", "value bytes", 9, &bytes);
  ASSERT_EQ(bytes.size(), EntryBytes(17, 11));
  EntryView view;
  ASSERT_EQ(DecodeEntry(bytes.data(), bytes.size(), 9, &view), EntryDamage::kNone);
  EXPECT_EQ(view.key, "key-17-bytes-long");
  EXPECT_EQ(view.value, "value bytes");
  EXPECT_EQ(view.entry_bytes, bytes.size());
  // Another segment write's entry is stale: the end of this segment's entries, not damage.
  EXPECT_EQ(DecodeEntry(bytes.data(), bytes.size(), 10, &view), EntryDamage::kEnd);
  // Torn: the buffer ends inside the entry.
  EXPECT_EQ(DecodeEntry(bytes.data(), bytes.size() - 1, 9, &view), EntryDamage::kBadHeader);
  // Every flipped bit of the payload or checksum is caught by the checksum.
  for (std::size_t byte = kEntryHeaderBytes; byte < bytes.size(); ++byte) {
    std::string damaged = bytes;
    damaged[byte] ^= 0x01;
    EXPECT_EQ(DecodeEntry(damaged.data(), damaged.size(), 9, &view), EntryDamage::kBadChecksum)
        << byte;
  }
  // Header fields out of bounds.
  std::string long_value = bytes;
  EncodeFixed32(long_value.data() + 8, 0xffffffffu);
  EXPECT_EQ(DecodeEntry(long_value.data(), long_value.size(), 9, &view), EntryDamage::kBadHeader);
  std::string zero_key = bytes;
  zero_key[4] = 0;
  EXPECT_EQ(DecodeEntry(zero_key.data(), zero_key.size(), 9, &view), EntryDamage::kBadHeader);
  std::string flags = bytes;
  flags[5] = 1;
  EXPECT_EQ(DecodeEntry(flags.data(), flags.size(), 9, &view), EntryDamage::kBadHeader);
}

// A segment image: header, entries of `sequence`, then `tail` bytes.
std::string Image(std::uint64_t sequence, int entries, std::vector<std::uint32_t>* offsets) {
  std::string image(kSegmentHeaderBytes, '\0');
  EncodeSegmentHeader(SegmentHeader{1, sequence, kSegment, 0, 8ull * kSegment}, image.data());
  for (int i = 0; i < entries; ++i) {
    offsets->push_back(static_cast<std::uint32_t>(image.size()));
    EncodeEntry("key" + std::to_string(i), std::string(100 + i, 'a' + i), sequence, &image);
  }
  return image;
}

TEST(CacheFormatTest, WalkStopsAtStaleBytesAndStepsOverBadChecksums) {
  std::vector<std::uint32_t> offsets;
  std::string image = Image(5, 4, &offsets);
  const std::size_t live_end = image.size();
  // Stale entries of the previous lap (sequence 4) follow the live ones.
  std::vector<std::uint32_t> unused;
  std::string stale = Image(4, 8, &unused);
  image += stale.substr(live_end);
  image.resize(kSegment, '\0');

  std::vector<std::string> keys;
  WalkResult walk = WalkSegment(image.data(), image.size(), 5,
                                [&](const WalkedEntry& e) { keys.emplace_back(e.view.key); });
  EXPECT_EQ(keys, (std::vector<std::string>{"key0", "key1", "key2", "key3"}));
  EXPECT_EQ(walk.end_offset, live_end);
  EXPECT_EQ(walk.damaged_entries, 0u);

  // A bit flip in entry 1's value: entry 1 is damaged, 2 and 3 still found.
  image[offsets[1] + kEntryHeaderBytes + 10] ^= 0x40;
  keys.clear();
  walk = WalkSegment(image.data(), image.size(), 5,
                     [&](const WalkedEntry& e) { keys.emplace_back(e.view.key); });
  EXPECT_EQ(keys, (std::vector<std::string>{"key0", "key2", "key3"}));
  ASSERT_EQ(walk.damaged.size(), 1u);
  EXPECT_EQ(walk.damaged[0].first, offsets[1]);
  EXPECT_EQ(walk.damaged[0].second, EntryDamage::kBadChecksum);

  // A garbage length in entry 2's header: the walk stops there.
  EncodeFixed32(image.data() + offsets[2] + 8, 0x7fffffff);
  keys.clear();
  walk = WalkSegment(image.data(), image.size(), 5,
                     [&](const WalkedEntry& e) { keys.emplace_back(e.view.key); });
  EXPECT_EQ(keys, (std::vector<std::string>{"key0"}));
  EXPECT_TRUE(walk.stopped_at_damage);
  EXPECT_EQ(walk.end_offset, offsets[2]);
  EXPECT_EQ(walk.damaged_entries, 2u);
}

}  // namespace
}  // namespace cascadefs::cache
