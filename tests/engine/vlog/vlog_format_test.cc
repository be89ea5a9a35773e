// vlog_format_test.cc: the value log's byte format (engine/vlog/vlog_format.h).
//
// Goal: every structure round-trips, and any damage (each single flipped bit, each truncation)
// is Corruption, never a wrong value. Method: encode, then damage every byte in turn.
#include "vlog/vlog_format.h"

#include <string>

#include <gtest/gtest.h>

namespace cascadefs::engine {
namespace {

TEST(VlogFormatTest, FileHeaderRoundTripsAndRefusesDamage) {
  const std::string bytes = EncodeVlogFileHeader({.file_number = 42, .created_ns = 7});
  ASSERT_EQ(bytes.size(), kVlogFileHeaderBytes);
  Result<VlogFileHeader> header = DecodeVlogFileHeader(bytes);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_EQ(header->file_number, 42u);
  EXPECT_EQ(header->created_ns, 7u);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x10;
    EXPECT_TRUE(DecodeVlogFileHeader(damaged).status().IsCorruption()) << "byte " << i;
  }
  EXPECT_TRUE(DecodeVlogFileHeader(bytes.substr(1)).status().IsCorruption());
}

TEST(VlogFormatTest, RecordRoundTripsAndEveryDamageIsCorruption) {
  std::string file = "prefix";
  const std::string value(1000, 'v');
  const VlogRecord in{.key = "chunk-key", .value = value, .compression = VlogCompression::kNone};
  const std::uint32_t checksum = AppendVlogRecord(in, &file);
  const std::string bytes = file.substr(6);
  ASSERT_EQ(bytes.size(), kVlogRecordOverheadBytes + 9 + 1000);
  Result<VlogRecord> out = DecodeVlogRecord(bytes, &checksum);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->key, "chunk-key");
  EXPECT_EQ(out->value, std::string(1000, 'v'));
  EXPECT_EQ(out->compression, VlogCompression::kNone);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x01;
    EXPECT_TRUE(DecodeVlogRecord(damaged).status().IsCorruption()) << "byte " << i;
  }
  for (std::size_t size : {std::size_t{0}, std::size_t{5}, bytes.size() - 1}) {
    EXPECT_TRUE(DecodeVlogRecord(bytes.substr(0, size)).status().IsCorruption()) << size;
  }
  const std::uint32_t other = checksum + 1;
  EXPECT_TRUE(DecodeVlogRecord(bytes, &other).status().IsCorruption())
      << "a record that is not the one the pointer names";
}

TEST(VlogFormatTest, CompressedFlagAndEmptyValue) {
  std::string bytes;
  AppendVlogRecord({.key = "k", .value = "", .compression = VlogCompression::kZstd}, &bytes);
  Result<VlogRecord> out = DecodeVlogRecord(bytes);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->compression, VlogCompression::kZstd);
  EXPECT_EQ(out->value, "");
}

TEST(VlogFormatTest, FooterRoundTripsAndRefusesDamage) {
  const std::string bytes = EncodeVlogFooter({.records = 3, .value_bytes = 1 << 20});
  ASSERT_EQ(bytes.size(), kVlogFooterBytes);
  Result<VlogFooter> footer = DecodeVlogFooter(bytes);
  ASSERT_TRUE(footer.ok());
  EXPECT_EQ(footer->records, 3u);
  EXPECT_EQ(footer->value_bytes, 1u << 20);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x80;
    EXPECT_TRUE(DecodeVlogFooter(damaged).status().IsCorruption()) << "byte " << i;
  }
}

TEST(VlogFormatTest, PointerRoundTripsCanonicallyAndRefusesDamage) {
  const ValuePointer in{
      .file_number = 123456, .offset = 1ull << 40, .size = 16400, .checksum = 0xdeadbeef};
  const std::string bytes = EncodeValuePointer(in);
  Result<ValuePointer> out = DecodeValuePointer(bytes);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out.value(), in);
  EXPECT_TRUE(DecodeValuePointer(bytes + "x").status().IsCorruption()) << "trailing bytes";
  EXPECT_TRUE(DecodeValuePointer(bytes.substr(0, bytes.size() - 1)).status().IsCorruption());
  EXPECT_TRUE(
      DecodeValuePointer(std::string("\x81\x00", 2) + bytes.substr(3)).status().IsCorruption())
      << "an overlong varint is not canonical";
  const std::string tiny = EncodeValuePointer({.file_number = 1, .offset = 0, .size = 3});
  EXPECT_TRUE(DecodeValuePointer(tiny).status().IsCorruption()) << "smaller than any record";
}

}  // namespace
}  // namespace cascadefs::engine
