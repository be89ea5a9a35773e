// db_compaction_test.cc: leveled compaction through the DB, one behaviour per test.
//
// Goal: compaction keeps every read right while it moves data down (overlapping inputs,
// newest version wins), drops exactly what no reader needs (old versions below the oldest
// snapshot, deletion markers only at the base level), cuts outputs at the target size,
// moves files trivially when it can, never deletes a file an iterator still reads, stalls
// writes when level 0 is too deep, and refuses bad options.
// Method: stores on MemEnv with tiny memtables, blocks and level sizes. Most tests shape the
// tree by hand with DBImpl::CompactLevelForTest (automatic compaction kept off by a high
// level-0 trigger and large level limits) and read the shape back with GetLevelStats; the
// automatic ones set small triggers and wait for the scores to drop below 1.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "db/db_impl.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "env/mem_env.h"
#include "manifest/filename.h"

namespace cascadefs::engine {
namespace {

class DbCompactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewMemEnv(scheduler_.get());
    options_.scheduler = scheduler_.get();
    options_.env = env_.get();
    options_.write_buffer_size_bytes = 16 << 10;
    options_.block_size_bytes = 512;
    options_.index_partition_size_bytes = 512;
    // Manual: nothing compacts unless a test asks.
    options_.level0_compaction_trigger = 1000;
    options_.level0_slowdown_writes_trigger = 1000;
    options_.level0_stop_writes_trigger = 1000;
    options_.max_bytes_for_level_base = std::uint64_t{1} << 40;
    options_.target_file_size_bytes = 1 << 20;
  }

  void Open() {
    auto db = DB::Open(options_, dir_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
  }

  void TearDown() override {
    if (db_) {
      EXPECT_TRUE(db_->Close().ok());
    }
  }

  DBImpl& impl() { return *static_cast<DBImpl*>(db_.get()); }

  std::string Get(std::string_view key, const Snapshot* snapshot = nullptr) {
    std::string value;
    Status status = db_->Get(ReadOptions{.snapshot = snapshot}, key, &value);
    return status.ok() ? value : status.IsNotFound() ? "NOT_FOUND" : status.ToString();
  }

  void Put(std::string_view key, std::string_view value) {
    ASSERT_TRUE(db_->Put({}, key, value).ok());
  }

  std::vector<std::uint64_t> FilesPerLevel() {
    std::vector<std::uint64_t> out;
    for (const LevelStats& level : db_->GetLevelStats()) out.push_back(level.files);
    return out;
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

  // Waits until no level scores >= 1 (automatic compaction caught up).
  void WaitForCompactions() {
    for (int i = 0; i < 3000; ++i) {
      bool done = true;
      for (const LevelStats& level : db_->GetLevelStats()) done = done && level.score < 1.0;
      if (done) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "compaction did not catch up within 30 s";
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  std::string dir_ = "/store";
  Options options_;
  std::unique_ptr<DB> db_;
};

TEST_F(DbCompactionTest, Level0CompactsAtTheTriggerAndEveryValueSurvives) {
  options_.level0_compaction_trigger = 4;
  options_.level0_slowdown_writes_trigger = 20;
  options_.level0_stop_writes_trigger = 36;
  options_.max_bytes_for_level_base = 64 << 10;
  options_.target_file_size_bytes = 16 << 10;
  ASSERT_NO_FATAL_FAILURE(Open());
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 2000; ++i) {
      Put("key" + std::to_string(i * 7919 % 2000), std::to_string(round) + std::string(60, 'v'));
    }
  }
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(WaitForCompactions());
  const std::vector<std::uint64_t> files = FilesPerLevel();
  EXPECT_LT(files[0], 4u);
  EXPECT_GT(files[1] + files[2] + files[3], 0u) << "nothing reached a deeper level";
  for (int i = 0; i < 2000; i += 13) {
    EXPECT_EQ(Get("key" + std::to_string(i)), "3" + std::string(60, 'v'));
  }
  const DbStats stats = db_->stats();
  EXPECT_GT(stats.compactions, 0u);
  EXPECT_GT(stats.compaction_bytes_read, 0u);
  EXPECT_GT(stats.compaction_bytes_written, 0u);
  EXPECT_GT(stats.obsolete_files_deleted, 0u);
  // Overwritten versions were dropped: far fewer entries remain than were written.
  std::uint64_t entries = 0;
  for (const LevelStats& level : db_->GetLevelStats()) entries += level.entries;
  EXPECT_LT(entries, 8000u);
  // After a reopen every SST in the directory is live (Close deletes what a compaction
  // still running at the check above had not yet), and every value is still there.
  ASSERT_TRUE(db_->Close().ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  std::uint64_t live = 0;
  for (std::uint64_t count : FilesPerLevel()) live += count;
  EXPECT_EQ(SstFilesInDir().size(), live);
  for (int i = 0; i < 2000; i += 17) {
    EXPECT_EQ(Get("key" + std::to_string(i)), "3" + std::string(60, 'v'));
  }
}

TEST_F(DbCompactionTest, TrivialMoveChangesTheLevelWithoutRewriting) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Put("a", "1");
  Put("b", "2");
  ASSERT_TRUE(db_->Flush().ok());
  const std::set<std::uint64_t> before = SstFilesInDir();
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());
  EXPECT_EQ(FilesPerLevel(), (std::vector<std::uint64_t>{0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(SstFilesInDir(), before) << "a trivial move keeps the very file";
  const DbStats stats = db_->stats();
  EXPECT_EQ(stats.trivial_moves, 2u);
  EXPECT_EQ(stats.compaction_bytes_written, 0u);
  EXPECT_EQ(Get("a"), "1");
  // The move is in the manifest: it survives a reopen.
  ASSERT_TRUE(db_->Close().ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_EQ(FilesPerLevel(), (std::vector<std::uint64_t>{0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(Get("b"), "2");
}

TEST_F(DbCompactionTest, OverlappingInputsMergeAndTheNewestVersionWins) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Put("k1", "old");
  Put("k5", "old");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());  // trivial: level 1 holds k1..k5
  Put("k3", "l0-a");
  Put("k5", "l0-a");
  ASSERT_TRUE(db_->Flush().ok());
  Put("k1", "l0-b");
  Put("k3", "l0-b");
  ASSERT_TRUE(db_->Flush().ok());
  EXPECT_EQ(FilesPerLevel()[0], 2u);
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  EXPECT_EQ(FilesPerLevel(), (std::vector<std::uint64_t>{0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Get("k1"), "l0-b");
  EXPECT_EQ(Get("k3"), "l0-b");
  EXPECT_EQ(Get("k5"), "l0-a");
  EXPECT_EQ(db_->GetLevelStats()[1].entries, 3u) << "older versions dropped (no snapshot)";
  EXPECT_EQ(db_->stats().trivial_moves, 1u);
}

TEST_F(DbCompactionTest, DeletionMarkersAreDroppedOnlyAtTheBaseLevel) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Put("a", "deep");
  Put("z", "deep");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());  // level 2 holds a, z
  Put("b", "level1");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());  // level 1 holds b
  Put("m", "mid");
  ASSERT_TRUE(db_->Delete({}, "a").ok());
  ASSERT_TRUE(db_->Delete({}, "never-written").ok());
  ASSERT_TRUE(db_->Flush().ok());
  EXPECT_EQ(db_->stats().trivial_moves, 3u);
  // Level 0 -> 1 (a real merge, with b): level 2 still holds "a", so its marker must stay;
  // "never-written" lies in level 2's key range (a..z), so its marker stays as well.
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  EXPECT_EQ(db_->stats().trivial_moves, 3u);
  EXPECT_EQ(db_->GetLevelStats()[1].entries, 4u) << "a (marker), b, m, never-written (marker)";
  EXPECT_EQ(Get("a"), "NOT_FOUND");
  // Level 1 -> 2 merges the markers with level 2: the base level now, so they go, with the
  // value they hid.
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());
  const std::vector<LevelStats> levels = db_->GetLevelStats();
  EXPECT_EQ(levels[1].files, 0u);
  EXPECT_EQ(levels[2].entries, 3u) << "b, m and z";
  EXPECT_EQ(Get("a"), "NOT_FOUND");
  EXPECT_EQ(Get("b"), "level1");
  EXPECT_EQ(Get("m"), "mid");
  EXPECT_EQ(Get("z"), "deep");
}

TEST_F(DbCompactionTest, SnapshotsKeepTheVersionsTheySee) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Put("k", "v1");
  Put("gone", "here");
  const Snapshot* snapshot = db_->GetSnapshot();
  Put("k", "v2");
  ASSERT_TRUE(db_->Delete({}, "gone").ok());
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  Put("k", "v3");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());  // merges with level 1: not trivial
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());  // base level: markers could go
  EXPECT_EQ(Get("k", snapshot), "v1");
  EXPECT_EQ(Get("gone", snapshot), "here");
  EXPECT_EQ(Get("k"), "v3");
  EXPECT_EQ(Get("gone"), "NOT_FOUND");
  // v1 and "here" are needed by the snapshot; v2 is not (v3 hides it from every reader), but
  // the marker of "gone" hides "here" from newer reads, so it stays: k@v3, k@v1, gone@del,
  // gone@here.
  EXPECT_EQ(db_->GetLevelStats()[2].entries, 4u);
  db_->ReleaseSnapshot(snapshot);
  Put("k", "v4");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());
  EXPECT_EQ(db_->GetLevelStats()[2].entries, 1u) << "only k@v4 is needed now";
  EXPECT_EQ(Get("k"), "v4");
  EXPECT_EQ(Get("gone"), "NOT_FOUND");
}

TEST_F(DbCompactionTest, OutputsAreCutAtTheTargetFileSize) {
  options_.target_file_size_bytes = 8 << 10;
  ASSERT_NO_FATAL_FAILURE(Open());
  // Scrambled order: every level-0 file spans the whole key range, so one compaction takes
  // them all.
  for (int i = 0; i < 1000; ++i) {
    Put("key" + std::to_string(1000 + i * 7919 % 1000), std::string(100, 'x'));
  }
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_GT(FilesPerLevel()[0], 1u);
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  const std::vector<LevelStats> levels = db_->GetLevelStats();
  EXPECT_EQ(levels[0].files, 0u);
  EXPECT_EQ(levels[1].entries, 1000u);
  // ~110 KiB of entries in files of at least the target (the last may be smaller), and no
  // file much beyond it (it ends at the first key after reaching the target).
  EXPECT_GE(levels[1].files, 10u);
  EXPECT_LE(levels[1].files, 16u);
  for (int i = 0; i < 1000; i += 37) {
    EXPECT_EQ(Get("key" + std::to_string(1000 + i)), std::string(100, 'x'));
  }
  std::unique_ptr<Iterator> it = db_->NewIterator({});
  int count = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
  EXPECT_EQ(count, 1000);
}

TEST_F(DbCompactionTest, AnOpenIteratorKeepsReplacedFilesUntilItIsDestroyed) {
  ASSERT_NO_FATAL_FAILURE(Open());
  for (int i = 0; i < 300; ++i) Put("key" + std::to_string(i), "first");
  ASSERT_TRUE(db_->Flush().ok());
  for (int i = 0; i < 300; i += 2) Put("key" + std::to_string(i), "second");
  ASSERT_TRUE(db_->Flush().ok());
  std::unique_ptr<Iterator> it = db_->NewIterator({});
  const std::set<std::uint64_t> before = SstFilesInDir();
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  EXPECT_EQ(db_->stats().obsolete_files_deleted, 0u);
  for (std::uint64_t number : before) EXPECT_TRUE(SstFilesInDir().count(number));
  int count = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next(), ++count) {
    const int number = std::stoi(std::string(it->key().substr(3)));
    EXPECT_EQ(it->value(), number % 2 == 0 ? "second" : "first") << it->key();
  }
  ASSERT_TRUE(it->status().ok()) << it->status().ToString();
  EXPECT_EQ(count, 300);
  it.reset();
  // The next compaction (or Close) deletes what the iterator held.
  Put("key150", "third");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  // The two level-0 inputs of the first compaction, and both inputs of this one.
  EXPECT_EQ(db_->stats().obsolete_files_deleted, 4u);
  std::uint64_t live = 0;
  for (std::uint64_t files : FilesPerLevel()) live += files;
  EXPECT_EQ(SstFilesInDir().size(), live);
}

// A trivial move lists the same file at a new level. An iterator made before the move reads
// the file through the older Version; when a later compaction replaces the moved file, the
// file must stay on disk until that iterator is gone too, not only until the Versions made
// after the move are gone.
TEST_F(DbCompactionTest, AFileMovedThenReplacedStaysWhileAnIteratorFromBeforeTheMoveReadsIt) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Put("a", "deep");
  Put("z", "deep");
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());  // level 2 holds a..z
  Put("b", "moved");
  Put("c", "moved");
  ASSERT_TRUE(db_->Flush().ok());
  std::unique_ptr<Iterator> it = db_->NewIterator({});  // lists the new file at level 0
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());      // trivial: the file moves to level 1
  EXPECT_EQ(db_->stats().trivial_moves, 3u);
  ASSERT_TRUE(impl().CompactLevelForTest(1).ok());  // merged with level 2: the file is replaced
  EXPECT_EQ(FilesPerLevel(), (std::vector<std::uint64_t>{0, 0, 1, 0, 0, 0, 0}));
  std::vector<std::string> seen;
  for (it->SeekToFirst(); it->Valid(); it->Next()) seen.emplace_back(it->key());
  ASSERT_TRUE(it->status().ok()) << it->status().ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "z"}));
  it.reset();
  ASSERT_TRUE(db_->Close().ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  std::uint64_t live = 0;
  for (std::uint64_t count : FilesPerLevel()) live += count;
  EXPECT_EQ(SstFilesInDir().size(), live);
}

TEST_F(DbCompactionTest, DeepLevel0SlowsWritesThenStopsThemUntilCompactionCatchesUp) {
  options_.level0_compaction_trigger = 2;
  options_.level0_slowdown_writes_trigger = 3;
  options_.level0_stop_writes_trigger = 4;
  options_.max_bytes_for_level_base = 64 << 10;
  options_.target_file_size_bytes = 16 << 10;
  options_.compaction_rate_limit_mb_per_sec = 1;  // slow compactions let level 0 pile up
  ASSERT_NO_FATAL_FAILURE(Open());
  for (int i = 0; i < 6000; ++i) {
    Put("key" + std::to_string(i * 7919 % 6000), std::string(80, static_cast<char>('a' + i % 26)));
    ASSERT_LE(FilesPerLevel()[0], 5u) << "level 0 grew past the stop trigger (+1 flushing)";
  }
  const DbStats stats = db_->stats();
  EXPECT_GT(stats.write_slowdowns, 0u);
  EXPECT_GT(stats.write_stalls, 0u);
  EXPECT_GT(stats.write_stall_micros, 0u);
  EXPECT_GT(stats.compactions, 0u);
  for (int i = 0; i < 6000; i += 111) {
    const int writer = [&] {
      for (int j = 5999; j >= 0; --j) {
        if (j * 7919 % 6000 == i) return j;
      }
      return -1;
    }();
    EXPECT_EQ(Get("key" + std::to_string(i)),
              std::string(80, static_cast<char>('a' + writer % 26)));
  }
}

TEST_F(DbCompactionTest, CompactionOptionsOutOfRangeAreRefused) {
  auto refused = [this](const Options& options, std::string_view fragment) {
    auto db = DB::Open(options, dir_);
    ASSERT_FALSE(db.ok());
    EXPECT_TRUE(db.status().IsInvalidArgument()) << db.status().ToString();
    EXPECT_NE(db.status().ToString().find(fragment), std::string::npos) << db.status().ToString();
  };
  Options options = options_;
  options.level0_compaction_trigger = 0;
  refused(options, "level0_compaction_trigger");
  options = options_;
  options.level0_compaction_trigger = 8;
  options.level0_slowdown_writes_trigger = 4;
  refused(options, "level0_slowdown_writes_trigger");
  options = options_;
  options.level0_stop_writes_trigger = 999;  // below the slowdown trigger (1000)
  refused(options, "level0_stop_writes_trigger");
  options = options_;
  options.max_bytes_for_level_base = 1024;
  refused(options, "max_bytes_for_level_base");
  options = options_;
  options.level_size_multiplier = 1;
  refused(options, "level_size_multiplier");
  options = options_;
  options.target_file_size_bytes = 100;
  refused(options, "target_file_size_bytes");
  options = options_;
  options.compaction_rate_limit_mb_per_sec = 1'000'000;
  refused(options, "compaction_rate_limit_mb_per_sec");
}

// Readers and iterators race automatic compactions and flushes; run under TSan (label tsan).
// Each key's value names the key and a round, so a reader can check what it sees without a
// model; an iterator must see keys in order, each once, all from one consistent state.
TEST_F(DbCompactionTest, ReadersAndIteratorsRunSafelyDuringCompaction) {
  options_.level0_compaction_trigger = 2;
  options_.level0_slowdown_writes_trigger = 8;
  options_.level0_stop_writes_trigger = 12;
  options_.max_bytes_for_level_base = 32 << 10;
  options_.target_file_size_bytes = 8 << 10;
  ASSERT_NO_FATAL_FAILURE(Open());
  constexpr int kKeys = 500;
  auto key_of = [](int i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "key%05d", i);
    return std::string(buf);
  };
  for (int i = 0; i < kKeys; ++i) Put(key_of(i), key_of(i) + "@0");
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int round = 1; round <= 12; ++round) {
      for (int i = 0; i < kKeys; ++i) {
        ASSERT_TRUE(db_->Put({}, key_of(i), key_of(i) + "@" + std::to_string(round)).ok());
      }
    }
    done = true;
  });
  std::thread reader([&] {
    int i = 0;
    while (!done) {
      const std::string key = key_of(i++ % kKeys);
      std::string value;
      ASSERT_TRUE(db_->Get({}, key, &value).ok()) << key;
      ASSERT_EQ(value.substr(0, key.size() + 1), key + "@");
    }
  });
  std::thread scanner([&] {
    while (!done) {
      std::unique_ptr<Iterator> it = db_->NewIterator({});
      int count = 0;
      for (it->SeekToFirst(); it->Valid(); it->Next(), ++count) {
        ASSERT_EQ(it->key(), key_of(count));
        ASSERT_EQ(it->value().substr(0, it->key().size() + 1), std::string(it->key()) + "@");
      }
      ASSERT_TRUE(it->status().ok()) << it->status().ToString();
      ASSERT_EQ(count, kKeys);
    }
  });
  writer.join();
  reader.join();
  scanner.join();
  ASSERT_NO_FATAL_FAILURE(WaitForCompactions());
  EXPECT_GT(db_->stats().compactions, 0u);
  for (int i = 0; i < kKeys; i += 7) EXPECT_EQ(Get(key_of(i)), key_of(i) + "@12");
}

// The named statistics: each ratio is what its definition says for a tree shaped by hand,
// the report names every level, and an unknown name is refused.
TEST_F(DbCompactionTest, PropertiesReportLevelsAndAmplification) {
  Open();
  std::string value;
  ASSERT_TRUE(db_->GetProperty("cascade.write-amplification", &value));
  EXPECT_EQ(value, "0.000") << "before any write";
  ASSERT_TRUE(db_->GetProperty("cascade.space-amplification", &value));
  EXPECT_EQ(value, "1.000") << "an empty tree";
  for (int round = 0; round < 3; ++round) {  // every key written 3 times
    for (int i = 0; i < 200; ++i) {
      Put("key" + std::to_string(i), std::string(100, static_cast<char>('a' + round)));
    }
    ASSERT_TRUE(db_->Flush().ok());
  }
  ASSERT_TRUE(impl().CompactLevelForTest(0).ok());
  for (int i = 0; i < 200; ++i) Put("key" + std::to_string(i), std::string(100, 'z'));
  ASSERT_TRUE(db_->Flush().ok());

  const DbStats stats = db_->stats();
  EXPECT_GT(stats.user_bytes_written, 800u * 100) << "800 writes of 100-byte values";
  const std::uint64_t disk = stats.wal_bytes_written + stats.vlog_bytes_written +
                             stats.flush_bytes_written + stats.compaction_bytes_written;
  EXPECT_DOUBLE_EQ(WriteAmplification(stats),
                   static_cast<double>(disk) / static_cast<double>(stats.user_bytes_written));
  EXPECT_GT(WriteAmplification(stats), 2.0) << "WAL, flush and compaction each wrote it";

  const std::vector<LevelStats> levels = db_->GetLevelStats();
  ASSERT_GT(levels[0].bytes, 0u);
  ASSERT_GT(levels[1].bytes, 0u);
  EXPECT_DOUBLE_EQ(SpaceAmplification(levels),
                   static_cast<double>(levels[0].bytes + levels[1].bytes) /
                       static_cast<double>(levels[1].bytes));

  std::string report;
  ASSERT_TRUE(db_->GetProperty("cascade.stats", &report));
  for (const char* line : {"L0 ", "L1 ", "L6 ", "write amplification", "space amplification",
                           "block cache", "stalls", "compactions"}) {
    EXPECT_NE(report.find(line), std::string::npos) << line << " missing from:\n" << report;
  }
  std::string levels_report;
  ASSERT_TRUE(db_->GetProperty("cascade.levels", &levels_report));
  EXPECT_EQ(std::count(levels_report.begin(), levels_report.end(), '\n'), 1 + kNumLevels);

  value = "untouched";
  EXPECT_FALSE(db_->GetProperty("cascade.no-such-thing", &value));
  EXPECT_EQ(value, "untouched");
}

TEST(DbStatsRatioTest, HitRatioAndEdgeCases) {
  DbStats stats;
  EXPECT_EQ(BlockCacheHitRatio(stats), 0);
  stats.block_cache_hits = 3;
  stats.block_cache_misses = 1;
  EXPECT_DOUBLE_EQ(BlockCacheHitRatio(stats), 0.75);
  EXPECT_EQ(WriteAmplification(stats), 0);
  EXPECT_EQ(SpaceAmplification({}), 1);
}

}  // namespace
}  // namespace cascadefs::engine
