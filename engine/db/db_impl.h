// db_impl.h: the implementation behind DB (db.h). docs/engine.md tells the whole story.
//
// Pieces: a WAL (wal/), an active memtable `mem_` taking writes and at most one immutable
// memtable `imm_` being flushed, the VersionSet (the SST files per level and the manifest),
// and a TableCache of open SSTs.
//
// Who runs what:
//  - Writes run on the caller (a thread or an IO-thread task). Under mutex_ they frame the
//    batch into the WAL's memory buffer and insert it into mem_; no I/O happens under the
//    mutex. A sync write then awaits WalWriter::SyncTo outside the mutex (group commit).
//  - A full mem_ becomes imm_ and a flush task (background priority, on the scheduler)
//    writes it to a level-0 SST, records it in the manifest and drops imm_. Writers stall
//    when mem_ is full while imm_ is still flushing, and when level 0 holds
//    level0_stop_writes_trigger files; they are delayed ~1 ms at level0_slowdown_writes_trigger.
//  - A compaction task (background priority, at most one at a time) runs whenever the scores
//    of the current Version ask for one (compaction/compaction.h): after each flush, after
//    each compaction, at Open. It merges files into the next level (compaction_job.h), logs
//    the edit, installs a new SuperVersion, then deletes the files it made obsolete once no
//    Version still lists them. A manual compaction (CompactRange, compact_range.cc) holds the
//    same slot for its steps and runs the automatic picks between them.
//  - Reads take the current SuperVersion (memtables + Version, reference counted) and search
//    mem_, imm_, then the SSTs newest first. SST reads are I/O: a blocking Get runs that part
//    on the scheduler.
//  - Opened read-only (Options::read_only): no LOCK, no WAL writer (wal_ stays null), and a
//    value log without a current file. mem_ holds every record the WAL replay recovered (one
//    memtable, never flushed), imm_ stays null, and no flush, compaction or GC task is ever
//    spawned. Writes, Flush and Checkpoint return NotSupported before touching any state;
//    Open and Close only read the store's files.
//
// Invariants:
//  1. Sequence numbers are assigned under mutex_ in WAL order; last_sequence_ is published
//     (release) only after the batch is in mem_, so a reader at last_sequence_ sees it whole.
//  2. imm_ != nullptr iff a flush is pending or running (flush_scheduled_).
//  3. Every WAL segment numbered below versions_->log_number() holds only records already in
//     SSTs; those segments are recycled.
//  4. mutex_ is never held across a co_await or a blocking wait other than WaitQueue's.
//  5. compaction_scheduled_ iff a compaction task is spawned or running (or a test's
//     CompactLevelForTest runs, or a manual compaction holds it: CompactRange): at most one
//     compaction at a time.
//  6. manifest_busy_ iff a flush or compaction is inside VersionSet::LogAndApply (they take
//     turns through LogAndApplyExclusive; VersionSet needs them one at a time).
//  7. A file in obsolete_files_ is in no manifest state from the last durable edit on; it is
//     deleted once its weak_ptr expired, i.e. no Version (an iterator's or reader's
//     SuperVersion, a running compaction's input version) lists it any more.
//
// Lock order: mutex_, then anything inside WalWriter, TableCache or VersionSet.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compaction/compaction.h"
#include "db/dbformat.h"
#include "db/io_totals.h"
#include "db/table_cache.h"
#include "db/version_set.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/io/scheduler.h"
#include "engine/io/wait_queue.h"
#include "memtable/memtable.h"
#include "sst/block_cache.h"
#include "vlog/value_log.h"
#include "wal/wal_writer.h"

namespace cascadefs::engine {

class DBImpl final : public DB {
 public:
  DBImpl(const Options& options, std::string dir);
  ~DBImpl() override;

  // Everything Open does; on error the caller destroys the DBImpl.
  Status OpenStore();

  Status Put(const WriteOptions& options, std::string_view key, std::string_view value) override;
  Status Delete(const WriteOptions& options, std::string_view key) override;
  Status Write(const WriteOptions& options, const WriteBatch& batch) override;
  Status Get(const ReadOptions& options, std::string_view key, std::string* value) override;
  Status Flush() override;
  Status Checkpoint(const std::string& dir) override;
  Status CompactRange(std::optional<std::string_view> begin,
                      std::optional<std::string_view> end) override;

  io::Task<Status> PutAsync(const WriteOptions& options, std::string_view key,
                            std::string_view value) override;
  io::Task<Status> DeleteAsync(const WriteOptions& options, std::string_view key) override;
  io::Task<Status> WriteAsync(const WriteOptions& options, const WriteBatch& batch) override;
  io::Task<Status> GetAsync(const ReadOptions& options, std::string_view key,
                            std::string* value) override;
  io::Task<Status> FlushAsync() override;
  io::Task<Status> CheckpointAsync(std::string dir) override;
  io::Task<Status> CompactRangeAsync(std::optional<std::string_view> begin,
                                     std::optional<std::string_view> end) override;

  std::unique_ptr<Iterator> NewIterator(const ReadOptions& options) override;
  const Snapshot* GetSnapshot() override;
  void ReleaseSnapshot(const Snapshot* snapshot) override;
  Status Close() override;
  DbStats stats() const override;
  std::vector<LevelStats> GetLevelStats() const override;
  bool GetProperty(std::string_view name, std::string* value) const override;

  // Compacts `level` into level + 1 now, whatever its score (one compaction, picked like an
  // automatic one), and waits for it. OK when the level is empty. For tests, which shape the
  // tree with it. REQUIRES: 0 <= level < kNumLevels - 1; not on an IO thread.
  Status CompactLevelForTest(int level);
  // Collects every value-log file at or above `garbage_ratio` (negative: the option
  // vlog_gc_garbage_ratio) now, one after another, and deletes those no reader can reach;
  // returns how many files it collected. For tests. REQUIRES: not on an IO thread.
  Result<std::uint64_t> RunVlogGcForTest(double garbage_ratio = -1);
  io::Scheduler* scheduler() const override { return scheduler_; }

 private:
  // What a read sees: the memtables and SST files of one moment. Immutable once made.
  struct SuperVersion {
    SuperVersion(MemTable* mem, MemTable* imm, std::shared_ptr<const Version> version);
    ~SuperVersion();
    MemTable* const mem;
    MemTable* const imm;  // may be null
    const std::shared_ptr<const Version> version;
  };

  class SnapshotImpl;

  // The outcome of one attempt to commit a write under mutex_.
  enum class WriteStep {
    kDone,
    kFailed,
    kWaitForFlush,
    kWaitForWal,
    kDelay,              // level 0 is at the slowdown trigger: sleep ~1 ms, then retry
    kWaitForCompaction,  // level 0 is at the stop trigger: wait for a compaction
    kWaitForVlog,        // the value log is at its unwritten-bytes bound
    kConditionFailed,    // a GC rewrite's key changed since GC looked (WriteCondition)
  };

  // GC's rewrite of live values is conditional: it commits only if no key of the batch was
  // written since GC looked them up at `looked_at` (no flush finished since, and every
  // memtable answers the same at `looked_at` as at the newest sequence).
  struct WriteCondition {
    SequenceNumber looked_at = 0;
    std::uint64_t flushes_completed = 0;
    std::vector<std::string> keys;
  };

  // What Write learns about a batch before it takes the mutex.
  struct BatchPlan {
    std::size_t separated_bytes = 0;  // value-log record bytes of its large values
    bool sync = false;                // WriteOptions::sync: the value-log position is needed
  };

  io::Task<Status> OpenAsync();
  // `replayed_vlogs`: the value logs the replayed records name.
  io::Task<Status> ReplayWal(const std::vector<std::uint64_t>& log_numbers,
                             std::vector<MemTable*>* recovered, SequenceNumber* max_sequence,
                             std::set<std::uint64_t>* replayed_vlogs);
  // The end of OpenAsync for Options::read_only: `recovered` (at most one memtable, whose
  // reference it takes) becomes mem_; nothing is written. On a replay error it drops them.
  Status FinishReadOnlyOpen(const Status& replayed, const std::vector<MemTable*>& recovered,
                            SequenceNumber max_sequence);
  // NotSupported for `what` (a write, flush, checkpoint, ...) on a read-only store.
  Status ReadOnlyError(std::string_view what) const;
  Status CheckOptions() const;
  void Log(std::string_view line) const;

  // `allow_delay`: false once this write was delayed (a write is slowed down at most once).
  // `separated_record`: the caller's, empty at the first try; holds the WAL record once the
  // batch's large values are in the value log.
  WriteStep TryWriteLocked(const WriteBatch& batch, const BatchPlan& plan, bool allow_delay,
                           WalPosition* position, VlogPosition* vlog_position,
                           std::string* separated_record, const WriteCondition* condition,
                           Status* status);
  // WriteAsync with an optional condition: Busy "condition failed" when it does not hold.
  io::Task<Status> WriteAsyncImpl(const WriteOptions& options, const WriteBatch& batch,
                                  const WriteCondition* condition);
  bool ConditionHoldsLocked(const WriteCondition& condition) const;
  // Validates `batch` and fills *plan.
  Status PlanBatch(const WriteBatch& batch, BatchPlan* plan) const;
  // Frames `batch` into *record with each value of at least min_blob_size_bytes appended
  // to the value log and replaced by its pointer. REQUIRES: mutex_ held; vlog room checked.
  Status SeparateValuesLocked(const WriteBatch& batch, std::string* record);
  // *value holds an encoded pointer: replaces it with the value it names.
  io::Task<Status> ResolvePointer(std::string_view key, std::string* value);
  // The value log's files, as the manifest should record them, in `edit`: those that hold
  // records and that the current Version lacks or records differently.
  void RecordVlogFiles(VersionEdit* edit) const;
  // Level-0 files of the current SuperVersion. REQUIRES: mutex_ held; the store open.
  std::size_t Level0FilesLocked() const;
  // Makes mem_ the immutable memtable and starts its flush. REQUIRES: mutex_ held; imm_ null.
  WriteStep SwitchMemTableLocked(Status* status);
  void InstallSuperVersionLocked();
  std::shared_ptr<const SuperVersion> CurrentSuperVersion() const;
  void RecordBackgroundErrorLocked(const Status& status);

  // With `raw_type` set, a pointer is not resolved: *raw_type gets the entry's type and
  // *value its stored bytes.
  io::Task<Status> GetFromTables(std::shared_ptr<const SuperVersion> super_version,
                                 std::string_view key, SequenceNumber sequence, std::string* value,
                                 ValueType* raw_type = nullptr);
  // The newest entry of `key` at `sequence` as stored: OK with its type (a value or a pointer)
  // and bytes, or NotFound (none, or a deletion).
  io::Task<Status> GetNewestEntry(std::shared_ptr<const SuperVersion> super_version,
                                  std::string_view key, SequenceNumber sequence, ValueType* type,
                                  std::string* bytes);
  // The memtable part of Get: true when it decided the answer (in *status).
  // *is_pointer: the decided value is a pointer (still to be resolved).
  bool GetFromMemTables(const SuperVersion& super_version, std::string_view key,
                        SequenceNumber sequence, std::string* value, Status* status,
                        bool* is_pointer) const;
  SequenceNumber ReadSequence(const ReadOptions& options) const;

  void ScheduleFlushLocked();
  io::Task<void> BackgroundFlush();
  // Sets *table_out_of_space when writing the level-0 table met a full disk: the table is
  // removed and nothing changed, so the flush may be tried again.
  io::Task<Status> FlushImmutable(bool* table_out_of_space);
  // Writes `mem` to a new level-0 SST; meta->file_size_bytes == 0 when mem was empty.
  // Versions no reader can see (`snapshots`: the live ones, ascending) are dropped, and the
  // value-log records of dropped pointers are added to *garbage.
  io::Task<Status> WriteLevel0Table(MemTable* mem, FileMetaData* meta,
                                    const std::vector<SequenceNumber>& snapshots,
                                    std::map<std::uint64_t, VlogGarbage>* garbage);
  // Flush's two halves for the blocking and coroutine forms: start (switch mem_) and the
  // flush count to wait for.
  WriteStep StartFlushLocked(std::uint64_t* wait_for_flushes, Status* status);

  // Appends `edit` to the manifest (VersionSet::LogAndApply, one caller at a time: invariant
  // 6), removes manifests a roll made obsolete, and installs a new SuperVersion.
  // With `record_vlog_files`, the edit also records the value log's files (RecordVlogFiles),
  // computed inside the turn.
  io::Task<Status> LogAndApplyExclusive(VersionEdit* edit, bool record_vlog_files = false);
  // Spawns a compaction task when none runs and the current Version needs one.
  void MaybeScheduleCompactionLocked();
  io::Task<void> BackgroundCompaction();
  // Pauses kNoSpaceRetryMs before a flush or compaction that ran out of disk space tries
  // again; returns early when the store shuts down.
  io::Task<void> WaitBeforeNoSpaceRetry();
  // Picks (at `forced_level`, or by score when negative) and runs one compaction. OK when
  // there was nothing to do.
  io::Task<Status> CompactOnce(int forced_level);
  // Runs `compaction` (a trivial move, or a merge) and installs its result; appends the
  // numbers of the files the merge wrote to *outputs when not null. REQUIRES: the caller holds
  // the compaction slot (invariant 5).
  io::Task<Status> RunCompaction(std::unique_ptr<Compaction> compaction,
                                 std::vector<std::uint64_t>* outputs);
  // Deletes the files of obsolete_files_ no Version lists any more (invariant 7).
  io::Task<void> DeleteObsoleteFiles();

  // ---- value-log GC (docs/formats/vlog.md, "GC") ----
  // The finished value-log file with the most garbage at or above `garbage_ratio`, or 0.
  std::uint64_t PickVlogForGcLocked(double garbage_ratio) const;
  // Spawns a GC task when none runs and a file qualifies.
  void MaybeScheduleVlogGcLocked();
  io::Task<void> BackgroundVlogGc();
  // Rewrites the live values of value-log file `number` in bounded steps, flushes, and removes
  // the file from the manifest; the file itself goes once no reader can reach it.
  io::Task<Status> CollectVlogFile(std::uint64_t number);

  // ---- manual compaction (engine/db/compact_range.cc; docs/engine.md, "Manual compaction") ----
  // CompactRange's whole work: flush, a pass, value-log GC, and a second pass when GC wrote
  // values again.
  io::Task<Status> CompactRangeImpl(ManualCompactionRange range);
  // CompactRangeImpl as a background task that reports to the waiting CompactRangeAsync.
  struct CompactRangeWaiter;
  io::Task<void> CompactRangeInBackground(ManualCompactionRange range, CompactRangeWaiter* waiter);
  struct ManualCompactionProgress;
  // Takes the compaction slot (waiting for a running compaction), runs the steps, gives the
  // slot back, and deletes the files they replaced.
  io::Task<Status> RunManualCompactionPass(const ManualCompactionRange& range,
                                           ManualCompactionProgress* progress);
  // The merges, level by level, then the bottom level in place. REQUIRES: the caller holds
  // the compaction slot (invariant 5).
  io::Task<Status> RunManualCompactionSteps(const ManualCompactionRange& range,
                                            ManualCompactionProgress* progress);
  // Collects the value-log files at or above vlog_gc_garbage_ratio, taking turns with the
  // background GC task (waiting while it runs); *collected counts them.
  io::Task<Status> CollectVlogsAfterManualCompaction(std::uint64_t* collected);

  // Checkpoint's steps (engine/db/checkpoint.cc). Fills `tmp` with the files of `version`
  // (linked, or copied), a manifest numbered `manifest_number` describing them, and CURRENT,
  // all synced.
  io::Task<Status> BuildCheckpoint(const std::string& tmp, const Version& version,
                                   std::uint64_t manifest_number, SequenceNumber last_sequence);
  // Copies the SST `from` to `to` (a new file) in bounded steps, and syncs it.
  io::Task<Status> CopySstFile(const std::string& from, const std::string& to,
                               std::uint64_t size_bytes);
  // Removes `dir` and the files in it (best effort: a checkpoint's partial directory).
  io::Task<void> RemoveCheckpointDir(const std::string& dir);

  const Options options_;
  const std::string dir_;
  std::unique_ptr<io::Scheduler> owned_scheduler_;
  io::Scheduler* scheduler_ = nullptr;
  std::unique_ptr<Env> owned_env_;
  Env* env_ = nullptr;
  std::unique_ptr<FileLock> lock_;
  TableOptions table_options_;
  std::unique_ptr<BlockCache> block_cache_;  // before table_cache_: tables point into it
  std::unique_ptr<TableCache> table_cache_;
  std::unique_ptr<VersionSet> versions_;
  std::unique_ptr<WalWriter> wal_;
  std::unique_ptr<ValueLog> vlog_;  // open from OpenAsync to Close

  std::atomic<SequenceNumber> last_sequence_{0};

  mutable std::mutex mutex_;
  MemTable* mem_ = nullptr;                    // GUARDED_BY(mutex_)
  std::uint64_t mem_log_number_ = 0;           // GUARDED_BY(mutex_): mem_'s first segment
  MemTable* imm_ = nullptr;                    // GUARDED_BY(mutex_)
  std::uint64_t imm_next_log_number_ = 0;      // GUARDED_BY(mutex_): mem_log_number_ at switch
  std::shared_ptr<const SuperVersion> super_;  // GUARDED_BY(mutex_)
  bool flush_scheduled_ = false;               // GUARDED_BY(mutex_)
  std::uint64_t flushes_completed_ = 0;        // GUARDED_BY(mutex_)
  std::uint64_t flushes_started_ = 0;          // GUARDED_BY(mutex_)
  bool compaction_scheduled_ = false;          // GUARDED_BY(mutex_): invariant 5
  bool manifest_busy_ = false;                 // GUARDED_BY(mutex_): invariant 6
  bool vlog_gc_scheduled_ = false;             // GUARDED_BY(mutex_): at most one GC task
  // GUARDED_BY(mutex_). CompactRange calls waiting for the compaction slot; while non-zero no
  // background compaction is spawned, so a busy tree cannot keep the slot from them forever.
  std::uint32_t manual_compactions_waiting_ = 0;
  // Value-log files GC removed from the manifest, deleted once no Version lists them (the
  // pin expired) and no snapshot older than `collected_at` is held.
  struct ObsoleteVlog {
    std::uint64_t number = 0;
    std::weak_ptr<const int> pin;
    SequenceNumber collected_at = 0;
  };
  std::vector<ObsoleteVlog> obsolete_vlogs_;  // GUARDED_BY(mutex_)
  // Files dropped by a durable manifest edit, waiting for their last reader (invariant 7).
  std::vector<std::pair<std::uint64_t, std::weak_ptr<const FileMetaData>>>
      obsolete_files_;  // GUARDED_BY(mutex_)
  Status bg_error_;     // GUARDED_BY(mutex_): sticky
  // GUARDED_BY(mutex_). Set while the memtable flush waits for disk space (BackgroundFlush
  // retries it); writes that need the memtable's room and Flush fail with it meanwhile. Not
  // sticky: the next successful flush clears it.
  Status flush_no_space_;
  bool closed_ = false;                      // GUARDED_BY(mutex_)
  std::string wal_record_;                   // GUARDED_BY(mutex_): the record being framed
  std::multiset<SequenceNumber> snapshots_;  // GUARDED_BY(mutex_)
  // Set by Close before it waits for background work: a running compaction stops at its
  // next step (Cancelled) and no new one starts.
  std::atomic<bool> shutting_down_{false};
  // Notified when a flush or compaction finishes or fails, when the manifest is free again,
  // and when the store closes.
  io::WaitQueue background_changed_;
  CompactionOptions compaction_options_;

  struct Counters {
    std::atomic<std::uint64_t> writes{0};
    std::atomic<std::uint64_t> user_bytes_written{0};
    std::atomic<std::uint64_t> memtable_flushes{0};
    std::atomic<std::uint64_t> flush_bytes_written{0};
    std::atomic<std::uint64_t> write_stalls{0};
    std::atomic<std::uint64_t> write_stall_micros{0};
    std::atomic<std::uint64_t> write_slowdowns{0};
    std::atomic<std::uint64_t> compactions{0};
    std::atomic<std::uint64_t> trivial_moves{0};
    std::atomic<std::uint64_t> compaction_bytes_read{0};
    std::atomic<std::uint64_t> compaction_bytes_written{0};
    std::atomic<std::uint64_t> compaction_micros{0};
    std::atomic<std::uint64_t> compactions_failed_no_space{0};
    std::atomic<std::uint64_t> flushes_failed_no_space{0};
    std::atomic<std::uint64_t> manual_compactions{0};
    std::atomic<std::uint64_t> obsolete_files_deleted{0};
    std::atomic<std::uint64_t> vlog_gc_files{0};
    std::atomic<std::uint64_t> vlog_gc_bytes_rewritten{0};
    std::atomic<std::uint64_t> vlog_gc_conflicts{0};
    std::atomic<std::uint64_t> vlog_files_deleted{0};
  };
  Counters counters_;
  // What earlier opens wrote (the IOTOTALS file as Open found it); Close adds this open's.
  // Written by OpenAsync before the store is shared, read by Close: no lock needed.
  IoTotals io_totals_base_;
};

}  // namespace cascadefs::engine
