// gc_fence.h: what lets gc delete chunks while the filesystem writes (docs/fsck.md, "gc in
// the daemon").
//
// A cycle of the daemon's gc marks every chunk the inode records of a snapshot S name, then
// deletes the chunks of S that are unmarked. Three writer paths could lose data to it, and
// the fence closes each:
//  1. A flush (or truncate, or punch) writes chunks, then commits the root that names them.
//     If S fell between the two, the chunks are in S but no root of S names them. So each
//     such operation holds a Token from before its first chunk write until its commit, and
//     the cycle takes S only after BeginCycle's wait: every operation that started before
//     the cycle began has ended (later ones are caught by 2).
//  2. Put of a chunk the store holds already writes nothing (dedup). If gc deletes that chunk,
//     the new root names a missing chunk. So while a cycle runs, every Put records its name
//     (Touch) before it looks for the chunk, and gc never deletes a touched name.
//  3. Touch and delete must not interleave: gc claims the names of a delete batch under the
//     fence's mutex (dropping touched ones); a Put of a claimed name waits until the batch is
//     written, then finds the chunk gone and writes it again.
// Readers need no fence: a read that finds a chunk missing retries with the inode's current
// root (an overwrite replaced the root it read, and gc collected the old chunks).
//
// Bounds: the touched set holds at most kTouchedNamesMax names (~64 B each, 64 MiB); past it
// the cycle is abandoned (Overflowed) and deletes nothing more. Claimed names: one batch.
//
// Thread safety: every method may be called from any thread or task.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "engine/io/task.h"
#include "engine/io/wait_queue.h"
#include "fusefs/chunk_name.h"

namespace cascadefs::fusefs {

class ChunkGcFence {
 public:
  static constexpr std::size_t kTouchedNamesMax = 1 << 20;

  // Held by an operation that writes chunks and then commits a root naming them.
  class Token {
   public:
    Token() = default;
    Token(Token&& other) noexcept : fence_(other.fence_), generation_(other.generation_) {
      other.fence_ = nullptr;
    }
    Token& operator=(Token&&) = delete;
    ~Token();

   private:
    friend class ChunkGcFence;
    Token(ChunkGcFence* fence, std::uint64_t generation) : fence_(fence), generation_(generation) {}
    ChunkGcFence* fence_ = nullptr;
    std::uint64_t generation_ = 0;
  };

  ChunkGcFence() = default;
  ChunkGcFence(const ChunkGcFence&) = delete;
  ChunkGcFence& operator=(const ChunkGcFence&) = delete;

  Token Enter();

  // Every Put calls this first: records the name while a cycle runs, and waits while gc is
  // deleting it.
  io::Task<void> Touch(const ChunkName& name);

  // The cycle's start: Puts are recorded from now on, and the call returns once every Token
  // taken before it is gone. REQUIRES: no cycle running.
  io::Task<void> BeginCycle();
  // Of `candidates`, in their order, the names gc may delete now (not touched); they count as being
  // deleted until DoneDeleting. Empty once Overflowed.
  std::vector<ChunkName> Claim(const std::vector<ChunkName>& candidates);
  void DoneDeleting();
  // True when the touched set passed its bound: the cycle must stop deleting.
  bool Overflowed() const;
  void EndCycle();

 private:
  void Leave(std::uint64_t generation);

  mutable std::mutex mutex_;
  std::uint64_t generation_ = 0;                    // GUARDED_BY(mutex_)
  std::map<std::uint64_t, std::uint64_t> holders_;  // generation -> live tokens
  // Written under mutex_; read without it by Touch, every chunk Put's first step, so a Put
  // outside a cycle takes no lock. Safe because every Put runs under a Token: one taken after
  // BeginCycle (under mutex_, after recording_ was set) sees true.
  std::atomic<bool> recording_{false};
  bool overflowed_ = false;                                // GUARDED_BY(mutex_)
  std::unordered_set<ChunkName, ChunkNameHash> touched_;   // GUARDED_BY(mutex_)
  std::unordered_set<ChunkName, ChunkNameHash> deleting_;  // GUARDED_BY(mutex_)
  io::WaitQueue changed_;  // a token left, a delete batch was written
};

}  // namespace cascadefs::fusefs
