// db_corruption_test.cc: a damaged byte in an SST or a synced WAL record is reported as
// Corruption naming the file, never returned as wrong data.
//
// Method: build a store on disk, close it, flip one byte of one file at many offsets (one
// store copy per offset), reopen and read every key. Each read must return the right value
// or a Corruption naming the damaged file; at least some flips must be detected, so the test
// cannot pass by never looking.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "testutil/temp_dir.h"

namespace cascadefs::engine {
namespace {

namespace fs = std::filesystem;

constexpr int kKeys = 300;

std::string KeyOf(int i) { return "key" + std::to_string(100000 + i); }
std::string ValueOf(int i) { return std::string(20 + i % 50, static_cast<char>('a' + i % 26)); }

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

// The lowest-numbered file with `extension` (the WAL prepares its next segment ahead).
fs::path FirstFileWithExtension(const fs::path& dir, const std::string& extension) {
  fs::path found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == extension &&
        (found.empty() || entry.path().filename() < found.filename())) {
      found = entry.path();
    }
  }
  EXPECT_FALSE(found.empty()) << "no " << extension << " file";
  return found;
}

class DbCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io::SchedulerOptions scheduler_options;
    scheduler_options.io_threads = 1;
    auto scheduler = io::Scheduler::Create(scheduler_options);
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewSchedulerEnv(scheduler_.get());
    options_.scheduler = scheduler_.get();
    options_.env = env_.get();
    options_.block_size_bytes = 512;
    options_.index_partition_size_bytes = 256;
    options_.wal_segment_size_bytes = 64 << 10;
  }

  // A store with every key either in one SST (flushed) or only in the WAL (synced writes).
  void Build(const fs::path& dir, bool flush) {
    auto db = DB::Open(options_, dir.string());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_TRUE(db.value()->Put(WriteOptions{.sync = !flush}, KeyOf(i), ValueOf(i)).ok());
    }
    if (flush) {
      ASSERT_TRUE(db.value()->Flush().ok());
    }
    ASSERT_TRUE(db.value()->Close().ok());
  }

  testutil::TempDir temp_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  Options options_;
};

TEST_F(DbCorruptionTest, FlippedSstByteIsCorruptionNeverWrongData) {
  const fs::path pristine = fs::path(temp_.path()) / "pristine";
  ASSERT_NO_FATAL_FAILURE(Build(pristine, /*flush=*/true));
  const fs::path sst = FirstFileWithExtension(pristine, ".sst");
  const std::uint64_t size = fs::file_size(sst);
  int detected = 0;
  int offsets = 0;
  for (std::uint64_t offset = 3; offset < size; offset += size / 40 + 1, ++offsets) {
    SCOPED_TRACE("flipped offset " + std::to_string(offset));
    const fs::path copy = fs::path(temp_.path()) / ("copy" + std::to_string(offset));
    fs::copy(pristine, copy);
    ASSERT_NO_FATAL_FAILURE(FlipByte(copy / sst.filename(), offset));
    auto db = DB::Open(options_, copy.string());
    if (!db.ok()) {
      EXPECT_TRUE(db.status().IsCorruption()) << db.status().ToString();
      ++detected;
      fs::remove_all(copy);
      continue;
    }
    bool saw_corruption = false;
    for (int i = 0; i < kKeys; ++i) {
      std::string value;
      Status status = db.value()->Get({}, KeyOf(i), &value);
      if (status.ok()) {
        ASSERT_EQ(value, ValueOf(i)) << KeyOf(i) << " read wrong data";
      } else {
        ASSERT_TRUE(status.IsCorruption()) << KeyOf(i) << ": " << status.ToString();
        EXPECT_NE(status.ToString().find(".sst"), std::string::npos) << status.ToString();
        saw_corruption = true;
      }
    }
    if (saw_corruption) ++detected;
    EXPECT_TRUE(db.value()->Close().ok());
    fs::remove_all(copy);
  }
  EXPECT_GT(detected, offsets * 3 / 4) << "few flips were detected: " << detected << "/" << offsets;
}

TEST_F(DbCorruptionTest, FlippedSyncedWalRecordIsCorruptionNamingFileAndOffset) {
  const fs::path pristine = fs::path(temp_.path()) / "pristine";
  ASSERT_NO_FATAL_FAILURE(Build(pristine, /*flush=*/false));
  const fs::path wal = FirstFileWithExtension(pristine, ".wal");
  // A byte inside an early record: every record was synced, and sync marks follow it.
  ASSERT_NO_FATAL_FAILURE(FlipByte(wal, 200));
  auto db = DB::Open(options_, pristine.string());
  ASSERT_FALSE(db.ok()) << "a damaged synced WAL record was not reported";
  EXPECT_TRUE(db.status().IsCorruption()) << db.status().ToString();
  EXPECT_NE(db.status().ToString().find(wal.filename().string()), std::string::npos)
      << db.status().ToString();
  EXPECT_NE(db.status().ToString().find("offset"), std::string::npos) << db.status().ToString();
}

}  // namespace
}  // namespace cascadefs::engine
