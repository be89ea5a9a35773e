// sync_rules_test.cc: the synced mount's pure parts: .cascadeignore matching (gitignore
// rules), conflicted-copy names, and the sync state records' round trips and rejections.
#include <gtest/gtest.h>

#include "sync/ignore.h"
#include "sync/sync_state.h"

namespace cascadefs::fusefs::sync {
namespace {

TEST(IgnoreRules, FollowsGitignoreSyntax) {
  const IgnoreRules rules = IgnoreRules::Parse(
      "# build output\n"
      "*.o\n"
      "build/\n"
      "/top-only.txt\n"
      "docs/**/draft-*\n"
      "logs/*.log\n"
      "!logs/keep.log\n"
      "\n"
      "trailing-space.txt   \n");
  EXPECT_TRUE(rules.Ignored("main.o", false));
  EXPECT_TRUE(rules.Ignored("src/deep/util.o", false));
  EXPECT_FALSE(rules.Ignored("main.c", false));
  // A directory pattern matches directories, and hides everything under them.
  EXPECT_TRUE(rules.Ignored("build", true));
  EXPECT_FALSE(rules.Ignored("build", false));
  EXPECT_TRUE(rules.Ignored("build/out/x.txt", false));
  EXPECT_TRUE(rules.Ignored("src/build", true));
  // Anchored patterns match from the root only.
  EXPECT_TRUE(rules.Ignored("top-only.txt", false));
  EXPECT_FALSE(rules.Ignored("sub/top-only.txt", false));
  // "**" spans any number of directories, zero included.
  EXPECT_TRUE(rules.Ignored("docs/draft-1.md", false));
  EXPECT_TRUE(rules.Ignored("docs/a/b/draft-2.md", false));
  EXPECT_FALSE(rules.Ignored("docs/a/final.md", false));
  // '*' does not cross '/'; the last matching pattern decides, so '!' re-includes.
  EXPECT_TRUE(rules.Ignored("logs/today.log", false));
  EXPECT_FALSE(rules.Ignored("logs/old/today.log", false));
  EXPECT_FALSE(rules.Ignored("logs/keep.log", false));
  EXPECT_TRUE(rules.Ignored("trailing-space.txt", false));
  EXPECT_FALSE(IgnoreRules::Parse("").Ignored("anything", false));
  EXPECT_FALSE(IgnoreRules::Parse("# only a comment\n\n").Ignored("x", false));
}

TEST(ConflictedCopyName, KeepsTheExtensionAndFitsAName) {
  EXPECT_EQ(ConflictedCopyName("report.txt", "laptop", "2026-11-22"),
            "report (conflicted copy from laptop 2026-11-22).txt");
  EXPECT_EQ(ConflictedCopyName("archive.tar.gz", "h", "2026-11-22"),
            "archive.tar (conflicted copy from h 2026-11-22).gz");
  EXPECT_EQ(ConflictedCopyName("Makefile", "h", "2026-11-22"),
            "Makefile (conflicted copy from h 2026-11-22)");
  EXPECT_EQ(ConflictedCopyName(".bashrc", "h", "2026-11-22"),
            ".bashrc (conflicted copy from h 2026-11-22)");
  const std::string long_name = std::string(250, 'x') + ".txt";
  const std::string copy = ConflictedCopyName(long_name, "host", "2026-11-22");
  EXPECT_LE(copy.size(), 255u);
  EXPECT_TRUE(copy.ends_with("(conflicted copy from host 2026-11-22).txt")) << copy;
}

TEST(SyncState, RecordsRoundTripAndDamageIsRefused) {
  SyncCursor cursor;
  cursor.hub_id = std::string(16, '\x07');
  cursor.ns = "team";
  cursor.cursor = 123456789;
  Result<SyncCursor> back = SyncCursor::Decode(cursor.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back.value().hub_id, cursor.hub_id);
  EXPECT_EQ(back.value().ns, "team");
  EXPECT_EQ(back.value().cursor, 123456789u);

  BaseEntry file;
  file.jid = 42;
  file.kind = BaseKind::kFile;
  file.mode = 0640;
  file.mtime_ns = -5;  // before the epoch: zigzag keeps the sign
  file.root.name = ChunkName::Of("hello");
  file.root.length = 5;
  file.ino = 99;
  Result<BaseEntry> decoded = BaseEntry::Decode(file.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded.value().jid, 42u);
  EXPECT_EQ(decoded.value().mode, 0640u);
  EXPECT_EQ(decoded.value().mtime_ns, -5);
  EXPECT_EQ(decoded.value().root, file.root);
  EXPECT_EQ(decoded.value().ino, 99u);

  BaseEntry link;
  link.kind = BaseKind::kSymlink;
  link.target = "../elsewhere";
  decoded = BaseEntry::Decode(link.Encode());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value().target, "../elsewhere");

  const std::string good = file.Encode();
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_FALSE(BaseEntry::Decode(good.substr(0, cut)).ok()) << "cut at " << cut;
  }
  EXPECT_FALSE(BaseEntry::Decode(good + "x").ok());
  std::string bad_kind = link.Encode();
  bad_kind[2] = 9;
  EXPECT_FALSE(BaseEntry::Decode(bad_kind).ok());
  std::string bad_version = good;
  bad_version[0] = 2;
  EXPECT_FALSE(BaseEntry::Decode(bad_version).ok());
  EXPECT_FALSE(SyncCursor::Decode(cursor.Encode() + "x").ok());
}

}  // namespace
}  // namespace cascadefs::fusefs::sync
