// compaction_test.cc: scoring, picking and the per-key rules of compaction.h.
//
// Goal: the picker chooses what LevelDB's leveled scheme would (highest score >= 1, the
// file after the compaction pointer, level-0 inputs widened transitively, overlapping files
// of the next level), detects trivial moves, and answers IsBaseLevelForKey and
// ShouldStopBefore right; a manual compaction (PickManualCompaction) takes the files of the
// range, a run at a time, and compacts the bottom level in place. Method: hand-made Versions
// of FileMetaData (no files, no I/O).
#include "compaction/compaction.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace cascadefs::engine {
namespace {

FileRef File(std::uint64_t number, std::string_view smallest, std::string_view largest,
             std::uint64_t size_bytes = 1000, SequenceNumber sequence = 1) {
  auto meta = std::make_shared<FileMetaData>();
  meta->number = number;
  meta->file_size_bytes = size_bytes;
  meta->smallest = MakeInternalKey(smallest, sequence, ValueType::kValue);
  meta->largest = MakeInternalKey(largest, sequence, ValueType::kValue);
  meta->smallest_sequence = sequence;
  meta->largest_sequence = sequence;
  meta->num_entries = 2;
  return meta;
}

CompactionOptions SmallOptions() {
  CompactionOptions options;
  options.level0_compaction_trigger = 4;
  options.max_bytes_for_level_base = 10'000;
  options.level_size_multiplier = 10;
  options.target_file_size_bytes = 1'000;
  return options;
}

std::vector<std::uint64_t> Numbers(const std::vector<FileRef>& files) {
  std::vector<std::uint64_t> out;
  out.reserve(files.size());
  for (const FileRef& file : files) out.push_back(file->number);
  return out;
}

TEST(CompactionTest, MaxBytesForLevelGrowsByTheMultiplierAndSaturates) {
  CompactionOptions options = SmallOptions();
  EXPECT_EQ(MaxBytesForLevel(options, 1), 10'000u);
  EXPECT_EQ(MaxBytesForLevel(options, 2), 100'000u);
  EXPECT_EQ(MaxBytesForLevel(options, 6), 1'000'000'000u);
  options.max_bytes_for_level_base = std::uint64_t{1} << 40;
  options.level_size_multiplier = 100;
  EXPECT_EQ(MaxBytesForLevel(options, 6), std::numeric_limits<std::uint64_t>::max());
}

TEST(CompactionTest, ScoresCountLevel0FilesAndDeeperBytes) {
  auto version = std::make_shared<Version>();
  for (int i = 0; i < 6; ++i) version->files[0].push_back(File(100 - i, "a", "z"));
  version->files[1] = {File(1, "a", "c", 5'000), File(2, "d", "f", 10'000)};
  version->files[2] = {File(3, "a", "z", 50'000)};
  version->files[6] = {File(4, "a", "z", 1'000'000'000'000)};
  const auto scores = ComputeScores(*version, SmallOptions());
  EXPECT_DOUBLE_EQ(scores[0], 1.5);
  EXPECT_DOUBLE_EQ(scores[1], 1.5);
  EXPECT_DOUBLE_EQ(scores[2], 0.5);
  EXPECT_DOUBLE_EQ(scores[6], 0.0) << "the last level is never compacted";
}

TEST(CompactionTest, PicksTheHighestScoreAndNothingBelowOne) {
  auto version = std::make_shared<Version>();
  for (int i = 0; i < 3; ++i) version->files[0].push_back(File(100 - i, "a", "z"));
  version->files[2] = {File(1, "a", "c", 99'000)};
  EXPECT_EQ(PickCompaction(version, {}, SmallOptions()), nullptr) << "0.75 and 0.99";

  version->files[2].push_back(File(2, "d", "f", 51'000));  // level 2 scores 1.5
  version->files[0].push_back(File(50, "a", "z"));         // level 0 scores 1.0
  auto compaction = PickCompaction(version, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  EXPECT_EQ(compaction->level(), 2);
  EXPECT_EQ(compaction->output_level(), 3);

  version->files[0].push_back(File(40, "a", "z"));  // level 0: 1.25; level 2 still wins
  EXPECT_EQ(PickCompaction(version, {}, SmallOptions())->level(), 2);
  version->files[0].push_back(File(30, "a", "z"));
  version->files[0].push_back(File(20, "a", "z"));  // level 0: 1.75
  EXPECT_EQ(PickCompaction(version, {}, SmallOptions())->level(), 0);
}

TEST(CompactionTest, Level0InputsWidenTransitivelyAndPullOverlappingLevel1) {
  auto version = std::make_shared<Version>();
  // Newest first. The oldest (10: c..e) is picked; 11 (d..g) overlaps it, 12 (g..h) overlaps
  // 11 only, 13 (x..y) overlaps nothing.
  version->files[0] = {File(13, "x", "y"), File(12, "g", "h"), File(11, "d", "g"),
                       File(10, "c", "e")};
  version->files[1] = {File(1, "a", "b"), File(2, "c", "c"), File(3, "h", "k"), File(4, "m", "n")};
  version->files[2] = {File(5, "a", "f", 3'000), File(6, "j", "p", 4'000),
                       File(7, "q", "r", 5'000)};
  auto compaction = PickCompaction(version, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  EXPECT_EQ(compaction->level(), 0);
  EXPECT_EQ(Numbers(compaction->inputs(0)), (std::vector<std::uint64_t>{12, 11, 10}));
  EXPECT_EQ(Numbers(compaction->inputs(1)), (std::vector<std::uint64_t>{2, 3}));
  // Grandparents: level-2 files overlapping c..k.
  EXPECT_EQ(Numbers(compaction->grandparents()), (std::vector<std::uint64_t>{5, 6}));
  EXPECT_EQ(compaction->InputBytes(), 5'000u);
  EXPECT_FALSE(compaction->IsTrivialMove());

  VersionEdit edit;
  compaction->AddInputDeletions(&edit);
  EXPECT_EQ(edit.removed_files().size(), 5u);
  EXPECT_TRUE(edit.removed_files().count({1, 3}));
  ASSERT_EQ(edit.compact_pointers().size(), 1u);
  EXPECT_EQ(ExtractUserKey(edit.compact_pointers()[0].second), "h");
}

TEST(CompactionTest, CompactPointerGoesRoundRobinThroughTheLevel) {
  auto version = std::make_shared<Version>();
  version->files[1] = {File(1, "a", "b", 6'000), File(2, "c", "d", 6'000),
                       File(3, "e", "f", 6'000)};
  CompactPointers pointers;
  auto first = PickCompaction(version, pointers, SmallOptions());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(Numbers(first->inputs(0)), std::vector<std::uint64_t>{1});
  pointers[1] = first->LargestLevelInputKey();
  EXPECT_EQ(Numbers(PickCompaction(version, pointers, SmallOptions())->inputs(0)),
            std::vector<std::uint64_t>{2});
  pointers[1] = version->files[1][2]->largest;  // past the last file: wrap around
  EXPECT_EQ(Numbers(PickCompaction(version, pointers, SmallOptions())->inputs(0)),
            std::vector<std::uint64_t>{1});
}

TEST(CompactionTest, TrivialMoveNeedsOneInputNoOverlapAndLittleGrandparentOverlap) {
  auto version = std::make_shared<Version>();
  version->files[1] = {File(1, "a", "b", 11'000)};
  version->files[2] = {File(2, "c", "d")};
  auto compaction = PickCompactionAt(version, 1, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  EXPECT_TRUE(compaction->IsTrivialMove());

  version->files[2].push_back(File(3, "a", "a"));  // now level 2 overlaps
  std::sort(version->files[2].begin(), version->files[2].end(), [](const auto& x, const auto& y) {
    return CompareInternalKeys(x->smallest, y->smallest) < 0;
  });
  EXPECT_FALSE(PickCompactionAt(version, 1, {}, SmallOptions())->IsTrivialMove());

  auto deep = std::make_shared<Version>();
  deep->files[1] = {File(1, "a", "m")};
  deep->files[3] = {File(2, "a", "m", 10'001)};  // more than 10 x target below
  EXPECT_FALSE(PickCompactionAt(deep, 1, {}, SmallOptions())->IsTrivialMove());
  deep->files[3] = {File(2, "a", "m", 10'000)};
  EXPECT_TRUE(PickCompactionAt(deep, 1, {}, SmallOptions())->IsTrivialMove());
  EXPECT_EQ(PickCompactionAt(deep, 0, {}, SmallOptions()), nullptr) << "empty level";
}

TEST(CompactionTest, IsBaseLevelForKeyLooksBelowTheOutputLevelOnly) {
  auto version = std::make_shared<Version>();
  version->files[1] = {File(1, "a", "z")};
  version->files[2] = {File(2, "k", "k")};  // the output level: does not count
  version->files[3] = {File(3, "c", "e"), File(4, "p", "r")};
  version->files[5] = {File(5, "g", "h")};
  auto compaction = PickCompactionAt(version, 1, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  // Ascending, as the merge calls it.
  EXPECT_TRUE(compaction->IsBaseLevelForKey("b"));
  EXPECT_FALSE(compaction->IsBaseLevelForKey("c"));
  EXPECT_FALSE(compaction->IsBaseLevelForKey("e"));
  EXPECT_TRUE(compaction->IsBaseLevelForKey("f"));
  EXPECT_FALSE(compaction->IsBaseLevelForKey("g"));
  EXPECT_TRUE(compaction->IsBaseLevelForKey("k"));
  EXPECT_FALSE(compaction->IsBaseLevelForKey("q"));
  EXPECT_TRUE(compaction->IsBaseLevelForKey("s"));
}

TEST(CompactionTest, ShouldStopBeforeCutsOnceGrandparentOverlapExceedsTenTargets) {
  auto version = std::make_shared<Version>();
  version->files[0] = {File(20, "a", "z")};
  version->files[2] = {File(1, "b", "b", 6'000), File(2, "d", "d", 6'000), File(3, "f", "f", 6'000),
                       File(4, "h", "h", 6'000)};
  auto compaction = PickCompactionAt(version, 0, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  ASSERT_EQ(compaction->grandparents().size(), 4u);
  auto key = [](std::string_view user_key) {
    return MakeInternalKey(user_key, 5, ValueType::kValue);
  };
  EXPECT_FALSE(compaction->ShouldStopBefore(key("a")));
  EXPECT_FALSE(compaction->ShouldStopBefore(key("c")));  // passed b: 6,000
  EXPECT_TRUE(compaction->ShouldStopBefore(key("e")));   // passed d: 12,000 > 10,000
  EXPECT_FALSE(compaction->ShouldStopBefore(key("g")));  // a new output: 6,000
  EXPECT_TRUE(compaction->ShouldStopBefore(key("i")));
}

TEST(CompactionTest, ManualLevel0TakesEveryFileOfTheRangeWidenedTransitively) {
  auto version = std::make_shared<Version>();
  // Newest first. The range c..d meets 10 (c..e) only; 11 (d..g) overlaps 10 too, 12 (g..h)
  // overlaps 11; 13 (x..y) shares nothing with them.
  version->files[0] = {File(13, "x", "y"), File(12, "g", "h"), File(11, "e", "g"),
                       File(10, "a", "e")};
  version->files[1] = {File(1, "a", "b"), File(2, "h", "k"), File(3, "m", "n")};
  const ManualCompactionRange range{std::string("c"), std::string("d")};
  auto compaction = PickManualCompaction(version, 0, 1, range, std::nullopt, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  EXPECT_EQ(compaction->output_level(), 1);
  EXPECT_EQ(Numbers(compaction->inputs(0)), (std::vector<std::uint64_t>{12, 11, 10}));
  EXPECT_EQ(Numbers(compaction->inputs(1)), (std::vector<std::uint64_t>{1, 2}));
  // Unbounded on both sides: the whole level.
  compaction = PickManualCompaction(version, 0, 1, {}, std::nullopt, {}, SmallOptions());
  ASSERT_NE(compaction, nullptr);
  EXPECT_EQ(compaction->inputs(0).size(), 4u);
  // A range between the files meets none.
  const ManualCompactionRange gap{std::string("i"), std::string("w")};
  EXPECT_EQ(PickManualCompaction(version, 0, 1, gap, std::nullopt, {}, SmallOptions()), nullptr);
  const ManualCompactionRange after_all{std::string("z"), std::nullopt};
  EXPECT_EQ(PickManualCompaction(version, 0, 1, after_all, std::nullopt, {}, SmallOptions()),
            nullptr);
}

TEST(CompactionTest, ManualDeeperLevelsGoInRunsFromTheCursorWithinTheByteBudget) {
  auto version = std::make_shared<Version>();
  // Level 1 files of 10,000 bytes; the budget is 25 x 1,000 = 25,000 bytes per step.
  version->files[1] = {File(1, "a", "b", 10'000), File(2, "c", "d", 10'000),
                       File(3, "e", "f", 10'000), File(4, "g", "h", 10'000),
                       File(5, "i", "j", 10'000)};
  version->files[2] = {File(6, "d", "e", 1'000)};
  const ManualCompactionRange range{std::string("b"), std::string("h")};
  auto first = PickManualCompaction(version, 1, 2, range, std::nullopt, {}, SmallOptions());
  ASSERT_NE(first, nullptr);
  // 1 and 2 fit (21,000 with file 6 below); adding 3 would make 31,000.
  EXPECT_EQ(Numbers(first->inputs(0)), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(Numbers(first->inputs(1)), std::vector<std::uint64_t>{6});
  const std::optional<std::string> cursor(ExtractUserKey(first->LargestLevelInputKey()));
  EXPECT_EQ(*cursor, "d");
  auto second = PickManualCompaction(version, 1, 2, range, cursor, {}, SmallOptions());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(Numbers(second->inputs(0)), (std::vector<std::uint64_t>{3, 4})) << "5 is past h";
  EXPECT_EQ(PickManualCompaction(version, 1, 2, range, std::string("h"), {}, SmallOptions()),
            nullptr);
  // One file over the budget still makes a step of its own.
  auto big = std::make_shared<Version>();
  big->files[1] = {File(1, "a", "b", 100'000), File(2, "c", "d", 1'000)};
  auto alone = PickManualCompaction(big, 1, 2, {}, std::nullopt, {}, SmallOptions());
  ASSERT_NE(alone, nullptr);
  EXPECT_EQ(Numbers(alone->inputs(0)), std::vector<std::uint64_t>{1});
  EXPECT_TRUE(alone->IsTrivialMove());
}

TEST(CompactionTest, ManualInPlaceStepsSkipGivenFilesAndNeverMoveOrSpanThem) {
  auto version = std::make_shared<Version>();
  version->files[3] = {File(1, "a", "b"), File(2, "c", "d"), File(3, "e", "f"), File(4, "g", "h")};
  const std::set<std::uint64_t> skip = {2};
  auto first = PickManualCompaction(version, 3, 3, {}, std::nullopt, skip, SmallOptions());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->level(), 3);
  EXPECT_EQ(first->output_level(), 3);
  // The run stops before the skipped file, so the outputs cannot overlap it.
  EXPECT_EQ(Numbers(first->inputs(0)), std::vector<std::uint64_t>{1});
  EXPECT_TRUE(first->inputs(1).empty());
  EXPECT_FALSE(first->IsTrivialMove()) << "in place: the file must be rewritten";
  EXPECT_TRUE(first->IsBaseLevelForKey("a"));
  VersionEdit edit;
  first->AddInputDeletions(&edit);
  EXPECT_EQ(edit.removed_files(), (std::set<std::pair<int, std::uint64_t>>{{3, 1}}));
  auto second = PickManualCompaction(version, 3, 3, {}, std::string("b"), skip, SmallOptions());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(Numbers(second->inputs(0)), (std::vector<std::uint64_t>{3, 4}));
  // The last level can be compacted in place too; nothing lies below it.
  auto bottom = std::make_shared<Version>();
  bottom->files[6] = {File(1, "a", "b")};
  auto last = PickManualCompaction(bottom, 6, 6, {}, std::nullopt, {}, SmallOptions());
  ASSERT_NE(last, nullptr);
  EXPECT_TRUE(last->grandparents().empty());
  EXPECT_TRUE(last->IsBaseLevelForKey("a"));
}

}  // namespace
}  // namespace cascadefs::engine
