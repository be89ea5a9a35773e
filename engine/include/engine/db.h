// db.h: the cascade key-value store.
//
// A DB is a persistent ordered map from byte-string keys to byte-string values (an LSM tree:
// a write-ahead log, memtables, sorted table files; docs/engine.md). Every call comes in two
// forms over one implementation:
//  - coroutines (`co_await db->GetAsync(...)`), for code running on the store's scheduler:
//    they never block an IO thread; waiting (a WAL sync, a full memtable) suspends the task;
//  - blocking calls (`db->Get(...)`), for tools and tests: they must not be called on an IO
//    thread of the store's scheduler.
//
// Thread safety: a DB is safe for concurrent use by many threads and tasks, except Close,
// which must be the last call. One store directory may be open in one DB at a time; a second
// Open, in this process or another, fails with Status::Busy ("store is in use"). A read-only
// Open (Options::read_only) takes no lock and writes nothing: its caller keeps writers away.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/iterator.h"
#include "engine/options.h"
#include "engine/result.h"
#include "engine/status.h"
#include "engine/write_batch.h"

namespace cascadefs::engine {

// A point in the store's history; reads with it see the store as it was when it was taken.
// Opaque; obtained from GetSnapshot and handed back to ReleaseSnapshot.
class Snapshot {
 protected:
  virtual ~Snapshot() = default;
};

// Counters since Open. Read with relaxed atomics: a snapshot, not a barrier.
struct DbStats {
  std::uint64_t writes = 0;  // Write calls that succeeded (a Put is one)
  // Bytes of those writes' batches (keys, values and their few bytes of framing): what the
  // users wrote, the denominator of write amplification.
  std::uint64_t user_bytes_written = 0;
  std::uint64_t wal_syncs = 0;            // fdatasync calls on WAL segments
  std::uint64_t wal_synced_writes = 0;    // sync writes made durable (wal_syncs shares)
  std::uint64_t wal_bytes_written = 0;    // bytes written to WAL segments
  std::uint64_t memtable_flushes = 0;     // memtables written to L0 SSTs
  std::uint64_t flush_bytes_written = 0;  // bytes of SSTs written by flushes
  std::uint64_t write_stalls = 0;         // writes that waited (a flush, or L0 at the stop)
  std::uint64_t write_stall_micros = 0;   // time those writes waited, in microseconds
  std::uint64_t sst_files = 0;            // live SST files now
  std::uint64_t sst_bytes = 0;            // their total size now
  std::uint64_t table_cache_opens = 0;    // SST files opened (table cache misses)
  std::uint64_t bloom_useful = 0;         // lookups a bloom filter answered "absent"
  std::uint64_t block_cache_hits = 0;     // data block reads served by the block cache
  std::uint64_t block_cache_misses = 0;   // data block reads that went to the file
  std::uint64_t block_cache_bytes = 0;    // bytes of blocks cached now
  std::uint64_t last_sequence = 0;        // sequence number of the newest write

  // Compaction (docs/engine.md, "Compaction"); GetLevelStats has the shape of the tree.
  // Writes delayed ~1 ms each because level 0 reached level0_slowdown_writes_trigger (their
  // delay counts in write_stall_micros; waits at level0_stop_writes_trigger in write_stalls).
  std::uint64_t write_slowdowns = 0;
  std::uint64_t compactions = 0;               // finished, trivial moves included
  std::uint64_t trivial_moves = 0;             // files moved down by a manifest edit alone
  std::uint64_t compaction_bytes_read = 0;     // input SST bytes merged
  std::uint64_t compaction_bytes_written = 0;  // output SST bytes written
  std::uint64_t compaction_micros = 0;         // time compactions ran, yields and sleeps included
  std::uint64_t obsolete_files_deleted = 0;    // SSTs deleted once compactions replaced them
  // Compactions that ran out of disk space: their outputs were removed, the store kept
  // serving, and compaction was tried again after a pause (docs/engine.md, "Compaction").
  std::uint64_t compactions_failed_no_space = 0;
  // Memtable flushes that ran out of disk space: the table was removed, the memtable kept,
  // and the flush tried again after a pause.
  std::uint64_t flushes_failed_no_space = 0;
  // CompactRange calls that returned OK (docs/engine.md, "Manual compaction"). Their steps
  // count in compactions and the bytes above too.
  std::uint64_t manual_compactions = 0;
  // The value log (docs/formats/vlog.md).
  std::uint64_t vlog_records_written = 0;     // values separated into the value log
  std::uint64_t vlog_bytes_written = 0;       // bytes written to value-log files
  std::uint64_t vlog_syncs = 0;               // fdatasync calls on value-log files
  std::uint64_t vlog_reads = 0;               // values read through a pointer
  std::uint64_t vlog_files = 0;               // live value-log files (per the manifest)
  std::uint64_t vlog_bytes = 0;               // their recorded size
  std::uint64_t vlog_garbage_bytes = 0;       // records in them no live pointer names
  std::uint64_t vlog_gc_files = 0;            // value-log files GC collected
  std::uint64_t vlog_gc_bytes_rewritten = 0;  // live values GC wrote again
  std::uint64_t vlog_gc_conflicts = 0;        // GC steps retried: a user wrote a key meanwhile
  std::uint64_t vlog_files_deleted = 0;       // collected files deleted
};

// One level of the LSM tree now (GetLevelStats).
struct LevelStats {
  std::uint64_t files = 0;    // SST files in the level
  std::uint64_t bytes = 0;    // their total size
  std::uint64_t entries = 0;  // entries in them (values and deletion markers, all versions)
  // Level 0: files / level0_compaction_trigger; level L >= 1: bytes / its limit; the last
  // level 0. A compaction runs when some level scores >= 1.
  double score = 0;
};

// Bytes written to disk (WAL, value log, flushed SSTs, compaction outputs) per byte users
// wrote; 0 before any write.
double WriteAmplification(const DbStats& stats);
// Bytes of all SSTs and value logs per byte of live data, estimated as the last non-empty
// level plus the value logs' bytes that are not garbage: the usual estimate of leveled space
// amplification (older versions and deletions live above the last level), with the value
// log's counted garbage. 1 for an empty or single-level tree without value logs.
double SpaceAmplification(const std::vector<LevelStats>& levels, std::uint64_t vlog_bytes = 0,
                          std::uint64_t vlog_garbage_bytes = 0);
// Block cache hits per data block read; 0 before any read.
double BlockCacheHitRatio(const DbStats& stats);

class DB {
 public:
  // Opens (or creates, per options) the store in directory `dir`: reads CURRENT and the
  // manifest, replays the WAL into a memtable. Errors: Busy when the store is in use;
  // InvalidArgument for a missing store without create_if_missing, an existing one with
  // error_if_exists, or options out of range; NotSupported for a store written by a newer
  // format version; Corruption naming the file and offset for damaged store files (a torn
  // WAL tail is not damage: it is cut off, and logged). On error nothing is left open.
  // With options.read_only the store must exist (InvalidArgument otherwise), no lock is taken,
  // the replayed WAL stays in memory, and not one byte of the directory changes, neither at
  // Open nor by later reads or Close; the writing calls return NotSupported.
  // REQUIRES: not on an IO thread of options.scheduler.
  static Result<std::unique_ptr<DB>> Open(const Options& options, const std::string& dir);

  // Closes the store if Close was not called, logging its error to info_log.
  virtual ~DB() = default;

  // Blocking forms. REQUIRES: not on an IO thread of the store's scheduler.
  // Sets `key` to `value`. InvalidArgument when key or value exceed kKeySizeMax/kValueSizeMax.
  virtual Status Put(const WriteOptions& options, std::string_view key, std::string_view value) = 0;
  // Removes `key` (OK when it was absent).
  virtual Status Delete(const WriteOptions& options, std::string_view key) = 0;
  // Applies every update of `batch` atomically. An error leaves none of it applied, except
  // an I/O error after the batch reached the WAL: the batch may then survive a restart, and
  // the store refuses further writes (as RocksDB does), so reopen it.
  virtual Status Write(const WriteOptions& options, const WriteBatch& batch) = 0;
  // Sets *value to the value of `key`. NotFound when absent (deleted or never written).
  virtual Status Get(const ReadOptions& options, std::string_view key, std::string* value) = 0;
  // Writes the active memtable to an SST (even if not full) and waits for it; afterwards the
  // WAL holds nothing that must be replayed at the next Open.
  virtual Status Flush() = 0;

  // Makes `dir` a copy of the store as of this call that opens (DB::Open) as a store of its
  // own: every write acknowledged before the call is in it, together with a prefix of the
  // writes that race with it, whole batches only. The memtable is flushed first; the SSTs are
  // hard-linked into `dir` (copied when `dir` is on another file system), and a manifest and
  // CURRENT for just those files are written there (docs/engine.md, "Checkpoints"). The copy is
  // built in `dir` + ".tmp-checkpoint", synced (files and directory), renamed to `dir`, and the
  // parent directory synced: after a crash `dir` either does not exist or is complete.
  // Later writes to either store never show in the other.
  // Errors: InvalidArgument when `dir` (or the temporary directory, left by an interrupted
  // checkpoint: remove it) already exists, or the store is closed; the flush's error; an I/O
  // error naming the path. On error nothing is left at `dir` or at the temporary directory
  // (unless the disk fails the removal too), and the store itself is unchanged.
  // Thread safety: may run concurrently with writes, reads and other checkpoints (to other
  // targets). REQUIRES: the parent directory of `dir` exists.
  virtual Status Checkpoint(const std::string& dir) = 0;

  // Compacts every key in [*begin, *end] (both inclusive; nullopt leaves that side unbounded)
  // down to the bottom of the tree now, like RocksDB's CompactRange with bottommost-level
  // compaction forced (docs/engine.md, "Manual compaction"): the memtable is flushed, then the
  // SSTs overlapping the range are merged level by level into the deepest non-empty level
  // (at least level 1), and that level's files in the range are rewritten too. On OK every
  // entry that was in the range at the call lives in the bottom level, and no deletion marker
  // and no version hidden by a newer one is left in the range except what a live snapshot
  // still sees; the replaced SSTs are deleted unless an iterator still reads them. The value
  // pointers the merge dropped count as value-log garbage, and value-log files whose garbage
  // reached vlog_gc_garbage_ratio are collected (live values written again, the file deleted
  // once no reader and no older snapshot can reach it) before the call returns. So the disk
  // space of deleted and overwritten data is given back by the time it returns.
  // Writes made while it runs may stay above the bottom level. Steps run at background
  // priority, in bounded steps, within compaction_rate_limit_mb_per_sec, one compaction at a
  // time with the automatic ones (which keep running between its steps, so level 0 does not
  // stall writers meanwhile); outputs are cut at target_file_size_bytes.
  // Errors: InvalidArgument when *begin > *end or the store is closed; the background error of
  // a store that refuses writes; NoSpace when a step's outputs did not fit (they are removed,
  // nothing changed, the store keeps serving: free space and call again); Cancelled when the
  // store began closing; the error of a failed flush, merge or manifest write (which, as for
  // any compaction, makes the store refuse writes until reopened) or of value-log GC (the
  // compaction itself is then done and kept); Busy, with the work done so far kept, in the
  // unlikely case that concurrent writes kept adding files to the range for longer than the
  // step bound (docs/engine.md). Value-log GC meeting new writes to the same keys again and
  // again is not an error: those files are left to background GC and OK is returned.
  // Thread safety: may run with any reads and writes, and with other CompactRange calls (they
  // take turns). REQUIRES: not on an IO thread of the store's scheduler.
  virtual Status CompactRange(std::optional<std::string_view> begin,
                              std::optional<std::string_view> end) = 0;

  // Coroutine forms. REQUIRES: awaited on an IO thread of the store's scheduler.
  virtual io::Task<Status> PutAsync(const WriteOptions& options, std::string_view key,
                                    std::string_view value) = 0;
  virtual io::Task<Status> DeleteAsync(const WriteOptions& options, std::string_view key) = 0;
  virtual io::Task<Status> WriteAsync(const WriteOptions& options, const WriteBatch& batch) = 0;
  virtual io::Task<Status> GetAsync(const ReadOptions& options, std::string_view key,
                                    std::string* value) = 0;
  virtual io::Task<Status> FlushAsync() = 0;
  // `dir` is copied into the task: it need not outlive the call.
  virtual io::Task<Status> CheckpointAsync(std::string dir) = 0;
  // `begin` and `end` must stay valid until the task starts (await it at once): they are
  // copied then. The compaction itself runs as a task of background priority that this one
  // waits for.
  virtual io::Task<Status> CompactRangeAsync(std::optional<std::string_view> begin,
                                             std::optional<std::string_view> end) = 0;

  // A new iterator over the store as of now (or options.snapshot). Caller owns it and must
  // destroy it before Close. Creating it does no I/O: position it before use.
  virtual std::unique_ptr<Iterator> NewIterator(const ReadOptions& options) = 0;

  // A snapshot of the current state; release it with ReleaseSnapshot before Close. While
  // held, the versions it sees are kept (compaction will not drop them).
  virtual const Snapshot* GetSnapshot() = 0;
  virtual void ReleaseSnapshot(const Snapshot* snapshot) = 0;

  // Waits for background work, writes out buffered WAL bytes and syncs them, and releases
  // the store. Returns the first error of that or of background work. Idempotent; after it
  // every other call fails with an error. It does not flush the memtable: call Flush first
  // for an Open without WAL replay. REQUIRES: every iterator destroyed, every snapshot
  // released; not on an IO thread of the store's scheduler.
  virtual Status Close() = 0;

  virtual DbStats stats() const = 0;
  // The shape of the tree now: kNumLevels (7) entries, level 0 first. Thread-safe; no I/O.
  virtual std::vector<LevelStats> GetLevelStats() const = 0;
  // A named statistic as text, like RocksDB's GetProperty (for `cascadefs inspect`, logs and
  // tools). Names: "cascade.stats" (a readable multi-line report: levels, amplification, block
  // cache, stalls, compactions), "cascade.levels" (one line per level: files, bytes, entries,
  // score), "cascade.write-amplification", "cascade.space-amplification",
  // "cascade.block-cache-hit-ratio" (each one decimal number; see the functions below),
  // "cascade.vlog" (one line per value-log file: size, records, garbage).
  // False, with *value untouched, for an unknown name. Thread-safe; no I/O.
  virtual bool GetProperty(std::string_view name, std::string* value) const = 0;
  // The scheduler the store runs on (options.scheduler or its own).
  virtual io::Scheduler* scheduler() const = 0;
};

}  // namespace cascadefs::engine
