// completeness_test.cc: the walk that decides whether the hub holds a committed tree
// (completeness.h). Method: build a tree into a source store, then walk it against an empty
// hub store, copying what the walk reports missing, round after round: the tree arrives level by
// level (root, then its children, ...), and once complete the verified set spares later walks.
#include "completeness.h"

#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "engine/io/scheduler.h"
#include "fusefs/recipe.h"

namespace cascadefs::hub {
namespace {

std::string RandomBytes(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(bytes, '\0');
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    const std::uint64_t word = rng();
    std::memcpy(&data[i], &word, 8);
  }
  return data;
}

class CompletenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scheduler = io::Scheduler::Create(io::SchedulerOptions{.io_threads = 1});
    ASSERT_TRUE(scheduler.ok());
    scheduler_ = std::move(scheduler.value());
    options_.binary_min_bytes = 64;
    options_.binary_avg_bytes = 256;
    options_.binary_max_bytes = 1024;
  }

  std::unique_ptr<io::Scheduler> scheduler_;
  fusefs::ChunkerOptions options_;
  std::unique_ptr<fusefs::ChunkStore> source_ = fusefs::NewMemoryChunkStore();
  std::unique_ptr<fusefs::ChunkStore> hub_ = fusefs::NewMemoryChunkStore();
};

TEST_F(CompletenessTest, MissingArrivesLevelByLevel) {
  fusefs::RecipeTree tree(source_.get(), options_);
  auto root =
      scheduler_->BlockOn(tree.Build(fusefs::ChunkerKind::kBinary, RandomBytes(2 << 20, 7)));
  ASSERT_TRUE(root.ok()) << root.status().message();
  ASSERT_GE(root.value().height, 2) << "the test wants a tree of 3 levels or more";
  const std::string encoded = root.value().Encode();

  VerifiedNodes verified;
  int rounds = 0;
  for (;; ++rounds) {
    ASSERT_LE(rounds, root.value().height + 1);
    CompletenessWalk walk(hub_.get(), &verified, 1 << 20);
    auto verdict = scheduler_->BlockOn(walk.Check(encoded));
    ASSERT_TRUE(verdict.ok());
    if (verdict.value() == FileVerdict::kComplete) {
      EXPECT_TRUE(walk.missing().empty());
      break;
    }
    ASSERT_EQ(verdict.value(), FileVerdict::kMissing);
    ASSERT_FALSE(walk.missing().empty());
    if (rounds == 0) {
      ASSERT_EQ(walk.missing().size(), 1u);  // only the root: nothing under it is known
      EXPECT_EQ(walk.missing()[0], root.value().name);
    }
    for (const fusefs::ChunkName& name : walk.missing()) {
      auto bytes = scheduler_->BlockOn(source_->Get(name));
      ASSERT_TRUE(bytes.ok());
      ASSERT_TRUE(scheduler_->BlockOn(hub_->Put(name, bytes.value())).ok());
    }
  }
  EXPECT_EQ(rounds, root.value().height + 1);  // one round per level
  EXPECT_GT(verified.size(), 0u);
  // Walking again: the root node is verified, nothing else is read.
  CompletenessWalk again(hub_.get(), &verified, 1 << 20);
  auto verdict = scheduler_->BlockOn(again.Check(encoded));
  ASSERT_TRUE(verdict.ok());
  EXPECT_EQ(verdict.value(), FileVerdict::kComplete);
  EXPECT_EQ(again.chunks_checked(), 1u);
}

TEST_F(CompletenessTest, EditedTreeWalksOnlyTheChangedPart) {
  fusefs::RecipeTree tree(source_.get(), options_);
  std::string data = RandomBytes(1 << 20, 9);
  auto first = scheduler_->BlockOn(tree.Build(fusefs::ChunkerKind::kBinary, data));
  ASSERT_TRUE(first.ok());
  // Give the hub the whole first version.
  std::vector<fusefs::ChunkName> names;
  std::vector<int> levels;
  ASSERT_TRUE(scheduler_->BlockOn(tree.ListChunks(first.value(), &names, &levels)).ok());
  for (const auto& name : names) {
    auto bytes = scheduler_->BlockOn(source_->Get(name));
    ASSERT_TRUE(scheduler_->BlockOn(hub_->Put(name, bytes.value())).ok());
  }
  VerifiedNodes verified;
  {
    CompletenessWalk walk(hub_.get(), &verified, 1 << 20);
    ASSERT_EQ(scheduler_->BlockOn(walk.Check(first.value().Encode())).value(),
              FileVerdict::kComplete);
    EXPECT_GE(walk.chunks_checked(), names.size());
  }
  auto second = scheduler_->BlockOn(tree.Splice(first.value(), 500000, 10, "an edit"));
  ASSERT_TRUE(second.ok());
  CompletenessWalk walk(hub_.get(), &verified, 1 << 20);
  auto verdict = scheduler_->BlockOn(walk.Check(second.value().Encode()));
  ASSERT_TRUE(verdict.ok());
  EXPECT_EQ(verdict.value(), FileVerdict::kMissing);
  EXPECT_LT(walk.chunks_checked(), names.size() / 4) << "verified subtrees are skipped";
  EXPECT_FALSE(walk.missing().empty());
  EXPECT_LE(walk.missing().size(), 8u);
}

TEST_F(CompletenessTest, BadRootsAreRejectedAndEmptyIsComplete) {
  VerifiedNodes verified;
  CompletenessWalk walk(hub_.get(), &verified, 16);
  EXPECT_EQ(scheduler_->BlockOn(walk.Check("not a root")).value(), FileVerdict::kRejected);
  fusefs::FileRoot empty;
  EXPECT_EQ(scheduler_->BlockOn(walk.Check(empty.Encode())).value(), FileVerdict::kComplete);
  // A root whose "node" is a leaf's bytes: rejected once present.
  const std::string leaf = "just some leaf bytes";
  const auto name = fusefs::ChunkName::Of(leaf);
  ASSERT_TRUE(scheduler_->BlockOn(hub_->Put(name, leaf)).ok());
  fusefs::FileRoot fake;
  fake.name = name;
  fake.length = 1000;
  fake.height = 1;
  fake.kind = fusefs::ChunkerKind::kBinary;
  EXPECT_EQ(scheduler_->BlockOn(walk.Check(fake.Encode())).value(), FileVerdict::kRejected);
}

TEST(VerifiedNodesTest, ClearsAtTheBound) {
  VerifiedNodes verified(3);
  for (int i = 0; i < 3; ++i) verified.Add(fusefs::ChunkName::Of(std::to_string(i)));
  EXPECT_EQ(verified.size(), 3u);
  verified.Add(fusefs::ChunkName::Of("x"));
  EXPECT_EQ(verified.size(), 1u);
  EXPECT_TRUE(verified.Contains(fusefs::ChunkName::Of("x")));
}

}  // namespace
}  // namespace cascadefs::hub
