#include "memtable/arena.h"

#include <cstdint>

#include "engine/assert.h"

namespace cascadefs::engine {

namespace {
constexpr std::size_t kAlignment = 8;
static_assert((kAlignment & (kAlignment - 1)) == 0, "alignment is a power of two");
}  // namespace

char* Arena::AllocateAligned(std::size_t size_bytes) {
  const std::size_t misalignment = reinterpret_cast<std::uintptr_t>(cursor_) & (kAlignment - 1);
  const std::size_t padding = misalignment == 0 ? 0 : kAlignment - misalignment;
  const std::size_t needed = size_bytes + padding;
  char* result = nullptr;
  if (needed <= remaining_bytes_) {
    result = cursor_ + padding;
    cursor_ += needed;
    remaining_bytes_ -= needed;
  } else {
    result = AllocateFallback(size_bytes);  // new blocks start aligned (operator new)
  }
  CFS_ASSERT((reinterpret_cast<std::uintptr_t>(result) & (kAlignment - 1)) == 0);
  return result;
}

char* Arena::AllocateFallback(std::size_t size_bytes) {
  CFS_ASSERT(size_bytes > 0);
  if (size_bytes > kBlockSizeBytes / 4) return AllocateNewBlock(size_bytes);
  // The rest of the current block is abandoned: at most a quarter block is wasted.
  cursor_ = AllocateNewBlock(kBlockSizeBytes);
  remaining_bytes_ = kBlockSizeBytes;
  char* result = cursor_;
  cursor_ += size_bytes;
  remaining_bytes_ -= size_bytes;
  return result;
}

char* Arena::AllocateNewBlock(std::size_t size_bytes) {
  // Uninitialized on purpose: every byte handed out is written before it is read.
  blocks_.push_back(std::unique_ptr<char[]>(new char[size_bytes]));
  memory_usage_.fetch_add(size_bytes + sizeof(char*), std::memory_order_relaxed);
  return blocks_.back().get();
}

}  // namespace cascadefs::engine
