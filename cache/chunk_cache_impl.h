// chunk_cache_impl.h: ChunkCacheImpl, the implementation behind cache/chunk_cache.h.
//
// Threads: callers (Lookup, Insert, Promise, Contains, Flush, stats), one writer thread
// (WriterLoop: appends queued inserts, reclaims segments) and one promise reader thread
// (ReaderLoop: delivers promised chunks). docs/cache.md draws the segment state machine.
//
// Invariants (cited by number in the code):
//  I1. Only the writer thread writes the file, changes a segment's sequence, or touches
//      writer-only members (marked "writer").
//  I2. A segment's bytes are written while its io_mutex is held exclusively (reclaim: read
//      for reinsertion, new header) or while no index entry points at those bytes yet
//      (appends: the entry is published to the index only after its pwrite returned).
//      Readers hold io_mutex shared while they pread, and read only if the segment still
//      carries the sequence their Location names.
//  I3. Every index entry whose segment is not write_segment_ names the segment's current
//      sequence: the writer erases a segment's entries after choosing it as write_segment_
//      (under mu_) and before choosing the next one.
//  I4. A segment with pins > 0 is never chosen as write_segment_ (reclaimed); pins are added
//      only under mu_, and never to write_segment_.
//  I5. Every promised key is handed to its callback exactly once: either synchronously in
//      Promise (its segment is write_segment_) or by the reader loop, which removes it from
//      pending before delivering and drops the pin after.
//  I6. queued_bytes_ <= options.insert_queue_bytes at all times; it counts an insert from
//      Insert until the writer has written or discarded it.
//
// Lock order: mu_ -> index shard mutex; queue_mu_ and the ghost mutex are leaves; a segment's
// io_mutex is never held together with mu_ or queue_mu_, and only index shard mutexes may be
// taken under it (never: ReadEntry erases after unlocking).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/chunk_cache.h"
#include "chunk_index.h"
#include "ghost_list.h"

namespace cascadefs::cache {

class ChunkCacheImpl final : public ChunkCache {
 public:
  ChunkCacheImpl(std::string path, const ChunkCacheOptions& options, int fd);
  ~ChunkCacheImpl() override;

  // Rebuilds the index from the file (or formats it) and starts the threads.
  Status Start();

  Status Close() override;
  Status Lookup(std::string_view key, std::string* value) override;
  io::Task<Status> LookupAsync(std::string_view key, std::string* value) override;
  bool Contains(std::string_view key) override;
  Status Insert(std::string_view key, std::string_view value) override;
  PromiseResult Promise(const std::vector<std::string_view>& keys,
                        PromiseCallback callback) override;
  void Flush() override;
  ChunkCacheStats stats() const override;

 private:
  struct PromiseState {
    PromiseCallback callback;
    std::atomic<std::uint32_t> remaining{0};
    std::chrono::steady_clock::time_point start;
  };
  struct PendingDelivery {
    std::shared_ptr<PromiseState> promise;
    std::uint32_t key_index = 0;
    CacheKey key;
    Location location;
  };
  struct Segment {
    std::shared_mutex io_mutex;              // I2
    std::atomic<std::uint64_t> sequence{0};  // 0: never written; written by the writer (I1)
    std::vector<CacheKey> keys;              // writer: keys appended in this segment write
    std::uint32_t pins = 0;                  // guarded by mu_: promised, undelivered chunks
    std::vector<PendingDelivery> pending;    // guarded by mu_: what the reader loop delivers
  };
  struct QueuedInsert {
    CacheKey key;
    std::string value;
  };
  struct Staged {
    CacheKey key;
    Location location;
    std::uint8_t frequency = 0;
    bool reinserted = false;
  };

  std::uint64_t SegmentFileOffset(std::uint32_t segment) const {
    return std::uint64_t{segment} * options_.segment_size_bytes;
  }
  std::uint32_t segment_count() const {
    return static_cast<std::uint32_t>(options_.capacity_bytes / options_.segment_size_bytes);
  }

  Status Format();
  Status Recover();
  // Reads and validates the entry at `location`; OK fills *value. On damage the index entry
  // is dropped and the damage counted.
  Status ReadEntry(const CacheKey& key, const Location& location, std::string* value);
  void Deliver(const PendingDelivery& delivery, std::string* buffer);

  void WriterLoop();
  void ReaderLoop();
  // Writer: appends one entry to the current segment, moving to the next segment when it
  // does not fit.
  void Append(const CacheKey& key, std::string_view value, std::uint8_t frequency, bool reinserted);
  // Writer: writes the staged bytes and publishes their index entries.
  void WriteStaged();
  // Writer: chooses the next segment (waiting at a promised head, skipping other promised
  // segments), reclaims it and re-appends its second-chance entries.
  void AdvanceSegment();
  void RecordError(const Status& status);

  const std::string path_;
  const ChunkCacheOptions options_;
  const int fd_;
  const std::uint32_t entry_bytes_max_;  // largest entry a segment holds
  std::uint64_t file_identity_ = 0;      // set before the threads start, then constant

  ChunkIndex index_;
  GhostList ghost_;
  std::unique_ptr<Segment[]> segments_;

  // mu_ guards promise state and write_segment_ (lock order: above).
  mutable std::mutex mu_;
  std::condition_variable reader_cv_;  // pending deliveries arrived, or stopping
  std::condition_variable writer_cv_;  // pins dropped
  std::uint32_t write_segment_ = 0;    // guarded by mu_; written by the writer only
  std::uint64_t pending_total_ = 0;    // guarded by mu_; <= options_.promised_chunks_max
  bool reader_stop_ = false;           // guarded by mu_

  // Insert queue (I6).
  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;    // an insert arrived, or stopping
  std::condition_variable flush_cv_;    // inserts_done_ grew
  std::deque<QueuedInsert> queue_;      // guarded by queue_mu_
  std::uint64_t queued_bytes_ = 0;      // guarded by queue_mu_ (I6)
  std::uint64_t inserts_enqueued_ = 0;  // guarded by queue_mu_
  std::uint64_t inserts_done_ = 0;      // guarded by queue_mu_
  bool writer_stop_ = false;            // guarded by queue_mu_

  // Writer state (I1).
  std::uint32_t write_offset_ = 0;   // writer: next append offset in write_segment_
  std::uint32_t staged_offset_ = 0;  // writer: offset of staged_bytes_[0] in write_segment_
  std::uint64_t next_sequence_ = 1;  // writer
  std::string staged_bytes_;         // writer: encoded entries not yet written
  std::vector<Staged> staged_;       // writer: their index entries
  std::string reclaim_buffer_;       // writer: a segment image read at reclaim

  // Set once the writer reclaims a written segment (or a warm restart finds no free one);
  // gates Admission::kSeenTwice. Written by the writer (and Recover), read by Insert.
  std::atomic<bool> full_{false};

  std::thread writer_;
  std::thread reader_;
  bool closed_ = false;  // guarded by close_mu_
  std::mutex close_mu_;
  Status first_error_;  // guarded by error_mu_
  mutable std::mutex error_mu_;

  // Counters (relaxed atomics; see ChunkCacheStats).
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, inserts_queued_{0}, inserts_written_{0},
      dropped_full_{0}, not_admitted_{0}, already_cached_{0}, queue_peak_{0}, reclaimed_{0},
      reinsertions_{0}, evictions_{0}, writer_waits_{0}, writer_skips_{0}, damaged_{0},
      promises_{0}, promised_chunks_{0}, promised_delivered_{0}, promised_missing_{0},
      promise_latency_total_us_{0}, promise_latency_max_us_{0}, promises_completed_{0},
      warm_entries_{0};
};

}  // namespace cascadefs::cache
