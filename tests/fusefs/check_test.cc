// check_test.cc: fsck's logical layer and gc (fusefs/check.h) over a real store.
//
// Goal: a healthy store gives no error, whatever random workload made it; each kind of
// namespace, recipe and chunk damage is found and named; --repair fixes what it can without
// guessing, after which the store checks clean and the filesystem opens and reads; gc deletes
// exactly the chunks no file refers to.
// Method: a Filesystem (fs/filesystem.h) on an engine store in a temp directory builds the
// tree; damage is injected by writing the store's keys directly (docs/formats/namespace.md).
#include "fusefs/check.h"

#include <sys/stat.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/iterator.h"
#include "engine/options.h"
#include "fs/filesystem.h"
#include "fs/inode_record.h"
#include "fusefs/chunk_store.h"
#include "testutil/temp_dir.h"
#include "tree_driver.h"

namespace cascadefs::fusefs {
namespace {

using engine::CheckSeverity;

using testing_tree::Bytes;
using testing_tree::TreeDriver;
using testing_tree::TreeModel;

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenStore(); }
  void TearDown() override { CloseStore(); }

  void OpenStore() {
    engine::Options options;
    auto db = engine::DB::Open(options, dir_.path() + "/store");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
    OpenFs();
  }
  void OpenFs() {
    FsOptions options;
    options.space_reserve_bytes = 0;
    options.store_dir = dir_.path() + "/store";
    auto fs = db_->scheduler()->BlockOn(Filesystem::Open(db_.get(), options));
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(fs).value();
  }
  void CloseFs() {
    if (!fs_) return;
    EXPECT_TRUE(Run(fs_->FlushAll()).ok());
    fs_.reset();
  }
  void CloseStore() {
    CloseFs();
    if (db_) {
      EXPECT_TRUE(db_->Close().ok());
    }
    db_.reset();
  }

  template <typename T>
  T Run(io::Task<T> task) {
    return db_->scheduler()->BlockOn(std::move(task));
  }
  TreeDriver Driver() { return TreeDriver(fs_.get(), db_->scheduler()); }
  std::uint64_t MkDir(std::uint64_t parent, const std::string& name) {
    return Driver().MkDir(parent, name);
  }
  std::uint64_t Create(std::uint64_t parent, const std::string& name, const std::string& data) {
    return Driver().Create(parent, name, data);
  }
  void Write(std::uint64_t ino, std::uint64_t offset, const std::string& data) {
    Driver().Write(ino, offset, data);
  }
  std::string ReadAll(std::uint64_t ino) { return Driver().ReadAll(ino); }
  std::uint64_t Lookup(std::uint64_t parent, const std::string& name) {
    return Driver().Lookup(parent, name);
  }

  InodeRecord Record(std::uint64_t ino) {
    std::string value;
    EXPECT_TRUE(db_->Get({}, InodeKey(ino), &value).ok()) << ino;
    auto record = InodeRecord::Decode(value);
    EXPECT_TRUE(record.ok());
    return record.ok() ? record.value() : InodeRecord{};
  }
  void PutRecord(std::uint64_t ino, const InodeRecord& record) {
    ASSERT_TRUE(db_->Put({}, InodeKey(ino), record.Encode()).ok());
  }
  DirentValue Dirent(std::uint64_t parent, const std::string& name) {
    std::string value;
    EXPECT_TRUE(db_->Get({}, DirentKey(parent, name), &value).ok()) << name;
    auto dirent = DirentValue::Decode(value);
    EXPECT_TRUE(dirent.ok());
    return dirent.ok() ? dirent.value() : DirentValue{};
  }

  NamespaceCheckReport Check(bool repair = false) {
    auto report = fusefs::CheckNamespace(db_.get(), NamespaceCheckOptions{.repair = repair});
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? report.value() : NamespaceCheckReport{};
  }

  static std::string Describe(const NamespaceCheckReport& report) {
    std::string out;
    for (const NamespaceFinding& f : report.findings) {
      out += std::string(f.severity == CheckSeverity::kError     ? "error"
                         : f.severity == CheckSeverity::kWarning ? "warning"
                                                                 : "note") +
             " ino " + (f.ino ? std::to_string(*f.ino) : "-") + " path '" + f.path + "' " +
             f.problem + (f.repaired ? " [repaired]" : "") + "\n";
    }
    return out;
  }
  static bool HasFinding(const NamespaceCheckReport& report, const std::string& needle,
                         std::optional<std::uint64_t> ino = std::nullopt) {
    for (const NamespaceFinding& f : report.findings) {
      if (f.severity == CheckSeverity::kError && f.problem.find(needle) != std::string::npos &&
          (!ino || f.ino == ino)) {
        return true;
      }
    }
    return false;
  }

  // Repairs, then checks again: clean, and the filesystem opens.
  void RepairAndExpectClean() {
    CloseFs();
    NamespaceCheckReport repaired = Check(/*repair=*/true);
    EXPECT_GT(repaired.repaired(), 0u) << Describe(repaired);
    EXPECT_EQ(repaired.errors_left(), 0u) << Describe(repaired);
    NamespaceCheckReport after = Check();
    EXPECT_EQ(after.errors(), 0u) << Describe(after);
    OpenFs();
  }

  // A small tree: /a/{one,two}, /b/three (a hard link of /a/one), /b/link -> a/one, xattrs.
  void MakeTree() {
    std::mt19937_64 rng(1);
    a_ = MkDir(kRootIno, "a");
    b_ = MkDir(kRootIno, "b");
    one_data_ = Bytes(rng, 300'000, /*text=*/true);
    one_ = Create(a_, "one", one_data_);
    two_data_ = Bytes(rng, 70'000, /*text=*/false);
    two_ = Create(a_, "two", two_data_);
    EntryOut out;
    ASSERT_EQ(Run(fs_->Link(one_, b_, "three", &out)), 0);
    ASSERT_EQ(Run(fs_->Symlink(b_, "link", "../a/one", {}, &out)), 0);
    ASSERT_EQ(Run(fs_->SetXattr(two_, "user.color", "blue", 0)), 0);
    CloseFs();
    OpenFs();
  }

  testutil::TempDir dir_;
  std::unique_ptr<engine::DB> db_;
  std::unique_ptr<Filesystem> fs_;
  std::uint64_t a_ = 0, b_ = 0, one_ = 0, two_ = 0;
  std::string one_data_;
  std::string two_data_;
};

TEST_F(CheckTest, AHealthyTreeHasNoFindings) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  NamespaceCheckReport report = Check();
  EXPECT_EQ(report.errors(), 0u) << Describe(report);
  EXPECT_EQ(report.directories, 3u);
  EXPECT_EQ(report.files, 2u);
  EXPECT_EQ(report.symlinks, 1u);
  EXPECT_EQ(report.entries, 6u);
  EXPECT_GT(report.chunks, 2u);
  EXPECT_EQ(report.unreferenced_chunks, 0u);
  EXPECT_EQ(report.referenced_chunks, report.chunks);
  EXPECT_EQ(report.file_bytes, 370'000u);
}

TEST_F(CheckTest, ADanglingEntryIsFoundAndRemoved) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  ASSERT_TRUE(db_->Delete({}, InodeKey(two_)).ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "dangling entry: inode " + std::to_string(two_)))
      << Describe(report);
  bool named = false;
  for (const NamespaceFinding& f : report.findings) named |= f.path == "/a/two";
  EXPECT_TRUE(named) << Describe(report);
  EXPECT_TRUE(HasFinding(report, "xattr keys of a missing inode")) << Describe(report);
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  EXPECT_EQ(Lookup(a_, "two"), 0u);
  EXPECT_EQ(ReadAll(one_), one_data_);
}

TEST_F(CheckTest, AWrongLinkCountIsSet) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  InodeRecord record = Record(one_);
  ASSERT_EQ(record.nlink, 2u);
  record.nlink = 5;
  PutRecord(one_, record);
  InodeRecord dir = Record(a_);
  dir.entry_count = 7;
  PutRecord(a_, dir);
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "link count 5, 2 names link here", one_)) << Describe(report);
  EXPECT_TRUE(HasFinding(report, "entry count 7, 2 entries found", a_)) << Describe(report);
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  CloseFs();
  EXPECT_EQ(Record(one_).nlink, 2u);
  EXPECT_EQ(Record(a_).entry_count, 2u);
}

TEST_F(CheckTest, AnInodeNoDirectoryReachesGoesToLostFound) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  const DirentValue entry = Dirent(a_, "two");
  ASSERT_TRUE(db_->Delete({}, DirentKey(a_, "two")).ok());
  ASSERT_TRUE(db_->Delete({}, ListingKey(a_, entry.cookie)).ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "no directory reaches", two_)) << Describe(report);
  const std::string data = [&] {
    OpenFs();
    std::string bytes = ReadAll(two_);
    CloseFs();
    return bytes;
  }();
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  const std::uint64_t lost_found = Lookup(kRootIno, "lost+found");
  ASSERT_NE(lost_found, 0u);
  const std::uint64_t found = Lookup(lost_found, "#" + std::to_string(two_));
  ASSERT_EQ(found, two_);
  EXPECT_EQ(ReadAll(found), data);
}

TEST_F(CheckTest, ADirectoryCycleIsBrokenIntoLostFound) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  const std::uint64_t c = MkDir(b_, "c");
  CloseFs();
  // Move /b into /b/c by hand: /b's entry now lives in c, which lives in b.
  const DirentValue entry = Dirent(kRootIno, "b");
  ASSERT_TRUE(db_->Delete({}, DirentKey(kRootIno, "b")).ok());
  ASSERT_TRUE(db_->Delete({}, ListingKey(kRootIno, entry.cookie)).ok());
  const DirentValue moved{.ino = b_, .cookie = 100, .mode = S_IFDIR};
  ASSERT_TRUE(db_->Put({}, DirentKey(c, "b"), moved.Encode()).ok());
  ASSERT_TRUE(db_->Put({}, ListingKey(c, 100),
                       ListingValue{.ino = b_, .mode = S_IFDIR, .name = "b"}.Encode())
                  .ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "cycle")) << Describe(report);
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  const std::uint64_t lost_found = Lookup(kRootIno, "lost+found");
  ASSERT_NE(lost_found, 0u);
  const std::uint64_t top = std::min(b_, c);
  EXPECT_EQ(Lookup(lost_found, "#" + std::to_string(top)), top);
  // /b/three (a link of /a/one) is reachable again and reads.
  const std::uint64_t three = Lookup(b_, "three");
  ASSERT_EQ(three, one_);
  EXPECT_EQ(ReadAll(three), one_data_);
}

TEST_F(CheckTest, AMissingTwinIsRebuilt) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  const DirentValue one = Dirent(a_, "one");
  ASSERT_TRUE(db_->Delete({}, ListingKey(a_, one.cookie)).ok());
  const DirentValue two = Dirent(a_, "two");
  ASSERT_TRUE(db_->Delete({}, DirentKey(a_, "two")).ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "'one' has no listing twin")) << Describe(report);
  EXPECT_TRUE(HasFinding(report, "listing key for 'two' has no directory entry"))
      << Describe(report);
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  EXPECT_EQ(Lookup(a_, "two"), two_);
  (void)two;
}

TEST_F(CheckTest, ALeakedInodeIsDeletedAndTheSuperblockFixed) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  InodeRecord leaked = Record(two_);
  leaked.nlink = 0;
  PutRecord(9999, leaked);
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "no links and no orphan key", 9999)) << Describe(report);
  EXPECT_TRUE(HasFinding(report, "next inode number")) << Describe(report);
  ASSERT_NO_FATAL_FAILURE(RepairAndExpectClean());
  CloseFs();
  std::string value;
  EXPECT_TRUE(db_->Get({}, InodeKey(9999), &value).IsNotFound());
}

TEST_F(CheckTest, MissingAndDamagedChunksAreRecordedLostAndHealWhenStoredAgain) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  // /a/two (70 KB) is several chunks or one; take its root: a leaf or a node.
  const InodeRecord two = Record(two_);
  ASSERT_TRUE(db_->Delete({}, ChunkKey(two.root.name)).ok());
  const InodeRecord one = Record(one_);
  ASSERT_TRUE(db_->Put({}, ChunkKey(one.root.name), std::string("\x00garbage", 8)).ok());
  NamespaceCheckReport report = Check();
  bool two_named = false;
  bool one_named = false;
  for (const NamespaceFinding& f : report.findings) {
    two_named |= f.path == "/a/two" && f.problem.find("missing") != std::string::npos;
    one_named |= (f.path == "/a/one" || f.path == "/b/three") &&
                 f.problem.find("damaged") != std::string::npos;
  }
  EXPECT_TRUE(two_named) << Describe(report);
  EXPECT_TRUE(one_named) << Describe(report);
  EXPECT_TRUE(HasFinding(report, "chunk damaged")) << Describe(report);
  EXPECT_EQ(report.files_damaged, 2u);

  // Repair cannot bring bytes back; it records them lost (and deletes the damaged bytes), so
  // the store checks clean with one warning per damaged file, and the files read EIO.
  const std::uint64_t chunks_before = report.chunks;
  NamespaceCheckReport repaired = Check(/*repair=*/true);
  EXPECT_EQ(repaired.errors_left(), 0u) << Describe(repaired);
  EXPECT_GT(repaired.repaired(), 0u) << Describe(repaired);
  // What the damaged nodes named is unknown this run: no chunk was deleted as garbage.
  EXPECT_EQ(repaired.garbage_chunks_deleted, 0u);
  NamespaceCheckReport after = Check();
  EXPECT_EQ(after.errors(), 0u) << Describe(after);
  EXPECT_EQ(after.files_with_lost_data, 2u) << Describe(after);
  EXPECT_EQ(after.chunks, chunks_before - 1);  // the damaged chunk's bytes are gone
  std::string value;
  EXPECT_TRUE(db_->Get({}, LostChunkKey(two.root.name), &value).ok());
  EXPECT_TRUE(db_->Get({}, LostChunkKey(one.root.name), &value).ok());
  EXPECT_TRUE(db_->Get({}, ChunkKey(one.root.name), &value).IsNotFound());
  OpenFs();
  std::string out;
  EXPECT_EQ(Run(fs_->Open(two_, false)), 0);
  EXPECT_EQ(Run(fs_->Read(two_, 0, 4096, &out)), EIO);
  EXPECT_EQ(Run(fs_->Release(two_)), 0);

  // Storing the same bytes again (here a new file with the same contents) heals both files.
  Create(kRootIno, "two-again", two_data_);
  Create(kRootIno, "one-again", one_data_);
  EXPECT_EQ(ReadAll(two_), two_data_);
  EXPECT_EQ(ReadAll(one_), one_data_);
  CloseFs();
  NamespaceCheckReport healed = Check();
  EXPECT_EQ(healed.errors(), 0u) << Describe(healed);
  EXPECT_EQ(healed.files_with_lost_data, 0u) << Describe(healed);
  // The stale records go with gc (or repair).
  auto gc = CollectGarbage(db_.get(), GcOptions{});
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_EQ(gc.value().lost_records_removed, 2u);
  EXPECT_TRUE(db_->Get({}, LostChunkKey(two.root.name), &value).IsNotFound());
  OpenFs();
}

TEST_F(CheckTest, AChunkRecordedLostDoesNotStopGc) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  const InodeRecord one = Record(one_);
  ASSERT_GT(one.root.height, 0) << "the 300 KB text file has a recipe node";
  ASSERT_TRUE(db_->Delete({}, ChunkKey(one.root.name)).ok());
  // A missing node: gc cannot know what it named, so it deletes nothing.
  EXPECT_FALSE(CollectGarbage(db_.get(), GcOptions{}).ok());
  NamespaceCheckReport repaired = Check(/*repair=*/true);
  EXPECT_EQ(repaired.errors_left(), 0u) << Describe(repaired);
  // Recorded lost: gc walks past it, and collects the leaves only the lost node named.
  auto gc = CollectGarbage(db_.get(), GcOptions{});
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_GT(gc.value().deleted_chunks, 0u);
  NamespaceCheckReport after = Check();
  EXPECT_EQ(after.errors(), 0u) << Describe(after);
  EXPECT_EQ(after.files_with_lost_data, 1u) << Describe(after);
  OpenFs();
  EXPECT_EQ(ReadAll(two_).size(), 70'000u);
}

TEST_F(CheckTest, AMissingRootInodeIsWrittenAgain) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  ASSERT_TRUE(db_->Delete({}, InodeKey(kRootIno)).ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "root directory's inode is missing")) << Describe(report);
  EXPECT_FALSE(HasFinding(report, "does not exist")) << Describe(report);
  RepairAndExpectClean();
  EXPECT_EQ(Lookup(kRootIno, "a"), a_);
  EXPECT_EQ(ReadAll(one_), one_data_);
  InodeRecord root;
  ASSERT_EQ(Run(fs_->GetAttr(kRootIno, &root)), 0);
  EXPECT_TRUE(S_ISDIR(root.mode));
  EXPECT_EQ(root.nlink, 4u);  // 2 + /a and /b
  EXPECT_EQ(root.entry_count, 2u);
}

TEST_F(CheckTest, AnInodeRecordThatDoesNotDecodeIsReportedAndNothingIsGuessed) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  CloseFs();
  ASSERT_TRUE(db_->Put({}, InodeKey(two_), std::string("\x01short", 6)).ok());
  NamespaceCheckReport report = Check();
  EXPECT_TRUE(HasFinding(report, "inode record does not decode", two_)) << Describe(report);
  EXPECT_FALSE(HasFinding(report, "dangling")) << Describe(report);
  // Repair leaves the record (its bytes are all there is) and deletes no chunk: the record
  // may name some. gc refuses for the same reason.
  const std::uint64_t chunks_before = report.chunks;
  NamespaceCheckReport repaired = Check(/*repair=*/true);
  EXPECT_GT(repaired.errors_left(), 0u) << Describe(repaired);
  EXPECT_EQ(repaired.garbage_chunks_deleted, 0u);
  auto gc = CollectGarbage(db_.get(), GcOptions{});
  EXPECT_FALSE(gc.ok());
  EXPECT_EQ(Check().chunks, chunks_before);
}

TEST_F(CheckTest, GcDeletesExactlyTheChunksNoFileNames) {
  ASSERT_NO_FATAL_FAILURE(MakeTree());
  std::mt19937_64 rng(7);
  // Overwrite and delete: old chunks become garbage.
  const std::string replaced = Bytes(rng, 200'000, /*text=*/false);
  Write(two_, 0, replaced);
  const std::uint64_t gone = Create(a_, "gone", Bytes(rng, 150'000, false));
  ASSERT_EQ(Run(fs_->Unlink(a_, "gone")), 0);
  (void)gone;
  CloseFs();
  NamespaceCheckReport before = Check();
  EXPECT_EQ(before.errors(), 0u) << Describe(before);
  ASSERT_GT(before.unreferenced_chunks, 0u);
  auto gc = CollectGarbage(db_.get(), GcOptions{});
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_EQ(gc.value().deleted_chunks, before.unreferenced_chunks);
  EXPECT_EQ(gc.value().referenced_chunks, before.referenced_chunks);
  NamespaceCheckReport after = Check();
  EXPECT_EQ(after.errors(), 0u) << Describe(after);
  EXPECT_EQ(after.unreferenced_chunks, 0u);
  EXPECT_EQ(after.chunks, before.referenced_chunks);
  OpenFs();
  EXPECT_EQ(ReadAll(one_), one_data_);
  const std::string two = ReadAll(two_);
  EXPECT_EQ(two.substr(0, replaced.size()), replaced);
}

// No false positives: random workloads (creates, overwrites, truncates, links, renames,
// unlinks, rmdirs, symlinks, xattrs), then the check finds no error; gc then keeps every
// file's bytes (compared with a model of the contents) and leaves no unreferenced chunk.
TEST_F(CheckTest, RandomWorkloadsCheckCleanAndGcKeepsEveryByte) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    const std::uint64_t top = MkDir(kRootIno, "w" + std::to_string(seed));
    TreeModel model;
    Driver().RandomOps(rng, top, 60, &model);
    CloseFs();
    NamespaceCheckReport report = Check();
    ASSERT_EQ(report.errors(), 0u) << Describe(report);
    // Nothing to repair on a healthy store.
    NamespaceCheckReport repair = Check(/*repair=*/true);
    ASSERT_EQ(repair.repaired(), 0u) << Describe(repair);
    EXPECT_EQ(repair.garbage_chunks_deleted, report.unreferenced_chunks);
    auto gc = CollectGarbage(db_.get(), GcOptions{});
    ASSERT_TRUE(gc.ok()) << gc.status().ToString();
    NamespaceCheckReport after = Check();
    ASSERT_EQ(after.errors(), 0u) << Describe(after);
    EXPECT_EQ(after.unreferenced_chunks, 0u);
    OpenFs();
    for (const auto& [d, n] : model.names) {
      const std::uint64_t ino = Lookup(d, n);
      if (ino == 0 || !model.contents.contains(ino)) continue;
      ASSERT_EQ(ReadAll(ino), model.contents[ino]) << n;
    }
  }
}

// The daemon's gc (Filesystem::CollectGarbage, fs/gc_fence.h) during a write storm: writers
// create, overwrite (same and shared content, so Puts deduplicate against chunks gc is
// deciding about), truncate and delete their own files and read each back after every change,
// while cycles run back to back. No read fails or differs, and afterwards the store checks
// clean: no tree names a missing chunk.
TEST_F(CheckTest, GcDuringAWriteStormKeepsEveryReferencedChunk) {
  constexpr int kWriters = 3;
  constexpr int kOpsPerWriter = 150;
  std::vector<std::uint64_t> dirs;
  for (int w = 0; w < kWriters; ++w) dirs.push_back(MkDir(kRootIno, "writer" + std::to_string(w)));
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::map<std::uint64_t, std::string>> models(kWriters);
  std::mutex files_mutex;
  std::vector<std::uint64_t> all_files;  // every file the writers made, for the reader
  // A few shared contents: rewriting one of them deduplicates against chunks that an earlier
  // overwrite made unreferenced (the case the fence's touched set exists for).
  std::vector<std::string> shared;
  {
    std::mt19937_64 rng(99);
    for (int i = 0; i < 4; ++i) shared.push_back(Bytes(rng, 40'000 + 10'000 * i, i % 2 == 0));
  }
  auto writer = [&](int w) {
    std::mt19937_64 rng(1000 + static_cast<std::uint64_t>(w));
    std::map<std::uint64_t, std::string>& model = models[static_cast<std::size_t>(w)];
    std::vector<std::uint64_t> files;
    for (int op = 0; op < kOpsPerWriter && failures.load() == 0; ++op) {
      const int kind = static_cast<int>(rng() % 5);
      if (kind == 0 || files.empty()) {
        EntryOut out;
        const std::string name = "f" + std::to_string(op);
        if (Run(fs_->MakeNode(dirs[static_cast<std::size_t>(w)], name, S_IFREG | 0644, 0, {},
                              &out)) != 0) {
          ++failures;
          return;
        }
        files.push_back(out.ino);
        model[out.ino] = "";
        std::lock_guard lock(files_mutex);
        all_files.push_back(out.ino);
        continue;
      }
      const std::uint64_t ino = files[rng() % files.size()];
      std::string& bytes = model[ino];
      if (kind == 1 || kind == 2) {  // overwrite all of it with shared or new content
        const std::string data =
            kind == 1 ? shared[rng() % shared.size()] : Bytes(rng, rng() % 60'000, rng() % 2 == 0);
        SetAttrIn in;
        in.valid = SetAttrIn::kSize;
        in.size = 0;
        InodeRecord attr;
        if (Run(fs_->SetAttr(ino, in, &attr)) != 0) ++failures;
        Write(ino, 0, data);
        bytes = data;
      } else if (kind == 3) {  // patch a range
        const std::string data = Bytes(rng, 1 + rng() % 8'000, rng() % 2 == 0);
        const std::uint64_t offset = bytes.empty() ? 0 : rng() % bytes.size();
        Write(ino, offset, data);
        if (bytes.size() < offset + data.size()) bytes.resize(offset + data.size());
        bytes.replace(offset, data.size(), data);
      } else {  // truncate
        SetAttrIn in;
        in.valid = SetAttrIn::kSize;
        in.size = bytes.size() / 3;
        InodeRecord attr;
        if (Run(fs_->SetAttr(ino, in, &attr)) != 0) ++failures;
        bytes.resize(in.size);
      }
      std::string read_back;
      InodeRecord attr;
      if (Run(fs_->GetAttr(ino, &attr)) != 0 || attr.size != bytes.size()) {
        ++failures;
        continue;
      }
      if (Run(fs_->Open(ino, false)) != 0 ||
          Run(fs_->Read(ino, 0, static_cast<std::uint32_t>(bytes.size()), &read_back)) != 0 ||
          Run(fs_->Release(ino)) != 0 || read_back != bytes) {
        ++failures;
      }
    }
  };
  // Readers read other writers' files while they change: any content may come back (a read
  // beside a write), but never an error, even when gc collected the root the read began with.
  std::atomic<int> read_errors{0};
  std::thread reader([&] {
    std::mt19937_64 rng(4242);
    while (!done.load()) {
      std::uint64_t ino = 0;
      {
        std::lock_guard lock(files_mutex);
        if (!all_files.empty()) ino = all_files[rng() % all_files.size()];
      }
      if (ino == 0) {
        std::this_thread::yield();
        continue;
      }
      std::string bytes;
      if (Run(fs_->Open(ino, false)) != 0) continue;
      const int err = Run(fs_->Read(ino, 0, 1 << 20, &bytes));
      (void)Run(fs_->Release(ino));
      if (err != 0) ++read_errors;
    }
  });
  std::uint64_t cycles = 0;
  std::uint64_t deleted = 0;
  std::thread collector([&] {
    while (!done.load()) {
      GcOptions gc;
      gc.compact = false;
      Result<GcReport> report = Run(fs_->CollectGarbage(gc));
      if (report.ok()) {
        ++cycles;
        deleted += report.value().deleted_chunks;
      } else if (!report.status().IsBusy()) {
        ADD_FAILURE() << report.status().ToString();
        return;
      }
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) writers.emplace_back(writer, w);
  for (std::thread& t : writers) t.join();
  done.store(true);
  collector.join();
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(read_errors.load(), 0);
  EXPECT_GT(cycles, 1u);
  EXPECT_GT(deleted, 0u) << "the storm's overwrites left garbage that no cycle collected";
  // Everything reads back after the storm, and the store is whole.
  for (int w = 0; w < kWriters; ++w) {
    for (const auto& [ino, bytes] : models[static_cast<std::size_t>(w)]) {
      ASSERT_EQ(ReadAll(ino), bytes) << "writer " << w << " inode " << ino;
    }
  }
  CloseFs();
  NamespaceCheckReport report = Check();
  EXPECT_EQ(report.errors(), 0u) << Describe(report);
  EXPECT_EQ(report.files_damaged, 0u);
}

}  // namespace
}  // namespace cascadefs::fusefs
