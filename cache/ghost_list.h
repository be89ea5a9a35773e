// ghost_list.h: GhostList, a bounded FIFO of 64-bit key fingerprints without values.
//
// S3-FIFO's ghost queue: it remembers keys the cache saw but does not hold (inserts refused by
// Admission::kSeenTwice, entries evicted without a hit), so that a key coming back soon is
// admitted. Fingerprints are XXH3-64 of the key; a collision only admits a key early.
// Bounded by `capacity` fingerprints: adding to a full list forgets the oldest.
//
// Thread safety: every method may be called concurrently (one mutex, a leaf in the lock order).
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cascadefs::cache {

class GhostList {
 public:
  // REQUIRES: capacity >= 1.
  explicit GhostList(std::uint32_t capacity);

  bool Contains(std::uint64_t fingerprint);
  void Add(std::uint64_t fingerprint);

 private:
  std::mutex mutex_;
  // Ring of the last `capacity` fingerprints added; next_ is the oldest once full.
  std::vector<std::uint64_t> ring_;                          // guarded by mutex_
  std::size_t next_ = 0;                                     // guarded by mutex_
  std::size_t size_ = 0;                                     // guarded by mutex_; <= ring_.size()
  std::unordered_map<std::uint64_t, std::uint32_t> counts_;  // guarded by mutex_: copies in ring_
};

}  // namespace cascadefs::cache
