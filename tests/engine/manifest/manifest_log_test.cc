// manifest_log_test.cc: the manifest's record framing round-trips, and the reader tells a torn
// tail (stop cleanly, report the valid length) from damage before the end (Corruption naming
// the file and offset).
//
// Method: write manifests with ManifestWriter into an in-memory file (string_file.h), then
// cut, extend and flip their bytes and read them back with ManifestReader/ReadManifest, run
// inline on the test thread (no scheduler: the in-memory files never suspend). Injected write
// and sync failures check the writer's failed state. The same API over MemEnv and the scheduler
// Env is in manifest_env_test.cc.pending, enabled once helper/env is merged.
#include "manifest/manifest_log.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "db/dbformat.h"
#include "engine/manifest/string_file.h"
#include "util/checksum.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

using testing::RunInline;
using testing::StringFile;
using testing::StringWritableFile;

constexpr char kPath[] = "store/MANIFEST-000001";

FileMetaData MakeFile(std::uint64_t number, std::size_t key_bytes = 1) {
  FileMetaData file;
  file.number = number;
  file.file_size_bytes = 1000 + number;
  file.smallest = MakeInternalKey(std::string(key_bytes, 'a'), 2, ValueType::kValue);
  file.largest = MakeInternalKey(std::string(key_bytes, 'z'), 1, ValueType::kValue);
  file.smallest_sequence = 1;
  file.largest_sequence = 2;
  file.num_entries = 10;
  return file;
}

// The i-th edit of a test manifest: the first carries the format version.
VersionEdit MakeEdit(int i) {
  VersionEdit edit;
  if (i == 0) edit.SetFormatVersion(kStoreFormatVersion);
  edit.SetLastSequence(static_cast<SequenceNumber>(100 + i));
  edit.SetNextFileNumber(static_cast<std::uint64_t>(10 + i));
  edit.AddFile(i % kNumLevels, MakeFile(static_cast<std::uint64_t>(i + 1)));
  return edit;
}

std::string Encode(const VersionEdit& edit) {
  std::string encoded;
  edit.EncodeTo(&encoded);
  return encoded;
}

// A manifest of the given edits as written (and synced) by ManifestWriter; *offsets receives
// each record's offset.
std::string WriteManifest(const std::vector<std::string>& payloads,
                          std::vector<std::uint64_t>* offsets = nullptr) {
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  for (const std::string& payload : payloads) {
    if (offsets != nullptr) offsets->push_back(writer.size_bytes());
    EXPECT_TRUE(RunInline(writer.AddRecord(payload)).ok());
    EXPECT_TRUE(RunInline(writer.Sync()).ok());
  }
  EXPECT_TRUE(RunInline(writer.Close()).ok());
  EXPECT_EQ(writer.size_bytes(), file->contents.size());
  return file->contents;
}

std::vector<std::string> EncodedEdits(int count) {
  std::vector<std::string> payloads;
  for (int i = 0; i < count; ++i) payloads.push_back(Encode(MakeEdit(i)));
  return payloads;
}

struct ReadOutcome {
  Result<ManifestSummary> summary = Status::Corruption("not read");
  std::vector<VersionEdit> edits;
  std::vector<std::uint64_t> offsets;
};

ReadOutcome Read(const std::string& bytes) {
  ReadOutcome outcome;
  outcome.summary =
      RunInline(ReadManifest(std::make_unique<StringFile>(kPath, bytes),
                             [&outcome](const VersionEdit& edit, std::uint64_t offset) {
                               outcome.edits.push_back(edit);
                               outcome.offsets.push_back(offset);
                               return Status::OK();
                             }));
  return outcome;
}

void ExpectMessageContains(const Status& status, std::string_view needle) {
  EXPECT_NE(status.message().find(needle), std::string_view::npos)
      << "message: " << status.message() << "\nexpected to contain: " << needle;
}

TEST(ManifestLogTest, RecordLayoutIsLengthChecksumPayload) {
  const std::string payload = Encode(MakeEdit(0));
  const std::string bytes = WriteManifest({payload});
  ASSERT_EQ(bytes.size(), kManifestRecordHeaderBytes + payload.size());
  EXPECT_EQ(DecodeFixed32(bytes.data()), payload.size());
  EXPECT_EQ(DecodeFixed32(bytes.data() + 4),
            Checksum32(payload.data(), payload.size(), kManifestRecordChecksumSeed));
  EXPECT_EQ(bytes.substr(kManifestRecordHeaderBytes), payload);
}

// The worked example of docs/formats/manifest.md, section 11, byte for byte.
TEST(ManifestLogTest, FormatPageExample) {
  VersionEdit first;
  first.SetFormatVersion(1);
  first.SetLogNumber(1);
  first.SetNextFileNumber(3);
  first.SetLastSequence(0);
  VersionEdit flush;
  flush.SetLogNumber(3);
  flush.SetNextFileNumber(5);
  flush.SetLastSequence(2);
  FileMetaData file;
  file.number = 4;
  file.file_size_bytes = 8192;
  file.smallest = MakeInternalKey("a", 1, ValueType::kValue);
  file.largest = MakeInternalKey("b", 2, ValueType::kValue);
  file.smallest_sequence = 1;
  file.largest_sequence = 2;
  file.num_entries = 2;
  flush.AddFile(0, file);
  const std::string bytes = WriteManifest({Encode(first), Encode(flush)});
  const unsigned char kExpected[] = {
      0x08, 0x00, 0x00, 0x00, 0xbe, 0x2f, 0x25, 0xf6, 0x01, 0x01, 0x02, 0x01, 0x03, 0x03, 0x04,
      0x00, 0x22, 0x00, 0x00, 0x00, 0xa3, 0xf0, 0x04, 0x81, 0x02, 0x03, 0x03, 0x05, 0x04, 0x02,
      0x07, 0x00, 0x04, 0x80, 0x40, 0x09, 0x61, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x09, 0x62, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x02};
  ASSERT_EQ(bytes, std::string(reinterpret_cast<const char*>(kExpected), sizeof(kExpected)));

  const ReadOutcome cut = Read(bytes.substr(0, 40));
  ASSERT_TRUE(cut.summary.ok()) << cut.summary.status().ToString();
  EXPECT_EQ(cut.summary->valid_length_bytes, 16u);
  EXPECT_EQ(cut.summary->torn_tail_reason,
            "record at offset 16: length 34 runs past the end of the file (16 bytes follow)");

  std::string flipped = bytes;
  flipped[9] ^= 0x01;
  const ReadOutcome damaged = Read(flipped);
  ASSERT_TRUE(damaged.summary.status().IsCorruption());
  ExpectMessageContains(damaged.summary.status(),
                        "record at offset 0: checksum mismatch (stored 0xf6252fbe, computed 0x");
  ExpectMessageContains(damaged.summary.status(), "a valid record follows at offset 16");
}

TEST(ManifestLogTest, EditsRoundTrip) {
  std::vector<std::uint64_t> offsets;
  const std::string bytes = WriteManifest(EncodedEdits(5), &offsets);
  const ReadOutcome outcome = Read(bytes);
  ASSERT_TRUE(outcome.summary.ok()) << outcome.summary.status().ToString();
  EXPECT_EQ(outcome.summary->format_version, kStoreFormatVersion);
  EXPECT_EQ(outcome.summary->edit_count, 5u);
  EXPECT_EQ(outcome.summary->valid_length_bytes, bytes.size());
  EXPECT_EQ(outcome.summary->file_size_bytes, bytes.size());
  EXPECT_FALSE(outcome.summary->torn_tail());
  ASSERT_EQ(outcome.edits.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(outcome.edits[i] == MakeEdit(i)) << i;
  EXPECT_EQ(outcome.offsets, offsets);
}

TEST(ManifestLogTest, ManyAndLargeRecordsCrossReadChunks) {
  // Small records straddling chunk boundaries, then one record larger than a chunk.
  std::vector<std::string> payloads = EncodedEdits(2000);
  VersionEdit big;
  for (int i = 0; i < 300; ++i) big.AddFile(1, MakeFile(10000 + i, 500));
  payloads.push_back(Encode(big));
  ASSERT_GT(payloads.back().size(), kManifestReadChunkBytes);
  payloads.push_back(Encode(MakeEdit(1)));
  const std::string bytes = WriteManifest(payloads);
  ASSERT_GT(bytes.size(), 3 * kManifestReadChunkBytes);
  const ReadOutcome outcome = Read(bytes);
  ASSERT_TRUE(outcome.summary.ok()) << outcome.summary.status().ToString();
  ASSERT_EQ(outcome.edits.size(), payloads.size());
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    EXPECT_EQ(Encode(outcome.edits[i]), payloads[i]) << i;
  }
}

TEST(ManifestLogTest, EveryCutOfTheLastRecordIsATornTail) {
  std::vector<std::uint64_t> offsets;
  const std::string bytes = WriteManifest(EncodedEdits(3), &offsets);
  for (std::uint64_t length = offsets[2] + 1; length < bytes.size(); ++length) {
    const ReadOutcome outcome = Read(bytes.substr(0, length));
    ASSERT_TRUE(outcome.summary.ok()) << length << ": " << outcome.summary.status().ToString();
    EXPECT_EQ(outcome.summary->edit_count, 2u);
    EXPECT_EQ(outcome.summary->valid_length_bytes, offsets[2]);
    EXPECT_EQ(outcome.summary->file_size_bytes, length);
    ASSERT_TRUE(outcome.summary->torn_tail());
    ExpectMessageContains(Status::Corruption(outcome.summary->torn_tail_reason),
                          "record at offset " + std::to_string(offsets[2]) + ": ");
  }
  // Cut exactly at a record boundary: a clean end.
  const ReadOutcome clean = Read(bytes.substr(0, offsets[2]));
  ASSERT_TRUE(clean.summary.ok());
  EXPECT_FALSE(clean.summary->torn_tail());
  EXPECT_EQ(clean.summary->edit_count, 2u);
}

TEST(ManifestLogTest, TornTailReasons) {
  const std::string bytes = WriteManifest(EncodedEdits(2));
  struct Case {
    std::string tail;
    const char* reason;
  };
  std::string huge_length;
  PutFixed32(&huge_length, kManifestRecordSizeMax + 1);
  PutFixed32(&huge_length, 0);
  huge_length += "x";
  std::string past_end;
  PutFixed32(&past_end, 100);
  PutFixed32(&past_end, 0);
  past_end += "only a few bytes";
  std::string bad_checksum;
  PutFixed32(&bad_checksum, 3);
  PutFixed32(&bad_checksum, 12345);
  bad_checksum += "abc";
  const Case kCases[] = {
      {std::string(3, 'x'), "header truncated: 3 of 8 bytes"},
      {std::string(4096, '\0'), "length 0 is invalid"},  // a zero-filled preallocated tail
      {huge_length, "length 67108865 exceeds the maximum 67108864"},
      {past_end, "length 100 runs past the end of the file (16 bytes follow)"},
      {bad_checksum, "checksum mismatch (stored 0x00003039, computed 0x"},
  };
  for (const Case& c : kCases) {
    const ReadOutcome outcome = Read(bytes + c.tail);
    ASSERT_TRUE(outcome.summary.ok()) << c.reason << ": " << outcome.summary.status().ToString();
    EXPECT_EQ(outcome.summary->edit_count, 2u);
    EXPECT_EQ(outcome.summary->valid_length_bytes, bytes.size());
    EXPECT_EQ(outcome.summary->torn_tail_reason.rfind(
                  "record at offset " + std::to_string(bytes.size()) + ": " + c.reason, 0),
              0u)
        << outcome.summary->torn_tail_reason;
  }
}

TEST(ManifestLogTest, DamagedLastRecordIsATornTail) {
  std::vector<std::uint64_t> offsets;
  std::string bytes = WriteManifest(EncodedEdits(3), &offsets);
  bytes.back() ^= 0x01;  // nothing valid follows: indistinguishable from a torn write
  const ReadOutcome outcome = Read(bytes);
  ASSERT_TRUE(outcome.summary.ok()) << outcome.summary.status().ToString();
  EXPECT_EQ(outcome.summary->edit_count, 2u);
  EXPECT_EQ(outcome.summary->valid_length_bytes, offsets[2]);
  ExpectMessageContains(Status::Corruption(outcome.summary->torn_tail_reason), "checksum mismatch");
}

TEST(ManifestLogTest, DamagedMiddleRecordIsCorruptionWithFileAndOffset) {
  std::vector<std::uint64_t> offsets;
  const std::string good = WriteManifest(EncodedEdits(4), &offsets);
  // A flipped payload byte, a flipped checksum byte, a flipped length byte (which misplaces
  // every later boundary, so the reader must search for the next record).
  const std::uint64_t kFlips[] = {offsets[1] + kManifestRecordHeaderBytes + 2, offsets[1] + 5,
                                  offsets[1]};
  for (const std::uint64_t flip : kFlips) {
    std::string bytes = good;
    bytes[flip] ^= 0x40;
    std::vector<VersionEdit> seen;
    const ReadOutcome outcome = Read(bytes);
    ASSERT_FALSE(outcome.summary.ok()) << flip;
    const Status& status = outcome.summary.status();
    EXPECT_TRUE(status.IsCorruption()) << status.ToString();
    ExpectMessageContains(
        status, std::string(kPath) + ": record at offset " + std::to_string(offsets[1]) + ": ");
    ExpectMessageContains(status,
                          "; a valid record follows at offset " + std::to_string(offsets[2]));
    EXPECT_EQ(outcome.edits.size(), 1u);  // the edit before the damage was delivered
  }
}

TEST(ManifestLogTest, GarbageBetweenRecordsIsCorruption) {
  std::vector<std::uint64_t> offsets;
  const std::string good = WriteManifest(EncodedEdits(2), &offsets);
  const std::string bytes =
      good.substr(0, offsets[1]) + std::string(100, '\0') + good.substr(offsets[1]);
  const ReadOutcome outcome = Read(bytes);
  ASSERT_TRUE(outcome.summary.status().IsCorruption());
  ExpectMessageContains(outcome.summary.status(),
                        "record at offset " + std::to_string(offsets[1]) +
                            ": length 0 is invalid; a valid record follows at offset " +
                            std::to_string(offsets[1] + 100));
}

TEST(ManifestLogTest, FileWithoutACompleteEditIsCorruption) {
  const ReadOutcome empty = Read("");
  ASSERT_TRUE(empty.summary.status().IsCorruption());
  EXPECT_EQ(empty.summary.status().message(), std::string(kPath) + ": holds no complete edit");

  const std::string bytes = WriteManifest(EncodedEdits(1));
  const ReadOutcome torn = Read(bytes.substr(0, bytes.size() - 1));
  ASSERT_TRUE(torn.summary.status().IsCorruption());
  ExpectMessageContains(torn.summary.status(),
                        "holds no complete edit (record at offset 0: length ");
}

TEST(ManifestLogTest, FirstEditWithoutFormatVersionIsCorruption) {
  VersionEdit edit;
  edit.SetLogNumber(3);
  const ReadOutcome outcome = Read(WriteManifest({Encode(edit)}));
  ASSERT_TRUE(outcome.summary.status().IsCorruption());
  EXPECT_EQ(outcome.summary.status().message(),
            std::string(kPath) + ": edit at offset 0: the first edit has no format version");
}

TEST(ManifestLogTest, NewerFormatVersionIsNotSupported) {
  std::string payload;
  PutVarint32(&payload, static_cast<std::uint32_t>(VersionEditTag::kFormatVersion));
  PutVarint32(&payload, kStoreFormatVersion + 1);
  PutVarint32(&payload, 200);  // a field this build does not know
  const ReadOutcome outcome = Read(WriteManifest({payload}));
  ASSERT_TRUE(outcome.summary.status().IsNotSupported()) << outcome.summary.status().ToString();
  EXPECT_EQ(outcome.summary.status().message(), std::string(kPath) +
                                                    ": edit at offset 0: store format version " +
                                                    std::to_string(kStoreFormatVersion + 1) +
                                                    " is newer than this cascadefs supports (" +
                                                    std::to_string(kStoreFormatVersion) + ")");
}

// With kStoreFormatVersion == 1 a later edit cannot carry a different valid version (0 and 2
// fail to decode), so "differs from the first edit's" is unreachable until version 2 exists.
TEST(ManifestLogTest, LaterEditMayRepeatTheFormatVersion) {
  VersionEdit second = MakeEdit(1);
  second.SetFormatVersion(kStoreFormatVersion);
  const ReadOutcome outcome = Read(WriteManifest({Encode(MakeEdit(0)), Encode(second)}));
  ASSERT_TRUE(outcome.summary.ok()) << outcome.summary.status().ToString();
  EXPECT_EQ(outcome.summary->edit_count, 2u);
}

TEST(ManifestLogTest, UndecodableEditIsCorruptionWithOffset) {
  std::vector<std::uint64_t> offsets;
  std::string bad_edit;
  PutVarint32(&bad_edit, 99);
  const std::string bytes = WriteManifest({Encode(MakeEdit(0)), bad_edit}, &offsets);
  const ReadOutcome outcome = Read(bytes);
  ASSERT_TRUE(outcome.summary.status().IsCorruption());
  EXPECT_EQ(outcome.summary.status().message(), std::string(kPath) + ": edit at offset " +
                                                    std::to_string(offsets[1]) +
                                                    ": version edit: tag: unknown tag 99");
}

TEST(ManifestLogTest, CallbackErrorStopsTheReadWithContext) {
  std::vector<std::uint64_t> offsets;
  const std::string bytes = WriteManifest(EncodedEdits(3), &offsets);
  int calls = 0;
  const Result<ManifestSummary> summary = RunInline(ReadManifest(
      std::make_unique<StringFile>(kPath, bytes), [&calls](const VersionEdit&, std::uint64_t) {
        return ++calls == 2 ? Status::Corruption("file 7 removed twice") : Status::OK();
      }));
  ASSERT_TRUE(summary.status().IsCorruption());
  EXPECT_EQ(summary.status().message(), std::string(kPath) + ": edit at offset " +
                                            std::to_string(offsets[1]) + ": file 7 removed twice");
  EXPECT_EQ(calls, 2);
}

TEST(ManifestLogTest, ReaderStaysEndedOrFailed) {
  const std::string bytes = WriteManifest(EncodedEdits(1));
  ManifestReader reader(std::make_unique<StringFile>(kPath, bytes + "xyz"));
  std::string record;
  ASSERT_TRUE(*RunInline(reader.ReadRecord(&record)));
  EXPECT_EQ(reader.last_record_offset(), 0u);
  for (int i = 0; i < 2; ++i) {
    const Result<bool> more = RunInline(reader.ReadRecord(&record));
    ASSERT_TRUE(more.ok());
    EXPECT_FALSE(*more);
  }
  EXPECT_TRUE(reader.torn_tail());
  EXPECT_EQ(reader.valid_length_bytes(), bytes.size());
  EXPECT_EQ(reader.file_size_bytes(), bytes.size() + 3);

  std::string damaged = WriteManifest(EncodedEdits(2));
  damaged[kManifestRecordHeaderBytes] ^= 1;
  ManifestReader failed(std::make_unique<StringFile>(kPath, damaged));
  const Result<bool> first = RunInline(failed.ReadRecord(&record));
  ASSERT_TRUE(first.status().IsCorruption());
  const Result<bool> again = RunInline(failed.ReadRecord(&record));
  EXPECT_EQ(again.status().ToString(), first.status().ToString());
}

// A file whose reads fail: the Env's error comes back unchanged.
class FailingFile final : public RandomAccessFile {
 public:
  io::Task<Result<std::size_t>> Read(std::uint64_t, std::size_t, char*) const override {
    co_return Status::IOError("store/MANIFEST-000001: injected read error");
  }
  std::uint64_t size_bytes() const override { return 100; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_ = kPath;
};

TEST(ManifestLogTest, ReadErrorIsReturned) {
  const Result<ManifestSummary> summary =
      RunInline(ReadManifest(std::make_unique<FailingFile>(),
                             [](const VersionEdit&, std::uint64_t) { return Status::OK(); }));
  ASSERT_TRUE(summary.status().IsIOError());
  ExpectMessageContains(summary.status(), "injected read error");
}

TEST(ManifestLogTest, OpenThroughAnEnv) {
  testing::InlineEnv env;
  const std::string bytes = WriteManifest(EncodedEdits(2));
  env.files[kPath] = std::make_shared<std::string>(bytes);
  int calls = 0;
  const Result<ManifestSummary> summary =
      RunInline(ReadManifest(&env, kPath, [&calls](const VersionEdit&, std::uint64_t) {
        ++calls;
        return Status::OK();
      }));
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->edit_count, 2u);
  EXPECT_EQ(calls, 2);

  Result<std::unique_ptr<ManifestReader>> reader = RunInline(ManifestReader::Open(&env, kPath));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->file_size_bytes(), bytes.size());
  EXPECT_EQ((*reader)->path(), kPath);

  const Result<ManifestSummary> missing =
      RunInline(ReadManifest(&env, "store/MANIFEST-000009",
                             [](const VersionEdit&, std::uint64_t) { return Status::OK(); }));
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_TRUE(RunInline(ManifestReader::Open(&env, "store/MANIFEST-000009")).status().IsNotFound());
}

TEST(ManifestLogTest, WriterRefusesAnOversizedEdit) {
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  const std::string huge(kManifestRecordSizeMax + 1, 'x');
  const Status status = RunInline(writer.AddRecord(huge));
  ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
  ExpectMessageContains(status, "exceeds the manifest record maximum of 67108864");
  EXPECT_TRUE(file->contents.empty());
  EXPECT_EQ(writer.size_bytes(), 0u);
  EXPECT_FALSE(writer.has_unsynced_record());
  // Not a failed state: the writer goes on.
  EXPECT_TRUE(RunInline(writer.AddRecord(Encode(MakeEdit(0)))).ok());
}

TEST(ManifestLogTest, WriterFailsForGoodAfterAWriteError) {
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  file->fail_writes = true;
  const Status first = RunInline(writer.AddRecord(Encode(MakeEdit(0))));
  ASSERT_TRUE(first.IsIOError());
  EXPECT_EQ(writer.size_bytes(), 0u);
  file->fail_writes = false;
  EXPECT_EQ(RunInline(writer.AddRecord(Encode(MakeEdit(0)))).ToString(), first.ToString());
  EXPECT_EQ(RunInline(writer.Sync()).ToString(), first.ToString());
  EXPECT_TRUE(file->contents.empty());
  EXPECT_TRUE(RunInline(writer.Close()).ok());
  EXPECT_TRUE(file->closed);
}

TEST(ManifestLogTest, WriterFailsForGoodAfterASyncError) {
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  ASSERT_TRUE(RunInline(writer.AddRecord(Encode(MakeEdit(0)))).ok());
  EXPECT_TRUE(writer.has_unsynced_record());
  file->fail_syncs = true;
  const Status first = RunInline(writer.Sync());
  ASSERT_TRUE(first.IsIOError());
  EXPECT_TRUE(writer.has_unsynced_record());
  file->fail_syncs = false;
  EXPECT_EQ(RunInline(writer.Sync()).ToString(), first.ToString());
  EXPECT_EQ(RunInline(writer.AddRecord(Encode(MakeEdit(1)))).ToString(), first.ToString());
  EXPECT_EQ(file->sync_count, 0);
}

TEST(ManifestLogTest, WriterTracksSyncs) {
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  EXPECT_FALSE(writer.has_unsynced_record());
  ASSERT_TRUE(RunInline(writer.AddRecord(Encode(MakeEdit(0)))).ok());
  EXPECT_TRUE(writer.has_unsynced_record());
  ASSERT_TRUE(RunInline(writer.Sync()).ok());
  EXPECT_FALSE(writer.has_unsynced_record());
  EXPECT_EQ(file->sync_count, 1);
  EXPECT_EQ(writer.path(), kPath);
}

TEST(ManifestLogDeathTest, AddingBeforeTheLastRecordIsSyncedAborts) {
  ManifestWriter writer(std::make_unique<StringWritableFile>(kPath));
  ASSERT_TRUE(RunInline(writer.AddRecord(Encode(MakeEdit(0)))).ok());
  EXPECT_DEATH(static_cast<void>(RunInline(writer.AddRecord(Encode(MakeEdit(1))))),
               "unsynced_record_");
}

TEST(ManifestLogTest, WriterContinuesAtAStartOffset) {
  std::vector<std::uint64_t> offsets;
  const std::string bytes = WriteManifest(EncodedEdits(3), &offsets);
  // Reopen after a torn tail: truncate to the valid length, append from there.
  auto owned = std::make_unique<StringWritableFile>(kPath);
  StringWritableFile* file = owned.get();
  file->contents = bytes.substr(0, offsets[2]);
  ManifestWriter writer(std::move(owned), offsets[2]);
  ASSERT_TRUE(RunInline(writer.AddRecord(Encode(MakeEdit(5)))).ok());
  ASSERT_TRUE(RunInline(writer.Sync()).ok());
  const ReadOutcome outcome = Read(file->contents);
  ASSERT_TRUE(outcome.summary.ok()) << outcome.summary.status().ToString();
  ASSERT_EQ(outcome.edits.size(), 3u);
  EXPECT_TRUE(outcome.edits[2] == MakeEdit(5));
  EXPECT_EQ(outcome.offsets[2], offsets[2]);
}

}  // namespace
}  // namespace cascadefs::engine
