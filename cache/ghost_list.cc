#include "ghost_list.h"

#include "engine/assert.h"

namespace cascadefs::cache {

GhostList::GhostList(std::uint32_t capacity) : ring_(capacity) {
  CFS_ASSERT(capacity >= 1);
  counts_.reserve(capacity);
}

bool GhostList::Contains(std::uint64_t fingerprint) {
  std::lock_guard guard(mutex_);
  return counts_.contains(fingerprint);
}

void GhostList::Add(std::uint64_t fingerprint) {
  std::lock_guard guard(mutex_);
  if (size_ == ring_.size()) {
    const std::uint64_t oldest = ring_[next_];
    auto it = counts_.find(oldest);
    CFS_ASSERT(it != counts_.end());
    if (--it->second == 0) counts_.erase(it);
  } else {
    ++size_;
  }
  ring_[next_] = fingerprint;
  ++counts_[fingerprint];
  next_ = (next_ + 1) % ring_.size();
  CFS_ASSERT(counts_.size() <= size_);
}

}  // namespace cascadefs::cache
