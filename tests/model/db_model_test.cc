// db_model_test.cc: the engine against a std::map reference model, under random operations.
//
// Goal: every read the engine answers (Get, Get at a snapshot, forward and backward
// iteration, Seek and SeekForPrev with stepping) equals the model's answer, across memtable
// switches, flushes to many small multi-block SSTs, compactions through several levels
// (snapshots held across them, reopens cancelling them midway), and reopens (WAL replay).
// Method: LevelDB's ModelDB idea. A seeded random sequence of puts, deletes, batches,
// snapshots, iterators, flushes and reopens runs against both; after every step the answers
// are compared. Tiny memtables (64 KiB) and blocks (256 B) make flushes and multi-block tables
// constant; the compaction settings use 8 KiB memtables, 16 KiB level 1 and 8 KiB target files,
// so compactions run all the time and reach levels 3 and deeper (one of them rate limited, so
// reads, snapshots and reopens meet compactions in the middle). Both call forms are exercised:
// blocking calls and coroutines on the scheduler. The seed comes from CFS_TEST_SEED or the clock,
// and is printed on failure; a failing seed becomes a regression test below.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "db/db_impl.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "engine/iterator.h"
#include "env/mem_env.h"
#include "testutil/temp_dir.h"

namespace cascadefs::engine {
namespace {

using Model = std::map<std::string, std::string>;

std::uint64_t SeedFromEnvironment() {
  if (const char* text = std::getenv("CFS_TEST_SEED")) return std::strtoull(text, nullptr, 10);
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

enum class EnvKind { kMem, kScheduler };

struct ModelParam {
  EnvKind env;
  Compression compression;
  std::uint32_t steps;
  bool compaction = false;  // tiny memtables and levels: compactions all the time
  std::uint32_t compaction_rate_limit_mb_per_sec = 0;
  // Values of 128 bytes and more go to the value log (small files, so they roll), and a
  // quarter of the values are that large.
  bool separated_values = false;
};

class DbModelTest : public ::testing::TestWithParam<ModelParam> {
 protected:
  void SetUp() override {
    io::SchedulerOptions scheduler_options;
    scheduler_options.io_threads = 2;
    auto scheduler = io::Scheduler::Create(scheduler_options);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();
    scheduler_ = std::move(scheduler).value();
    if (GetParam().env == EnvKind::kMem) {
      env_ = NewMemEnv(scheduler_.get());
      dir_ = "/model-store";
    } else {
      env_ = NewSchedulerEnv(scheduler_.get());
      temp_ = std::make_unique<testutil::TempDir>();
      dir_ = temp_->path() + "/store";
    }
    options_.scheduler = scheduler_.get();
    options_.env = env_.get();
    options_.write_buffer_size_bytes = 64 << 10;
    options_.block_size_bytes = 256;
    options_.index_partition_size_bytes = 256;
    options_.block_restart_interval = 4;
    options_.compression = GetParam().compression;
    options_.wal_segment_size_bytes = 64 << 10;
    options_.wal_buffer_size_bytes = 512;
    if (GetParam().separated_values) {
      options_.min_blob_size_bytes = 128;
      options_.vlog_file_size_bytes = 64 << 10;
      options_.vlog_unwritten_bytes_max = 1 << 20;
    }
    if (GetParam().compaction) {
      options_.write_buffer_size_bytes = 8 << 10;
      options_.level0_compaction_trigger = 2;
      options_.level0_slowdown_writes_trigger = 4;
      options_.level0_stop_writes_trigger = 6;
      options_.max_bytes_for_level_base = 16 << 10;
      options_.level_size_multiplier = 2;
      options_.target_file_size_bytes = 8 << 10;
      options_.compaction_rate_limit_mb_per_sec = GetParam().compaction_rate_limit_mb_per_sec;
    }
    Open();
  }

  void TearDown() override {
    ReleaseSnapshots();
    if (db_) {
      EXPECT_TRUE(db_->Close().ok());
      db_.reset();
    }
  }

  void Open() {
    auto db = DB::Open(options_, dir_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
  }

  void ReleaseSnapshots() {
    for (auto& [snapshot, model] : snapshots_) db_->ReleaseSnapshot(snapshot);
    snapshots_.clear();
  }

  std::string RandomKey() {
    // A small key space so keys are overwritten and deleted often; a few long keys.
    const std::uint32_t n = std::uniform_int_distribution<std::uint32_t>(0, 299)(rng_);
    std::string key = "key" + std::to_string(n);
    if (n % 50 == 7) key.append(300, static_cast<char>('a' + n % 26));
    return key;
  }

  std::string RandomValue() {
    const std::uint32_t max_size = GetParam().separated_values && Coin(25) ? 3000 : 120;
    const std::uint32_t size = std::uniform_int_distribution<std::uint32_t>(0, max_size)(rng_);
    std::string value(size, '\0');
    for (char& c : value) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng_));
    return value;
  }

  bool Coin(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }

  // Both call forms, chosen at random.
  Status DoWrite(const WriteBatch& batch) {
    if (Coin(50)) return db_->Write(WriteOptions{.sync = Coin(5)}, batch);
    return scheduler_->BlockOn(db_->WriteAsync(WriteOptions{.sync = Coin(5)}, batch));
  }

  Status DoGet(const ReadOptions& read_options, const std::string& key, std::string* value) {
    if (Coin(50)) return db_->Get(read_options, key, value);
    return scheduler_->BlockOn(db_->GetAsync(read_options, key, value));
  }

  void CheckGet(const Model& model, const Snapshot* snapshot, const std::string& key) {
    std::string value;
    Status status = DoGet(ReadOptions{.snapshot = snapshot}, key, &value);
    auto it = model.find(key);
    if (it == model.end()) {
      ASSERT_TRUE(status.IsNotFound()) << key << ": " << status.ToString();
    } else {
      ASSERT_TRUE(status.ok()) << key << ": " << status.ToString();
      ASSERT_EQ(value, it->second) << key;
    }
  }

  void CheckFullScan(const Model& model, const Snapshot* snapshot) {
    std::unique_ptr<Iterator> it = db_->NewIterator(ReadOptions{.snapshot = snapshot});
    auto expected = model.begin();
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++expected) {
      ASSERT_NE(expected, model.end()) << "extra key " << it->key();
      ASSERT_EQ(it->key(), expected->first);
      ASSERT_EQ(it->value(), expected->second);
    }
    ASSERT_TRUE(it->status().ok()) << it->status().ToString();
    ASSERT_EQ(expected, model.end()) << "missing key " << expected->first;

    auto reverse = model.rbegin();
    for (it->SeekToLast(); it->Valid(); it->Prev(), ++reverse) {
      ASSERT_NE(reverse, model.rend()) << "extra key " << it->key();
      ASSERT_EQ(it->key(), reverse->first);
      ASSERT_EQ(it->value(), reverse->second);
    }
    ASSERT_TRUE(it->status().ok()) << it->status().ToString();
    ASSERT_EQ(reverse, model.rend());
  }

  // A Seek (or SeekForPrev), then random steps both ways, each compared with the model.
  void CheckSeekAndSteps(const Model& model, const Snapshot* snapshot) {
    std::unique_ptr<Iterator> it = db_->NewIterator(ReadOptions{.snapshot = snapshot});
    const std::string target = RandomKey();
    std::optional<Model::const_iterator> position;
    const bool for_prev = Coin(30);
    if (for_prev) {
      it->SeekForPrev(target);
      auto upper = model.upper_bound(target);
      if (upper != model.begin()) position = std::prev(upper);
    } else if (Coin(50)) {
      it->Seek(target);
      auto lower = model.lower_bound(target);
      if (lower != model.end()) position = lower;
    } else {
      scheduler_->BlockOn(it->SeekAsync(target));
      auto lower = model.lower_bound(target);
      if (lower != model.end()) position = lower;
    }
    for (int step = 0; step < 12; ++step) {
      ASSERT_TRUE(it->status().ok()) << it->status().ToString();
      ASSERT_EQ(it->Valid(), position.has_value()) << "step " << step << " target " << target;
      if (!position) return;
      ASSERT_EQ(it->key(), (*position)->first);
      ASSERT_EQ(it->value(), (*position)->second);
      if (Coin(60)) {
        it->Next();
        auto next = std::next(*position);
        position = next == model.end() ? std::nullopt : std::optional(next);
      } else {
        it->Prev();
        position = *position == model.begin() ? std::nullopt : std::optional(std::prev(*position));
      }
    }
  }

  void Run(std::uint64_t seed) {
    SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
    rng_.seed(seed);
    Model model;
    std::uint64_t flushes_before_reopens = 0;  // memtable flushes of the opens already closed
    std::uint64_t vlog_gc_before_reopens = 0;  // value logs collected by the opens closed
    for (std::uint32_t step = 0; step < GetParam().steps; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      const int op = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (op < 40) {
        WriteBatch batch;
        const std::string key = RandomKey();
        const std::string value = RandomValue();
        batch.Put(key, value);
        ASSERT_TRUE(DoWrite(batch).ok());
        model[key] = value;
      } else if (op < 50) {
        WriteBatch batch;
        const std::string key = RandomKey();
        batch.Delete(key);
        ASSERT_TRUE(DoWrite(batch).ok());
        model.erase(key);
      } else if (op < 58) {
        WriteBatch batch;
        const int updates = std::uniform_int_distribution<int>(1, 12)(rng_);
        Model after = model;
        for (int i = 0; i < updates; ++i) {
          const std::string key = RandomKey();
          if (Coin(75)) {
            const std::string value = RandomValue();
            batch.Put(key, value);
            after[key] = value;
          } else {
            batch.Delete(key);
            after.erase(key);
          }
        }
        ASSERT_TRUE(DoWrite(batch).ok());
        model = std::move(after);
      } else if (op < 80) {
        ASSERT_NO_FATAL_FAILURE(CheckGet(model, nullptr, RandomKey()));
      } else if (op < 83) {
        if (snapshots_.size() < 4) snapshots_.emplace_back(db_->GetSnapshot(), model);
      } else if (op < 85) {
        if (!snapshots_.empty()) {
          db_->ReleaseSnapshot(snapshots_.front().first);
          snapshots_.erase(snapshots_.begin());
        }
      } else if (op < 90) {
        if (!snapshots_.empty()) {
          const auto& [snapshot, snapshot_model] = snapshots_.back();
          ASSERT_NO_FATAL_FAILURE(CheckGet(snapshot_model, snapshot, RandomKey()));
          if (Coin(20)) {
            ASSERT_NO_FATAL_FAILURE(CheckSeekAndSteps(snapshot_model, snapshot));
          }
        }
      } else if (op < 95) {
        ASSERT_NO_FATAL_FAILURE(CheckSeekAndSteps(model, nullptr));
      } else if (op < 96) {
        ASSERT_NO_FATAL_FAILURE(CheckFullScan(model, nullptr));
      } else if (op < 98) {
        if (GetParam().separated_values && op == 97) {
          // Value-log GC now, with whatever snapshots and memtable contents there are: the
          // checks that follow read through its rewrites.
          auto collected = static_cast<DBImpl*>(db_.get())->RunVlogGcForTest();
          ASSERT_TRUE(collected.ok()) << collected.status().ToString();
        } else {
          ASSERT_TRUE(db_->Flush().ok());
        }
      } else {
        // Reopen: snapshots do not survive it; the data must.
        ReleaseSnapshots();
        flushes_before_reopens += db_->stats().memtable_flushes;
        vlog_gc_before_reopens += db_->stats().vlog_gc_files;
        ASSERT_TRUE(db_->Close().ok());
        db_.reset();
        ASSERT_NO_FATAL_FAILURE(Open());
        ASSERT_NO_FATAL_FAILURE(CheckFullScan(model, nullptr));
      }
    }
    ASSERT_NO_FATAL_FAILURE(CheckFullScan(model, nullptr));
    // Live SSTs can be few (compaction merges them, deletes empty ranges), so count flushes
    // over every open of the run.
    EXPECT_GT(flushes_before_reopens + db_->stats().memtable_flushes, 1u)
        << "the run made no SSTs: the test lost its point";
    if (GetParam().compaction) {
      std::uint64_t deep_files = 0;
      const std::vector<LevelStats> levels = db_->GetLevelStats();
      for (std::size_t level = 2; level < levels.size(); ++level) deep_files += levels[level].files;
      EXPECT_GT(deep_files, 0u) << "nothing reached level 2: the test lost its point";
      if (GetParam().separated_values) {
        EXPECT_GT(vlog_gc_before_reopens + db_->stats().vlog_gc_files, 0u)
            << "value-log GC never collected a file: the test lost its point";
      }
    }
  }

  std::mt19937_64 rng_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<testutil::TempDir> temp_;
  std::string dir_;
  Options options_;
  std::unique_ptr<DB> db_;
  std::vector<std::pair<const Snapshot*, Model>> snapshots_;
};

TEST_P(DbModelTest, RandomOperationsMatchModel) { Run(SeedFromEnvironment()); }

INSTANTIATE_TEST_SUITE_P(
    Settings, DbModelTest,
    ::testing::Values(ModelParam{EnvKind::kMem, Compression::kNone, 6000},
                      ModelParam{EnvKind::kMem, Compression::kZstd, 3000},
                      ModelParam{EnvKind::kScheduler, Compression::kNone, 3000},
                      ModelParam{EnvKind::kMem, Compression::kNone, 8000, true},
                      ModelParam{EnvKind::kMem, Compression::kZstd, 4000, true, 1},
                      ModelParam{EnvKind::kScheduler, Compression::kNone, 4000, true},
                      ModelParam{EnvKind::kMem, Compression::kNone, 6000, false, 0, true},
                      ModelParam{EnvKind::kMem, Compression::kNone, 6000, true, 0, true},
                      ModelParam{EnvKind::kScheduler, Compression::kNone, 3000, true, 0, true}),
    [](const ::testing::TestParamInfo<ModelParam>& info) {
      std::string name = info.param.env == EnvKind::kMem ? "MemEnv" : "SchedulerEnv";
      name += info.param.compression == Compression::kZstd ? "Zstd" : "Plain";
      if (info.param.compaction) name += "Compacting";
      if (info.param.compaction_rate_limit_mb_per_sec > 0) name += "Slowly";
      if (info.param.separated_values) name += "Separated";
      return name;
    });

}  // namespace
}  // namespace cascadefs::engine
