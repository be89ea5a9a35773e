#include "chunk_index.h"

#include <xxhash.h>

#include "engine/assert.h"

namespace cascadefs::cache {

static_assert((ChunkIndex::kShardCount & (ChunkIndex::kShardCount - 1)) == 0);
static_assert(ChunkIndex::kShardCount <= 64, "ShardOf takes 6 bits of the hash");

CacheKey CacheKey::From(std::string_view key) {
  CFS_ASSERT(!key.empty());
  CFS_ASSERT(key.size() <= kKeyMaxBytes);
  CacheKey out;
  out.size = static_cast<std::uint8_t>(key.size());
  std::memcpy(out.bytes.data(), key.data(), key.size());
  return out;
}

std::uint64_t CacheKey::Hash() const { return XXH3_64bits(bytes.data(), size); }

ChunkIndex::ChunkIndex() : shards_(std::make_unique<Shard[]>(kShardCount)) {}

bool ChunkIndex::Find(const CacheKey& key, Location* location, bool touch) {
  Shard& shard = ShardOf(key.Hash());
  std::lock_guard guard(shard.mutex);
  auto it = shard.map.find(key);
  if (it == shard.map.end()) return false;
  *location = it->second.location;
  if (touch && it->second.frequency < kFrequencyMax) ++it->second.frequency;
  return true;
}

void ChunkIndex::Put(const CacheKey& key, const Location& location, std::uint8_t frequency) {
  CFS_ASSERT(frequency <= kFrequencyMax);
  CFS_ASSERT(location.sequence >= 1);
  Shard& shard = ShardOf(key.Hash());
  std::lock_guard guard(shard.mutex);
  auto [it, inserted] = shard.map.try_emplace(key);
  if (inserted) {
    entries_.fetch_add(1, std::memory_order_relaxed);
  } else {
    value_bytes_.fetch_sub(it->second.location.value_bytes, std::memory_order_relaxed);
  }
  it->second.location = location;
  it->second.frequency = frequency;
  value_bytes_.fetch_add(location.value_bytes, std::memory_order_relaxed);
}

int ChunkIndex::EraseIf(const CacheKey& key, std::uint32_t segment, std::uint64_t sequence) {
  Shard& shard = ShardOf(key.Hash());
  std::lock_guard guard(shard.mutex);
  auto it = shard.map.find(key);
  if (it == shard.map.end()) return -1;
  const Location& location = it->second.location;
  if (location.segment != segment || location.sequence != sequence) return -1;
  const int frequency = it->second.frequency;
  value_bytes_.fetch_sub(location.value_bytes, std::memory_order_relaxed);
  entries_.fetch_sub(1, std::memory_order_relaxed);
  shard.map.erase(it);
  return frequency;
}

}  // namespace cascadefs::cache
