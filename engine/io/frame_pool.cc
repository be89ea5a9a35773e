// frame_pool.cc: per-thread free lists for coroutine frames (task.h, detail::AllocateFrame).
//
// Every Task, awaiter chain and detached wrapper of the runtime allocates one frame. Frames are
// small (a few hundred bytes) and short-lived, so a per-thread free list per 64-byte size class
// turns the hot path's malloc/free into a pointer pop/push. A frame freed on another thread
// than the one that allocated it (a task that moved with SwitchTo) simply joins the freeing
// thread's list: the lists hold plain malloc blocks, so any thread may own any block.
//
// Bounds: kFrameClassMaxBytes (larger frames use malloc directly) and kFrameCacheMax blocks
// cached per class per thread (more are freed). Under AddressSanitizer the cache is bypassed so
// that a use of a freed frame is still reported.
//
// Thread safety: the lists are thread_local; nothing is shared.
#include <cstdint>
#include <cstdlib>

#include "engine/assert.h"
#include "engine/io/task.h"

namespace cascadefs::io::detail {
namespace {

constexpr std::size_t kFrameClassBytes = 64;
constexpr std::size_t kFrameClassMaxBytes = 2048;
constexpr std::size_t kFrameClassCount = kFrameClassMaxBytes / kFrameClassBytes;
constexpr std::uint32_t kFrameCacheMax = 4096;
static_assert(kFrameClassMaxBytes % kFrameClassBytes == 0);

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kPoolFrames = false;
#else
constexpr bool kPoolFrames = true;
#endif

struct FreeBlock {
  FreeBlock* next;
};

struct FrameCache {
  FreeBlock* heads[kFrameClassCount] = {};
  std::uint32_t counts[kFrameClassCount] = {};

  ~FrameCache() {
    for (std::size_t c = 0; c < kFrameClassCount; ++c) {
      while (heads[c] != nullptr) {
        FreeBlock* block = heads[c];
        heads[c] = block->next;
        std::free(block);
      }
    }
  }
};

thread_local FrameCache tls_frame_cache;

std::size_t ClassOf(std::size_t size_bytes) { return (size_bytes - 1) / kFrameClassBytes; }

}  // namespace

void* AllocateFrame(std::size_t size_bytes) {
  CFS_ASSERT(size_bytes > 0);
  if (kPoolFrames && size_bytes <= kFrameClassMaxBytes) {
    const std::size_t c = ClassOf(size_bytes);
    FrameCache& cache = tls_frame_cache;
    if (cache.heads[c] != nullptr) {
      FreeBlock* block = cache.heads[c];
      cache.heads[c] = block->next;
      cache.counts[c]--;
      return block;
    }
    size_bytes = (c + 1) * kFrameClassBytes;  // allocate the whole class so any slot fits
  }
  void* frame = std::malloc(size_bytes);
  CFS_ASSERT(frame != nullptr);  // out of memory: a coroutine without a frame cannot report it
  return frame;
}

void FreeFrame(void* frame, std::size_t size_bytes) noexcept {
  if (frame == nullptr) return;
  if (kPoolFrames && size_bytes <= kFrameClassMaxBytes) {
    const std::size_t c = ClassOf(size_bytes);
    FrameCache& cache = tls_frame_cache;
    if (cache.counts[c] < kFrameCacheMax) {
      auto* block = static_cast<FreeBlock*>(frame);
      block->next = cache.heads[c];
      cache.heads[c] = block;
      cache.counts[c]++;
      return;
    }
  }
  std::free(frame);
}

}  // namespace cascadefs::io::detail
