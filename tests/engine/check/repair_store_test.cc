// repair_store_test.cc: RepairStoreFiles leaves every kind of damaged store checking clean and
// opening, with every key reading its last written value or, where the damage took it, as
// missing or as a value it once held; and leaves a healthy store as it was.
//
// Method: random workloads (puts of small values and of values big enough for the value log,
// overwrites, deletes, flushes, a compaction, a reopen, synced writes left only in the WAL)
// against a model of every key's current value and every value it ever held. Each fault kind
// is injected into a copy of the store; the check must find it, repair must name the damaged
// file, and then the store must check clean, open, and read as the model allows:
//  - keys the fault could not touch (not in the damaged file) read exactly their model value;
//  - a touched key reads its model value, as missing, or as a value the model once held for
//    it (a lost newer version, or a lost deletion, uncovers an older one: docs/fsck.md);
//  - no read ever returns a value the key never had.
// With and without the value log. Sizes are small (512-byte blocks, 32 KiB memtables) so that
// the store has many blocks, tables, value-log files and WAL records at a few hundred KiB.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "check/store_state.h"
#include "db/db_impl.h"
#include "db/write_batch_internal.h"
#include "engine/check.h"
#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/repair.h"
#include "env/mem_env.h"
#include "manifest/current_file.h"
#include "manifest/filename.h"
#include "manifest/manifest_log.h"
#include "sst/format.h"
#include "sst/table.h"
#include "testutil/fault_env.h"
#include "vlog/vlog_file.h"
#include "wal/wal_reader.h"

namespace cascadefs::engine {
namespace {

namespace fs = std::filesystem;

enum class Fault {
  kSstDataByte,
  kSstIndexOrFooterByte,
  kSstTruncated,
  kSstDeleted,
  kWalRecordByte,
  kManifestByte,
  kCurrentDeleted,
  kVlogRecordByte,
  kVlogDeleted,
};

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kSstDataByte:
      return "sst-data-byte";
    case Fault::kSstIndexOrFooterByte:
      return "sst-index-or-footer-byte";
    case Fault::kSstTruncated:
      return "sst-truncated";
    case Fault::kSstDeleted:
      return "sst-deleted";
    case Fault::kWalRecordByte:
      return "wal-record-byte";
    case Fault::kManifestByte:
      return "manifest-byte";
    case Fault::kCurrentDeleted:
      return "current-deleted";
    case Fault::kVlogRecordByte:
      return "vlog-record-byte";
    case Fault::kVlogDeleted:
      return "vlog-deleted";
  }
  return "?";
}

std::vector<char> ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
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

struct Model {
  std::map<std::string, std::string> current;            // live keys
  std::map<std::string, std::set<std::string>> history;  // every value each key ever held
};

// Counts over the whole suite, printed at the end (the hand-back's measurements).
struct Tally {
  int injected = 0;
  int found = 0;
  int repaired = 0;
};
Tally& SuiteTally() {
  static Tally tally;
  return tally;
}

class RepairStoreTest : public ::testing::Test {
 protected:
  static void TearDownTestSuite() {
    std::cout << "[ repair suite ] faults injected " << SuiteTally().injected << ", found by the "
              << "check " << SuiteTally().found << ", repaired (clean check, opens, reads "
              << "agree with the model) " << SuiteTally().repaired << "\n";
  }

  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
    env_ = NewSchedulerEnv(scheduler_.get());
    const char* tmp = std::getenv("TMPDIR");
    root_ = fs::path(tmp != nullptr ? tmp : "/tmp") /
            ("repair_store_test." + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  Options StoreOptions(bool vlog) const {
    Options options;
    options.scheduler = scheduler_.get();
    options.env = env_.get();
    options.block_size_bytes = 512;
    options.index_partition_size_bytes = 256;
    options.write_buffer_size_bytes = 32 << 10;
    options.wal_segment_size_bytes = 64 << 10;
    options.min_blob_size_bytes = vlog ? 256 : 0;
    options.vlog_file_size_bytes = 64 << 10;
    return options;
  }

  // A random workload into `dir`, recorded in *model.
  void Build(const fs::path& dir, bool vlog, std::uint64_t seed, Model* model) {
    std::mt19937_64 rng(seed);
    auto db = DB::Open(StoreOptions(vlog), dir.string());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    auto value_of = [&](int key) {
      const std::size_t size = rng() % 3 == 0 ? 300 + rng() % 400 : 10 + rng() % 100;
      std::string value(size, static_cast<char>('a' + rng() % 26));
      value += "#" + std::to_string(key) + "/" + std::to_string(rng());  // unique per write
      return value;
    };
    auto step = [&](DB* store, bool sync) {
      const int k = static_cast<int>(rng() % 600);
      const std::string key = "key" + std::to_string(100000 + k);
      if (rng() % 5 == 0) {
        ASSERT_TRUE(store->Delete(WriteOptions{.sync = sync}, key).ok());
        model->current.erase(key);
      } else {
        const std::string value = value_of(k);
        ASSERT_TRUE(store->Put(WriteOptions{.sync = sync}, key, value).ok());
        model->current[key] = value;
        model->history[key].insert(value);
      }
    };
    for (int i = 0; i < 1000; ++i) {
      ASSERT_NO_FATAL_FAILURE(step(db.value().get(), false));
      if (i % 300 == 299) {
        ASSERT_TRUE(db.value()->Flush().ok());
      }
      if (i == 650) {
        ASSERT_TRUE(static_cast<DBImpl*>(db.value().get())->CompactLevelForTest(0).ok());
      }
    }
    ASSERT_TRUE(db.value()->Close().ok());
    db.value().reset();
    auto reopened = DB::Open(StoreOptions(vlog), dir.string());
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    for (int i = 0; i < 400; ++i) {
      ASSERT_NO_FATAL_FAILURE(step(reopened.value().get(), false));
    }
    ASSERT_TRUE(reopened.value()->Flush().ok());
    // Synced writes that stay in the WAL only.
    for (int i = 0; i < 100; ++i) {
      ASSERT_NO_FATAL_FAILURE(step(reopened.value().get(), true));
    }
    ASSERT_TRUE(reopened.value()->Close().ok());
  }

  fs::path Copy(const fs::path& from, const std::string& name) {
    const fs::path dir = root_ / name;
    fs::copy(from, dir, fs::copy_options::recursive);
    fs::remove(dir / "LOCK");
    return dir;
  }

  CheckReport Check(const fs::path& dir) {
    auto report = scheduler_->BlockOn(CheckStoreFiles(env_.get(), dir.string(), {}));
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? std::move(report).value() : CheckReport{};
  }

  RepairReport Repair(const fs::path& dir) {
    auto report = scheduler_->BlockOn(RepairStoreFiles(env_.get(), dir.string(), {}));
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? std::move(report).value() : RepairReport{};
  }

  std::vector<fs::path> Files(const fs::path& dir, const std::string& extension) {
    std::vector<fs::path> out;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().extension() == extension) {
        out.push_back(entry.path());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  StoreState State(const fs::path& dir) {
    auto state = scheduler_->BlockOn(ReadStoreState(env_.get(), dir.string()));
    EXPECT_TRUE(state.ok()) << state.status().ToString();
    return state.ok() ? std::move(state).value() : StoreState{};
  }

  // The user keys of an SST (read from the healthy copy).
  std::set<std::string> SstKeys(const fs::path& path) {
    std::set<std::string> keys;
    auto file = scheduler_->BlockOn(env_->NewRandomAccessFile(path.string()));
    EXPECT_TRUE(file.ok());
    auto table = scheduler_->BlockOn(Table::Open(TableOptions{}, std::move(file).value()));
    EXPECT_TRUE(table.ok());
    scheduler_->BlockOn(table.value()->CheckBlocks([](std::uint64_t, const Status&) {},
                                                   [&](std::string_view key, std::string_view) {
                                                     keys.insert(std::string(ExtractUserKey(key)));
                                                   }));
    return keys;
  }

  // The records of a value-log file: (offset, key).
  std::vector<std::pair<std::uint64_t, std::string>> VlogRecords(const fs::path& path) {
    std::vector<std::pair<std::uint64_t, std::string>> records;
    std::uint64_t number = 0;
    FileType type{};
    EXPECT_TRUE(ParseFileName(path.filename().string(), &number, &type));
    auto file = scheduler_->BlockOn(env_->NewRandomAccessFile(path.string()));
    EXPECT_TRUE(file.ok());
    std::uint64_t end = 0;
    (void)scheduler_->BlockOn(ScanVlogRecords(
        *file.value(), number,
        [&](const ValuePointer& pointer, const VlogRecord& record) {
          records.emplace_back(pointer.offset, std::string(record.key));
          return Status::OK();
        },
        &end));
    return records;
  }

  // Injects `fault` into `dir`; returns the damaged file's name and fills *touched with the
  // keys it may cost (empty: none may be lost).
  std::string Inject(Fault fault, const fs::path& dir, std::mt19937_64& rng, const Model& model,
                     std::set<std::string>* touched, bool* skipped) {
    *skipped = false;
    const StoreState state = State(dir);
    std::vector<fs::path> ssts;
    for (int level = 0; level < kNumLevels; ++level) {
      for (const auto& file : state.version.files[static_cast<std::size_t>(level)]) {
        ssts.push_back(dir / BaseFileName(FileType::kSst, file->number));
      }
    }
    std::vector<fs::path> vlogs;
    for (const auto& [number, meta] : state.version.vlogs) {
      if (meta.records > 2) vlogs.push_back(dir / BaseFileName(FileType::kVlog, number));
    }
    const fs::path sst = ssts.empty() ? fs::path() : ssts[rng() % ssts.size()];
    switch (fault) {
      case Fault::kSstDataByte:
      case Fault::kSstIndexOrFooterByte:
      case Fault::kSstTruncated:
      case Fault::kSstDeleted: {
        EXPECT_FALSE(ssts.empty());
        *touched = SstKeys(sst);
        const std::uint64_t size = fs::file_size(sst);
        const std::vector<char> bytes = ReadAll(sst);
        Footer footer;
        EXPECT_TRUE(
            footer
                .DecodeFrom(std::string_view(bytes.data() + size - kFooterBytes, kFooterBytes),
                            sst.string())
                .ok());
        if (fault == Fault::kSstDataByte) {
          FlipByte(sst, rng() % footer.filter.offset);
        } else if (fault == Fault::kSstIndexOrFooterByte) {
          // The index partitions, top-level index, properties and footer follow the filter.
          const std::uint64_t begin =
              footer.filter.offset + footer.filter.size + kBlockTrailerBytes;
          FlipByte(sst, begin + rng() % (size - begin));
        } else if (fault == Fault::kSstTruncated) {
          fs::resize_file(sst, size / 2 + rng() % (size / 4));
        } else {
          fs::remove(sst);
        }
        return sst.filename().string();
      }
      case Fault::kWalRecordByte: {
        // A record of the segments the next open replays, followed by later synced ones (so
        // the sync marks after it show it was synced: damage, not a torn tail).
        std::vector<WalPosition> positions;
        std::vector<std::set<std::string>> keys;
        std::vector<std::uint64_t> segments;
        for (const fs::path& wal : Files(dir, ".wal")) {
          std::uint64_t number = 0;
          FileType type{};
          if (ParseFileName(wal.filename().string(), &number, &type) &&
              number >= state.log_number) {
            segments.push_back(number);
          }
        }
        WalReplayResult result;
        EXPECT_TRUE(
            scheduler_
                ->BlockOn(ReplayWal(
                    env_.get(), dir.string(), segments,
                    [&](std::string_view record, const WalPosition& at) {
                      positions.push_back(at);
                      struct Keys final : InternalBatchHandler {
                        void Put(std::string_view k, std::string_view) override {
                          keys.insert(std::string(k));
                        }
                        void Delete(std::string_view k) override { keys.insert(std::string(k)); }
                        void PutValuePointer(std::string_view k, std::string_view) override {
                          keys.insert(std::string(k));
                        }
                        std::set<std::string> keys;
                      } handler;
                      EXPECT_TRUE(WriteBatchInternal::IterateInternal(record, &handler).ok());
                      keys.push_back(handler.keys);
                      return Status::OK();
                    },
                    &result))
                .ok());
        if (positions.size() < 4) {
          *skipped = true;
          return "";
        }
        const std::size_t pick = rng() % (positions.size() - 3);
        // Salvage skips the damaged record and what follows it in its 32 KiB block (fragment
        // boundaries are unknown past damage): exactly those records' keys may differ; every
        // record after that block must be kept.
        const std::uint64_t block_end =
            (positions[pick].offset / kWalBlockSizeBytes + 1) * kWalBlockSizeBytes;
        for (std::size_t i = pick; i < positions.size(); ++i) {
          if (positions[i].log_number != positions[pick].log_number ||
              positions[i].offset >= block_end) {
            break;
          }
          touched->insert(keys[i].begin(), keys[i].end());
        }
        const fs::path wal = dir / BaseFileName(FileType::kWal, positions[pick].log_number);
        FlipByte(wal, positions[pick].offset + 11 + 4);  // inside the batch's header
        return wal.filename().string();
      }
      case Fault::kManifestByte: {
        const fs::path manifest = dir / BaseFileName(FileType::kManifest, state.manifest_number);
        const std::vector<char> bytes = ReadAll(manifest);
        const std::uint32_t first = DecodeFixed32(bytes.data());
        if (first + 8 >= bytes.size()) {
          *skipped = true;  // one record only: damage to it is a torn tail, not an error
          return "";
        }
        FlipByte(manifest, rng() % (first + 8));
        return manifest.filename().string();
      }
      case Fault::kCurrentDeleted:
        fs::remove(dir / "CURRENT");
        return "CURRENT";
      case Fault::kVlogRecordByte:
      case Fault::kVlogDeleted: {
        if (vlogs.empty()) {
          *skipped = true;
          return "";
        }
        const fs::path vlog = vlogs[rng() % vlogs.size()];
        const auto records = VlogRecords(vlog);
        for (const auto& [offset, key] : records) touched->insert(key);
        if (fault == Fault::kVlogDeleted) {
          fs::remove(vlog);
        } else {
          const auto& [offset, key] = records[rng() % records.size()];
          FlipByte(vlog, offset + 9 + key.size() / 2);  // inside the record's key
        }
        return vlog.filename().string();
      }
    }
    (void)model;
    return "";
  }

  // Opens the repaired store and reads every key the model ever held.
  void ExpectReadsAgree(const fs::path& dir, bool vlog, const Model& model,
                        const std::set<std::string>& touched, int* lost) {
    auto db = DB::Open(StoreOptions(vlog), dir.string());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (const auto& [key, values] : model.history) {
      std::string value;
      Status status = db.value()->Get({}, key, &value);
      auto it = model.current.find(key);
      const bool may_differ = touched.contains(key);
      if (status.ok()) {
        if (it != model.current.end() && value == it->second) continue;
        EXPECT_TRUE(may_differ && values.contains(value))
            << key << " reads a value it " << (values.contains(value) ? "once had" : "never had")
            << (may_differ ? "" : " (and no damaged file held it)");
        ++*lost;
      } else {
        ASSERT_TRUE(status.IsNotFound()) << key << ": " << status.ToString();
        if (it == model.current.end()) continue;
        EXPECT_TRUE(may_differ) << key << " is missing, and no damaged file held it";
        ++*lost;
      }
    }
    // Nothing the model never wrote.
    std::unique_ptr<Iterator> it = db.value()->NewIterator({});
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      EXPECT_TRUE(model.history.contains(std::string(it->key()))) << it->key();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    it.reset();
    // And it takes writes again.
    ASSERT_TRUE(db.value()->Put(WriteOptions{.sync = true}, "after-repair", "yes").ok());
    ASSERT_TRUE(db.value()->Close().ok());
  }

  void RunFaults(bool vlog, std::uint64_t seed) {
    Model model;
    const fs::path healthy = root_ / ("healthy-" + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(Build(healthy, vlog, seed, &model));
    ASSERT_EQ(Check(healthy).errors(), 0u);
    std::mt19937_64 rng(seed * 7 + 1);
    for (Fault fault : {Fault::kSstDataByte, Fault::kSstIndexOrFooterByte, Fault::kSstTruncated,
                        Fault::kSstDeleted, Fault::kWalRecordByte, Fault::kManifestByte,
                        Fault::kCurrentDeleted, Fault::kVlogRecordByte, Fault::kVlogDeleted}) {
      SCOPED_TRACE(std::string(FaultName(fault)) + (vlog ? " with" : " without") +
                   " the value log, seed " + std::to_string(seed));
      const fs::path dir =
          Copy(healthy, std::string(FaultName(fault)) + "-" + std::to_string(seed));
      std::set<std::string> touched;
      bool skipped = false;
      const std::string damaged = Inject(fault, dir, rng, model, &touched, &skipped);
      if (skipped) continue;
      ++SuiteTally().injected;
      const CheckReport before = Check(dir);
      if (before.errors() > 0) ++SuiteTally().found;
      EXPECT_GT(before.errors(), 0u) << "the check missed the fault in " << damaged;

      const RepairReport report = Repair(dir);
      std::string actions;
      bool named = false;
      for (const RepairAction& a : report.actions) {
        actions +=
            a.file + (a.offset ? " @" + std::to_string(*a.offset) : "") + ": " + a.action + "\n";
        named |= a.file == damaged;
      }
      EXPECT_TRUE(named) << "the report does not name " << damaged << ":\n" << actions;
      if (std::getenv("REPAIR_TEST_VERBOSE") != nullptr)
        std::cout << FaultName(fault) << ":\n" << actions;
      EXPECT_EQ(report.errors_left, 0u) << actions;
      const CheckReport after = Check(dir);
      for (const CheckFinding& f : after.findings) {
        EXPECT_NE(f.severity, CheckSeverity::kError)
            << f.file << ": " << f.problem << "\nrepair did:\n"
            << actions;
      }
      int lost = 0;
      ASSERT_NO_FATAL_FAILURE(ExpectReadsAgree(dir, vlog, model, touched, &lost));
      if (after.errors() == 0 && !HasFailure()) ++SuiteTally().repaired;
      // The damaged original is kept in lost/ (a deleted file has nothing to keep).
      if (fault != Fault::kSstDeleted && fault != Fault::kVlogDeleted &&
          fault != Fault::kCurrentDeleted) {
        EXPECT_TRUE(fs::exists(dir / kLostDirName / damaged)) << damaged << "\n" << actions;
      }
      // A second repair finds nothing more to do.
      const RepairReport again = Repair(dir);
      EXPECT_EQ(again.errors_found, 0u);
      EXPECT_TRUE(again.actions.empty());
      fs::remove_all(dir);
    }
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  std::unique_ptr<Env> env_;
  fs::path root_;
};

// One workload per test keeps the suite at a few seconds under the sanitizers;
// CFS_REPAIR_TEST_SEEDS=N runs N workloads each (different seeds) for a deeper soak.
std::vector<std::uint64_t> Seeds(std::uint64_t base) {
  const char* env = std::getenv("CFS_REPAIR_TEST_SEEDS");
  const std::uint64_t count = env != nullptr ? std::max(1, std::atoi(env)) : 1;
  std::vector<std::uint64_t> seeds;
  for (std::uint64_t i = 0; i < count; ++i) seeds.push_back(base + i * 100);
  return seeds;
}

TEST_F(RepairStoreTest, EveryFaultKindRepairsWithTheValueLog) {
  for (std::uint64_t seed : Seeds(12)) {
    ASSERT_NO_FATAL_FAILURE(RunFaults(true, seed));
  }
}

TEST_F(RepairStoreTest, EveryFaultKindRepairsWithoutTheValueLog) {
  for (std::uint64_t seed : Seeds(21)) {
    ASSERT_NO_FATAL_FAILURE(RunFaults(false, seed));
  }
}

TEST_F(RepairStoreTest, AHealthyStoreIsLeftAsItIs) {
  for (const bool vlog : {true, false}) {
    Model model;
    const fs::path dir = root_ / (vlog ? "healthy-vlog" : "healthy");
    ASSERT_NO_FATAL_FAILURE(Build(dir, vlog, vlog ? 31 : 32, &model));
    fs::remove(dir / "LOCK");
    std::map<std::string, std::vector<char>> before;
    for (const auto& entry : fs::directory_iterator(dir)) {
      before[entry.path().filename().string()] = ReadAll(entry.path());
    }
    const RepairReport report = Repair(dir);
    EXPECT_EQ(report.errors_found, 0u);
    EXPECT_TRUE(report.actions.empty());
    EXPECT_FALSE(report.manifest_rebuilt);
    std::map<std::string, std::vector<char>> after;
    for (const auto& entry : fs::directory_iterator(dir)) {
      after[entry.path().filename().string()] = ReadAll(entry.path());
    }
    EXPECT_TRUE(before == after) << "repair changed a healthy store's files";
    int lost = 0;
    ASSERT_NO_FATAL_FAILURE(ExpectReadsAgree(dir, vlog, model, {}, &lost));
    EXPECT_EQ(lost, 0);
  }
}

// A manifest that puts overlapping tables into one level >= 1 (a read would look in one of
// them only): repair merges them into one run of that level, keeping every version, so each
// key reads its newest value again.
TEST_F(RepairStoreTest, OverlappingTablesOfALevelAreMerged) {
  const fs::path dir = root_ / "overlap";
  Options options = StoreOptions(false);
  {
    auto db = DB::Open(options, dir.string());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 300; ++i) {
        ASSERT_TRUE(db.value()
                        ->Put({}, "key" + std::to_string(100000 + i),
                              "v" + std::to_string(round) + "-" + std::to_string(i))
                        .ok());
      }
      ASSERT_TRUE(db.value()->Flush().ok());
    }
    ASSERT_TRUE(db.value()->Close().ok());
  }
  fs::remove(dir / "LOCK");
  const StoreState state = State(dir);
  VersionEdit edit;
  edit.SetFormatVersion(kStoreFormatVersion);
  edit.SetLogNumber(state.log_number);
  edit.SetNextFileNumber(state.next_file_number + 1);
  edit.SetLastSequence(state.last_sequence);
  int files = 0;
  for (const auto& level : state.version.files) {
    for (const auto& file : level) {
      edit.AddFile(1, *file);  // every table to level 1, where they overlap
      ++files;
    }
  }
  ASSERT_GE(files, 2);
  std::string record;
  edit.EncodeTo(&record);
  auto file = scheduler_->BlockOn(env_->NewWritableFile(
      ManifestFileName(dir.string(), state.next_file_number), WriteMode::kCreateExclusive));
  ASSERT_TRUE(file.ok());
  ManifestWriter writer(std::move(file).value());
  ASSERT_TRUE(scheduler_->BlockOn(writer.AddRecord(record)).ok());
  ASSERT_TRUE(scheduler_->BlockOn(writer.Sync()).ok());
  ASSERT_TRUE(scheduler_->BlockOn(writer.Close()).ok());
  ASSERT_TRUE(
      scheduler_->BlockOn(SetCurrentFile(env_.get(), dir.string(), state.next_file_number)).ok());
  ASSERT_GT(Check(dir).errors(), 0u);

  const RepairReport report = Repair(dir);
  bool merged = false;
  for (const RepairAction& a : report.actions) {
    merged |= a.action.find("merged into one run") != std::string::npos;
  }
  EXPECT_TRUE(merged);
  EXPECT_EQ(report.errors_left, 0u);
  EXPECT_EQ(Check(dir).errors(), 0u);
  auto db = DB::Open(options, dir.string());
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  for (int i = 0; i < 300; ++i) {
    std::string value;
    ASSERT_TRUE(db.value()->Get({}, "key" + std::to_string(100000 + i), &value).ok());
    EXPECT_EQ(value, "v1-" + std::to_string(i));
  }
  ASSERT_TRUE(db.value()->Close().ok());
}

// A power cut at the n-th operation of one kind during a repair, for every n until the repair
// gets through. What survives must be either the damaged store as it was (the check finds the
// same damaged file, which is still in the directory) or the repaired one; either way the
// damaged original survives (in the directory or in lost/), and a second repair then leaves a
// store that checks clean, opens, and reads as the model allows.
class RepairCrashTest : public ::testing::TestWithParam<testutil::FaultOp> {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler).value();
  }

  Options StoreOptions(Env* env) const {
    Options options;
    options.scheduler = scheduler_.get();
    options.env = env;
    options.block_size_bytes = 512;
    options.index_partition_size_bytes = 256;
    options.write_buffer_size_bytes = 32 << 10;
    options.wal_segment_size_bytes = 64 << 10;
    options.min_blob_size_bytes = 256;
    options.vlog_file_size_bytes = 64 << 10;
    return options;
  }

  std::string Read(Env* env, const std::string& path) {
    auto file = scheduler_->BlockOn(env->NewRandomAccessFile(path));
    EXPECT_TRUE(file.ok()) << path;
    std::string bytes(file.value()->size_bytes(), '\0');
    auto got = scheduler_->BlockOn(file.value()->Read(0, bytes.size(), bytes.data()));
    EXPECT_TRUE(got.ok());
    return bytes;
  }
  void Write(Env* env, const std::string& path, const std::string& bytes) {
    auto file = scheduler_->BlockOn(env->NewWritableFile(path, WriteMode::kCreateTruncate));
    ASSERT_TRUE(file.ok()) << path;
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->WriteAt(0, bytes)).ok());
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->Sync()).ok());
    ASSERT_TRUE(scheduler_->BlockOn(file.value()->Close()).ok());
  }

  // A store with an SST data block damaged, as file images; *touched gets the SST's keys.
  void BuildDamaged(std::map<std::string, std::string>* image, std::string* damaged,
                    std::set<std::string>* touched) {
    std::unique_ptr<Env> env = NewMemEnv(scheduler_.get());
    ASSERT_TRUE(env->CreateDirIfMissing(kRoot).ok());
    {
      auto db = DB::Open(StoreOptions(env.get()), kStore);
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      for (int i = 0; i < 600; ++i) {
        const std::string key = "key" + std::to_string(100000 + i % 300);
        const std::string value(i % 3 == 0 ? 400 : 40, static_cast<char>('a' + i % 26));
        ASSERT_TRUE(db.value()->Put({}, key, value + std::to_string(i)).ok());
        model_[key] = value + std::to_string(i);
        if (i % 200 == 199) {
          ASSERT_TRUE(db.value()->Flush().ok());
        }
      }
      for (int i = 0; i < 30; ++i) {
        const std::string key = "key" + std::to_string(100000 + i * 7);
        ASSERT_TRUE(db.value()->Delete(WriteOptions{.sync = true}, key).ok());
        model_.erase(key);
      }
      ASSERT_TRUE(db.value()->Close().ok());
    }
    auto state = scheduler_->BlockOn(ReadStoreState(env.get(), kStore));
    ASSERT_TRUE(state.ok());
    std::uint64_t number = 0;
    for (const auto& files : state.value().version.files) {
      for (const auto& file : files) number = file->number;
    }
    *damaged = BaseFileName(FileType::kSst, number);
    auto names = env->ListDir(kStore);
    ASSERT_TRUE(names.ok());
    for (const std::string& name : names.value()) {
      if (name == "LOCK") continue;
      (*image)[name] = Read(env.get(), std::string(kStore) + "/" + name);
    }
    std::string& sst = (*image)[*damaged];
    sst[100] = static_cast<char>(sst[100] ^ 0x5a);  // inside the first data block
    // Its keys, read from a healthy copy of the table.
    Write(env.get(), std::string(kRoot) + "/table.sst",
          Read(env.get(), std::string(kStore) + "/" + *damaged));
    auto file = scheduler_->BlockOn(env->NewRandomAccessFile(std::string(kRoot) + "/table.sst"));
    ASSERT_TRUE(file.ok());
    auto table = scheduler_->BlockOn(Table::Open(TableOptions{}, std::move(file).value()));
    ASSERT_TRUE(table.ok());
    scheduler_->BlockOn(table.value()->CheckBlocks([](std::uint64_t, const Status&) {},
                                                   [&](std::string_view key, std::string_view) {
                                                     touched->insert(
                                                         std::string(ExtractUserKey(key)));
                                                   }));
  }

  static constexpr const char* kRoot = "/root";
  static constexpr const char* kStore = "/root/store";
  std::unique_ptr<io::Scheduler> scheduler_;
  std::map<std::string, std::string> model_;
};

TEST_P(RepairCrashTest, APowerCutLeavesTheOldOrTheRepairedStoreAndTheEvidence) {
  const testutil::FaultOp op = GetParam();
  std::map<std::string, std::string> image;
  std::string damaged;
  std::set<std::string> touched;
  ASSERT_NO_FATAL_FAILURE(BuildDamaged(&image, &damaged, &touched));
  constexpr std::uint64_t kCutPointsMax = 200;
  bool got_through = false;
  std::uint64_t cut_points = 0;
  for (std::uint64_t n = 0; n < kCutPointsMax && !got_through; ++n) {
    SCOPED_TRACE("power cut at operation " + std::to_string(n));
    cut_points = n;
    std::unique_ptr<Env> base = NewMemEnv(scheduler_.get());
    ASSERT_TRUE(base->CreateDirIfMissing(kRoot).ok());
    ASSERT_TRUE(base->CreateDirIfMissing(kStore).ok());
    for (const auto& [name, bytes] : image) {
      ASSERT_NO_FATAL_FAILURE(Write(base.get(), std::string(kStore) + "/" + name, bytes));
    }
    auto fault = std::make_unique<testutil::FaultEnv>(base.get());
    const std::uint64_t ops_before = fault->operations(op);
    fault->PowerCutAt(op, n);
    auto repaired = scheduler_->BlockOn(RepairStoreFiles(fault.get(), kStore, {}));
    got_through = fault->operations(op) - ops_before <= n;
    if (got_through) {
      ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
    }
    fault->SetFilesystemActive(false);
    ASSERT_TRUE(
        scheduler_->BlockOn(fault->SimulatePowerCut(testutil::PowerCutMode::kTear, n)).ok());
    fault->ClearFaults();
    fault->SetFilesystemActive(true);

    // The old store or the new one.
    auto check = scheduler_->BlockOn(CheckStoreFiles(base.get(), kStore, {}));
    ASSERT_TRUE(check.ok());
    for (const CheckFinding& f : check.value().findings) {
      if (f.severity == CheckSeverity::kError) {
        EXPECT_EQ(f.file, damaged) << f.problem;
      }
    }
    const bool in_store =
        scheduler_->BlockOn(base->FileSize(std::string(kStore) + "/" + damaged)).ok();
    const bool in_lost =
        scheduler_
            ->BlockOn(base->FileSize(std::string(kStore) + "/" + kLostDirName + "/" + damaged))
            .ok();
    EXPECT_TRUE(in_store || in_lost) << "the damaged original is gone";
    if (check.value().errors() > 0) {
      EXPECT_TRUE(in_store) << "the old store, without its damaged file";
    }

    // A second repair (or none needed) leaves a store that checks clean and reads right.
    auto again = scheduler_->BlockOn(RepairStoreFiles(base.get(), kStore, {}));
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again.value().errors_left, 0u);
    auto db = DB::Open(StoreOptions(base.get()), kStore);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < 300; ++i) {
      const std::string key = "key" + std::to_string(100000 + i);
      std::string value;
      const Status status = db.value()->Get({}, key, &value);
      auto it = model_.find(key);
      if (touched.contains(key)) {
        EXPECT_TRUE(status.ok() || status.IsNotFound()) << key << ": " << status.ToString();
        continue;
      }
      if (it == model_.end()) {
        EXPECT_TRUE(status.IsNotFound()) << key << ": " << status.ToString();
      } else {
        ASSERT_TRUE(status.ok()) << key << ": " << status.ToString();
        EXPECT_EQ(value, it->second) << key;
      }
    }
    ASSERT_TRUE(db.value()->Close().ok());
  }
  EXPECT_TRUE(got_through) << "more than " << kCutPointsMax << " operations in a repair";
  std::cout << "[ repair crash ] operation kind " << static_cast<int>(op) << ": " << cut_points
            << " cut points\n";
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, RepairCrashTest,
                         ::testing::Values(testutil::FaultOp::kOpenWrite, testutil::FaultOp::kWrite,
                                           testutil::FaultOp::kSync, testutil::FaultOp::kSyncDir,
                                           testutil::FaultOp::kLink, testutil::FaultOp::kRename,
                                           testutil::FaultOp::kRemove, testutil::FaultOp::kMkdir));

}  // namespace
}  // namespace cascadefs::engine
