// compact_range.cc: DBImpl::CompactRange, a manual compaction that gives deleted space back
// (db.h has the contract, docs/engine.md "Manual compaction" the design).
//
// Steps, in order:
//  1. flush the memtable (FlushAsync), so every write acknowledged before the call is in SSTs;
//  2. take the compaction slot (db_impl.h, invariant 5), waiting for a running compaction;
//     while waiting, manual_compactions_waiting_ keeps new background compactions from taking
//     it first;
//  3. holding the slot, run steps (compaction.h, PickManualCompaction), each a normal
//     Compaction run by RunCompaction (merge, manifest edit, obsolete files deleted):
//     level L = 0, 1, ... below the target (the deepest non-empty level, at least 1): the files
//     of L overlapping the range, merged into L + 1, in key order (a cursor: the largest user
//     key done); then at the target itself, in place, the files overlapping the range that this
//     call did not just write (those were written with the target as base level, so they hold
//     no droppable entry). Before each step one automatic compaction runs when a level scores
//     >= 1, so concurrent writers never wait at level 0 for the whole manual compaction;
//  4. release the slot, then collect the value-log files at or above vlog_gc_garbage_ratio,
//     taking turns with the background GC task;
//  5. when GC collected a file, run steps 2 and 3 once more: GC wrote the file's live values
//     again (new pointers, in level 0), leaving the old pointers behind in the bottom level
//     as hidden versions, and the second pass drops them.
// The target and the files are read from the current Version at every step, so automatic
// compactions between steps (moving files down, or making the tree deeper) are followed:
// a deeper target continues the downward sweep from the old one.
//
// Thread safety: runs on a background-priority task; touches DB state under mutex_ and
// through the functions every compaction uses.
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/db_impl.h"
#include "manifest/filename.h"

namespace cascadefs::engine {

namespace {

// The deepest level holding a file, or 0 for an empty tree.
int DeepestNonEmptyLevel(const Version& version) {
  for (int level = kNumLevels - 1; level > 0; --level) {
    if (!version.files[static_cast<std::size_t>(level)].empty()) return level;
  }
  return 0;
}

// Manual compaction steps per file of the tree at the start (plus kNumLevels): each sweep over
// a level picks a file at most once (the cursor only moves forward), and a pass makes at most
// 2 x kNumLevels sweeps (one per level down, one more per deepening of the tree). Reached only
// when concurrent writes keep pushing new files into the range as fast as it compacts them.
constexpr std::uint64_t kManualCompactionStepsPerFile = 4 * kNumLevels;

}  // namespace

// What the passes of one CompactRange share.
struct DBImpl::ManualCompactionProgress {
  // Files this call wrote into `produced_level`, merging down into it or in place: written
  // with it as the base level, so an in-place sweep there skips them.
  std::set<std::uint64_t> produced;
  int produced_level = -1;
};

struct DBImpl::CompactRangeWaiter {
  Status status;      // GUARDED_BY(mutex_)
  bool done = false;  // GUARDED_BY(mutex_)
};

Status DBImpl::CompactRange(std::optional<std::string_view> begin,
                            std::optional<std::string_view> end) {
  {
    std::lock_guard guard(mutex_);
    if (closed_) return Status::InvalidArgument(dir_ + ": store is closed");
  }
  ManualCompactionRange range;
  if (begin.has_value()) range.begin.emplace(*begin);
  if (end.has_value()) range.end.emplace(*end);
  return scheduler_->BlockOn(CompactRangeImpl(std::move(range)), io::Priority::kBackground);
}

io::Task<Status> DBImpl::CompactRangeAsync(std::optional<std::string_view> begin,
                                           std::optional<std::string_view> end) {
  ManualCompactionRange range;
  if (begin.has_value()) range.begin.emplace(*begin);
  if (end.has_value()) range.end.emplace(*end);
  // The caller's task may be foreground: the work goes to a task of its own, at the priority
  // every compaction runs at, and this one waits for it. The waiter lives in this frame, which
  // outlives the task's last touch of it (under mutex_, before this task can resume).
  CompactRangeWaiter waiter;
  scheduler_->Spawn(CompactRangeInBackground(std::move(range), &waiter), io::Priority::kBackground);
  std::unique_lock lock(mutex_);
  while (!waiter.done) co_await background_changed_.Wait(lock);
  co_return waiter.status;
}

io::Task<void> DBImpl::CompactRangeInBackground(ManualCompactionRange range,
                                                CompactRangeWaiter* waiter) {
  Status status = co_await CompactRangeImpl(std::move(range));
  std::lock_guard guard(mutex_);
  waiter->status = std::move(status);
  waiter->done = true;
  background_changed_.NotifyAll();
}

io::Task<Status> DBImpl::CompactRangeImpl(ManualCompactionRange range) {
  if (range.begin && range.end && CompareUserKeys(*range.begin, *range.end) > 0) {
    co_return Status::InvalidArgument("compact range: begin is after end");
  }
  {
    std::lock_guard guard(mutex_);
    if (closed_) co_return Status::InvalidArgument(dir_ + ": store is closed");
    if (!bg_error_.ok()) co_return bg_error_;
  }
  // 1. Every acknowledged write into an SST, so the steps see it.
  Status status = co_await FlushAsync();
  if (!status.ok()) co_return status;
  // 2, 3. The steps, holding the compaction slot.
  ManualCompactionProgress progress;
  CFS_CO_RETURN_IF_ERROR(co_await RunManualCompactionPass(range, &progress));
  // 4. The garbage the steps counted may have pushed value-log files over the ratio.
  std::uint64_t collected = 0;
  status = co_await CollectVlogsAfterManualCompaction(&collected);
  if (status.ok() && collected > 0) {
    // GC wrote the live values of the collected files again (new pointers, in level 0 after
    // its flush), which left their old pointers in the range behind as hidden versions. One
    // more pass drops them: it takes the rewrites down and merges them with the files holding
    // the old pointers, so its in-place part can skip every file this call wrote at the
    // bottom. The pointers it drops name collected files, whose garbage counts for nothing,
    // so no further GC follows (background GC takes what concurrent writes add).
    status = co_await RunManualCompactionPass(range, &progress);
  }
  {
    std::lock_guard guard(mutex_);
    MaybeScheduleVlogGcLocked();
  }
  if (!status.ok()) co_return status;
  counters_.manual_compactions.fetch_add(1, std::memory_order_relaxed);
  co_return Status::OK();
}

io::Task<Status> DBImpl::RunManualCompactionPass(const ManualCompactionRange& range,
                                                 ManualCompactionProgress* progress) {
  // The compaction slot.
  {
    std::unique_lock lock(mutex_);
    ++manual_compactions_waiting_;
    while (compaction_scheduled_ && !closed_ && !shutting_down_.load(std::memory_order_acquire)) {
      co_await background_changed_.Wait(lock);
    }
    --manual_compactions_waiting_;
    if (closed_ || shutting_down_.load(std::memory_order_acquire)) {
      co_return Status::Cancelled("compact range: the store is closing");
    }
    if (!bg_error_.ok()) co_return bg_error_;
    compaction_scheduled_ = true;  // invariant 5
  }
  Status status = co_await RunManualCompactionSteps(range, progress);
  {
    std::lock_guard guard(mutex_);
    compaction_scheduled_ = false;
    if (status.IsNoSpace()) {
      // As a background compaction: the step removed its outputs, its inputs and the manifest
      // are as they were, and the store keeps serving. The caller hears of it.
      counters_.compactions_failed_no_space.fetch_add(1, std::memory_order_relaxed);
      Log(dir_ + ": compact range: " + status.ToString());
    } else if (!status.ok() && !status.IsCancelled() && !status.IsBusy()) {
      RecordBackgroundErrorLocked(status.WithContext(dir_ + ": compaction"));
    }
    MaybeScheduleCompactionLocked();
    background_changed_.NotifyAll();
  }
  // Files the last steps replaced: deleted now unless a reader still holds them.
  co_await DeleteObsoleteFiles();
  co_return status;
}

io::Task<Status> DBImpl::RunManualCompactionSteps(const ManualCompactionRange& range,
                                                  ManualCompactionProgress* progress) {
  std::uint64_t steps_max = 0;
  {
    const std::shared_ptr<const Version> version = versions_->current();
    steps_max = kManualCompactionStepsPerFile * (version->TotalFiles() + kNumLevels);
  }
  // The sweep: `level` moves down (into level + 1) until it reaches the target, then compacts
  // the target in place. `after` is the sweep's cursor: the largest user key its steps took.
  int level = 0;
  bool in_place = false;
  std::optional<std::string> after;
  std::set<std::uint64_t>& produced = progress->produced;
  int& produced_level = progress->produced_level;
  const std::set<std::uint64_t> none;
  for (std::uint64_t step = 0;; ++step) {
    if (step >= steps_max) {
      co_return Status::Busy("compact range: concurrent writes kept adding files to the range (" +
                             std::to_string(steps_max) + " steps)");
    }
    if (shutting_down_.load(std::memory_order_acquire)) {
      co_return Status::Cancelled("compact range: the store is closing");
    }
    {
      // A flush that failed meanwhile stops the store's writes, and so its compactions.
      std::lock_guard guard(mutex_);
      if (!bg_error_.ok()) co_return bg_error_;
    }
    // An automatic compaction first when a level asks for one (level 0 filled by concurrent
    // writers): they must not wait at the stop trigger for the whole manual compaction.
    CFS_CO_RETURN_IF_ERROR(co_await CompactOnce(-1));

    std::unique_ptr<Compaction> compaction;
    {
      const std::shared_ptr<const Version> version = versions_->current();
      const int target = std::max(1, DeepestNonEmptyLevel(*version));
      if (level > target) break;  // the in-place sweep emptied the bottom level
      const bool want_in_place = level == target;
      if (want_in_place != in_place) {
        // A new sweep over this level: the downward sweep ended here, or the tree grew deeper
        // under the in-place sweep and the files must move down after all.
        in_place = want_in_place;
        after.reset();
      }
      const int output_level = in_place ? level : level + 1;
      compaction = PickManualCompaction(version, level, output_level, range, after,
                                        in_place && produced_level == level ? produced : none,
                                        compaction_options_);
      if (compaction == nullptr) {
        if (in_place) break;  // the bottom level is done
        ++level;
        after.reset();
        continue;
      }
      if (level > 0) after.emplace(ExtractUserKey(compaction->LargestLevelInputKey()));
      if (output_level == target && produced_level != target) {
        produced.clear();
        produced_level = target;
      }
    }  // the Version goes: the step's own input version is all that pins its inputs
    const bool record_outputs = produced_level == compaction->output_level();
    const bool level0 = level == 0;
    std::vector<std::uint64_t> outputs;
    CFS_CO_RETURN_IF_ERROR(co_await RunCompaction(std::move(compaction), &outputs));
    if (record_outputs) produced.insert(outputs.begin(), outputs.end());
    if (level0) {
      // One step takes every level-0 file sharing keys with the range.
      level = 1;
      after.reset();
    }
  }
  co_return Status::OK();
}

io::Task<Status> DBImpl::CollectVlogsAfterManualCompaction(std::uint64_t* collected) {
  *collected = 0;
  // Each round collects one file (or waits for the background GC to collect one), so the
  // files there are now, twice over, bound the rounds even with new garbage appearing.
  std::uint64_t rounds_max = 0;
  {
    const std::shared_ptr<const Version> version = versions_->current();
    rounds_max = 2 * version->vlogs.size() + 2;
  }
  for (std::uint64_t round = 0; round < rounds_max; ++round) {
    std::uint64_t number = 0;
    {
      std::unique_lock lock(mutex_);
      // The background GC may be collecting one of them already: wait for its round.
      while (vlog_gc_scheduled_ && !closed_ && !shutting_down_.load(std::memory_order_acquire)) {
        co_await background_changed_.Wait(lock);
      }
      if (closed_ || shutting_down_.load(std::memory_order_acquire)) {
        co_return Status::Cancelled("compact range: value-log GC: the store is closing");
      }
      number = PickVlogForGcLocked(options_.vlog_gc_garbage_ratio);
      if (number == 0) co_return Status::OK();
      vlog_gc_scheduled_ = true;
    }
    Status status = co_await CollectVlogFile(number);
    {
      std::lock_guard guard(mutex_);
      vlog_gc_scheduled_ = false;
      background_changed_.NotifyAll();
    }
    if (status.ok()) ++*collected;
    if (status.IsBusy()) {
      // Writers kept rewriting the file's keys: the file stays for background GC, which runs
      // once the writes calm down. The compaction itself is done.
      Log(VlogFileName(dir_, number) + ": compact range: value-log GC: " + status.ToString());
      co_return Status::OK();
    }
    if (!status.ok()) co_return status.WithContext("compact range: value-log GC");
  }
  co_return Status::OK();
}

}  // namespace cascadefs::engine
