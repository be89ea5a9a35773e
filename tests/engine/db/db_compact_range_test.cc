// db_compact_range_test.cc: DB::CompactRange, the manual compaction (docs/engine.md, "Manual
// compaction").
//
// Goal: after CompactRange every key of the range lives in the bottom level with no deletion
// marker and no hidden version left (unless a snapshot sees it), every live key reads back
// (Get and iterators, against a std::map model), the disk space of deleted data is given back
// (SSTs, and value-log files through GC), a bounded range leaves files outside it alone,
// writers and readers may run meanwhile, snapshots keep their versions, and the errors (a
// closed store, bad bounds, a full disk) come back as documented.
// Method: a MemEnv store (a FaultEnv over it for ENOSPC) with small memtables, blocks and
// target file sizes; automatic compaction is off unless a test turns it on, and the tree is
// shaped with CompactLevelForTest, so each test knows which levels hold what. Level contents
// are checked through GetLevelStats (entries per level) and the manifest (ReadStoreState).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "check/store_state.h"
#include "db/db_impl.h"
#include "db/dbformat.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "env/mem_env.h"
#include "manifest/filename.h"
#include "testutil/fault_env.h"

namespace cascadefs::engine {
namespace {

using Model = std::map<std::string, std::string>;

std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "key%05d", i);
  return buf;
}

// A value of `size` bytes that differs per key and round.
std::string Value(int i, int round, std::size_t size = 100) {
  std::string value = Key(i) + "@" + std::to_string(round) + ":";
  while (value.size() < size) value.push_back(static_cast<char>('a' + (i + round) % 26));
  value.resize(size);
  return value;
}

class DbCompactRangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewMemEnv(scheduler_.get());
    options_.scheduler = scheduler_.get();
    options_.env = env_.get();
    options_.write_buffer_size_bytes = 16 << 10;
    options_.wal_segment_size_bytes = 64 << 10;
    options_.block_size_bytes = 512;
    options_.index_partition_size_bytes = 512;
    options_.target_file_size_bytes = 8 << 10;
    options_.min_blob_size_bytes = 0;  // values stay in the LSM unless a test separates them
    // Manual: nothing compacts unless a test asks.
    options_.level0_compaction_trigger = 1000;
    options_.level0_slowdown_writes_trigger = 1000;
    options_.level0_stop_writes_trigger = 1000;
    options_.max_bytes_for_level_base = std::uint64_t{1} << 40;
  }

  void TearDown() override {
    if (db_) {
      EXPECT_TRUE(db_->Close().ok());
    }
  }

  void Open() {
    auto db = DB::Open(options_, dir_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
  }

  void Reopen() {
    ASSERT_TRUE(db_->Close().ok());
    db_.reset();
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  DBImpl& impl() { return *static_cast<DBImpl*>(db_.get()); }

  void Put(Model* model, int i, int round, std::size_t size = 100) {
    (*model)[Key(i)] = Value(i, round, size);
    ASSERT_TRUE(db_->Put({}, Key(i), (*model)[Key(i)]).ok());
  }
  void Delete(Model* model, int i) {
    model->erase(Key(i));
    ASSERT_TRUE(db_->Delete({}, Key(i)).ok());
  }

  // Moves every file of `level` into level + 1 (one picked compaction at a time).
  void MoveLevelDown(int level) {
    for (int i = 0; i < 10000 && db_->GetLevelStats()[static_cast<std::size_t>(level)].files > 0;
         ++i) {
      ASSERT_TRUE(impl().CompactLevelForTest(level).ok());
    }
    ASSERT_EQ(db_->GetLevelStats()[static_cast<std::size_t>(level)].files, 0u);
  }

  Model Scan(const Snapshot* snapshot = nullptr, bool backward = false) {
    Model out;
    std::unique_ptr<Iterator> it = db_->NewIterator(ReadOptions{.snapshot = snapshot});
    if (backward) {
      for (it->SeekToLast(); it->Valid(); it->Prev()) out[std::string(it->key())] = it->value();
    } else {
      for (it->SeekToFirst(); it->Valid(); it->Next()) out[std::string(it->key())] = it->value();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return out;
  }

  // Every key of `model` reads back, every other key of [0, keys) is NotFound (every
  // `get_stride`th key is looked up), and iterators in both directions see exactly the model.
  void ExpectModel(const Model& model, int keys, const Snapshot* snapshot = nullptr,
                   int get_stride = 1) {
    for (int i = 0; i < keys; i += get_stride) {
      std::string got;
      Status status = db_->Get(ReadOptions{.snapshot = snapshot}, Key(i), &got);
      auto it = model.find(Key(i));
      if (it == model.end()) {
        ASSERT_TRUE(status.IsNotFound()) << Key(i) << ": " << status.ToString();
      } else {
        ASSERT_TRUE(status.ok()) << Key(i) << ": " << status.ToString();
        ASSERT_EQ(got, it->second) << Key(i);
      }
    }
    EXPECT_EQ(Scan(snapshot, false), model);
    EXPECT_EQ(Scan(snapshot, true), model);
  }

  // Bytes of the files in the store's directory whose names end with `suffix` (all: "").
  std::uint64_t DirBytes(std::string_view suffix = "") {
    auto names = env_->ListDir(dir_);
    EXPECT_TRUE(names.ok());
    std::uint64_t bytes = 0;
    for (const std::string& name : names.value()) {
      if (!name.ends_with(suffix)) continue;
      auto size = scheduler_->BlockOn(env_->FileSize(dir_ + "/" + name));
      EXPECT_TRUE(size.ok()) << name;
      if (size.ok()) bytes += size.value();
    }
    return bytes;
  }

  std::set<std::uint64_t> SstFilesInDir() {
    std::set<std::uint64_t> out;
    auto names = env_->ListDir(dir_);
    EXPECT_TRUE(names.ok());
    for (const std::string& name : names.value()) {
      std::uint64_t number = 0;
      FileType type{};
      if (ParseFileName(name, &number, &type) && type == FileType::kSst) out.insert(number);
    }
    return out;
  }

  // (level, number, smallest user key, largest user key) of every live SST, from the manifest.
  struct LiveFile {
    int level = 0;
    std::uint64_t number = 0;
    std::string smallest;
    std::string largest;
    std::uint64_t entries = 0;
    bool operator<(const LiveFile& other) const { return number < other.number; }
  };
  std::vector<LiveFile> LiveFiles() {
    auto state = scheduler_->BlockOn(ReadStoreState(env_.get(), dir_));
    EXPECT_TRUE(state.ok()) << state.status().ToString();
    std::vector<LiveFile> out;
    if (!state.ok()) return out;
    for (int level = 0; level < kNumLevels; ++level) {
      for (const auto& file : state.value().version.files[static_cast<std::size_t>(level)]) {
        out.push_back({level, file->number, std::string(ExtractUserKey(file->smallest)),
                       std::string(ExtractUserKey(file->largest)), file->num_entries});
      }
    }
    return out;
  }

  std::uint64_t TotalEntries() {
    std::uint64_t entries = 0;
    for (const LevelStats& level : db_->GetLevelStats()) entries += level.entries;
    return entries;
  }

  // The deepest level holding files; every other level must be empty.
  int OnlyLevel() {
    const std::vector<LevelStats> levels = db_->GetLevelStats();
    int deepest = -1;
    for (int level = 0; level < kNumLevels; ++level) {
      if (levels[static_cast<std::size_t>(level)].files > 0) deepest = level;
    }
    for (int level = 0; level < deepest; ++level) {
      EXPECT_EQ(levels[static_cast<std::size_t>(level)].files, 0u) << "level " << level;
    }
    return deepest;
  }

  // A tree of `keys` keys over levels 0..3 with many dead versions: every key written at
  // level 3, half overwritten at level 2, a third at level 1, a fifth in level 0, and the
  // last overwrites and deletes by `deletes` (a key is deleted when deletes(i)) in the
  // memtable and a level-0 file.
  template <typename Deletes>
  void BuildTree(Model* model, int keys, Deletes deletes) {
    auto scrambled = [keys](int j) { return static_cast<int>(std::int64_t{j} * 7919 % keys); };
    for (int j = 0; j < keys; ++j) ASSERT_NO_FATAL_FAILURE(Put(model, scrambled(j), 0));
    ASSERT_TRUE(db_->Flush().ok());
    for (int level = 0; level < 3; ++level) ASSERT_NO_FATAL_FAILURE(MoveLevelDown(level));
    for (int j = 0; j < keys; j += 2) ASSERT_NO_FATAL_FAILURE(Put(model, scrambled(j), 1));
    ASSERT_TRUE(db_->Flush().ok());
    for (int level = 0; level < 2; ++level) ASSERT_NO_FATAL_FAILURE(MoveLevelDown(level));
    for (int j = 0; j < keys; j += 3) ASSERT_NO_FATAL_FAILURE(Put(model, scrambled(j), 2));
    ASSERT_TRUE(db_->Flush().ok());
    ASSERT_NO_FATAL_FAILURE(MoveLevelDown(0));
    for (int j = 0; j < keys; j += 5) ASSERT_NO_FATAL_FAILURE(Put(model, scrambled(j), 3));
    int deleted = 0;
    for (int i = 0; i < keys; ++i) {
      if (!deletes(i)) continue;
      ASSERT_NO_FATAL_FAILURE(Delete(model, i));
      if (++deleted == keys / 4) {
        ASSERT_TRUE(db_->Flush().ok());  // some markers in level 0
      }
    }
    const std::vector<LevelStats> levels = db_->GetLevelStats();
    for (int level = 0; level <= 3; ++level) {
      ASSERT_GT(levels[static_cast<std::size_t>(level)].files, 0u) << "level " << level;
    }
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  std::string dir_ = "/store";
  Options options_;
  std::unique_ptr<DB> db_;
};

TEST_F(DbCompactRangeTest, EverythingEndsInTheBottomLevelWithoutMarkersAndTheSpaceIsBack) {
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 1500;
  Model model;
  ASSERT_NO_FATAL_FAILURE(BuildTree(&model, kKeys, [](int i) { return i % 10 != 0; }));
  ASSERT_EQ(model.size(), static_cast<std::size_t>(kKeys / 10));
  const std::uint64_t entries_before = TotalEntries();
  const std::uint64_t sst_bytes_before = DirBytes(".sst");
  const std::uint64_t dir_bytes_before = DirBytes();
  const DbStats stats_before = db_->stats();

  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());

  // Everything in level 3 (the deepest before), one entry per live key: no deletion marker and
  // no older version is left anywhere.
  EXPECT_EQ(OnlyLevel(), 3);
  EXPECT_EQ(TotalEntries(), model.size()) << "before: " << entries_before;
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
  const std::uint64_t sst_bytes_after = DirBytes(".sst");
  const std::uint64_t dir_bytes_after = DirBytes();
  EXPECT_LT(sst_bytes_after * 5, sst_bytes_before)
      << "SSTs: " << sst_bytes_before << " -> " << sst_bytes_after;
  EXPECT_LT(dir_bytes_after * 2, dir_bytes_before)
      << "directory: " << dir_bytes_before << " -> " << dir_bytes_after;
  // The replaced files are gone from the directory, not just from the manifest.
  EXPECT_EQ(SstFilesInDir().size(), db_->stats().sst_files);

  const DbStats stats = db_->stats();
  EXPECT_EQ(stats.manual_compactions, stats_before.manual_compactions + 1);
  EXPECT_GT(stats.compactions, stats_before.compactions);
  EXPECT_GT(stats.compaction_bytes_written, stats_before.compaction_bytes_written);
  std::string report;
  ASSERT_TRUE(db_->GetProperty("cascade.stats", &report));
  EXPECT_NE(report.find("1 manual range compactions"), std::string::npos) << report;

  // A second call finds nothing to drop: the files are rewritten in place at most.
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(OnlyLevel(), 3);
  EXPECT_EQ(TotalEntries(), model.size());

  // The result is in the manifest.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(OnlyLevel(), 3);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
}

// Only level 0 and the memtable hold data: the keys go to level 1, the shallowest bottom.
TEST_F(DbCompactRangeTest, AStoreOfLevel0OnlyEndsInLevel1) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Model model;
  for (int i = 0; i < 500; ++i) ASSERT_NO_FATAL_FAILURE(Put(&model, i, 0));
  ASSERT_TRUE(db_->Flush().ok());
  for (int i = 0; i < 500; i += 2) ASSERT_NO_FATAL_FAILURE(Delete(&model, i));
  ASSERT_TRUE(db_->Flush().ok());
  for (int i = 1; i < 500; i += 4) ASSERT_NO_FATAL_FAILURE(Put(&model, i, 1));
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(OnlyLevel(), 1);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, 500));
}

TEST_F(DbCompactRangeTest, AnEmptyStoreAndAnEmptyRangeAreFine) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(db_->stats().sst_files, 0u);
  Model model;
  for (int i = 0; i < 100; ++i) ASSERT_NO_FATAL_FAILURE(Put(&model, i, 0));
  // A range holding no key: the flush happens, no file moves.
  ASSERT_TRUE(db_->CompactRange(std::string("zzz"), std::nullopt).ok());
  EXPECT_EQ(db_->GetLevelStats()[0].files, 1u);
  ASSERT_TRUE(db_->CompactRange(std::string("a"), std::string("a")).ok());
  EXPECT_EQ(db_->GetLevelStats()[0].files, 1u);
  EXPECT_EQ(db_->stats().manual_compactions, 3u);
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, 100));
}

TEST_F(DbCompactRangeTest, ABoundedRangeCompactsOnlyTheFilesOverlappingIt) {
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 1500;
  Model model;
  // Deletes everywhere, so markers outside the range can be seen to stay.
  ASSERT_NO_FATAL_FAILURE(BuildTree(&model, kKeys, [](int i) { return i % 3 != 0; }));
  // Level 0 as BuildTree leaves it spans every key; moved down, level 0 then holds one file of
  // markers in the range (deleting its last live keys) and one far from it.
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(MoveLevelDown(0));
  for (int i = 501; i < 1000; i += 3) ASSERT_NO_FATAL_FAILURE(Delete(&model, i));  // i % 3 == 0
  ASSERT_TRUE(db_->Flush().ok());
  for (int i = 1350; i < 1400; i += 3) ASSERT_NO_FATAL_FAILURE(Delete(&model, i));
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_EQ(db_->GetLevelStats()[0].files, 2u);
  const std::string begin = Key(500);
  const std::string end = Key(999);
  auto overlaps = [](const LiveFile& file, const std::string& from, const std::string& to) {
    return file.largest >= from && file.smallest <= to;
  };
  const std::vector<LiveFile> before = LiveFiles();

  ASSERT_TRUE(db_->CompactRange(begin, end).ok());

  const std::vector<LiveFile> after = LiveFiles();
  // Above the bottom level no file overlaps the range any more. Every key of the range is
  // deleted now, so with the markers dropped no file lies inside it, and at most the two that
  // reach across its ends overlap it.
  int overlapping = 0;
  for (const LiveFile& file : after) {
    if (!overlaps(file, begin, end)) continue;
    ++overlapping;
    EXPECT_EQ(file.level, 3) << "file " << file.number << " [" << file.smallest << ", "
                             << file.largest << "]";
    EXPECT_FALSE(file.smallest >= begin && file.largest <= end)
        << "file " << file.number << " [" << file.smallest << ", " << file.largest << "] of "
        << file.entries << " entries holds only deleted keys";
  }
  EXPECT_LE(overlapping, 2);
  // A file far from the range stays where it was, unchanged: the level-0 file of markers at
  // 1350..1399 too. Near the range, a step may take along a file of the next level
  // overlapping a taken one (at most one file, ~70 keys here, per side and level), so the
  // margin is 200 keys.
  const std::string near_begin = Key(300);
  const std::string near_end = Key(1199);
  int untouched = 0;
  for (const LiveFile& file : before) {
    if (overlaps(file, near_begin, near_end)) continue;
    ++untouched;
    auto it = std::find_if(after.begin(), after.end(),
                           [&](const LiveFile& other) { return other.number == file.number; });
    ASSERT_NE(it, after.end()) << "file " << file.number << " at level " << file.level << " ["
                               << file.smallest << ", " << file.largest
                               << "], far from the range, was replaced";
    EXPECT_EQ(it->level, file.level) << "file " << file.number;
  }
  EXPECT_GE(untouched, 8) << "the test needs files outside the range";
  EXPECT_EQ(db_->GetLevelStats()[0].files, 1u) << "the markers far from the range stay";
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
}

TEST_F(DbCompactRangeTest, ASnapshotKeepsTheVersionsItSees) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Model old_model;
  for (int i = 0; i < 1000; ++i) ASSERT_NO_FATAL_FAILURE(Put(&old_model, i, 0));
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(MoveLevelDown(0));
  ASSERT_NO_FATAL_FAILURE(MoveLevelDown(1));
  const Snapshot* snapshot = db_->GetSnapshot();
  Model model = old_model;
  for (int i = 0; i < 500; ++i) ASSERT_NO_FATAL_FAILURE(Put(&model, i, 1));
  for (int i = 500; i < 900; ++i) ASSERT_NO_FATAL_FAILURE(Delete(&model, i));

  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(OnlyLevel(), 2);
  // Every old version is kept for the snapshot, and above it the newer versions and the
  // markers that hide them from newer reads: 1000 + 500 + 400.
  EXPECT_EQ(TotalEntries(), 1900u);
  ASSERT_NO_FATAL_FAILURE(ExpectModel(old_model, 1000, snapshot));
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, 1000));

  // Released: the next manual compaction drops what only the snapshot needed.
  db_->ReleaseSnapshot(snapshot);
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(OnlyLevel(), 2);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, 1000));
}

TEST_F(DbCompactRangeTest, ValueLogFilesOfDeletedValuesAreCollectedBeforeItReturns) {
  options_.min_blob_size_bytes = 256;
  options_.vlog_file_size_bytes = 64 << 10;
  options_.vlog_unwritten_bytes_max = 1 << 20;
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 400;
  Model model;
  for (int i = 0; i < kKeys; ++i) ASSERT_NO_FATAL_FAILURE(Put(&model, i, 0, 2000));
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(MoveLevelDown(0));
  for (int i = 0; i < kKeys; ++i) {
    if (i % 10 != 0) {
      ASSERT_NO_FATAL_FAILURE(Delete(&model, i));
    }
  }
  const std::uint64_t vlog_bytes_before = DirBytes(".vlog");
  ASSERT_GT(vlog_bytes_before, std::uint64_t{kKeys} * 2000);
  const DbStats stats_before = db_->stats();
  EXPECT_EQ(stats_before.vlog_gc_files, 0u);

  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());

  const DbStats stats = db_->stats();
  const std::uint64_t vlog_bytes_after = DirBytes(".vlog");
  // About 12 files of 64 KiB, 90% garbage each: every finished one is collected, the live
  // tenth written again; what is left is the file being written and those rewrites.
  EXPECT_LT(vlog_bytes_after * 4, vlog_bytes_before)
      << "value log: " << vlog_bytes_before << " -> " << vlog_bytes_after;
  EXPECT_GE(stats.vlog_gc_files, 8u);
  EXPECT_GE(stats.vlog_files_deleted, stats.vlog_gc_files);
  EXPECT_EQ(stats.manual_compactions, 1u);
  // GC wrote the live values again; the second pass dropped the old pointers to them.
  EXPECT_GT(stats.vlog_gc_bytes_rewritten, 0u);
  EXPECT_EQ(OnlyLevel(), 1);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
}

TEST_F(DbCompactRangeTest, TheCoroutineFormDoesTheSame) {
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 1000;
  Model model;
  ASSERT_NO_FATAL_FAILURE(BuildTree(&model, kKeys, [](int i) { return i % 4 != 0; }));
  const std::string begin = Key(0);
  Status status = scheduler_->BlockOn(db_->CompactRangeAsync(begin, std::nullopt));
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(OnlyLevel(), 3);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
}

TEST_F(DbCompactRangeTest, ErrorsComeBackAsDocumented) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Status status = db_->CompactRange(std::string("b"), std::string("a"));
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  status = scheduler_->BlockOn(db_->CompactRangeAsync(std::string("b"), std::string("a")));
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_EQ(db_->stats().manual_compactions, 0u);
  ASSERT_TRUE(db_->Close().ok());
  status = db_->CompactRange(std::nullopt, std::nullopt);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.ToString().find("closed"), std::string::npos) << status.ToString();
}

// A full disk fails the step as it fails a background compaction: its outputs are removed,
// nothing changes, the store keeps serving, and the call says NoSpace. With space back, the
// next call does the work.
TEST_F(DbCompactRangeTest, ADiskFullOfDataFailsWithNoSpaceAndChangesNothing) {
  auto fault = std::make_unique<testutil::FaultEnv>(env_.get());
  options_.env = fault.get();
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 1000;
  Model model;
  ASSERT_NO_FATAL_FAILURE(BuildTree(&model, kKeys, [](int i) { return i % 2 != 0; }));
  ASSERT_TRUE(db_->Flush().ok());
  fault->SetNoSpaceAfterBytes(4 << 10, ".sst");

  Status status = db_->CompactRange(std::nullopt, std::nullopt);
  EXPECT_TRUE(status.IsNoSpace()) << status.ToString();
  EXPECT_GE(db_->stats().compactions_failed_no_space, 1u);
  EXPECT_EQ(db_->stats().manual_compactions, 0u);
  // Steps that finished before the disk filled up stay done; the failed one left nothing.
  std::uint64_t live = 0;
  for (const LevelStats& level : db_->GetLevelStats()) live += level.files;
  EXPECT_EQ(SstFilesInDir().size(), live);
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
  // Writes still go on (into the memtable).
  ASSERT_NO_FATAL_FAILURE(Put(&model, 1, 9));

  fault->ClearFaults();
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(OnlyLevel(), 3);
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
  ASSERT_TRUE(db_->Close().ok());
  db_.reset();
}

// Writers, readers and a second CompactRange race the manual compaction, with automatic
// compactions on (so the slot changes hands); run under TSan too (engine_test is labelled
// tsan). Each writer owns its keys, so the models merge into the expected final state.
TEST_F(DbCompactRangeTest, ConcurrentWritersReadersAndCompactionsLoseNothing) {
  options_.level0_compaction_trigger = 2;
  options_.level0_slowdown_writes_trigger = 8;
  options_.level0_stop_writes_trigger = 12;
  options_.max_bytes_for_level_base = 32 << 10;
  options_.level_size_multiplier = 4;
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kStableKeys = 1000;  // keys 0..999: written once, never changed
  constexpr int kWriters = 2;
  constexpr int kWriterKeys = 1500;  // writer w owns keys 10000 + w * kWriterKeys + j
  Model stable;
  for (int i = 0; i < kStableKeys; ++i) ASSERT_NO_FATAL_FAILURE(Put(&stable, i, 0));
  std::vector<Model> models(kWriters);
  std::atomic<int> writers_done{0};
  auto writer = [&](int w) {
    std::mt19937 rng(static_cast<std::uint32_t>(w + 1));
    Model& model = models[static_cast<std::size_t>(w)];
    for (int op = 0; op < 3000; ++op) {
      const int i = 10000 + w * kWriterKeys + static_cast<int>(rng() % kWriterKeys);
      if (rng() % 3 == 0) {
        model.erase(Key(i));
        ASSERT_TRUE(db_->Delete({}, Key(i)).ok());
      } else {
        model[Key(i)] = Value(i, op);
        ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      writer(w);
      writers_done.fetch_add(1);  // also after a failed assertion, so nobody waits forever
    });
  }
  threads.emplace_back([&] {
    int i = 0;
    while (writers_done.load() < kWriters) {
      const std::string key = Key(i++ % kStableKeys);
      std::string value;
      Status status = db_->Get({}, key, &value);
      ASSERT_TRUE(status.ok()) << key << ": " << status.ToString();
      ASSERT_EQ(value, stable.at(key));
    }
  });
  threads.emplace_back([&] {
    while (writers_done.load() < kWriters) {
      std::unique_ptr<Iterator> it = db_->NewIterator({});
      int count = 0;
      for (it->Seek(Key(0)); it->Valid() && it->key() < Key(kStableKeys); it->Next(), ++count) {
        ASSERT_EQ(it->key(), Key(count));
      }
      ASSERT_TRUE(it->status().ok()) << it->status().ToString();
      ASSERT_EQ(count, kStableKeys);
    }
  });
  // A second caller: the two take turns with each other and with background compactions.
  threads.emplace_back([&] {
    while (writers_done.load() < kWriters) {
      Status status = db_->CompactRange(Key(10000), Key(10000 + kWriterKeys - 1));
      ASSERT_TRUE(status.ok()) << status.ToString();
    }
  });
  int calls = 0;
  while (writers_done.load() < kWriters) {
    Status status = db_->CompactRange(std::nullopt, std::nullopt);
    if (!status.ok()) {
      ADD_FAILURE() << status.ToString();
      break;
    }
    ++calls;
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_FALSE(HasFailure());
  EXPECT_GE(calls, 1);
  Model model = stable;
  for (const Model& writer : models) model.insert(writer.begin(), writer.end());
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  for (const auto& [key, value] : model) {
    std::string got;
    ASSERT_TRUE(db_->Get({}, key, &got).ok()) << key;
    ASSERT_EQ(got, value) << key;
  }
  EXPECT_EQ(Scan(), model);
  EXPECT_EQ(Scan(nullptr, true), model);
  // Quiet now: the last call left one entry per live key (automatic compactions may still
  // move files down, which keeps that true).
  EXPECT_EQ(TotalEntries(), model.size());
  EXPECT_GE(db_->stats().manual_compactions, static_cast<std::uint64_t>(calls) + 1);
}

// Random puts, deletes, snapshots, flushes and CompactRange calls with random bounds, against
// a model per snapshot. The seed comes from CFS_TEST_SEED or is random, and is printed.
TEST_F(DbCompactRangeTest, RandomOperationsWithSnapshotsMatchTheModel) {
  std::uint64_t seed = std::random_device{}();
  if (const char* text = std::getenv("CFS_TEST_SEED")) seed = std::strtoull(text, nullptr, 10);
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  options_.min_blob_size_bytes = 200;  // some values separated, some not
  options_.vlog_file_size_bytes = 64 << 10;
  options_.vlog_unwritten_bytes_max = 1 << 20;
  ASSERT_NO_FATAL_FAILURE(Open());
  std::mt19937_64 rng(seed);
  constexpr int kKeys = 300;
  Model model;
  std::vector<std::pair<const Snapshot*, Model>> snapshots;
  for (int op = 0; op < 1000; ++op) {
    const std::uint64_t dice = rng() % 1000;
    const int i = static_cast<int>(rng() % kKeys);
    if (dice < 550) {
      ASSERT_NO_FATAL_FAILURE(Put(&model, i, op, rng() % 2 == 0 ? 50 : 400));
    } else if (dice < 900) {
      ASSERT_NO_FATAL_FAILURE(Delete(&model, i));
    } else if (dice < 930) {
      ASSERT_TRUE(db_->Flush().ok());
    } else if (dice < 950) {
      ASSERT_TRUE(impl().CompactLevelForTest(static_cast<int>(rng() % 3)).ok());
    } else if (dice < 965 && snapshots.size() < 3) {
      snapshots.emplace_back(db_->GetSnapshot(), model);
    } else if (dice < 980 && !snapshots.empty()) {
      const std::size_t which = rng() % snapshots.size();
      db_->ReleaseSnapshot(snapshots[which].first);
      snapshots.erase(snapshots.begin() + static_cast<std::ptrdiff_t>(which));
    } else {
      std::optional<std::string> begin;
      std::optional<std::string> end;
      if (rng() % 2 == 0) begin = Key(static_cast<int>(rng() % kKeys));
      if (rng() % 2 == 0) end = Key(static_cast<int>(rng() % kKeys));
      if (begin && end && *begin > *end) std::swap(begin, end);
      Status status = db_->CompactRange(begin, end);
      ASSERT_TRUE(status.ok()) << status.ToString();
      ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys, nullptr, 7));
      for (const auto& [snapshot, seen] : snapshots) {
        ASSERT_NO_FATAL_FAILURE(ExpectModel(seen, kKeys, snapshot, 7));
      }
    }
  }
  for (const auto& [snapshot, seen] : snapshots) db_->ReleaseSnapshot(snapshot);
  ASSERT_TRUE(db_->CompactRange(std::nullopt, std::nullopt).ok());
  EXPECT_EQ(TotalEntries(), model.size());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model, kKeys));
}

}  // namespace
}  // namespace cascadefs::engine
