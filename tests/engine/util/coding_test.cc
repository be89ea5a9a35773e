// coding_test.cc: the integer encodings round-trip, and decoders reject truncated or
// over-long input without reading past their limit.
#include "util/coding.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::engine {
namespace {

TEST(CodingTest, FixedRoundTripLittleEndian) {
  std::string buf;
  PutFixed32(&buf, 0x04030201u);
  PutFixed64(&buf, 0x0807060504030201ull);
  ASSERT_EQ(buf.size(), 12u);
  EXPECT_EQ(buf[0], 1);
  EXPECT_EQ(buf[3], 4);
  EXPECT_EQ(DecodeFixed32(buf.data()), 0x04030201u);
  EXPECT_EQ(DecodeFixed64(buf.data() + 4), 0x0807060504030201ull);
}

TEST(CodingTest, VarintRoundTripAcrossLengths) {
  std::vector<std::uint64_t> values = {0,          1,    127, 128, 16383, 16384, (1ull << 32) - 1,
                                       1ull << 32, ~0ull};
  std::string buf;
  for (std::uint64_t v : values) PutVarint64(&buf, v);
  std::string_view in(buf);
  for (std::uint64_t v : values) {
    std::uint64_t got = 0;
    ASSERT_TRUE(GetVarint64(&in, &got));
    EXPECT_EQ(got, v);
  }
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(VarintLength(~0ull), kVarint64LengthMax);
}

TEST(CodingTest, Varint32RejectsOverflowAndTruncation) {
  std::string big;
  PutVarint64(&big, 1ull << 32);
  std::string_view in(big);
  std::uint32_t v = 0;
  EXPECT_FALSE(GetVarint32(&in, &v));
  std::string truncated("\x80\x80", 2);
  in = truncated;
  EXPECT_FALSE(GetVarint32(&in, &v));
}

TEST(CodingTest, LengthPrefixedRejectsShortInput) {
  std::string buf;
  PutLengthPrefixed(&buf, "hello");
  std::string_view in(buf);
  std::string_view out;
  ASSERT_TRUE(GetLengthPrefixed(&in, &out));
  EXPECT_EQ(out, "hello");
  std::string_view cut(buf.data(), buf.size() - 1);
  EXPECT_FALSE(GetLengthPrefixed(&cut, &out));
}

}  // namespace
}  // namespace cascadefs::engine
