// db_crash_test.cc: power cuts and injected I/O errors; after reopening, every synced write
// is there, nothing is corrupt, and errors came back as Status.
//
// Method (LevelDB's fault_injection_test idea): random puts and deletes, some with sync, and
// some Flushes, run on a FaultEnv over MemEnv. At a random moment the disk freezes (every
// mutating operation fails), the store object is destroyed, and a power cut drops (all,
// some, or torn parts of) the unsynced data. The reopened store must equal the reference
// model after some prefix of the writes at least as long as the last synced one: nothing
// synced is lost, and no write appears without every write before it. Error injection (EIO
// on the Nth write or sync, ENOSPC after a byte budget) must surface as a Status from the
// write path, never a crash, and the store must reopen afterwards with the same guarantee.
// With tiny memtables and levels, compactions run all the time (some rate limited, so they
// last), and the power cuts land in the middle of them: outputs half written, synced but not
// yet in the manifest, in the manifest with inputs not yet deleted. After each reopen the
// store must also hold no obsolete or orphan SST.
// Seeds: CFS_TEST_SEED or the clock; printed on failure.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "env/mem_env.h"
#include "manifest/filename.h"
#include "testutil/fault_env.h"

namespace cascadefs::engine {
namespace {

using testutil::FaultEnv;
using testutil::FaultOp;
using testutil::PowerCutMode;

std::uint64_t Seed() {
  if (const char* text = std::getenv("CFS_TEST_SEED")) return std::strtoull(text, nullptr, 10);
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

struct Update {
  std::string key;
  std::optional<std::string> value;  // nullopt: a delete
};

class DbCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    base_ = NewMemEnv(scheduler_.get());
    fault_ = std::make_unique<FaultEnv>(base_.get());
    options_.scheduler = scheduler_.get();
    options_.env = fault_.get();
    options_.write_buffer_size_bytes = 16 << 10;
    options_.wal_segment_size_bytes = 64 << 10;
    options_.wal_buffer_size_bytes = 700;
    options_.block_size_bytes = 512;
    // CFS_TEST_LOG set: the store's log lines go to stderr, to follow a failing seed.
    if (std::getenv("CFS_TEST_LOG") != nullptr) {
      options_.info_log = [](std::string_view line) {
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
      };
    }
  }

  Result<std::unique_ptr<DB>> Open() { return DB::Open(options_, "/store"); }

  // The store's whole contents, by a blocking full scan.
  std::map<std::string, std::string> Contents(DB& db) {
    std::map<std::string, std::string> out;
    std::unique_ptr<Iterator> it = db.NewIterator({});
    for (it->SeekToFirst(); it->Valid(); it->Next()) out[std::string(it->key())] = it->value();
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return out;
  }

  // True when `recovered` equals the model after some prefix of `history` at least
  // `durable` long.
  static bool MatchesSomePrefix(const std::vector<Update>& history, std::size_t durable,
                                const std::map<std::string, std::string>& recovered,
                                std::size_t* matched) {
    std::map<std::string, std::string> model;
    for (std::size_t i = 0; i <= history.size(); ++i) {
      if (i >= durable && model == recovered) {
        *matched = i;
        return true;
      }
      if (i == history.size()) break;
      if (history[i].value) {
        model[history[i].key] = *history[i].value;
      } else {
        model.erase(history[i].key);
      }
    }
    return false;
  }

  // Runs random writes until `stop_after` of them or the first error; returns how many of
  // `history` were acknowledged as durable (the last synced write or flush).
  std::size_t RandomWrites(DB& db, std::mt19937_64& rng, std::vector<Update>* history,
                           int stop_after, Status* first_error, std::uint64_t key_space = 150) {
    std::size_t durable = 0;
    for (int i = 0; i < stop_after; ++i) {
      Update update;
      update.key = "k" + std::to_string(rng() % key_space);
      if (rng() % 5 != 0) {
        // With separated values on, a third of the values go to the value log.
        const std::size_t size =
            separated_values_ && rng() % 3 == 0 ? 64 + rng() % 2000 : 10 + rng() % 90;
        update.value = std::string(size, static_cast<char>('a' + rng() % 26));
        if (!update.value->empty()) (*update.value)[0] = static_cast<char>('0' + i % 10);
      }
      const bool sync = rng() % 10 == 0;
      Status status = update.value ? db.Put(WriteOptions{.sync = sync}, update.key, *update.value)
                                   : db.Delete(WriteOptions{.sync = sync}, update.key);
      if (!status.ok()) {
        // A failed write may or may not have reached the WAL: it stays in the history as a
        // possible (not durable) update.
        history->push_back(std::move(update));
        *first_error = status;
        return durable;
      }
      history->push_back(std::move(update));
      if (sync) durable = history->size();
      if (rng() % 200 == 0) {
        Status flushed = db.Flush();
        if (!flushed.ok()) {
          *first_error = flushed;
          return durable;
        }
        durable = history->size();
      }
    }
    return durable;
  }

  // Sends values of 64 bytes and more to the value log, in small files.
  void SeparateValues() {
    separated_values_ = true;
    options_.min_blob_size_bytes = 64;
    options_.vlog_file_size_bytes = 64 << 10;
    options_.vlog_unwritten_bytes_max = 1 << 20;
  }

  void PowerCutRounds();
  void CompactionPowerCutRounds();

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> base_;
  std::unique_ptr<FaultEnv> fault_;
  Options options_;
  bool separated_values_ = false;
};

TEST_F(DbCrashTest, PowerCutsLoseNothingSynced) { PowerCutRounds(); }

// The value log (docs/formats/vlog.md): values written once at the write, before the WAL
// record naming them. A power cut tears both logs; replay ends at the first pointer whose
// bytes were lost, and nothing synced is lost.
TEST_F(DbCrashTest, PowerCutsWithSeparatedValuesLoseNothingSynced) {
  SeparateValues();
  PowerCutRounds();
}

void DbCrashTest::PowerCutRounds() {
  const std::uint64_t seed = Seed();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<Update> history;
  std::size_t durable = 0;
  const PowerCutMode modes[] = {PowerCutMode::kDropAll, PowerCutMode::kDropRandom,
                                PowerCutMode::kTear};
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto db = Open();
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    // What the reopened store holds is the new baseline: a prefix of the history.
    std::size_t matched = 0;
    ASSERT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched))
        << "round " << round << ": the store lost synced writes or holds a non-prefix state";
    history.resize(matched);
    durable = matched;

    Status error;
    const std::size_t synced =
        RandomWrites(*db.value(), rng, &history, 100 + static_cast<int>(rng() % 1500), &error);
    ASSERT_TRUE(error.ok()) << error.ToString();
    durable = std::max(durable, synced);
    // Power cut: the disk freezes, the store goes away, unsynced data is lost.
    fault_->SetFilesystemActive(false);
    db.value().reset();
    ASSERT_TRUE(scheduler_->BlockOn(fault_->SimulatePowerCut(modes[round % 3], rng())).ok());
    fault_->SetFilesystemActive(true);
  }
  auto db = Open();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  std::size_t matched = 0;
  EXPECT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched));
}

TEST_F(DbCrashTest, PowerCutsDuringCompactionLoseNothingSyncedAndLeaveNoObsoleteFiles) {
  CompactionPowerCutRounds();
}

// The same with separated values: compactions move pointers and count the garbage they drop.
TEST_F(DbCrashTest, PowerCutsDuringCompactionWithSeparatedValuesLoseNothingSynced) {
  SeparateValues();
  CompactionPowerCutRounds();
}

void DbCrashTest::CompactionPowerCutRounds() {
  const std::uint64_t seed = Seed();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  options_.write_buffer_size_bytes = 8 << 10;
  options_.max_bytes_for_level_base = 16 << 10;
  options_.level_size_multiplier = 2;
  options_.target_file_size_bytes = 4 << 10;
  Options compacting = options_;
  compacting.level0_compaction_trigger = 2;
  compacting.level0_slowdown_writes_trigger = 4;
  compacting.level0_stop_writes_trigger = 8;
  // For the checks after each reopen: nothing compacts, so the directory holds still.
  Options still = options_;
  still.level0_compaction_trigger = 1000;
  still.level0_slowdown_writes_trigger = 1000;
  still.level0_stop_writes_trigger = 1000;
  still.max_bytes_for_level_base = std::uint64_t{1} << 40;

  std::vector<Update> history;
  std::size_t durable = 0;
  std::uint64_t compactions = 0;
  const PowerCutMode modes[] = {PowerCutMode::kDropAll, PowerCutMode::kDropRandom,
                                PowerCutMode::kTear};
  for (int round = 0; round < 16; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    {
      options_ = still;
      auto db = Open();
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      std::size_t matched = 0;
      ASSERT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched))
          << "the store lost synced writes or holds a non-prefix state";
      history.resize(matched);
      durable = matched;
      // Open removed the orphans of the cut compaction; obsolete inputs are gone too.
      std::uint64_t live = 0;
      for (const LevelStats& level : db.value()->GetLevelStats()) live += level.files;
      auto names = base_->ListDir("/store");
      ASSERT_TRUE(names.ok());
      std::uint64_t on_disk = 0;
      for (const std::string& name : names.value()) {
        std::uint64_t number = 0;
        FileType type{};
        if (ParseFileName(name, &number, &type) && type == FileType::kSst) ++on_disk;
      }
      EXPECT_EQ(on_disk, live) << "SST files nothing refers to survived a reopen";
      ASSERT_TRUE(db.value()->Close().ok());
    }
    options_ = compacting;
    // Every other round compacts slowly, so more cuts land inside a compaction.
    options_.compaction_rate_limit_mb_per_sec = round % 2 == 0 ? 0 : 1;
    auto db = Open();
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    Status error;
    const std::size_t synced = RandomWrites(*db.value(), rng, &history,
                                            300 + static_cast<int>(rng() % 1500), &error, 2000);
    ASSERT_TRUE(error.ok()) << error.ToString();
    durable = std::max(durable, synced);
    compactions += db.value()->stats().compactions;
    fault_->SetFilesystemActive(false);
    db.value().reset();
    ASSERT_TRUE(scheduler_->BlockOn(fault_->SimulatePowerCut(modes[round % 3], rng())).ok());
    fault_->SetFilesystemActive(true);
  }
  EXPECT_GT(compactions, 10u) << "too few compactions ran: the test lost its point";
  options_ = still;
  auto db = Open();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  std::size_t matched = 0;
  EXPECT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched));
  std::uint64_t deep_files = 0;
  const std::vector<LevelStats> levels = db.value()->GetLevelStats();
  for (std::size_t level = 2; level < levels.size(); ++level) deep_files += levels[level].files;
  EXPECT_GT(deep_files, 0u) << "nothing reached level 2";
}

TEST_F(DbCrashTest, InjectedErrorsComeBackAsStatusAndTheStoreReopens) {
  const std::uint64_t seed = Seed();
  SCOPED_TRACE("CFS_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Case {
    const char* name;
    FaultOp op;
    Status error;
    bool no_space;
  };
  const Case cases[] = {
      {"EIO on a WAL or SST write", FaultOp::kWrite, Status::FromErrno(EIO, "injected"), false},
      {"EIO on a sync", FaultOp::kSync, Status::FromErrno(EIO, "injected"), false},
      {"ENOSPC", FaultOp::kWrite, Status::OK(), true},
      {"EIO on opening a new file", FaultOp::kOpenWrite, Status::FromErrno(EIO, "injected"), false},
  };
  std::vector<Update> history;
  std::size_t durable = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto db = Open();
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    std::size_t matched = 0;
    ASSERT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched));
    history.resize(matched);
    durable = matched;
    if (c.no_space) {
      fault_->SetNoSpaceAfterBytes(20000 + rng() % 20000);
    } else {
      fault_->FailOperation(c.op, 3 + rng() % 20, c.error, /*sticky=*/true);
    }
    Status error;
    durable = std::max(durable, RandomWrites(*db.value(), rng, &history, 20000, &error));
    ASSERT_FALSE(error.ok()) << "the injected fault never surfaced";
    if (c.no_space) {
      EXPECT_TRUE(error.IsNoSpace()) << error.ToString();
    } else {
      EXPECT_TRUE(error.IsIOError()) << error.ToString();
    }
    // An I/O error is sticky: the store refuses further writes rather than losing them. Out of
    // space is not, when a memtable flush met it (AFlushOutOfSpaceIsRetriedAndWritesGoOn): a
    // write that still fits the memtable is taken, one that needs its room gets NoSpace.
    // Either way the write is a possible (not durable) update.
    const Status after = db.value()->Put({}, "after", "error");
    history.push_back(Update{.key = "after", .value = "error"});
    if (c.no_space) {
      EXPECT_TRUE(after.ok() || after.IsNoSpace()) << after.ToString();
    } else {
      EXPECT_FALSE(after.ok());
    }
    fault_->SetFilesystemActive(false);
    db.value().reset();
    fault_->ClearFaults();
    ASSERT_TRUE(
        scheduler_->BlockOn(fault_->SimulatePowerCut(PowerCutMode::kDropRandom, rng())).ok());
    fault_->SetFilesystemActive(true);
  }
  auto db = Open();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  std::size_t matched = 0;
  EXPECT_TRUE(MatchesSomePrefix(history, durable, Contents(*db.value()), &matched));
}

// A flush that meets a full disk is not the end of the store: the flush is retried after
// a pause, writes that fit the memtable go on meanwhile, and once space is back everything
// written reaches an SST with no partial table left behind.
TEST_F(DbCrashTest, AFlushOutOfSpaceIsRetriedAndWritesGoOn) {
  options_.write_buffer_size_bytes = 1 << 20;
  auto db = Open();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  std::map<std::string, std::string> model;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "k" + std::to_string(i);
    model[key] = std::string(50 + i % 40, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(db.value()->Put(WriteOptions{.sync = i == 199}, key, model[key]).ok());
  }
  // The disk fills just as the table is written (the WAL's own growth meeting ENOSPC is the
  // store's sticky error, InjectedErrorsComeBackAsStatusAndTheStoreReopens).
  fault_->SetNoSpaceAfterBytes(0, ".sst");
  Status flushed = db.value()->Flush();
  EXPECT_TRUE(flushed.IsNoSpace()) << flushed.ToString();
  // Space comes back (a user deleted something elsewhere on the disk).
  fault_->ClearFaults();
  // Not sticky: a write into the fresh memtable succeeds while the flush waits to retry.
  Status deleted = db.value()->Delete(WriteOptions{.sync = true}, "k0");
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  model.erase("k0");
  // The retried flush goes through; Flush itself waits for the memtable in front of it.
  Status retried;
  for (int attempt = 0; attempt < 100; ++attempt) {
    retried = db.value()->Flush();
    if (retried.ok()) break;
    ASSERT_TRUE(retried.IsNoSpace()) << retried.ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(retried.ok()) << retried.ToString();
  EXPECT_GE(db.value()->stats().flushes_failed_no_space, 1u);
  EXPECT_EQ(Contents(*db.value()), model);
  db.value().reset();
  // Only the tables a Version names are left: the partial one was removed.
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(Contents(*reopened.value()), model);
  std::uint64_t live_tables = 0;
  for (const LevelStats& level : reopened.value()->GetLevelStats()) live_tables += level.files;
  auto names = fault_->ListDir("/store");
  ASSERT_TRUE(names.ok());
  std::uint64_t tables_on_disk = 0;
  for (const std::string& name : names.value()) {
    if (name.ends_with(".sst")) ++tables_on_disk;
  }
  EXPECT_EQ(tables_on_disk, live_tables);
}

}  // namespace
}  // namespace cascadefs::engine
