// value_log.h: the store's value log: the files large values are written to once, at the
// write (docs/formats/vlog.md).
//
// Design. The DB appends a write's large values under its own mutex, before it frames the
// WAL record that holds their pointers (Append: a memcpy into the current file's buffer, never
// I/O, never a wait). A full buffer (buffer_bytes) is queued for the write loop, one task that
// writes queued chunks in order with positioned writes. A file that reaches file_size_bytes is
// rolled: its last chunk and then its footer (written, synced, closed) are queued, and the
// next file, prepared ahead by a background task (created, header written and synced, its name
// synced), becomes current. Reads (Read) find a pointer's bytes wherever they are: in the
// buffer, in a queued chunk, or in the file.
//
// Durability: SyncTo(position) waits until every chunk before the position is written and
// the footer of every file rolled before it is synced, then fdatasyncs the current file (callers at
// the same time share one sync). The DB calls it before it syncs the WAL, and before a flush's
// manifest edit, so no durable WAL record or SST names bytes that are not durable.
//
// Invariants:
//  1. For each open file: [0, written) is in the file; [written, appended - buffer.size())
//     is in queued chunks, in order; the rest is in buffer. synced <= written.
//  2. unwritten_bytes_ = bytes in buffers and queued chunks; Append never lets it pass
//     unwritten_bytes_max except for the first batch after it reached zero (HasRoomFor).
//  3. Every rolled file has a finish item queued until its footer is synced
//     (finishes_pending_ counts them).
//  4. Records are appended to the current file only; a recovered file is never appended to.
//  5. Opened read-only: current_ and prepared_ stay null, files_ and queue_ stay empty, and
//     no task is ever spawned: the only I/O is reading.
//
// Thread safety: every method may be called from any thread or task. Append and
// HasRoomFor are called by one caller at a time (under the DB's mutex); lock order: the DB's
// mutex, then mutex_.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/io/wait_queue.h"
#include "engine/result.h"
#include "engine/status.h"
#include "vlog/vlog_format.h"

namespace cascadefs::engine {

struct ValueLogOptions {
  // A file rolls once it holds this many bytes (a batch's records may overshoot it).
  std::uint64_t file_size_bytes = std::uint64_t{256} << 20;
  // Appended bytes gathered before they are queued as one write.
  std::size_t buffer_bytes = 1 << 20;
  // Appended bytes not yet written to a file (buffer plus queued chunks): the value log's
  // memory bound. A writer beyond it waits (WaitForRoom).
  std::size_t unwritten_bytes_max = 32 << 20;
  // Open existing files for reading only (Options::read_only): no file is created, synced or
  // removed, and there is no current file, so Append must not be called.
  bool read_only = false;
};

// What Open found of one file already in the directory, or the state of a live file.
struct VlogFileState {
  std::uint64_t number = 0;
  std::uint64_t valid_end = 0;    // offset just past the last good record
  std::uint64_t durable_end = 0;  // bytes before it are synced (<= valid_end)
  std::uint64_t records = 0;
  std::uint64_t value_bytes = 0;  // stored value bytes of those records
  bool finished = false;          // the footer is in place
};

// A place in the value log: everything appended before it.
struct VlogPosition {
  std::uint64_t file_number = 0;
  std::uint64_t offset = 0;
};

struct ValueLogStats {
  std::uint64_t records_appended = 0;
  std::uint64_t bytes_appended = 0;  // whole records
  std::uint64_t bytes_written = 0;   // to files, headers and footers included
  std::uint64_t syncs = 0;
  std::uint64_t reads = 0;
  std::uint64_t reads_from_memory = 0;  // served from a buffer or a queued chunk
  std::uint64_t files_created = 0;
  std::uint64_t waits_for_room = 0;
  std::uint64_t unwritten_peak_bytes = 0;  // the most unwritten bytes held at once
};

// Open readers kept (descriptors); the least recently used is closed beyond it.
inline constexpr std::size_t kVlogOpenReadersMax = 64;

class ValueLog {
 public:
  // Checks the files `existing` (numbers of NNNNNN.vlog in `dir`): a file with a valid footer
  // is finished; any other is scanned and its valid records end at the first bad one (the
  // tail of a crash), and synced when it holds records. Then creates a new current file and
  // prepares the next. With options.read_only, only the checks: nothing is synced or created,
  // there is no current file (Append must not be called; Close writes nothing), and reads
  // of an unfinished file stop at its scanned valid end. Corruption naming the file for a
  // file whose header is damaged and that holds more than a header's bytes.
  static io::Task<Result<std::unique_ptr<ValueLog>>> Open(
      Env* env, std::string dir, ValueLogOptions options, std::vector<std::uint64_t> existing,
      std::function<std::uint64_t()> allocate_number);
  ~ValueLog();
  ValueLog(const ValueLog&) = delete;
  ValueLog& operator=(const ValueLog&) = delete;

  // The files Open found, as found (ascending numbers).
  const std::vector<VlogFileState>& recovered() const { return recovered_; }
  // True when `pointer` names bytes inside the valid records of a known file: what WAL replay
  // checks before it trusts a pointer (a torn value-log tail ends the replay like a torn WAL).
  bool PointerInBounds(const ValuePointer& pointer) const;
  // Forgets a recovered file (the DB deleted it: it held no records).
  void ForgetRecovered(std::uint64_t number);

  // True when `record_bytes` more may be appended now (invariant 2).
  bool HasRoomFor(std::size_t record_bytes) const;
  // Waits until HasRoomFor(record_bytes) or an error.
  io::Task<void> WaitForRoom(std::size_t record_bytes);
  // Appends a record; never blocks. The sticky error after a failed write.
  // REQUIRES: not opened read-only.
  Result<ValuePointer> Append(std::string_view key, std::string_view value);
  VlogPosition AppendedPosition() const;
  // Makes everything appended before `position` durable.
  io::Task<Status> SyncTo(VlogPosition position);
  // The value `pointer` names, checked against its checksum and `key`.
  io::Task<Result<std::string>> Read(const ValuePointer& pointer, std::string_view key);
  // Finishes the current file (footer, sync; removed instead when it holds no record) and
  // waits for every write. Idempotent.
  io::Task<Status> Close();

  // True while `number` is the current file or a rolled one not yet finished: GC leaves it.
  bool IsBeingWritten(std::uint64_t number) const;
  // The end of `number`'s valid records; 0 for an unknown file.
  std::uint64_t ValidEnd(std::uint64_t number) const;
  // GC collected finished file `number` and removed it from the manifest: Files() no longer
  // lists it (so no flush records it again), while reads of it still work until DeleteFile.
  void Retire(std::uint64_t number);
  // Deletes finished file `number` (GC collected it and no reader can reach it any more).
  io::Task<Status> DeleteFile(std::uint64_t number);

  // Every file this value log wrote or found that still exists, with its current counts
  // (the current file's include appended, unwritten records).
  std::vector<VlogFileState> Files() const;
  ValueLogStats stats() const;

 private:
  struct File {
    std::uint64_t number = 0;
    std::shared_ptr<WritableFile> writer;
    std::uint64_t appended = 0;
    std::uint64_t written = 0;
    std::uint64_t synced = 0;
    std::string buffer;
    std::uint64_t records = 0;
    std::uint64_t value_bytes = 0;
    bool finished = false;  // footer written and synced
  };
  struct Chunk {
    std::shared_ptr<File> file;
    std::uint64_t offset = 0;
    std::string data;     // empty for a finish item
    bool finish = false;  // write the footer, sync, close
  };

  ValueLog(Env* env, std::string dir, ValueLogOptions options,
           std::function<std::uint64_t()> allocate_number);

  io::Task<Result<std::shared_ptr<File>>> CreateFile();
  io::Task<void> PrepareNext();
  io::Task<void> WriteLoop();
  void IssueBufferLocked(const std::shared_ptr<File>& file);
  // Queues `file`'s buffer, then its finish item (footer, sync, close).
  void FinishLocked(const std::shared_ptr<File>& file);
  void RollLocked();
  void KickLocked();
  // True while a rolled file numbered at most `number` waits for its footer and sync.
  bool FinishPendingThroughLocked(std::uint64_t number) const;
  io::Task<Result<std::shared_ptr<RandomAccessFile>>> Reader(std::uint64_t number);
  // The end of `number`'s valid bytes, or 0 when the file is unknown. REQUIRES: mutex_ held.
  std::uint64_t ValidEndLocked(std::uint64_t number) const;

  Env* const env_;
  const std::string dir_;
  const ValueLogOptions options_;
  const std::function<std::uint64_t()> allocate_number_;
  std::vector<VlogFileState> recovered_;  // immutable after Open but for ForgetRecovered

  mutable std::mutex mutex_;
  std::shared_ptr<File> current_;                         // GUARDED_BY(mutex_)
  std::shared_ptr<File> prepared_;                        // GUARDED_BY(mutex_)
  bool preparing_ = false;                                // GUARDED_BY(mutex_)
  std::map<std::uint64_t, std::shared_ptr<File>> files_;  // written by this run; GUARDED_BY
  // Files no longer written: recovered ones and those this run finished. GUARDED_BY(mutex_)
  std::map<std::uint64_t, VlogFileState> sealed_;
  std::set<std::uint64_t> retired_;   // GUARDED_BY(mutex_): in sealed_, left out of Files()
  std::deque<Chunk> queue_;           // GUARDED_BY(mutex_): invariant 1
  bool loop_running_ = false;         // GUARDED_BY(mutex_)
  std::size_t unwritten_bytes_ = 0;   // GUARDED_BY(mutex_): invariant 2
  std::size_t finishes_pending_ = 0;  // GUARDED_BY(mutex_): invariant 3
  bool sync_running_ = false;         // GUARDED_BY(mutex_)
  bool closed_ = false;               // GUARDED_BY(mutex_)
  Status error_;                      // GUARDED_BY(mutex_): sticky
  ValueLogStats stats_;               // GUARDED_BY(mutex_)
  io::WaitQueue changed_;             // a chunk written, a sync done, a file prepared, an error

  std::mutex readers_mutex_;
  std::list<std::uint64_t> reader_lru_;  // GUARDED_BY(readers_mutex_): most recent first
  std::unordered_map<std::uint64_t, std::pair<std::shared_ptr<RandomAccessFile>,
                                              std::list<std::uint64_t>::iterator>>
      readers_;  // GUARDED_BY(readers_mutex_)
};

}  // namespace cascadefs::engine
