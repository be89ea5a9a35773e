// block_cache.h: a sharded LRU cache of parsed SST data blocks, bounded in bytes.
//
// Keys are (table id, block offset); every open Table takes a fresh id (NewTableId), so a
// reopened or replaced file never meets another's blocks, and entries of closed tables simply
// age out. Values are shared_ptr<const Block>: a block evicted while an iterator or lookup still
// holds it stays alive until released, so the bound counts cached blocks, not ones in use.
//
// Bound: capacity_bytes in total, split evenly over 2^shard_bits shards (default 16). A block's
// charge is its contents size. A block larger than a shard's capacity is not cached.
// Inserting evicts least recently used blocks of the shard until it fits.
//
// Thread safety: all methods may be called concurrently; each shard has its own mutex, held
// only for the map and list updates (never across I/O). Counters are relaxed atomics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cascadefs::engine {

class Block;

struct BlockCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;
  std::uint64_t bytes = 0;  // charge of the cached blocks now
  std::uint64_t capacity_bytes = 0;
};

class BlockCache {
 public:
  explicit BlockCache(std::size_t capacity_bytes, int shard_bits = 4);
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  std::uint64_t NewTableId() { return next_table_id_.fetch_add(1, std::memory_order_relaxed); }

  // The cached block, or null (a miss). Counts the hit or miss.
  std::shared_ptr<const Block> Lookup(std::uint64_t table_id, std::uint64_t offset);
  // Caches `block` (charge = its size); replaces an entry of the same key.
  void Insert(std::uint64_t table_id, std::uint64_t offset, std::shared_ptr<const Block> block);

  BlockCacheStats stats() const;

 private:
  struct Key {
    std::uint64_t table_id;
    std::uint64_t offset;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const {
      std::uint64_t h = key.table_id * 0x9E3779B97F4A7C15ULL ^ key.offset;
      h ^= h >> 29;
      h *= 0xBF58476D1CE4E5B9ULL;
      return static_cast<std::size_t>(h ^ (h >> 32));
    }
  };
  struct Entry {
    Key key;
    std::shared_ptr<const Block> block;
    std::size_t charge;
  };
  struct Shard {
    std::mutex mutex;
    std::list<Entry> lru;  // front: most recently used
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;
    std::size_t usage_bytes = 0;
  };

  Shard& ShardOf(const Key& key) { return shards_[KeyHash()(key) >> 7 & shard_mask_]; }

  const std::size_t shard_capacity_bytes_;
  const std::size_t shard_mask_;
  std::vector<Shard> shards_;
  std::atomic<std::uint64_t> next_table_id_{1};
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> inserts_{0};
  std::atomic<std::uint64_t> evictions_{0};
  std::atomic<std::uint64_t> bytes_{0};
};

}  // namespace cascadefs::engine
