// filename_test.cc: store file names are made as documented and parse back, and nothing else
// parses.
//
// Method: make every kind of name for numbers at the padding boundary and the 64-bit limit,
// parse them back; then feed a table of foreign and non-canonical names that must be refused
// without touching the outputs.
#include "manifest/filename.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace cascadefs::engine {
namespace {

TEST(FileNameTest, MakesDocumentedNames) {
  EXPECT_EQ(SstFileName("store", 12), "store/000012.sst");
  EXPECT_EQ(WalFileName("store", 7), "store/000007.wal");
  EXPECT_EQ(VlogFileName("store", 999999), "store/999999.vlog");
  EXPECT_EQ(TempFileName("store", 3), "store/000003.dbtmp");
  EXPECT_EQ(ManifestFileName("store", 1234567), "store/MANIFEST-1234567");
  EXPECT_EQ(CurrentFileName("store"), "store/CURRENT");
  EXPECT_EQ(LockFileName("/a/b"), "/a/b/LOCK");
  EXPECT_EQ(BaseFileName(FileType::kSst, 0), "000000.sst");
  EXPECT_EQ(BaseFileName(FileType::kManifest, std::numeric_limits<std::uint64_t>::max()),
            "MANIFEST-18446744073709551615");
}

TEST(FileNameTest, EveryNameParsesBack) {
  const FileType kNumbered[] = {FileType::kSst, FileType::kWal, FileType::kVlog, FileType::kTemp,
                                FileType::kManifest};
  const std::uint64_t kNumbers[] = {0,       1,       999999,
                                    1000000, 1234567, std::numeric_limits<std::uint64_t>::max()};
  for (const FileType type : kNumbered) {
    for (const std::uint64_t number : kNumbers) {
      const std::string name = BaseFileName(type, number);
      std::uint64_t parsed_number = 42;
      FileType parsed_type = FileType::kLock;
      ASSERT_TRUE(ParseFileName(name, &parsed_number, &parsed_type)) << name;
      EXPECT_EQ(parsed_number, number) << name;
      EXPECT_EQ(parsed_type, type) << name;
    }
  }
  std::uint64_t number = 42;
  FileType type = FileType::kSst;
  ASSERT_TRUE(ParseFileName("CURRENT", &number, &type));
  EXPECT_EQ(type, FileType::kCurrent);
  EXPECT_EQ(number, 0u);
  ASSERT_TRUE(ParseFileName("LOCK", &number, &type));
  EXPECT_EQ(type, FileType::kLock);
}

TEST(FileNameTest, RefusesForeignAndNonCanonicalNames) {
  const char* kBad[] = {
      "",
      "foo",
      "CURRENT.tmp",
      "current",
      "LOCK2",
      "LOG",
      ".sst",
      "12.sst",                         // not padded
      "00012.sst",                      // 5 digits
      "0001234567.sst",                 // wider than 6 with a leading zero
      "0000000.sst",                    // 7 digits, leading zero
      "+00012.sst",                     // sign
      "-00012.sst",                     // sign
      "00001a.sst",                     // not a digit
      "000012.SST",                     // suffix case
      "000012.sst.bak",                 // trailing text
      "000012.log",                     // LevelDB's WAL suffix: not ours
      "000012.ldb",                     // LevelDB's SST suffix: not ours
      "000012",                         // no suffix
      "MANIFEST-",                      // no number
      "MANIFEST-12",                    // not padded
      "MANIFEST-000012x",               // trailing text
      "MANIFEST-000012\n",              // trailing newline
      "manifest-000012",                // prefix case
      "18446744073709551616.sst",       // 2^64: overflows
      "99999999999999999999.sst",       // overflows
      "100000000000000000000.sst",      // 21 digits
      "MANIFEST-18446744073709551616",  // overflows
  };
  for (const char* name : kBad) {
    std::uint64_t number = 42;
    FileType type = FileType::kVlog;
    EXPECT_FALSE(ParseFileName(name, &number, &type)) << '"' << name << '"';
    EXPECT_EQ(number, 42u) << name;
    EXPECT_EQ(type, FileType::kVlog) << name;
  }
}

TEST(FileNameTest, ParseFileNumber) {
  std::uint64_t number = 0;
  ASSERT_TRUE(ParseFileNumber("000000", &number));
  EXPECT_EQ(number, 0u);
  ASSERT_TRUE(ParseFileNumber("18446744073709551615", &number));
  EXPECT_EQ(number, std::numeric_limits<std::uint64_t>::max());
  EXPECT_FALSE(ParseFileNumber("18446744073709551616", &number));
  EXPECT_FALSE(ParseFileNumber("", &number));
  EXPECT_FALSE(ParseFileNumber("00000 ", &number));
}

}  // namespace
}  // namespace cascadefs::engine
