// gc_fence.cc: see gc_fence.h.
#include "fs/gc_fence.h"

#include "engine/assert.h"

namespace cascadefs::fusefs {

ChunkGcFence::Token::~Token() {
  if (fence_ != nullptr) fence_->Leave(generation_);
}

ChunkGcFence::Token ChunkGcFence::Enter() {
  std::lock_guard guard(mutex_);
  ++holders_[generation_];
  return Token(this, generation_);
}

void ChunkGcFence::Leave(std::uint64_t generation) {
  std::lock_guard guard(mutex_);
  auto it = holders_.find(generation);
  CFS_ASSERT(it != holders_.end() && it->second > 0);
  if (--it->second == 0) {
    holders_.erase(it);
    changed_.NotifyAll();
  }
}

io::Task<void> ChunkGcFence::Touch(const ChunkName& name) {
  if (!recording_.load(std::memory_order_acquire)) co_return;
  std::unique_lock lock(mutex_);
  if (!recording_.load(std::memory_order_relaxed)) co_return;
  if (!overflowed_) {
    touched_.insert(name);
    if (touched_.size() > kTouchedNamesMax) overflowed_ = true;
  }
  while (deleting_.contains(name)) co_await changed_.Wait(lock);
}

io::Task<void> ChunkGcFence::BeginCycle() {
  std::unique_lock lock(mutex_);
  CFS_ASSERT(!recording_.load(std::memory_order_relaxed));
  recording_.store(true, std::memory_order_release);
  overflowed_ = false;
  touched_.clear();
  const std::uint64_t cycle_generation = ++generation_;
  // Tokens of earlier generations hold chunks written before recording began.
  while (!holders_.empty() && holders_.begin()->first < cycle_generation) {
    co_await changed_.Wait(lock);
  }
}

std::vector<ChunkName> ChunkGcFence::Claim(const std::vector<ChunkName>& candidates) {
  std::lock_guard guard(mutex_);
  CFS_ASSERT(recording_.load(std::memory_order_relaxed) && deleting_.empty());
  std::vector<ChunkName> claimed;
  if (overflowed_) return claimed;
  for (const ChunkName& name : candidates) {
    if (touched_.contains(name)) continue;
    deleting_.insert(name);
    claimed.push_back(name);
  }
  return claimed;
}

void ChunkGcFence::DoneDeleting() {
  std::lock_guard guard(mutex_);
  deleting_.clear();
  changed_.NotifyAll();
}

bool ChunkGcFence::Overflowed() const {
  std::lock_guard guard(mutex_);
  return overflowed_;
}

void ChunkGcFence::EndCycle() {
  std::lock_guard guard(mutex_);
  recording_.store(false, std::memory_order_release);
  overflowed_ = false;
  touched_.clear();
  touched_.rehash(0);  // give the memory back between cycles
  deleting_.clear();
  changed_.NotifyAll();
}

}  // namespace cascadefs::fusefs
