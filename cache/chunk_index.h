// chunk_index.h: ChunkIndex, the in-memory map key -> location of the entry in the cache file.
//
// Sharded by a hash of the key: each shard is one mutex and one hash map, so lookups of
// different keys from different threads rarely meet on a lock (lookups take the lock for a
// hash-map probe only; no I/O happens under it). Each slot also holds a small access counter
// (0..kFrequencyMax) that Find(touch=true) increments; the writer reads it when it reclaims a
// segment to decide which entries get a second chance.
//
// Thread safety: every method may be called concurrently. Lock order: a shard mutex is a leaf
// (nothing else is acquired while it is held).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "cache_format.h"

namespace cascadefs::cache {

// A key of 1..kKeyMaxBytes bytes, zero-padded so that equality and hashing are on fixed bytes.
struct CacheKey {
  std::uint8_t size = 0;
  std::array<char, kKeyMaxBytes> bytes{};

  // REQUIRES: 1 <= key.size() <= kKeyMaxBytes.
  static CacheKey From(std::string_view key);
  std::string_view view() const { return std::string_view(bytes.data(), size); }
  bool operator==(const CacheKey& other) const = default;
  std::uint64_t Hash() const;
};

struct CacheKeyHash {
  std::size_t operator()(const CacheKey& key) const { return key.Hash(); }
};

// Where an entry lives. `sequence` is the segment write that holds it: the entry is readable
// only while the segment still carries that sequence.
struct Location {
  std::uint32_t segment = 0;
  std::uint32_t offset = 0;  // of the entry header, from the segment start
  std::uint32_t value_bytes = 0;
  std::uint64_t sequence = 0;
};

class ChunkIndex {
 public:
  static constexpr std::uint8_t kFrequencyMax = 3;  // 2 bits, as S3-FIFO's counter
  static constexpr std::uint32_t kShardCount = 64;  // a power of two

  ChunkIndex();

  // True and *location set when the key is present. With touch, the slot's frequency grows by
  // one (saturating at kFrequencyMax).
  bool Find(const CacheKey& key, Location* location, bool touch);

  // Inserts or replaces the key's slot.
  void Put(const CacheKey& key, const Location& location, std::uint8_t frequency);

  // Erases the key only when its slot is the entry (segment, sequence): a key written again
  // elsewhere since keeps its newer slot. Returns the slot's frequency, or -1 when nothing was
  // erased.
  int EraseIf(const CacheKey& key, std::uint32_t segment, std::uint64_t sequence);

  std::uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
  std::uint64_t value_bytes() const { return value_bytes_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    Location location;
    std::uint8_t frequency = 0;
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<CacheKey, Slot, CacheKeyHash> map;  // guarded by mutex
  };
  Shard& ShardOf(std::uint64_t hash) {
    // The low bits pick the hash-map bucket; the shard takes the high bits.
    return shards_[(hash >> 58) & (kShardCount - 1)];
  }

  std::unique_ptr<Shard[]> shards_;
  std::atomic<std::uint64_t> entries_{0};
  std::atomic<std::uint64_t> value_bytes_{0};
};

}  // namespace cascadefs::cache
