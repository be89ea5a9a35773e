// journal_store_test.cc: the engine-backed JournalStore (hub/journal_store.h) and its record
// formats (journal_format.h): append, scan, prune, reopen, and damaged values refused.
#include "hub/journal_store.h"

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/options.h"
#include "journal_format.h"
#include "testutil/temp_dir.h"

namespace cascadefs::hub {
namespace {

net::JournalEntry MakeEntry(std::uint64_t jid, std::string path) {
  net::JournalEntry e;
  e.jid = jid;
  e.change.kind = net::EntryKind::kFile;
  e.change.path = std::move(path);
  e.change.mode = 0640;
  e.change.mtime_ns = -5;
  e.change.root = std::string("\x01\x02\x03", 3);
  e.time_ns = 1234567890123;
  e.origin = "host-a";
  return e;
}

std::unique_ptr<engine::DB> OpenDb(const std::string& dir) {
  engine::Options options;
  auto db = engine::DB::Open(options, dir);
  EXPECT_TRUE(db.ok()) << db.status().message();
  return std::move(db.value());
}

std::vector<std::uint64_t> Jids(JournalStore* store, std::uint64_t ns, std::uint64_t from) {
  std::vector<std::uint64_t> out;
  Status s = store->Scan(ns, from, [&](const net::JournalEntry& e) {
    out.push_back(e.jid);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

TEST(JournalFormatTest, EntryRoundTripsAndDamageIsCaught) {
  net::JournalEntry e = MakeEntry(42, "dir/file.txt");
  e.change.kind = net::EntryKind::kRename;
  e.change.target = "other/name";
  std::string bytes = EncodeEntry(e);
  Result<net::JournalEntry> back = DecodeEntry(bytes);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back.value().jid, 42u);
  EXPECT_EQ(back.value().change.path, "dir/file.txt");
  EXPECT_EQ(back.value().change.target, "other/name");
  EXPECT_EQ(back.value().change.mtime_ns, -5);
  EXPECT_EQ(back.value().time_ns, 1234567890123);
  EXPECT_EQ(back.value().origin, "host-a");
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x10;
    EXPECT_FALSE(DecodeEntry(damaged).ok()) << "byte " << i;
  }
  EXPECT_FALSE(DecodeEntry(bytes.substr(0, bytes.size() - 1)).ok());
  std::uint64_t ns = 0;
  std::uint64_t jid = 0;
  EXPECT_TRUE(ParseEntryKey(EntryKey(7, 9), &ns, &jid));
  EXPECT_EQ(ns, 7u);
  EXPECT_EQ(jid, 9u);
  EXPECT_LT(EntryKey(1, 0xFFFFFFFF), EntryKey(2, 1));  // big-endian: namespaces are ranges
}

TEST(JournalStoreTest, AppendScanPruneReopen) {
  testutil::TempDir dir;
  std::string hub_id;
  {
    auto db = OpenDb(dir.path());
    EXPECT_FALSE(IsHubStore(db.get()));
    EXPECT_FALSE(OpenEngineJournalStore(db.get(), false).ok());
    auto store = OpenEngineJournalStore(db.get(), true);
    ASSERT_TRUE(store.ok()) << store.status().message();
    EXPECT_TRUE(IsHubStore(db.get()));
    hub_id = store.value()->hub_id();
    EXPECT_EQ(hub_id.size(), kHubIdBytes);
    JournalBatch batch;
    batch.new_namespaces = {{"alpha", 1}, {"beta", 2}};
    for (std::uint64_t j = 1; j <= 5; ++j) batch.entries.push_back({1, MakeEntry(j, "a")});
    batch.entries.push_back({2, MakeEntry(1, "b")});
    ASSERT_TRUE(store.value()->Append(batch).ok());
    EXPECT_EQ(Jids(store.value().get(), 1, 1), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(Jids(store.value().get(), 1, 4), (std::vector<std::uint64_t>{4, 5}));
    EXPECT_EQ(Jids(store.value().get(), 2, 1), (std::vector<std::uint64_t>{1}));
    EXPECT_TRUE(Jids(store.value().get(), 3, 1).empty());
    ASSERT_TRUE(store.value()->Prune(1, {2, 3}).ok());
    EXPECT_EQ(Jids(store.value().get(), 1, 1), (std::vector<std::uint64_t>{1, 4, 5}));
    // Scan stops when the visitor says so.
    int visited = 0;
    ASSERT_TRUE(
        store.value()->Scan(1, 1, [&](const net::JournalEntry&) { return ++visited < 2; }).ok());
    EXPECT_EQ(visited, 2);
    ASSERT_TRUE(db->Close().ok());
  }
  auto db = OpenDb(dir.path());
  auto store = OpenEngineJournalStore(db.get(), false);
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ(store.value()->hub_id(), hub_id);
  auto namespaces = store.value()->ListNamespaces();
  ASSERT_TRUE(namespaces.ok());
  ASSERT_EQ(namespaces.value().size(), 2u);
  EXPECT_EQ(namespaces.value()[0].name, "alpha");
  EXPECT_EQ(namespaces.value()[0].id, 1u);
  EXPECT_EQ(namespaces.value()[1].name, "beta");
  EXPECT_EQ(Jids(store.value().get(), 1, 1), (std::vector<std::uint64_t>{1, 4, 5}));
  // A damaged entry stops the scan with Corruption naming namespace and jid.
  ASSERT_TRUE(db->Put(engine::WriteOptions{}, EntryKey(1, 6), "garbage-bytes").ok());
  Status s = store.value()->Scan(1, 1, [](const net::JournalEntry&) { return true; });
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(std::string(s.message()).find("jid 6"), std::string::npos) << s.message();
  ASSERT_TRUE(db->Close().ok());
}

TEST(JournalStoreTest, RefusesAFilesystemStore) {
  testutil::TempDir dir;
  auto db = OpenDb(dir.path());
  ASSERT_TRUE(db->Put(engine::WriteOptions{}, "m", "x").ok());
  auto store = OpenEngineJournalStore(db.get(), true);
  EXPECT_TRUE(store.status().IsInvalidArgument());
  ASSERT_TRUE(db->Close().ok());
}

}  // namespace
}  // namespace cascadefs::hub
