// compaction.cc: scoring, picking and the per-key rules of a compaction (compaction.h).
#include "compaction/compaction.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "engine/assert.h"

namespace cascadefs::engine {

namespace {

std::uint64_t LevelBytes(const std::vector<FileRef>& files) {
  std::uint64_t bytes = 0;
  for (const FileRef& file : files) bytes += file->file_size_bytes;
  return bytes;
}

std::string_view SmallestUserKey(const FileRef& file) { return ExtractUserKey(file->smallest); }
std::string_view LargestUserKey(const FileRef& file) { return ExtractUserKey(file->largest); }

bool OverlapsRange(const FileRef& file, const ManualCompactionRange& range) {
  if (range.begin && CompareUserKeys(LargestUserKey(file), *range.begin) < 0) return false;
  if (range.end && CompareUserKeys(SmallestUserKey(file), *range.end) > 0) return false;
  return true;
}

// The user-key range covered by `files`. REQUIRES: !files.empty().
void UserKeyRange(const std::vector<FileRef>& files, std::string* smallest, std::string* largest) {
  CFS_ASSERT(!files.empty());
  smallest->assign(SmallestUserKey(files.front()));
  largest->assign(LargestUserKey(files.front()));
  for (const FileRef& file : files) {
    if (CompareUserKeys(SmallestUserKey(file), *smallest) < 0) {
      smallest->assign(SmallestUserKey(file));
    }
    if (CompareUserKeys(LargestUserKey(file), *largest) > 0) largest->assign(LargestUserKey(file));
  }
}

}  // namespace

CompactionOptions CompactionOptions::From(const Options& options) {
  CompactionOptions out;
  out.level0_compaction_trigger = options.level0_compaction_trigger;
  out.max_bytes_for_level_base = options.max_bytes_for_level_base;
  out.level_size_multiplier = options.level_size_multiplier;
  out.target_file_size_bytes = options.target_file_size_bytes;
  return out;
}

std::uint64_t MaxBytesForLevel(const CompactionOptions& options, int level) {
  CFS_ASSERT(level >= 1 && level < kNumLevels);
  std::uint64_t bytes = options.max_bytes_for_level_base;
  for (int l = 1; l < level; ++l) {
    if (bytes > std::numeric_limits<std::uint64_t>::max() / options.level_size_multiplier) {
      return std::numeric_limits<std::uint64_t>::max();
    }
    bytes *= options.level_size_multiplier;
  }
  return bytes;
}

std::array<double, kNumLevels> ComputeScores(const Version& version,
                                             const CompactionOptions& options) {
  std::array<double, kNumLevels> scores{};
  scores[0] = static_cast<double>(version.files[0].size()) /
              static_cast<double>(options.level0_compaction_trigger);
  for (int level = 1; level < kNumLevels - 1; ++level) {
    scores[static_cast<std::size_t>(level)] =
        static_cast<double>(LevelBytes(version.files[static_cast<std::size_t>(level)])) /
        static_cast<double>(MaxBytesForLevel(options, level));
  }
  return scores;
}

std::vector<FileRef> OverlappingFiles(const Version& version, int level,
                                      std::string_view smallest_user_key,
                                      std::string_view largest_user_key) {
  CFS_ASSERT(level >= 0 && level < kNumLevels);
  CFS_ASSERT(CompareUserKeys(smallest_user_key, largest_user_key) <= 0);
  const auto& files = version.files[static_cast<std::size_t>(level)];
  std::string begin(smallest_user_key);
  std::string end(largest_user_key);
  std::vector<FileRef> out;
  for (std::size_t i = 0; i < files.size();) {
    const FileRef& file = files[i++];
    if (CompareUserKeys(LargestUserKey(file), begin) < 0 ||
        CompareUserKeys(SmallestUserKey(file), end) > 0) {
      continue;
    }
    out.push_back(file);
    if (level == 0) {
      // A level-0 file reaching past the range widens it; start over so files skipped
      // before the widening are looked at again. Bounded: each restart grows the range,
      // which only files of the level can do, so at most files.size() restarts.
      bool widened = false;
      if (CompareUserKeys(SmallestUserKey(file), begin) < 0) {
        begin.assign(SmallestUserKey(file));
        widened = true;
      }
      if (CompareUserKeys(LargestUserKey(file), end) > 0) {
        end.assign(LargestUserKey(file));
        widened = true;
      }
      if (widened) {
        out.clear();
        i = 0;
      }
    }
  }
  return out;
}

Compaction::Compaction(std::shared_ptr<const Version> version, int level,
                       const CompactionOptions& options)
    : Compaction(std::move(version), level, level + 1, options) {}

Compaction::Compaction(std::shared_ptr<const Version> version, int level, int output_level,
                       const CompactionOptions& options)
    : version_(std::move(version)), level_(level), output_level_(output_level), options_(options) {
  CFS_ASSERT(version_ != nullptr);
  CFS_ASSERT(level >= 0 && level < kNumLevels);
  CFS_ASSERT(output_level == level + 1 || (output_level == level && level >= 1));
  CFS_ASSERT(output_level < kNumLevels);
}

std::uint64_t Compaction::InputBytes() const {
  return LevelBytes(inputs_[0]) + LevelBytes(inputs_[1]);
}

std::uint64_t Compaction::GrandparentOverlapBytes() const { return LevelBytes(grandparents_); }

bool Compaction::IsTrivialMove() const {
  return output_level_ != level_ && inputs_[0].size() == 1 && inputs_[1].empty() &&
         GrandparentOverlapBytes() <= options_.MaxGrandparentOverlapBytes();
}

bool Compaction::IsBaseLevelForKey(std::string_view user_key) {
  for (int level = output_level() + 1; level < kNumLevels; ++level) {
    const auto& files = version_->files[static_cast<std::size_t>(level)];
    std::size_t& cursor = level_cursors_[static_cast<std::size_t>(level)];
    while (cursor < files.size()) {
      const FileRef& file = files[cursor];
      if (CompareUserKeys(user_key, LargestUserKey(file)) <= 0) {
        // The key sorts before this file's end: the file holds it iff it starts at or before.
        if (CompareUserKeys(user_key, SmallestUserKey(file)) >= 0) return false;
        break;
      }
      ++cursor;  // the key is past this file; later keys are too
    }
  }
  return true;
}

bool Compaction::ShouldStopBefore(std::string_view internal_key) {
  while (grandparent_index_ < grandparents_.size() &&
         CompareInternalKeys(internal_key, grandparents_[grandparent_index_]->largest) > 0) {
    if (seen_key_) overlapped_bytes_ += grandparents_[grandparent_index_]->file_size_bytes;
    ++grandparent_index_;
  }
  seen_key_ = true;
  if (overlapped_bytes_ > options_.MaxGrandparentOverlapBytes()) {
    overlapped_bytes_ = 0;
    return true;
  }
  return false;
}

std::string Compaction::LargestLevelInputKey() const {
  CFS_ASSERT(!inputs_[0].empty());
  std::string largest = inputs_[0].front()->largest;
  for (const FileRef& file : inputs_[0]) {
    if (CompareInternalKeys(file->largest, largest) > 0) largest = file->largest;
  }
  return largest;
}

void Compaction::AddInputDeletions(VersionEdit* edit) const {
  for (int which = 0; which < 2; ++which) {
    for (const FileRef& file : inputs_[static_cast<std::size_t>(which)]) {
      edit->RemoveFile(which == 0 ? level_ : output_level_, file->number);
    }
  }
  edit->SetCompactPointer(level_, LargestLevelInputKey());
}

std::unique_ptr<Compaction> PickCompactionAt(const std::shared_ptr<const Version>& version,
                                             int level, const CompactPointers& compact_pointers,
                                             const CompactionOptions& options) {
  CFS_ASSERT(level >= 0 && level < kNumLevels - 1);
  const auto& files = version->files[static_cast<std::size_t>(level)];
  if (files.empty()) return nullptr;
  auto compaction = std::make_unique<Compaction>(version, level, options);
  FileRef first;
  if (level == 0) {
    // Level 0 is newest first; the oldest file goes first, so data moves down in age order
    // (OverlappingFiles then adds every level-0 file sharing keys with it).
    first = files.back();
  } else {
    // Round robin through the key space: the first file after the last compaction's end.
    const std::string& pointer = compact_pointers[static_cast<std::size_t>(level)];
    for (const FileRef& file : files) {
      if (pointer.empty() || CompareInternalKeys(file->largest, pointer) > 0) {
        first = file;
        break;
      }
    }
    if (first == nullptr) first = files.front();  // wrapped around
  }
  std::string smallest;
  std::string largest;
  if (level == 0) {
    compaction->inputs_[0] =
        OverlappingFiles(*version, 0, SmallestUserKey(first), LargestUserKey(first));
  } else {
    compaction->inputs_[0] = {first};
  }
  CFS_ASSERT(!compaction->inputs_[0].empty());
  UserKeyRange(compaction->inputs_[0], &smallest, &largest);
  compaction->inputs_[1] = OverlappingFiles(*version, level + 1, smallest, largest);
  if (level + 2 < kNumLevels) {
    std::vector<FileRef> all = compaction->inputs_[0];
    all.insert(all.end(), compaction->inputs_[1].begin(), compaction->inputs_[1].end());
    UserKeyRange(all, &smallest, &largest);
    compaction->grandparents_ = OverlappingFiles(*version, level + 2, smallest, largest);
  }
  return compaction;
}

std::unique_ptr<Compaction> PickCompaction(const std::shared_ptr<const Version>& version,
                                           const CompactPointers& compact_pointers,
                                           const CompactionOptions& options) {
  const std::array<double, kNumLevels> scores = ComputeScores(*version, options);
  // The highest score wins; on a tie the shallower level (level 0 first: it hurts reads most).
  int best_level = 0;
  for (int level = 1; level < kNumLevels - 1; ++level) {
    if (scores[static_cast<std::size_t>(level)] > scores[static_cast<std::size_t>(best_level)]) {
      best_level = level;
    }
  }
  if (scores[static_cast<std::size_t>(best_level)] < 1.0) return nullptr;
  return PickCompactionAt(version, best_level, compact_pointers, options);
}

std::unique_ptr<Compaction> PickManualCompaction(const std::shared_ptr<const Version>& version,
                                                 int level, int output_level,
                                                 const ManualCompactionRange& range,
                                                 const std::optional<std::string>& after,
                                                 const std::set<std::uint64_t>& skip,
                                                 const CompactionOptions& options) {
  CFS_ASSERT(level >= 0 && level < kNumLevels);
  CFS_ASSERT(level > 0 || (!after.has_value() && skip.empty()));
  const auto& files = version->files[static_cast<std::size_t>(level)];
  const bool in_place = output_level == level;
  std::vector<FileRef> inputs;
  std::string smallest;
  std::string largest;
  if (level == 0) {
    for (const FileRef& file : files) {
      if (OverlapsRange(file, range)) inputs.push_back(file);
    }
    if (inputs.empty()) return nullptr;
    // Every level-0 file sharing keys with those: an older version must not stay above a
    // newer one that moves down.
    UserKeyRange(inputs, &smallest, &largest);
    inputs = OverlappingFiles(*version, 0, smallest, largest);
  } else {
    auto qualifies = [&](const FileRef& file) {
      return OverlapsRange(file, range) &&
             (!after.has_value() || CompareUserKeys(LargestUserKey(file), *after) > 0) &&
             !skip.contains(file->number);
    };
    std::size_t i = 0;
    while (i < files.size() && !qualifies(files[i])) ++i;
    std::uint64_t input_bytes = 0;
    for (; i < files.size() && qualifies(files[i]); ++i) {
      // Level >= 1 is sorted and disjoint: the run's range is its first file's smallest key to
      // the last file's largest.
      const std::string_view run_smallest =
          inputs.empty() ? SmallestUserKey(files[i]) : SmallestUserKey(inputs.front());
      std::uint64_t step_bytes = input_bytes + files[i]->file_size_bytes;
      if (!in_place) {
        step_bytes += LevelBytes(
            OverlappingFiles(*version, level + 1, run_smallest, LargestUserKey(files[i])));
      }
      if (!inputs.empty() && step_bytes > options.MaxManualCompactionBytes()) break;
      input_bytes += files[i]->file_size_bytes;
      inputs.push_back(files[i]);
    }
    if (inputs.empty()) return nullptr;
  }
  auto compaction = std::make_unique<Compaction>(version, level, output_level, options);
  compaction->inputs_[0] = std::move(inputs);
  UserKeyRange(compaction->inputs_[0], &smallest, &largest);
  if (!in_place) {
    compaction->inputs_[1] = OverlappingFiles(*version, output_level, smallest, largest);
  }
  if (output_level + 1 < kNumLevels) {
    std::vector<FileRef> all = compaction->inputs_[0];
    all.insert(all.end(), compaction->inputs_[1].begin(), compaction->inputs_[1].end());
    UserKeyRange(all, &smallest, &largest);
    compaction->grandparents_ = OverlappingFiles(*version, output_level + 1, smallest, largest);
  }
  return compaction;
}

}  // namespace cascadefs::engine
