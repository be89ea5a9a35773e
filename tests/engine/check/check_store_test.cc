// check_store_test.cc: CheckStoreFiles finds each kind of damage to a store's files, names
// the file (and the offset where it can), and finds nothing wrong in a healthy store.
//
// Method: build one store on disk with every kind of file holding data (SSTs at two levels,
// value-log files, a WAL with synced records, the manifest), then for each case damage a copy
// and check it.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "db/db_impl.h"
#include "engine/check.h"
#include "engine/db.h"
#include "engine/inspect.h"
#include "engine/io/scheduler.h"

namespace cascadefs::engine {
namespace {

namespace fs = std::filesystem;

std::string KeyOf(int i) { return "key" + std::to_string(100000 + i); }
// Every fourth value is large enough for the value log.
std::string ValueOf(int i) {
  return std::string(i % 4 == 0 ? 300 + i % 50 : 20 + i % 50, static_cast<char>('a' + i % 26));
}

void FlipByte(const fs::path& path, std::uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open()) << path;
  file.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5a);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&byte, 1);
}

// The store's files with `extension`, by name.
std::vector<fs::path> FilesWith(const fs::path& dir, const std::string& extension) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == extension) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class CheckStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewSchedulerEnv(scheduler_.get());
    const char* tmp = std::getenv("TMPDIR");
    root_ = fs::path(tmp != nullptr ? tmp : "/tmp") /
            ("check_store_test." + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    ASSERT_NO_FATAL_FAILURE(Build(root_ / "healthy"));
  }
  void TearDown() override { fs::remove_all(root_); }

  void Build(const fs::path& dir) {
    Options options;
    options.scheduler = scheduler_.get();
    options.env = env_.get();
    options.block_size_bytes = 512;
    options.index_partition_size_bytes = 256;
    options.write_buffer_size_bytes = 32 << 10;
    options.wal_segment_size_bytes = 64 << 10;
    options.min_blob_size_bytes = 256;
    options.vlog_file_size_bytes = 64 << 10;
    auto db = DB::Open(options, dir.string());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < 1500; ++i) {
      ASSERT_TRUE(db.value()->Put({}, KeyOf(i), ValueOf(i)).ok());
    }
    ASSERT_TRUE(db.value()->Flush().ok());
    // Level 0 into level 1, so levels >= 1 and their range check have files.
    ASSERT_TRUE(static_cast<DBImpl*>(db.value().get())->CompactLevelForTest(0).ok());
    // Synced writes that stay in the WAL.
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(db.value()->Put(WriteOptions{.sync = true}, KeyOf(5000 + i), ValueOf(i)).ok());
    }
    ASSERT_TRUE(db.value()->Close().ok());
  }

  // A copy of the healthy store to damage.
  fs::path Copy(const std::string& name) {
    const fs::path dir = root_ / name;
    fs::copy(root_ / "healthy", dir, fs::copy_options::recursive);
    fs::remove(dir / "LOCK");
    return dir;
  }

  CheckReport Check(const fs::path& dir) {
    auto report = scheduler_->BlockOn(CheckStoreFiles(env_.get(), dir.string(), {}));
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? std::move(report).value() : CheckReport{};
  }

  // Asserts an error naming `file` (and, when given, at `offset`).
  static void ExpectErrorNaming(const CheckReport& report, const std::string& file,
                                std::optional<std::uint64_t> offset = std::nullopt) {
    std::string all;
    for (const CheckFinding& f : report.findings) {
      all += f.file + ": " + f.problem + "\n";
      if (f.severity == CheckSeverity::kError && f.file == file &&
          (!offset || f.offset == offset)) {
        return;
      }
    }
    ADD_FAILURE() << "no error names " << file << (offset ? " at its offset" : "")
                  << "; findings:\n"
                  << all;
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  fs::path root_;
};

TEST_F(CheckStoreTest, AHealthyStoreHasNoErrors) {
  const CheckReport report = Check(root_ / "healthy");
  for (const CheckFinding& f : report.findings) {
    EXPECT_NE(f.severity, CheckSeverity::kError) << f.file << ": " << f.problem;
  }
  EXPECT_EQ(report.errors(), 0u);
  EXPECT_GT(report.sst_files, 1u);
  EXPECT_GT(report.sst_entries, 1000u);
  EXPECT_GT(report.vlog_files, 0u);
  EXPECT_GT(report.vlog_records, 100u);
  EXPECT_GE(report.wal_records, 200u);
}

TEST_F(CheckStoreTest, AChangedByteInAnSstDataBlockIsFoundAtTheBlocksOffset) {
  const fs::path dir = Copy("sst");
  const fs::path sst = FilesWith(dir, ".sst").front();
  // The first data block starts at 0; one byte into it is inside its entries.
  FlipByte(sst, 10);
  const CheckReport report = Check(dir);
  ExpectErrorNaming(report, sst.filename().string(), 0);
}

TEST_F(CheckStoreTest, TruncatedAndMissingSstsAreFound) {
  const fs::path dir = Copy("sst-cut");
  const std::vector<fs::path> ssts = FilesWith(dir, ".sst");
  ASSERT_GE(ssts.size(), 2u);
  fs::resize_file(ssts[0], fs::file_size(ssts[0]) / 2);
  fs::remove(ssts[1]);
  const CheckReport report = Check(dir);
  ExpectErrorNaming(report, ssts[0].filename().string());
  ExpectErrorNaming(report, ssts[1].filename().string());
}

TEST_F(CheckStoreTest, AChangedByteInAValueLogRecordIsFound) {
  const fs::path dir = Copy("vlog");
  const fs::path vlog = FilesWith(dir, ".vlog").front();
  // Past the 32-byte header: inside the first record.
  FlipByte(vlog, 32 + 40);
  const CheckReport report = Check(dir);
  ExpectErrorNaming(report, vlog.filename().string());
}

TEST_F(CheckStoreTest, AMissingValueLogIsFound) {
  const fs::path dir = Copy("vlog-gone");
  const fs::path vlog = FilesWith(dir, ".vlog").front();
  fs::remove(vlog);
  ExpectErrorNaming(Check(dir), vlog.filename().string());
}

TEST_F(CheckStoreTest, AChangedByteInTheManifestIsFound) {
  const fs::path dir = Copy("manifest");
  fs::path manifest;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().starts_with("MANIFEST-")) manifest = entry.path();
  }
  ASSERT_FALSE(manifest.empty());
  FlipByte(manifest, 20);
  ExpectErrorNaming(Check(dir), manifest.filename().string());
}

TEST_F(CheckStoreTest, AChangedByteInSyncedWalRecordsIsFound) {
  const fs::path dir = Copy("wal");
  // Early in every segment: in the one the next open replays, later sync marks show the
  // bytes had been synced (older segments wait to be recycled and are not read).
  const std::vector<fs::path> segments = FilesWith(dir, ".wal");
  ASSERT_FALSE(segments.empty());
  for (const fs::path& segment : segments) FlipByte(segment, 100);
  const CheckReport report = Check(dir);
  bool named = false;
  for (const CheckFinding& f : report.findings) {
    named |= f.severity == CheckSeverity::kError && f.file.ends_with(".wal") && f.offset;
  }
  EXPECT_TRUE(named) << "no error names a WAL segment and offset";
}

TEST_F(CheckStoreTest, AMissingCurrentIsAnError) {
  const fs::path dir = Copy("current");
  fs::remove(dir / "CURRENT");
  ExpectErrorNaming(Check(dir), "CURRENT");
}

TEST_F(CheckStoreTest, AFileTheManifestDoesNotListIsOnlyANote) {
  const fs::path dir = Copy("stray");
  const fs::path sst = FilesWith(dir, ".sst").front();
  fs::copy_file(sst, dir / "999999.sst");
  const CheckReport report = Check(dir);
  EXPECT_EQ(report.errors(), 0u);
  bool noted = false;
  for (const CheckFinding& f : report.findings) {
    noted |= f.file == "999999.sst" && f.severity == CheckSeverity::kNote;
  }
  EXPECT_TRUE(noted);
}

TEST_F(CheckStoreTest, TheSummaryAgreesWithWhatTheCheckRead) {
  const CheckReport report = Check(root_ / "healthy");
  auto summary = scheduler_->BlockOn(SummarizeStore(env_.get(), (root_ / "healthy").string()));
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  const StoreSummary& s = summary.value();
  EXPECT_EQ(s.format_version, 2u);
  ASSERT_EQ(s.levels.size(), static_cast<std::size_t>(kNumLevels));
  std::uint64_t files = 0;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  for (const LevelSummary& level : s.levels) {
    files += level.files;
    entries += level.entries;
    bytes += level.bytes;
  }
  EXPECT_EQ(files, report.sst_files);
  EXPECT_EQ(entries, report.sst_entries);
  EXPECT_EQ(bytes, s.sst_bytes);  // no unlisted SSTs in a cleanly closed store
  EXPECT_GT(s.levels[1].files, 0u);
  EXPECT_EQ(s.vlogs.size(), report.vlog_files);
  std::uint64_t records = 0;
  for (const VlogFileSummary& v : s.vlogs) records += v.records;
  // The manifest records a value log's records at each flush; the file being written has
  // more since (their WAL records replay at open).
  EXPECT_LE(records, report.vlog_records);
  EXPECT_GT(records, 0u);
  EXPECT_GT(s.wal_bytes, 0u);
  EXPECT_GT(s.total_bytes(), s.sst_bytes + s.vlog_bytes);
}

}  // namespace
}  // namespace cascadefs::engine
