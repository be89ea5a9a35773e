// db_checkpoint_test.cc: DB::Checkpoint makes a copy of an open store that opens on its own.
//
// Goal: the promises of db.h's Checkpoint. Method: build a store (data in SSTs on several
// levels and in the memtable), checkpoint it, open the checkpoint and compare full scans
// with a model (std::map). Around that: writers racing with checkpoints (each batch writes a
// pair of keys; a checkpoint holds every batch acknowledged before it started, whole batches
// only, and a prefix of each writer's batches), power cuts at every step of a checkpoint
// (FaultEnv: the source reopens with all its synced data, and the target is absent or
// complete), an existing target, hard links refused (the copy path), and the two stores
// diverging after writes to each. Files on a real disk where hard links matter (link count),
// MemEnv elsewhere.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
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
#include "testutil/fault_env.h"
#include "testutil/temp_dir.h"

namespace cascadefs::engine {
namespace {

using Model = std::map<std::string, std::string>;
using testutil::FaultEnv;
using testutil::FaultOp;
using testutil::PowerCutMode;

Model Contents(DB& db) {
  Model out;
  std::unique_ptr<Iterator> it = db.NewIterator({});
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[std::string(it->key())] = it->value();
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return out;
}

std::string Key(int i) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "key%06d", i);
  return buffer;
}

class DbCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    options_.scheduler = scheduler_.get();
    options_.write_buffer_size_bytes = 16 << 10;
    options_.block_size_bytes = 512;
    options_.target_file_size_bytes = 8 << 10;
    options_.max_bytes_for_level_base = 64 << 10;
  }

  void UseMemEnv() {
    base_env_ = NewMemEnv(scheduler_.get());
    options_.env = base_env_.get();
    root_ = "/root";
    ASSERT_TRUE(base_env_->CreateDirIfMissing(root_).ok());
  }
  void UseDisk() {
    base_env_ = NewSchedulerEnv(scheduler_.get());
    options_.env = base_env_.get();
    root_ = temp_.path();
  }

  std::unique_ptr<DB> OpenOrDie(const std::string& dir, bool create = true) {
    Options options = options_;
    options.create_if_missing = create;
    auto db = DB::Open(options, dir);
    EXPECT_TRUE(db.ok()) << dir << ": " << db.status().ToString();
    return db.ok() ? std::move(db).value() : nullptr;
  }

  bool Exists(const std::string& path) {
    return scheduler_->BlockOn(options_.env->FileSize(path)).ok();
  }

  // Writes keys [first, last) with values tagged `tag` into `db` and `model`.
  static void PutRange(DB& db, Model* model, int first, int last, const std::string& tag) {
    for (int i = first; i < last; ++i) {
      const std::string value = tag + "-" + std::to_string(i) + std::string(40, 'v');
      ASSERT_TRUE(db.Put({}, Key(i), value).ok());
      (*model)[Key(i)] = value;
    }
  }

  // A store with SSTs on levels 2, 1 and 0, deletions, and entries only in the memtable.
  void BuildLayeredStore(DB& db, Model* model) {
    auto& impl = static_cast<DBImpl&>(db);
    PutRange(db, model, 0, 600, "a");
    ASSERT_TRUE(db.Flush().ok());
    ASSERT_TRUE(impl.CompactLevelForTest(0).ok());
    ASSERT_TRUE(impl.CompactLevelForTest(1).ok());
    PutRange(db, model, 300, 500, "b");
    ASSERT_TRUE(db.Flush().ok());
    ASSERT_TRUE(impl.CompactLevelForTest(0).ok());
    PutRange(db, model, 450, 550, "c");
    ASSERT_TRUE(db.Flush().ok());
    PutRange(db, model, 540, 700, "d");  // memtable only
    for (int i = 0; i < 700; i += 7) {
      ASSERT_TRUE(db.Delete({}, Key(i)).ok());
      model->erase(Key(i));
    }
  }

  testutil::TempDir temp_;
  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> base_env_;
  std::string root_;
  Options options_;
};

TEST_F(DbCheckpointTest, HoldsEveryLevelAndTheMemtableAndLinksSsts) {
  UseDisk();
  auto db = OpenOrDie(root_ + "/store");
  Model model;
  BuildLayeredStore(*db, &model);
  const std::vector<LevelStats> levels = db->GetLevelStats();
  EXPECT_GT(levels[0].files, 0u);
  EXPECT_GT(levels[1].files, 0u);
  EXPECT_GT(levels[2].files, 0u);

  const std::string target = root_ + "/checkpoint";
  ASSERT_TRUE(db->Checkpoint(target).ok());
  EXPECT_FALSE(Exists(target + ".tmp-checkpoint"));
  EXPECT_EQ(Contents(*db), model);

  // Every SST of the checkpoint is a second name of a source SST (same inode).
  auto names = base_env_->ListDir(target);
  ASSERT_TRUE(names.ok());
  int ssts = 0;
  for (const std::string& name : names.value()) {
    std::uint64_t number = 0;
    FileType type{};
    ASSERT_TRUE(ParseFileName(name, &number, &type)) << name;
    EXPECT_NE(type, FileType::kWal) << name;  // the memtable was flushed, no WAL copied
    if (type != FileType::kSst) continue;
    ++ssts;
    struct stat in_checkpoint {};
    struct stat in_source {};
    ASSERT_EQ(::stat((target + "/" + name).c_str(), &in_checkpoint), 0);
    ASSERT_EQ(::stat((root_ + "/store/" + name).c_str(), &in_source), 0);
    EXPECT_EQ(in_checkpoint.st_ino, in_source.st_ino) << name;
    EXPECT_GE(in_checkpoint.st_nlink, 2u) << name;
  }
  EXPECT_EQ(static_cast<std::uint64_t>(ssts), db->stats().sst_files);

  auto copy = OpenOrDie(target, /*create=*/false);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(Contents(*copy), model);
  ASSERT_TRUE(copy->Close().ok());
  ASSERT_TRUE(db->Close().ok());
}

TEST_F(DbCheckpointTest, AsyncFormOnTheScheduler) {
  UseMemEnv();
  auto db = OpenOrDie(root_ + "/store");
  Model model;
  PutRange(*db, &model, 0, 50, "x");
  const std::string target = root_ + "/async";
  Status status = scheduler_->BlockOn(db->CheckpointAsync(target));
  ASSERT_TRUE(status.ok()) << status.ToString();
  auto copy = OpenOrDie(target, false);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(Contents(*copy), model);
}

TEST_F(DbCheckpointTest, ExistingTargetIsRefusedAndLeftAlone) {
  UseMemEnv();
  auto db = OpenOrDie(root_ + "/store");
  ASSERT_TRUE(db->Put({}, "k", "v").ok());

  ASSERT_TRUE(base_env_->CreateDirIfMissing(root_ + "/dir").ok());
  Status status = db->Checkpoint(root_ + "/dir");
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.ToString().find(root_ + "/dir: target exists"), std::string::npos)
      << status.ToString();

  auto file =
      scheduler_->BlockOn(base_env_->NewWritableFile(root_ + "/file", WriteMode::kCreateExclusive));
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(scheduler_->BlockOn(file.value()->Close()).ok());
  status = db->Checkpoint(root_ + "/file");
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_TRUE(Exists(root_ + "/file"));

  // A leftover temporary directory of an interrupted checkpoint is named, not reused.
  ASSERT_TRUE(base_env_->CreateDirIfMissing(root_ + "/cp.tmp-checkpoint").ok());
  status = db->Checkpoint(root_ + "/cp");
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.ToString().find(root_ + "/cp.tmp-checkpoint exists"), std::string::npos)
      << status.ToString();
  EXPECT_FALSE(Exists(root_ + "/cp"));

  // A parent that does not exist: an I/O error naming the target, nothing left behind.
  status = db->Checkpoint(root_ + "/missing/cp");
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.ToString().find(root_ + "/missing/cp"), std::string::npos) << status.ToString();

  ASSERT_TRUE(db->Close().ok());
  status = db->Checkpoint(root_ + "/after-close");
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_FALSE(Exists(root_ + "/after-close"));
}

TEST_F(DbCheckpointTest, SourceAndCheckpointDivergeIndependently) {
  UseDisk();
  auto db = OpenOrDie(root_ + "/store");
  Model model;
  BuildLayeredStore(*db, &model);
  const std::string target = root_ + "/checkpoint";
  ASSERT_TRUE(db->Checkpoint(target).ok());
  Model checkpoint_model = model;

  // Rewrite the source enough that compactions replace (and delete) the linked SSTs.
  PutRange(*db, &model, 0, 700, "source");
  ASSERT_TRUE(db->Delete({}, Key(1)).ok());
  model.erase(Key(1));
  ASSERT_TRUE(db->Flush().ok());
  auto& impl = static_cast<DBImpl&>(*db);
  ASSERT_TRUE(impl.CompactLevelForTest(0).ok());
  ASSERT_TRUE(impl.CompactLevelForTest(1).ok());

  auto copy = OpenOrDie(target, false);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(Contents(*copy), checkpoint_model);
  PutRange(*copy, &checkpoint_model, 650, 900, "copy");
  ASSERT_TRUE(copy->Delete({}, Key(2)).ok());
  checkpoint_model.erase(Key(2));
  ASSERT_TRUE(copy->Flush().ok());
  auto& copy_impl = static_cast<DBImpl&>(*copy);
  ASSERT_TRUE(copy_impl.CompactLevelForTest(0).ok());
  ASSERT_TRUE(copy_impl.CompactLevelForTest(1).ok());

  EXPECT_EQ(Contents(*db), model);
  EXPECT_EQ(Contents(*copy), checkpoint_model);
  ASSERT_TRUE(copy->Close().ok());
  ASSERT_TRUE(db->Close().ok());
  // And after both reopen.
  db = OpenOrDie(root_ + "/store", false);
  copy = OpenOrDie(target, false);
  ASSERT_NE(db, nullptr);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(Contents(*db), model);
  EXPECT_EQ(Contents(*copy), checkpoint_model);
}

TEST_F(DbCheckpointTest, CopiesWhenHardLinksAreRefused) {
  UseMemEnv();
  FaultEnv fault(base_env_.get());
  options_.env = &fault;
  fault.FailOperation(FaultOp::kLink, 0, Status::NotSupported("no hard links here"),
                      /*sticky=*/true);
  auto db = OpenOrDie(root_ + "/store");
  Model model;
  BuildLayeredStore(*db, &model);
  const std::string target = root_ + "/checkpoint";
  Status status = db->Checkpoint(target);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_GT(fault.operations(FaultOp::kLink), 0u);
  // Copies are separate files: rewriting the source's cannot reach them.
  auto copy = OpenOrDie(target, false);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(Contents(*copy), model);
}

// Writers commit batches of two keys ("w<t>-<i>-a", "w<t>-<i>-b") while checkpoints run. Each
// checkpoint must hold every batch acknowledged before it started, never half a batch, and for
// each writer a prefix of its batches (what survives is a prefix of the write order).
TEST_F(DbCheckpointTest, ConcurrentWritersSeeWholeBatchesAndEveryAcknowledgedOne) {
  UseMemEnv();
  constexpr int kWriters = 3;
  constexpr int kCheckpoints = 3;
  constexpr int kBatchesBeforeEachCheckpoint = 40;
  constexpr int kBatchesMax = 100000;  // a writer's bound, far above what the test needs
  auto db = OpenOrDie(root_ + "/store");
  std::atomic<bool> stop{false};
  std::array<std::atomic<int>, kWriters> acknowledged{};  // batches acknowledged per writer
  std::array<std::atomic<bool>, kWriters> finished{};     // a writer stopped (error or bound)
  for (auto& count : acknowledged) count.store(0);
  for (auto& flag : finished) flag.store(false);
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kBatchesMax && !stop.load(); ++i) {
        WriteBatch batch;
        const std::string prefix = "w" + std::to_string(t) + "-" + Key(i);
        const std::string value(100, static_cast<char>('a' + i % 26));
        batch.Put(prefix + "-a", value);
        batch.Put(prefix + "-b", value);
        Status status = db->Write({}, batch);
        if (!status.ok()) {
          ADD_FAILURE() << status.ToString();
          break;
        }
        acknowledged[t].store(i + 1);
      }
      finished[t].store(true);
    });
  }

  std::vector<std::array<int, kWriters>> before(kCheckpoints);
  for (int c = 0; c < kCheckpoints; ++c) {
    // Let each writer get some batches in; bounded by the writers' own bound.
    for (int t = 0; t < kWriters; ++t) {
      const int wanted = (c + 1) * kBatchesBeforeEachCheckpoint;
      while (acknowledged[t].load() < wanted && !finished[t].load()) std::this_thread::yield();
    }
    for (int t = 0; t < kWriters; ++t) before[c][t] = acknowledged[t].load();
    Status status = db->Checkpoint(root_ + "/cp" + std::to_string(c));
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  stop.store(true);
  for (auto& writer : writers) writer.join();

  for (int c = 0; c < kCheckpoints; ++c) {
    auto copy = OpenOrDie(root_ + "/cp" + std::to_string(c), false);
    ASSERT_NE(copy, nullptr);
    const Model contents = Contents(*copy);
    std::array<int, kWriters> batches{};  // per writer: batches held, counted in key order
    for (const auto& [key, value] : contents) {
      ASSERT_EQ(key[0], 'w') << key;
      const int t = key[1] - '0';
      ASSERT_TRUE(t >= 0 && t < kWriters) << key;
      if (key.back() != 'a') continue;
      const std::string pair = key.substr(0, key.size() - 1) + "b";
      EXPECT_EQ(contents.count(pair), 1u) << "checkpoint " << c << " holds half a batch: " << key;
      const int i = std::stoi(key.substr(key.find("key") + 3, 6));
      // Key order is batch order within a writer: a prefix means i == batches so far.
      EXPECT_EQ(i, batches[t]) << "checkpoint " << c << ": writer " << t << " has a gap";
      ++batches[t];
    }
    for (int t = 0; t < kWriters; ++t) {
      EXPECT_GE(batches[t], before[c][t])
          << "checkpoint " << c << " lost writes of writer " << t << " acknowledged before it";
    }
  }
}

// A power cut at the n-th operation of one kind during a checkpoint, for every n until the
// checkpoint gets through. The source must reopen with everything it had synced, and the
// target must be absent, or open with everything (the checkpoint was of a quiet store).
class DbCheckpointCrashTest : public DbCheckpointTest,
                              public ::testing::WithParamInterface<std::pair<FaultOp, bool>> {};

TEST_P(DbCheckpointCrashTest, PowerCutLeavesSourceWholeAndTargetAbsentOrComplete) {
  const auto [op, links_refused] = GetParam();
  constexpr std::uint64_t kCutPointsMax = 200;
  bool got_through = false;
  for (std::uint64_t n = 0; n < kCutPointsMax && !got_through; ++n) {
    SCOPED_TRACE("power cut at operation " + std::to_string(n));
    UseMemEnv();
    auto fault = std::make_unique<FaultEnv>(base_env_.get());
    options_.env = fault.get();
    if (links_refused) {
      fault->FailOperation(FaultOp::kLink, 0, Status::NotSupported("no hard links"), true);
    }
    const std::string store = root_ + "/store";
    const std::string target = root_ + "/checkpoint";
    auto db = OpenOrDie(store);
    ASSERT_NE(db, nullptr);
    Model model;
    BuildLayeredStore(*db, &model);
    ASSERT_TRUE(db->Put(WriteOptions{.sync = true}, "synced", "yes").ok());  // durable now
    model["synced"] = "yes";

    const std::uint64_t ops_before = fault->operations(op);
    fault->PowerCutAt(op, n);
    const Status status = db->Checkpoint(target);
    got_through = fault->operations(op) - ops_before <= n;
    if (got_through) {
      ASSERT_TRUE(status.ok()) << status.ToString();
    }
    if (!status.ok()) {
      EXPECT_NE(status.ToString().find(target), std::string::npos) << status.ToString();
    }
    // Power goes now in any case (right after a checkpoint that got through).
    fault->SetFilesystemActive(false);
    db.reset();
    ASSERT_TRUE(scheduler_->BlockOn(fault->SimulatePowerCut(PowerCutMode::kDropAll, n)).ok());
    fault->ClearFaults();
    fault->SetFilesystemActive(true);

    db = OpenOrDie(store, false);
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(Contents(*db), model);
    db.reset();
    if (status.ok()) {
      ASSERT_TRUE(Exists(target)) << "a checkpoint that returned OK is lost";
    }
    if (Exists(target)) {
      auto copy = OpenOrDie(target, false);
      ASSERT_NE(copy, nullptr);
      EXPECT_EQ(Contents(*copy), model);
    }
    fault.reset();
    options_.env = nullptr;
  }
  EXPECT_TRUE(got_through) << "more than " << kCutPointsMax << " operations in a checkpoint";
}

INSTANTIATE_TEST_SUITE_P(
    AtEachStep, DbCheckpointCrashTest,
    ::testing::Values(std::pair{FaultOp::kLink, false}, std::pair{FaultOp::kMkdir, false},
                      std::pair{FaultOp::kOpenWrite, false}, std::pair{FaultOp::kWrite, false},
                      std::pair{FaultOp::kSync, false}, std::pair{FaultOp::kSyncDir, false},
                      std::pair{FaultOp::kRename, false}, std::pair{FaultOp::kWrite, true},
                      std::pair{FaultOp::kSync, true}, std::pair{FaultOp::kSyncDir, true}));

}  // namespace
}  // namespace cascadefs::engine
