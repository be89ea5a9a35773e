// wal_writer.h: appending to the WAL, with group commit. docs/formats/wal.md has the format.
//
// Design: the DB frames each record into an in-memory buffer under its own mutex (Append
// never does I/O and never waits). A full buffer is handed to a write task on the Env's
// scheduler: positioned writes into the current segment, several in flight at once, bounded
// by in_flight_bytes_max. SyncTo waits for the writes before a position and fdatasyncs the
// segments they went to; concurrent callers share one sync (group commit: while a sync
// runs, later callers wait and the next sync covers them all). After each sync, the next
// write-out starts with a sync mark recording the durable position, which is how recovery
// tells a torn tail from damage (wal_reader.h).
//
// Segments are fixed-size files, prepared one ahead by a background task (an old segment
// renamed to its new number, or a new file fallocated; then the directory synced), so
// switching segments rarely waits. A segment ends with a kSegmentEnd fragment. Segments whose
// records are all in SSTs (RecycleBelow) are kept, at most kRecycleMax, for reuse.
//
// Invariants:
//  1. Bytes before issued_through_ were handed to write tasks; the rest is in buffer_.
//  2. Every position before synced_through_ is durable (data synced, segment name synced).
//  3. A fragment is placed only where the segment still has room for its end marker
//     (kSegmentEndReserveBytes), so every segment can be ended.
//
// Thread safety: every method may be called from any thread or task. Append and
// SwitchSegment are called by one caller at a time (the DB's mutex) and never block;
// SyncTo, FlushBuffer, WaitWritable and Close are called without the DB's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/io/wait_queue.h"
#include "engine/result.h"
#include "engine/status.h"
#include "wal/log_format.h"

namespace cascadefs::engine {

// Old segments kept for reuse; more are deleted.
inline constexpr std::size_t kRecycleMax = 4;
// Room kept at a segment's end for its end marker (and the padding before it).
inline constexpr std::uint64_t kSegmentEndReserveBytes = 2 * kWalHeaderBytes;

struct WalOptions {
  std::uint64_t segment_size_bytes = 16 << 20;  // multiple of kWalBlockSizeBytes
  std::size_t buffer_size_bytes = 64 << 10;
  std::size_t in_flight_bytes_max = 8 << 20;
};

struct WalStats {
  std::uint64_t bytes_written = 0;   // bytes handed to write tasks
  std::uint64_t syncs = 0;           // fdatasync rounds
  std::uint64_t synced_writers = 0;  // SyncTo calls (each shares a round)
  std::uint64_t in_flight_peak_bytes = 0;
  std::uint64_t segments_started = 0;
  std::uint64_t segments_recycled = 0;  // segments reused by renaming
};

class WalWriter {
 public:
  // Starts writing at segment `first_log_number`. `recyclable`: old segments holding nothing
  // needed (reused or deleted). `allocate_log_number` hands out new numbers (thread-safe).
  static io::Task<Result<std::unique_ptr<WalWriter>>> Open(
      Env* env, std::string dir, WalOptions options, std::uint64_t first_log_number,
      std::vector<std::uint64_t> recyclable, std::function<std::uint64_t()> allocate_log_number);
  ~WalWriter();

  // Frames `record`; returns the position just after it. Busy when it cannot take the record
  // now (too many bytes in flight, or the next segment is not ready): release your mutex,
  // await WaitWritable(record.size()), retry. The sticky error after a failed write.
  Result<WalPosition> Append(std::string_view record);
  // Waits until an Append of `record_bytes` would not be Busy (or an error happened).
  io::Task<void> WaitWritable(std::size_t record_bytes);
  // Makes every position up to `position` durable.
  io::Task<Status> SyncTo(WalPosition position);
  // Writes out the buffer and waits for every write (no sync).
  io::Task<Status> FlushBuffer();
  // Waits until no write-out and no background segment preparation is in flight. What a test
  // awaits before dropping a writer without Close to simulate a crash.
  io::Task<void> WaitIdle();
  // Ends the current segment and starts the next; returns its log number. Busy as Append.
  Result<std::uint64_t> SwitchSegment();
  // Segments numbered below `log_number` hold only flushed records: reuse them.
  void RecycleBelow(std::uint64_t log_number);
  // Writes out, syncs and closes every segment. Idempotent; later calls fail.
  io::Task<Status> Close();
  WalStats stats() const;

 private:
  struct Segment {
    std::uint64_t log_number = 0;
    std::shared_ptr<WritableFile> file;
    std::uint32_t pending_writes = 0;  // GUARDED_BY(mutex_)
    bool dirty = false;                // written since its last sync; GUARDED_BY(mutex_)
    bool retired = false;              // recycle once its writes finish; GUARDED_BY(mutex_)
  };

  WalWriter(Env* env, std::string dir, WalOptions options,
            std::function<std::uint64_t()> allocate_log_number);

  // A ready segment numbered `log_number`, or a new number from the allocator.
  io::Task<Result<std::shared_ptr<Segment>>> PrepareSegment(
      std::optional<std::uint64_t> log_number);
  io::Task<void> PrepareAhead();
  io::Task<void> WriteTask(std::shared_ptr<Segment> segment, std::uint64_t offset,
                           std::shared_ptr<std::string> data);

  std::size_t SegmentsNeededLocked(std::size_t record_bytes) const;
  void StartPrepareLocked(std::size_t wanted);
  void EmitFragmentLocked(WalFragmentType type, std::string_view payload);
  void PadBlockLocked();
  void EndSegmentLocked();
  void IssueBufferLocked();
  void RetireLocked(const std::shared_ptr<Segment>& segment);
  void AddRecyclableLocked(std::uint64_t log_number);
  WalPosition CompletedThroughLocked() const;
  WalPosition PositionLocked() const { return {current_->log_number, offset_}; }

  Env* const env_;
  const std::string dir_;
  const WalOptions options_;
  const std::function<std::uint64_t()> allocate_log_number_;

  mutable std::mutex mutex_;
  std::shared_ptr<Segment> current_;                        // GUARDED_BY(mutex_)
  std::uint64_t offset_ = 0;                                // framed bytes in current_
  std::string buffer_;                                      // framed, not yet issued
  std::uint64_t buffer_offset_ = 0;                         // where buffer_ starts in current_
  std::map<std::uint64_t, std::shared_ptr<Segment>> open_;  // segments not yet closed
  std::deque<std::shared_ptr<Segment>> prepared_;           // ready to become current_
  std::size_t prepared_wanted_ = 1;
  bool preparing_ = false;
  std::vector<std::uint64_t> recyclable_;
  std::set<std::uint64_t> used_;  // segments that were current
  std::size_t in_flight_bytes_ = 0;
  std::map<WalPosition, WalPosition> pending_;  // issued writes: start -> end
  WalPosition issued_through_;                  // invariant 1
  WalPosition synced_through_;                  // invariant 2
  bool sync_running_ = false;
  std::optional<WalPosition> mark_to_write_;
  Status error_;  // sticky
  bool closed_ = false;
  WalStats stats_;
  // Notified on every completed write, sync, prepared segment and error.
  io::WaitQueue changed_;
};

}  // namespace cascadefs::engine
