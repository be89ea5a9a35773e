// table.h: an open SST file.
//
// Open reads the footer, the properties, the filter block and every index partition, and
// keeps the index (one entry per data block: its last key, handle and filter) and the
// filters in memory for the table's lifetime; the table cache bounds how many tables are
// open. A point lookup then costs one data block read, or none when the block's bloom filter
// rules the key out, or a block cache hit (TableOptions::block_cache).
//
// Thread safety: a Table is immutable after Open; Get and NewIterator may be called from any
// number of tasks at once. Counters are relaxed atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "db/dbformat.h"
#include "db/internal_iterator.h"
#include "engine/env.h"
#include "engine/io/task.h"
#include "engine/result.h"
#include "sst/format.h"

namespace cascadefs::engine {

struct TableGetResult {
  bool found = false;  // an entry of the user key at or below the lookup's sequence
  ValueType type = ValueType::kValue;
  std::string value;
};

class Table {
 public:
  // Corruption naming the file and offset on any damage; NotSupported for a newer format.
  static io::Task<Result<std::unique_ptr<Table>>> Open(const TableOptions& options,
                                                       std::unique_ptr<RandomAccessFile> file);

  // `lookup_key`: an internal key (user key, snapshot sequence, kValueTypeForSeek). Finds the
  // first entry at or after it; if its user key matches, fills *result.
  io::Task<Status> Get(std::string_view lookup_key, TableGetResult* result) const;
  // A two-level iterator: the in-memory index, then data blocks read as it moves. It refers
  // to this table, which must outlive it. With use_block_cache false it neither looks blocks
  // up in the block cache nor inserts them: a compaction reads each block once, and would
  // only push the readers' hot blocks out (and skew the hit ratio).
  std::unique_ptr<InternalIterator> NewIterator(bool use_block_cache = true) const;

  // For fsck: reads every data block once (no block cache), in file order. A block that fails
  // its checksum or does not decode goes to on_damage with its offset (and the check goes on
  // with the next block); the entries of every good block go to on_entry in order, and a
  // last key that disagrees with the block's index entry is damage too.
  io::Task<void> CheckBlocks(
      const std::function<void(std::uint64_t offset, const Status& status)>& on_damage,
      const std::function<void(std::string_view key, std::string_view value)>& on_entry) const;
  std::size_t data_blocks() const { return index_.size(); }

  std::uint64_t num_entries() const { return num_entries_; }
  std::string_view smallest_key() const { return smallest_key_; }
  std::string_view largest_key() const { return largest_key_; }
  std::uint64_t file_size_bytes() const { return file_->size_bytes(); }
  std::uint64_t bloom_negatives() const { return bloom_negatives_.load(std::memory_order_relaxed); }
  const std::string& path() const { return file_->path(); }

 private:
  friend class TableIterator;
  struct IndexEntry {
    std::string last_key;
    BlockHandle handle;
    std::uint32_t block_number = 0;
  };

  explicit Table(std::unique_ptr<RandomAccessFile> file) : file_(std::move(file)) {}
  // The first block whose last key is >= key; index_.size() when none.
  std::size_t FindBlock(std::string_view internal_key) const;
  std::string_view FilterOf(std::uint32_t block_number) const;
  io::Task<Result<std::shared_ptr<const class Block>>> LoadBlock(std::size_t index,
                                                                 bool use_block_cache) const;

  std::unique_ptr<RandomAccessFile> file_;
  std::vector<IndexEntry> index_;
  std::string filters_;                        // the filter block's filter bytes
  std::vector<std::uint32_t> filter_offsets_;  // one per block, then the end
  std::uint64_t num_entries_ = 0;
  std::string smallest_key_;
  std::string largest_key_;
  mutable std::atomic<std::uint64_t> bloom_negatives_{0};
  BlockCache* block_cache_ = nullptr;  // not owned; null: every block is read
  std::uint64_t cache_id_ = 0;         // this table's key space in block_cache_
};

}  // namespace cascadefs::engine
