#include "sst/block_cache.h"

#include "engine/assert.h"
#include "sst/block.h"

namespace cascadefs::engine {

BlockCache::BlockCache(std::size_t capacity_bytes, int shard_bits)
    : shard_capacity_bytes_(capacity_bytes >> shard_bits),
      shard_mask_((std::size_t{1} << shard_bits) - 1),
      shards_(std::size_t{1} << shard_bits) {
  CFS_ASSERT(shard_bits >= 0 && shard_bits <= 10);
}

std::shared_ptr<const Block> BlockCache::Lookup(std::uint64_t table_id, std::uint64_t offset) {
  const Key key{table_id, offset};
  Shard& shard = ShardOf(key);
  {
    std::lock_guard guard(shard.mutex);
    auto it = shard.index.find(key);
    if (it != shard.index.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
      hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second->block;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void BlockCache::Insert(std::uint64_t table_id, std::uint64_t offset,
                        std::shared_ptr<const Block> block) {
  const std::size_t charge = block->size_bytes();
  if (charge > shard_capacity_bytes_) return;
  const Key key{table_id, offset};
  Shard& shard = ShardOf(key);
  // Evicted blocks are released after the lock is dropped: freeing a block is not free.
  std::list<Entry> evicted;
  {
    std::lock_guard guard(shard.mutex);
    auto it = shard.index.find(key);
    if (it != shard.index.end()) {
      shard.usage_bytes -= it->second->charge;
      bytes_.fetch_sub(it->second->charge, std::memory_order_relaxed);
      evicted.splice(evicted.end(), shard.lru, it->second);
      shard.index.erase(it);
    }
    while (!shard.lru.empty() && shard.usage_bytes + charge > shard_capacity_bytes_) {
      Entry& victim = shard.lru.back();
      shard.usage_bytes -= victim.charge;
      bytes_.fetch_sub(victim.charge, std::memory_order_relaxed);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      shard.index.erase(victim.key);
      evicted.splice(evicted.end(), shard.lru, std::prev(shard.lru.end()));
    }
    shard.lru.push_front(Entry{key, std::move(block), charge});
    shard.index.emplace(key, shard.lru.begin());
    shard.usage_bytes += charge;
    // Under the lock, so an eviction's subtraction never runs ahead of this addition.
    bytes_.fetch_add(charge, std::memory_order_relaxed);
  }
  inserts_.fetch_add(1, std::memory_order_relaxed);
}

BlockCacheStats BlockCache::stats() const {
  BlockCacheStats out;
  out.hits = hits_.load(std::memory_order_relaxed);
  out.misses = misses_.load(std::memory_order_relaxed);
  out.inserts = inserts_.load(std::memory_order_relaxed);
  out.evictions = evictions_.load(std::memory_order_relaxed);
  out.bytes = bytes_.load(std::memory_order_relaxed);
  out.capacity_bytes = shard_capacity_bytes_ * shards_.size();
  return out;
}

}  // namespace cascadefs::engine
