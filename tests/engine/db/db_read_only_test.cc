// db_read_only_test.cc: Options::read_only, the open fsck reads a store through
// (docs/engine.md, "Read-only open").
//
// Goal: a read-only open of a store that went down without flushing (SSTs on two levels, WAL
// segments the manifest does not cover, finished and unfinished value-log files, a prepared
// value-log file holding only its header) sees every key, through Get, GetAsync, iterators in
// both directions, Seek and snapshots; refuses every write, flush, checkpoint, compaction and
// GC with NotSupported; and leaves every file of the directory byte for byte as it was. It
// takes no lock (the caller, fsck, holds it), ignores create_if_missing, cuts a torn WAL tail
// in memory only, and ends the replay at a pointer past a value log's valid end, as a normal
// open does.
//
// Method: a MemEnv store is written (flushes and a compaction, then writes that are never
// flushed) and its directory copied while the store is still open (what a kill -9 leaves:
// the writes end with a sync write, so every byte is in the files). The read-only open goes
// through a FaultEnv whose file system is frozen (every mutating operation fails) and whose
// operation counters must not move; the directory's names and bytes are compared before and
// after. Expected contents come from a std::map model, or, where a crash loses a suffix, from
// a normal open of an identical copy of the directory.
#include <algorithm>
#include <cstdint>
#include <iterator>
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

namespace cascadefs::engine {
namespace {

using Model = std::map<std::string, std::string>;
// A directory: file name -> bytes.
using DirImage = std::map<std::string, std::string>;

std::string Key(int i) { return "key" + std::to_string(100000 + i); }

// A value of `size` bytes that differs per key and version, with no zero byte.
std::string Value(int i, int version, std::size_t size) {
  std::string value(size, '\0');
  for (std::size_t b = 0; b < size; ++b) {
    value[b] = static_cast<char>('!' + (i * 131 + version * 31 + static_cast<int>(b) * 7) % 90);
  }
  return value;
}

// Large (separated: min_blob_size_bytes is 64) for every third key, small otherwise.
std::size_t ValueSize(int i, int version) {
  return (i + version) % 3 == 0 ? 64 + static_cast<std::size_t>(i * 37 + version * 11) % 2500
                                : 10 + static_cast<std::size_t>(i) % 40;
}

constexpr testutil::FaultOp kMutatingOps[] = {
    testutil::FaultOp::kWrite,     testutil::FaultOp::kSync,   testutil::FaultOp::kRename,
    testutil::FaultOp::kOpenWrite, testutil::FaultOp::kRemove, testutil::FaultOp::kSyncDir,
    testutil::FaultOp::kLink,      testutil::FaultOp::kMkdir};

class DbReadOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 2});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    base_ = NewMemEnv(scheduler_.get());
    fault_ = std::make_unique<testutil::FaultEnv>(base_.get());
    options_.scheduler = scheduler_.get();
    options_.env = base_.get();
    // Large enough that the writer never switches memtables by itself: what is not flushed
    // by hand stays in the WAL.
    options_.write_buffer_size_bytes = 256 << 10;
    options_.wal_segment_size_bytes = 64 << 10;
    options_.block_size_bytes = 512;
    options_.target_file_size_bytes = 8 << 10;
    options_.min_blob_size_bytes = 64;
    options_.vlog_file_size_bytes = 64 << 10;
    options_.vlog_unwritten_bytes_max = 1 << 20;
    // No value-log GC behind the test's back (no file is ever all garbage here).
    options_.vlog_gc_garbage_ratio = 1.0;
    options_.info_log = [this](std::string_view line) { log_.emplace_back(line); };
  }

  // The reader's options: read-only, through the FaultEnv. A memtable of 4 KiB: a normal open
  // would replay the WAL into many memtables, the read-only one keeps a single one.
  Options ReadOnlyOptions() const {
    Options options = options_;
    options.env = fault_.get();
    options.read_only = true;
    options.create_if_missing = true;  // ignored
    options.write_buffer_size_bytes = 4 << 10;
    return options;
  }

  std::string ReadFile(const std::string& path) {
    auto file = scheduler_->BlockOn(base_->NewRandomAccessFile(path));
    EXPECT_TRUE(file.ok()) << path << ": " << file.status().ToString();
    if (!file.ok()) return {};
    std::string bytes(file.value()->size_bytes(), '\0');
    auto got = scheduler_->BlockOn(file.value()->Read(0, bytes.size(), bytes.data()));
    EXPECT_TRUE(got.ok() && got.value() == bytes.size()) << path;
    return bytes;
  }

  void WriteFile(const std::string& path, std::string_view bytes) {
    auto file = scheduler_->BlockOn(base_->NewWritableFile(path, WriteMode::kCreateTruncate));
    ASSERT_TRUE(file.ok()) << path << ": " << file.status().ToString();
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->WriteAt(0, bytes)).ok());
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->Close()).ok());
  }

  DirImage Image(const std::string& dir) {
    DirImage image;
    auto names = base_->ListDir(dir);
    EXPECT_TRUE(names.ok()) << dir << ": " << names.status().ToString();
    if (!names.ok()) return image;
    for (const std::string& name : names.value()) image[name] = ReadFile(dir + "/" + name);
    return image;
  }

  // Copies every file of `from` but LOCK into the new directory `to`.
  void CopyDir(const std::string& from, const std::string& to) {
    ASSERT_TRUE(base_->CreateDirIfMissing(to).ok());
    for (const auto& [name, bytes] : Image(from)) {
      if (name == "LOCK") continue;
      WriteFile(to + "/" + name, bytes);
    }
  }

  static std::vector<std::string> Names(const DirImage& image) {
    std::vector<std::string> names;
    for (const auto& [name, bytes] : image) names.push_back(name);
    return names;
  }

  static std::size_t CountType(const DirImage& image, FileType wanted) {
    std::size_t count = 0;
    for (const auto& [name, bytes] : image) {
      std::uint64_t number = 0;
      FileType type{};
      if (ParseFileName(name, &number, &type) && type == wanted) ++count;
    }
    return count;
  }

  // Writes a store at `dir` and copies it to `copy` while it is open; returns the model of
  // what the copy holds. Phase 1 ends flushed: three level-0 files compacted into level 1,
  // then one more level-0 file. Phase 2 is never flushed: overwrites, deletes and new keys,
  // several value-log files' worth of large values, ending with a sync write.
  Model WriteCrashedStore(const std::string& dir, const std::string& copy) {
    Model model;
    auto opened = DB::Open(options_, dir);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (!opened.ok()) return model;
    std::unique_ptr<DB> db = std::move(opened).value();
    auto put = [&](int i, int version, bool sync = false) {
      const std::string value = Value(i, version, ValueSize(i, version));
      ASSERT_TRUE(db->Put(WriteOptions{.sync = sync}, Key(i), value).ok());
      model[Key(i)] = value;
    };
    auto del = [&](int i) {
      ASSERT_TRUE(db->Delete({}, Key(i)).ok());
      model.erase(Key(i));
    };
    for (int i = 0; i < 600; ++i) {
      put(i, 0);
      if (i % 200 == 199) {
        EXPECT_TRUE(db->Flush().ok());
      }
    }
    EXPECT_TRUE(static_cast<DBImpl*>(db.get())->CompactLevelForTest(0).ok());
    for (int i = 600; i < 800; ++i) put(i, 0);
    for (int i = 0; i < 100; i += 7) del(i);
    EXPECT_TRUE(db->Flush().ok());
    const std::vector<LevelStats> levels = db->GetLevelStats();
    EXPECT_GE(levels[0].files, 1u);
    EXPECT_GE(levels[1].files, 1u);

    // Phase 2: only in the WAL and the value log.
    for (int i = 0; i < 800; i += 5) put(i, 1);
    for (int i = 3; i < 800; i += 11) del(i);
    for (int first = 800; first < 1000; first += 10) {
      WriteBatch batch;
      for (int i = first; i < first + 10; ++i) {
        const std::string value = Value(i, 2, ValueSize(i, 2));
        batch.Put(Key(i), value);
        model[Key(i)] = value;
      }
      batch.Delete(Key(first + 1));
      model.erase(Key(first + 1));
      EXPECT_TRUE(db->Write({}, batch).ok());
    }
    EXPECT_EQ(db->stats().memtable_flushes, 4u);  // only those by hand: phase 2 is in the WAL
    put(1000, 3, /*sync=*/true);
    CopyDir(dir, copy);
    EXPECT_TRUE(db->Close().ok());
    return model;
  }

  static Model Scan(DB& db, const ReadOptions& options = {}, bool backward = false) {
    Model out;
    std::unique_ptr<Iterator> it = db.NewIterator(options);
    if (backward) {
      for (it->SeekToLast(); it->Valid(); it->Prev()) out[std::string(it->key())] = it->value();
    } else {
      for (it->SeekToFirst(); it->Valid(); it->Next()) out[std::string(it->key())] = it->value();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return out;
  }

  // Every read path of `db` agrees with `model` (keys 0..1099 were candidates).
  void ExpectReads(DB& db, const Model& model) {
    for (int i = 0; i < 1100; ++i) {
      std::string got;
      Status status = db.Get({}, Key(i), &got);
      auto it = model.find(Key(i));
      if (it == model.end()) {
        ASSERT_TRUE(status.IsNotFound()) << Key(i) << ": " << status.ToString();
      } else {
        ASSERT_TRUE(status.ok()) << Key(i) << ": " << status.ToString();
        ASSERT_EQ(got, it->second) << Key(i);
      }
    }
    // The coroutine form, on the scheduler.
    DB* raw = &db;
    auto async_reads = [raw, &model]() -> io::Task<int> {
      int matched = 0;
      for (const auto& [key, value] : model) {
        std::string got;
        Status status = co_await raw->GetAsync({}, key, &got);
        if (status.ok() && got == value) ++matched;
      }
      co_return matched;
    };
    EXPECT_EQ(scheduler_->BlockOn(async_reads()), static_cast<int>(model.size()));

    EXPECT_EQ(Scan(db), model);
    EXPECT_EQ(Scan(db, {}, /*backward=*/true), model);

    // Seek lands on the key or the next one; Prev from there goes back one.
    std::unique_ptr<Iterator> it = db.NewIterator({});
    for (int i = 0; i < 1100; i += 13) {
      it->Seek(Key(i));
      auto expected = model.lower_bound(Key(i));
      if (expected == model.end()) {
        EXPECT_FALSE(it->Valid()) << Key(i);
        continue;
      }
      ASSERT_TRUE(it->Valid()) << Key(i);
      EXPECT_EQ(it->key(), expected->first);
      EXPECT_EQ(it->value(), expected->second);
      it->Prev();
      if (expected == model.begin()) {
        EXPECT_FALSE(it->Valid());
      } else {
        ASSERT_TRUE(it->Valid());
        EXPECT_EQ(it->key(), std::prev(expected)->first);
        EXPECT_EQ(it->value(), std::prev(expected)->second);
      }
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    it.reset();

    // A snapshot sees the same state.
    const Snapshot* snapshot = db.GetSnapshot();
    EXPECT_EQ(Scan(db, ReadOptions{.snapshot = snapshot}), model);
    for (const auto& [key, value] : model) {
      std::string got;
      ASSERT_TRUE(db.Get(ReadOptions{.snapshot = snapshot}, key, &got).ok()) << key;
      ASSERT_EQ(got, value);
    }
    db.ReleaseSnapshot(snapshot);

    std::string property;
    EXPECT_TRUE(db.GetProperty("cascade.stats", &property));
    EXPECT_FALSE(property.empty());
    EXPECT_TRUE(db.GetProperty("cascade.vlog", &property));
    EXPECT_TRUE(db.GetProperty("cascade.levels", &property));
  }

  // Every writing call fails with NotSupported, and nothing of it shows.
  void ExpectWritesRefused(DB& db) {
    EXPECT_TRUE(db.Put({}, "new", "value").IsNotSupported());
    EXPECT_TRUE(db.Put(WriteOptions{.sync = true}, "new", std::string(1000, 'v')).IsNotSupported());
    EXPECT_TRUE(db.Delete({}, Key(0)).IsNotSupported());
    WriteBatch batch;
    batch.Put("new", "value");
    batch.Delete(Key(1));
    EXPECT_TRUE(db.Write({}, batch).IsNotSupported());
    EXPECT_TRUE(db.Flush().IsNotSupported());
    Status checkpoint = db.Checkpoint("/checkpoint");
    EXPECT_TRUE(checkpoint.IsNotSupported()) << checkpoint.ToString();
    DB* raw = &db;
    auto async_writes = [raw, &batch]() -> io::Task<int> {
      int refused = 0;
      if ((co_await raw->PutAsync({}, "new", "value")).IsNotSupported()) ++refused;
      if ((co_await raw->DeleteAsync({}, Key(0))).IsNotSupported()) ++refused;
      if ((co_await raw->WriteAsync({}, batch)).IsNotSupported()) ++refused;
      if ((co_await raw->FlushAsync()).IsNotSupported()) ++refused;
      if ((co_await raw->CheckpointAsync("/checkpoint")).IsNotSupported()) ++refused;
      co_return refused;
    };
    EXPECT_EQ(scheduler_->BlockOn(async_writes()), 5);
    auto* impl = static_cast<DBImpl*>(&db);
    EXPECT_TRUE(impl->CompactLevelForTest(0).IsNotSupported());
    Result<std::uint64_t> collected = impl->RunVlogGcForTest(0.05);
    ASSERT_FALSE(collected.ok());
    EXPECT_TRUE(collected.status().IsNotSupported());
    std::string value;
    EXPECT_TRUE(db.Get({}, "new", &value).IsNotFound());
    EXPECT_TRUE(base_->ListDir("/checkpoint").status().IsNotFound());
    const DbStats stats = db.stats();
    EXPECT_EQ(stats.writes, 0u);
    EXPECT_EQ(stats.memtable_flushes, 0u);
    EXPECT_EQ(stats.compactions, 0u);
    EXPECT_EQ(stats.vlog_records_written, 0u);
    EXPECT_EQ(stats.vlog_bytes_written, 0u);
    EXPECT_EQ(stats.wal_bytes_written, 0u);
  }

  // Opens `dir` read-only with the FaultEnv's file system frozen, runs `body` on the store,
  // closes it, and checks that no mutating operation was even tried and no byte changed.
  template <typename Body>
  void WithReadOnlyStore(const std::string& dir, Body body) {
    const DirImage before = Image(dir);
    std::map<testutil::FaultOp, std::uint64_t> ops_before;
    for (testutil::FaultOp op : kMutatingOps) ops_before[op] = fault_->operations(op);
    fault_->SetFilesystemActive(false);
    {
      auto db = DB::Open(ReadOnlyOptions(), dir);
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      body(*db.value());
      Status closed = db.value()->Close();
      EXPECT_TRUE(closed.ok()) << closed.ToString();
    }
    fault_->SetFilesystemActive(true);
    for (testutil::FaultOp op : kMutatingOps) {
      EXPECT_EQ(fault_->operations(op), ops_before[op]) << "operation " << static_cast<int>(op);
    }
    const DirImage after = Image(dir);
    EXPECT_EQ(Names(after), Names(before));
    EXPECT_TRUE(after == before) << "a file's bytes changed";
  }

  // The contents a normal open (which recovers and writes) finds in `dir`.
  Model NormalOpenContents(const std::string& dir) {
    Options options = options_;
    options.create_if_missing = false;
    auto db = DB::Open(options, dir);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    if (!db.ok()) return {};
    Model contents = Scan(*db.value());
    EXPECT_TRUE(db.value()->Close().ok());
    return contents;
  }

  bool Logged(std::string_view text) const {
    for (const std::string& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> base_;
  std::unique_ptr<testutil::FaultEnv> fault_;
  Options options_;
  std::vector<std::string> log_;  // written by the info_log; tests read it after Close
};

TEST_F(DbReadOnlyTest, SeesEverythingOfACrashedStoreAndChangesNothing) {
  const Model model = WriteCrashedStore("/store", "/crashed");
  const DirImage image = Image("/crashed");
  // What a kill -9 leaves: several WAL segments, SSTs, value logs (finished ones, the one
  // being written without a footer, and perhaps the next one, prepared with only its header).
  EXPECT_GE(CountType(image, FileType::kSst), 2u);
  EXPECT_GE(CountType(image, FileType::kVlog), 3u);
  EXPECT_GE(CountType(image, FileType::kWal), 1u);
  EXPECT_EQ(image.count("LOCK"), 0u);

  // fsck holds the store's lock while it reads: the read-only open must not take it.
  auto lock = base_->LockFile(LockFileName("/crashed"));
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  WithReadOnlyStore("/crashed", [&](DB& db) {
    ExpectReads(db, model);
    ExpectWritesRefused(db);
    ExpectReads(db, model);
    const std::vector<LevelStats> levels = db.GetLevelStats();
    EXPECT_GE(levels[0].files, 1u);
    EXPECT_GE(levels[1].files, 1u);
  });
  lock.value().reset();

  // A second read-only open of the same directory (the first is closed; nothing changed in
  // between) sees the same, and the writer's own recovery agrees.
  WithReadOnlyStore("/crashed", [&](DB& db) { EXPECT_EQ(Scan(db), model); });
  CopyDir("/crashed", "/reference");
  EXPECT_EQ(NormalOpenContents("/reference"), model);
}

TEST_F(DbReadOnlyTest, TornWalTailIsCutInMemoryOnly) {
  // A store closed without Flush: its last records are only in the WAL. The last record is
  // a small value, stored in the record itself; damaging a byte of it tears the tail.
  Model model;
  {
    auto db = DB::Open(options_, "/store");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < 300; ++i) {
      const std::string value = Value(i, 0, ValueSize(i, 0));
      ASSERT_TRUE(db.value()->Put({}, Key(i), value).ok());
      model[Key(i)] = value;
      if (i == 150) {
        ASSERT_TRUE(db.value()->Flush().ok());
      }
    }
    ASSERT_TRUE(db.value()->Put(WriteOptions{.sync = true}, Key(300), "synced").ok());
    model[Key(300)] = "synced";
    ASSERT_TRUE(db.value()->Put({}, Key(301), std::string(40, 'T')).ok());
    ASSERT_TRUE(db.value()->Close().ok());
  }
  // The torn record: the last occurrence of its value among the WAL segments.
  std::string torn_path;
  std::size_t torn_offset = std::string::npos;
  for (const auto& [name, bytes] : Image("/store")) {
    std::uint64_t number = 0;
    FileType type{};
    if (!ParseFileName(name, &number, &type) || type != FileType::kWal) continue;
    const std::size_t at = bytes.rfind(std::string(40, 'T'));
    if (at != std::string::npos) {
      ASSERT_TRUE(torn_path.empty()) << "the value is in two segments";
      torn_path = "/store/" + name;
      torn_offset = at + 20;
    }
  }
  ASSERT_FALSE(torn_path.empty());
  std::string bytes = ReadFile(torn_path);
  bytes[torn_offset] = 'x';
  WriteFile(torn_path, bytes);
  CopyDir("/store", "/reference");

  log_.clear();
  WithReadOnlyStore("/store", [&](DB& db) {
    ExpectReads(db, model);  // everything but the torn last write
    ExpectWritesRefused(db);
  });
  EXPECT_TRUE(Logged("torn tail")) << "the damage did not tear the tail";
  // A normal open cuts the same tail (and writes its recovery).
  EXPECT_EQ(NormalOpenContents("/reference"), model);
}

TEST_F(DbReadOnlyTest, ReplayEndsAtAPointerPastTheValueLogsValidEnd) {
  // The crashed store's newest value log (made in phase 2, so only WAL records name it) loses
  // its second half (a power cut kept the WAL's pages but not the value log's): replay stops
  // at the first WAL record naming a lost record, in memory.
  WriteCrashedStore("/store", "/crashed");
  std::uint64_t newest = 0;
  for (const auto& [name, bytes] : Image("/crashed")) {
    std::uint64_t number = 0;
    FileType type{};
    if (ParseFileName(name, &number, &type) && type == FileType::kVlog && bytes.size() > 64) {
      newest = std::max(newest, number);
    }
  }
  ASSERT_NE(newest, 0u);
  const std::string path = VlogFileName("/crashed", newest);
  const std::string bytes = ReadFile(path);
  WriteFile(path, std::string_view(bytes).substr(0, bytes.size() / 2));
  CopyDir("/crashed", "/reference");
  const Model expected = NormalOpenContents("/reference");
  EXPECT_TRUE(Logged("names value-log bytes lost")) << "the replay did not stop at the pointer";

  log_.clear();
  WithReadOnlyStore("/crashed", [&](DB& db) {
    ExpectReads(db, expected);
    ExpectWritesRefused(db);
  });
  EXPECT_TRUE(Logged("names value-log bytes lost"));
}

TEST_F(DbReadOnlyTest, MissingStoreIsInvalidArgumentAndNothingIsCreated) {
  // No directory, create_if_missing on (ignored).
  auto missing = DB::Open(ReadOnlyOptions(), "/nowhere");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsInvalidArgument()) << missing.status().ToString();
  EXPECT_TRUE(base_->ListDir("/nowhere").status().IsNotFound());

  // A directory without CURRENT.
  ASSERT_TRUE(base_->CreateDirIfMissing("/empty").ok());
  auto empty = DB::Open(ReadOnlyOptions(), "/empty");
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(empty.status().IsInvalidArgument()) << empty.status().ToString();
  auto names = base_->ListDir("/empty");
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names.value().empty());
  for (testutil::FaultOp op : kMutatingOps) {
    EXPECT_EQ(fault_->operations(op), 0u) << "operation " << static_cast<int>(op);
  }
}

TEST_F(DbReadOnlyTest, FlushedStoreOpensWithNothingToReplay) {
  // A store closed after Flush: no WAL record to replay, an empty memtable.
  Model model;
  {
    auto db = DB::Open(options_, "/store");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < 200; ++i) {
      const std::string value = Value(i, 0, ValueSize(i, 0));
      ASSERT_TRUE(db.value()->Put({}, Key(i), value).ok());
      model[Key(i)] = value;
    }
    ASSERT_TRUE(db.value()->Flush().ok());
    ASSERT_TRUE(db.value()->Close().ok());
  }
  WithReadOnlyStore("/store", [&](DB& db) {
    ExpectReads(db, model);
    EXPECT_EQ(db.stats().last_sequence, 200u);
  });
  // error_if_exists with read_only: the store exists, so the open fails, and writes nothing.
  const DirImage before = Image("/store");
  Options options = ReadOnlyOptions();
  options.error_if_exists = true;
  auto refused = DB::Open(options, "/store");
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
  EXPECT_TRUE(Image("/store") == before);
}

}  // namespace
}  // namespace cascadefs::engine
