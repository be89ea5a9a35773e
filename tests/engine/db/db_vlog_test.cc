// db_vlog_test.cc: the value log as the DB uses it (docs/formats/vlog.md).
//
// Goal: values of at least min_blob_size_bytes are written to the value log once, at the
// write, and read back through their pointers from the memtable, SSTs and after a reopen, by
// Get and by iterators in both directions; compactions count the garbage they drop; a
// checkpoint carries the value logs; damage is reported as Corruption naming the file, never
// as other bytes. Method: a MemEnv store with small memtables and value-log files, compared
// with a std::map model; damage is made by rewriting bytes of the files in the MemEnv.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
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
#include "vlog/vlog_format.h"

namespace cascadefs::engine {
namespace {

using Model = std::map<std::string, std::string>;

std::string Key(int i) { return "key" + std::to_string(100000 + i); }

// A value of `size` bytes that differs per key and version.
std::string Value(int i, int version, std::size_t size) {
  std::string value(size, '\0');
  for (std::size_t b = 0; b < size; ++b) {
    value[b] = static_cast<char>((i * 131 + version * 31 + static_cast<int>(b) * 7) & 0xff);
  }
  return value;
}

class DbVlogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewMemEnv(scheduler_.get());
    options_.scheduler = scheduler_.get();
    options_.env = env_.get();
    options_.write_buffer_size_bytes = 32 << 10;
    options_.block_size_bytes = 512;
    options_.target_file_size_bytes = 8 << 10;
    options_.max_bytes_for_level_base = 32 << 10;
    options_.level_size_multiplier = 2;
    options_.min_blob_size_bytes = 256;
    options_.vlog_file_size_bytes = 64 << 10;
    options_.vlog_unwritten_bytes_max = 1 << 20;
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
    Open();
  }

  Model Scan(bool backward = false) {
    Model out;
    std::unique_ptr<Iterator> it = db_->NewIterator({});
    if (backward) {
      for (it->SeekToLast(); it->Valid(); it->Prev()) out[std::string(it->key())] = it->value();
    } else {
      for (it->SeekToFirst(); it->Valid(); it->Next()) out[std::string(it->key())] = it->value();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return out;
  }

  void ExpectModel(const Model& model) {
    for (const auto& [key, value] : model) {
      std::string got;
      Status status = db_->Get({}, key, &got);
      ASSERT_TRUE(status.ok()) << key << ": " << status.ToString();
      ASSERT_EQ(got, value) << key;
    }
    EXPECT_EQ(Scan(false), model);
    EXPECT_EQ(Scan(true), model);
  }

  std::vector<std::uint64_t> VlogFiles() {
    std::vector<std::uint64_t> out;
    auto names = env_->ListDir(dir_);
    EXPECT_TRUE(names.ok());
    for (const std::string& name : names.value()) {
      std::uint64_t number = 0;
      FileType type{};
      if (ParseFileName(name, &number, &type) && type == FileType::kVlog) out.push_back(number);
    }
    return out;
  }

  // Overwrites `size` bytes at `offset` of `path` with their complement.
  void Damage(const std::string& path, std::uint64_t offset, std::size_t size) {
    auto reader = scheduler_->BlockOn(env_->NewRandomAccessFile(path));
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    std::string bytes(size, '\0');
    auto got = scheduler_->BlockOn(reader.value()->Read(offset, size, bytes.data()));
    ASSERT_TRUE(got.ok());
    for (char& c : bytes) c = static_cast<char>(~c);
    auto writer = scheduler_->BlockOn(env_->NewWritableFile(path, WriteMode::kOpenExisting));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(scheduler_->BlockOn(writer.value()->WriteAt(offset, bytes)).ok());
    ASSERT_TRUE(scheduler_->BlockOn(writer.value()->Close()).ok());
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  Options options_;
  std::string dir_ = "/store";
  std::unique_ptr<DB> db_;
};

TEST_F(DbVlogTest, LargeValuesGoToTheValueLogAndReadBackEverywhere) {
  Open();
  Model model;
  // Small values stay in the LSM, large ones are separated; both kinds under the same keys.
  for (int i = 0; i < 400; ++i) {
    const std::size_t size = i % 3 == 0 ? 40 : 256 + static_cast<std::size_t>(i) * 13 % 3000;
    model[Key(i)] = Value(i, 0, size);
    ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
  }
  // From the memtable (and values still in the value log's buffer).
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
  const DbStats stats = db_->stats();
  EXPECT_GE(stats.vlog_records_written, 260u);
  EXPECT_GT(stats.vlog_reads, 0u);
  // The WAL carries pointers, not the values: far fewer bytes than the values'.
  EXPECT_LT(stats.wal_bytes_written, stats.user_bytes_written / 4);
  // From SSTs.
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
  // Overwrites, deletes, and a reopen.
  for (int i = 0; i < 400; i += 2) {
    if (i % 10 == 0) {
      model.erase(Key(i));
      ASSERT_TRUE(db_->Delete({}, Key(i)).ok());
    } else {
      model[Key(i)] = Value(i, 1, 300 + static_cast<std::size_t>(i));
      ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
    }
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
  // Values of ~600 KiB in 64 KiB files: the value log rolled.
  EXPECT_GE(VlogFiles().size(), 5u);
}

TEST_F(DbVlogTest, SnapshotsReadOldVersionsThroughTheirPointers) {
  Open();
  ASSERT_TRUE(db_->Put({}, "k", Value(1, 0, 1000)).ok());
  const Snapshot* snapshot = db_->GetSnapshot();
  ASSERT_TRUE(db_->Put({}, "k", Value(1, 1, 1000)).ok());
  ASSERT_TRUE(db_->Flush().ok());
  std::string got;
  ASSERT_TRUE(db_->Get(ReadOptions{.snapshot = snapshot}, "k", &got).ok());
  EXPECT_EQ(got, Value(1, 0, 1000));
  ASSERT_TRUE(db_->Get({}, "k", &got).ok());
  EXPECT_EQ(got, Value(1, 1, 1000));
  db_->ReleaseSnapshot(snapshot);
}

// Values are lazy (RocksDB's allow_unprepared_value): iterator_values false reads none until
// PrepareValue asks.
TEST_F(DbVlogTest, AKeyScanReadsNoValueLogRecord) {
  Open();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 0, 2000)).ok());
  ASSERT_TRUE(db_->Flush().ok());
  const std::uint64_t reads_before = db_->stats().vlog_reads;
  ReadOptions keys_only;
  keys_only.iterator_values = false;
  std::unique_ptr<Iterator> it = db_->NewIterator(keys_only);
  int keys = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    EXPECT_TRUE(it->value().empty());
    ++keys;
  }
  ASSERT_TRUE(it->status().ok());
  EXPECT_EQ(keys, 50);
  EXPECT_EQ(db_->stats().vlog_reads, reads_before);
  // PrepareValue reads one value, in either direction.
  it->Seek(Key(7));
  ASSERT_TRUE(it->Valid());
  ASSERT_TRUE(it->PrepareValue());
  EXPECT_EQ(it->value(), Value(7, 0, 2000));
  EXPECT_EQ(db_->stats().vlog_reads, reads_before + 1);
  ASSERT_TRUE(it->PrepareValue());  // once prepared, no second read
  EXPECT_EQ(db_->stats().vlog_reads, reads_before + 1);
  it->Prev();
  ASSERT_TRUE(it->Valid());
  EXPECT_TRUE(it->value().empty());
  ASSERT_TRUE(it->PrepareValue());
  EXPECT_EQ(it->value(), Value(6, 0, 2000));
}

TEST_F(DbVlogTest, CompactionsCountTheGarbageTheyDrop) {
  Open();
  // One key in four overwritten: its first record becomes garbage once a compaction drops
  // the old pointer. No file reaches the GC ratio (0.5), so nothing is collected meanwhile.
  for (int version = 0; version < 2; ++version) {
    for (int i = 0; i < 200; ++i) {
      if (version == 0 || i % 4 == 0) {
        ASSERT_TRUE(db_->Put({}, Key(i), Value(i, version, 1024)).ok());
      }
    }
    ASSERT_TRUE(db_->Flush().ok());
  }
  auto* impl = static_cast<DBImpl*>(db_.get());
  for (int level = 0; level < 3; ++level) ASSERT_TRUE(impl->CompactLevelForTest(level).ok());
  const DbStats stats = db_->stats();
  // 50 dropped records of 1024 + key + 13 bytes each.
  EXPECT_GE(stats.vlog_garbage_bytes, 50u * 1024u);
  EXPECT_EQ(stats.vlog_gc_files, 0u);
  EXPECT_GT(stats.vlog_files, 0u);
  std::string property;
  ASSERT_TRUE(db_->GetProperty("cascade.vlog", &property));
  EXPECT_NE(property.find("garbage"), std::string::npos) << property;
  // Garbage counts survive a reopen (they are in the manifest).
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(db_->stats().vlog_garbage_bytes, stats.vlog_garbage_bytes);
  for (int i = 0; i < 200; ++i) {
    std::string got;
    ASSERT_TRUE(db_->Get({}, Key(i), &got).ok());
    ASSERT_EQ(got, Value(i, i % 4 == 0 ? 1 : 0, 1024));
  }
}

// The bound: every key overwritten three times, then compaction and GC: the store
// takes at most 1.5x the live data.
TEST_F(DbVlogTest, GcReturnsTheSpaceOfOverwrittenValues) {
  options_.vlog_file_size_bytes = 256 << 10;
  Open();
  constexpr int kKeys = 400;
  constexpr std::size_t kValueBytes = 4096;
  for (int version = 0; version < 3; ++version) {
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_TRUE(db_->Put({}, Key(i), Value(i, version, kValueBytes)).ok());
    }
  }
  ASSERT_TRUE(db_->Flush().ok());
  auto* impl = static_cast<DBImpl*>(db_.get());
  for (int level = 0; level + 1 < kNumLevels; ++level) {
    ASSERT_TRUE(impl->CompactLevelForTest(level).ok());
  }
  auto collected = impl->RunVlogGcForTest();
  ASSERT_TRUE(collected.ok()) << collected.status().ToString();
  const DbStats stats = db_->stats();
  EXPECT_GT(stats.vlog_gc_files, 0u);
  EXPECT_EQ(stats.vlog_files_deleted, stats.vlog_gc_files);

  std::uint64_t on_disk = stats.sst_bytes;
  for (std::uint64_t number : VlogFiles()) {
    auto size = scheduler_->BlockOn(env_->FileSize(VlogFileName(dir_, number)));
    ASSERT_TRUE(size.ok());
    on_disk += size.value();
  }
  const std::uint64_t live = kKeys * (kValueBytes + Key(0).size());
  EXPECT_LE(static_cast<double>(on_disk), 1.5 * static_cast<double>(live))
      << on_disk << " bytes on disk for " << live << " live bytes";
  for (int i = 0; i < kKeys; ++i) {
    std::string got;
    ASSERT_TRUE(db_->Get({}, Key(i), &got).ok());
    ASSERT_EQ(got, Value(i, 2, kValueBytes));
  }
}

// GC rewrites live values while readers hold snapshots and iterators: they keep reading the
// old file until they are released; the file is deleted after that.
TEST_F(DbVlogTest, GcKeepsAFileWhileASnapshotOrIteratorCanReadIt) {
  Open();
  constexpr int kKeys = 100;
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 0, 2000)).ok());
  const Snapshot* snapshot = db_->GetSnapshot();
  std::unique_ptr<Iterator> it = db_->NewIterator({});
  // Three keys in four overwritten: the first files pass the garbage ratio once compacted.
  for (int i = 0; i < kKeys; ++i) {
    if (i % 4 == 3) continue;
    ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 1, 2000)).ok());
  }
  for (int i = 0; i < kKeys; i += 4) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 2, 2000)).ok());
  db_->ReleaseSnapshot(snapshot);  // the flush may drop the versions only it could see
  ASSERT_TRUE(db_->Flush().ok());
  snapshot = db_->GetSnapshot();
  auto* impl = static_cast<DBImpl*>(db_.get());
  for (int level = 0; level + 1 < kNumLevels; ++level) {
    ASSERT_TRUE(impl->CompactLevelForTest(level).ok());
  }
  auto collected = impl->RunVlogGcForTest();
  ASSERT_TRUE(collected.ok()) << collected.status().ToString();
  std::string files;
  ASSERT_TRUE(db_->GetProperty("cascade.vlog", &files));
  // Collected here or by the GC a compaction started in the background.
  ASSERT_GT(db_->stats().vlog_gc_files, 0u) << files;
  EXPECT_EQ(db_->stats().vlog_files_deleted, 0u) << "deleted under a live iterator";
  // The iterator still reads every value it saw at its creation.
  int seen = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const int i = std::stoi(std::string(it->key().substr(3))) - 100000;
    ASSERT_EQ(it->value(), Value(i, 0, 2000)) << i;
    ++seen;
  }
  ASSERT_TRUE(it->status().ok()) << it->status().ToString();
  EXPECT_EQ(seen, kKeys);
  it.reset();
  // The snapshot too; then, released, the collected files go.
  std::string got;
  ASSERT_TRUE(db_->Get(ReadOptions{.snapshot = snapshot}, Key(1), &got).ok());
  EXPECT_EQ(got, Value(1, 1, 2000));
  db_->ReleaseSnapshot(snapshot);
  ASSERT_TRUE(impl->RunVlogGcForTest().ok());
  EXPECT_EQ(db_->stats().vlog_files_deleted, db_->stats().vlog_gc_files);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(db_->Get({}, Key(i), &got).ok());
    const int version = i % 4 == 0 ? 2 : i % 4 == 3 ? 0 : 1;
    ASSERT_EQ(got, Value(i, version, 2000)) << i;
  }
}

TEST_F(DbVlogTest, SeparationTurnedOffStillReadsSeparatedValues) {
  Open();
  Model model;
  for (int i = 0; i < 100; ++i) {
    model[Key(i)] = Value(i, 0, 800);
    ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
  }
  ASSERT_TRUE(db_->Close().ok());
  db_.reset();
  options_.min_blob_size_bytes = 0;
  ASSERT_NO_FATAL_FAILURE(Open());
  for (int i = 100; i < 150; ++i) {
    model[Key(i)] = Value(i, 0, 800);
    ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
  EXPECT_EQ(db_->stats().vlog_records_written, 0u);
}

TEST_F(DbVlogTest, CheckpointCarriesTheValueLogs) {
  Open();
  Model model;
  for (int i = 0; i < 300; ++i) {
    model[Key(i)] = Value(i, 0, 700);
    ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
  }
  ASSERT_TRUE(db_->Checkpoint("/copy").ok());
  // The source goes on; the copy holds what was there at the checkpoint.
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 1, 700)).ok());
  ASSERT_TRUE(db_->Close().ok());
  db_.reset();
  dir_ = "/copy";
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
}

TEST_F(DbVlogTest, ADamagedRecordIsCorruptionNamingTheFile) {
  Open();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 0, 1000)).ok());
  ASSERT_NO_FATAL_FAILURE(Reopen());  // the value-log file is finished and closed
  const std::vector<std::uint64_t> files = VlogFiles();
  ASSERT_FALSE(files.empty());
  // The first record of the first file holds Key(0).
  ASSERT_NO_FATAL_FAILURE(Damage(VlogFileName(dir_, files.front()), kVlogFileHeaderBytes + 40, 8));
  std::string got;
  Status status = db_->Get({}, Key(0), &got);
  ASSERT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.ToString().find(".vlog"), std::string::npos) << status.ToString();
  // The other values are intact.
  ASSERT_TRUE(db_->Get({}, Key(1), &got).ok());
  EXPECT_EQ(got, Value(1, 0, 1000));
  // An iterator stops with the error instead of showing other bytes.
  std::unique_ptr<Iterator> it = db_->NewIterator({});
  it->SeekToFirst();
  EXPECT_FALSE(it->Valid());
  EXPECT_TRUE(it->status().IsCorruption()) << it->status().ToString();
}

TEST_F(DbVlogTest, AMissingValueLogFailsOpenNamingIt) {
  Open();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(db_->Put({}, Key(i), Value(i, 0, 1000)).ok());
  ASSERT_TRUE(db_->Flush().ok());
  ASSERT_TRUE(db_->Close().ok());
  db_.reset();
  const std::vector<std::uint64_t> files = VlogFiles();
  ASSERT_FALSE(files.empty());
  const std::string path = VlogFileName(dir_, files.front());
  ASSERT_TRUE(scheduler_->BlockOn(env_->RemoveFile(path)).ok());
  auto db = DB::Open(options_, dir_);
  ASSERT_FALSE(db.ok());
  EXPECT_TRUE(db.status().IsCorruption()) << db.status().ToString();
  EXPECT_NE(db.status().ToString().find(path), std::string::npos) << db.status().ToString();
}

TEST_F(DbVlogTest, ReopeningLeavesNoEmptyValueLogs) {
  // A store that never separates a value keeps no value-log file between opens.
  Open();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(db_->Put({}, Key(i), "small").ok());
  for (int round = 0; round < 3; ++round) ASSERT_NO_FATAL_FAILURE(Reopen());
  ASSERT_TRUE(db_->Close().ok());
  db_.reset();
  EXPECT_TRUE(VlogFiles().empty());
}

// A power cut at the n-th operation of one kind during value-log GC, for every n until GC gets
// through: the store reopens with exactly what it held (GC never changes what a reader sees,
// and everything was durable before it started), every value readable.
class DbVlogGcCrashTest : public DbVlogTest,
                          public ::testing::WithParamInterface<testutil::FaultOp> {};

TEST_P(DbVlogGcCrashTest, PowerCutDuringGcLosesNothing) {
  const testutil::FaultOp op = GetParam();
  constexpr std::uint64_t kCutPointsMax = 400;
  constexpr int kKeys = 160;
  // Only the test's own calls compact and collect: the cut lands inside GC, nowhere else.
  options_.level0_compaction_trigger = 100;
  options_.level0_slowdown_writes_trigger = 100;
  options_.level0_stop_writes_trigger = 100;
  options_.vlog_gc_garbage_ratio = 1.0;
  bool got_through = false;
  std::uint64_t n = 0;
  for (; n < kCutPointsMax && !got_through; ++n) {
    SCOPED_TRACE("power cut at operation " + std::to_string(n));
    env_ = NewMemEnv(scheduler_.get());
    auto fault = std::make_unique<testutil::FaultEnv>(env_.get());
    options_.env = fault.get();
    ASSERT_NO_FATAL_FAILURE(Open());
    Model model;
    for (int i = 0; i < kKeys; ++i) {
      model[Key(i)] = Value(i, 0, 1000);
      ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
    }
    ASSERT_TRUE(db_->Flush().ok());
    for (int i = 0; i < kKeys; ++i) {
      if (i % 4 == 3) continue;
      model[Key(i)] = Value(i, 1, 1000);
      ASSERT_TRUE(db_->Put({}, Key(i), model[Key(i)]).ok());
    }
    ASSERT_TRUE(db_->Flush().ok());  // everything durable
    auto* impl = static_cast<DBImpl*>(db_.get());
    ASSERT_TRUE(impl->CompactLevelForTest(0).ok());  // the garbage is counted
    ASSERT_GT(db_->stats().vlog_garbage_bytes, 0u);

    const std::uint64_t ops_before = fault->operations(op);
    fault->PowerCutAt(op, n);
    auto collected = impl->RunVlogGcForTest(0.3);
    got_through = fault->operations(op) - ops_before <= n;
    if (got_through) {
      ASSERT_TRUE(collected.ok()) << collected.status().ToString();
      ASSERT_GT(collected.value(), 0u) << "nothing to collect: the test lost its point";
    }
    fault->SetFilesystemActive(false);
    db_.reset();
    ASSERT_TRUE(
        scheduler_->BlockOn(fault->SimulatePowerCut(testutil::PowerCutMode::kDropAll, n)).ok());
    fault->ClearFaults();
    fault->SetFilesystemActive(true);

    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_NO_FATAL_FAILURE(ExpectModel(model));
    ASSERT_TRUE(db_->Close().ok());
    db_.reset();
  }
  EXPECT_TRUE(got_through) << "GC never got through " << kCutPointsMax << " cut points";
  EXPECT_GT(n, 1u) << "no cut landed inside GC";
}

INSTANTIATE_TEST_SUITE_P(Ops, DbVlogGcCrashTest,
                         ::testing::Values(testutil::FaultOp::kWrite, testutil::FaultOp::kSync,
                                           testutil::FaultOp::kSyncDir, testutil::FaultOp::kRemove),
                         [](const ::testing::TestParamInfo<testutil::FaultOp>& info) {
                           switch (info.param) {
                             case testutil::FaultOp::kWrite:
                               return std::string("Write");
                             case testutil::FaultOp::kSync:
                               return std::string("Sync");
                             case testutil::FaultOp::kSyncDir:
                               return std::string("SyncDir");
                             default:
                               return std::string("Remove");
                           }
                         });

}  // namespace
}  // namespace cascadefs::engine
