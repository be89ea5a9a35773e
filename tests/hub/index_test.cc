// index_test.cc: the commit rules of the hub's index (hub/index.h): parent jids, deletes and
// renames of subtrees, renames onto live paths. Method: build a NamespaceIndex by Decide+Apply,
// as the writer does, and check states and answers.
#include "index.h"

#include <gtest/gtest.h>

namespace cascadefs::hub {
namespace {

using net::CommitStatus;
using net::EntryKind;

net::CommitEntry Entry(EntryKind kind, std::string path, std::uint64_t parent,
                       std::string target = "") {
  net::CommitEntry e;
  e.change.kind = kind;
  e.change.path = std::move(path);
  e.change.target = std::move(target);
  e.change.mode = 0644;
  if (kind == EntryKind::kFile) e.change.root = "root-of-" + e.change.path;
  e.parent_jid = parent;
  return e;
}

// Decide, and Apply when journaled: the writer's step. Returns (status, jid).
std::pair<CommitStatus, std::uint64_t> Commit(NamespaceIndex* ns, const net::CommitEntry& e) {
  Decision d = Decide(*ns, e);
  if (!d.journal) return {d.status, d.jid};
  net::JournalEntry j;
  j.jid = ns->head_jid + 1;
  j.change = e.change;
  Apply(ns, j);
  return {CommitStatus::kOk, j.jid};
}

TEST(IndexTest, ParentJidMustMatch) {
  NamespaceIndex ns;
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kFile, "a", 0)), std::make_pair(CommitStatus::kOk, 1ul));
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kFile, "a", 0)),
            std::make_pair(CommitStatus::kConflict, 1ul));
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kFile, "a", 1)), std::make_pair(CommitStatus::kOk, 2ul));
  EXPECT_EQ(ns.head_jid, 2u);
  EXPECT_EQ(ns.Find("a")->root, "root-of-a");
  EXPECT_EQ(ns.Find("a")->source_jid, 2u);
}

TEST(IndexTest, DeleteOfAbsentIsOkWithoutJournal) {
  NamespaceIndex ns;
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kDelete, "x", 0)), std::make_pair(CommitStatus::kOk, 0ul));
  EXPECT_EQ(ns.head_jid, 0u);
}

TEST(IndexTest, DeleteMakesSubtreeTombstones) {
  NamespaceIndex ns;
  Commit(&ns, Entry(EntryKind::kDirectory, "d", 0));    // 1
  Commit(&ns, Entry(EntryKind::kFile, "d/f", 0));       // 2
  Commit(&ns, Entry(EntryKind::kDirectory, "d/e", 0));  // 3
  Commit(&ns, Entry(EntryKind::kFile, "d/e/g", 0));     // 4
  Commit(&ns, Entry(EntryKind::kFile, "d0", 0));        // 5: not under d/
  Commit(&ns, Entry(EntryKind::kFile, "d!", 0));        // 6: sorts before d/
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kDelete, "d", 1)), std::make_pair(CommitStatus::kOk, 7ul));
  for (const char* p : {"d", "d/f", "d/e", "d/e/g"}) {
    ASSERT_NE(ns.Find(p), nullptr) << p;
    EXPECT_TRUE(ns.Find(p)->tombstone()) << p;
    EXPECT_EQ(ns.Find(p)->jid, 7u) << p;
  }
  EXPECT_FALSE(ns.Find("d0")->tombstone());
  EXPECT_FALSE(ns.Find("d!")->tombstone());
  // Deleting a tombstone: OK with its jid, nothing journaled.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kDelete, "d", 7)), std::make_pair(CommitStatus::kOk, 7ul));
  EXPECT_EQ(ns.head_jid, 7u);
  // A new file over a tombstone names the tombstone's jid as parent.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kFile, "d/f", 0)),
            std::make_pair(CommitStatus::kConflict, 7ul));
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kFile, "d/f", 7)), std::make_pair(CommitStatus::kOk, 8ul));
}

TEST(IndexTest, RenameMovesSubtree) {
  NamespaceIndex ns;
  Commit(&ns, Entry(EntryKind::kDirectory, "a", 0));  // 1
  Commit(&ns, Entry(EntryKind::kFile, "a/x", 0));     // 2
  Commit(&ns, Entry(EntryKind::kFile, "a/s/y", 0));   // 3
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 1, "b")),
            std::make_pair(CommitStatus::kOk, 4ul));
  for (const char* p : {"a", "a/x", "a/s/y"}) {
    EXPECT_TRUE(ns.Find(p)->tombstone()) << p;
    EXPECT_EQ(ns.Find(p)->jid, 4u) << p;
  }
  ASSERT_NE(ns.Find("b/x"), nullptr);
  EXPECT_EQ(ns.Find("b/x")->kind, EntryKind::kFile);
  EXPECT_EQ(ns.Find("b/x")->root, "root-of-a/x");
  EXPECT_EQ(ns.Find("b/x")->jid, 4u);
  EXPECT_EQ(ns.Find("b/x")->source_jid, 2u);  // the content's entry stays live (retention)
  EXPECT_EQ(ns.Find("b/s/y")->source_jid, 3u);
  EXPECT_EQ(ns.Find("b")->kind, EntryKind::kDirectory);
  auto live = LiveSourceJids(ns);
  EXPECT_TRUE(live.contains(2));
  EXPECT_TRUE(live.contains(3));
}

TEST(IndexTest, RenameRules) {
  NamespaceIndex ns;
  Commit(&ns, Entry(EntryKind::kFile, "a", 0));  // 1
  Commit(&ns, Entry(EntryKind::kFile, "b", 0));  // 2
  // Onto a live path: rejected.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 1, "b")).first, CommitStatus::kRejected);
  // Into itself: rejected.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 1, "a/c")).first, CommitStatus::kRejected);
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 1, "a")).first, CommitStatus::kRejected);
  // A missing source: conflict with jid 0.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "z", 0, "y")),
            std::make_pair(CommitStatus::kConflict, 0ul));
  // A stale parent: conflict with the current jid.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 7, "c")),
            std::make_pair(CommitStatus::kConflict, 1ul));
  // Onto a tombstone: fine.
  Commit(&ns, Entry(EntryKind::kDelete, "b", 2));  // 3
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 1, "b")),
            std::make_pair(CommitStatus::kOk, 4ul));
  EXPECT_EQ(ns.head_jid, 4u);
  EXPECT_EQ(ns.Find("b")->root, "root-of-a");
  // A renamed-away (tombstone) source: conflict.
  EXPECT_EQ(Commit(&ns, Entry(EntryKind::kRename, "a", 4, "q")),
            std::make_pair(CommitStatus::kConflict, 4ul));
}

TEST(IndexTest, ReplayGivesTheSameIndex) {
  NamespaceIndex live;
  std::vector<net::JournalEntry> journal;
  auto commit = [&](const net::CommitEntry& e) {
    Decision d = Decide(live, e);
    if (!d.journal) return;
    net::JournalEntry j;
    j.jid = live.head_jid + 1;
    j.change = e.change;
    Apply(&live, j);
    journal.push_back(j);
  };
  commit(Entry(EntryKind::kDirectory, "a", 0));
  commit(Entry(EntryKind::kFile, "a/x", 0));
  commit(Entry(EntryKind::kRename, "a", 1, "b"));
  commit(Entry(EntryKind::kFile, "b/x", 3));
  commit(Entry(EntryKind::kDelete, "b", 3));
  NamespaceIndex replayed;
  for (const auto& j : journal) Apply(&replayed, j);
  EXPECT_EQ(replayed.head_jid, live.head_jid);
  ASSERT_EQ(replayed.paths.size(), live.paths.size());
  for (const auto& [path, state] : live.paths) {
    EXPECT_EQ(replayed.Find(path)->jid, state.jid) << path;
    EXPECT_EQ(replayed.Find(path)->kind, state.kind) << path;
  }
}

}  // namespace
}  // namespace cascadefs::hub
