// fuzz_corpus_test.cc: builds the seed corpora of the manifest fuzz targets and checks that
// each seed reaches the outcome it was made for.
//
// Method: each seed is built in memory with the real encoders (valid edits and manifests) and
// then damaged on purpose (truncated, flipped, padded, newer version). The test always checks
// every seed's outcome (OK, torn tail, Corruption, NotSupported), so the corpus keeps covering
// the paths it names. With CFS_FUZZ_CORPUS_DIR set to tests/fuzz/corpus it also (re)writes the
// files tests/fuzz/corpus/manifest_edit/* and tests/fuzz/corpus/manifest_log/*:
//   CFS_FUZZ_CORPUS_DIR=$PWD/tests/fuzz/corpus build/dev/tests/engine_test
//       --gtest_filter='ManifestFuzzCorpus*'   (one command line)
// The seeds are deterministic, so rewriting them changes no file unless a format changed.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "db/dbformat.h"
#include "engine/manifest/string_file.h"
#include "manifest/manifest_log.h"
#include "manifest/version_edit.h"
#include "util/coding.h"

namespace cascadefs::engine {
namespace {

using testing::RunInline;
using testing::StringFile;
using testing::StringWritableFile;

enum class Outcome { kOk, kTornTail, kCorruption, kNotSupported };

struct Seed {
  std::string name;
  std::string bytes;
  Outcome outcome;
};

FileMetaData MakeFile(std::uint64_t number) {
  FileMetaData file;
  file.number = number;
  file.file_size_bytes = 8192;
  file.smallest = MakeInternalKey("apple", 9, ValueType::kValue);
  file.largest = MakeInternalKey("pear", 3, ValueType::kDeletion);
  file.smallest_sequence = 3;
  file.largest_sequence = 9;
  file.num_entries = 40;
  return file;
}

std::string Encode(const VersionEdit& edit) {
  std::string encoded;
  edit.EncodeTo(&encoded);
  return encoded;
}

std::string SnapshotEdit() {
  VersionEdit edit;
  edit.SetFormatVersion(kStoreFormatVersion);
  edit.SetLogNumber(4);
  edit.SetNextFileNumber(12);
  edit.SetLastSequence(77);
  edit.SetCompactPointer(1, MakeInternalKey("kiwi", 5, ValueType::kValue));
  edit.AddFile(0, MakeFile(5));
  edit.AddFile(1, MakeFile(6));
  return Encode(edit);
}

std::string FlushEdit() {
  VersionEdit edit;
  edit.SetLogNumber(11);
  edit.SetNextFileNumber(14);
  edit.SetLastSequence(120);
  edit.AddFile(0, MakeFile(13));
  return Encode(edit);
}

std::string CompactionEdit() {
  VersionEdit edit;
  edit.RemoveFile(0, 5);
  edit.RemoveFile(0, 13);
  edit.RemoveFile(1, 6);
  edit.AddFile(1, MakeFile(14));
  edit.SetNextFileNumber(15);
  return Encode(edit);
}

std::string Manifest(const std::vector<std::string>& payloads) {
  auto owned = std::make_unique<StringWritableFile>("seed");
  StringWritableFile* file = owned.get();
  ManifestWriter writer(std::move(owned));
  for (const std::string& payload : payloads) {
    EXPECT_TRUE(RunInline(writer.AddRecord(payload)).ok());
    EXPECT_TRUE(RunInline(writer.Sync()).ok());
  }
  return file->contents;
}

std::vector<Seed> EditSeeds() {
  std::vector<Seed> seeds;
  seeds.push_back({"empty", "", Outcome::kOk});
  seeds.push_back({"snapshot", SnapshotEdit(), Outcome::kOk});
  seeds.push_back({"flush", FlushEdit(), Outcome::kOk});
  seeds.push_back({"compaction", CompactionEdit(), Outcome::kOk});
  const std::string snapshot = SnapshotEdit();
  seeds.push_back({"truncated", snapshot.substr(0, snapshot.size() - 3), Outcome::kCorruption});
  std::string unknown_tag = FlushEdit();
  PutVarint32(&unknown_tag, 42);
  seeds.push_back({"unknown_tag", unknown_tag, Outcome::kCorruption});
  std::string newer;
  PutVarint32(&newer, static_cast<std::uint32_t>(VersionEditTag::kFormatVersion));
  PutVarint32(&newer, kStoreFormatVersion + 1);
  PutVarint32(&newer, 42);
  seeds.push_back({"newer_version", newer, Outcome::kNotSupported});
  std::string bad_level;
  PutVarint32(&bad_level, static_cast<std::uint32_t>(VersionEditTag::kRemovedFile));
  PutVarint32(&bad_level, kNumLevels);
  PutVarint64(&bad_level, 3);
  seeds.push_back({"bad_level", bad_level, Outcome::kCorruption});
  std::string twice = FlushEdit() + FlushEdit();
  seeds.push_back({"duplicate_fields", twice, Outcome::kCorruption});
  return seeds;
}

std::vector<Seed> LogSeeds() {
  std::vector<Seed> seeds;
  const std::string good = Manifest({SnapshotEdit(), FlushEdit(), CompactionEdit()});
  seeds.push_back({"three_edits", good, Outcome::kOk});
  seeds.push_back({"torn_tail", good.substr(0, good.size() - 5), Outcome::kTornTail});
  seeds.push_back({"zero_tail", good + std::string(64, '\0'), Outcome::kTornTail});
  const std::string first = Manifest({SnapshotEdit()});
  std::string damaged_middle = good;
  damaged_middle[first.size() + kManifestRecordHeaderBytes + 1] ^= 0x10;
  seeds.push_back({"damaged_middle", damaged_middle, Outcome::kCorruption});
  seeds.push_back({"empty", "", Outcome::kCorruption});
  seeds.push_back({"no_format_version", Manifest({FlushEdit()}), Outcome::kCorruption});
  std::string newer;
  PutVarint32(&newer, static_cast<std::uint32_t>(VersionEditTag::kFormatVersion));
  PutVarint32(&newer, kStoreFormatVersion + 1);
  seeds.push_back({"newer_version", Manifest({newer}), Outcome::kNotSupported});
  std::string bad_edit;
  PutVarint32(&bad_edit, 42);
  seeds.push_back({"bad_edit", Manifest({SnapshotEdit(), bad_edit}), Outcome::kCorruption});
  return seeds;
}

Outcome DecodeOutcome(const std::string& bytes) {
  VersionEdit edit;
  const Status status = edit.DecodeFrom(bytes);
  if (status.ok()) return Outcome::kOk;
  return status.IsNotSupported() ? Outcome::kNotSupported : Outcome::kCorruption;
}

Outcome ReadOutcome(const std::string& bytes) {
  const Result<ManifestSummary> summary =
      RunInline(ReadManifest(std::make_unique<StringFile>("seed", bytes),
                             [](const VersionEdit&, std::uint64_t) { return Status::OK(); }));
  if (summary.ok()) return summary->torn_tail() ? Outcome::kTornTail : Outcome::kOk;
  return summary.status().IsNotSupported() ? Outcome::kNotSupported : Outcome::kCorruption;
}

void MaybeWrite(const std::string& target, const std::vector<Seed>& seeds) {
  const char* dir = std::getenv("CFS_FUZZ_CORPUS_DIR");
  if (dir == nullptr) return;
  const std::filesystem::path target_dir = std::filesystem::path(dir) / target;
  std::filesystem::create_directories(target_dir);
  for (const Seed& seed : seeds) {
    std::ofstream out(target_dir / seed.name, std::ios::binary | std::ios::trunc);
    out.write(seed.bytes.data(), static_cast<std::streamsize>(seed.bytes.size()));
    ASSERT_TRUE(out.good()) << target_dir / seed.name;
  }
}

TEST(ManifestFuzzCorpusTest, EditSeedsReachTheirOutcome) {
  const std::vector<Seed> seeds = EditSeeds();
  for (const Seed& seed : seeds) {
    EXPECT_EQ(DecodeOutcome(seed.bytes), seed.outcome) << seed.name;
  }
  MaybeWrite("manifest_edit", seeds);
}

TEST(ManifestFuzzCorpusTest, LogSeedsReachTheirOutcome) {
  const std::vector<Seed> seeds = LogSeeds();
  for (const Seed& seed : seeds) {
    EXPECT_EQ(ReadOutcome(seed.bytes), seed.outcome) << seed.name;
  }
  MaybeWrite("manifest_log", seeds);
}

}  // namespace
}  // namespace cascadefs::engine
