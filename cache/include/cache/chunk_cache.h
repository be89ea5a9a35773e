// chunk_cache.h: ChunkCache, the circular chunk cache with promised reads (public API).
//
// One cache file of fixed size, cut into segments (default 1 MiB) that one writer thread fills
// sequentially and circularly. Keys are opaque byte strings of 1..32 bytes (the filesystem
// passes its 17-byte chunk name); values are chunk bytes. An in-memory index, sharded for
// concurrent lookups, maps a key to (segment, offset, length). Inserts go through a queue
// bounded in bytes and are dropped, never waited for, when it is full. When the write cursor
// needs a segment it reclaims the oldest one (the head): entries hit since they were written
// are written again at the tail (second chance), the others are forgotten. Promised reads hand
// a caller, at once, the keys the cache lacks, and deliver the others in segment order from the
// head; the writer never reclaims a segment with an undelivered promise. Design, segment state
// machine and lock order: docs/cache.md. File format and warm restart: docs/formats/cache.md.
//
// Thread safety: every method of ChunkCache may be called from any thread concurrently, except
// that the object must outlive all calls and all promise callbacks (the destructor waits for
// them). Lookup, LookupAsync, Contains, Insert and Promise never wait for the writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/task.h"
#include "engine/result.h"
#include "engine/status.h"

namespace cascadefs::cache {

// Which inserts the cache admits.
enum class Admission : std::uint8_t {
  // Every insert that fits is queued. For tests and tools that insert and read back at once.
  kAll = 0,
  // An insert is admitted only if the key was seen recently without being cached: it is in
  // the ghost list (keys inserted once and not admitted, and keys evicted without a hit). A
  // chunk read once (a one-pass scan) never displaces cached chunks; a chunk read twice within
  // the ghost's reach is cached on its second insert. S3-FIFO's ghost queue, used as a
  // doorkeeper. Applies only once the cache is full (the writer has reclaimed a written
  // segment): until then there is free space and every insert is queued, so a working set
  // that fits the cache costs one miss per chunk, as with LRU, not two.
  kSeenTwice = 1,
};

struct ChunkCacheOptions {
  // Size of the cache file. The cache holds a little less data than this: each segment loses
  // its 64-byte header, 32 bytes plus the key per entry, and the tail no entry fitted in.
  // Changing it (or segment_size_bytes) on an existing file discards the cached data.
  // REQUIRES: a multiple of segment_size_bytes, at least 4 segments, at most 2^20 segments.
  // Default: 1 GiB.
  std::uint64_t capacity_bytes = 1ull << 30;

  // Size of one segment, the unit of reclaim. Larger segments waste less tail space per
  // segment but hold more chunks a promise can pin. Tests use 64 KiB so the writer laps often.
  // REQUIRES: a multiple of 4096 in [64 KiB, 64 MiB].
  // Default: 1 MiB.
  std::uint32_t segment_size_bytes = 1u << 20;

  // Bound on the bytes of queued, not yet written inserts (keys plus values). An insert that
  // would exceed it is dropped and counted (ChunkCacheStats::inserts_dropped_queue_full); the
  // caller never waits. Raise it when bursts of misses drop inserts; it is memory.
  // REQUIRES: >= one segment. Default: 16 MiB.
  std::uint64_t insert_queue_bytes = 16ull << 20;

  // See Admission. Default: kSeenTwice.
  Admission admission = Admission::kSeenTwice;

  // Keys the ghost list remembers (8 bytes each plus hash-table overhead). 0 picks
  // capacity_bytes / 8 KiB: about four times the chunks a full cache holds at the filesystem's
  // typical chunk sizes. Default: 0.
  std::uint32_t ghost_entries = 0;

  // Upper bound, in percent of a segment, of the bytes re-inserted when a segment is
  // reclaimed. Entries hit since they were written beyond this bound are evicted. Keeps a lap
  // of the writer from being filled with old entries alone. REQUIRES: <= 90. Default: 75.
  std::uint32_t reinsert_percent_max = 75;

  // Bound on chunks promised and not yet delivered, over all promises. Keys beyond it are
  // returned as missing by Promise. Default: 65536.
  std::uint32_t promised_chunks_max = 65536;
};

struct ChunkCacheStats {
  std::uint64_t hits = 0;    // Lookup calls that returned the value
  std::uint64_t misses = 0;  // Lookup calls that did not (absent, stale or damaged)
  double hit_ratio() const {
    const std::uint64_t total = hits + misses;
    return total == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(total);
  }
  std::uint64_t entries = 0;       // keys in the index now
  std::uint64_t bytes_cached = 0;  // value bytes of those entries
  std::uint64_t capacity_bytes = 0;

  std::uint64_t inserts_queued = 0;              // accepted into the insert queue
  std::uint64_t inserts_written = 0;             // written to the file (reinsertions excluded)
  std::uint64_t inserts_dropped_queue_full = 0;  // dropped: the queue was at its byte bound
  std::uint64_t inserts_not_admitted = 0;        // refused by Admission::kSeenTwice
  std::uint64_t inserts_already_cached = 0;      // the key was already in the index
  std::uint64_t insert_queue_bytes = 0;          // bytes queued now
  std::uint64_t insert_queue_bytes_peak = 0;     // highest value ever; <= insert_queue_bytes

  std::uint64_t segments_reclaimed = 0;
  std::uint64_t reinsertions = 0;              // entries written again at a reclaim
  std::uint64_t evictions = 0;                 // entries forgotten at a reclaim
  std::uint64_t writer_waits_on_promises = 0;  // times the writer waited at a promised head
  std::uint64_t writer_skips_promised = 0;     // promised non-head segments skipped over
  std::uint64_t damaged_entries_dropped = 0;   // entries that failed validation (never served)

  std::uint64_t promises = 0;                   // Promise calls
  std::uint64_t promised_chunks = 0;            // keys promised (held at Promise time)
  std::uint64_t promised_delivered = 0;         // promised keys delivered with their bytes
  std::uint64_t promised_reported_missing = 0;  // promised keys delivered as a failure
  std::uint64_t promise_latency_us_total = 0;   // over completed promises: call to last delivery
  std::uint64_t promise_latency_us_max = 0;
  std::uint64_t promises_completed = 0;

  std::uint64_t warm_restart_entries = 0;  // entries the index was rebuilt with at Open
};

// One promised chunk, handed to the promise's callback exactly once.
struct PromisedChunk {
  std::uint32_t key_index = 0;  // index into the keys passed to Promise
  // OK: `value` holds the chunk. Otherwise the chunk could not be delivered (damaged on read,
  // or an I/O error): NotFound or Corruption or IOError; the caller fetches it elsewhere.
  Status status;
  std::string_view value;  // valid only during the callback
};

// Called once per promised key, from the cache's promise reader thread (or, for keys in the
// segment being written, from the thread calling Promise, before Promise returns). It must
// not call Promise, Flush or the destructor of the cache (the writer may be waiting for this
// delivery); Lookup, Contains and Insert are fine. It should be quick: while it runs, no other
// promised chunk is delivered.
using PromiseCallback = std::function<void(const PromisedChunk&)>;

struct PromiseResult {
  // Indices into the keys passed to Promise that the cache does not hold (or could not
  // promise: over promised_chunks_max). The caller fetches these elsewhere; the callback is
  // never called for them.
  std::vector<std::uint32_t> missing;
  // Keys promised: the callback will be called exactly this many times.
  std::uint32_t promised = 0;
};

// A finding of CheckCacheFile: a damaged spot of the cache file.
struct CacheFinding {
  std::uint32_t segment_index = 0;
  std::uint64_t file_offset = 0;  // offset of the damaged header or entry in the file
  std::string message;            // "segment 3 at offset 196672: entry checksum mismatch"
};

struct CacheCheckReport {
  std::uint32_t segments = 0;
  std::uint32_t segments_written = 0;  // valid header of the file's identity
  std::uint32_t segments_empty = 0;    // never written (no magic)
  std::uint64_t entries_valid = 0;
  std::vector<CacheFinding> findings;  // empty: the file is clean
};

class ChunkCache {
 public:
  // Opens the cache file at `path`, creating it (and nothing above it) when missing. An
  // existing file of the same geometry is reused: the index is rebuilt from its segments
  // (warm restart), validating every header and entry; damaged entries are dropped and
  // counted. A file shorter than capacity_bytes is extended with zeros and recovered the same
  // way (what was cut off is lost). A larger file, or one of another segment size or format
  // version, is reformatted (its contents are a cache: they are discarded). Starts the writer and
  // promise reader threads. Errors: InvalidArgument for bad options; IOError/NoSpace from the file
  // system. REQUIRES: no other ChunkCache has the file open (not checked).
  static Result<std::unique_ptr<ChunkCache>> Open(const std::string& path,
                                                  const ChunkCacheOptions& options);

  ChunkCache() = default;
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;
  // Writes what is queued, waits for every promise to be delivered, stops the threads, and
  // syncs the file so a warm restart finds it. Errors are logged nowhere: call Close first to
  // see them.
  virtual ~ChunkCache() = default;

  // Like the destructor, but returns the first write or sync error. Afterwards only stats()
  // may be called.
  virtual Status Close() = 0;

  // OK and *value = the chunk when the cache holds `key`; NotFound on a miss (absent, stale,
  // or damaged: a damaged entry is dropped from the index and counted, never returned);
  // IOError when the file could not be read. Blocks on one pread of the entry.
  virtual Status Lookup(std::string_view key, std::string* value) = 0;

  // Lookup for code on the io scheduler. The pread is blocking, on the calling IO thread:
  // cache entries are recent writes, usually in the page cache. (Not yet an io_uring read:
  // a cold entry costs its IO thread one disk read.)
  virtual io::Task<Status> LookupAsync(std::string_view key, std::string* value) = 0;

  // Whether the index holds `key` now. Reads nothing and counts neither hit nor miss.
  virtual bool Contains(std::string_view key) = 0;

  // Queues (key, value) for the writer and returns at once. OK when queued or when the cache
  // deliberately does not keep it (queue full, not admitted, already cached: each counted);
  // InvalidArgument when the key is empty or longer than 32 bytes or the entry is larger than
  // a segment can hold. Copies both; the caller keeps ownership.
  virtual Status Insert(std::string_view key, std::string_view value) = 0;

  // Returns at once the keys the cache does not hold and promises the others: each is later
  // handed to `callback` (see PromiseCallback) exactly once, in segment order from the oldest
  // segment. REQUIRES: keys.size() <= 65536; every key 1..32 bytes.
  virtual PromiseResult Promise(const std::vector<std::string_view>& keys,
                                PromiseCallback callback) = 0;

  // Blocks until every insert queued before the call is written (or dropped by the writer) and
  // visible to Lookup. For tools, tests and benchmarks; the read path never needs it.
  virtual void Flush() = 0;

  virtual ChunkCacheStats stats() const = 0;
};

// Checks a cache file for fsck without opening it for writing: every segment header and entry
// is read and validated. OK with a report (findings empty when clean); NotFound when the file
// does not exist, IOError when it cannot be read; InvalidArgument when segment_size_bytes is
// not a valid size. The segment size is taken from segment 0's header when it is valid, else
// `segment_size_bytes` is used.
Result<CacheCheckReport> CheckCacheFile(const std::string& path,
                                        std::uint32_t segment_size_bytes = 1u << 20);

}  // namespace cascadefs::cache
