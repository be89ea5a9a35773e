// table_cache.h: open SST files, bounded by Options::max_open_files.
//
// Opening a table reads its footer, index and filters (sst/table.h); the cache keeps up to
// `capacity` tables open and closes the least recently used beyond that. A table in use by a
// reader or iterator stays alive (shared_ptr) even after eviction; its descriptor closes when
// the last holder lets go, so the number of descriptors can exceed the capacity only by the
// tables that in-flight reads hold.
//
// Thread safety: every method may be called from any IO thread. Two tasks missing on the same
// file at once may both open it; the second insert is dropped (rare, harmless).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "db/internal_iterator.h"
#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "sst/table.h"

namespace cascadefs::engine {

class TableCache {
 public:
  TableCache(Env* env, std::string dir, const TableOptions& options, std::uint32_t capacity);

  // The open table of file `file_number`, opening it on a miss. Errors name the file.
  io::Task<Result<std::shared_ptr<Table>>> Get(std::uint64_t file_number);
  // Drops the file from the cache (the file is being deleted).
  void Evict(std::uint64_t file_number);

  std::uint64_t opens() const { return opens_.load(std::memory_order_relaxed); }
  std::uint64_t BloomNegatives() const;

 private:
  struct Entry {
    std::shared_ptr<Table> table;
    std::list<std::uint64_t>::iterator lru_position;
  };

  Env* const env_;
  const std::string dir_;
  const TableOptions options_;
  const std::uint32_t capacity_;
  std::atomic<std::uint64_t> opens_{0};
  // Bloom negatives of tables already evicted, so the total survives eviction.
  std::atomic<std::uint64_t> evicted_bloom_negatives_{0};

  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, Entry> entries_;  // GUARDED_BY(mutex_)
  std::list<std::uint64_t> lru_;                      // GUARDED_BY(mutex_); front = newest
};

// An iterator over `table` that keeps it open while the iterator lives. use_block_cache:
// Table::NewIterator (compactions pass false).
std::unique_ptr<InternalIterator> NewTableIteratorHolding(std::shared_ptr<Table> table,
                                                          bool use_block_cache = true);

}  // namespace cascadefs::engine
