// arena.h: bump allocation for one memtable.
//
// A memtable's entries live in an Arena: memory comes in blocks of kBlockSizeBytes and is
// handed out front to back; nothing is freed until the arena is destroyed with its memtable.
// An allocation larger than a quarter block gets a block of its own, so the tail of the
// current block is not wasted on it.
//
// Thread safety: Allocate* by one thread at a time (the memtable's single writer);
// MemoryUsage() from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

namespace cascadefs::engine {

class Arena {
 public:
  static constexpr std::size_t kBlockSizeBytes = 64 << 10;

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // REQUIRES: size_bytes > 0.
  char* Allocate(std::size_t size_bytes);
  // Aligned to 8 bytes, enough for the skiplist's atomic pointers.
  char* AllocateAligned(std::size_t size_bytes);
  // Bytes of blocks held, plus their bookkeeping; any thread.
  std::size_t MemoryUsage() const { return memory_usage_.load(std::memory_order_relaxed); }

 private:
  char* AllocateFallback(std::size_t size_bytes);
  char* AllocateNewBlock(std::size_t size_bytes);

  char* cursor_ = nullptr;
  std::size_t remaining_bytes_ = 0;
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::atomic<std::size_t> memory_usage_{0};
};

inline char* Arena::Allocate(std::size_t size_bytes) {
  if (size_bytes <= remaining_bytes_) {
    char* result = cursor_;
    cursor_ += size_bytes;
    remaining_bytes_ -= size_bytes;
    return result;
  }
  return AllocateFallback(size_bytes);
}

}  // namespace cascadefs::engine
