// mpsc_queue.h: a bounded multi-producer, single-consumer queue of pointers.
//
// Each IO thread owns one: other threads (Spawn, SwitchTo, RunOn) push ReadyNode pointers into
// it, and the IO thread pops them at the start of a loop turn. The algorithm is Dmitry Vyukov's
// bounded array queue: each cell carries a sequence number saying whose turn it is, producers
// claim a position with one CAS on the tail, and the consumer needs no atomic read-modify-write.
//
// Bound: `capacity` cells (a power of two). TryPush on a full queue fails; the caller decides
// what full means (an outside thread waits with WaitForSpace, an IO thread parks the node).
//
// Thread safety: TryPush and WaitForSpace from any thread; TryPop only from the one consumer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/assert.h"

namespace cascadefs::io {

template <typename T>
class MpscQueue {
 public:
  // REQUIRES: capacity is a power of two >= 2.
  explicit MpscQueue(std::uint32_t capacity)
      : mask_(capacity - 1), cells_(std::make_unique<Cell[]>(capacity)) {
    CFS_ASSERT(capacity >= 2);
    CFS_ASSERT((capacity & (capacity - 1)) == 0);
    for (std::uint32_t i = 0; i < capacity; ++i) {
      cells_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  // Appends `item`; false when the queue is full (nothing changed).
  bool TryPush(T* item) {
    CFS_ASSERT(item != nullptr);
    std::uint64_t position = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[position & mask_];
      const std::uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(sequence - position);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) {
          cell.item = item;
          // seq_cst, not just release: the producer then reads the consumer's `sleeping`
          // flag, and the consumer sets that flag before it checks Empty(). With both sides
          // seq_cst, one of them must see the other's write (see docs/io.md, "Waking").
          cell.sequence.store(position + 1, std::memory_order_seq_cst);
          return true;
        }
      } else if (diff < 0) {
        return false;  // the cell still holds an item from one lap ago: full
      } else {
        position = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Removes and returns the oldest item, or null when empty. Consumer only.
  T* TryPop() {
    Cell& cell = cells_[head_ & mask_];
    const std::uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
    if (static_cast<std::int64_t>(sequence - (head_ + 1)) < 0) return nullptr;
    T* item = cell.item;
    cell.sequence.store(head_ + mask_ + 1, std::memory_order_release);
    ++head_;
    // Every pop advances the epoch, so a producer that read the epoch before its failed
    // TryPush cannot miss this pop, however the two interleave. notify_all costs no system
    // call when nobody waits (libstdc++ counts waiters itself).
    space_epoch_.fetch_add(1, std::memory_order_release);
    space_epoch_.notify_all();
    return item;
  }

  // True when a TryPop would find nothing right now. Consumer only (its sleep check).
  bool Empty() const {
    const Cell& cell = cells_[head_ & mask_];
    return static_cast<std::int64_t>(cell.sequence.load(std::memory_order_seq_cst) - (head_ + 1)) <
           0;
  }

  // For producers: the epoch to pass to WaitForSpace, read before a failed TryPush.
  std::uint32_t space_epoch() const { return space_epoch_.load(std::memory_order_acquire); }
  // Blocks until the consumer popped something after `epoch` was read.
  // Returns at once if a pop already happened since then.
  void WaitForSpace(std::uint32_t epoch) { space_epoch_.wait(epoch, std::memory_order_acquire); }
  // Wakes every producer blocked in WaitForSpace (at shutdown).
  void WakeWaiters() {
    space_epoch_.fetch_add(1, std::memory_order_release);
    space_epoch_.notify_all();
  }

  std::uint32_t capacity() const { return mask_ + 1; }

 private:
  struct alignas(64) Cell {
    std::atomic<std::uint64_t> sequence{0};
    T* item = nullptr;
  };
  const std::uint32_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  alignas(64) std::uint64_t head_ = 0;  // the consumer's position; only the consumer touches it
  std::atomic<std::uint32_t> space_epoch_{0};  // advanced by every pop and by WakeWaiters
};

}  // namespace cascadefs::io
