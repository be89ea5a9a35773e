// damage_test.cc: the damage suite of fsck (docs/fsck.md, "The damage suite").
//
// Goal: from healthy stores made by random workloads, each kind of fault — a flipped byte in
// an SST, a WAL segment, a value log or the manifest; a truncated or deleted file; an orphan
// inode, a wrong link count, a dangling entry, a missing chunk — is found by fsck and named
// (the store file, or the inode and path), and after `fsck --repair` the store checks clean
// and opens, and no file reads bytes it never held. Healthy stores give no finding at all.
// Method: fusefs::FsckStore (the code behind `cascadefs fsck`) over real stores in a temporary
// directory; the filesystem (fs/filesystem.h) makes them and reads them back. A model keeps
// every version each file had, because repair may bring back an older version of a key whose
// newest one was in a dropped block (docs/fsck.md, "Repairing the engine's files"); any other
// successful read must equal the newest version.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/options.h"
#include "engine/write_batch.h"
#include "fs/filesystem.h"
#include "fs/inode_record.h"
#include "fusefs/check.h"
#include "fusefs/chunk_store.h"
#include "testutil/temp_dir.h"
#include "tree_driver.h"

namespace cascadefs::fusefs {
namespace {

namespace fs = std::filesystem;
using testing_tree::TreeDriver;
using testing_tree::TreeModel;

// Random workloads; each makes one healthy store and takes two fault kinds (in turn), so
// every kind meets several stores, with and without the value log.
constexpr std::uint64_t kWorkloads = 20;
constexpr int kFaultsPerWorkload = 2;
constexpr int kOpsPerWorkload = 50;

enum class Fault {
  kSstByte,
  kWalByte,
  kVlogByte,
  kManifestByte,
  kTruncateSst,
  kDeleteSst,
  kDeleteVlog,
  kOrphanInode,
  kWrongLinkCount,
  kDanglingEntry,
  kMissingChunk,
  kCount,
};

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kSstByte:
      return "a flipped byte in an SST";
    case Fault::kWalByte:
      return "a flipped byte in a WAL segment";
    case Fault::kVlogByte:
      return "a flipped byte in a value log";
    case Fault::kManifestByte:
      return "a flipped byte in the manifest";
    case Fault::kTruncateSst:
      return "a truncated SST";
    case Fault::kDeleteSst:
      return "a deleted SST";
    case Fault::kDeleteVlog:
      return "a deleted value log";
    case Fault::kOrphanInode:
      return "an orphan inode";
    case Fault::kWrongLinkCount:
      return "a wrong link count";
    case Fault::kDanglingEntry:
      return "a dangling entry";
    case Fault::kMissingChunk:
      return "a missing chunk";
    case Fault::kCount:
      break;
  }
  return "?";
}

bool IsEngineFault(Fault fault) { return fault <= Fault::kDeleteVlog; }
bool NeedsValueLog(Fault fault) { return fault == Fault::kVlogByte || fault == Fault::kDeleteVlog; }

std::vector<fs::path> FilesEndingWith(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().string().ends_with(suffix)) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void FlipByte(const fs::path& path, std::uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file) << path;
  file.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  file.read(&byte, 1);
  ASSERT_TRUE(file) << path << " has no byte at " << offset;
  byte = static_cast<char>(byte ^ 0x5a);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&byte, 1);
  ASSERT_TRUE(file) << path;
}

// Every version each inode's bytes had, newest last, so a repaired store's reads can be held
// to "the newest, or (after a dropped block) an older one; never anything else".
struct History {
  std::map<std::uint64_t, std::vector<std::string>> versions;
  void Record(const TreeModel& model) {
    for (const auto& [ino, bytes] : model.contents) {
      std::vector<std::string>& v = versions[ino];
      // Every file is created empty, then written.
      if (v.empty()) v.push_back("");
      if (v.back() != bytes) v.push_back(bytes);
    }
  }
};

class DamageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{});
    ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();
    scheduler_ = std::move(scheduler).value();
  }

  engine::Options StoreOptions(bool value_log) const {
    engine::Options options;
    options.scheduler = scheduler_.get();
    // Small files, so a workload of a few MB spreads over several SSTs, WAL segments and
    // value logs, and a fault hits one of many.
    // Memtables flush only where Build says, so what was written after the last flush is
    // all in the WAL segments the next open replays (where a WAL fault is aimed).
    options.write_buffer_size_bytes = 8 << 20;
    options.wal_segment_size_bytes = 64 << 10;
    options.target_file_size_bytes = 256 << 10;
    options.min_blob_size_bytes = value_log ? 512 : 0;
    options.vlog_file_size_bytes = 256 << 10;
    return options;
  }

  struct Opened {
    std::unique_ptr<engine::DB> db;
    std::unique_ptr<Filesystem> fs;
  };

  Opened Open(const fs::path& dir, bool value_log, bool create) {
    Opened out;
    engine::Options options = StoreOptions(value_log);
    options.create_if_missing = create;
    auto db = engine::DB::Open(options, dir.string());
    EXPECT_TRUE(db.ok()) << dir << ": " << db.status().ToString();
    if (!db.ok()) return out;
    out.db = std::move(db).value();
    FsOptions fs_options;
    fs_options.space_reserve_bytes = 0;
    fs_options.store_dir = dir.string();
    auto fs = scheduler_->BlockOn(Filesystem::Open(out.db.get(), fs_options));
    EXPECT_TRUE(fs.ok()) << dir << ": " << fs.status().ToString();
    if (fs.ok()) out.fs = std::move(fs).value();
    return out;
  }

  void Close(Opened* opened) {
    if (opened->fs) {
      EXPECT_TRUE(scheduler_->BlockOn(opened->fs->FlushAll()).ok());
      opened->fs.reset();
    }
    if (opened->db) {
      EXPECT_TRUE(opened->db->Close().ok());
    }
    opened->db.reset();
  }

  // A healthy store at `dir`: a random workload, flushed to SSTs twice on the way, the rest
  // of it left in the WAL (Close does not flush the memtable).
  void Build(const fs::path& dir, std::uint64_t seed, bool value_log, TreeModel* model,
             History* history) {
    Opened opened = Open(dir, value_log, /*create=*/true);
    ASSERT_TRUE(opened.fs);
    TreeDriver driver(opened.fs.get(), scheduler_.get());
    std::mt19937_64 rng(seed);
    const std::uint64_t top = driver.MkDir(kRootIno, "w");
    for (int round = 0; round < 5; ++round) {
      driver.RandomOps(rng, top, kOpsPerWorkload / 5, model);
      history->Record(*model);
      if (round == 1 || round == 3) {
        ASSERT_TRUE(scheduler_->BlockOn(opened.fs->FlushAll()).ok());
        ASSERT_TRUE(opened.db->Flush().ok());
      }
    }
    // A large binary file: its bytes are stored raw (incompressible), so a flip can be aimed
    // at live data (the SST block or value-log record holding it).
    const std::string victim = testing_tree::Bytes(rng, 200'000, /*text=*/false);
    model->contents[driver.Create(top, "victim", victim)] = victim;
    model->names.emplace_back(top, "victim");
    history->Record(*model);
    victim_ = victim;
    // Synced, as after an fsync, and written after: the next write-out carries the sync mark
    // that vouches for the victim's records (docs/formats/wal.md, "Sync marks"), so damage to
    // them is damage, not the torn tail of unsynced writes a crash may leave. (Damage to the
    // very last write-out before a crash cannot be told from a torn tail.)
    EXPECT_EQ(scheduler_->BlockOn(opened.fs->SyncAll()), 0);
    model->contents[driver.Create(top, "after", "written after the sync")] =
        "written after the sync";
    model->names.emplace_back(top, "after");
    history->Record(*model);
    EXPECT_EQ(scheduler_->BlockOn(opened.fs->SyncAll()), 0);
    Close(&opened);
  }

  FsckReport Fsck(const fs::path& dir, bool repair) {
    auto report = FsckStore(scheduler_.get(), dir.string(), FsckOptions{.repair = repair});
    EXPECT_TRUE(report.ok()) << dir << ": " << report.status().ToString();
    return report.ok() ? std::move(report).value() : FsckReport{};
  }

  static std::string Describe(const FsckReport& report) {
    std::string out;
    for (const engine::CheckFinding& f : report.engine.findings) {
      out += f.file + (f.offset ? " @" + std::to_string(*f.offset) : "") + ": " + f.problem + "\n";
    }
    if (report.engine_repair) {
      for (const engine::RepairAction& a : report.engine_repair->actions) {
        out += "repair " + a.file + ": " + a.action + "\n";
      }
    }
    for (const NamespaceFinding& f : report.logical.findings) {
      out += "inode " + (f.ino ? std::to_string(*f.ino) : "-") + " '" + f.path + "' " + f.chunk +
             ": " + f.problem + (f.repaired ? " [repaired]" : "") + "\n";
    }
    return out;
  }

  // The offset of the victim's bytes in one of `files`, or -1.
  std::pair<fs::path, std::int64_t> FindVictim(const std::vector<fs::path>& files) const {
    const std::string needle = victim_.substr(100'000, 64);
    for (const fs::path& file : files) {
      const std::string bytes = ReadFile(file);
      const std::size_t at = bytes.find(needle);
      if (at != std::string::npos) return {file, static_cast<std::int64_t>(at + 32)};
    }
    return {{}, -1};
  }

  // Injects `fault` into the store at `dir`; returns what a finding must name (a store file's
  // name, or an inode number), or "" when this store has nothing the fault can hit.
  std::string Inject(const fs::path& dir, Fault fault, bool value_log, const TreeModel& model,
                     std::mt19937_64& rng) {
    const std::vector<fs::path> ssts = FilesEndingWith(dir, ".sst");
    const std::vector<fs::path> vlogs = FilesEndingWith(dir, ".vlog");
    auto largest = [](const std::vector<fs::path>& files) {
      return *std::max_element(files.begin(), files.end(), [](const auto& a, const auto& b) {
        return fs::file_size(a) < fs::file_size(b);
      });
    };
    switch (fault) {
      case Fault::kSstByte: {
        if (ssts.empty()) return "";
        auto [file, at] = FindVictim(ssts);
        if (at < 0) {
          // The victim's bytes are in the value log: hit a table's first data block.
          file = ssts[rng() % ssts.size()];
          at = static_cast<std::int64_t>(std::min<std::uintmax_t>(100, fs::file_size(file) / 2));
        }
        FlipByte(file, static_cast<std::uint64_t>(at));
        return file.filename().string();
      }
      case Fault::kWalByte: {
        // A synced record the replay reads (segments of the ring also hold an earlier lap's
        // bytes, which are not damage): the victim's bytes when the WAL holds values, else the
        // batch that created it (its name is in the entry's keys).
        const std::vector<fs::path> wals = FilesEndingWith(dir, ".wal");
        auto [file, at] = FindVictim(wals);
        if (at < 0) {
          for (const fs::path& wal : wals) {
            const std::size_t found = ReadFile(wal).find("victim");
            if (found == std::string::npos) continue;
            file = wal;
            at = static_cast<std::int64_t>(found);
            break;
          }
        }
        if (at < 0) return "";
        FlipByte(file, static_cast<std::uint64_t>(at));
        return file.filename().string();
      }
      case Fault::kVlogByte: {
        if (!value_log) return "";
        auto [file, at] = FindVictim(vlogs);
        if (at < 0) return "";
        FlipByte(file, static_cast<std::uint64_t>(at));
        return file.filename().string();
      }
      case Fault::kManifestByte: {
        for (const auto& entry : fs::directory_iterator(dir)) {
          const std::string name = entry.path().filename().string();
          if (!name.starts_with("MANIFEST-")) continue;
          // Inside the first record (the whole state): damage to the last record would be
          // read, rightly, as an edit a crash cut short.
          FlipByte(entry.path(), 8 + rng() % 8);
          return name;
        }
        return "";
      }
      case Fault::kTruncateSst: {
        if (ssts.empty()) return "";
        const fs::path file = largest(ssts);
        fs::resize_file(file, fs::file_size(file) / 2);
        return file.filename().string();
      }
      case Fault::kDeleteSst: {
        if (ssts.empty()) return "";
        const fs::path file = ssts[rng() % ssts.size()];
        fs::remove(file);
        return file.filename().string();
      }
      case Fault::kDeleteVlog: {
        if (!value_log || vlogs.empty()) return "";
        const fs::path file = FindVictim(vlogs).first;
        if (file.empty()) return "";
        fs::remove(file);
        return file.filename().string();
      }
      default:
        break;
    }
    // Namespace faults: written through the engine, as a bug or a lost write would leave them.
    Opened opened = Open(dir, value_log, /*create=*/false);
    if (!opened.db) return "";
    opened.fs.reset();
    engine::DB* db = opened.db.get();
    std::string named;
    std::vector<std::pair<std::uint64_t, std::string>> names = model.names;
    std::shuffle(names.begin(), names.end(), rng);
    for (const auto& [dir_ino, name] : names) {
      std::string value;
      if (!db->Get({}, DirentKey(dir_ino, name), &value).ok()) continue;
      auto dirent = DirentValue::Decode(value);
      if (!dirent.ok()) continue;
      const std::uint64_t ino = dirent.value().ino;
      std::string record_bytes;
      if (!db->Get({}, InodeKey(ino), &record_bytes).ok()) continue;
      auto record = InodeRecord::Decode(record_bytes);
      if (!record.ok() || !S_ISREG(record.value().mode)) continue;
      InodeRecord r = record.value();
      if (fault == Fault::kOrphanInode) {
        if (r.nlink != 1) continue;
        // The only entry goes; the inode keeps its link count: nothing reaches it.
        engine::WriteBatch batch;
        batch.Delete(DirentKey(dir_ino, name));
        batch.Delete(ListingKey(dir_ino, dirent.value().cookie));
        EXPECT_TRUE(db->Write({}, batch).ok());
      } else if (fault == Fault::kWrongLinkCount) {
        r.nlink += 2;
        EXPECT_TRUE(db->Put({}, InodeKey(ino), r.Encode()).ok());
      } else if (fault == Fault::kDanglingEntry) {
        EXPECT_TRUE(db->Delete({}, InodeKey(ino)).ok());
      } else if (fault == Fault::kMissingChunk) {
        if (r.root.empty() || r.root.all_hole()) continue;
        EXPECT_TRUE(db->Delete({}, ChunkKey(r.root.name)).ok());
      }
      named = std::to_string(ino);
      break;
    }
    Close(&opened);
    return named;
  }

  static bool Names(const FsckReport& report, Fault fault, const std::string& what) {
    if (IsEngineFault(fault)) {
      for (const engine::CheckFinding& f : report.engine.findings) {
        if (f.severity == engine::CheckSeverity::kError && f.file == what) return true;
      }
      return false;
    }
    for (const NamespaceFinding& f : report.logical.findings) {
      if (f.severity == engine::CheckSeverity::kError && f.ino && std::to_string(*f.ino) == what) {
        return true;
      }
    }
    return false;
  }

  // After repair: the store opens, and each file the model knows reads as one of its versions
  // (the newest when the fault was in the namespace and did not hit it), or fails (EIO, or
  // ENOENT when its inode was lost). Returns the files that read their newest bytes.
  std::uint64_t ExpectReadsNeverWrong(const fs::path& dir, bool value_log, Fault fault,
                                      const std::string& hit, const TreeModel& model,
                                      const History& history) {
    Opened opened = Open(dir, value_log, /*create=*/false);
    if (!opened.fs) return 0;
    TreeDriver driver(opened.fs.get(), scheduler_.get());
    std::uint64_t exact = 0;
    for (const auto& [ino, bytes] : model.contents) {
      std::string out;
      const int err = driver.TryReadAll(ino, &out);
      const bool linked = std::any_of(model.names.begin(), model.names.end(), [&](const auto& n) {
        return driver.Lookup(n.first, n.second) == ino;
      });
      if (err == 0 && out == bytes) {
        ++exact;
        continue;
      }
      if (!IsEngineFault(fault) && linked && std::to_string(ino) != hit) {
        ADD_FAILURE() << FaultName(fault) << " in inode " << hit << ": inode " << ino
                      << " reads error " << err << " or other bytes, though the fault missed it";
        continue;
      }
      if (err != 0) {
        EXPECT_TRUE(err == EIO || err == ENOENT) << "inode " << ino << ": errno " << err;
        continue;
      }
      const std::vector<std::string>& versions = history.versions.at(ino);
      EXPECT_TRUE(std::find(versions.begin(), versions.end(), out) != versions.end())
          << FaultName(fault) << ": inode " << ino << " reads " << out.size()
          << " bytes that no version of it held";
    }
    Close(&opened);
    return exact;
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  testutil::TempDir dir_;
  std::string victim_;
};

TEST_F(DamageTest, EveryFaultIsFoundNamedAndRepairedToACleanStore) {
  std::map<Fault, int> injected;
  std::map<Fault, int> found;
  std::map<Fault, int> repaired;
  int next_fault = 0;
  for (std::uint64_t seed = 1; seed <= kWorkloads; ++seed) {
    SCOPED_TRACE(::testing::Message() << "workload " << seed);
    const bool value_log = seed % 2 == 0;
    const fs::path healthy = fs::path(dir_.path()) / ("healthy-" + std::to_string(seed));
    TreeModel model;
    History history;
    ASSERT_NO_FATAL_FAILURE(Build(healthy, seed, value_log, &model, &history));
    // No false positives: a healthy store has no error, no warning, and nothing to repair.
    const FsckReport clean = Fsck(healthy, /*repair=*/false);
    ASSERT_EQ(clean.exit_code(), 0) << Describe(clean);
    ASSERT_EQ(clean.warnings(), 0u) << Describe(clean);
    std::mt19937_64 rng(seed * 7919);
    for (int k = 0; k < kFaultsPerWorkload; ++k) {
      // The next kind this store can take (a store without the value log has none to hit).
      Fault fault = Fault::kCount;
      for (int tries = 0; tries < static_cast<int>(Fault::kCount); ++tries) {
        const auto candidate = static_cast<Fault>(next_fault++ % static_cast<int>(Fault::kCount));
        if (!NeedsValueLog(candidate) || value_log) {
          fault = candidate;
          break;
        }
      }
      SCOPED_TRACE(FaultName(fault));
      const fs::path dir =
          fs::path(dir_.path()) / ("damaged-" + std::to_string(seed) + "-" + std::to_string(k));
      fs::copy(healthy, dir, fs::copy_options::recursive);
      fs::remove(dir / "LOCK");
      const std::string hit = Inject(dir, fault, value_log, model, rng);
      ASSERT_FALSE(hit.empty()) << "this store had nothing " << FaultName(fault) << " could hit";
      ++injected[fault];

      const FsckReport before = Fsck(dir, /*repair=*/false);
      EXPECT_EQ(before.exit_code(), 4) << Describe(before);
      const bool named = Names(before, fault, hit);
      EXPECT_TRUE(named) << "no error names " << hit << ":\n" << Describe(before);
      if (named) ++found[fault];

      const FsckReport repair = Fsck(dir, /*repair=*/true);
      EXPECT_EQ(repair.exit_code(), 1) << Describe(repair);
      EXPECT_EQ(repair.errors_left(), 0u) << Describe(repair);
      const FsckReport after = Fsck(dir, /*repair=*/false);
      EXPECT_EQ(after.exit_code(), 0) << Describe(after);
      if (after.exit_code() == 0) ++repaired[fault];
      ExpectReadsNeverWrong(dir, value_log, fault, hit, model, history);
      fs::remove_all(dir);
    }
    fs::remove_all(healthy);
  }
  std::string summary;
  for (int f = 0; f < static_cast<int>(Fault::kCount); ++f) {
    const auto fault = static_cast<Fault>(f);
    EXPECT_GT(injected[fault], 0) << FaultName(fault) << " was never injected";
    summary += std::string(FaultName(fault)) + ": " + std::to_string(injected[fault]) +
               " injected, " + std::to_string(found[fault]) + " found and named, " +
               std::to_string(repaired[fault]) + " repaired to a clean store\n";
  }
  std::cout << summary;
}

}  // namespace
}  // namespace cascadefs::fusefs
