// compaction.h: which files a leveled compaction merges, and the rules it follows while it
// merges them (docs/engine.md, "Compaction").
//
// Design (LevelDB's leveled scheme, our code). Each level L >= 1 holds non-overlapping files
// and may grow to MaxBytesForLevel(L); level 0 holds whole flushed memtables (overlapping) and
// is scored by its file count. ComputeScores gives every level but the last a score
// (size / limit); PickCompaction takes the level of the highest score >= 1. Inputs are one
// file of that level (the first after the level's compaction pointer, so successive
// compactions go round robin through the key space), widened on level 0 to every level-0 file
// overlapping it (transitively: level-0 files overlap each other), plus every file of level+1
// overlapping their user-key range. The grandparents (level+2 files overlapping the inputs)
// bound how much a single output file may overlap there (ShouldStopBefore).
//
// A manual compaction (DB::CompactRange) is a series of Compactions picked by
// PickManualCompaction: each merges files overlapping the user's range into the next level, and
// the last ones rewrite files of the bottom level in place (output_level() == level()), which
// drops the deletion markers and hidden versions nothing below needs.
//
// A Compaction is a plain value computed from one immutable Version, which it holds; the
// picking functions are pure, so the unit tests drive them with hand-made Versions.
//
// Invariants relied on (version_set.h invariant 1 and this one):
//  1. No user key has entries in two files of one level >= 1: outputs are cut only between
//     user keys (CompactionJob), so IsBaseLevelForKey and point reads may look at one file per
//     level, and a compaction never needs the neighbours of its input files.
//
// Thread safety: a Compaction is used by one task at a time; the free functions are pure.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "db/version_set.h"
#include "engine/options.h"
#include "manifest/version_edit.h"

namespace cascadefs::engine {

using FileRef = std::shared_ptr<const FileMetaData>;

// The compaction knobs of Options (options.h documents each).
struct CompactionOptions {
  std::uint32_t level0_compaction_trigger = 4;
  std::uint64_t max_bytes_for_level_base = std::uint64_t{256} << 20;
  std::uint32_t level_size_multiplier = 10;
  std::uint64_t target_file_size_bytes = std::uint64_t{64} << 20;

  static CompactionOptions From(const Options& options);
  // An output stops early once it overlaps this many bytes of grandparent files: a later
  // compaction of that output then reads at most about this much of the level below.
  std::uint64_t MaxGrandparentOverlapBytes() const { return 10 * target_file_size_bytes; }
  // A step of a manual compaction of level >= 1 takes consecutive files of the level while its
  // input bytes (with the overlapping files of the output level) stay within this, so one step
  // holds the compaction slot for a bounded time (RocksDB's max_compaction_bytes default).
  // Level 0 is not split: its files overlap, so every one sharing keys goes in one step.
  std::uint64_t MaxManualCompactionBytes() const { return 25 * target_file_size_bytes; }
};

// The user keys a manual compaction covers: [begin, end], both inclusive; nullopt leaves that
// side unbounded.
struct ManualCompactionRange {
  std::optional<std::string> begin;
  std::optional<std::string> end;
};

// The most bytes level `level` (1 ..= kNumLevels - 1) may hold before it is compacted.
// Saturates instead of overflowing at the deepest levels.
std::uint64_t MaxBytesForLevel(const CompactionOptions& options, int level);

// Scores of levels 0 .. kNumLevels - 2 (the last level is never compacted: its score is 0).
// Level 0: files / level0_compaction_trigger; level L >= 1: bytes / MaxBytesForLevel(L).
std::array<double, kNumLevels> ComputeScores(const Version& version,
                                             const CompactionOptions& options);

// Per-level compaction pointers: the largest internal key of the last compaction of that
// level, or empty (start from the first file). VersionSet keeps and persists them.
using CompactPointers = std::array<std::string, kNumLevels>;

class Compaction {
 public:
  // Merges files of `level` into level + 1. REQUIRES: 0 <= level < kNumLevels - 1.
  Compaction(std::shared_ptr<const Version> version, int level, const CompactionOptions& options);
  // Merges files of `level` into `output_level`: level + 1, or `level` itself (in place, only
  // for a manual compaction of the bottom level). REQUIRES: output_level == level + 1 <
  // kNumLevels, or output_level == level >= 1.
  Compaction(std::shared_ptr<const Version> version, int level, int output_level,
             const CompactionOptions& options);

  int level() const { return level_; }
  int output_level() const { return output_level_; }
  // which == 0: files of level(); which == 1: files of output_level() (empty in place).
  const std::vector<FileRef>& inputs(int which) const { return inputs_[which]; }
  const std::vector<FileRef>& grandparents() const { return grandparents_; }
  const Version& input_version() const { return *version_; }
  std::uint64_t InputBytes() const;
  std::uint64_t GrandparentOverlapBytes() const;

  // One input file, nothing to merge with in output_level(), and little grandparent overlap:
  // the file can move down by a manifest edit alone, with no I/O. Never in place.
  bool IsTrivialMove() const;

  // True when no level below output_level() has a file whose range holds `user_key`, so a
  // deletion marker for it hides nothing and may be dropped. REQUIRES: successive calls pass
  // user keys in ascending order (it keeps a cursor per level, as the merge goes forward).
  bool IsBaseLevelForKey(std::string_view user_key);

  // True when the output file being built should end before `internal_key` because it
  // already overlaps more than MaxGrandparentOverlapBytes of the grandparents. REQUIRES:
  // successive calls pass keys in ascending order.
  bool ShouldStopBefore(std::string_view internal_key);

  // Adds the removal of every input file to `edit` (from level() and output_level()), and the
  // level's new compaction pointer (the largest key of the level's inputs).
  void AddInputDeletions(VersionEdit* edit) const;
  // The largest internal key among inputs(0).
  std::string LargestLevelInputKey() const;

 private:
  friend std::unique_ptr<Compaction> PickCompactionAt(const std::shared_ptr<const Version>& version,
                                                      int level,
                                                      const CompactPointers& compact_pointers,
                                                      const CompactionOptions& options);
  friend std::unique_ptr<Compaction> PickManualCompaction(
      const std::shared_ptr<const Version>& version, int level, int output_level,
      const ManualCompactionRange& range, const std::optional<std::string>& after,
      const std::set<std::uint64_t>& skip, const CompactionOptions& options);

  const std::shared_ptr<const Version> version_;
  const int level_;
  const int output_level_;
  const CompactionOptions options_;
  std::array<std::vector<FileRef>, 2> inputs_;
  std::vector<FileRef> grandparents_;
  // ShouldStopBefore's state: the next grandparent not yet passed, bytes overlapped so far.
  std::size_t grandparent_index_ = 0;
  bool seen_key_ = false;
  std::uint64_t overlapped_bytes_ = 0;
  // IsBaseLevelForKey's cursor per level.
  std::array<std::size_t, kNumLevels> level_cursors_{};
};

// The files of `level` whose user-key range meets [smallest_user_key, largest_user_key]. On
// level 0 the range grows by each overlapping file's range until no more files join, since a
// level-0 file overlapping a picked one holds versions of the same keys.
std::vector<FileRef> OverlappingFiles(const Version& version, int level,
                                      std::string_view smallest_user_key,
                                      std::string_view largest_user_key);

// The compaction the scores ask for (the highest score, when >= 1), or null.
std::unique_ptr<Compaction> PickCompaction(const std::shared_ptr<const Version>& version,
                                           const CompactPointers& compact_pointers,
                                           const CompactionOptions& options);
// A compaction of `level` whatever its score (tests, and PickCompaction itself); null when
// the level is empty. REQUIRES: 0 <= level < kNumLevels - 1.
std::unique_ptr<Compaction> PickCompactionAt(const std::shared_ptr<const Version>& version,
                                             int level, const CompactPointers& compact_pointers,
                                             const CompactionOptions& options);

// One step of a manual compaction (DB::CompactRange; docs/engine.md, "Manual compaction"): the
// files of `level` that overlap `range`, reach past `after` (their largest user key is above
// it; nullopt: no such bound) and are not in `skip`, to be merged into `output_level`. Level 0
// takes every overlapping file, widened transitively (OverlappingFiles). Level >= 1 takes the
// first qualifying file and the qualifying files right after it, while the input bytes (with
// the overlapping files of level + 1 when moving down) stay within MaxManualCompactionBytes:
// a run of neighbours, so that the outputs of an in-place step never overlap a file it left
// out. Null when no file qualifies.
// REQUIRES: output_level == level + 1 < kNumLevels, or output_level == level >= 1; on level 0
// `after` is nullopt and `skip` empty.
std::unique_ptr<Compaction> PickManualCompaction(const std::shared_ptr<const Version>& version,
                                                 int level, int output_level,
                                                 const ManualCompactionRange& range,
                                                 const std::optional<std::string>& after,
                                                 const std::set<std::uint64_t>& skip,
                                                 const CompactionOptions& options);

}  // namespace cascadefs::engine
