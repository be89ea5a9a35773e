// version_edit_test.cc: VersionEdit encodes every field, decodes it back, and reports each kind
// of bad input as Corruption naming the field (or NotSupported for a newer store).
//
// Method: round-trip edits with every field set (at small and extreme values); cut a full
// encoding at every length; hand-build encodings with one defect each (unknown tag, field out
// of range, duplicate, bad key, newer format version) with the coding helpers and check the
// Status code and message.
#include "manifest/version_edit.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "db/dbformat.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

FileMetaData MakeFile(std::uint64_t number, std::string_view smallest_user_key,
                      std::string_view largest_user_key) {
  FileMetaData file;
  file.number = number;
  file.file_size_bytes = 4096 * number + 17;
  file.smallest = MakeInternalKey(smallest_user_key, 90, ValueType::kValue);
  file.largest = MakeInternalKey(largest_user_key, 5, ValueType::kDeletion);
  file.smallest_sequence = 5;
  file.largest_sequence = 90;
  file.num_entries = 3 * number;
  return file;
}

VersionEdit FullEdit() {
  VersionEdit edit;
  edit.SetFormatVersion(kStoreFormatVersion);
  edit.SetLogNumber(7);
  edit.SetNextFileNumber(20);
  edit.SetLastSequence(1000);
  edit.SetCompactPointer(3, MakeInternalKey("m", 44, ValueType::kValue));
  edit.SetCompactPointer(1, MakeInternalKey("c", 4, ValueType::kValue));
  edit.RemoveFile(2, 11);
  edit.RemoveFile(0, 9);
  edit.AddFile(0, MakeFile(12, "a", "k"));
  edit.AddFile(3, MakeFile(13, std::string("\x00\xff", 2), std::string("\xff\xff", 2)));
  return edit;
}

std::string Encode(const VersionEdit& edit) {
  std::string encoded;
  edit.EncodeTo(&encoded);
  return encoded;
}

void PutTag(std::string* dst, VersionEditTag tag) {
  PutVarint32(dst, static_cast<std::uint32_t>(tag));
}

// The fields of an added-file entry after its tag, with each piece overridable.
std::string AddedFileBody(std::uint32_t level, const FileMetaData& file) {
  std::string body;
  PutVarint32(&body, level);
  PutVarint64(&body, file.number);
  PutVarint64(&body, file.file_size_bytes);
  PutLengthPrefixed(&body, file.smallest);
  PutLengthPrefixed(&body, file.largest);
  PutVarint64(&body, file.smallest_sequence);
  PutVarint64(&body, file.largest_sequence);
  PutVarint64(&body, file.num_entries);
  return body;
}

std::string AddedFileField(std::uint32_t level, const FileMetaData& file) {
  std::string field;
  PutTag(&field, VersionEditTag::kAddedFile);
  field += AddedFileBody(level, file);
  return field;
}

// Decodes `encoded`, expects Corruption whose message contains `needle`, and checks that the
// edit was left cleared.
void ExpectCorruption(const std::string& encoded, std::string_view needle) {
  VersionEdit edit = FullEdit();
  const Status status = edit.DecodeFrom(encoded);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find(needle), std::string_view::npos)
      << "message: " << status.message() << "\nexpected to contain: " << needle;
  EXPECT_TRUE(edit == VersionEdit()) << edit.DebugString();
}

TEST(VersionEditTest, EmptyEditRoundTrips) {
  const VersionEdit empty;
  const std::string encoded = Encode(empty);
  EXPECT_TRUE(encoded.empty());
  VersionEdit decoded = FullEdit();
  ASSERT_TRUE(decoded.DecodeFrom(encoded).ok());
  EXPECT_TRUE(decoded == empty);
  EXPECT_FALSE(decoded.has_format_version());
  EXPECT_FALSE(decoded.has_log_number());
  EXPECT_FALSE(decoded.has_next_file_number());
  EXPECT_FALSE(decoded.has_last_sequence());
  EXPECT_TRUE(decoded.added_files().empty());
  EXPECT_TRUE(decoded.removed_files().empty());
  EXPECT_TRUE(decoded.compact_pointers().empty());
}

TEST(VersionEditTest, EveryFieldRoundTrips) {
  const VersionEdit edit = FullEdit();
  const std::string encoded = Encode(edit);
  VersionEdit decoded;
  ASSERT_TRUE(decoded.DecodeFrom(encoded).ok());
  EXPECT_TRUE(decoded == edit);
  EXPECT_EQ(Encode(decoded), encoded);

  ASSERT_TRUE(decoded.has_format_version());
  EXPECT_EQ(decoded.format_version(), kStoreFormatVersion);
  ASSERT_TRUE(decoded.has_log_number());
  EXPECT_EQ(decoded.log_number(), 7u);
  ASSERT_TRUE(decoded.has_next_file_number());
  EXPECT_EQ(decoded.next_file_number(), 20u);
  ASSERT_TRUE(decoded.has_last_sequence());
  EXPECT_EQ(decoded.last_sequence(), 1000u);

  ASSERT_EQ(decoded.compact_pointers().size(), 2u);
  EXPECT_EQ(decoded.compact_pointers()[0].first, 1);
  EXPECT_EQ(decoded.compact_pointers()[0].second, MakeInternalKey("c", 4, ValueType::kValue));
  EXPECT_EQ(decoded.compact_pointers()[1].first, 3);

  const std::set<std::pair<int, std::uint64_t>> removed = {{0, 9}, {2, 11}};
  EXPECT_EQ(decoded.removed_files(), removed);

  ASSERT_EQ(decoded.added_files().size(), 2u);
  EXPECT_EQ(decoded.added_files()[0].first, 0);
  EXPECT_EQ(decoded.added_files()[0].second, MakeFile(12, "a", "k"));
  EXPECT_EQ(decoded.added_files()[1].first, 3);
  EXPECT_EQ(decoded.added_files()[1].second,
            MakeFile(13, std::string("\x00\xff", 2), std::string("\xff\xff", 2)));
}

TEST(VersionEditTest, ExtremeValuesRoundTrip) {
  VersionEdit edit;
  edit.SetFormatVersion(1);
  edit.SetLogNumber(kU64Max);
  edit.SetNextFileNumber(kU64Max);
  edit.SetLastSequence(kSequenceMax);
  FileMetaData file;
  file.number = kU64Max;
  file.file_size_bytes = kU64Max;
  file.smallest = MakeInternalKey("", 0, ValueType::kDeletion);
  file.largest = MakeInternalKey(std::string(kKeySizeMax, 'z'), kSequenceMax, ValueType::kValue);
  file.smallest_sequence = kSequenceMax;
  file.largest_sequence = kSequenceMax;
  file.num_entries = kU64Max;
  edit.AddFile(kNumLevels - 1, file);
  edit.RemoveFile(kNumLevels - 1, kU64Max);  // a move to the same level: allowed by the format
  VersionEdit decoded;
  ASSERT_TRUE(decoded.DecodeFrom(Encode(edit)).ok());
  EXPECT_TRUE(decoded == edit);
  EXPECT_EQ(decoded.added_files()[0].second, file);
}

TEST(VersionEditTest, FormatVersionIsEncodedFirst) {
  const std::string encoded = Encode(FullEdit());
  std::string expected_prefix;
  PutTag(&expected_prefix, VersionEditTag::kFormatVersion);
  PutVarint32(&expected_prefix, kStoreFormatVersion);
  EXPECT_EQ(encoded.substr(0, expected_prefix.size()), expected_prefix);
}

TEST(VersionEditTest, FieldsDecodeInAnyOrder) {
  std::string encoded;
  encoded += AddedFileField(1, MakeFile(5, "a", "b"));
  PutTag(&encoded, VersionEditTag::kLastSequence);
  PutVarint64(&encoded, 9);
  PutTag(&encoded, VersionEditTag::kLogNumber);
  PutVarint64(&encoded, 4);
  VersionEdit decoded;
  ASSERT_TRUE(decoded.DecodeFrom(encoded).ok());
  EXPECT_EQ(decoded.last_sequence(), 9u);
  EXPECT_EQ(decoded.log_number(), 4u);
  ASSERT_EQ(decoded.added_files().size(), 1u);
}

TEST(VersionEditTest, EveryTruncationIsCorruptionOrAShorterEdit) {
  const std::string encoded = Encode(FullEdit());
  int corrupt_count = 0;
  for (std::size_t length = 0; length < encoded.size(); ++length) {
    const std::string prefix = encoded.substr(0, length);
    VersionEdit decoded;
    const Status status = decoded.DecodeFrom(prefix);
    if (status.ok()) {
      // Cut at a field boundary: a valid edit holding the fields before the cut.
      EXPECT_EQ(Encode(decoded), prefix) << "length " << length;
    } else {
      ASSERT_TRUE(status.IsCorruption()) << status.ToString();
      EXPECT_NE(status.message().find("truncated"), std::string_view::npos) << status.ToString();
      ++corrupt_count;
    }
  }
  // Every field but the single-byte tags cut somewhere inside.
  EXPECT_GT(corrupt_count, static_cast<int>(encoded.size()) / 2);
}

TEST(VersionEditTest, TruncationNamesTheField) {
  std::string encoded;
  PutTag(&encoded, VersionEditTag::kLogNumber);
  ExpectCorruption(encoded, "version edit: log number: truncated");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kNextFileNumber);
  encoded.push_back('\x80');  // a varint that never ends
  ExpectCorruption(encoded, "next file number: truncated");

  encoded = AddedFileField(0, MakeFile(3, "a", "b"));
  encoded.pop_back();
  ExpectCorruption(encoded, "added file: truncated");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kRemovedFile);
  PutVarint32(&encoded, 1);
  ExpectCorruption(encoded, "removed file: truncated");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kCompactPointer);
  PutVarint32(&encoded, 1);
  PutVarint32(&encoded, 20);  // key length beyond the input
  encoded += "short";
  ExpectCorruption(encoded, "compaction pointer: truncated");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  ExpectCorruption(encoded, "format version: truncated");

  // A malformed tag varint: more than 5 bytes.
  ExpectCorruption(std::string(6, '\xff'), "version edit: tag: truncated or malformed");
}

TEST(VersionEditTest, UnknownTagIsCorruption) {
  std::string encoded;
  PutTag(&encoded, VersionEditTag::kLogNumber);
  PutVarint64(&encoded, 4);
  PutVarint32(&encoded, 99);
  PutVarint64(&encoded, 1);
  ExpectCorruption(encoded, "version edit: tag: unknown tag 99");

  encoded.clear();
  PutVarint32(&encoded, 0);
  ExpectCorruption(encoded, "unknown tag 0");

  encoded.clear();
  PutVarint32(&encoded, 11);  // the first tag after the last one in use
  ExpectCorruption(encoded, "unknown tag 11");
}

TEST(VersionEditTest, ValueLogFieldsRoundTrip) {
  VersionEdit edit;
  edit.AddVlog({.number = 30, .size_bytes = 1 << 20, .records = 200, .value_bytes = 900000});
  edit.AddVlog({.number = 31, .size_bytes = 64, .records = 1, .value_bytes = 19});
  edit.AddVlogGarbage(30, 5, 4000);
  edit.AddVlogGarbage(30, 1, 96);  // summed
  edit.RemoveVlog(12);
  const std::string encoded = Encode(edit);
  VersionEdit decoded;
  ASSERT_TRUE(decoded.DecodeFrom(encoded).ok());
  EXPECT_TRUE(decoded == edit);
  ASSERT_EQ(decoded.added_vlogs().size(), 2u);
  EXPECT_EQ(decoded.added_vlogs().at(30).records, 200u);
  EXPECT_EQ(decoded.added_vlogs().at(31).value_bytes, 19u);
  ASSERT_EQ(decoded.vlog_garbage().size(), 1u);
  EXPECT_EQ(decoded.vlog_garbage().at(30).records, 6u);
  EXPECT_EQ(decoded.vlog_garbage().at(30).bytes, 4096u);
  EXPECT_EQ(decoded.removed_vlogs(), std::set<std::uint64_t>{12});
  EXPECT_NE(decoded.DebugString().find("vlog_garbage: #30"), std::string::npos);
  // Every cut is a clean Corruption or a shorter edit.
  for (std::size_t cut = 0; cut < encoded.size(); ++cut) {
    VersionEdit partial;
    Status status = partial.DecodeFrom(std::string_view(encoded).substr(0, cut));
    EXPECT_TRUE(status.ok() || status.IsCorruption()) << cut << ": " << status.ToString();
  }
  // A file listed twice in one edit is Corruption.
  std::string twice;
  for (int i = 0; i < 2; ++i) {
    PutTag(&twice, VersionEditTag::kRemovedVlog);
    PutVarint64(&twice, 12);
  }
  ExpectCorruption(twice, "removed value log: file 12 listed twice");
}

TEST(VersionEditTest, NewerFormatVersionIsNotSupported) {
  std::string encoded;
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  PutVarint32(&encoded, kStoreFormatVersion + 1);
  // What a newer build might write after it: a tag this build does not know.
  PutVarint32(&encoded, 77);
  VersionEdit edit;
  const Status status = edit.DecodeFrom(encoded);
  ASSERT_TRUE(status.IsNotSupported()) << status.ToString();
  EXPECT_EQ(status.message(), "store format version " + std::to_string(kStoreFormatVersion + 1) +
                                  " is newer than this cascadefs supports (" +
                                  std::to_string(kStoreFormatVersion) + ")");
}

TEST(VersionEditTest, BadFormatVersionIsCorruption) {
  std::string encoded;
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  PutVarint32(&encoded, 0);
  ExpectCorruption(encoded, "format version: version 0 is invalid");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kLogNumber);
  PutVarint64(&encoded, 4);
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  PutVarint32(&encoded, 1);
  ExpectCorruption(encoded, "format version: not the first field");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  PutVarint32(&encoded, 1);
  PutTag(&encoded, VersionEditTag::kFormatVersion);
  PutVarint32(&encoded, 1);
  ExpectCorruption(encoded, "format version: not the first field");
}

TEST(VersionEditTest, DuplicateScalarsAreCorruption) {
  const struct {
    VersionEditTag tag;
    const char* field;
  } kScalars[] = {
      {VersionEditTag::kLogNumber, "log number: appears twice"},
      {VersionEditTag::kNextFileNumber, "next file number: appears twice"},
      {VersionEditTag::kLastSequence, "last sequence: appears twice"},
  };
  for (const auto& scalar : kScalars) {
    std::string encoded;
    PutTag(&encoded, scalar.tag);
    PutVarint64(&encoded, 1);
    PutTag(&encoded, scalar.tag);
    PutVarint64(&encoded, 2);
    ExpectCorruption(encoded, scalar.field);
  }
}

TEST(VersionEditTest, LastSequenceAboveMaximumIsCorruption) {
  std::string encoded;
  PutTag(&encoded, VersionEditTag::kLastSequence);
  PutVarint64(&encoded, kSequenceMax + 1);
  ExpectCorruption(encoded, "last sequence: 72057594037927936 exceeds the maximum");
}

TEST(VersionEditTest, LevelOutOfRangeIsCorruption) {
  std::string encoded = AddedFileField(kNumLevels, MakeFile(3, "a", "b"));
  ExpectCorruption(encoded, "added file: file 3: level 7 out of range");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kRemovedFile);
  PutVarint32(&encoded, 1000);
  PutVarint64(&encoded, 5);
  ExpectCorruption(encoded, "removed file: level 1000 out of range");

  encoded.clear();
  PutTag(&encoded, VersionEditTag::kCompactPointer);
  PutVarint32(&encoded, kNumLevels);
  PutLengthPrefixed(&encoded, MakeInternalKey("k", 1, ValueType::kValue));
  ExpectCorruption(encoded, "compaction pointer: level 7 out of range");
}

TEST(VersionEditTest, BadFileMetaDataIsCorruption) {
  FileMetaData file = MakeFile(3, "a", "b");
  file.smallest = "short";  // shorter than the trailer
  ExpectCorruption(AddedFileField(0, file), "added file: file 3: smallest key: malformed");

  file = MakeFile(3, "a", "b");
  // User key "b", trailer type byte 9 (unknown), sequence 0.
  file.largest = std::string("b") + std::string(1, '\x09') + std::string(7, '\0');
  ExpectCorruption(AddedFileField(0, file), "added file: file 3: largest key: malformed");

  file = MakeFile(3, "a", "b");
  file.largest = MakeInternalKey(std::string(kKeySizeMax + 1, 'x'), 1, ValueType::kValue);
  ExpectCorruption(AddedFileField(0, file), "largest key: internal key longer than the maximum");

  file = MakeFile(3, "z", "b");
  ExpectCorruption(AddedFileField(0, file), "file 3: smallest key sorts after largest key");

  file = MakeFile(3, "a", "b");
  file.smallest_sequence = 100;
  file.largest_sequence = 99;
  ExpectCorruption(AddedFileField(0, file), "file 3: smallest sequence 100 exceeds largest");

  file = MakeFile(3, "a", "b");
  file.largest_sequence = kSequenceMax + 1;
  ExpectCorruption(AddedFileField(0, file), "file 3: largest sequence 72057594037927936");

  std::string encoded;
  PutTag(&encoded, VersionEditTag::kCompactPointer);
  PutVarint32(&encoded, 2);
  PutLengthPrefixed(&encoded, "k");
  ExpectCorruption(encoded, "compaction pointer: malformed internal key");
}

TEST(VersionEditTest, DuplicateEntriesAreCorruption) {
  std::string encoded = AddedFileField(0, MakeFile(3, "a", "b"));
  encoded += AddedFileField(2, MakeFile(3, "c", "d"));
  ExpectCorruption(encoded, "added file: file 3: listed twice");

  encoded.clear();
  for (int i = 0; i < 2; ++i) {
    PutTag(&encoded, VersionEditTag::kRemovedFile);
    PutVarint32(&encoded, 4);
    PutVarint64(&encoded, 8);
  }
  ExpectCorruption(encoded, "removed file: file 8 at level 4 listed twice");

  encoded.clear();
  for (int i = 0; i < 2; ++i) {
    PutTag(&encoded, VersionEditTag::kCompactPointer);
    PutVarint32(&encoded, 5);
    PutLengthPrefixed(&encoded, MakeInternalKey("k", 1, ValueType::kValue));
  }
  ExpectCorruption(encoded, "compaction pointer: level 5 appears twice");
}

TEST(VersionEditTest, MoveIsRemoveAndAddOfOneNumber) {
  VersionEdit edit;
  edit.RemoveFile(1, 30);
  edit.AddFile(2, MakeFile(30, "a", "b"));
  VersionEdit decoded;
  ASSERT_TRUE(decoded.DecodeFrom(Encode(edit)).ok());
  EXPECT_TRUE(decoded == edit);
}

TEST(VersionEditTest, SetCompactPointerReplacesPerLevel) {
  VersionEdit edit;
  edit.SetCompactPointer(2, MakeInternalKey("a", 1, ValueType::kValue));
  edit.SetCompactPointer(2, MakeInternalKey("b", 1, ValueType::kValue));
  ASSERT_EQ(edit.compact_pointers().size(), 1u);
  EXPECT_EQ(edit.compact_pointers()[0].second, MakeInternalKey("b", 1, ValueType::kValue));
}

TEST(VersionEditTest, ClearForgetsEverything) {
  VersionEdit edit = FullEdit();
  edit.Clear();
  EXPECT_TRUE(edit == VersionEdit());
  edit.AddFile(0, MakeFile(12, "a", "b"));  // the number is free again after Clear
  EXPECT_EQ(edit.added_files().size(), 1u);
}

TEST(VersionEditTest, DebugStringShowsEveryField) {
  const std::string text = FullEdit().DebugString();
  for (const char* needle :
       {"format_version: 2", "log_number: 7", "next_file_number: 20", "last_sequence: 1000",
        "compact_pointer: L3 'm' @ 44 : 1", "remove_file: L2 #11", "remove_file: L0 #9",
        "add_file: L0 #12 49169 bytes, 36 entries, sequences [5, 90], keys ['a' @ 90 : 1 .. "
        "'k' @ 5 : 0]",
        "add_file: L3 #13", "'\\x00\\xff' @ 90 : 1"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

TEST(VersionEditTest, ValidateFileMetaData) {
  EXPECT_TRUE(ValidateFileMetaData(MakeFile(1, "a", "a")).ok());
  FileMetaData file = MakeFile(1, "a", "a");
  file.smallest = MakeInternalKey("a", 1, ValueType::kValue);
  file.largest = MakeInternalKey("a", 2, ValueType::kValue);  // newer sorts first
  EXPECT_TRUE(ValidateFileMetaData(file).IsCorruption());
}

}  // namespace
}  // namespace cascadefs::engine
