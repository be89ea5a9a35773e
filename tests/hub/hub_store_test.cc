// hub_store_test.cc: the tools' view of a hub store (hub/hub_store.h): the journal listing and
// the check, clean and with a chunk of a live file deleted. Method: commit through an in-process
// Hub, close it, open the store's DB and read it as inspect and fsck do.
#include "hub/hub_store.h"

#include <gtest/gtest.h>

#include "engine/db.h"
#include "engine/io/scheduler.h"
#include "engine/options.h"
#include "fusefs/recipe.h"
#include "hub/hub.h"
#include "testutil/temp_dir.h"

namespace cascadefs::hub {
namespace {

TEST(HubStoreTest, ReadJournalAndCheck) {
  testutil::TempDir dir;
  const std::string store = dir.path() + "/hub";
  auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
  ASSERT_TRUE(scheduler.ok());
  auto source = fusefs::NewMemoryChunkStore();
  fusefs::RecipeTree tree(source.get(), fusefs::ChunkerOptions{});
  std::string data(200000, 'x');
  for (std::size_t i = 0; i < data.size(); i += 7) data[i] = static_cast<char>(i * 13);
  auto root = scheduler.value()->BlockOn(tree.Build(fusefs::ChunkerKind::kBinary, data));
  ASSERT_TRUE(root.ok());
  std::vector<fusefs::ChunkName> names;
  std::vector<int> levels;
  ASSERT_TRUE(scheduler.value()->BlockOn(tree.ListChunks(root.value(), &names, &levels)).ok());
  {
    HubOptions options;
    options.store_dir = store;
    options.cache_size_bytes = 0;
    options.log = [](std::string_view) {};
    auto hub = Hub::Open(options);
    ASSERT_TRUE(hub.ok()) << hub.status().message();
    net::StoreBatch batch;
    for (const auto& name : names) {
      batch.chunks.push_back(
          {std::string(name.encoded()), scheduler.value()->BlockOn(source->Get(name)).value()});
    }
    ASSERT_TRUE(hub.value()->StoreBatch(batch).ok());
    net::Commit commit;
    commit.ns = "docs";
    net::CommitEntry dir_entry;
    dir_entry.change.kind = net::EntryKind::kDirectory;
    dir_entry.change.path = "d";
    net::CommitEntry file;
    file.change.kind = net::EntryKind::kFile;
    file.change.path = "d/f";
    file.change.root = root.value().Encode();
    commit.entries = {dir_entry, file};
    auto reply = hub.value()->Commit(commit, "origin-host");
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply.value().results[1].status, net::CommitStatus::kOk);
    ASSERT_TRUE(hub.value()->Close().ok());
  }
  engine::Options options;
  auto db = engine::DB::Open(options, store);
  ASSERT_TRUE(db.ok());
  auto journal = ReadJournal(db.value().get());
  ASSERT_TRUE(journal.ok()) << journal.status().message();
  ASSERT_EQ(journal.value().size(), 2u);
  EXPECT_EQ(journal.value()[1].ns, "docs");
  EXPECT_EQ(journal.value()[1].entry.change.path, "d/f");
  EXPECT_EQ(journal.value()[1].entry.origin, "origin-host");
  EXPECT_FALSE(ReadJournal(db.value().get(), "nope").ok());
  auto clean = CheckHubStore(db.value().get());
  ASSERT_TRUE(clean.ok()) << clean.status().message();
  EXPECT_TRUE(clean.value().findings.empty());
  EXPECT_EQ(clean.value().entries, 2u);
  EXPECT_EQ(clean.value().live_files, 1u);
  EXPECT_EQ(clean.value().chunks_checked, names.size());
  // Lose a leaf: the check names namespace, jid and path.
  ASSERT_TRUE(db.value()->Delete(engine::WriteOptions{}, fusefs::ChunkKey(names.back())).ok());
  auto damaged = CheckHubStore(db.value().get());
  ASSERT_TRUE(damaged.ok());
  ASSERT_EQ(damaged.value().findings.size(), 1u);
  EXPECT_EQ(damaged.value().findings[0].ns, "docs");
  EXPECT_EQ(damaged.value().findings[0].jid, 2u);
  EXPECT_EQ(damaged.value().findings[0].path, "d/f");
  ASSERT_TRUE(db.value()->Close().ok());
}

}  // namespace
}  // namespace cascadefs::hub
